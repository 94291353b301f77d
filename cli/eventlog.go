package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/internal/redact"
	"github.com/throttle-dev/throttle/probes"
)

// The event log's subscriptions. Call ends come by the thousand per second and a lost one only
// undercounts an error class for a few seconds, so they get their own buffer: a flood of them
// can never crowd out a change of settings, which is rare and must not be lost.
const (
	logCallBuffer = 8192
	logCtrlBuffer = 1024
)

// logFlushEvery is how often the log writes the error counts and looks at the advice: the
// advisor's window, so each look sees one new window.
const logFlushEvery = probes.DefaultWindow

// maxLogExample bounds the example message of an error line: one odd adapter message must not
// make a megabyte line.
const maxLogExample = 300

// logEndWait bounds how long the end of a run waits for the log's last lines: a log on a hung
// disk must not keep the process from exiting with its status.
const logEndWait = 10 * time.Second

// startEventLog writes the run's events to --log as JSON lines through log/slog: the start
// (job and settings), every change of settings or state with who made it, the advice when it
// changes, Retry-After holds, warnings, failed calls counted by class every few seconds, and
// the summary, which the returned function writes.
func startEventLog(ctx context.Context, env *Env, rf *runFlags, e *engine.Engine, j job, title string) (func(engine.Summary), error) {
	f, err := openPrivate(env, "--log", rf.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return nil, usageError("--log: %v", err)
	}
	// Log lines appended to the results or the input would corrupt the one and add items to
	// the other.
	if st, err := f.Stat(); err == nil {
		for flag, path := range map[string]string{"--out": rf.out, "--input": rf.input} {
			if other, err := os.Stat(path); err == nil && os.SameFile(st, other) {
				_ = f.Close() // nothing was written to it yet
				return nil, usageError("--log %s is the %s file; give the log a file of its own", rf.logFile, flag)
			}
		}
	}
	in := startInfo{
		title: title, adapter: j.name, target: j.target, input: rf.input, out: rf.out,
		total: e.Snapshot().Total, settings: e.Settings(),
		retries: rf.retries, timeout: rf.timeout, chunk: rf.chunk, auto: rf.auto,
	}
	return runEventLog(env, rf.logFile, f, newScrubber(env, rf), e, in, logEndWait), nil
}

// runEventLog logs e's events to f and returns the function that ends the log with the run's
// summary and closes f. Every write happens on a goroutine of its own, fed by bounded
// subscriptions: a slow or stuck log loses events (counted in the end line), and never slows
// a call. The returned function waits for the end line at most endWait.
func runEventLog(env *Env, name string, f io.WriteCloser, s *scrubber, e *engine.Engine, in startInfo, endWait time.Duration) func(engine.Summary) {
	l := newEventLog(f, s, func() (engine.Settings, engine.Effective) {
		snap := e.Snapshot()
		return snap.Settings, snap.Effective
	})
	// Subscribed before Run, so that the log sees the run's first change.
	ctrl := e.Subscribe(logCtrlBuffer, engine.ControlChange, engine.HoldStart, engine.Warning)
	calls := e.Subscribe(logCallBuffer, engine.CallEnd)
	started := time.Now()
	ends := make(chan engine.Summary, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.start(started, in)
		tick := time.NewTicker(logFlushEvery)
		defer tick.Stop()
		for {
			select {
			case ev := <-ctrl.C:
				l.event(ev)
			case ev := <-calls.C:
				l.event(ev)
			case now := <-tick.C:
				l.flush(now)
				l.advise(now)
			case sum := <-ends:
				ctrl.Close()
				calls.Close()
				// Run has returned, so nothing more is published: what is buffered is the
				// run's last events (its final state change among them), which belong before
				// the summary.
				drainEvents(ctrl, l.event)
				drainEvents(calls, l.event)
				l.end(time.Now(), sum, ctrl.Dropped()+calls.Dropped())
				if err := f.Close(); err != nil && l.err == nil {
					l.err = err
				}
				return
			}
		}
	}()
	return func(sum engine.Summary) {
		ends <- sum
		wait := time.NewTimer(endWait)
		defer wait.Stop()
		select {
		case <-done:
			if l.err != nil {
				fmt.Fprintf(env.Stderr, "throttle: --log %s: %v (%d lines lost)\n", name, l.err, l.lost)
			}
		case <-wait.C:
			fmt.Fprintf(env.Stderr, "throttle: --log %s: writing blocked for %v; the log may lack its last lines\n", name, endWait)
		}
	}
}

