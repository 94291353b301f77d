// Package recordtest records runs of the simulated API under virtual time, for the tests of the
// recording, of its replay and of what-if.
package recordtest

import (
	"bytes"
	"context"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/enginetest"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/record"
)

// Change sets the parallelism at an offset of the run, as an operator would.
type Change struct {
	At          time.Duration
	Parallelism int
	Origin      string // "tui" when empty
}

// Run describes a run to record.
type Run struct {
	Items    int
	Sim      adapters.SimConfig
	Settings engine.Settings
	Retries  int
	Changes  []Change // in order of At
	// Auto runs the auto-tuner, as --auto does.
	Auto bool
	// Adapt turns on the engine's congestion response, as --adapt does.
	Adapt bool
}

// Record runs r against the simulated API in a testing/synctest bubble, recording it, and
// returns the recording's bytes and the run's summary.
func Record(t *testing.T, r Run) ([]byte, engine.Summary) {
	t.Helper()
	var out bytes.Buffer
	var sum engine.Summary
	synctest.Test(t, func(t *testing.T) {
		e, err := engine.New(engine.Config{Settings: r.Settings, Retries: r.Retries, Adapter: adapters.NewSimAdapter(adapters.NewSim(r.Sim)),
			Source: engine.NewLineReader(enginetest.Lines(r.Items), false), Total: int64(r.Items), Results: io.Discard, Adapt: r.Adapt || r.Auto}) // --auto works through the response
		if err != nil {
			t.Fatal(err)
		}
		rec, err := record.Start(memFile{&out}, record.Header{Adapter: "sim", Total: int64(r.Items), Settings: record.SettingsOf(r.Settings),
			Retries: r.Retries, MaxBackoff: record.Duration(time.Minute), Timeout: record.Duration(30 * time.Second), Auto: r.Auto,
			Adapt: r.Adapt || r.Auto}, e)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if r.Auto {
			mon := probes.NewMonitor(probes.AdvisorConfig{}, true)
			sub := e.Subscribe(1<<16, engine.CallEnd)
			stop := make(chan struct{})
			defer func() { close(stop); sub.Close() }()
			go probes.Feed(sub, stop, mon.Observe)
			go mon.Tuner(e).Run(ctx)
		}
		go func() {
			var at time.Duration
			for _, c := range r.Changes {
				time.Sleep(c.At - at)
				at = c.At
				origin := c.Origin
				if origin == "" {
					origin = "tui"
				}
				_ = e.Set(engine.Turn(engine.KnobParallelism, engine.Settings{Parallelism: c.Parallelism}), origin)
			}
		}()
		if sum, err = e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := rec.Close(sum); err != nil {
			t.Fatal(err)
		}
	})
	return out.Bytes(), sum
}

// Read records r and reads the recording back.
func Read(t *testing.T, r Run) (*record.Recording, engine.Summary) {
	t.Helper()
	b, sum := Record(t, r)
	rec, err := record.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return rec, sum
}

// memFile keeps a recording in memory.
type memFile struct{ *bytes.Buffer }

func (memFile) Close() error { return nil }

var _ io.WriteCloser = memFile{}
