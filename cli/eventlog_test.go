package cli

// Tests of the wiring of --log: the variables whose values are scrubbed, a whole run through
// Main against a server that echoes the token back, and a log naming the results or the input.
// The log's lines themselves are tested in package eventlog.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// logLine is one decoded line of an event log (the lines themselves are tested in eventlog).
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }
func (l logLine) num(k string) int64  { f, _ := l[k].(float64); return int64(f) }

// parseLog decodes every line of an event log, failing the test on one that is not a JSON
// object with a msg.
func parseLog(t *testing.T, text string) []logLine {
	t.Helper()
	var lines []logLine
	for n, raw := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		var l logLine
		if err := json.Unmarshal([]byte(raw), &l); err != nil || l.str("msg") == "" {
			t.Fatalf("log line %d is not a JSON line with a msg (%v): %s", n+1, err, raw)
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

// TestScrubber: the scrubber of a run reads the ${NAME}s of its command line and of its job
// file. URLs of any scheme lose their userinfo, query values and fragment; the values
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
		if got := s.Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	mu.Lock()
	vars["TOKEN"] = "rotated-token-5678"
	mu.Unlock()
	if got := s.Text("old tok/&<x>-1234 new rotated-token-5678"); got != "old REDACTED new REDACTED" {
		t.Errorf("after a rotation: %q", got)
	}
	// The engine's hook scrubs the same secrets and leaves URLs alone; a run that reads no
	// variable gets none.
	if h := scrubHook(env, &runFlags{config: cfg}); h == nil || h("https://u:p@h/ rotated-token-5678") != "https://u:p@h/ REDACTED" {
		t.Errorf("the engine's hook: want the secret scrubbed and the URL kept")
	}
	if h := scrubHook(&Env{Args: []string{"run", "sim"}, LookupEnv: env.LookupEnv}, &runFlags{}); h != nil {
		t.Errorf("a run that reads no variable got a hook")
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
