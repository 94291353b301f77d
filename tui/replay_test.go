package tui

import (
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"

	"github.com/throttle-dev/throttle/engine"
)

// fakeReplay is a Replay whose position moves only when a key moves it.
type fakeReplay struct {
	mu             sync.Mutex
	pos, length    time.Duration
	speed          float64
	paused         bool
	changes, burst []time.Duration // what NextChange and NextBurst jump to
}

func (f *fakeReplay) Position() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pos
}
func (f *fakeReplay) Length() time.Duration { return f.length }
func (f *fakeReplay) Speed() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.speed
}
func (f *fakeReplay) Paused() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused
}
func (f *fakeReplay) TogglePause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = !f.paused
}
func (f *fakeReplay) SetSpeed(x float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.speed = x
}
func (f *fakeReplay) Seek(d time.Duration) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pos = min(max(f.pos+d, 0), f.length)
	return f.pos
}
func (f *fakeReplay) NextChange() bool { return f.jump(f.changes) }
func (f *fakeReplay) NextBurst() bool  { return f.jump(f.burst) }
func (f *fakeReplay) jump(to []time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, at := range to {
		if at > f.pos {
			f.pos = at
			return true
		}
	}
	return false
}

// newReplayModel is the fixture run seen as a recording 1:12:31 into its 2 hours, at 10x.
func newReplayModel(width, height int, plain bool) (Model, *fakeEngine, *fakeReplay) {
	fe := &fakeEngine{snap: busySnapshot()}
	fr := &fakeReplay{pos: fixedNow.Sub(fixedStart), length: 2 * time.Hour, speed: 10,
		changes: []time.Duration{75 * time.Minute}, burst: []time.Duration{80 * time.Minute}}
	m := New(fe, busySeries(), Options{Title: "http · users.txt", Retries: 3, Plain: plain, Replay: fr,
		Now: func() time.Time { return fixedNow }})
	m.width, m.height = width, height
	return m, fe, fr
}

// TestReplayGoldenFrames keeps the replay screen and its help at every golden size; nothing
// on them is cut.
func TestReplayGoldenFrames(t *testing.T) {
	for _, tc := range goldenSizes {
		for _, help := range []bool{false, true} {
			name := tc.name
			want := []string{"1,200,000 items", "REPLAY 1:12:31 / 2:00:00 · 10x", "space pause", "? help", "q quit"}
			if help {
				name = "help-" + tc.name
				want = append(want, "--what-if", "parallelism=N,rate=R", "× above the limit", "next burst of 429s")
			}
			t.Run(name, func(t *testing.T) {
				m, _, _ := newReplayModel(tc.w, tc.h, true)
				m.help = help
				frame := m.Render()
				checkFrame(t, frame, tc.w, tc.h)
				plain := ansi.Strip(frame)
				if strings.Contains(plain, "…") {
					t.Errorf("a line is cut:\n%s", plain)
				}
				for _, s := range want {
					if !strings.Contains(plain, s) {
						t.Errorf("frame lacks %q:\n%s", s, plain)
					}
				}
				golden.RequireEqual(t, plain+"\n")
			})
		}
	}
}

func TestReplayFramesFitEverySize(t *testing.T) {
	for _, sz := range [][2]int{{80, 24}, {160, 48}, {60, 20}, {100, 30}, {40, 10}, {200, 60}, {79, 23}} {
		for _, mode := range []string{"normal", "help", "paused", "ended"} {
			m, fe, fr := newReplayModel(sz[0], sz[1], false)
			switch mode {
			case "help":
				m.help = true
			case "paused":
				fr.paused = true
				m.refresh()
			case "ended":
				fe.snap.Ended, fe.snap.State = fixedNow, engine.Done
				m.refresh()
			}
			t.Run(mode, func(t *testing.T) { checkFrame(t, m.Render(), sz[0], sz[1]) })
		}
	}
}

// TestReplayHeaderAndKeyLine: the header tells a replay, its position, length and speed; no
// knob key is offered anywhere on the screen.
func TestReplayHeaderAndKeyLine(t *testing.T) {
	m, _, _ := newReplayModel(80, 24, true)
	frame := ansi.Strip(m.Render())
	lines := strings.Split(frame, "\n")
	if !strings.Contains(lines[0], "REPLAY 1:12:31 / 2:00:00 · 10x") {
		t.Errorf("header %q lacks the replay's position, length and speed", lines[0])
	}
	last := lines[len(lines)-1]
	for _, want := range []string{"space pause", "1-4 speed", "←→ 10s", "⇞⇟ 1m", "n change", "b 429s", "? help", "q quit"} {
		if !strings.Contains(last, want) {
			t.Errorf("key line %q lacks %q", last, want)
		}
	}
	for _, knob := range []string{"↑↓", "[ ]", "+ -", "a accept", "d drain", "ETA"} {
		if strings.Contains(frame, knob) {
			t.Errorf("the replay screen offers %q:\n%s", knob, frame)
		}
	}
	if !strings.Contains(frame, "knobs as recorded") {
		t.Errorf("the knob panel does not say it shows the recorded knobs:\n%s", frame)
	}
	m = press(t, m, " ")
	if l := strings.Split(ansi.Strip(m.Render()), "\n")[0]; !strings.Contains(l, "10x · paused") {
		t.Errorf("header after space %q, want it paused", l)
	}
}

