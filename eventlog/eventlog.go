// Package eventlog writes a run's event log (--log) as JSON lines through log/slog: the start
// (job and settings), every change of settings or state with who made it, the advice when it
// changes, Retry-After holds, warnings, failed calls counted by class every few seconds, and
// the summary. Like packages metrics and record it is an observer of the engine: it reads the run
// through bounded, lossy subscriptions and snapshots, and writes on a goroutine of its own, so
// that a slow or stuck log loses events (counted in its end line) and never slows a call.
//
// Every string it writes goes through [Options.Scrub], so that no secret reaches the log by
// an attribute added later.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
)

// The log's subscriptions. Call ends come by the thousand per second and a lost one only
// undercounts an error class for a few seconds, so they get their own buffer: a flood of them
// can never crowd out a change of settings, which is rare and must not be lost.
const (
	callBuffer = 8192
	ctrlBuffer = 1024
)

// flushEvery is how often the log writes the error counts and looks at the advice: the
// advisor's window, so each look sees one new window.
const flushEvery = probes.DefaultWindow

// maxExample bounds the example message of an errors line: one odd adapter message must not
// make a megabyte line.
const maxExample = 300

// DefaultEndWait bounds how long [Log.End] waits for the log's last lines: a log on a hung
// disk must not keep the process from exiting with its status.
const DefaultEndWait = 10 * time.Second

// ErrBlocked says [Log.End] gave up waiting for the last lines: the writer was blocked.
var ErrBlocked = errors.New("writing blocked")

// WriteError says lines could not be written: the first error, and how many lines were lost.
type WriteError struct {
	// Err is the first write error.
	Err error
	// Lost is the number of lines not written.
	Lost int64
}

// Error says "ERR (N lines lost)", or "(1 line lost)".
func (e *WriteError) Error() string {
	return fmt.Sprintf("%v (%s lost)", e.Err, human.Counted(e.Lost, "line", "lines"))
}

// Unwrap returns the write error.
func (e *WriteError) Unwrap() error { return e.Err }

// Run is what the log watches: an [*engine.Engine].
type Run interface {
	Subscribe(buffer int, kinds ...engine.EventKind) *engine.Subscription
	Snapshot() engine.Snapshot
}

// Job is what the start line says of the job, besides the total and the settings, which the
// log reads from the run.
type Job struct {
	Title   string
	Adapter string
	Target  string
	Input   string
	Out     string
	Retries int
	Timeout time.Duration
	Chunk   int
	Auto    bool
	// Version is the binary's version, as `throttle version` prints it.
	Version string
}

// Options configure a [Log].
type Options struct {
	// Scrub returns a string with its secrets removed; every string of every line goes
	// through it. nil writes strings as they are.
	Scrub func(string) string
	// EndWait bounds [Log.End]'s wait; 0 means [DefaultEndWait].
	EndWait time.Duration
}

// Log is a running event log. Start it before the run, so that it sees the run's first
// change; end it with [Log.End].
type Log struct {
	w       *writer
	dst     io.Closer
	endWait time.Duration
	ends    chan engine.Summary
	done    chan struct{}
}

// Start writes the start line of job to w and logs run's events until [Log.End]. The log owns
// w and closes it.
func Start(w io.WriteCloser, run Run, job Job, opts Options) *Log {
	l := &Log{
		w: newWriter(w, opts.Scrub, func() (engine.Settings, engine.Effective) {
			snap := run.Snapshot()
			return snap.Settings, snap.Effective
		}),
		dst: w, endWait: opts.EndWait, ends: make(chan engine.Summary, 1), done: make(chan struct{}),
	}
	if l.endWait <= 0 {
		l.endWait = DefaultEndWait
	}
	// Subscribed before Run, so that the log sees the run's first change.
	ctrl := run.Subscribe(ctrlBuffer, engine.ControlChange, engine.HoldStart, engine.Warning)
	calls := run.Subscribe(callBuffer, engine.CallEnd)
	snap := run.Snapshot()
	go l.loop(time.Now(), job, snap.Total, snap.Settings, ctrl, calls)
	return l
}

// loop is the log's goroutine: every write happens here.
func (l *Log) loop(started time.Time, job Job, total int64, set engine.Settings, ctrl, calls *engine.Subscription) {
	defer close(l.done)
	w := l.w
	w.start(started, job, total, set)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case ev := <-ctrl.C:
			w.event(ev)
		case ev := <-calls.C:
			w.event(ev)
		case now := <-tick.C:
			w.flush(now)
			w.advise(now)
		case sum := <-l.ends:
			ctrl.Close()
			calls.Close()
			// Run has returned, so nothing more is published: what is buffered is the run's
			// last events (its final state change among them), which belong before the
			// summary.
			drain(ctrl, w.event)
			drain(calls, w.event)
			w.end(time.Now(), sum, ctrl.Dropped()+calls.Dropped())
			if err := l.dst.Close(); err != nil && w.err == nil {
				w.err = err
			}
			return
		}
	}
}

