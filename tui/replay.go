package tui

import (
	"fmt"
	"strconv"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/throttle-dev/throttle/internal/human"
)

// Replay is what the screen steers when it plays a recording instead of watching a run (a
// *replay.Player): a position in the recorded run that moves with the clock at a speed. The
// screen's Engine and Stats then answer for that position.
type Replay interface {
	Position() time.Duration
	Length() time.Duration
	// Speed is 1, 10, 100, … or 0 for as fast as possible.
	Speed() float64
	Paused() bool
	TogglePause()
	SetSpeed(x float64)
	Seek(delta time.Duration) time.Duration
	// NextChange and NextBurst jump ahead; they report false when there is nothing ahead.
	NextChange() bool
	NextBurst() bool
}

// ReplaySpeeds are the speeds the keys 1 to 4 choose: replay.Speeds, which this package
// cannot import (replay builds on engine and probes, as this package does). 0 is max.
var ReplaySpeeds = []float64{1, 10, 100, 0}

// Seek steps of the replay keys.
const (
	seekStep = 10 * time.Second
	seekLong = time.Minute
)

// readOnly is what a knob key says in a replay.
const readOnly = "read-only in a replay: try throttle replay FILE --what-if parallelism=N"

// replayState is the replay's position and pace as read at the last refresh.
type replayState struct {
	pos, length time.Duration
	speed       float64
	paused      bool
}

// ReplayKeyMap is every key of the replay screen, with its help text.
type ReplayKeyMap struct {
	PlayPause, Speed           key.Binding
	Back, Forward              key.Binding
	BackLong, ForwardLong      key.Binding
	NextChange, NextBurst      key.Binding
	Window, Help, Quit, Cancel key.Binding
}

// DefaultReplayKeys returns the replay keys shown in the help and the key line.
func DefaultReplayKeys() ReplayKeyMap {
	return ReplayKeyMap{
		PlayPause:   key.NewBinding(key.WithKeys("space", "p"), key.WithHelp("space/p", "pause / play")),
		Speed:       key.NewBinding(key.WithKeys("1", "2", "3", "4"), key.WithHelp("1 2 3 4", "speed 1x · 10x · 100x · max")),
		Back:        key.NewBinding(key.WithKeys("left", "h"), key.WithHelp("←/h", "back 10s")),
		Forward:     key.NewBinding(key.WithKeys("right", "l"), key.WithHelp("→/l", "forward 10s")),
		BackLong:    key.NewBinding(key.WithKeys("pgup", "shift+left", "H"), key.WithHelp("PgUp/⇧←", "back 1m")),
		ForwardLong: key.NewBinding(key.WithKeys("pgdown", "shift+right", "L"), key.WithHelp("PgDn/⇧→", "forward 1m")),
		NextChange:  key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "next change of a knob or of the state")),
		NextBurst:   key.NewBinding(key.WithKeys("b"), key.WithHelp("b", "next burst of 429s")),
		Window:      key.NewBinding(key.WithKeys("w"), key.WithHelp("w", "chart window 1m/5m/15m")),
		Help:        key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:        key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit")),
		Cancel:      key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit")),
	}
}

// helpRows are the replay help's lines, in order.
func (k ReplayKeyMap) helpRows() [][2]string {
	var rows [][2]string
	for _, b := range []key.Binding{k.PlayPause, k.Speed, k.Back, k.Forward, k.BackLong, k.ForwardLong,
		k.NextChange, k.NextBurst, k.Window, k.Help, k.Quit, k.Cancel} {
		rows = append(rows, [2]string{b.Help().Key, b.Help().Desc})
	}
	return rows
}

// compactRows are the replay help's lines on a screen too short for one key a line.
func (k ReplayKeyMap) compactRows() [][2]string {
	return [][2]string{
		{"space/p", "pause / play"},
		{"1 2 3 4", "speed 1x · 10x · 100x · max"},
		{"←→ h l", "back / forward 10s"},
		{"PgUp PgDn", "back / forward 1m (also ⇧← ⇧→)"},
		{"n b", "next change · next burst of 429s"},
		{"w", "chart window 1m/5m/15m"},
		{"q ctrl+c", "quit"},
	}
}

