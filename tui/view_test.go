package tui

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// colourSGR matches an SGR sequence that sets a colour (foreground, background, 256 or RGB).
var colourSGR = regexp.MustCompile(`\x1b\[[0-9;]*(3[0-9]|4[0-9]|9[0-7]|10[0-7]|38;|48;)[0-9;]*m`)

// checkFrame fails unless the frame is exactly h lines of exactly w cells.
func checkFrame(t *testing.T, frame string, w, h int) {
	t.Helper()
	lines := strings.Split(frame, "\n")
	if len(lines) != h {
		t.Errorf("frame has %d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if got := ansi.StringWidth(l); got != w {
			t.Errorf("line %d is %d cells wide, want %d: %q", i+1, got, w, ansi.Strip(l))
		}
	}
}

// goldenSizes are the sizes the golden frames keep: 80x24 is the design width; 60x20 the
// smallest screen that must lose nothing that carries meaning; 160x48 and over use the room.
var goldenSizes = []struct {
	name string
	w, h int
}{{"60x20", 60, 20}, {"80x24", 80, 24}, {"100x30", 100, 30}, {"160x48", 160, 48}, {"200x60", 200, 60}}

// TestGoldenFrames keeps the screen and its help at every golden size (plain text, as
// NO_COLOR shows it).
func TestGoldenFrames(t *testing.T) {
	for _, tc := range goldenSizes {
		for _, help := range []bool{false, true} {
			name := tc.name
			if help {
				name = "help-" + tc.name
			}
			t.Run(name, func(t *testing.T) {
				m, _ := newFixtureModel(tc.w, tc.h, true)
				m.help = help
				frame := m.Render()
				checkFrame(t, frame, tc.w, tc.h)
				golden.RequireEqual(t, ansi.Strip(frame)+"\n")
			})
		}
	}
}

// TestGoldenFramesEffective keeps the screen of a run whose congestion response holds an
// effective rate (and, "both", an effective parallelism too) under the ceilings: each knob
// line says both, and nothing that carries meaning is cut at any golden size.
func TestGoldenFramesEffective(t *testing.T) {
	for _, size := range goldenSizes {
		for _, par := range []bool{false, true} {
			tc := struct {
				name string
				w, h int
				par  bool
			}{size.name, size.w, size.h, par}
			if par {
				tc.name = "both-" + tc.name
			}
			t.Run(tc.name, func(t *testing.T) {
				m, _ := newEffectiveModel(tc.w, tc.h, tc.par)
				frame := m.Render()
				checkFrame(t, frame, tc.w, tc.h)
				plain := ansi.Strip(frame)
				want := []string{"of 196/s", // "191 calls/s of 196/s effective cap", or at 80 columns "191/s of 196/s cap"
					"rate 196/s effective · ceiling 250/s", "burst 1", "+ - ±10%",
					"binding: server", "↑↓ + - ceilings", "? help", "q quit"}
				if tc.w >= 80 { // the advisor's words on one line, and room for the change log
					want = append(want, "rate 196/s effective · ceiling 250/s: the target limits it, not the ceiling", "─ errors", "─ changes")
				}
				if tc.par {
					want = append(want, "parallelism 16 effective · ceiling 24", "max 64", "↑↓ ±1 ⇞⇟ ×2", "16 in flight / 16 effective")
					if tc.w >= 80 { // the change panel has room for the newest change only
						want = append(want, "adapt  effective parallelism 24 → 16 (429 at 18 in flight)")
					}
				} else if tc.w >= 80 {
					want = append(want, "adapt  effective rate 250/s → 196/s (target accepted 206/s)")
				}
				for _, s := range want {
					if !strings.Contains(plain, s) {
						t.Errorf("frame lacks %q:\n%s", s, plain)
					}
				}
				if strings.Contains(plain, "…") {
					t.Errorf("frame cuts a line:\n%s", plain)
				}
				golden.RequireEqual(t, plain+"\n")
			})
		}
	}
}

