package cli_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// summaryDoc is what a test reads of --summary-json.
type summaryDoc struct {
	State       string  `json:"state"`
	WallSeconds float64 `json:"wall_seconds"`
	Items       struct {
		Total  int64 `json:"total"`
		OK     int64 `json:"ok"`
		Failed int64 `json:"failed"`
		NotRun int64 `json:"not_run"`
		Lost   int64 `json:"lost"`
	} `json:"items"`
	Calls    int64            `json:"calls"`
	Retries  int64            `json:"retries"`
	TooMany  *int64           `json:"429s"`
	ByStatus map[string]int64 `json:"by_status"`
	ByClass  map[string]int64 `json:"by_class"`
	Failures []struct {
		Status int
		Class  string
		Count  int64
		Sample string
	} `json:"failures"`
	Latency struct {
		Calls         int64
		P50, P95, P99 float64
		Max           float64
	} `json:"latency_ms"`
	Settings struct {
		Parallelism int    `json:"parallelism"`
		Rate        string `json:"rate"`
	} `json:"settings"`
	Changes []struct {
		Knob, From, To, Origin string
	} `json:"changes"`
	Retry string `json:"retry_command"`
}

func readSummaryJSON(t *testing.T, path string) summaryDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("--summary-json: %v", err)
	}
	var d summaryDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("--summary-json is not valid JSON: %v\n%s", err, b)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("--summary-json mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	return d
}

// shellWords splits a command as a POSIX shell would for the quoting shellQuote uses: bare
// words, single quotes, backslash escapes outside quotes, and a backslash-newline between
// lines.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\'':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '\'':
			quoted, inWord = true, true
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i++
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\n' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// checkWidth fails the test for a line of text wider than 80 columns.
func checkWidth(t *testing.T, what, text string) {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("%s: a line of %d columns, want at most 80:\n%s", what, n, l)
		}
	}
}

