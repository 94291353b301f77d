// Package tui is throttle's terminal interface (Bubble Tea v2): one screen that answers "is it
// safe to go faster?" and the keys to act on the answer. It reads the engine's snapshot and
// the probes' statistics on its own tick, never per event, and sends controls back; a stalled
// terminal can therefore never slow the run. The same screen plays a recorded run back
// ([Options.Replay]), its knobs then read-only.
package tui

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
)

// Engine is what the screen reads and steers: an [*engine.Engine], or a job seen through its
// control socket. Every change is made with the origin "tui", so the change log tells who did it.
type Engine = engine.Controls

// Stats is where the screen reads windowed statistics and advice, e.g. a [*probes.Monitor].
type Stats interface {
	Points(now time.Time, span time.Duration) []probes.Point
	Latency(now time.Time) probes.Stats
	Errors(n int) []probes.ErrorGroup
	Advice(now time.Time, set engine.Settings, eff engine.Effective) probes.Advice
}

// Options describe the job to the screen.
type Options struct {
	Title   string // e.g. "http · users.txt"
	Retries int    // the run's retry budget, shown with the knobs
	FPS     int    // refreshes per second (default 4)
	Plain   bool   // no colour (NO_COLOR)
	Auto    bool   // the auto-tuner turns the knobs too
	// Attached: the screen watches a job that runs elsewhere (throttle attach); q and ctrl+c
	// detach and leave it running.
	Attached bool
	// Replay: the screen plays a recording (Engine and Stats answer for its position). The
	// knobs are read-only, the replay keys move through the run, and the end of the run is
	// no final screen: q and ctrl+c leave at once.
	Replay Replay
	// Now is the clock (default time.Now); tests fix it.
	Now func() time.Time
	// Hosts, when set, returns the n busiest hosts of a run with per-host limits or of a job
	// across hosts, which the errors panel lists.
	Hosts func(n int) Hosts
	// Binding, when set, says which shared limit (throttle limit) holds the run back, or "".
	Binding func() string
	// Connections, when set, counts the connections an adapter that holds one per worker
	// (postgres) has open: there parallelism is connections, and the screen says so.
	Connections func() int
}

// origin is the change log's name for changes made from this screen.
const origin = "tui"

// chartWindows are the chart spans the window key cycles through.
var chartWindows = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute}

// tickMsg asks the model to read a fresh snapshot.
type tickMsg time.Time

// Model is the root model; it alone implements tea.Model.
type Model struct {
	eng    Engine
	stats  Stats
	opt    Options
	keys   KeyMap
	styles Styles
	// replayKeys are the keys of a replay; replay its position and pace at the last refresh.
	replayKeys ReplayKeyMap
	replay     replayState

	width, height int
	snap          engine.Snapshot
	points        []probes.Point
	fig           probes.Figures // the current rates, each with its window: probes.Measure's
	latency       probes.Stats
	latWhole      bool // latency is the whole run's (the final screen), not the last window's
	errs          []probes.ErrorGroup
	hosts         Hosts
	conns         int    // open connections; -1 without Options.Connections
	shared        string // the shared limit that binds, from Options.Binding
	advice        probes.Advice
	window        int // index into chartWindows

	help       bool
	confirm    string // "quit" or "drain" while a confirmation is asked
	commanding bool
	input      textinput.Model
	flash      string
	flashUntil time.Time
	quitting   bool // quit as soon as the run has ended
	interrupts int
}