// TestHelpFitsAt80: the help screen at the design width cuts no line and keeps each key on
// a line of its own.
func TestHelpFitsAt80(t *testing.T) {
	m, _ := newFixtureModel(80, 24, true)
	m.help = true
	frame := ansi.Strip(m.Render())
	if strings.Contains(frame, "…") {
		t.Errorf("the help at 80x24 cuts a line:\n%s", frame)
	}
	for _, s := range []string{"parallelism ceiling +1", "rate ceiling +10%", "ceilings:  under them throttle keeps an effective rate",
		"workers:   ■ calling", "× above the limit", "e.g. parallelism 64 · pace 250ms · rate 200/s · burst 5 · window 5m"} {
		if !strings.Contains(frame, s) {
			t.Errorf("the help lacks %q:\n%s", s, frame)
		}
	}
}

// TestNothingCut: at every golden size, in every mode and variant of the screen, every line
// is exactly the width and the frame exactly the height, no line is cut (…), and the words
// that carry meaning are there: the header's count of items, the key line's help and quit,
// the legend and examples of the help, the binding limit's name.
func TestNothingCut(t *testing.T) {
	type variant struct {
		name  string
		setup func(m *Model, fe *fakeEngine)
		want  []string
		after func(m *Model) // after the refresh: what it would overwrite
	}
	workers := func(fe *fakeEngine, n int, st engine.WorkerState) {
		fe.snap.Workers = make([]engine.WorkerState, n)
		fe.snap.ByState = [len(fe.snap.ByState)]int{}
		for i := range fe.snap.Workers {
			fe.snap.Workers[i] = st
			fe.snap.ByState[st]++
		}
		fe.snap.Settings.Parallelism = n
	}
	keys := []string{"? help", "q quit"}
	variants := []variant{
		{"main", func(*Model, *fakeEngine) {}, append([]string{"1,200,000 items", "binding: rate", "ok 276,906", "failed 298", "retries 1,041", "429s"}, keys...), nil},
		{"help", func(m *Model, _ *fakeEngine) { m.help = true },
			append([]string{"1,200,000 items", "e.g. parallelism 64", "rate 200/s", "window 5m", "ceilings:",
				"■ calling", "▪ pacing", "· rate-wait", "◇ held", "○ idle", "× above the limit", "parallelism ceiling", "accept"}, keys...), nil},
		{"effective", func(_ *Model, fe *fakeEngine) { fe.snap = effectiveSnapshot(true) },
			append([]string{"1,200,000 items", "binding: server", "parallelism 16 effective · ceiling 24", "rate 196/s effective · ceiling 250/s"}, keys...), nil},
		{"binding-shared", func(m *Model, _ *fakeEngine) {
			m.opt.Binding = func() string { return "limit shared-api-eu-west-1" }
		}, append([]string{"binding: limit shared-api-eu-west-1"}, keys...), nil},
		{"binding-long", func(m *Model, _ *fakeEngine) {
			m.opt.Binding = func() string { return "limit backfill-shared-production-eu (4 jobs)" }
		}, append([]string{"binding: limit", "backfill-shared-production-eu (4 jobs)"}, keys...), nil},
		{"64 workers", func(_ *Model, fe *fakeEngine) { workers(fe, 64, engine.WorkerCalling) }, append([]string{"calling 64", "/ 64"}, keys...), nil},
		{"ended", func(_ *Model, fe *fakeEngine) { fe.snap.Ended, fe.snap.State = fixedNow, engine.Done },
			[]string{"✓ done", "1,200,000 items", "922,796 not run", "1,203 × 429", "press any key to exit"}, nil},
		{"confirm-quit", func(m *Model, _ *fakeEngine) { m.confirm = "quit" }, []string{"16", "drains", "quits", "cancel"}, nil},
		{"confirm-drain", func(m *Model, _ *fakeEngine) { m.confirm = "drain" }, []string{"drain: no new calls", "confirms"}, nil},
		{"command", func(m *Model, _ *fakeEngine) { m.commanding = true; m.input.Focus() }, []string{": p", "arallelism 64 · ", "rate 200/s"}, nil},
		// The demo's latencies: "p95 54ms · p50 51ms · p99 57ms" is as wide as the chart at 60.
		{"short latencies", func(*Model, *fakeEngine) {}, []string{"p95 54ms", "p50 51ms"}, func(m *Model) {
			m.latency = probes.Stats{P50: 51 * time.Millisecond, P95: 54 * time.Millisecond, P99: 57 * time.Millisecond}
		}},
	}
	for _, size := range goldenSizes {
		for _, v := range variants {
			t.Run(size.name+"/"+v.name, func(t *testing.T) {
				m, fe := newFixtureModel(size.w, size.h, true)
				v.setup(&m, fe)
				m.refresh()
				if v.after != nil {
					v.after(&m)
				}
				frame := m.Render()
				checkFrame(t, frame, size.w, size.h)
				plain := ansi.Strip(frame)
				if strings.Contains(plain, "…") {
					t.Errorf("a line is cut:\n%s", plain)
				}
				for _, s := range v.want {
					if !strings.Contains(plain, s) {
						t.Errorf("frame lacks %q:\n%s", s, plain)
					}
				}
			})
		}
	}
}

