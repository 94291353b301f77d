package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
)

// headless prints progress lines and the final summary to a writer (stderr) when there is no
// TUI. It reads engine snapshots on its own ticker and windowed statistics from the event
// stream, so a slow writer never slows the run.
type headless struct {
	w       io.Writer
	e       *engine.Engine
	every   time.Duration
	sub     *engine.Subscription
	mon     *probes.Monitor
	binding func() string  // which shared limit holds the job back, "" when none (nil: no --limit)
	job     func() jobRows // a shared job's rows against its total (nil: this host's run is the job)
	said    string         // the last advice printed

	mu   sync.Mutex      // serialises writes to w
	last engine.Snapshot // the previous progress line's, or the one at start: rates count from it
	quit chan struct{}
	done sync.WaitGroup
}

// changeLine is a change as a headless line (and a line of <out>.log): its time since the
// start, as the progress lines begin with theirs, so that a log read later says when each
// knob turned.
func changeLine(c engine.Change, started time.Time) string {
	at := "-:--"
	if !started.IsZero() && !c.At.IsZero() {
		at = human.Clock(c.At.Sub(started))
	}
	return at + "  " + c.String()
}

// progressWidth is the width every headless line fits: logs and CI consoles are read at 80
// columns, and a longer line wraps where the reader cannot choose.
const progressWidth = 80

// startHeadless prints progress lines for e, the engine of j, to w every so often until stop.
// Started in the middle of a run (a screen whose terminal went away), its first rates count
// from its start, not the run's.
func startHeadless(w io.Writer, e *engine.Engine, mon *probes.Monitor, title string, every time.Duration, j job) *headless {
	h := &headless{w: w, e: e, mon: mon, every: every, binding: j.binding, job: j.progress, quit: make(chan struct{})}
	h.sub = e.Subscribe(64, engine.Warning, engine.ControlChange)
	s := e.Snapshot()
	h.report(title + " · " + runHeader(s, j))
	h.last = s
	h.done.Add(2)
	go func() {
		defer h.done.Done()
		probes.Feed(h.sub, h.quit, h.onEvent)
	}()
	go func() {
		defer h.done.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				h.progress()
			case <-h.quit:
				return
			}
		}
	}()
	return h
}

// onEvent prints what the operator must see at once: warnings and control changes.
func (h *headless) onEvent(ev engine.Event) {
	switch ev.Kind {
	case engine.Warning:
		h.say("warning: " + ev.Message)
	case engine.ControlChange:
		if ev.Change.Knob != "start" && ev.Change.Origin != "engine" {
			h.say(changeLine(ev.Change, h.e.Snapshot().Started)) // changes are rare: a snapshot each is cheap
		}
	}
}

// redirect sends the lines from now on to w (a log file once the terminal is gone).
func (h *headless) redirect(w io.Writer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.w = w
}

// say prints line as it is: a warning, a change, a message a script may look for whole.
func (h *headless) say(line string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintln(h.w, line)
}

// report prints line wrapped to progressWidth: the progress lines and what goes with them.
func (h *headless) report(line string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range wrapLine(line, progressWidth) {
		fmt.Fprintln(h.w, l)
	}
}

// runHeader is what the first headless line says of a run after its title: its total and
// its settings. A host of a shared job says the job's (the settings every host follows, the
// total its coordinator knows) and what this host may hold of its cap.
func runHeader(s engine.Snapshot, j job) string {
	if j.controls == nil {
		total := "unknown total"
		if s.Total >= 0 {
			total = human.Count(s.Total) + " items"
		}
		return total + " · " + describeSettings(s.Settings)
	}
	total := "the job's total is its coordinator's"
	if j.progress != nil {
		total = "a job of unknown total"
		if p := j.progress(); p.total > 0 {
			total = "a job of " + human.Count(p.total) + " items"
		}
	}
	return fmt.Sprintf("%s · the job's %s · this host up to %d in flight", total, describeSettings(j.controls.Snapshot().Settings), s.Settings.Parallelism)
}