// replaying says whether the screen plays a recording.
func (m Model) replaying() bool { return m.opt.Replay != nil }

// replayKey handles a key in a replay: the run is over and nothing is sent anywhere, so q and
// ctrl+c leave at once, and the end of the run is a place to seek back from, not a final
// screen.
func (m Model) replayKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	r, k := m.opt.Replay, m.replayKeys
	if key.Matches(msg, k.Cancel, k.Quit) {
		return m, tea.Quit
	}
	if m.help {
		m.help = false // any key closes the help
		return m, nil
	}
	switch {
	case key.Matches(msg, k.PlayPause):
		r.TogglePause()
	case key.Matches(msg, k.Speed):
		i, _ := strconv.Atoi(msg.String())
		r.SetSpeed(ReplaySpeeds[i-1])
	case key.Matches(msg, k.Back):
		r.Seek(-seekStep)
	case key.Matches(msg, k.Forward):
		r.Seek(seekStep)
	case key.Matches(msg, k.BackLong):
		r.Seek(-seekLong)
	case key.Matches(msg, k.ForwardLong):
		r.Seek(seekLong)
	case key.Matches(msg, k.NextChange):
		if !r.NextChange() {
			m.say("no change of a knob after " + human.Clock(r.Position()))
			break
		}
		m.refresh()
		if ch := m.snap.Changes; len(ch) > 0 {
			c := ch[len(ch)-1]
			m.say(fmt.Sprintf("%s  %s", human.Clock(c.At.Sub(m.snap.Started)), c))
		}
	case key.Matches(msg, k.NextBurst):
		if !r.NextBurst() {
			m.say("no burst of 429s after " + human.Clock(r.Position()))
			break
		}
		m.say(human.Clock(r.Position()) + "  429s begin again")
	case key.Matches(msg, k.Window):
		m.window = (m.window + 1) % len(chartWindows)
	case key.Matches(msg, k.Help):
		m.help = true
	case m.knobKey(msg):
		m.say(readOnly)
	}
	m.refresh()
	return m, nil
}

// knobKey says whether msg is one of the live screen's keys that act on a run.
func (m Model) knobKey(msg tea.KeyPressMsg) bool {
	k := m.keys
	return key.Matches(msg, k.Up, k.Down, k.Double, k.Halve, k.PaceUp, k.PaceDown, k.RateUp, k.RateDown,
		k.Pause, k.Drain, k.Command, k.Accept)
}

// replayLabel is the header's "REPLAY 1:23 / 5:00 · 10x".
func (m Model) replayLabel() string {
	r := m.replay
	label := fmt.Sprintf("%s %s / %s · %s", m.styles.Title.Render("REPLAY"), human.Clock(r.pos), human.Clock(r.length), speedWord(r.speed))
	if r.paused {
		label += " · " + m.styles.Warn.Render("paused")
	}
	return label
}

// speedWord writes a speed as replay.FormatSpeed does.
func speedWord(x float64) string {
	if x <= 0 {
		return "max"
	}
	return strconv.FormatFloat(x, 'f', -1, 64) + "x"
}

// replayKeyLine is the key line of a replay.
func (m Model) replayKeyLine(w int) string {
	k := m.styles.Key.Render
	return keyHints(w, []keyHint{
		{k("space") + " pause", 0}, {k("1-4") + " speed", 0}, {k("←→") + " 10s", 0}, {k("⇞⇟") + " 1m", 3},
		{k("n") + " change", 2}, {k("b") + " 429s", 4}, {k("?") + " help", 0}, {k("q") + " quit", 0}, {k("w") + " chart window", 5},
	})
}

// replayHelp is the help screen of a replay.
func (m Model) replayHelp(w, rows int) []string {
	return m.helpPanel("help · replay", m.replayKeys.helpRows(), m.replayKeys.compactRows(), [][2]string{
		{"knobs:", "throttle replay FILE --what-if parallelism=N,rate=R predicts other knobs"},
		{"workers:", "■ calling  ▪ pacing  ◇ held  ○ idle  × above the limit"},
	}, w, rows)
}