// TestFramesFitEverySize: nothing wraps or overflows, from a small terminal to a large one,
// in every mode of the screen.
func TestFramesFitEverySize(t *testing.T) {
	sizes := [][2]int{{80, 24}, {160, 48}, {60, 20}, {100, 30}, {40, 10}, {200, 60}, {79, 23}}
	for _, sz := range sizes {
		for _, mode := range []string{"normal", "help", "command", "confirm", "ended"} {
			m, fe := newFixtureModel(sz[0], sz[1], false)
			switch mode {
			case "help":
				m.help = true
			case "command":
				m.commanding = true
			case "confirm":
				m.confirm = "quit"
			case "ended":
				fe.snap.Ended = fixedNow
				fe.snap.State = engine.Done
				m.refresh()
			}
			t.Run(mode, func(t *testing.T) { checkFrame(t, m.Render(), sz[0], sz[1]) })
		}
	}
}

// TestSmallTerminalDropsPanelsInOrder: below 80x24 the change log goes first, then errors,
// then charts; the key line always stays.
func TestSmallTerminalDropsPanelsInOrder(t *testing.T) {
	for _, tc := range []struct {
		h             int
		want, without []string
	}{
		{24, []string{"─ changes", "─ errors", "p50 ", "─ advisor"}, nil},
		{20, []string{"─ errors", "p50 ", "─ advisor"}, []string{"─ changes"}},
		{14, []string{"p50 ", "─ advisor"}, []string{"─ changes", "─ errors"}},
		{10, []string{"─ advisor"}, []string{"─ changes", "─ errors", "p50 "}},
	} {
		m, _ := newFixtureModel(80, tc.h, true)
		frame := ansi.Strip(m.Render())
		for _, s := range tc.want {
			if !strings.Contains(frame, s) {
				t.Errorf("80x%d frame lacks %q:\n%s", tc.h, s, frame)
			}
		}
		for _, s := range tc.without {
			if strings.Contains(frame, s) {
				t.Errorf("80x%d frame still has %q:\n%s", tc.h, s, frame)
			}
		}
		if !strings.Contains(frame, "q quit") {
			t.Errorf("80x%d frame lacks the key line", tc.h)
		}
	}
}

func TestNoColor(t *testing.T) {
	plain, _ := newFixtureModel(160, 48, true)
	if loc := colourSGR.FindStringIndex(plain.Render()); loc != nil {
		t.Errorf("NO_COLOR frame has a colour escape %q", plain.Render()[loc[0]:loc[1]])
	}
	// The same frame in colour does have colour escapes, so the check above can fail.
	coloured, _ := newFixtureModel(160, 48, false)
	if !colourSGR.MatchString(coloured.Render()) {
		t.Error("colour frame has no colour escape: the NO_COLOR check would pass vacuously")
	}
	// State is never told by colour alone: the plain frame carries the words and symbols.
	frame := plain.Render()
	for _, s := range []string{"● running", "■", "▪", "·", "○", "calling 16", "binding: rate"} {
		if !strings.Contains(frame, s) {
			t.Errorf("plain frame lacks %q", s)
		}
	}
}

func TestResizeRelaysTheScreen(t *testing.T) {
	m, _ := newFixtureModel(80, 24, true)
	next, _ := m.Update(tea.WindowSizeMsg{Width: 160, Height: 48})
	frame := next.(Model).Render()
	checkFrame(t, frame, 160, 48)
	if !strings.Contains(ansi.Strip(frame), "chart window") {
		t.Error("160-wide key line lacks the chart-window key that only fits there")
	}
}

