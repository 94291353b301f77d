package eventlog

// Tests of the event log: the lines and their keys (fed synthetic events), the scrubbing of
// every string, a write error counted, and a log that cannot be written, which must not slow
// the run. The wiring of --log (the file, its checks, a whole run) is tested in cli.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
)

// logLine is one decoded line of an event log.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }
func (l logLine) num(k string) int64  { f, _ := l[k].(float64); return int64(f) }

// keys returns the line's keys, sorted, groups as "group.key".
func (l logLine) keys() []string {
	var ks []string
	for k, v := range l {
		if g, ok := v.(map[string]any); ok {
			for gk := range g {
				ks = append(ks, k+"."+gk)
			}
			continue
		}
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// parseLog decodes every line of an event log, failing the test on one that is not a JSON
// object with time, level and msg.
func parseLog(t *testing.T, text string) []logLine {
	t.Helper()
	var lines []logLine
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %d is not JSON (%v): %s", n, err, sc.Bytes())
		}
		if _, err := time.Parse(time.RFC3339Nano, l.str("time")); err != nil || l.str("level") == "" || l.str("msg") == "" {
			t.Fatalf("log line %d lacks time, level or msg: %s", n, sc.Bytes())
		}
		lines = append(lines, l)
	}
	return lines
}

// byMsg returns the lines whose msg is msg.
func byMsg(lines []logLine, msg string) []logLine {
	var out []logLine
	for _, l := range lines {
		if l.str("msg") == msg {
			out = append(out, l)
		}
	}
	return out
}

// The keys of each kind of line: the log's schema. A change here is a change of the contract
// of anyone who greps or jq's these logs.
var logSchema = map[string][]string{
	"start": {"adapter", "auto", "chunk", "input", "level", "msg", "out", "pid", "retries",
		"settings.burst", "settings.max_parallelism", "settings.pace", "settings.parallelism", "settings.rate",
		"target", "time", "timeout", "title", "total", "version"},
	"change":  {"from", "knob", "level", "msg", "origin", "time", "to"},
	"note":    {"level", "msg", "origin", "text", "time"},
	"hold":    {"for", "level", "msg", "reason", "time", "until"},
	"warning": {"level", "msg", "text", "time"},
	"errors":  {"calls", "class", "example", "failed_rows", "level", "msg", "time", "window"},
	"advice":  {"action", "binding", "from", "knob", "level", "msg", "reason", "time", "to"},
	"end": {"calls", "dropped_events", "elapsed", "elapsed_s", "failed", "level", "lost", "msg", "not_started",
		"ok", "retries", "state", "time", "too_many", "total", "warnings"},
}

