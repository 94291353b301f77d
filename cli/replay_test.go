package cli_test

// Integration tests of --record and `throttle replay` through cli.Main: a recorded run
// replays to the summary the live run printed, exports as JSON lines, answers what-if, reads
// back when cut off, refuses what is not a recording, and holds no secrets.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	// summaryLine is the first two lines of a run's summary, live or replayed.
	summaryLine = regexp.MustCompile(`(?m)^(?:done|drained|stopped) in .*\n.*$`)
	// summaryFields picks the elapsed time and the counts out of a summary line.
	summaryFields = regexp.MustCompile(`^\w+ in (\S+): ([\d,]+) items, ([\d,]+) ok, ([\d,]+) failed\n([\d,]+) calls, ([\d,]+) retries, ([\d,]+) × 429 · [\d.]+ items/s$`)
	// latencyLine is the summary's latency over the whole run.
	latencyLine = regexp.MustCompile(`(?m)^latency p50 \S+ · p95 \S+ · p99 \S+ · max \S+ over ([\d,]+) calls$`)
)

// count parses a number as human.Count writes it: 1,234.
func count(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("count %q: %v", s, err)
	}
	return n
}

// summaryOf is what a summary line says.
type summaryOf struct {
	line                                       string
	elapsed                                    time.Duration
	items, ok, failed, calls, retries, tooMany int64
}

// parseSummary finds the summary line in out and parses it, failing the test without one.
func parseSummary(t *testing.T, what, out string) summaryOf {
	t.Helper()
	line := summaryLine.FindString(out)
	m := summaryFields.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%s has no summary line (or one in another form):\n%s", what, out)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("%s: summary line %q: %v", what, line, err)
	}
	return summaryOf{line: line, elapsed: d, items: count(t, m[2]), ok: count(t, m[3]), failed: count(t, m[4]),
		calls: count(t, m[5]), retries: count(t, m[6]), tooMany: count(t, m[7])}
}

// parseClock parses human.Clock's m:ss or h:mm:ss.
func parseClock(t *testing.T, s string) time.Duration {
	t.Helper()
	var d time.Duration
	for part := range strings.SplitSeq(s, ":") {
		n, err := strconv.Atoi(part)
		if err != nil {
			t.Fatalf("clock %q: %v", s, err)
		}
		d = d*60 + time.Duration(n)
	}
	return d * time.Second
}

// gunzip returns the decompressed bytes of a gzip file.
func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// exportLine is the part of a line of `replay --export jsonl` the tests look at.
type exportLine struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Adapter string `json:"adapter"`
	Target  string `json:"target"`
	Total   int64  `json:"total"`
	Type    string `json:"type"`
	Status  int    `json:"status"`
	Outcome string `json:"outcome"`
	Final   bool   `json:"final"`
	Calls   int64  `json:"calls"`
}

// decodeExport decodes every line of an export, failing the test on a line that is not one
// JSON object.
func decodeExport(t *testing.T, out string) []exportLine {
	t.Helper()
	var lines []exportLine
	for n, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var raw map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		if err := dec.Decode(&raw); err != nil || dec.More() {
			t.Fatalf("export line %d is not one JSON object (%v): %s", n+1, err, line)
		}
		var l exportLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("export line %d: %v: %s", n+1, err, line)
		}
		lines = append(lines, l)
	}
	return lines
}