// press sends a key to the model and returns the new model.
func press(t *testing.T, m Model, keys ...string) Model {
	t.Helper()
	for _, k := range keys {
		var msg tea.KeyPressMsg
		switch k {
		case "up":
			msg = tea.KeyPressMsg{Code: tea.KeyUp}
		case "left":
			msg = tea.KeyPressMsg{Code: tea.KeyLeft}
		case "right":
			msg = tea.KeyPressMsg{Code: tea.KeyRight}
		case "shift+left":
			msg = tea.KeyPressMsg{Code: tea.KeyLeft, Mod: tea.ModShift}
		case "shift+right":
			msg = tea.KeyPressMsg{Code: tea.KeyRight, Mod: tea.ModShift}
		case "down":
			msg = tea.KeyPressMsg{Code: tea.KeyDown}
		case "pgup":
			msg = tea.KeyPressMsg{Code: tea.KeyPgUp}
		case "pgdown":
			msg = tea.KeyPressMsg{Code: tea.KeyPgDown}
		case "enter":
			msg = tea.KeyPressMsg{Code: tea.KeyEnter}
		case "esc":
			msg = tea.KeyPressMsg{Code: tea.KeyEscape}
		case " ":
			msg = tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
		case "ctrl+c":
			msg = tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
		default:
			r := []rune(k)[0]
			msg = tea.KeyPressMsg{Code: r, Text: k}
		}
		if msg.String() != k && k != " " {
			t.Fatalf("key %q is sent as %q", k, msg.String())
		}
		next, _ := m.Update(msg)
		m = next.(Model)
	}
	return m
}

func TestKeysTurnTheKnobs(t *testing.T) {
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{[]string{"up"}, "tui parallelism 25"},
		{[]string{"down"}, "tui parallelism 23"},
		{[]string{"pgup"}, "tui parallelism 48"},
		{[]string{"pgdown"}, "tui parallelism 12"},
		{[]string{"]"}, "tui pace 300ms"},
		{[]string{"["}, "tui pace 200ms"},
		{[]string{"+"}, "tui rate 220/s burst 1"},
		{[]string{"-"}, "tui rate 180/s burst 1"},
		{[]string{"p"}, "tui pause"},
		{[]string{"d", "y"}, "tui drain"},
		{[]string{":", "p", "a", "r", "a", "l", "l", "e", "l", "i", "s", "m", " ", "6", "4", "enter"}, "tui parallelism 64"},
		{[]string{":", "r", "a", "t", "e", " ", "3", "0", "0", "/", "s", "enter"}, "tui rate 300/s burst 1"},
	} {
		m, fe := newFixtureModel(80, 24, true)
		press(t, m, tc.keys...)
		if len(fe.calls) != 1 || fe.calls[0] != tc.want {
			t.Errorf("keys %q sent %q, want [%q]", tc.keys, fe.calls, tc.want)
		}
	}
}

// starvedMonitor is a run at 100 ok calls/s for 30 s, then 15 s in which a 429 with a 1 s
// Retry-After each second holds the pool: 20 calls/s go out, of a target that takes 100/s.
func starvedMonitor() *probes.Monitor {
	mon := probes.NewMonitor(probes.AdvisorConfig{}, false)
	from := fixedNow.Add(-45 * time.Second).Truncate(5 * time.Second)
	for sec := range 45 {
		t0 := from.Add(time.Duration(sec) * time.Second)
		n := 100
		if sec >= 30 {
			n = 20
		}
		for i := range n {
			ev := engine.Event{Kind: engine.CallEnd, At: t0.Add(time.Duration(i) * time.Second / time.Duration(n)), Latency: 50 * time.Millisecond,
				Status: 200, Verdict: engine.OK}
			if sec >= 30 && i == 0 {
				ev.Status, ev.Verdict, ev.RetryAfter = 429, engine.Retry, time.Second
			}
			mon.Observe(ev)
		}
	}
	return mon
}