// TestLines feeds a writer the events of a run and checks every line: which lines
// come, in which order, with which keys and values, stamped with the time of their event; a
// storm of 13,500 failed calls is three errors lines; the advice is written when it changes,
// not every window.
func TestLines(t *testing.T) {
	var buf bytes.Buffer
	set := engine.Settings{Parallelism: 8, Pace: 250 * time.Millisecond, Burst: 1}
	l := newWriter(&buf, nil, func() (engine.Settings, engine.Effective) { return set, engine.Effective{} })
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // on a 5 s boundary: the advisor's windows
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	l.start(t0, Job{Title: "http · ids.txt", Adapter: "http", Target: "https://api.example.com/v1/users/{item}",
		Input: "ids.txt", Out: "results.jsonl", Retries: 3, Timeout: 30 * time.Second, Chunk: 1, Version: "throttle 1.2.3 (go1.26)"}, 1234, set)
	l.event(engine.Event{Kind: engine.ControlChange, At: t0, Change: engine.Change{At: t0, Origin: "cli", Knob: "start", To: "parallelism 8, …"}})
	l.event(engine.Event{Kind: engine.ControlChange, At: at(time.Second), Change: engine.Change{At: at(time.Second), Origin: "tui", Knob: "parallelism", From: "8", To: "12"}})
	l.event(engine.Event{Kind: engine.ControlChange, At: at(2 * time.Second), Change: engine.Change{At: at(2 * time.Second), Origin: "auto", Knob: "note", To: "pausing for a minute: the operator changed parallelism"}})
	l.event(engine.Event{Kind: engine.HoldStart, At: at(3 * time.Second), Until: at(5 * time.Second), Message: "server asked for 2s of quiet"})
	l.event(engine.Event{Kind: engine.Warning, At: at(3 * time.Second), Message: "parallelism 512 needs about 530 open files"})
	// Another call's 429 a moment later, extending the hold by as much: the same pause, no line.
	l.event(engine.Event{Kind: engine.HoldStart, At: at(3*time.Second + 2*time.Millisecond), Until: at(5*time.Second + 2*time.Millisecond), Message: "server asked for 2s of quiet"})
	// A longer wait within the pause: it grows by 2s, which is news.
	l.event(engine.Event{Kind: engine.HoldStart, At: at(4 * time.Second), Until: at(7 * time.Second), Message: "server asked for 3s of quiet"})
	end := func(i int, status int, verdict engine.Verdict, msg string, final, isErr bool) engine.Event {
		return engine.Event{Kind: engine.CallEnd, At: at(time.Duration(i%4000) * time.Millisecond), Attempt: 1, InFlight: 8,
			Latency: 40 * time.Millisecond, Status: status, Verdict: verdict, Message: msg, Final: final, Err: isErr}
	}
	for i := range 10000 {
		l.event(end(i, 503, engine.Retry, "503 Service Unavailable", i < 100, false))
	}
	for i := range 3000 {
		l.event(end(i, 429, engine.Retry, "429 Too Many Requests", false, false))
	}
	for i := range 500 {
		l.event(end(i, 0, engine.Retry, "timeout after 30s", i < 7, true))
	}
	for i := range 2000 {
		l.event(end(i, 200, engine.OK, "", true, false))
	}
	l.flush(at(5 * time.Second))
	l.advise(at(5 * time.Second))
	l.advise(at(5*time.Second + time.Millisecond)) // the same advice: no line
	// A clean window: the advice goes back to hold, which is a change, so it is written.
	for i := range 1000 {
		l.event(engine.Event{Kind: engine.CallEnd, At: at(5*time.Second + time.Duration(i)*time.Millisecond), Attempt: 1,
			InFlight: 2, Latency: 40 * time.Millisecond, Status: 200, Verdict: engine.OK, Final: true})
	}
	l.flush(at(10 * time.Second)) // nothing failed: no line
	l.advise(at(10 * time.Second))
	l.end(at(10*time.Second), engine.Summary{State: engine.Done, Total: 1234, OK: 1200, Failed: 34, Calls: 16500,
		Retries: 13400, TooMany: 3000, Elapsed: 10 * time.Second}, 7)
	if l.err != nil {
		t.Fatal(l.err)
	}

	lines := parseLog(t, buf.String())
	var msgs []string
	for _, ln := range lines {
		msgs = append(msgs, ln.str("msg"))
		if want, ok := logSchema[ln.str("msg")]; !ok {
			t.Errorf("a line of no known kind: %v", ln)
		} else if got := ln.keys(); !slices.Equal(got, want) {
			if ln.str("msg") == "advice" && ln.str("action") == "hold" {
				// A hold turns no knob: it has no knob, from or to.
				want = slices.DeleteFunc(slices.Clone(want), func(k string) bool { return k == "knob" || k == "from" || k == "to" })
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s line keys %v, want %v", ln.str("msg"), got, want)
			}
		}
	}
	wantMsgs := []string{"start", "change", "note", "hold", "warning", "hold", "errors", "errors", "errors", "advice", "advice", "end"}
	if !slices.Equal(msgs, wantMsgs) {
		t.Fatalf("lines %q, want %q\n%s", msgs, wantMsgs, buf.String())
	}

	start := lines[0]
	if start.str("time") != "2026-11-23T10:00:00Z" || start.str("adapter") != "http" || start.num("total") != 1234 ||
		start.str("level") != "INFO" || start.str("timeout") != "30s" || start.str("version") != "throttle 1.2.3 (go1.26)" {
		t.Errorf("start line %v", start)
	}
	if s, _ := start["settings"].(map[string]any); s["parallelism"] != 8.0 || s["pace"] != "250ms" || s["rate"] != "unlimited" || s["burst"] != 1.0 {
		t.Errorf("start settings %v", start["settings"])
	}
	if c := lines[1]; c.str("origin") != "tui" || c.str("knob") != "parallelism" || c.str("from") != "8" || c.str("to") != "12" ||
		c.str("time") != "2026-11-23T10:00:01Z" {
		t.Errorf("change line %v: want the tui's parallelism 8 → 12, at its own time", c)
	}
	if n := lines[2]; n.str("origin") != "auto" || !strings.HasPrefix(n.str("text"), "pausing") {
		t.Errorf("note line %v", n)
	}
	if h := lines[3]; h.str("for") != "2s" || h.str("until") != "2026-11-23T10:00:05Z" || h.str("level") != "WARN" {
		t.Errorf("hold line %v", h)
	}
	if w := lines[4]; !strings.Contains(w.str("text"), "open files") {
		t.Errorf("warning line %v", w)
	}
	if h := lines[5]; h.str("for") != "3s" || h.str("until") != "2026-11-23T10:00:07Z" {
		t.Errorf("second hold line %v: want the 3s wait", h)
	}
	lines = slices.Delete(lines, 5, 6) // the rest as before
	errs := map[string]logLine{}
	for _, e := range lines[5:8] {
		errs[e.str("class")] = e
		if e.str("window") != "5s" || e.str("level") != "WARN" {
			t.Errorf("errors line %v: want a 5s window at WARN", e)
		}
	}
	for class, want := range map[string][3]any{
		"5xx":     {int64(10000), int64(100), "503 Service Unavailable"},
		"429":     {int64(3000), int64(0), "429 Too Many Requests"},
		"timeout": {int64(500), int64(7), "timeout after 30s"},
	} {
		e := errs[class]
		if e.num("calls") != want[0] || e.num("failed_rows") != want[1] || e.str("example") != want[2] {
			t.Errorf("errors line of %s: %v, want calls %v, failed_rows %v, example %q", class, e, want[0], want[1], want[2])
		}
	}
	if a := lines[8]; a.str("action") != "lower" || a.str("knob") != "parallelism" || a.str("from") != "8" || a.str("to") != "5" ||
		a.str("binding") != "server" || !strings.Contains(a.str("reason"), "429") {
		t.Errorf("advice line %v: want to lower parallelism 8 → 5 for the 429s", a)
	}
	if a := lines[9]; a.str("action") != "hold" || a.str("time") != "2026-11-23T10:00:10Z" {
		t.Errorf("advice line %v: want a hold once the 429s stopped", a)
	}
	e := lines[10]
	if e.str("state") != "done" || e.num("ok") != 1200 || e.num("failed") != 34 || e.num("too_many") != 3000 ||
		e.str("elapsed") != "10s" || e.num("elapsed_s") != 10 || e.num("dropped_events") != 7 || e.str("level") != "WARN" {
		t.Errorf("end line %v", e)
	}
}