// TestReplay records a run of the simulated API that meets its hidden rate limit (429s,
// Retry-After holds, retries, a few 503s) and replays it: the replayed summary is the live
// one, line for line, and the other ways of reading the recording agree with it.
func TestReplay(t *testing.T) {
	t.Parallel()
	const items = 400
	rec := filepath.Join(t.TempDir(), "run.rec")
	// 8 workers at 25 ms a call try some 300 calls/s against a limit of 200/s: 429s for sure,
	// and a run of 3 to 6 seconds.
	live := run(t, invocation{args: []string{"run", "sim", "--input", writeItems(t, items), "--out", outPath(t),
		"--record", rec, "--headless", "--sim-rate", "200/s", "--sim-latency", "25ms", "--sim-error-rate", "0.02",
		"--parallelism", "8", "--retries", "5", "--max-backoff", "200ms"}})
	if live.code != 0 && live.code != 1 { // 1: an item out of retries
		t.Fatalf("live run: exit status %d, want 0 or 1; stderr:\n%s", live.code, live.stderr)
	}
	if !strings.Contains(live.stderr, "throttle replay "+rec) {
		t.Errorf("live run: stderr does not say where it recorded:\n%s", live.stderr)
	}
	want := parseSummary(t, "the live run's stdout", live.stdout)
	wantLatency := latencyLine.FindString(live.stdout)
	if wantLatency == "" {
		t.Fatalf("the live run's stdout has no latency line:\n%s", live.stdout)
	}
	// Otherwise the recording would not show that 429s and retries replay as they happened.
	if want.tooMany == 0 || want.retries == 0 || want.items != items {
		t.Fatalf("the live run made %d items with %d 429s and %d retries, want %d items, some 429s and retries:\n%s",
			want.items, want.tooMany, want.retries, items, live.stdout)
	}
	t.Logf("live: %s", want.line)

	headless := run(t, invocation{args: []string{"replay", rec, "--headless"}})
	if headless.code != 0 {
		t.Fatalf("replay --headless: exit status %d, want 0; stderr:\n%s", headless.code, headless.stderr)
	}
	export := run(t, invocation{args: []string{"replay", rec, "--export", "jsonl"}})
	if export.code != 0 {
		t.Fatalf("replay --export jsonl: exit status %d, want 0; stderr:\n%s", export.code, export.stderr)
	}
	exported := decodeExport(t, export.stdout)

	t.Run("summary is the live one", func(t *testing.T) {
		got := parseSummary(t, "replay --headless", headless.stdout)
		if got.line != want.line {
			t.Errorf("summary line:\nreplay %s\nlive   %s", got.line, want.line)
		}
		if l := latencyLine.FindString(headless.stdout); l != wantLatency {
			t.Errorf("latency line:\nreplay %s\nlive   %s", l, wantLatency)
		}
		if strings.Contains(headless.stdout, "cut off") || strings.Contains(headless.stdout, "missed") {
			t.Errorf("a complete recording replays as cut off or short of events:\n%s", headless.stdout)
		}
	})

	t.Run("per-minute table", func(t *testing.T) {
		_, table, found := strings.Cut(headless.stdout, "\nminute ")
		if !found {
			t.Fatalf("no per-minute table:\n%s", headless.stdout)
		}
		rows := strings.Split(strings.TrimSpace("minute "+table), "\n")
		head := strings.Fields(rows[0])
		if strings.Join(head, " ") != "minute calls/s p50 p95 p99 429 errors par rate" {
			t.Fatalf("table columns %q, want minute calls/s p50 p95 p99 429 errors par rate", head)
		}
		// calls/s has one decimal, the 429 share one decimal of a percent and the summary's
		// elapsed time three: the table adds up to the counts within what that rounding allows.
		var calls, tooMany, errs, callsSlack, tooManySlack float64
		var next time.Duration
		for _, r := range rows[1:] {
			f := strings.Fields(r)
			if len(f) != len(head) {
				t.Fatalf("table row %q: %d columns, want %d", r, len(f), len(head))
			}
			at := parseClock(t, f[0])
			if at != next {
				t.Errorf("table row %q starts at %v, want %v", r, at, next)
			}
			next = at + time.Minute
			perSec, err1 := strconv.ParseFloat(f[1], 64)
			share, err2 := strconv.ParseFloat(strings.TrimSuffix(f[5], "%"), 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("table row %q: calls/s or 429 share do not parse", r)
			}
			length := min(time.Minute, want.elapsed-at).Seconds()
			n := perSec * length
			calls += n
			tooMany += n * share / 100
			rowSlack := 0.05*length + perSec*0.0005
			callsSlack += rowSlack
			tooManySlack += rowSlack + 0.0005*n
			errs += float64(count(t, f[6]))
			if f[7] != "8" || f[8] != "unlimited" {
				t.Errorf("table row %q: parallelism %s and rate %s, want 8 and unlimited, as the run had", r, f[7], f[8])
			}
		}
		if math.Abs(calls-float64(want.calls)) > callsSlack {
			t.Errorf("the table's calls add up to %.2f, the recording has %d (±%.2f for rounding)", calls, want.calls, callsSlack)
		}
		if math.Abs(tooMany-float64(want.tooMany)) > tooManySlack {
			t.Errorf("the table's 429s add up to %.2f, the recording has %d (±%.2f for rounding)", tooMany, want.tooMany, tooManySlack)
		}
		var wantErrs float64
		for _, l := range exported {
			if l.Type == "call" && l.Outcome != "ok" && l.Outcome != "429" {
				wantErrs++
			}
		}
		if errs != wantErrs {
			t.Errorf("the table's errors add up to %v, the export has %v calls that are neither ok nor 429", errs, wantErrs)
		}
	})

	t.Run("export jsonl", func(t *testing.T) {
		if len(exported) < 2 {
			t.Fatalf("export of %d lines:\n%s", len(exported), export.stdout)
		}
		h := exported[0]
		if h.Format != "throttle-recording" || h.Version != 1 || h.Adapter != "sim" || h.Total != items || h.Type != "" {
			t.Errorf("first line is not the header of this run: %+v", h)
		}
		var calls, tooMany, retries int64
		kinds := map[string]int{}
		for _, l := range exported[1:] {
			kinds[l.Type]++
			if l.Type != "call" {
				continue
			}
			calls++
			if l.Status == 429 {
				tooMany++
			}
			if !l.Final {
				retries++
			}
		}
		if calls != want.calls || tooMany != want.tooMany || retries != want.retries {
			t.Errorf("the export has %d calls, %d of them 429, %d retried; the run made %d, %d and %d",
				calls, tooMany, retries, want.calls, want.tooMany, want.retries)
		}
		if end := exported[len(exported)-1]; end.Type != "end" || end.Calls != want.calls {
			t.Errorf("the last line is %+v, want the end record with %d calls", end, want.calls)
		}
		if kinds["snapshot"] == 0 || kinds["change"] == 0 || kinds["hold"] == 0 {
			t.Errorf("lines by type %v: want snapshots, changes and holds too", kinds)
		}
		for k := range kinds {
			if k == "" {
				t.Errorf("a line after the first has no type")
			}
		}
	})

	t.Run("what-if", func(t *testing.T) {
		res := run(t, invocation{args: []string{"replay", rec, "--what-if", "parallelism=16"}})
		if res.code != 0 {
			t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
		}
		if !strings.HasPrefix(res.stdout, "what if: parallelism 16,") {
			t.Errorf("the report does not start with the asked settings:\n%s", res.stdout)
		}
		if !regexp.MustCompile(`(?m)^ +recorded +predicted$`).MatchString(res.stdout) {
			t.Errorf("no recorded/predicted header:\n%s", res.stdout)
		}
		rows := map[string][]string{}
		for _, line := range strings.Split(res.stdout, "\n") {
			if f := strings.Fields(line); len(f) >= 3 {
				rows[strings.Join(f[:len(f)-2], " ")] = f[len(f)-2:]
			}
		}
		recPerSec := fmt.Sprintf("%.1f", float64(want.calls)/want.elapsed.Seconds())
		for name, recorded := range map[string]string{"finish": "", "calls/s": "", "429s": strconv.FormatInt(want.tooMany, 10), "calls": strconv.FormatInt(want.calls, 10)} {
			r, ok := rows[name]
			if !ok {
				t.Errorf("no %q row:\n%s", name, res.stdout)
				continue
			}
			if recorded != "" && strings.ReplaceAll(r[0], ",", "") != recorded {
				t.Errorf("%s: recorded %s, the run had %s", name, r[0], recorded)
			}
			if name == "calls/s" {
				// The summary's elapsed time is rounded to the millisecond: allow the last digit.
				got, _ := strconv.ParseFloat(r[0], 64)
				if wantPS, _ := strconv.ParseFloat(recPerSec, 64); math.Abs(got-wantPS) > 0.15 {
					t.Errorf("calls/s: recorded %s, the run had %s", r[0], recPerSec)
				}
			}
		}
	})

	t.Run("bad what-if", func(t *testing.T) {
		for _, tc := range []struct{ ask, want string }{
			{"parallelism=0", `parallelism "0"`},
			{"bogus=1", `unknown knob "bogus"`},
			{"parallelism", "want a knob and a value"},
		} {
			res := run(t, invocation{args: []string{"replay", rec, "--what-if", tc.ask}})
			if res.code != 2 || !strings.Contains(res.stderr, "--what-if") || !strings.Contains(res.stderr, tc.want) || res.stdout != "" {
				t.Errorf("--what-if %s: exit status %d, stdout %q, stderr:\n%s\nwant 2, nothing on stdout, and %q on stderr",
					tc.ask, res.code, res.stdout, res.stderr, tc.want)
			}
		}
	})

	t.Run("cut off", func(t *testing.T) {
		whole, err := os.ReadFile(rec)
		if err != nil {
			t.Fatal(err)
		}
		half := filepath.Join(t.TempDir(), "half.rec")
		if err := os.WriteFile(half, whole[:len(whole)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		res := run(t, invocation{args: []string{"replay", half, "--headless"}})
		if res.code != 0 {
			t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
		}
		if !strings.Contains(res.stdout, "the recording was cut off") || !strings.Contains(res.stdout, "counted from the calls") {
			t.Errorf("a cut recording replays without saying so:\n%s", res.stdout)
		}
		m := latencyLine.FindStringSubmatch(res.stdout)
		if m == nil {
			t.Fatalf("half a recording replays no calls:\n%s", res.stdout)
		}
		if n := count(t, m[1]); n <= 0 || n >= want.calls {
			t.Errorf("half a recording replays %d calls, want some of the %d", n, want.calls)
		}
	})
}

// TestReplayRefuses: replay exits 2 with a clear message on what it cannot read.
func TestReplayRefuses(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, `{"format":"something-else","version":1}`+"\n")
	zw.Close()
	dir := t.TempDir()
	files := map[string][]byte{
		"text.rec":  []byte("item-1\nitem-2\n"),
		"empty.rec": nil,
		"other.gz":  gz.Bytes(),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		file string
		args []string
		want string
	}{
		{"text.rec", []string{"--headless"}, "not a throttle recording"},
		{"empty.rec", []string{"--headless"}, "not a throttle recording"},
		{"other.gz", []string{"--headless"}, "not a throttle recording"},
		{"other.gz", []string{"--export", "jsonl"}, "not a throttle recording"},
		{"text.rec", []string{"--what-if", "parallelism=4"}, "not a throttle recording"},
		{"missing.rec", []string{"--headless"}, "missing.rec"},
		{"missing.rec", []string{"--export", "jsonl"}, "missing.rec"},
	} {
		path := filepath.Join(dir, tc.file)
		res := run(t, invocation{args: append([]string{"replay", path}, tc.args...)})
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) || res.stdout != "" {
			t.Errorf("replay %s %s: exit status %d, stdout %q, stderr:\n%s\nwant 2, nothing on stdout, and %q on stderr",
				tc.file, strings.Join(tc.args, " "), res.code, res.stdout, res.stderr, tc.want)
		}
	}
}

