package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/control"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// TestProgressLineNamesTheCapInForce: a progress line's "calls/s (cap X)" and "in flight N/P"
// name the effective value while it binds under its ceiling, with the ceiling; plain
// otherwise.
func TestProgressLineNamesTheCapInForce(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	snap := func(set engine.Settings, eff engine.Effective) engine.Snapshot {
		return engine.Snapshot{At: start.Add(12 * time.Second), Started: start, State: engine.Running, Settings: set, Effective: eff,
			Total: 5000, OK: 439, InFlight: 6}
	}
	none := engine.Effective{QuotaLeft: -1}
	for _, tc := range []struct {
		name      string
		s         engine.Snapshot
		want, not []string
	}{
		{"ceilings in force", snap(engine.Settings{Parallelism: 8, Rate: 250, Burst: 1}, none),
			[]string{"25.0 calls/s (cap 250/s)", "in flight 6/8  "}, []string{"effective"}},
		{"no rate ceiling", snap(engine.Settings{Parallelism: 8, Burst: 1}, none),
			[]string{"25.0 calls/s  in flight 6/8  "}, []string{"cap", "effective"}},
		{"the effective rate binds", snap(engine.Settings{Parallelism: 8, Rate: 250, Burst: 1}, engine.Effective{Rate: 187.6, Signals: 1, QuotaLeft: -1}),
			[]string{"25.0 calls/s (cap 188/s effective · ceiling 250/s)", "in flight 6/8  "}, nil},
		{"the effective rate binds under no ceiling", snap(engine.Settings{Parallelism: 8, Burst: 1}, engine.Effective{Rate: 14, Signals: 1, QuotaLeft: -1}),
			[]string{"(cap 14/s effective · ceiling none)"}, nil},
		{"the effective parallelism binds", snap(engine.Settings{Parallelism: 8, Burst: 1}, engine.Effective{Parallelism: 6, Signals: 1, QuotaLeft: -1}),
			[]string{"in flight 6/6 (effective · ceiling 8)"}, []string{"cap"}},
	} {
		fig := probes.Figures{From: start.Add(10 * time.Second), To: start.Add(12 * time.Second), Calls: 50}
		line := progressLine(tc.s, probes.Stats{}, fig, 0)
		if !strings.Contains(line, "last 2s 25.0 calls/s") {
			t.Errorf("%s: progress line %q does not say the rate's window", tc.name, line)
		}
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: progress line %q lacks %q", tc.name, line, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(line, w) {
				t.Errorf("%s: progress line %q has %q", tc.name, line, w)
			}
		}
	}
}

// TestCtlGetShowsEffective: ctl get's text gives the effective values beside the ceilings,
// and what the target accepted when it pushed back.
func TestCtlGetShowsEffective(t *testing.T) {
	var out bytes.Buffer
	env := &Env{Stdout: &out}
	printStatus(env, &control.Status{Title: "t", PID: 7, State: "running", Parallelism: 16, Pace: "0s", Rate: "250/s", Burst: 1,
		EffectiveParallelism: 6, EffectiveRate: "188/s", TargetLimit: "198/s", Signals: 3, InFlight: 5, Total: -1})
	for _, want := range []string{"parallelism 6 effective · ceiling 16 (in flight 5), pace 0s, rate 188/s effective · ceiling 250/s, burst 1",
		"the target pushed back 3 times; the target accepted 198/s when it last pushed back"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ctl get lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	printStatus(env, &control.Status{Title: "t", PID: 7, State: "running", Parallelism: 16, Pace: "0s", Rate: "unlimited", Burst: 1,
		EffectiveRate: "14/s", Signals: 1, Total: -1})
	for _, want := range []string{"parallelism 16 (in flight 0), pace 0s, rate 14/s effective · ceiling none, burst 1", "pushed back 1 time\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ctl get lacks %q:\n%s", want, out.String())
		}
	}
}