// TestLowerRateOnAnUnlimitedRun: - on a run without a rate ceiling sets one 10% under what the
// run holds to — the effective rate, or the limit the target showed, or what it accepted away
// from Retry-After holds — never under the calls/s of windows the holds starved (the issue's
// "20 calls/s of 14/s cap" while the target took 100/s).
func TestLowerRateOnAnUnlimitedRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		eff  engine.Effective
		mon  *probes.Monitor
		want string // the control sent; "" for none
		say  string
	}{
		{"held down by Retry-After: from the last window no hold starved", engine.Effective{QuotaLeft: -1}, starvedMonitor(),
			"tui rate 90/s burst 1", "rate ceiling none → 90/s, 10% under what the target accepted (100/s)"},
		{"the effective rate binds", engine.Effective{Rate: 188, Limit: 198, Signals: 2, QuotaLeft: -1}, starvedMonitor(),
			"tui rate 169/s burst 1", "rate ceiling none → 169/s, 10% under the effective rate (188/s)"},
		{"the limit found, the effective rate climbed away", engine.Effective{Limit: 200, Signals: 2, QuotaLeft: -1}, starvedMonitor(),
			"tui rate 180/s burst 1", "10% under the limit found (200/s)"},
		{"nothing measured away from holds", engine.Effective{QuotaLeft: -1}, probes.NewMonitor(probes.AdvisorConfig{}, false),
			"", "no rate measured away from Retry-After holds yet"},
	} {
		fe := &fakeEngine{snap: busySnapshot()}
		fe.snap.Settings.Rate, fe.snap.Effective = 0, tc.eff
		m := New(fe, tc.mon, Options{Title: "t", Plain: true, Now: func() time.Time { return fixedNow }})
		if got := m.fig.CallsPerSecond(); tc.want != "" && got > 25 {
			t.Fatalf("%s: the fixture's last seconds do %.0f calls/s, want the starved 20", tc.name, got)
		}
		m = press(t, m, "-")
		if got := strings.Join(fe.calls, ","); got != tc.want {
			t.Errorf("%s: - sent %q, want %q", tc.name, got, tc.want)
		}
		if frame := ansi.Strip(m.Render()); !strings.Contains(frame, tc.say) {
			t.Errorf("%s: - says nothing of %q:\n%s", tc.name, tc.say, frame)
		}
	}
}

// TestKeysLowerFromTheEffectiveValue: ↓ and - lower the ceiling from the effective value
// while it binds (a ceiling lowered but still above it would change nothing); ↑ and + raise
// the ceiling from the ceiling.
func TestKeysLowerFromTheEffectiveValue(t *testing.T) {
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{[]string{"down"}, "tui parallelism 15"},
		{[]string{"pgdown"}, "tui parallelism 8"},
		{[]string{"up"}, "tui parallelism 25"},
		{[]string{"-"}, "tui rate 176/s burst 1"},
		{[]string{"+"}, "tui rate 275/s burst 1"},
	} {
		m, fe := newEffectiveModel(80, 24, true)
		press(t, m, tc.keys...)
		if len(fe.calls) != 1 || fe.calls[0] != tc.want {
			t.Errorf("effective values bind; keys %q sent %q, want [%q]", tc.keys, fe.calls, tc.want)
		}
	}
}

func TestParallelismStopsAtCeiling(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	m = press(t, m, "pgup", "pgup") // 24 → 48 → 64 (the ceiling), not 96
	if fe.snap.Settings.Parallelism != 64 {
		t.Errorf("parallelism after PgUp twice = %d, want the ceiling 64", fe.snap.Settings.Parallelism)
	}
	m = press(t, m, "up")
	if !strings.Contains(ansi.Strip(m.Render()), "at its max (--max-parallelism 64)") {
		t.Error("a raise past --max-parallelism does not say why nothing changed")
	}
}

func TestBadCommandChangesNothing(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	m = press(t, m, ":", "p", "a", "c", "e", " ", "f", "a", "s", "t", "enter")
	if len(fe.calls) != 0 {
		t.Errorf("a bad command sent %q", fe.calls)
	}
	if !strings.Contains(ansi.Strip(m.Render()), `pace "fast"`) {
		t.Errorf("a bad command does not explain itself:\n%s", ansi.Strip(m.Render()))
	}
}

func TestQuitAsksThenDrains(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	m = press(t, m, "q")
	if !strings.Contains(ansi.Strip(m.Render()), "q or y drains and quits") || len(fe.calls) != 0 {
		t.Fatalf("first q: calls %q, screen:\n%s", fe.calls, ansi.Strip(m.Render()))
	}
	m = press(t, m, "esc")
	if len(fe.calls) != 0 || m.quitting {
		t.Fatalf("esc after q: calls %q, quitting %v; want nothing", fe.calls, m.quitting)
	}
	m = press(t, m, "q", "q")
	if len(fe.calls) != 1 || fe.calls[0] != "tui drain" || !m.quitting {
		t.Fatalf("q q: calls %q, quitting %v; want a drain and quitting", fe.calls, m.quitting)
	}
	// The program quits on the first tick after the run has ended, not before.
	_, cmd := m.Update(tickMsg(fixedNow))
	if cmd == nil {
		t.Fatal("tick returned no command")
	}
	if _, quit := cmd().(tea.QuitMsg); quit {
		t.Fatal("quit before the run ended")
	}
	fe.snap.Ended = fixedNow
	_, cmd = m.Update(tickMsg(fixedNow))
	if cmd == nil {
		t.Fatal("tick after the end returned no command")
	}
	if _, quit := cmd().(tea.QuitMsg); !quit {
		t.Error("no quit after the run ended")
	}
}