// End writes the last error counts and the summary line (sum is zero when the run never
// started) and closes the writer. It waits at most [Options.EndWait]: then it returns an
// error that wraps [ErrBlocked], and the log goes on writing in the background. A log whose
// lines could not all be written returns a [*WriteError]. Call it once.
func (l *Log) End(sum engine.Summary) error {
	l.ends <- sum
	wait := time.NewTimer(l.endWait)
	defer wait.Stop()
	select {
	case <-l.done:
		if l.w.err != nil {
			return &WriteError{Err: l.w.err, Lost: l.w.lost}
		}
		return nil
	case <-wait.C:
		return fmt.Errorf("%w for %v; the log may lack its last lines", ErrBlocked, l.endWait)
	}
}

// drain hands every event still buffered in sub to observe, without waiting for more.
func drain(sub *engine.Subscription, observe func(engine.Event)) {
	for {
		select {
		case ev := <-sub.C:
			observe(ev)
		default:
			return
		}
	}
}

// classCount is what the log knows of one error class since its last errors line.
type classCount struct {
	calls   int64  // failed calls of the class
	final   int64  // of which the item's last attempt: a failed row
	example string // the latest message
}

// writer turns a run's events into log lines. It is used by one goroutine at a time.
type writer struct {
	h         slog.Handler
	limits    func() (engine.Settings, engine.Effective)
	mon       *probes.Monitor
	errs      [probes.ClassOther + 1]classCount
	since     time.Time     // when the error counts started
	advice    probes.Advice // the last advice logged
	holdUntil time.Time     // the end of the last hold logged
	err       error         // the first write error
	lost      int64         // lines not written
}

// newWriter returns a writer to w that passes every string through scrub (when not nil).
// limits reads the run's live settings and the congestion response's effective values, for
// the advice.
func newWriter(w io.Writer, scrub func(string) string, limits func() (engine.Settings, engine.Effective)) *writer {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	if scrub != nil {
		// Every string — the message, an error's text, a title — goes through the scrubber,
		// so that no attribute added later can bypass it.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindString {
				a.Value = slog.StringValue(scrub(a.Value.String()))
			}
			return a
		}
	}
	// Its own advisor, with the screen's defaults: the screen's Monitor belongs to the CLI's
	// run, and one more observer costs this goroutine, not the calls.
	return &writer{h: slog.NewJSONHandler(w, opts), limits: limits, mon: probes.NewMonitor(probes.AdvisorConfig{}, false),
		advice: probes.Advice{Action: probes.Hold}}
}

// emit writes one line stamped with at, the time of what it reports rather than of the
// writing, which may come a little later.
func (l *writer) emit(at time.Time, level slog.Level, msg string, attrs ...slog.Attr) {
	r := slog.NewRecord(at.UTC(), level, msg, 0)
	r.AddAttrs(attrs...)
	if err := l.h.Handle(context.Background(), r); err != nil {
		l.lost++
		if l.err == nil {
			l.err = err
		}
	}
}

// start writes the start line and starts the error counts.
func (l *writer) start(at time.Time, job Job, total int64, set engine.Settings) {
	l.since = at
	l.emit(at, slog.LevelInfo, "start",
		slog.String("title", job.Title),
		slog.String("adapter", job.Adapter),
		slog.String("target", job.Target),
		slog.String("input", job.Input),
		slog.String("out", job.Out),
		slog.Int64("total", total),
		settingsAttr(set),
		slog.Int("retries", job.Retries),
		slog.String("timeout", job.Timeout.String()),
		slog.Int("chunk", job.Chunk),
		slog.Bool("auto", job.Auto),
		slog.String("version", job.Version),
		slog.Int("pid", os.Getpid()),
	)
}

// settingsAttr renders the knobs as the change lines write them: pace as a duration, the rate
// as "50/s" or "unlimited".
func settingsAttr(s engine.Settings) slog.Attr {
	return slog.Group("settings",
		slog.Int("parallelism", s.Parallelism),
		slog.Int("max_parallelism", s.MaxParallelism),
		slog.String("pace", s.Pace.String()),
		slog.String("rate", engine.FormatRate(s.Rate)),
		slog.Int("burst", s.Burst),
	)
}

