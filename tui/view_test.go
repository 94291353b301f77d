package tui

import (
	"context"
	"regexp"
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

// TestGoldenFrames keeps the screen at 80x24 and 160x48 (plain text, as NO_COLOR shows it).
func TestGoldenFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		w, h int
	}{{"80x24", 80, 24}, {"160x48", 160, 48}} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newFixtureModel(tc.w, tc.h, true)
			frame := m.Render()
			checkFrame(t, frame, tc.w, tc.h)
			golden.RequireEqual(t, ansi.Strip(frame)+"\n")
		})
	}
}

// TestGoldenFramesEffective keeps the screen of a run whose congestion response holds an
// effective rate (and, "both", an effective parallelism too) under the ceilings: each knob
// line says both, and nothing that carries meaning is cut at 80x24.
func TestGoldenFramesEffective(t *testing.T) {
	for _, tc := range []struct {
		name string
		w, h int
		par  bool
	}{{"80x24", 80, 24, false}, {"160x48", 160, 48, false}, {"both-80x24", 80, 24, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newEffectiveModel(tc.w, tc.h, tc.par)
			frame := m.Render()
			checkFrame(t, frame, tc.w, tc.h)
			plain := ansi.Strip(frame)
			want := []string{"191 calls/s of 196/s", "rate 196/s effective · ceiling 250/s", "burst 1", "+ - ±10%",
				"binding: server", "rate 196/s effective · ceiling 250/s: the target limits it, not the ceiling",
				"↑↓ + - ceilings", "q quit", "─ errors", "─ changes"}
			if tc.par { // the change panel has room for the newest change only
				want = append(want, "parallelism 16 effective · ceiling 24", "max 64", "↑↓ ±1 ⇞⇟ ×2", "16 in flight / 16 effective",
					"adapt  effective parallelism 24 → 16 (429 at 18 in flight)")
			} else {
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

// TestHelpFitsAt80: the help screen at the design width cuts no line.
func TestHelpFitsAt80(t *testing.T) {
	m, _ := newFixtureModel(80, 24, true)
	m.help = true
	frame := ansi.Strip(m.Render())
	if strings.Contains(frame, "…") {
		t.Errorf("the help at 80x24 cuts a line:\n%s", frame)
	}
	for _, s := range []string{"parallelism ceiling +1", "rate ceiling +10%", "ceilings:  under them throttle keeps an effective rate", "workers: ■ calling"} {
		if !strings.Contains(frame, s) {
			t.Errorf("the help lacks %q:\n%s", s, frame)
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
		{24, []string{"─ changes", "─ errors", "(p50", "─ advisor"}, nil},
		{20, []string{"─ errors", "(p50", "─ advisor"}, []string{"─ changes"}},
		{14, []string{"(p50", "─ advisor"}, []string{"─ changes", "─ errors"}},
		{10, []string{"─ advisor"}, []string{"─ changes", "─ errors", "(p50"}},
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
		if got := m.callsPerSecond(5); tc.want != "" && got > 25 {
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
	for _, want := range []string{"last 15m", "last 1m", "last 5m"} {
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

// TestWorkerGridAt160: 256 workers at 160x48 get a cell each over several rows; at 80x24 one
// row of cells that each stand for several workers.
func TestWorkerGridAt160(t *testing.T) {
	for _, tc := range []struct {
		w, h, cells int
	}{{160, 48, 192}, {80, 24, 28}} { // calling cells: 192 of 256 one by one; 192/7 at 80 wide
		m, fe := newFixtureModel(tc.w, tc.h, true)
		fe.snap.Workers = make([]engine.WorkerState, 256)
		fe.snap.ByState = [len(fe.snap.ByState)]int{}
		for i := range fe.snap.Workers {
			st := engine.WorkerCalling
			if i%4 == 0 {
				st = engine.WorkerRateWait
			}
			fe.snap.Workers[i] = st
			fe.snap.ByState[st]++
		}
		fe.snap.Settings.Parallelism = 256
		m.refresh()
		frame := m.Render()
		checkFrame(t, frame, tc.w, tc.h)
		if got := strings.Count(frame, "■"); got != tc.cells {
			t.Errorf("%dx%d: %d calling cells, want %d", tc.w, tc.h, got, tc.cells)
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