func TestReplayKeys(t *testing.T) {
	start := fixedNow.Sub(fixedStart)
	for _, tc := range []struct {
		keys   []string
		pos    time.Duration
		speed  float64
		paused bool
	}{
		{[]string{" "}, start, 10, true},
		{[]string{" ", "p"}, start, 10, false},
		{[]string{"1"}, start, 1, false},
		{[]string{"3"}, start, 100, false},
		{[]string{"4"}, start, 0, false},
		{[]string{"left"}, start - 10*time.Second, 10, false},
		{[]string{"right", "right"}, start + 20*time.Second, 10, false},
		{[]string{"pgup"}, start - time.Minute, 10, false},
		{[]string{"pgdown"}, start + time.Minute, 10, false},
		{[]string{"shift+left"}, start - time.Minute, 10, false},
		{[]string{"shift+right"}, start + time.Minute, 10, false},
		{[]string{"n"}, 75 * time.Minute, 10, false},
		{[]string{"b"}, 80 * time.Minute, 10, false},
		{[]string{"b", "b"}, 80 * time.Minute, 10, false}, // none after: stays
	} {
		m, fe, fr := newReplayModel(80, 24, true)
		press(t, m, tc.keys...)
		if fr.pos != tc.pos || fr.speed != tc.speed || fr.paused != tc.paused {
			t.Errorf("keys %q: position %v speed %v paused %v; want %v %v %v", tc.keys, fr.pos, fr.speed, fr.paused, tc.pos, tc.speed, tc.paused)
		}
		if len(fe.calls) != 0 {
			t.Errorf("keys %q sent %q to the engine", tc.keys, fe.calls)
		}
	}
}

// TestReplayJumpsSayWhere: n and b say where they went, or that there is nothing ahead.
func TestReplayJumpsSayWhere(t *testing.T) {
	m, _, _ := newReplayModel(80, 24, true)
	m = press(t, m, "n")
	if last := lastRow(m); !strings.Contains(last, "1:11:40  parallelism 16 → 24 (tui)") {
		t.Errorf("after n the key line says %q, want the change jumped to", last)
	}
	m = press(t, m, "n")
	if last := lastRow(m); !strings.Contains(last, "no change of a knob after 1:15:00") {
		t.Errorf("after a second n the key line says %q, want that there is none", last)
	}
	m = press(t, m, "b")
	if last := lastRow(m); !strings.Contains(last, "1:20:00  429s begin again") {
		t.Errorf("after b the key line says %q", last)
	}
}

// TestReplayKnobsAreReadOnly: a knob key changes nothing and says why, with what to ask
// instead.
func TestReplayKnobsAreReadOnly(t *testing.T) {
	for _, k := range []string{"up", "down", "k", "J", "]", "[", "+", "-", "d", ":", "a"} {
		m, fe, fr := newReplayModel(80, 24, true)
		m = press(t, m, k)
		if len(fe.calls) != 0 || m.commanding || m.confirm != "" {
			t.Errorf("%s in a replay: engine calls %q, commanding %v, confirm %q", k, fe.calls, m.commanding, m.confirm)
		}
		if fr.pos != fixedNow.Sub(fixedStart) {
			t.Errorf("%s in a replay moved the position to %v", k, fr.pos)
		}
		if last := lastRow(m); !strings.Contains(last, "read-only") || !strings.Contains(last, "--what-if") {
			t.Errorf("%s in a replay: key line %q, want it to say the knobs are read-only and suggest --what-if", k, last)
		}
	}
}

// TestReplayQuitsAtOnce: q and ctrl+c leave without asking, even mid-run; the end of the
// run is no final screen: keys still move the position.
func TestReplayQuitsAtOnce(t *testing.T) {
	for _, k := range []tea.KeyPressMsg{{Code: 'q', Text: "q"}, {Code: 'c', Mod: tea.ModCtrl}} {
		m, fe, _ := newReplayModel(80, 24, true)
		_, cmd := m.Update(k)
		if cmd == nil {
			t.Fatalf("%s returned no command", k)
		}
		if _, quit := cmd().(tea.QuitMsg); !quit || len(fe.calls) != 0 {
			t.Errorf("%s in a replay: quit %v, engine calls %q; want a quit and nothing sent", k, quit, fe.calls)
		}
	}

	m, fe, fr := newReplayModel(80, 24, true)
	fe.snap.Ended, fe.snap.State = fixedNow, engine.Done
	m.refresh()
	frame := ansi.Strip(m.Render())
	if strings.Contains(frame, "press any key") || !strings.Contains(frame, "done in 1:12:31") {
		t.Errorf("the end of a replay reads as a final screen:\n%s", frame)
	}
	next, cmd := m.Update(tea.KeyPressMsg{Code: tea.KeyLeft})
	if cmd != nil {
		if _, quit := cmd().(tea.QuitMsg); quit {
			t.Fatal("← at the end of a replay quit")
		}
	}
	if fr.pos != fixedNow.Sub(fixedStart)-10*time.Second {
		t.Errorf("← at the end: position %v, want 10 s back", fr.pos)
	}
	if _, ok := next.(Model); !ok {
		t.Fatal("Update returned another model")
	}
}

func TestReplayHelp(t *testing.T) {
	m, _, _ := newReplayModel(80, 24, true)
	m = press(t, m, "?")
	frame := ansi.Strip(m.Render())
	for _, want := range []string{"help · replay", "pause / play", "speed 1x · 10x · 100x · max", "back 10s", "forward 1m",
		"next change", "next burst of 429s", "--what-if"} {
		if !strings.Contains(frame, want) {
			t.Errorf("replay help lacks %q:\n%s", want, frame)
		}
	}
	if strings.Contains(frame, "parallelism ceiling +1") {
		t.Errorf("replay help lists the knob keys:\n%s", frame)
	}
	m = press(t, m, "x")
	if m.help {
		t.Error("a key did not close the help")
	}
}

func lastRow(m Model) string {
	lines := strings.Split(ansi.Strip(m.Render()), "\n")
	return lines[len(lines)-1]
}