// TestSummaryPipedExplainsAndRetries: piped (stdout a buffer, not a terminal), the end summary
// is on stdout and not on stderr, within 80 columns; it groups the failures by status and
// class with a sample message, and gives the command that retries only them, ${NAME} kept as
// given; --summary-json holds the same counts as the rows; and the retry command, run, calls
// exactly the failed items.
func TestSummaryPipedExplainsAndRetries(t *testing.T) {
	t.Parallel()
	var healed atomic.Bool
	var mu sync.Mutex
	retried := map[string]int{}
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		item := strings.TrimPrefix(r.URL.Path, "/")
		if healed.Load() {
			mu.Lock()
			retried[item]++
			mu.Unlock()
			okJSON(w, r)
			return
		}
		n, _ := strconv.Atoi(item)
		switch {
		case n%7 == 0:
			http.Error(w, "the shard of this item is down for maintenance; try again later", http.StatusServiceUnavailable)
		case n%11 == 0:
			http.Error(w, "no such user", http.StatusNotFound)
		default:
			okJSON(w, r)
		}
	})
	const items = 60
	var wantFailed []string
	for n := 0; n < items; n++ {
		if n%7 == 0 || n%11 == 0 {
			wantFailed = append(wantFailed, strconv.Itoa(n))
		}
	}
	dir := t.TempDir()
	out, sumPath := filepath.Join(dir, "results.jsonl"), filepath.Join(dir, "summary.json")
	secret := map[string]string{"API_TOKEN": "s3cr3t-t0ken-value"}
	res := run(t, invocation{env: secret, args: []string{"run", "http", "--input", writeItems(t, items), "--out", out,
		"--url", srv.URL + "/{item}", "--header", "Authorization: Bearer ${API_TOKEN}", "--retries", "0",
		"--parallelism", "4", "--summary-json", sumPath}})
	if res.code != 1 {
		t.Fatalf("exit %d, want 1 (some failed); stderr:\n%s", res.code, res.stderr)
	}
	if !strings.HasPrefix(res.stdout, "done in ") {
		t.Errorf("stdout does not start with the summary:\n%s", res.stdout)
	}
	if strings.Contains(res.stderr, "done in ") || strings.Contains(res.stderr, "results appended to") {
		t.Errorf("the summary is on stderr too:\n%s", res.stderr)
	}
	if !strings.Contains(res.stderr, "http · ") {
		t.Errorf("the progress (start line) is not on stderr:\n%s", res.stderr)
	}
	checkWidth(t, "summary", res.stdout)
	if strings.Contains(res.stdout+res.stderr, secret["API_TOKEN"]) {
		t.Fatalf("the secret's value is in the output:\n%s", res.stdout)
	}

	// The causes, the most common first, each with its count and a sample message.
	want503 := "  9 × 503 (5xx): "
	want404 := "  5 × 404 (4xx): "
	i503, i404 := strings.Index(res.stdout, want503), strings.Index(res.stdout, want404)
	if !strings.Contains(res.stdout, "failed, by cause (most first):\n") || i503 < 0 || i404 < 0 || i503 > i404 {
		t.Errorf("want the failures by cause, %q before %q:\n%s", want503, want404, res.stdout)
	}
	if !strings.Contains(res.stdout, want503+"503 Service Unavailable\n") || !strings.Contains(res.stdout, want404+"404 Not Found\n") {
		t.Errorf("no sample message of each cause:\n%s", res.stdout)
	}

	// The JSON: valid, its counts the rows'.
	doc := readSummaryJSON(t, sumPath)
	rows := readRows(t, out)
	byStatus := map[string]int64{}
	var ok, failed int64
	for _, r := range rows {
		byStatus[strconv.Itoa(r.Status)]++
		if *r.OK {
			ok++
		} else {
			failed++
		}
	}
	if doc.State != "done" || doc.Items.Total != items || doc.Items.OK != ok || doc.Items.Failed != failed ||
		failed != int64(len(wantFailed)) || doc.Items.NotRun != 0 {
		t.Errorf("summary JSON state %q items %+v; rows: %d ok, %d failed (want %d failed)", doc.State, doc.Items, ok, failed, len(wantFailed))
	}
	if len(doc.ByStatus) != len(byStatus) {
		t.Errorf("by_status %v, rows %v", doc.ByStatus, byStatus)
	}
	for k, v := range byStatus {
		if doc.ByStatus[k] != v {
			t.Errorf("by_status[%s] = %d, the rows have %d", k, doc.ByStatus[k], v)
		}
	}
	if doc.ByClass["ok"] != ok || doc.ByClass["5xx"] != 9 || doc.ByClass["4xx"] != 5 {
		t.Errorf("by_class %v, want ok %d, 5xx 9, 4xx 5", doc.ByClass, ok)
	}
	if len(doc.Failures) != 2 || doc.Failures[0].Status != 503 || doc.Failures[0].Count != 9 || doc.Failures[1].Count != 5 ||
		doc.Failures[0].Sample != "503 Service Unavailable" || doc.Failures[1].Sample != "404 Not Found" {
		t.Errorf("failures %+v, want 9 × 503 then 5 × 404 with samples", doc.Failures)
	}
	if doc.Calls != items || doc.Retries != 0 || doc.TooMany == nil || *doc.TooMany != 0 || doc.WallSeconds <= 0 {
		t.Errorf("calls %d retries %d 429s %v wall %v; want %d calls, none retried", doc.Calls, doc.Retries, doc.TooMany, doc.WallSeconds, items)
	}
	if doc.Latency.Calls != items || doc.Latency.P50 <= 0 || doc.Latency.P50 > doc.Latency.P95 || doc.Latency.P99 > doc.Latency.Max {
		t.Errorf("latency %+v: want %d calls and ordered percentiles", doc.Latency, items)
	}
	if doc.Settings.Parallelism != 4 || len(doc.Changes) == 0 || doc.Changes[0].Knob != "start" {
		t.Errorf("settings %+v, changes %+v: want parallelism 4 and the change log from its start", doc.Settings, doc.Changes)
	}

	// The retry command: on stdout (wrapped, pasteable) and in the JSON, the same words.
	_, tail, found := strings.Cut(res.stdout, "retry only the 14 failed:\n")
	if !found {
		t.Fatalf("no retry command in the summary:\n%s", res.stdout)
	}
	words := shellWords(t, tail)
	if got, want := strings.Join(words, "\x00"), strings.Join(shellWords(t, doc.Retry), "\x00"); got != want {
		t.Errorf("the summary's retry command %q differs from the JSON's %q", words, doc.Retry)
	}
	if !strings.Contains(tail, "'Authorization: Bearer ${API_TOKEN}'") {
		t.Errorf("the retry command does not keep the ${API_TOKEN} placeholder, quoted:\n%s", tail)
	}
	if len(words) < 2 || words[0] != "throttle" {
		t.Fatalf("retry command %q", words)
	}
	joined := " " + strings.Join(words, " ") + " "
	if !strings.Contains(joined, " --input "+out+" --only-failed ") || strings.Count(joined, "--input") != 1 {
		t.Errorf("the retry command %q does not read the results with --only-failed", words)
	}

	// Run it: exactly the failed items are called again, once each.
	healed.Store(true)
	again := run(t, invocation{env: secret, args: words[1:]})
	if again.code != 0 {
		t.Fatalf("the retry command exit %d; stderr:\n%s", again.code, again.stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(retried) != len(wantFailed) {
		t.Errorf("the retry called %d items %v, want the %d failed %v", len(retried), retried, len(wantFailed), wantFailed)
	}
	for _, item := range wantFailed {
		if retried[item] != 1 {
			t.Errorf("item %s called %d times by the retry, want once", item, retried[item])
		}
	}
	if !strings.Contains(again.stdout, "done in ") || strings.Contains(again.stdout, "retry only") {
		t.Errorf("the retry's summary: want done, and no retry command with nothing failed:\n%s", again.stdout)
	}
}

// TestSummaryJSONAfterInterrupt: a drained run (exit 130) still writes --summary-json, with
// what was not run.
func TestSummaryJSONAfterInterrupt(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		time.Sleep(20 * time.Millisecond)
		okJSON(w, r)
	})
	sumPath := filepath.Join(t.TempDir(), "s.json")
	sig := make(chan os.Signal, 1)
	go func() {
		for srv.count() < 4 {
			time.Sleep(5 * time.Millisecond)
		}
		sig <- syscall.SIGINT
	}()
	res := run(t, invocation{signals: sig, args: []string{"run", "http", "--input", writeItems(t, 500), "--out", outPath(t),
		"--url", srv.URL + "/{item}", "--parallelism", "2", "--summary-json", sumPath}})
	if res.code != 130 {
		t.Fatalf("exit %d, want 130; stderr:\n%s", res.code, res.stderr)
	}
	doc := readSummaryJSON(t, sumPath)
	if doc.State != "drained" || doc.Items.NotRun == 0 || doc.Items.OK+doc.Items.Failed+doc.Items.NotRun != 500 {
		t.Errorf("state %q items %+v: want drained, ok + failed + not run = 500", doc.State, doc.Items)
	}
	if !strings.Contains(res.stdout, "items were not run") {
		t.Errorf("stdout:\n%s", res.stdout)
	}
}