// New returns the model for a run.
func New(eng Engine, stats Stats, opt Options) Model {
	if opt.FPS <= 0 {
		opt.FPS = 4
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	in := textinput.New()
	in.Prompt = ": "
	in.Placeholder = "parallelism 64 · pace 250ms · rate 200/s · burst 5 · window 5m"
	in.CharLimit = 64
	m := Model{eng: eng, stats: stats, opt: opt, keys: DefaultKeys(), replayKeys: DefaultReplayKeys(),
		styles: NewStyles(opt.Plain), width: 80, height: 24, window: 1, input: in}
	m.refresh()
	return m
}

// Init starts the refresh tick.
func (m Model) Init() tea.Cmd { return m.tick() }

func (m Model) tick() tea.Cmd {
	return tea.Tick(time.Second/time.Duration(m.opt.FPS), func(t time.Time) tea.Msg { return tickMsg(t) })
}

// refresh reads the engine's snapshot and the statistics.
func (m *Model) refresh() {
	now := m.opt.Now()
	m.snap = m.eng.Snapshot()
	m.points = m.stats.Points(now, chartWindows[len(chartWindows)-1])
	m.fig = probes.Measure(m.snap, m.points)
	m.latency, m.latWhole = m.stats.Latency(now), false
	if o, ok := m.stats.(interface{ Overall() probes.Stats }); ok && !m.snap.Ended.IsZero() {
		// The final screen's latency is the summary's: over the whole run (a probes.Monitor's,
		// or an attached job's final view's).
		if all := o.Overall(); all.Calls > 0 {
			m.latency, m.latWhole = all, true
		}
	}
	m.errs = m.stats.Errors(8)
	if m.opt.Hosts != nil {
		m.hosts = m.opt.Hosts(6)
	}
	if m.opt.Binding != nil {
		m.shared = m.opt.Binding()
	}
	m.conns = -1
	if m.opt.Connections != nil {
		m.conns = m.opt.Connections()
	}
	m.advice = m.stats.Advice(now, m.snap.Settings, m.snap.Effective)
	if r := m.opt.Replay; r != nil {
		m.replay = replayState{pos: r.Position(), length: r.Length(), speed: r.Speed(), paused: r.Paused()}
	}
}

// Update handles ticks, keys and resizes.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tickMsg:
		m.refresh()
		if m.quitting && !m.snap.Ended.IsZero() {
			return m, tea.Quit
		}
		return m, m.tick()
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		return m, nil
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	if m.commanding {
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return m, cmd
	}
	return m, nil
}

// key handles one key press.
func (m Model) key(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	if m.opt.Attached && (key.Matches(msg, m.keys.Interrupt) || (key.Matches(msg, m.keys.Quit) && !m.commanding)) {
		return m, tea.Quit // detach: the job goes on
	}
	if m.replaying() {
		return m.replayKey(msg)
	}
	if key.Matches(msg, m.keys.Interrupt) {
		return m.interrupt()
	}
	if !m.snap.Ended.IsZero() { // the final screen: any key leaves
		return m, tea.Quit
	}
	if m.commanding {
		switch msg.String() {
		case "enter":
			m.commanding = false
			m.say(m.command(m.input.Value()))
			m.input.Reset()
			m.input.Blur()
			return m, nil
		case "esc":
			m.commanding = false
			m.input.Reset()
			m.input.Blur()
			return m, nil
		}
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return m, cmd
	}
	if m.confirm != "" {
		what := m.confirm
		m.confirm = ""
		confirmed := key.Matches(msg, m.keys.Confirm) || (what == "quit" && key.Matches(msg, m.keys.Quit)) ||
			(what == "drain" && key.Matches(msg, m.keys.Drain))
		if !confirmed {
			return m, nil
		}
		m.eng.Drain(origin)
		if what == "quit" {
			m.quitting = true
			m.say("draining: waiting for the calls in flight, then quitting")
		} else {
			m.say("draining: no new calls; the run ends when the calls in flight finish")
		}
		return m, nil
	}
	if m.help {
		m.help = false // any key closes the help
		return m, nil
	}
	// The keys turn the ceilings. Up they go from the ceiling; down from what the run holds
	// to, the effective value while it binds: a ceiling lowered but still above it would
	// change nothing.
	s := m.snap.Settings
	par, _ := probes.EffectiveParallelism(s, m.snap.Effective)
	switch {
	case key.Matches(msg, m.keys.Up):
		m.setParallelism(s.Parallelism + 1)
	case key.Matches(msg, m.keys.Down):
		m.setParallelism(par - 1)
	case key.Matches(msg, m.keys.Double):
		m.setParallelism(s.Parallelism * 2)
	case key.Matches(msg, m.keys.Halve):
		m.setParallelism(par / 2)
	case key.Matches(msg, m.keys.PaceUp):
		m.setPace(s.Pace + paceStep(s.Pace, true))
	case key.Matches(msg, m.keys.PaceDown):
		m.setPace(s.Pace - paceStep(s.Pace, false))
	case key.Matches(msg, m.keys.RateUp):
		if s.Rate <= 0 {
			m.say("the rate has no ceiling; - sets one under the rate the target accepts")
		} else {
			m.setRate(s.Rate * 1.1)
		}
	case key.Matches(msg, m.keys.RateDown):
		m.lowerRate()
	case key.Matches(msg, m.keys.Pause):
		switch m.snap.State {
		case engine.Paused:
			m.eng.Resume(origin)
			m.say("resumed")
		case engine.Running:
			m.eng.Pause(origin)
			m.say("paused: calls in flight finish, no new call starts (p to resume)")
		}
	case key.Matches(msg, m.keys.Drain):
		m.confirm = "drain"
	case key.Matches(msg, m.keys.Command):
		m.commanding = true
		return m, m.input.Focus()
	case key.Matches(msg, m.keys.Accept):
		m.accept()
	case key.Matches(msg, m.keys.Window):
		m.window = (m.window + 1) % len(chartWindows)
	case key.Matches(msg, m.keys.Help):
		m.help = true
	case key.Matches(msg, m.keys.Quit):
		// The question guards the calls in flight; with none there is nothing to lose, so q
		// drains (if the run is not already ending) and quits at once.
		if m.snap.InFlight == 0 {
			if m.snap.State < engine.Draining {
				m.eng.Drain(origin)
			}
			m.quitting = true
			m.say("no calls in flight: quitting")
			return m, nil
		}
		m.confirm = "quit"
	}
	m.refresh()
	return m, nil
}