func (h *headless) progress() {
	s := h.e.Snapshot()
	binding := ""
	if h.binding != nil {
		binding = h.binding()
	}
	var jr jobRows
	if h.job != nil {
		jr = h.job()
	}
	// The rate is the screen's (probes.Measure): over the last complete seconds since the
	// last change of the cap or the state, with its window.
	fig := probes.Measure(s, h.mon.Points(s.At, probes.RateWindow+2*time.Second))
	for _, l := range progressLines(h.last, s, h.mon.Latency(s.At), fig, binding, jr) {
		h.report(l)
	}
	h.last = s
	// Each new suggestion once, as its own line (the tuner's changes come as change events).
	if a := h.mon.Advice(s.At, s.Settings, s.Effective); a.Action != probes.Hold && a.Reason != h.said {
		h.said = a.Reason
		h.report("advice: " + a.Reason)
	}
}

// progressLines renders the progress of s, its rates (fig, with their window), the 429s since
// prev (the previous lines' snapshot, or the one when the lines began), and lat, the latency of the monitor's
// latest window (probes.Monitor.Latency). binding names the shared limit that binds the job ("" when none).
// A shared job's coordinator (jr with a total) leads with the job's rows, then this host's.
// Each figure says its window — the whole run, the last interval, the latency's window, or
// now — and the lines fit progressWidth: two or three lines rather than one of 150 columns.
func progressLines(prev, s engine.Snapshot, lat probes.Stats, fig probes.Figures, binding string, jr jobRows) []string {
	var segs []string
	add := func(format string, a ...any) { segs = append(segs, fmt.Sprintf(format, a...)) }

	clock := fmt.Sprintf("%s  %s", human.Clock(s.At.Sub(s.Started)), s.State)
	if jr.total > 0 {
		add("%s  job %s/%s rows %.1f%%", clock, human.Count(jr.rows), human.Count(jr.total), 100*float64(jr.rows)/float64(jr.total))
		if jr.eta > 0 {
			add("ETA %s", human.Clock(jr.eta))
		}
		add("this host: %s done, failed %s · 429s %s · errors %s", human.Count(s.Done()), human.Count(s.Failed), human.Count(s.TooMany), human.Count(s.Errors))
	} else {
		done := s.Done()
		if s.Total >= 0 {
			pct := 100.0
			if s.Total > 0 {
				pct = 100 * float64(done) / float64(s.Total)
			}
			add("%s  %s/%s %.1f%%", clock, human.Count(done), human.Count(s.Total), pct)
		} else {
			add("%s  %s done", clock, human.Count(done))
		}
		if eta, ok := s.ETA(); ok {
			add("ETA %s", human.Clock(eta))
		}
		add("whole run: failed %s · 429s %s · errors %s", human.Count(s.Failed), human.Count(s.TooMany), human.Count(s.Errors))
	}

	// The rate of the screen and ctl get (probes.Measure), over the time it was measured.
	rate := fig.Window() + ": – calls/s" // "measuring" right after a change
	if fig.Measured() {
		rate = fmt.Sprintf("%s: %.1f calls/s", fig.Window(), fig.CallsPerSecond())
	}
	// The caps in force: an effective value while it binds under its ceiling, named so.
	switch r, eff := probes.EffectiveRate(s.Settings, s.Effective); {
	case eff:
		rate += fmt.Sprintf(" (cap %s effective · ceiling %s)", engine.FormatComputedRate(r), probes.CeilingRate(s.Settings.Rate))
	case r > 0:
		rate += fmt.Sprintf(" (cap %s)", engine.FormatRate(r))
	}
	if n := s.TooMany - prev.TooMany; n > 0 {
		rate += fmt.Sprintf(" · 429s +%s since the last line", human.Count(n))
	}
	segs = append(segs, rate)

	p, parEff := probes.EffectiveParallelism(s.Settings, s.Effective)
	flight := fmt.Sprintf("in flight %d/%d", s.InFlight, p)
	if parEff {
		flight += fmt.Sprintf(" (effective · ceiling %d)", s.Settings.Parallelism)
	}
	segs = append(segs, flight)
	if what, n := s.Waiting(); n > 0 {
		wait := fmt.Sprintf("%d waiting for %s", n, what)
		if others := s.ByState[engine.WorkerWaiting] - n; others > 0 {
			wait += fmt.Sprintf(" (+%d for other turns)", others)
		}
		segs = append(segs, wait)
	}
	if lat.Calls > 0 {
		// The monitor's latest complete window with calls, or the one under way while none
		// is complete: the whole run so far.
		window := spanLabel(probes.DefaultWindow) + " window"
		if s.At.Sub(s.Started) < probes.DefaultWindow {
			window = "run so far"
		}
		add("%s: p50 %s p95 %s", window, human.Latency(lat.P50), human.Latency(lat.P95))
	}
	if binding != "" {
		add("binding: %s", binding)
	}
	if s.BackingOff > 0 {
		add("backoff %d", s.BackingOff)
	}
	if q := s.Quota; !q.At.IsZero() {
		quota := fmt.Sprintf("quota %s left", human.Count(q.Remaining))
		if left := q.ResetAt.Sub(s.At); left > 0 && q.Reset > 0 {
			quota += fmt.Sprintf(" (resets in %s)", human.Span(left))
		}
		segs = append(segs, quota)
	}
	if s.HoldUntil.After(s.At) {
		add("held %s (Retry-After)", s.HoldUntil.Sub(s.At).Round(100*time.Millisecond))
	}
	return packLines(segs, progressWidth)
}