// TestSummaryJSONBadPath: a --summary-json that cannot be created fails before any call.
func TestSummaryJSONBadPath(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 3), "--out", outPath(t),
		"--url", srv.URL + "/{item}", "--summary-json", filepath.Join(t.TempDir(), "no", "such", "dir", "s.json")}})
	if res.code != 2 || !strings.Contains(res.stderr, "--summary-json") || srv.count() != 0 {
		t.Errorf("exit %d, %d calls, stderr %q; want 2, none, naming --summary-json", res.code, srv.count(), res.stderr)
	}
}

// TestSummaryOnTerminal: on a terminal (the real binary under script(1), stderr sent to a
// file) the summary is on stdout, the terminal, and not on stderr; the progress is on stderr.
func TestSummaryOnTerminal(t *testing.T) {
	t.Parallel()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to give the binary a terminal")
	}
	dir := t.TempDir()
	bin := bintest.Build(t)
	in := writeItems(t, 20)
	errPath := filepath.Join(dir, "stderr.txt")
	line := bin + " run sim --headless --input " + in + " --out " + filepath.Join(dir, "r.jsonl") +
		" --sim-latency 1ms --sim-error-rate 0.3 --retries 0 --summary-json " + filepath.Join(dir, "s.json") + " 2>" + errPath
	cmd := exec.Command(script, "-qec", line, "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=xterm", "COLUMNS=80")
	tty, _ := cmd.Output() // exit 1 when some items failed
	stderr, err := os.ReadFile(errPath)
	if err != nil {
		t.Fatal(err)
	}
	screen := strings.ReplaceAll(string(tty), "\r\n", "\n")
	if !strings.Contains(screen, "done in ") || !strings.Contains(screen, "results appended to") {
		t.Errorf("the terminal (stdout) has no summary:\n%s", screen)
	}
	if strings.Contains(string(stderr), "done in ") || !strings.Contains(string(stderr), "sim · ") {
		t.Errorf("stderr has the summary, or not the progress:\n%s", stderr)
	}
	checkWidth(t, "summary on a terminal", screen)
	doc := readSummaryJSON(t, filepath.Join(dir, "s.json"))
	if doc.Items.OK+doc.Items.Failed != 20 || !strings.Contains(screen, strconv.FormatInt(doc.Items.Failed, 10)+" failed") {
		t.Errorf("summary JSON items %+v do not match the terminal's summary:\n%s", doc.Items, screen)
	}
}
