package tui

import (
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"github.com/throttle-dev/throttle/engine"
)

// TestQuitWithNothingInFlightGoesAtOnce: the quit question guards the calls in flight; with
// none, q drains and quits without asking (issue 20: "q asks to confirm with 0 calls in
// flight").
func TestQuitWithNothingInFlightGoesAtOnce(t *testing.T) {
	for _, state := range []engine.State{engine.Running, engine.Paused, engine.Draining} {
		m, fe := newFixtureModel(80, 24, true)
		fe.snap.InFlight, fe.snap.State = 0, state
		m.refresh()
		m = press(t, m, "q")
		if m.confirm != "" || strings.Contains(ansi.Strip(m.Render()), "drains and quits") {
			t.Errorf("%v, 0 in flight: q asked to confirm:\n%s", state, ansi.Strip(m.Render()))
		}
		if !m.quitting {
			t.Errorf("%v, 0 in flight: q did not quit", state)
		}
		wantDrain := state < engine.Draining
		if got := len(fe.calls) == 1 && fe.calls[0] == "tui drain"; got != wantDrain || (!wantDrain && len(fe.calls) != 0) {
			t.Errorf("%v, 0 in flight: q sent %q, want a drain: %v", state, fe.calls, wantDrain)
		}
	}
	// With calls in flight it still asks.
	m, fe := newFixtureModel(80, 24, true)
	if fe.snap.InFlight == 0 {
		t.Fatal("the fixture has no calls in flight")
	}
	m = press(t, m, "q")
	if m.confirm != "quit" || len(fe.calls) != 0 {
		t.Errorf("%d in flight: q confirm %q, calls %q; want the question and nothing sent", fe.snap.InFlight, m.confirm, fe.calls)
	}
}

// TestViewLeavesTheTitleAlone: Bubble Tea v2 clears a title it set when the program ends (it
// cannot restore the old one), so the screen sets none (issue 20: "the terminal title set to
// empty on exit").
func TestViewLeavesTheTitleAlone(t *testing.T) {
	m, _ := newFixtureModel(80, 24, true)
	if v := m.View(); v.WindowTitle != "" {
		t.Errorf("the view sets the window title %q; on exit Bubble Tea would leave it empty", v.WindowTitle)
	}
}