// TestNotStarted: a zero Summary (the run never started) says so, not "0 ok".
func TestNotStarted(t *testing.T) {
	var buf bytes.Buffer
	l := newWriter(&buf, nil, func() (engine.Settings, engine.Effective) { return engine.Settings{}, engine.Effective{} })
	l.end(time.Now(), engine.Summary{}, 0)
	lines := parseLog(t, buf.String())
	if len(lines) != 1 || lines[0].str("state") != "not started" || lines[0]["ok"] != nil {
		t.Errorf("lines %v, want one end line with state \"not started\"", lines)
	}
}

// TestNeverSlowsTheEngine points the log at a pipe that is full and that nobody reads,
// so its very first write blocks: 20,000 items still run to their end, the end of the run
// gives up waiting for the log after EndWait and says so, and once the pipe is read the log
// ends with the count of the events it had to drop.
func TestNeverSlowsTheEngine(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "log.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	rfd, err := syscall.Open(fifo, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	reader := os.NewFile(uintptr(rfd), "reader")
	defer reader.Close()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Fill the pipe through a second, raw writer, so that the log's first write blocks.
	fill, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	filled, chunk := 0, bytes.Repeat([]byte{'x'}, 4096)
	for {
		n, err := syscall.Write(fill, chunk)
		if n > 0 {
			filled += n
		}
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	syscall.Close(fill)

	const n = 20000
	sim := adapters.NewSimAdapter(adapters.NewSim(adapters.SimConfig{Latency: time.Nanosecond, ErrorRate: 0.3, Seed: 7}))
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 8, Burst: 1}, Adapter: sim,
		Source: engine.NewLineReader(strings.NewReader(strings.Repeat("item\n", n)), false), Total: n,
		Results: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := Start(w, e, Job{Adapter: "sim"}, Options{EndWait: 300 * time.Millisecond})

	ran := make(chan engine.Summary, 1)
	go func() {
		sum, err := e.Run(context.Background())
		if err != nil {
			t.Error(err)
		}
		ran <- sum
	}()
	var sum engine.Summary
	select {
	case sum = <-ran:
	case <-time.After(60 * time.Second):
		t.Fatal("the run did not end while its log was blocked")
	}
	if sum.OK+sum.Failed != n {
		t.Fatalf("%d rows, want %d", sum.OK+sum.Failed, n)
	}
	begin := time.Now()
	err = l.End(sum)
	if waited := time.Since(begin); waited > 5*time.Second {
		t.Errorf("the end of the run waited %v for a blocked log, want about 300ms", waited)
	}
	if !errors.Is(err, ErrBlocked) || err.Error() != "writing blocked for 300ms; the log may lack its last lines" {
		t.Errorf("End: %v, want ErrBlocked saying it waited 300ms", err)
	}

	// Now read: the log goes on, and ends.
	all, err := io.ReadAll(reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < filled {
		t.Fatalf("read %d bytes, want the %d of the filling and the log", len(all), filled)
	}
	lines := parseLog(t, string(all[filled:]))
	if len(lines) < 2 || lines[0].str("msg") != "start" {
		t.Fatalf("log lines %v", lines)
	}
	end := lines[len(lines)-1]
	if end.str("msg") != "end" || end.num("dropped_events") < n-callBuffer {
		t.Errorf("end line %v: want at least %d dropped events (the call-end buffer holds %d)", end, n-callBuffer, callBuffer)
	}
	var counted int64
	for _, e := range byMsg(lines, "errors") {
		counted += e.num("calls")
	}
	if counted == 0 || counted > callBuffer {
		t.Errorf("%d failed calls counted; want some, at most the %d buffered", counted, callBuffer)
	}
}

// TestScrubEveryString: every string of every kind of line goes through Options.Scrub — the
// start line's fields, a change's values, a note, a hold's reason, a warning, an errors line's
// example — while numbers and the line's own keys stay as they are.
func TestScrubEveryString(t *testing.T) {
	const secret = "s3cr3t-token"
	var buf bytes.Buffer
	l := newWriter(&buf, func(s string) string { return strings.ReplaceAll(s, secret, "REDACTED") },
		func() (engine.Settings, engine.Effective) { return engine.Settings{Parallelism: 1}, engine.Effective{} })
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	l.start(t0, Job{Title: "t " + secret, Adapter: "http", Target: "https://h/?k=" + secret, Input: secret + ".txt", Out: "o"}, 3,
		engine.Settings{Parallelism: 1})
	l.event(engine.Event{Kind: engine.ControlChange, At: t0, Change: engine.Change{At: t0, Origin: "ctl " + secret, Knob: "rate", From: secret, To: "5/s"}})
	l.event(engine.Event{Kind: engine.ControlChange, At: t0, Change: engine.Change{At: t0, Origin: "auto", Knob: "note", To: "saw " + secret}})
	l.event(engine.Event{Kind: engine.HoldStart, At: t0, Until: t0.Add(time.Second), Message: "wait " + secret})
	l.event(engine.Event{Kind: engine.Warning, At: t0, Message: "warn " + secret})
	l.event(engine.Event{Kind: engine.CallEnd, At: t0, Status: 500, Verdict: engine.Fail, Final: true, Message: "500 " + secret})
	l.end(t0.Add(time.Second), engine.Summary{State: engine.Done, Total: 3, Failed: 1, Calls: 1}, 0)
	if l.err != nil {
		t.Fatal(l.err)
	}
	if strings.Contains(buf.String(), secret) {
		t.Fatalf("the secret is in the log:\n%s", buf.String())
	}
	lines := parseLog(t, buf.String())
	var msgs []string
	for _, ln := range lines {
		msgs = append(msgs, ln.str("msg"))
	}
	if want := []string{"start", "change", "note", "hold", "warning", "errors", "end"}; !slices.Equal(msgs, want) {
		t.Fatalf("lines %q, want %q", msgs, want)
	}
	for i, want := range map[int][2]string{0: {"title", "t REDACTED"}, 1: {"from", "REDACTED"}, 2: {"text", "saw REDACTED"},
		3: {"reason", "wait REDACTED"}, 4: {"text", "warn REDACTED"}, 5: {"example", "500 REDACTED"}} {
		if got := lines[i].str(want[0]); got != want[1] {
			t.Errorf("%s line's %s is %q, want %q", msgs[i], want[0], got, want[1])
		}
	}
	if lines[0].num("total") != 3 || lines[5].num("calls") != 1 {
		t.Errorf("numbers changed: %v %v", lines[0], lines[5])
	}
}

// failWriter fails every write after the first n.
type failWriter struct {
	n   int
	buf bytes.Buffer
}

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, errors.New("disk full")
	}
	w.n--
	return w.buf.Write(p)
}