// drainEvents hands every event still buffered in sub to observe, without waiting for more.
func drainEvents(sub *engine.Subscription, observe func(engine.Event)) {
	for {
		select {
		case ev := <-sub.C:
			observe(ev)
		default:
			return
		}
	}
}

// startInfo is what the start line says of the job.
type startInfo struct {
	title, adapter, target, input, out string
	total                              int64
	settings                           engine.Settings
	retries                            int
	timeout                            time.Duration
	chunk                              int
	auto                               bool
}

// classCount is what the log knows of one error class since its last errors line.
type classCount struct {
	calls   int64  // failed calls of the class
	final   int64  // of which the item's last attempt: a failed row
	example string // the latest message
}

// eventLog turns a run's events into log lines. It is used by one goroutine at a time.
type eventLog struct {
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

// newEventLog returns an eventLog that writes to w, passing every string through s. limits
// reads the run's live settings and the congestion response's effective values, for the
// advice.
func newEventLog(w io.Writer, s *scrubber, limits func() (engine.Settings, engine.Effective)) *eventLog {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		// Every string — the message, an error's text, a title — goes through the scrubber, so
		// that no attribute added later can bypass it.
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindString {
				a.Value = slog.StringValue(s.text(a.Value.String()))
			}
			return a
		},
	})
	// Its own advisor, with the screen's defaults: the screen's Monitor belongs to runJob, and
	// one more observer costs this goroutine, not the calls.
	return &eventLog{h: h, limits: limits, mon: probes.NewMonitor(probes.AdvisorConfig{}, false),
		advice: probes.Advice{Action: probes.Hold}}
}

// emit writes one line stamped with at, the time of what it reports rather than of the
// writing, which may come a little later.
func (l *eventLog) emit(at time.Time, level slog.Level, msg string, attrs ...slog.Attr) {
	r := slog.NewRecord(at.UTC(), level, msg, 0)
	r.AddAttrs(attrs...)
	if err := l.h.Handle(context.Background(), r); err != nil {
		l.lost++
		if l.err == nil {
			l.err = err
		}
	}
}

