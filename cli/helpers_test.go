package cli_test

// Helpers of the integration tests: a loopback HTTP server that records every arrival (when,
// which path, how many calls it was serving), a way to run a command line through cli.Main,
// and a reader of results files.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/cli"
)

// arrival is one request as the test server saw it, recorded when its handler was entered.
type arrival struct {
	at       time.Time
	path     string // r.URL.Path
	nth      int    // 1 for the first arrival of this path
	inflight int    // requests in their handler at this arrival, itself included
	header   http.Header
}

// recServer is a loopback HTTP server (httptest, 127.0.0.1) that records arrivals and counts
// the requests in flight. Its in-flight count drops when a handler returns, which is before
// the client can have read the answer, so it never exceeds the client's own count of calls in
// flight for the calls it has seen.
type recServer struct {
	*httptest.Server
	inflight atomic.Int64

	mu       sync.Mutex
	arrivals []arrival
	perPath  map[string]int
}

// handlerFunc answers one request; a is its arrival.
type handlerFunc func(w http.ResponseWriter, r *http.Request, a arrival)

// newRecServer starts a recording server running h, closed at the end of the test.
func newRecServer(t *testing.T, h handlerFunc) *recServer {
	t.Helper()
	s := &recServer{perPath: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		n := int(s.inflight.Add(1))
		defer s.inflight.Add(-1)
		s.mu.Lock()
		s.perPath[r.URL.Path]++
		a := arrival{at: now, path: r.URL.Path, nth: s.perPath[r.URL.Path], inflight: n, header: r.Header.Clone()}
		s.arrivals = append(s.arrivals, a)
		s.mu.Unlock()
		h(w, r, a)
	}))
	t.Cleanup(s.Close)
	return s
}

// seen returns a copy of the arrivals so far, in arrival order.
func (s *recServer) seen() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.arrivals...)
}

// count returns the number of arrivals so far.
func (s *recServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

// okJSON answers 200 with {"path": …}.
func okJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
}

// tooMany answers 429 with the given Retry-After ("" for none).
func tooMany(w http.ResponseWriter, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	http.Error(w, "slow down", http.StatusTooManyRequests)
}

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// invocation is one command line run through cli.Main.
type invocation struct {
	args    []string
	stdin   string
	env     map[string]string
	signals chan os.Signal
	stderr  *syncBuffer // optional: to watch stderr while the command runs
}

// result is what a command left behind.
type result struct {
	code           int
	stdout, stderr string
}

// run runs inv in process and returns its exit status and output.
func run(t *testing.T, inv invocation) result {
	t.Helper()
	var stdout syncBuffer
	stderr := inv.stderr
	if stderr == nil {
		stderr = &syncBuffer{}
	}
	sig := inv.signals
	if sig == nil {
		sig = make(chan os.Signal)
	}
	code := cli.Main(cli.Env{
		Args:   inv.args,
		Stdin:  strings.NewReader(inv.stdin),
		Stdout: &stdout,
		Stderr: stderr,
		LookupEnv: func(k string) (string, bool) {
			v, ok := inv.env[k]
			return v, ok
		},
		Signals: sig,
	})
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// writeItems writes n lines "0" … "n-1" to a file in a temporary directory and returns its path.
func writeItems(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return writeFile(t, "items.txt", b.String())
}

// writeFile writes content to name in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// outPath returns a results path in a fresh temporary directory.
func outPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "results.jsonl")
}

// row is one decoded line of a results file.
type row struct {
	Item      json.RawMessage `json:"item"`
	OK        *bool           `json:"ok"`
	Status    int             `json:"status"`
	Attempts  *int            `json:"attempts"`
	LatencyMS *float64        `json:"latency_ms"`
	WaitMS    float64         `json:"wait_ms"`
	At        string          `json:"at"`
	Output    json.RawMessage `json:"output"`
	Error     string          `json:"error"`
	RetryMS   int             `json:"retry_after_ms"`
}

// item returns the row's item: the input line, or for a JSONL item the object's compact text.
func (r row) item() string {
	var s string
	if json.Unmarshal(r.Item, &s) == nil {
		return s
	}
	var b bytes.Buffer
	if err := json.Compact(&b, r.Item); err != nil {
		return string(r.Item)
	}
	return b.String()
}

// readRows decodes every line of a results file, failing the test on a line that is not a
// complete row: valid JSON, with item, ok, attempts, latency_ms and a parseable at.
func readRows(t *testing.T, path string) []row {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		var r row
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := dec.Decode(&r); err != nil || dec.More() {
			t.Fatalf("results line %d is not one JSON object (%v): %s", n, err, line)
		}
		if len(r.Item) == 0 || r.OK == nil || r.Attempts == nil || r.LatencyMS == nil {
			t.Fatalf("results line %d lacks item, ok, attempts or latency_ms: %s", n, line)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.At); err != nil {
			t.Fatalf("results line %d: at %q: %v", n, r.At, err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// rowsByItem indexes rows by item and fails the test on an item that has two rows.
func rowsByItem(t *testing.T, rows []row) map[string]row {
	t.Helper()
	m := make(map[string]row, len(rows))
	for _, r := range rows {
		k := r.item()
		if _, dup := m[k]; dup {
			t.Errorf("item %q has more than one row", k)
		}
		m[k] = r
	}
	return m
}

// waitFor polls cond every 2 ms until it holds or d passes; it reports whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// maxInWindow returns the most arrivals in any half-open window [t, t+w) that starts at an
// arrival, and where that window starts (as an offset from the first arrival).
func maxInWindow(times []time.Time, w time.Duration) (int, time.Duration) {
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	best, at := 0, time.Duration(0)
	j := 0
	for i := range times {
		if j < i {
			j = i
		}
		for j < len(times) && times[j].Sub(times[i]) < w {
			j++
		}
		if j-i > best {
			best, at = j-i, times[i].Sub(times[0])
		}
	}
	return best, at
}

// controlled is a run started in the background with a private control socket.
type controlled struct {
	sock string
	done chan result // the run's result, once it ends
	t    *testing.T
}

// startControlled starts inv with --control in a private directory and waits until the socket
// is served and ready() holds (nil: the socket alone).
func startControlled(t *testing.T, inv invocation, ready func() bool) *controlled {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := &controlled{sock: filepath.Join(dir, "run.sock"), done: make(chan result, 1), t: t}
	inv.args = append(inv.args, "--control", c.sock)
	go func() { c.done <- run(t, inv) }()
	if !waitFor(5*time.Second, func() bool {
		_, err := os.Stat(c.sock)
		return err == nil && (ready == nil || ready())
	}) {
		t.Fatal("the run never served its control socket")
	}
	return c
}

// ctl runs `throttle ctl --control SOCK args…` against the run.
func (c *controlled) ctl(args ...string) result {
	return run(c.t, invocation{args: append([]string{"ctl", "--control", c.sock}, args...)})
}

// itemCounts returns how many rows each item has.
func itemCounts(rows []row) map[string]int {
	seen := map[string]int{}
	for _, r := range rows {
		seen[r.item()]++
	}
	return seen
}