// interrupt is ctrl+c: the first drains and quits when the run has ended, the second cancels
// the calls in flight too; on the final screen it leaves at once.
func (m Model) interrupt() (tea.Model, tea.Cmd) {
	if !m.snap.Ended.IsZero() {
		return m, tea.Quit
	}
	m.interrupts++
	m.quitting = true
	m.confirm, m.commanding, m.help = "", false, false
	if m.interrupts == 1 {
		m.eng.Drain(origin)
		m.say("draining: waiting for the calls in flight (ctrl+c again cancels them)")
	} else {
		m.eng.Stop(origin)
		m.say("stopping: cancelling the calls in flight")
	}
	return m, nil
}

// accept applies the advisor's suggestion, logged with the origin "advisor": its knob alone,
// so that what changed since the advice is not undone.
func (m *Model) accept() {
	a := m.advice
	if a.Action == probes.Hold || a.Knob == 0 {
		m.say("no advice to accept: " + a.Reason)
		return
	}
	m.report(m.eng.Set(engine.Turn(a.Knob, a.Settings), "advisor"), "accepted: "+a.Knob.String()+" changed")
}

// setParallelism is the parallelism keys: n brought within the ceiling by the engine's rule.
func (m *Model) setParallelism(n int) {
	s := m.snap.Settings
	next := s
	next.Parallelism = n
	next = next.Fit()
	if next.Parallelism == s.Parallelism {
		if n > s.Parallelism && s.MaxParallelism > 0 {
			m.say(fmt.Sprintf("parallelism is at its max (--max-parallelism %d)", s.MaxParallelism))
		}
		return
	}
	m.report(m.turn(next), fmt.Sprintf("parallelism ceiling %d → %d", s.Parallelism, next.Parallelism))
}

// turn applies next, the settings a key built from the snapshot's, as one change.
func (m *Model) turn(next engine.Settings) error {
	return m.eng.Set(engine.Diff(m.snap.Settings, next), origin)
}