func TestCtrlCDrainsThenStops(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	m = press(t, m, "ctrl+c")
	m = press(t, m, "ctrl+c")
	if strings.Join(fe.calls, ",") != "tui drain,tui stop" || !m.quitting {
		t.Errorf("ctrl+c twice: calls %q, quitting %v; want drain then stop", fe.calls, m.quitting)
	}
}

func TestFinalScreenWaitsForAKey(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	fe.snap.Ended, fe.snap.State = fixedNow, engine.Done
	m.refresh()
	frame := ansi.Strip(m.Render())
	for _, s := range []string{"✓ done", "276,906 ok", "press any key to exit"} {
		if !strings.Contains(frame, s) {
			t.Errorf("final screen lacks %q:\n%s", s, frame)
		}
	}
	_, cmd := m.Update(tea.KeyPressMsg{Code: 'x', Text: "x"})
	if cmd == nil {
		t.Fatal("a key on the final screen returned no command")
	}
	if _, quit := cmd().(tea.QuitMsg); !quit {
		t.Error("a key on the final screen did not quit")
	}
}

func TestWindowKeyCyclesChartSpan(t *testing.T) {
	m, _ := newFixtureModel(80, 24, true)
	for _, want := range []string{"· 15m chart", "· 1m chart", "· 5m chart"} {
		m = press(t, m, "w")
		if frame := ansi.Strip(m.Render()); !strings.Contains(frame, want) {
			t.Errorf("after w the charts do not say %q", want)
		}
	}
}

// TestKeyChangesTheRealEngine: a key press reaches a real engine's parallelism.
func TestKeyChangesTheRealEngine(t *testing.T) {
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 4, Burst: 1},
		Adapter:  engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) { return engine.Outcome{}, nil }),
		Source:   engine.NewLineReader(strings.NewReader("a\n"), false),
		Results:  &strings.Builder{},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := New(e, probes.NewMonitor(probes.AdvisorConfig{}, false), Options{Title: "t", Now: func() time.Time { return fixedNow }})
	press(t, m, "up", "pgup")
	if got := e.Settings().Parallelism; got != 10 {
		t.Errorf("engine parallelism after ↑ and PgUp = %d, want (4+1)×2 = 10", got)
	}
	if ch := e.Changes(); len(ch) != 2 || ch[1].Origin != "tui" || ch[1].To != "10" {
		t.Errorf("change log = %v, want two tui changes ending at 10", ch)
	}
}

func TestWarningsShow(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	fe.snap.Warnings = []string{"parallelism 200 needs about 264 open files but the limit is 100"}
	m.refresh()
	if frame := ansi.Strip(m.Render()); !strings.Contains(frame, "warning: parallelism 200 needs") {
		t.Errorf("the engine's warning is not on the screen:\n%s", frame)
	}
}