func (l *eventLog) start(at time.Time, in startInfo) {
	l.since = at
	l.emit(at, slog.LevelInfo, "start",
		slog.String("title", in.title),
		slog.String("adapter", in.adapter),
		slog.String("target", in.target),
		slog.String("input", in.input),
		slog.String("out", in.out),
		slog.Int64("total", in.total),
		settingsAttr(in.settings),
		slog.Int("retries", in.retries),
		slog.String("timeout", in.timeout.String()),
		slog.Int("chunk", in.chunk),
		slog.Bool("auto", in.auto),
		slog.String("version", versionString()),
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
func (l *eventLog) event(ev engine.Event) {
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
func (l *eventLog) flush(now time.Time) {
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
			slog.String("example", clipText(n.example, maxLogExample)),
		)
		l.errs[c] = classCount{}
	}
	l.since = now
}

// advise logs the advisor's suggestion when it suggests something else than it last did: the
// figures in its reason change every window, and a line per window would drown the changes.
func (l *eventLog) advise(now time.Time) {
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
func (l *eventLog) end(now time.Time, sum engine.Summary, dropped int64) {
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

// clipText cuts s past n bytes, at a rune boundary.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// envRef matches a ${NAME} placeholder of a template.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// scrubber keeps secrets out of what a run writes: it redacts URLs (userinfo, query values,
// fragments) in messages and the values of the environment variables that the run's
// templates read, in every spelling [redact] knows. The adapters scrub what they keep with
// the secrets of each call; this is the second lock, given to the engine (see
// [scrubber.hook]) and to the log, for adapters that do not know a secret (exec, whose
// command may print one) and for the texts no adapter looks at.
type scrubber struct {
	lookup func(string) (string, bool)
	names  []string
	set    redact.Set // every value of those variables seen, so that a changed one stays scrubbed
}

// newScrubber finds the variables a run reads: every ${NAME} on its command line and in its
// job file (--config).
func newScrubber(env *Env, rf *runFlags) *scrubber {
	s := &scrubber{lookup: env.LookupEnv}
	add := func(text string) {
		for _, m := range envRef.FindAllStringSubmatch(text, -1) {
			if !slices.Contains(s.names, m[1]) {
				s.names = append(s.names, m[1])
			}
		}
	}
	for _, a := range env.Args {
		add(a)
	}
	if rf.config != "" {
		if b, err := os.ReadFile(rf.config); err == nil {
			add(string(b))
		}
	}
	s.refresh()
	return s
}

// refresh looks the variables up again: a token rotated during the run is scrubbed too.
func (s *scrubber) refresh() {
	if s.lookup == nil {
		return
	}
	for _, name := range s.names {
		if v, ok := s.lookup(name); ok {
			s.set.Add(v)
		}
	}
}

// text returns t with its URLs redacted and every secret, in any spelling, replaced by
// "REDACTED".
func (s *scrubber) text(t string) string {
	if len(s.names) > 0 {
		s.refresh()
	}
	return s.set.Text(t)
}

// hook is the engine's [engine.Config.Redact]: the secrets scrubbed from every text the
// engine takes in, URLs left alone (an ok answer's output may hold URLs that are data, and the
// adapters redact those of their errors). nil when the run reads no variable.
func (s *scrubber) hook() func(string) string {
	if len(s.names) == 0 {
		return nil
	}
	return func(t string) string {
		s.refresh()
		return s.set.String(t)
	}
}

// notifyEnd tells the operator that the run ended: the terminal bell on stderr and, with
// --notify, a desktop notification through the terminal itself (OSC 9 and OSC 777), which
// reaches the operator's desktop over ssh with nothing installed on either side. Nothing is
// written unless stderr is a terminal: escape sequences in a log file are garbage.
func notifyEnd(env *Env, rf *runFlags, sum engine.Summary) {
	if sum.State == engine.Running { // a zero Summary: the run never started
		return
	}
	if !stderrTerminal(env) {
		return
	}
	var b strings.Builder
	if rf.notify {
		_, tmux := env.LookupEnv("TMUX")
		text := notifyText(sum)
		b.WriteString(terminalNotification("throttle", text, tmux))
	}
	b.WriteByte('\a')
	_, _ = io.WriteString(env.Stderr, b.String()) // a bell and a notification on the terminal: nobody to tell if it fails
}

// stderrTerminal reports whether env's stderr is a terminal. Env says so of stdout only; a
// stderr that is a file can be asked, and any other is taken to go where stdout goes.
func stderrTerminal(env *Env) bool {
	if f, ok := env.Stderr.(interface{ Fd() uintptr }); ok {
		return term.IsTerminal(int(f.Fd()))
	}
	return env.StdoutTTY
}

// notifyText is the notification's text: "done: 1,234 ok, 5 failed in 12m".
func notifyText(sum engine.Summary) string {
	verb := "done"
	switch sum.State {
	case engine.Draining:
		verb = "drained"
	case engine.Stopping:
		verb = "stopped"
	}
	s := fmt.Sprintf("%s: %s ok, %s failed", verb, human.Count(sum.OK), human.Count(sum.Failed))
	if sum.Lost > 0 {
		s += fmt.Sprintf(", %s lost", human.Count(sum.Lost))
	}
	return s + " in " + human.Span(sum.Elapsed)
}

// terminalNotification returns the escape sequences of a desktop notification: OSC 9 (iTerm2,
// kitty, WezTerm, Ghostty) and OSC 777 (urxvt, foot, VTE with the notify patch, WezTerm,
// Ghostty). Both are sent because no variable says reliably which one a terminal reads (over
// ssh and tmux, TERM_PROGRAM is gone); a terminal ignores the one it does not know, and one
// that reads both shows two. Under tmux each is wrapped in its DCS
// passthrough, with the inner ESCs doubled, since tmux would otherwise swallow them (tmux ≥ 3.3
// also needs `set -g allow-passthrough on`). Control characters are removed from title and
// text, so that nothing in them can end the sequence early or start another.
func terminalNotification(title, text string, tmux bool) string {
	title, text = stripControls(title), stripControls(text)
	seqs := []string{
		"\x1b]9;" + title + ": " + text + "\a",
		// ';' separates OSC 777's fields: one in the title would move text into the body.
		"\x1b]777;notify;" + strings.ReplaceAll(title, ";", ",") + ";" + text + "\a",
	}
	var b strings.Builder
	for _, s := range seqs {
		if tmux {
			s = "\x1bPtmux;" + strings.ReplaceAll(s, "\x1b", "\x1b\x1b") + "\x1b\\"
		}
		b.WriteString(s)
	}
	return b.String()
}

// stripControls returns s without control characters (C0, DEL, C1) and invalid UTF-8.
func stripControls(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}
