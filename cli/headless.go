package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
)

// headless prints progress lines and the final summary to a writer (stderr) when there is no
// TUI. It reads engine snapshots on its own ticker and windowed statistics from the event
// stream, so a slow writer never slows the run.
type headless struct {
	w     io.Writer
	e     *engine.Engine
	every time.Duration
	sub   *engine.Subscription
	mon   *probes.Monitor
	said  string // the last advice printed

	mu      sync.Mutex // serialises writes to w
	last429 int64      // the 429s at the previous line
	quit    chan struct{}
	done    sync.WaitGroup
}

func startHeadless(w io.Writer, e *engine.Engine, mon *probes.Monitor, title string, every time.Duration) *headless {
	h := &headless{w: w, e: e, mon: mon, every: every, quit: make(chan struct{})}
	h.sub = e.Subscribe(64, engine.Warning, engine.ControlChange)
	s := e.Snapshot()
	total := "unknown total"
	if s.Total >= 0 {
		total = human.Count(s.Total) + " items"
	}
	h.say(fmt.Sprintf("%s · %s · %s", title, total, describeSettings(s.Settings)))
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
			h.say(ev.Change.String())
		}
	}
}

// redirect sends the lines from now on to w (a log file once the terminal is gone).
func (h *headless) redirect(w io.Writer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.w = w
}

func (h *headless) say(line string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintln(h.w, line)
}

func (h *headless) progress() {
	s := h.e.Snapshot()
	now := time.Now()
	// The rate is the screen's (probes.Measure): over the last complete seconds since the
	// last change, never all calls so far over the interval since the previous line.
	fig := probes.Measure(s, h.mon.Points(now, probes.RateWindow+2*time.Second))
	new429 := s.TooMany - h.last429
	h.last429 = s.TooMany
	h.say(progressLine(s, h.mon.Latency(now), fig, new429))
	// Each new suggestion once, as its own line (the tuner's changes come as change events).
	if a := h.mon.Advice(now, s.Settings, s.Effective); a.Action != probes.Hold && a.Reason != h.said {
		h.said = a.Reason
		h.say("advice: " + a.Reason)
	}
}

// progressLine renders one headless progress line from a snapshot, the latency of the last
// few seconds, the run's current rates (labelled with their window) and the 429s since the
// previous line.
func progressLine(s engine.Snapshot, lat probes.Stats, fig probes.Figures, new429 int64) string {
	var b strings.Builder
	elapsed := s.At.Sub(s.Started)
	fmt.Fprintf(&b, "%s  %s", human.Clock(elapsed), s.State)
	done := s.Done()
	if s.Total >= 0 {
		pct := 100.0
		if s.Total > 0 {
			pct = 100 * float64(done) / float64(s.Total)
		}
		fmt.Fprintf(&b, "  %s/%s %.1f%%", human.Count(done), human.Count(s.Total), pct)
	} else {
		fmt.Fprintf(&b, "  %s done", human.Count(done))
	}
	// The caps in force: an effective value while it binds under its ceiling, named so.
	if fig.Measured() {
		fmt.Fprintf(&b, "  %s %.1f calls/s", fig.Window(), fig.CallsPerSecond())
	} else {
		fmt.Fprintf(&b, "  %s calls/s", fig.Window()) // "measuring calls/s" right after a change
	}
	switch r, eff := probes.EffectiveRate(s.Settings, s.Effective); {
	case eff:
		fmt.Fprintf(&b, " (cap %s effective · ceiling %s)", engine.FormatComputedRate(r), probes.CeilingRate(s.Settings.Rate))
	case r > 0:
		fmt.Fprintf(&b, " (cap %s)", engine.FormatRate(r))
	}
	p, parEff := probes.EffectiveParallelism(s.Settings, s.Effective)
	fmt.Fprintf(&b, "  in flight %d/%d", s.InFlight, p)
	if parEff {
		fmt.Fprintf(&b, " (effective · ceiling %d)", s.Settings.Parallelism)
	}
	if lat.Calls > 0 {
		fmt.Fprintf(&b, "  p50 %s p95 %s", human.Latency(lat.P50), human.Latency(lat.P95))
	}
	fmt.Fprintf(&b, "  429s %s", human.Count(s.TooMany))
	if new429 > 0 {
		fmt.Fprintf(&b, " (+%d)", new429)
	}
	fmt.Fprintf(&b, "  errors %s  failed %s", human.Count(s.Errors), human.Count(s.Failed))
	if s.BackingOff > 0 {
		fmt.Fprintf(&b, "  backoff %d", s.BackingOff)
	}
	if q := s.Quota; !q.At.IsZero() {
		fmt.Fprintf(&b, "  quota %s left", human.Count(q.Remaining))
		if left := q.ResetAt.Sub(s.At); left > 0 && q.Reset > 0 {
			fmt.Fprintf(&b, " (resets in %s)", human.Span(left))
		}
	}
	if s.HoldUntil.After(s.At) {
		fmt.Fprintf(&b, "  held %s (Retry-After)", s.HoldUntil.Sub(s.At).Round(100*time.Millisecond))
	}
	if eta, ok := s.ETA(); ok {
		fmt.Fprintf(&b, "  ETA %s", human.Clock(eta))
	}
	return b.String()
}

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