// spanLabel names a window to the tenth of a second under 10 s ("2s", "2.5s"), to the second
// above.
func spanLabel(d time.Duration) string {
	if d < 10*time.Second {
		return strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', -1, 64) + "s"
	}
	return human.Span(d)
}

// packLines puts segments side by side, two spaces apart, in lines of at most width columns;
// lines after the first are indented two spaces. A segment wider than a line is wrapped.
func packLines(segs []string, width int) []string {
	var lines []string
	cur := ""
	for _, seg := range segs {
		switch {
		case cur == "" && len(lines) == 0:
			cur = seg
		case cur != "" && columns(cur)+2+columns(seg) <= width:
			cur += "  " + seg
			continue
		default:
			if cur != "" {
				lines = append(lines, cur)
			}
			cur = "  " + seg
		}
		if wrapped := wrapLine(cur, width); len(wrapped) > 1 {
			// A segment that had to wrap keeps its lines to itself: the next starts afresh.
			lines = append(lines, wrapped...)
			cur = ""
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

// wrapLine breaks line into lines of at most width columns, at spaces (preferring the space
// after a " · ", "," or ";"), each line after the first indented two spaces. A word longer
// than a line is cut.
func wrapLine(line string, width int) []string {
	var out []string
	for columns(line) > width {
		r := []rune(line)
		cut, best := -1, -1
		for i := width; i > 0; i-- {
			if r[i] != ' ' {
				continue
			}
			if cut < 0 {
				cut = i
			}
			if r[i-1] == '·' || r[i-1] == ',' || r[i-1] == ';' {
				best = i
				break
			}
		}
		if best > width/2 {
			cut = best
		}
		if cut <= 2 { // no space to break at: cut the word
			cut = width
		}
		out = append(out, strings.TrimRight(string(r[:cut]), " "))
		line = "  " + strings.TrimLeft(string(r[cut:]), " ")
	}
	return append(out, line)
}

// columns is the width of s on a terminal: one column a rune (the lines use no wide runes).
func columns(s string) int { return utf8.RuneCountInString(s) }

func (h *headless) stop() {
	close(h.quit)
	h.done.Wait()
	h.sub.Close()
}

// summary prints the run's last lines where the progress lines went (a log file once the
// terminal is gone: the summary proper goes to stdout).
func (h *headless) summary(s engine.Summary, lat probes.Stats, out string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	printSummary(h.w, s, lat, out)
}

// end prints the run's end report where the progress lines went.
func (h *headless) end(r endReport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	printEnd(h.w, r)
}
