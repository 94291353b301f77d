package cli

// Tests of --log: the lines and their keys (fed synthetic events), the scrubbing of secrets
// and URLs, a whole run through Main against a server that echoes the token back, and a log
// that cannot be written, which must not slow the run.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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

// TestEventLogLines feeds an eventLog the events of a run and checks every line: which lines
// come, in which order, with which keys and values, stamped with the time of their event; a
// storm of 13,500 failed calls is three errors lines; the advice is written when it changes,
// not every window.
func TestEventLogLines(t *testing.T) {
	var buf bytes.Buffer
	set := engine.Settings{Parallelism: 8, Pace: 250 * time.Millisecond, Burst: 1}
	l := newEventLog(&buf, &scrubber{}, func() (engine.Settings, engine.Effective) { return set, engine.Effective{} })
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // on a 5 s boundary: the advisor's windows
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	l.start(t0, startInfo{title: "http · ids.txt", adapter: "http", target: "https://api.example.com/v1/users/{item}",
		input: "ids.txt", out: "results.jsonl", total: 1234, settings: set, retries: 3, timeout: 30 * time.Second, chunk: 1})
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
		start.str("level") != "INFO" || start.str("timeout") != "30s" {
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

// TestEventLogNotStarted: a zero Summary (the run never started) says so, not "0 ok".
func TestEventLogNotStarted(t *testing.T) {
	var buf bytes.Buffer
	l := newEventLog(&buf, &scrubber{}, func() (engine.Settings, engine.Effective) { return engine.Settings{}, engine.Effective{} })
	l.end(time.Now(), engine.Summary{}, 0)
	lines := parseLog(t, buf.String())
	if len(lines) != 1 || lines[0].str("state") != "not started" || lines[0]["ok"] != nil {
		t.Errorf("lines %v, want one end line with state \"not started\"", lines)
	}
}

// TestScrubber: URLs of any scheme lose their userinfo, query values and fragment; the values
// of the ${NAME}s of the command line and of the job file go, as they are and as JSON escapes
// them, also after a change of the variable; values shorter than 4 bytes and variables the run
// does not read stay.
func TestScrubber(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "job.toml")
	if err := os.WriteFile(cfg, []byte("header = [\"X-Key: ${CFG_KEY}\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"TOKEN": "tok/&<x>-1234", "SHORT": "abc", "CFG_KEY": "from-the-job-file", "UNUSED": "not-read-by-the-run"}
	var mu sync.Mutex
	env := &Env{
		Args: []string{"run", "http", "--header", "Authorization: Bearer ${TOKEN}", "--body", `{"a":"${SHORT}"}`},
		LookupEnv: func(k string) (string, bool) {
			mu.Lock()
			defer mu.Unlock()
			v, ok := vars[k]
			return v, ok
		},
	}
	s := newScrubber(env, &runFlags{config: cfg})
	for _, tc := range []struct{ in, want string }{
		{"Bearer tok/&<x>-1234", "Bearer REDACTED"},
		{`{"auth":"tok\/&<x>-1234"}`, `{"auth":"REDACTED"}`},                // PHP
		{`{"auth":"tok/\u0026\u003cx\u003e-1234"}`, `{"auth":"REDACTED"}`},  // Go
		{`{"auth":"tok\/\u0026\u003cx\u003e-1234"}`, `{"auth":"REDACTED"}`}, // both
		{"key from-the-job-file here", "key REDACTED here"},                 // from --config
		{"abc stays, so does not-read-by-the-run", "abc stays, so does not-read-by-the-run"},
		{`Get "https://u:p@h/x?key=v#f": refused`, `Get "https://REDACTED@h/x?key=REDACTED#REDACTED": refused`},
		{"dial postgres://loader:pw@db:5432/app failed", "dial postgres://REDACTED@db:5432/app failed"},
		{`"redis://:pw@host:6379/0"`, `"redis://REDACTED@host:6379/0"`},
		{"a :// alone, http://plain/path", "a :// alone, http://plain/path"},
	} {
		if got := s.text(tc.in); got != tc.want {
			t.Errorf("text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	mu.Lock()
	vars["TOKEN"] = "rotated-token-5678"
	mu.Unlock()
	if got := s.text("old tok/&<x>-1234 new rotated-token-5678"); got != "old REDACTED new REDACTED" {
		t.Errorf("after a rotation: %q", got)
	}
}

// TestEventLogRun runs a job through Main with --log against a server that echoes the
// Authorization header back: in error bodies (text and JSON), and in a status line's reason
// phrase, which reaches the call's message, so that only the log's own scrubbing stands
// between the token and the log. The log holds every kind of line the run caused, its error
// counts are the server's, and the token is nowhere in it, raw or decoded. A second run
// appends to the same log, which was created 0600.
func TestEventLogRun(t *testing.T) {
	t.Parallel()
	const token = "tok/&<x>-5f3a9e"
	var mu sync.Mutex
	byClass := map[string]int{}
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:])
		auth := r.Header.Get("Authorization")
		mu.Lock()
		seen[r.URL.Path]++
		nth := seen[r.URL.Path]
		class := ""
		switch {
		case id == 5 && nth == 1:
			class = "429"
		case id%10 == 1:
			class = "5xx"
		case id%10 == 2 || id%10 == 3:
			class = "4xx"
		}
		byClass[class]++
		mu.Unlock()
		switch {
		case class == "429":
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down, "+auth, http.StatusTooManyRequests)
		case id%10 == 1: // an unknown status whose reason phrase is the header: it reaches the message
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			fmt.Fprintf(conn, "HTTP/1.1 599 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", auth)
			conn.Close()
		case id%10 == 2:
			http.Error(w, "no such user for "+auth, http.StatusNotFound)
		case id%10 == 3:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]string{"error": "forbidden", "you_sent": auth})
		default:
			fmt.Fprintf(w, `{"id":%d}`, id)
		}
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	logPath := filepath.Join(dir, "run.log")
	runWith := func(items string) (int, string) {
		input := filepath.Join(t.TempDir(), "items.txt")
		if err := os.WriteFile(input, []byte(items), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		code := Main(Env{
			Args: []string{"run", "http", "--input", input, "--out", filepath.Join(t.TempDir(), "results.jsonl"),
				"--url", srv.URL + "/items/{item}", "--header", "Authorization: Bearer ${TOKEN}",
				"--parallelism", "4", "--retries", "1", "--max-backoff", "2s", "--headless", "--log", logPath},
			Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
			LookupEnv: func(k string) (string, bool) {
				if k == "TOKEN" {
					return token, true
				}
				return "", false
			},
			Signals: make(chan os.Signal),
		})
		return code, stderr.String()
	}
	var items strings.Builder
	for i := range 40 {
		fmt.Fprintf(&items, "%d\n", i)
	}
	code, stderr := runWith(items.String())
	if code != ExitFailures {
		t.Fatalf("exit status %d, want 1 (some items fail); stderr:\n%s", code, stderr)
	}
	if st, err := os.Stat(logPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the log: %v, mode %v; want it created 0600", err, st.Mode().Perm())
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The token's tail has no character JSON escapes: this finds it however it was written.
	if strings.Contains(string(raw), "5f3a9e") {
		t.Fatalf("the token is in the log:\n%s", raw)
	}
	lines := parseLog(t, string(raw))

	start := byMsg(lines, "start")
	if len(start) != 1 || start[0].str("adapter") != "http" || start[0].num("total") != 40 ||
		start[0].str("target") != srv.URL+"/items/{item}" || start[0].str("title") == "" {
		t.Errorf("start lines %v", start)
	}
	if s, _ := start[0]["settings"].(map[string]any); s["parallelism"] != 4.0 {
		t.Errorf("start settings %v, want parallelism 4", start[0]["settings"])
	}
	if h := byMsg(lines, "hold"); len(h) != 1 || h[0].str("for") != "1s" {
		t.Errorf("hold lines %v, want one for the Retry-After: 1", h)
	}
	done := false
	for _, c := range byMsg(lines, "change") {
		done = done || (c.str("knob") == "state" && c.str("from") == "running" && c.str("to") == "done" && c.str("origin") == "engine")
	}
	if !done {
		t.Errorf("no change line of the state running → done by the engine: %v", byMsg(lines, "change"))
	}
	mu.Lock()
	want := map[string]int64{"5xx": int64(byClass["5xx"]), "4xx": int64(byClass["4xx"]), "429": int64(byClass["429"])}
	calls := int64(0)
	for _, n := range byClass {
		calls += int64(n)
	}
	mu.Unlock()
	got := map[string]int64{}
	failed := map[string]int64{}
	examples := map[string]string{}
	for _, e := range byMsg(lines, "errors") {
		got[e.str("class")] += e.num("calls")
		failed[e.str("class")] += e.num("failed_rows")
		examples[e.str("class")] = e.str("example")
		if e.str("example") == "" {
			t.Errorf("errors line without an example: %v", e)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("errors by class %v, the server answered %v", got, want)
	}
	if failed["5xx"] != 4 || failed["4xx"] != 8 || failed["429"] != 0 {
		t.Errorf("failed rows by class %v, want 5xx 4, 4xx 8, 429 0", failed)
	}
	// The 599s are the only 5xx: their message carried the token, and the log scrubbed it.
	if ex := examples["5xx"]; ex != "599 Bearer REDACTED" {
		t.Errorf("the 5xx example is %q, want the reason phrase with the token redacted", ex)
	}
	end := byMsg(lines, "end")
	if len(end) != 1 || end[0].str("state") != "done" || end[0].num("ok") != 28 || end[0].num("failed") != 12 ||
		end[0].num("calls") != calls || end[0].num("dropped_events") != 0 {
		t.Errorf("end lines %v, want 28 ok, 12 failed, %d calls, nothing dropped", end, calls)
	}
	if last := lines[len(lines)-1]; last.str("msg") != "end" {
		t.Errorf("the last line is %v, want the end", last)
	}

	// A second run appends.
	if code, stderr := runWith("10\n20\n"); code != 0 {
		t.Fatalf("second run: exit status %d; stderr:\n%s", code, stderr)
	}
	raw2, _ := os.ReadFile(logPath)
	if !bytes.HasPrefix(raw2, raw) {
		t.Fatal("the second run did not append to the log")
	}
	lines2 := parseLog(t, string(raw2[len(raw):]))
	if len(lines2) < 2 || lines2[0].str("msg") != "start" || lines2[len(lines2)-1].str("msg") != "end" ||
		lines2[len(lines2)-1].num("ok") != 2 {
		t.Errorf("the second run's lines: %v", lines2)
	}
}

// TestEventLogNeverSlowsTheEngine points the log at a pipe that is full and that nobody reads,
// so its very first write blocks: 20,000 items still run to their end, the end of the run
// gives up waiting for the log after endWait and says so, and once the pipe is read the log
// ends with the count of the events it had to drop.
func TestEventLogNeverSlowsTheEngine(t *testing.T) {
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
	var stderr bytes.Buffer
	stop := runEventLog(&Env{Stderr: &stderr}, fifo, w, &scrubber{}, e, startInfo{adapter: "sim", total: n}, 300*time.Millisecond)

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
	stop(sum)
	if waited := time.Since(begin); waited > 5*time.Second {
		t.Errorf("the end of the run waited %v for a blocked log, want about 300ms", waited)
	}
	if !strings.Contains(stderr.String(), "writing blocked for 300ms") {
		t.Errorf("stderr %q: want a word that the log is blocked", stderr.String())
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
	if end.str("msg") != "end" || end.num("dropped_events") < n-logCallBuffer {
		t.Errorf("end line %v: want at least %d dropped events (the call-end buffer holds %d)", end, n-logCallBuffer, logCallBuffer)
	}
	var counted int64
	for _, e := range byMsg(lines, "errors") {
		counted += e.num("calls")
	}
	if counted == 0 || counted > logCallBuffer {
		t.Errorf("%d failed calls counted; want some, at most the %d buffered", counted, logCallBuffer)
	}
}

// TestEventLogOwnFile: --log naming the results or the input file is a usage error, before
// anything is called and without a byte written to either.
func TestEventLogOwnFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "items.txt")
	out := filepath.Join(dir, "results.jsonl")
	if err := os.WriteFile(input, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ log, flag string }{{out, "--out"}, {filepath.Join(dir, ".", "items.txt"), "--input"}} {
		var stdout, stderr bytes.Buffer
		code := Main(Env{
			Args:   []string{"run", "sim", "--input", input, "--out", out, "--sim-latency", "1ms", "--headless", "--log", tc.log},
			Stdin:  strings.NewReader(""),
			Stdout: &stdout, Stderr: &stderr, Signals: make(chan os.Signal),
		})
		if code != ExitUsage || !strings.Contains(stderr.String(), "is the "+tc.flag+" file") {
			t.Errorf("--log %s: exit status %d, stderr %q; want 2 and a word that it is the %s file", tc.log, code, stderr.String(), tc.flag)
		}
		if b, _ := os.ReadFile(input); string(b) != "a\nb\n" {
			t.Errorf("the input changed: %q", b)
		}
		if b, _ := os.ReadFile(out); len(b) != 0 {
			t.Errorf("the results got %q", b)
		}
	}
}
