// Package replay turns a recording back into what the live run showed: its summary and a
// per-minute table (headless), a player that drives the same screen as a live run, and what-if
// runs of the real engine against a model of the target fitted from the recording.
package replay

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/record"
)

// Summary is a recorded run's totals and its latency over the whole run, computed the way the
// live run computed them: the same windows, fed the same call ends.
type Summary struct {
	engine.Summary
	Latency probes.Stats
	// FromCalls is set when the recording was cut off: the item totals were counted from the
	// calls (an item's last call), not taken from the run's own end record.
	FromCalls bool
	// Uncalled counts rows the run wrote without a call of their own (invalid input, items
	// waiting for a retry when it drained); only known when the recording is complete.
	Uncalled int64
}

// Summarize computes a recording's summary.
func Summarize(rec *record.Recording) Summary {
	ws := probes.NewWindows(probes.DefaultWindow, 1)
	s := Summary{Summary: engine.Summary{State: engine.Done, Total: rec.Header.Total, Elapsed: rec.Elapsed()}}
	var ok, failed int64
	for _, c := range rec.Calls {
		ws.Observe(c.Event(rec.Header.Started))
		s.Calls++
		if c.Status == 429 {
			s.TooMany++
		}
		switch {
		case !c.Final:
			s.Retries++
		case c.Verdict == engine.OK:
			ok += int64(c.Items)
		default:
			failed += int64(c.Items)
		}
	}
	s.Latency = ws.Run()
	for _, w := range rec.Warnings {
		s.Warnings = append(s.Warnings, w.Message)
	}
	if end := rec.End; end != nil {
		s.OK, s.Failed, s.NotStarted, s.Lost = end.OK, end.Failed, end.NotStarted, end.Lost
		s.State = stateNamed(end.State)
		s.Uncalled = max(0, end.OK+end.Failed-ok-failed)
		return s
	}
	s.OK, s.Failed, s.FromCalls = ok, failed, true
	return s
}

func stateNamed(name string) engine.State {
	for st := engine.Running; st <= engine.Done; st++ {
		if st.String() == name {
			return st
		}
	}
	return engine.Done
}

// Minute is one minute of a recorded run: the calls that ended in it.
type Minute struct {
	// At is the minute's start, as an offset from the run's start.
	At time.Duration
	// Length is 1 minute, or less for the run's last one.
	Length                     time.Duration
	Calls, OK, TooMany, Errors int64
	P50, P95, P99              time.Duration
	Parallelism                int
	Rate                       float64
}

// PerSecond is the minute's calls per second.
func (m Minute) PerSecond() float64 {
	if m.Length <= 0 {
		return 0
	}
	return float64(m.Calls) / m.Length.Seconds()
}

// TooManyShare is the share of the minute's calls answered 429, from 0 to 1.
func (m Minute) TooManyShare() float64 {
	if m.Calls == 0 {
		return 0
	}
	return float64(m.TooMany) / float64(m.Calls)
}

// Minutes cuts a recording into minutes; the settings are those in force at each minute's end.
func Minutes(rec *record.Recording) []Minute {
	elapsed := rec.Elapsed()
	n := int(elapsed/time.Minute) + 1
	if elapsed > 0 && elapsed%time.Minute == 0 {
		n--
	}
	mins := make([]Minute, n)
	hists := make([]*hdrhistogram.Histogram, n)
	for i := range mins {
		at := time.Duration(i) * time.Minute
		mins[i] = Minute{At: at, Length: min(time.Minute, elapsed-at)}
		end := min(at+time.Minute, elapsed)
		set := rec.SettingsAt(end)
		mins[i].Parallelism, mins[i].Rate = set.Parallelism, set.Rate
		hists[i] = probes.NewLatencyHistogram()
	}
	for _, c := range rec.Calls {
		i := min(int(c.End()/time.Minute), n-1)
		if i < 0 {
			continue
		}
		m := &mins[i]
		m.Calls++
		switch c.Class {
		case probes.ClassOK:
			m.OK++
		case probes.ClassTooMany:
			m.TooMany++
		default:
			m.Errors++
		}
		probes.RecordLatency(hists[i], c.Latency)
	}
	for i, h := range hists {
		if h.TotalCount() > 0 {
			mins[i].P50, mins[i].P95, mins[i].P99 = probes.Quantile(h, 50), probes.Quantile(h, 95), probes.Quantile(h, 99)
		}
	}
	return mins
}