// TestWorkerStrip: every worker has a cell when the strip has room (a grid of rows of 32 at
// 160x48); when it has not, the cells drawn and the "+N" after them add up to the workers,
// the cells in proportion of the states.
func TestWorkerStrip(t *testing.T) {
	more := regexp.MustCompile(`[■·] \+(\d+)`)
	strip := regexp.MustCompile(`^[■▪·◇○×]+( \+\d+)? *$`)
	for _, tc := range []struct {
		w, h, workers int
		rows          int // rows of cells in the strip
		hidden        bool
	}{
		{160, 48, 64, 2, false}, {160, 48, 256, 4, false}, {200, 60, 24, 1, false},
		{80, 24, 64, 1, true}, {60, 20, 64, 1, true}, {80, 24, 256, 1, true}, {100, 30, 24, 1, false},
	} {
		m, fe := newFixtureModel(tc.w, tc.h, true)
		fe.snap.Workers = make([]engine.WorkerState, tc.workers)
		fe.snap.ByState = [len(fe.snap.ByState)]int{}
		for i := range fe.snap.Workers {
			st := engine.WorkerCalling
			if i%4 == 0 {
				st = engine.WorkerRateWait
			}
			fe.snap.Workers[i] = st
			fe.snap.ByState[st]++
		}
		fe.snap.Settings.Parallelism = tc.workers
		m.refresh()
		frame := m.Render()
		checkFrame(t, frame, tc.w, tc.h)
		plain := ansi.Strip(frame)
		calling, waiting, rows := 0, 0, 0
		for _, l := range strings.Split(plain, "\n") {
			col := []rune(l)[1:] // the strip is under the knobs on a narrow screen, beside them from 80 columns
			if tc.w >= 80 {
				col = col[40:]
			}
			if strip.MatchString(string(col)) {
				rows++
				calling += strings.Count(string(col), "■")
				waiting += strings.Count(string(col), "·")
			}
		}
		drawn, hidden := calling+waiting, 0
		if mm := more.FindStringSubmatch(plain); mm != nil {
			hidden, _ = strconv.Atoi(mm[1])
		}
		name := fmt.Sprintf("%dx%d, %d workers", tc.w, tc.h, tc.workers)
		if drawn+hidden != tc.workers {
			t.Errorf("%s: %d cells + %d counted = %d, want every worker", name, drawn, hidden, drawn+hidden)
		}
		if (hidden > 0) != tc.hidden {
			t.Errorf("%s: %d workers not drawn, want some: %v", name, hidden, tc.hidden)
		}
		if rows != tc.rows {
			t.Errorf("%s: the strip takes %d rows, want %d", name, rows, tc.rows)
		}
		if share := float64(calling) / float64(drawn); share < 0.70 || share > 0.80 {
			t.Errorf("%s: %d of %d cells calling, want about 3 in 4 as the workers", name, calling, drawn)
		}
		if tc.rows > 1 && !strings.Contains(plain, strings.Repeat("■", gridRow)+" ") {
			t.Errorf("%s: the grid has no full row of %d", name, gridRow)
		}
	}
}

// TestAcceptAdvice: the advisor line shows the suggestion with its reason, and one key applies
// it to the engine, logged as the advisor's.
func TestAcceptAdvice(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	frame := ansi.Strip(m.Render())
	if !strings.Contains(frame, "raise rate 200/s → 250/s  a accept") {
		t.Fatalf("the advisor line lacks the suggestion and its key:\n%s", frame)
	}
	press(t, m, "a")
	if len(fe.calls) != 1 || fe.calls[0] != "advisor rate 250/s burst 1" {
		t.Errorf("a sent %q, want [\"advisor rate 250/s burst 1\"]", fe.calls)
	}
}

// TestAutoShowsItsChanges: under --auto the advisor line shows the tuner's last change.
func TestAutoShowsItsChanges(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	m.opt.Auto = true
	fe.snap.Changes = append(fe.snap.Changes, engine.Change{At: fixedNow.Add(-5 * time.Second), Origin: "auto", Knob: "parallelism", From: "24", To: "27"})
	m.refresh()
	frame := ansi.Strip(m.Render())
	if !strings.Contains(frame, "advisor · auto on") || !strings.Contains(frame, "auto: parallelism 24 → 27") || strings.Contains(frame, "a accept") {
		t.Errorf("under --auto the advisor panel does not show the tuner's change (or still offers a key):\n%s", frame)
	}
}

// TestWorkersWaitingForALimit: workers whose calls wait for a shared limit (or a host's turn)
// show as waiting for it, with a symbol of their own, not as calling; with nothing else
// holding them, the limit is what binds.
func TestWorkersWaitingForALimit(t *testing.T) {
	m, fe := newFixtureModel(80, 24, true)
	fe.snap.Workers = make([]engine.WorkerState, 16)
	fe.snap.ByState = [len(fe.snap.ByState)]int{}
	for i := range fe.snap.Workers {
		st := engine.WorkerWaiting
		if i == 0 {
			st = engine.WorkerCalling
		}
		fe.snap.Workers[i] = st
		fe.snap.ByState[st]++
	}
	fe.snap.WaitingFor = map[string]int{"limit tmdb": 15}
	fe.snap.InFlight = 1
	fe.snap.Settings.Parallelism = 16
	m.refresh()
	frame := ansi.Strip(m.Render())
	checkFrame(t, frame, 80, 24)
	if !strings.Contains(frame, "calling 1 waiting for limit tmdb 15 ") {
		t.Errorf("the worker counts do not say the workers wait for the limit:\n%s", frame)
	}
	if got := strings.Count(frame, "▫"); got != 15 {
		t.Errorf("%d waiting cells, want 15:\n%s", got, frame)
	}
	if got := instantBinding(fe.snap); got != "limit tmdb" {
		t.Errorf("instantBinding = %q, want limit tmdb", got)
	}
}