// TestRecordingHoldsNoSecrets records `run http` with a token in a header (from the
// environment) and a key in the URL's query, against a server that echoes both in its
// answers: neither is anywhere in the recording, raw or exported.
func TestRecordingHoldsNoSecrets(t *testing.T) {
	t.Parallel()
	const (
		token = "tok-9f3b.Qx_77-secret"
		key   = "SECRET123"
		n     = 60
	)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		echo := r.Header.Get("Authorization") + " " + r.URL.String()
		switch id := itemID(a.path); {
		case id%7 == 3 && a.nth == 1: // a 429 with a Retry-After: a hold in the recording
			w.Header().Set("Retry-After", "0")
			http.Error(w, "slow down, "+echo, http.StatusTooManyRequests)
		case id%11 == 5 && a.nth == 1:
			http.Error(w, "oops: "+echo, http.StatusInternalServerError)
		case id%13 == 6:
			http.Error(w, "no such thing as "+echo, http.StatusNotFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"you_sent": echo})
		}
	})
	rec := filepath.Join(t.TempDir(), "run.rec")
	res := run(t, invocation{
		args: []string{"run", "http", "--input", writeItems(t, n), "--out", outPath(t), "--record", rec,
			"--url", srv.URL + "/items/{item}?api_key=" + key, "--header", "Authorization: Bearer ${TOKEN}",
			"--parallelism", "4", "--retries", "2", "--max-backoff", "20ms", "--headless"},
		env: map[string]string{"TOKEN": token},
	})
	if res.code != 1 { // the 404s
		t.Fatalf("exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
	}
	// The secrets were in play: the server got both.
	for _, a := range srv.seen() {
		if got := a.header.Get("Authorization"); got != "Bearer "+token {
			t.Fatalf("%s: the server got Authorization %q, want the token", a.path, got)
		}
	}
	raw := gunzip(t, rec)
	export := run(t, invocation{args: []string{"replay", rec, "--export", "jsonl"}})
	if export.code != 0 {
		t.Fatalf("replay --export jsonl: exit status %d; stderr:\n%s", export.code, export.stderr)
	}
	lines := decodeExport(t, export.stdout)
	var calls int
	for _, l := range lines {
		if l.Type == "call" {
			calls++
		}
	}
	if calls != srv.count() {
		t.Errorf("the recording has %d calls, the server saw %d", calls, srv.count())
	}
	// The target is in the header, its key redacted: the check below looks where a key would be.
	if target := lines[0].Target; !strings.Contains(target, "api_key=REDACTED") || !strings.Contains(target, "/items/{item}") {
		t.Errorf("the header's target is %q, want the url template with api_key=REDACTED", target)
	}
	for what, text := range map[string]string{"the recording": string(raw), "its export": export.stdout} {
		for _, secret := range []string{token, key} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds %q:\n%s", what, secret, text)
			}
		}
	}
}