func (w *failWriter) Close() error { return nil }

// TestWriteError: a log whose writes fail from its second line on ends with a WriteError that
// carries the first error and counts every line lost; the run itself ends as usual.
func TestWriteError(t *testing.T) {
	t.Parallel()
	const n = 50
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 2, Burst: 1},
		Adapter: engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
			return engine.Outcome{Verdict: engine.OK}, nil
		}),
		Source: engine.NewLineReader(strings.NewReader(strings.Repeat("item\n", n)), false), Total: n,
		Results: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &failWriter{n: 1}
	l := Start(w, e, Job{Adapter: "func"}, Options{})
	sum, err := e.Run(context.Background())
	if err != nil || sum.OK != n {
		t.Fatalf("run: %+v, %v", sum, err)
	}
	err = l.End(sum)
	we, ok := errors.AsType[*WriteError](err)
	// At least the end line, and the change of state to done, were lost.
	if !ok || we.Err.Error() != "disk full" || we.Lost < 2 || !strings.HasSuffix(err.Error(), "lines lost)") {
		t.Fatalf("End: %v, want a WriteError of disk full with the lines lost", err)
	}
	if lines := parseLog(t, w.buf.String()); len(lines) != 1 || lines[0].str("msg") != "start" {
		t.Errorf("written %v, want the start line only", lines)
	}
}

// TestWriteErrorSaysOneLine: one lost line is "1 line lost", not "1 lines lost".
func TestWriteErrorSaysOneLine(t *testing.T) {
	for n, want := range map[int64]string{1: "disk full (1 line lost)", 3: "disk full (3 lines lost)"} {
		if got := (&WriteError{Err: errors.New("disk full"), Lost: n}).Error(); got != want {
			t.Errorf("Lost %d: %q, want %q", n, got, want)
		}
	}
}