// TestShortMessages: a message in the key line too wide for it loses its least part first
// (a closing parenthesis, then a clause after ; or ,), not its end.
func TestShortMessages(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		w    int
		want string
	}{
		{"draining: no new calls; the run ends when the calls in flight finish", 59, "draining: no new calls"},
		{"paused: calls in flight finish, no new call starts (p to resume)", 59, "paused: calls in flight finish, no new call starts"},
		{"paused: calls in flight finish, no new call starts (p to resume)", 40, "paused: calls in flight finish"},
		{"parallelism ceiling 4 → 8", 59, "parallelism ceiling 4 → 8"},
	} {
		if got := shorten(tc.msg, tc.w); got != tc.want {
			t.Errorf("shorten(%q, %d) = %q, want %q", tc.msg, tc.w, got, tc.want)
		}
	}
	m, _ := newFixtureModel(60, 20, true)
	m = press(t, m, "p")
	if l := lastRow(m); strings.Contains(l, "…") || !strings.Contains(l, "paused: calls in flight finish") {
		t.Errorf("the key line at 60 columns after p: %q", l)
	}
}

// TestTitleGivesWay: a long title gives way in order — the count of items moves to the
// progress line, a path to its base name, the badge goes — before it is cut, and the state
// stays on the first line.
func TestTitleGivesWay(t *testing.T) {
	for _, tc := range []struct {
		title   string
		w       int
		line1   []string // on the first line
		notCut  bool
		line2in string // ends the progress line
	}{
		{"http · users.txt", 80, []string{"throttle", "http · users.txt · 1,200,000 items", "● running"}, true, ""},
		{"sim · /tmp/TestTmuxAttachssh_drop2299704109/001/ids.txt", 80, []string{"throttle", "sim · ids.txt · 1,200,000 items", "● running", "ETA"}, true, ""},
		{"demo · sim API 127.0.0.1:38289", 66, []string{"demo · sim API 127.0.0.1:38289", "● running"}, true, "1,200,000 items"},
		{"http · a title far too long for any screen of sixty columns", 60, []string{"http · a title", "● running"}, false, "1,200,000 items"},
	} {
		m, _ := newFixtureModel(tc.w, 24, true)
		m.opt.Title = tc.title
		lines := strings.Split(ansi.Strip(m.Render()), "\n")
		for _, s := range tc.line1 {
			if !strings.Contains(lines[0], s) {
				t.Errorf("%q at %d columns: the first line lacks %q: %q", tc.title, tc.w, s, lines[0])
			}
		}
		if cut := strings.Contains(lines[0], "…"); cut == tc.notCut {
			t.Errorf("%q at %d columns: cut %v, want %v: %q", tc.title, tc.w, cut, !tc.notCut, lines[0])
		}
		if tc.line2in != "" && !strings.Contains(lines[1], tc.line2in) {
			t.Errorf("%q at %d columns: the progress line lacks %q: %q", tc.title, tc.w, tc.line2in, lines[1])
		}
	}
}

// TestLongErrorWraps: an error message too long for the line goes on at a space, not cut.
func TestLongErrorWraps(t *testing.T) {
	m, _ := newFixtureModel(80, 24, true)
	msg := `Get "http://127.0.0.1:41233/items/1": dial tcp 127.0.0.1:41233: connect: connection refused`
	m.errs = []probes.ErrorGroup{{Message: msg, Count: 7}}
	frame := ansi.Strip(m.Render())
	checkFrame(t, m.Render(), 80, 24)
	if strings.Contains(frame, "…") {
		t.Errorf("a line is cut:\n%s", frame)
	}
	for _, want := range []string{`7 × Get "http://127.0.0.1:41233/items/1": dial tcp`, "connection refused"} {
		if !strings.Contains(frame, want) {
			t.Errorf("no %q:\n%s", want, frame)
		}
	}
}
