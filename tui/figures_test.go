package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// rateMonitor is a run at before calls/s until change, then at after calls/s.
func rateMonitor(now, change time.Time, before, after int) *probes.Monitor {
	mon := probes.NewMonitor(probes.AdvisorConfig{}, false)
	for sec := now.Add(-30 * time.Second).Truncate(time.Second); sec.Before(now); sec = sec.Add(time.Second) {
		n := before
		if !sec.Before(change) {
			n = after
		}
		for i := range n {
			at := sec.Add(time.Duration(i) * time.Second / time.Duration(n+1))
			if at.After(now) {
				break
			}
			mon.Observe(engine.Event{Kind: engine.CallEnd, At: at, Latency: 20 * time.Millisecond, Status: 200, Verdict: engine.OK})
		}
	}
	return mon
}

// TestHeaderRateAfterACapChange: right after - set a 14/s cap the header said "20 calls/s of
// 14/s cap", a mean of seconds before the change. It measures from the change now, says over
// how long, and until a whole second has passed, says it is measuring.
func TestHeaderRateAfterACapChange(t *testing.T) {
	change := fixedNow.Add(-2500 * time.Millisecond)
	for _, tc := range []struct {
		now  time.Time
		want string
	}{
		{change.Add(500 * time.Millisecond), "measuring: – calls/s of 14/s cap"},
		{fixedNow, "last 2s since the change: 14 calls/s of 14/s cap"},
	} {
		fe := &fakeEngine{snap: busySnapshot()}
		fe.snap.At = tc.now
		fe.snap.Settings.Rate = 14
		fe.snap.Changes = append(fe.snap.Changes, engine.Change{At: change, Origin: "tui", Knob: "rate", From: "24/s", To: "14/s"})
		m := New(fe, rateMonitor(tc.now, change, 22, 14), Options{Title: "t", Plain: true, Now: func() time.Time { return tc.now }})
		m.width, m.height = 80, 24
		if frame := ansi.Strip(m.Render()); !strings.Contains(frame, tc.want) {
			t.Errorf("%v after the change: the header lacks %q:\n%s", tc.now.Sub(change), tc.want, frame)
		}
	}
}

// TestFinalScreenFiguresAreTheWholeRuns: the final screen said "429s 0.0%" (an empty last
// window) after 21 × 429, and its errors panel "none" under "19 × 429".
func TestFinalScreenFiguresAreTheWholeRuns(t *testing.T) {
	fe := &fakeEngine{snap: busySnapshot()}
	s := &fe.snap
	s.State, s.Ended, s.At = engine.Draining, fixedNow.Add(-time.Minute), fixedNow
	s.Started = s.Ended.Add(-40 * time.Second)
	s.Total, s.Read, s.OK, s.Failed, s.Calls, s.TooMany, s.Errors, s.Retries = 200, 98, 98, 0, 600, 21, 0, 21
	s.Changes = nil
	m := New(fe, probes.NewMonitor(probes.AdvisorConfig{}, false), Options{Title: "t", Plain: true, Now: func() time.Time { return fixedNow }})
	m.width, m.height = 80, 24
	frame := ansi.Strip(m.Render())
	for _, want := range []string{"whole run: 15.0 calls/s · 21 × 429 (3.5%)", "whole run 21 × 429 · 0 errors", "no errors besides the 429s",
		"summary · drained in 40s", "98 ok, 0 failed · 102 not run · 600 calls, 21 × 429", "■ drained"} {
		if !strings.Contains(frame, want) {
			t.Errorf("the final screen lacks %q:\n%s", want, frame)
		}
	}
	for _, bad := range []string{"0.0%", " none", "running, ended"} {
		if strings.Contains(frame, bad) {
			t.Errorf("the final screen says %q:\n%s", bad, frame)
		}
	}
}

// lostEngine is a job seen through a socket that went away before its end.
type lostEngine struct{ *fakeEngine }

func (lostEngine) Lost() bool { return true }

// TestLostJobIsNotPassedOffAsItsEnd: an attached screen whose job went away without a final
// view says so, not "done" or a summary of numbers that are not the job's last.
func TestLostJobIsNotPassedOffAsItsEnd(t *testing.T) {
	fe := &fakeEngine{snap: busySnapshot()}
	fe.snap.Ended = fixedNow
	m := New(lostEngine{fe}, busySeries(), Options{Title: "t", Plain: true, Attached: true, Now: func() time.Time { return fixedNow }})
	m.width, m.height = 80, 24
	frame := ansi.Strip(m.Render())
	if !strings.Contains(frame, "job gone, last seen") || !strings.Contains(frame, "numbers as last seen") || strings.Contains(frame, "summary ·") {
		t.Errorf("a lost job's screen:\n%s", frame)
	}
}

// TestFinalScreenLatencyIsTheWholeRuns: the final screen's latency is the summary's, over the
// whole run, and says so, not the last 5 s window's.
func TestFinalScreenLatencyIsTheWholeRuns(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	fe.snap.Ended, fe.snap.State = fixedNow, engine.Done
	m.refresh()
	all := busySeries().Overall()
	want := "p95 " + ms(all.P95) + " p50 " + ms(all.P50) + " (whole run)" // p99 gives way at 80 columns
	if frame := ansi.Strip(m.Render()); !strings.Contains(frame, want) {
		t.Errorf("the final screen lacks %q:\n%s", want, frame)
	}
}