// lowerRate is the - key: the rate ceiling 10% under the rate the run holds to. Under no
// ceiling that is the effective rate, or the limit the target showed, or what it accepted
// lately away from the Retry-After holds: never the calls/s of a window the holds starved,
// which would cap the run far under the target's limit.
func (m *Model) lowerRate() {
	s, eff := m.snap.Settings, m.snap.Effective
	r, binds := probes.EffectiveRate(s, eff)
	if !binds && r > 0 { // the ceiling is what the run holds to
		m.setRate(r * 0.9)
		return
	}
	from, why := r, "the effective rate"
	switch {
	case binds:
	case eff.Limit > 0:
		from, why = eff.Limit, "the limit found"
	case m.advice.Accepted > 0:
		from, why = m.advice.Accepted, "what the target accepted"
	default:
		m.say("no rate measured away from Retry-After holds yet: set one with : rate R")
		return
	}
	to := roundRate(from * 0.9)
	if to <= 0 {
		return
	}
	next := s
	next.Rate = to
	m.report(m.turn(next), fmt.Sprintf("rate ceiling %s → %s, 10%% under %s (%s)",
		probes.CeilingRate(s.Rate), engine.FormatRate(to), why, engine.FormatComputedRate(from)))
}

func (m *Model) setPace(d time.Duration) {
	d = max(d, 0)
	if d == m.snap.Settings.Pace {
		return
	}
	next := m.snap.Settings
	next.Pace = d
	m.report(m.turn(next), fmt.Sprintf("pace %v → %v", m.snap.Settings.Pace, d))
}

func (m *Model) setRate(r float64) {
	next := m.snap.Settings
	next.Rate = roundRate(r)
	m.report(m.turn(next), fmt.Sprintf("rate ceiling %s → %s", probes.CeilingRate(m.snap.Settings.Rate), engine.FormatRate(next.Rate)))
}

func (m *Model) report(err error, done string) {
	if err != nil {
		m.say(err.Error())
		return
	}
	m.say(done)
}

// say shows a message in the key line for a few seconds.
func (m *Model) say(msg string) {
	m.flash = msg
	m.flashUntil = m.opt.Now().Add(4 * time.Second)
}

// command applies a typed command such as "parallelism 64" (any spelling [engine.ParseSetting]
// reads) or "window 5m", and returns what it did.
func (m *Model) command(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	if len(f) == 2 && (f[0] == "window" || f[0] == "w") {
		for i, w := range chartWindows {
			if d, err := time.ParseDuration(f[1]); err == nil && d == w {
				m.window = i
				return "chart window " + human.Span(w)
			}
		}
		return fmt.Sprintf("window %q: want 1m, 5m or 15m", f[1])
	}
	u, err := engine.ParseSetting(line)
	if unknown, ok := errors.AsType[*engine.UnknownKnobError](err); ok {
		unknown.Also = []string{"window"}
	}
	if err != nil {
		return err.Error()
	}
	s := m.snap.Settings
	if err := m.eng.Set(u, origin); err != nil {
		return err.Error()
	}
	if d := u.Describe(s); d != "" {
		return d
	}
	return u.String() + ": unchanged"
}

// paceStep is how far [ and ] move the pace: 10 ms steps below 100 ms, 50 ms below 1 s,
// then 10%.
func paceStep(d time.Duration, up bool) time.Duration {
	switch {
	case d < 100*time.Millisecond || (!up && d == 100*time.Millisecond):
		return 10 * time.Millisecond
	case d < time.Second || (!up && d == time.Second):
		return 50 * time.Millisecond
	default:
		return (d / 10).Round(10 * time.Millisecond)
	}
}

// roundRate keeps typed-in rates readable after ±10% steps: 3 significant digits.
func roundRate(r float64) float64 {
	if r <= 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(strconv.FormatFloat(r, 'g', 3, 64), 64)
	return v
}

// lost reports whether the engine is a job seen through its socket that went away before
// its end could be seen (control.Remote's Lost): the numbers on the screen are then the last
// ones seen, not the job's final ones, and the screen must not pass them off as such.
func (m Model) lost() bool {
	l, ok := m.eng.(interface{ Lost() bool })
	return ok && l.Lost()
}