// event logs a change, a hold or a warning at once, and counts a failed call for the next
// errors line.
func (l *writer) event(ev engine.Event) {
	switch ev.Kind {
	case engine.CallEnd:
		l.mon.Observe(ev)
		c := probes.Classify(ev)
		if c == probes.ClassOK || int(c) >= len(l.errs) {
			return
		}
		n := &l.errs[c]
		n.calls++
		if ev.Final {
			n.final++
		}
		if ev.Message != "" {
			n.example = ev.Message
		}
	case engine.ControlChange:
		c := ev.Change
		switch c.Knob {
		case "start": // the start line says it, with the settings as fields
		case "note":
			l.emit(c.At, slog.LevelInfo, "note", slog.String("origin", c.Origin), slog.String("text", c.To))
		default:
			l.emit(c.At, slog.LevelInfo, "change", slog.String("origin", c.Origin), slog.String("knob", c.Knob),
				slog.String("from", c.From), slog.String("to", c.To))
		}
	case engine.HoldStart:
		// Every call in flight when a server says "wait" may come back with its own 429 and
		// Retry-After, each extending the hold by a few milliseconds: one line per pause, and
		// another only when the pause grows by a second or more.
		if ev.At.Before(l.holdUntil) && ev.Until.Sub(l.holdUntil) < time.Second {
			return
		}
		l.holdUntil = ev.Until
		l.emit(ev.At, slog.LevelWarn, "hold", slog.Time("until", ev.Until.UTC()),
			slog.String("for", ev.Until.Sub(ev.At).String()), slog.String("reason", ev.Message))
	case engine.Warning:
		l.emit(ev.At, slog.LevelWarn, "warning", slog.String("text", ev.Message))
	}
}

// flush writes one errors line per class that failed since the last flush, so that a storm of
// failures costs a few lines every few seconds, not one per call.
func (l *writer) flush(now time.Time) {
	window := now.Sub(l.since).Round(time.Millisecond).String()
	for c := range l.errs {
		n := l.errs[c]
		if n.calls == 0 {
			continue
		}
		l.emit(now, slog.LevelWarn, "errors",
			slog.String("class", probes.Class(c).String()),
			slog.Int64("calls", n.calls),
			slog.Int64("failed_rows", n.final),
			slog.String("window", window),
			slog.String("example", clip(n.example, maxExample)),
		)
		l.errs[c] = classCount{}
	}
	l.since = now
}

// advise logs the advisor's suggestion when it suggests something else than it last did: the
// figures in its reason change every window, and a line per window would drown the changes.
func (l *writer) advise(now time.Time) {
	set, eff := l.limits()
	a := l.mon.Advice(now, set, eff)
	if sameAdvice(a, l.advice) {
		return
	}
	l.advice = a
	attrs := []slog.Attr{slog.String("action", string(a.Action))}
	if a.Knob != 0 {
		attrs = append(attrs, slog.String("knob", a.Knob.String()),
			slog.String("from", a.Knob.Format(set)), slog.String("to", a.Knob.Format(a.Settings)))
	}
	attrs = append(attrs, slog.String("binding", string(a.Binding)), slog.String("reason", a.Reason))
	l.emit(now, slog.LevelInfo, "advice", attrs...)
}

// sameAdvice reports whether b suggests what a does: holds are alike whatever their reason.
func sameAdvice(a, b probes.Advice) bool {
	if a.Action != b.Action {
		return false
	}
	return a.Action == probes.Hold || (a.Knob == b.Knob && a.Settings == b.Settings)
}

// end writes the last error counts and the summary line.
func (l *writer) end(now time.Time, sum engine.Summary, dropped int64) {
	l.flush(now)
	if sum.State == engine.Running {
		// A zero Summary: the run never started (another outlet failed to start).
		l.emit(now, slog.LevelInfo, "end", slog.String("state", "not started"), slog.Int64("dropped_events", dropped))
		return
	}
	level := slog.LevelInfo
	if sum.Failed > 0 || sum.Lost > 0 || sum.Interrupted() {
		level = slog.LevelWarn
	}
	l.emit(now, level, "end",
		slog.String("state", sum.State.String()),
		slog.Int64("total", sum.Total),
		slog.Int64("ok", sum.OK),
		slog.Int64("failed", sum.Failed),
		slog.Int64("not_started", sum.NotStarted),
		slog.Int64("lost", sum.Lost),
		slog.Int64("calls", sum.Calls),
		slog.Int64("retries", sum.Retries),
		slog.Int64("too_many", sum.TooMany),
		slog.String("elapsed", sum.Elapsed.Round(time.Millisecond).String()),
		slog.Float64("elapsed_s", sum.Elapsed.Seconds()),
		slog.Int("warnings", len(sum.Warnings)),
		slog.Int64("dropped_events", dropped),
	)
}

// clip cuts s past n bytes, at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
