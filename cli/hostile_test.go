package cli_test

// Hostile servers, hostile input and signals (issue 5), through `throttle run http` in
// process. Every server is a loopback server the test starts (127.0.0.1 only); the ones that
// must misbehave below HTTP are raw listeners.
//
// The hostile-server runs use a small per-call timeout, 2 retries and a 1 s cap on backoff,
// so that each one ends within a few seconds. Each run is bounded by a wall-clock limit
// computed from those flags (see hostileBound), and a run that passes it fails the test
// instead of hanging the suite.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/cli"
	"github.com/throttle-dev/throttle/engine"
)

// The flags of every hostile-server run.
const (
	hostileTimeout    = 300 * time.Millisecond
	hostileRetries    = 2
	hostileMaxBackoff = time.Second
	hostileItems      = 4 // and as many workers, so that all items run at once
)

// hostileArgs is the command line of a hostile-server run of n items on n workers.
func hostileArgs(t *testing.T, n int, out, url string, extra ...string) []string {
	t.Helper()
	return append([]string{"run", "http", "--input", writeItems(t, n), "--out", out, "--url", url,
		"--timeout", hostileTimeout.String(), "--retries", strconv.Itoa(hostileRetries),
		"--max-backoff", hostileMaxBackoff.String(), "--parallelism", strconv.Itoa(n)}, extra...)
}

// hostileBound is a generous wall-clock bound on a hostile-server run of n items on n
// workers: each of an item's retries+1 attempts may last the whole timeout, and each wait
// between them at most --max-backoff plus the spread of a Retry-After hold; 5 s more for a
// loaded machine under the race detector.
//
// A 429 with a Retry-After holds every worker, so when every answer is one the calls of
// different items do not overlap: each call may be followed by a hold of up to
// --max-backoff (plus its spread), and the bound is per call rather than per item.
func hostileBound(n int, sharedHolds bool) time.Duration {
	wait := hostileMaxBackoff + engine.HoldSpread(hostileMaxBackoff)
	perItem := time.Duration(hostileRetries+1)*hostileTimeout + time.Duration(hostileRetries)*wait
	if sharedHolds {
		perItem = time.Duration(n*(hostileRetries+1)) * (hostileTimeout + wait)
	}
	return perItem + 5*time.Second
}

// runBounded runs inv and fails the test if it has not ended within bound. It returns the
// result and how long the run took.
func runBounded(t *testing.T, inv invocation, bound time.Duration) (result, time.Duration) {
	t.Helper()
	if inv.stderr == nil {
		inv.stderr = &syncBuffer{}
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() { done <- run(t, inv) }()
	select {
	case res := <-done:
		return res, time.Since(start)
	case <-time.After(bound):
		t.Fatalf("the run did not end within %v (it hangs); stderr so far:\n%s", bound, inv.stderr.String())
		return result{}, 0
	}
}

// rawServer is a loopback TCP listener whose connections a test handles itself. It counts
// the requests it reads by path, and closes its listener and every connection at the end of
// the test.
type rawServer struct {
	ln net.Listener

	mu      sync.Mutex
	conns   []net.Conn
	perPath map[string]int
}

// newRawServer listens on 127.0.0.1; with serve nil it never accepts (connections wait in
// the kernel's backlog), else it runs serve on each accepted connection in its own goroutine.
func newRawServer(t *testing.T, serve func(s *rawServer, c net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, perPath: map[string]int{}}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	if serve == nil {
		return s
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go serve(s, c)
		}
	}()
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

// readRequest reads one request from r, counts it and reports whether there was one.
func (s *rawServer) readRequest(r *bufio.Reader) bool {
	req, err := http.ReadRequest(r)
	if err != nil {
		return false
	}
	s.mu.Lock()
	s.perPath[req.URL.Path]++
	s.mu.Unlock()
	return true
}

func (s *rawServer) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.perPath)
}

// recCounts returns the calls a recording server saw, by path.
func recCounts(s *recServer) func() map[string]int {
	return func() map[string]int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return maps.Clone(s.perPath)
	}
}

// TestHostileServers: against servers that refuse, reset, stall, trickle, fail or ask for
// odd Retry-After waits, every run ends within a bound computed from its flags, makes at
// most retries+1 attempts per item (counted at the server where one is listening), writes
// exactly one failed row per item with an error that says what happened, and exits 1.
func TestHostileServers(t *testing.T) {
	t.Parallel()
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	const tenYears = 315360000 // seconds
	tests := []struct {
		name string
		// start starts the server and returns its URL and, when it can count them, a
		// function returning the requests it received by path (nil: it cannot).
		start     func(t *testing.T) (string, func() map[string]int)
		errRE     string // the row's error must match
		timesOut  bool   // the attempts time out: the server may see fewer calls than attempts
		status    int    // the row's status (0: none was obtained)
		retryMS   int64  // the row's retry_after_ms
		items     int    // 0: hostileItems
		extraArgs []string
		check     func(t *testing.T, res result, elapsed time.Duration)
	}{
		{
			name: "connection refused",
			start: func(t *testing.T) (string, func() map[string]int) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := ln.Addr().String()
				ln.Close() // nothing listens there now
				return "http://" + addr, nil
			},
			errRE: `^adapters: GET http://127\.0\.0\.1:\d+/items/\d: dial tcp 127\.0\.0\.1:\d+: connect: connection refused after 3 attempts$`,
		},
		{
			name: "reset mid-response",
			start: func(t *testing.T) (string, func() map[string]int) {
				srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) {
					c, rw, err := w.(http.Hijacker).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					rw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\":")
					rw.Flush()
					time.Sleep(20 * time.Millisecond) // let the client read the header
					c.(*net.TCPConn).SetLinger(0)     // close sends RST
				})
				return srv.URL, recCounts(srv)
			},
			errRE: `^adapters: GET http://127\.0\.0\.1:\d+/items/\d: reading the body of a 200 answer: (read tcp [0-9.:]+->[0-9.:]+: read: connection reset by peer|unexpected EOF) after 3 attempts$`,
		},
		{
			name: "accepts and never answers",
			start: func(t *testing.T) (string, func() map[string]int) {
				s := newRawServer(t, func(s *rawServer, c net.Conn) {
					r := bufio.NewReader(c)
					if s.readRequest(r) {
						io.Copy(io.Discard, r) // until the client gives up and closes
					}
				})
				return s.url(), s.counts
			},
			errRE: `^timeout after 300ms after 3 attempts$`, timesOut: true,
		},
		{
			name: "never accepts",
			start: func(t *testing.T) (string, func() map[string]int) {
				return newRawServer(t, nil).url(), nil
			},
			errRE: `^timeout after 300ms after 3 attempts$`, timesOut: true,
		},
		{
			name: "header trickles forever",
			start: func(t *testing.T) (string, func() map[string]int) {
				s := newRawServer(t, func(s *rawServer, c net.Conn) {
					if !s.readRequest(bufio.NewReader(c)) {
						return
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Slow: "); err != nil {
						return
					}
					for {
						time.Sleep(50 * time.Millisecond)
						if _, err := c.Write([]byte("z")); err != nil {
							return
						}
					}
				})
				return s.url(), s.counts
			},
			errRE: `^timeout after 300ms after 3 attempts$`, timesOut: true,
		},
		{
			name: "body trickles forever",
			start: func(t *testing.T) (string, func() map[string]int) {
				srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(200)
					for {
						if _, err := w.Write([]byte(" ")); err != nil {
							return
						}
						w.(http.Flusher).Flush()
						select {
						case <-r.Context().Done():
							return
						case <-time.After(50 * time.Millisecond):
						}
					}
				})
				return srv.URL, recCounts(srv)
			},
			errRE: `^timeout after 300ms after 3 attempts$`, timesOut: true,
		},
		{
			name: "not HTTP",
			start: func(t *testing.T) (string, func() map[string]int) {
				s := newRawServer(t, func(s *rawServer, c net.Conn) {
					if s.readRequest(bufio.NewReader(c)) {
						io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n\r\n")
					}
					c.Close()
				})
				return s.url(), s.counts
			},
			errRE: `^adapters: GET http://127\.0\.0\.1:\d+/items/\d: net/http: HTTP/1\.x transport connection broken: malformed HTTP response "SSH-2\.0-OpenSSH_9\.6" after 3 attempts$`,
		},
		{
			name: "5xx storm",
			start: func(t *testing.T) (string, func() map[string]int) {
				srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) {
					http.Error(w, "down", http.StatusServiceUnavailable)
				})
				return srv.URL, recCounts(srv)
			},
			errRE:  `^503 Service Unavailable after 3 attempts$`,
			status: 503,
		},
		{name: `429 Retry-After "0"`, start: retryAfterServer("0"), errRE: `^429 Too Many Requests after 3 attempts$`, status: 429},
		{name: `429 Retry-After "-5"`, start: retryAfterServer("-5"), errRE: `^429 Too Many Requests after 3 attempts$`, status: 429},
		{name: `429 Retry-After "soon"`, start: retryAfterServer("soon"), errRE: `^429 Too Many Requests after 3 attempts$`, status: 429},
		{name: "429 Retry-After a date in the past", start: retryAfterServer(past), errRE: `^429 Too Many Requests after 3 attempts$`, status: 429},
		{
			// The row keeps what the server asked for; the waits are capped at --max-backoff,
			// and the progress lines show the capped hold.
			name:    "429 Retry-After 10 years",
			start:   retryAfterServer(strconv.Itoa(tenYears)),
			errRE:   `^429 Too Many Requests after 3 attempts$`,
			status:  429,
			retryMS: tenYears * 1000,
			// One item: each of its 429s holds every worker for --max-backoff, so the
			// calls of several items would take turns (see hostileBound).
			items:     1,
			extraArgs: []string{"--progress-every", "100ms"},
			check: func(t *testing.T, res result, elapsed time.Duration) {
				// Each item waited the cap twice: not less (the server's wait is honoured up
				// to the cap), and not 10 years.
				if least := time.Duration(hostileRetries) * hostileMaxBackoff; elapsed < least {
					t.Errorf("the run took %v, want at least %v (%d waits of --max-backoff)", elapsed, least, hostileRetries)
				}
				held := regexp.MustCompile(`held (\S+) \(Retry-After\)`).FindAllStringSubmatch(res.stderr, -1)
				if len(held) == 0 {
					t.Errorf("no progress line shows the hold:\n%s", res.stderr)
				}
				for _, m := range held {
					if d, err := time.ParseDuration(m[1]); err != nil || d > hostileMaxBackoff {
						t.Errorf("a progress line shows %q, want a hold of at most --max-backoff %v", m[0], hostileMaxBackoff)
					}
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := tc.items
			if n == 0 {
				n = hostileItems
			}
			url, seen := tc.start(t)
			out := outPath(t)
			bound := hostileBound(n, tc.retryMS > 0)
			res, elapsed := runBounded(t, invocation{args: hostileArgs(t, n, out, url+"/items/{item}", tc.extraArgs...)}, bound)
			if res.code != 1 {
				t.Errorf("exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
			}
			rows := readRows(t, out)
			byItem := rowsByItem(t, rows)
			if len(rows) != n {
				t.Errorf("%d rows, want %d", len(rows), n)
			}
			errRE := regexp.MustCompile(tc.errRE)
			var counts map[string]int
			if seen != nil {
				counts = seen()
			}
			for i := range n {
				item := strconv.Itoa(i)
				r, ok := byItem[item]
				if !ok {
					t.Errorf("item %s has no row", item)
					continue
				}
				if *r.OK || *r.Attempts != hostileRetries+1 || r.Status != tc.status || int64(r.RetryMS) != tc.retryMS || !errRE.MatchString(r.Error) {
					t.Errorf("item %s: ok %v, attempts %d, status %d, retry_after_ms %d, error %q;\nwant failed after %d attempts, status %d, retry_after_ms %d, error matching %s",
						item, *r.OK, *r.Attempts, r.Status, r.RetryMS, r.Error, hostileRetries+1, tc.status, tc.retryMS, tc.errRE)
				}
				if seen != nil {
					// An attempt that got an answer (or a reset after its request) reached the
					// server; one that timed out may have ended before its request was sent.
					calls := counts["/items/"+item]
					if calls > hostileRetries+1 || (!tc.timesOut && calls != *r.Attempts) {
						t.Errorf("item %s: the server saw %d calls for %d attempts, want at most %d", item, calls, *r.Attempts, hostileRetries+1)
					}
				}
			}
			for path := range counts {
				if itemID(path) < 0 || itemID(path) >= n {
					t.Errorf("the server saw a call for %s, want only /items/0 to /items/%d", path, n-1)
				}
			}
			if tc.check != nil {
				tc.check(t, res, elapsed)
			}
			t.Logf("ended in %v (bound %v); item 0: %s", elapsed.Round(time.Millisecond), bound, byItem["0"].Error)
		})
	}
}

// retryAfterServer returns a server start function whose server answers every call 429 with
// the given Retry-After.
func retryAfterServer(v string) func(t *testing.T) (string, func() map[string]int) {
	return func(t *testing.T) (string, func() map[string]int) {
		srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { tooMany(w, v) })
		return srv.URL, recCounts(srv)
	}
}

// wantRow is a row a hostile-input test expects: its item, whether it is ok, and a part of
// its error.
type wantRow struct {
	item  string
	ok    bool
	error string
}

// checkRows fails the test unless rows are exactly want, in any order; an item may repeat.
func checkRows(t *testing.T, rows []row, want []wantRow) {
	t.Helper()
	used := make([]bool, len(rows))
	for _, w := range want {
		found := false
		for i, r := range rows {
			if used[i] || r.item() != w.item {
				continue
			}
			used[i], found = true, true
			if *r.OK != w.ok || !strings.Contains(r.Error, w.error) || (!w.ok && r.Error == "") {
				t.Errorf("item %.80q: ok %v, error %q; want ok %v, error containing %q", w.item, *r.OK, r.Error, w.ok, w.error)
			}
			if !w.ok && *r.Attempts != 0 && w.error != "" && strings.HasPrefix(w.error, "input line") {
				t.Errorf("item %.80q: %d attempts, want 0 (an invalid line is never called)", w.item, *r.Attempts)
			}
			break
		}
		if !found {
			t.Errorf("no row for item %.80q", w.item)
		}
	}
	for i, r := range rows {
		if !used[i] {
			t.Errorf("unexpected row: item %.80q, ok %v, error %q", r.item(), *r.OK, r.Error)
		}
	}
}

// TestHostileInput: messy input files. Blank lines are not items; line endings and a byte
// order mark are not part of an item; a line with a NUL byte, invalid UTF-8 or (in a .jsonl
// file) text that is not one JSON object becomes a failed row with the reason and is never
// called; a duplicate is called once per occurrence.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string // the input's name: .jsonl selects JSON Lines
		content string
		url     string // after the server's URL
		code    int
		rows    []wantRow
		calls   []string // the paths the server must see, in any order
		stderr  string   // a part of stderr
	}{
		{name: "empty file", file: "items.txt", content: "", code: 0, stderr: "0 items"},
		{name: "only blank lines", file: "items.txt", content: "\n\n   \n\t\n\r\n \r\n\n", code: 0, stderr: "0 items"},
		{
			name: "CRLF", file: "items.txt", content: "a\r\nb\r\n\r\nc d\r\n", code: 0,
			rows:  []wantRow{{item: "a", ok: true}, {item: "b", ok: true}, {item: "c d", ok: true}},
			calls: []string{"/items/a", "/items/b", "/items/c d"}, stderr: "3 items",
		},
		{
			name: "byte order mark", file: "items.txt", content: "\xef\xbb\xbfa\nb\n", code: 0,
			rows:  []wantRow{{item: "a", ok: true}, {item: "b", ok: true}},
			calls: []string{"/items/a", "/items/b"}, stderr: "2 items",
		},
		{
			name: "byte order mark and CRLF only", file: "items.txt", content: "\xef\xbb\xbf\r\n", code: 0, stderr: "0 items",
		},
		{
			name: "NUL bytes and invalid UTF-8", file: "items.txt", content: "ok1\nbad\x00nul\n\x00\nok2\n\xff\xfe\ncaf\xe9\n", code: 1,
			rows: []wantRow{
				{item: "ok1", ok: true},
				{item: "bad\x00nul", error: "input line 2 contains a NUL byte"},
				{item: "\x00", error: "input line 3 contains a NUL byte"},
				{item: "ok2", ok: true},
				{item: "\ufffd\ufffd", error: "input line 5 is not valid UTF-8"},
				{item: "caf\ufffd", error: "input line 6 is not valid UTF-8"},
			},
			calls: []string{"/items/ok1", "/items/ok2"}, stderr: "6 items",
		},
		{
			name: "invalid JSON lines", file: "items.jsonl", url: "/items/{.id}", code: 1,
			content: "{\"id\":\"a\"}\nnot json\n[1,2]\n\"str\"\n{\"id\":\"b\"} {\"id\":\"c\"}\n{\"id\":\n{\"id\":\"n\x00ul\"}\n{\"id\":\"\xff\"}\n{\"id\":\"d\"}\n",
			rows: []wantRow{
				{item: `{"id":"a"}`, ok: true},
				{item: "not json", error: "input line 2 is not valid JSON"},
				{item: "[1,2]", error: "input line 3 is not a JSON object"},
				{item: `"str"`, error: "input line 4 is not a JSON object"},
				{item: `{"id":"b"} {"id":"c"}`, error: "input line 5 holds more than one JSON value"},
				{item: `{"id":`, error: "input line 6 is not valid JSON"},
				{item: "{\"id\":\"n\x00ul\"}", error: "input line 7 contains a NUL byte"},
				{item: "{\"id\":\"\ufffd\"}", error: "input line 8 is not valid UTF-8"},
				{item: `{"id":"d"}`, ok: true},
			},
			calls: []string{"/items/a", "/items/d"},
		},
		{
			name: "duplicates", file: "items.txt", content: "a\nb\na\na\n", code: 0,
			rows:  []wantRow{{item: "a", ok: true}, {item: "b", ok: true}, {item: "a", ok: true}, {item: "a", ok: true}},
			calls: []string{"/items/a", "/items/a", "/items/a", "/items/b"}, stderr: "4 items",
		},
		{
			name: "duplicate JSON objects", file: "items.jsonl", url: "/items/{.id}", code: 0,
			content: "{\"id\":\"a\"}\n{\"id\": \"a\"}\n{\"id\":\"a\"}\n",
			rows:    []wantRow{{item: `{"id":"a"}`, ok: true}, {item: `{"id":"a"}`, ok: true}, {item: `{"id":"a"}`, ok: true}},
			calls:   []string{"/items/a", "/items/a", "/items/a"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
			url := tc.url
			if url == "" {
				url = "/items/{item}"
			}
			out := outPath(t)
			res, _ := runBounded(t, invocation{args: []string{"run", "http", "--input", writeFile(t, tc.file, tc.content),
				"--out", out, "--url", srv.URL + url, "--retries", "0"}}, 20*time.Second)
			if res.code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", res.code, tc.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.stderr) {
				t.Errorf("stderr does not say %q:\n%s", tc.stderr, res.stderr)
			}
			checkRows(t, readRows(t, out), tc.rows)
			var paths []string
			for _, a := range srv.seen() {
				paths = append(paths, a.path)
			}
			slices.Sort(paths)
			want := slices.Clone(tc.calls)
			slices.Sort(want)
			if !slices.Equal(paths, want) {
				t.Errorf("the server saw %q, want %q", paths, want)
			}
		})
	}
}

// TestHostileInputOnlyFailed: the failed row of an input line that was refused (a NUL byte,
// invalid UTF-8, longer than engine.MaxLineBytes) does not hold the line as it was — NUL
// escaped, invalid bytes replaced by U+FFFD, only the first 256 bytes — so --only-failed
// must not call it: that would call an item the input never had, and mark it ok. Each such
// row fails again with its reason; an item that failed at the server is retried as usual.
func TestHostileInputOnlyFailed(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("y", engine.MaxLineBytes+1)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if r.URL.Path == "/items/flaky" && a.nth == 1 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		okJSON(w, r)
	})
	in := writeFile(t, "items.txt", "ok\nbad\x00nul\n\xff\xfe\n"+long+"\nflaky\n")
	out1 := outPath(t)
	res, _ := runBounded(t, invocation{args: []string{"run", "http", "--input", in, "--out", out1,
		"--url", srv.URL + "/items/{item}", "--retries", "0"}}, 30*time.Second)
	if res.code != 1 {
		t.Errorf("first run: exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
	}
	refused := []wantRow{
		{item: "bad\x00nul", error: "NUL byte"},
		{item: "\ufffd\ufffd", error: "not valid UTF-8"},
		{item: long[:256], error: fmt.Sprintf("longer than %d bytes", engine.MaxLineBytes)},
	}
	checkRows(t, readRows(t, out1), append([]wantRow{{item: "ok", ok: true}, {item: "flaky", error: "503"}}, refused...))
	before := srv.count()

	out2 := outPath(t)
	res, _ = runBounded(t, invocation{args: []string{"run", "http", "--input", out1, "--only-failed", "--out", out2,
		"--url", srv.URL + "/items/{item}", "--retries", "0"}}, 30*time.Second)
	if res.code != 1 {
		t.Errorf("--only-failed: exit status %d, want 1 (the refused lines fail again); stderr:\n%s", res.code, res.stderr)
	}
	var called []string
	for _, a := range srv.seen()[before:] {
		called = append(called, fmt.Sprintf("%.40q", a.path))
	}
	if len(called) != 1 || called[0] != `"/items/flaky"` {
		t.Errorf("--only-failed called %v, want only /items/flaky (a refused line must not be called)", called)
	}
	checkRows(t, readRows(t, out2), append([]wantRow{{item: "flaky", ok: true}}, refused...))
}

// bigHeaderServer is a loopback server that takes request lines and headers of up to 32 MiB
// (Go's default is 1 MB) and answers {"len": length of the path}; it records the paths.
func bigHeaderServer(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		fmt.Fprintf(w, `{"len":%d}`, len(r.URL.Path))
	}))
	srv.Config.MaxHeaderBytes = 32 << 20
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(paths)
	}
}

// TestHostileInputLongLines: a 10 MiB line is below engine.MaxLineBytes (16 MiB), so it is an
// item like any other: the http adapter puts all of it into the URL and the server gets it
// whole. A line longer than engine.MaxLineBytes becomes a failed row that says so and holds
// the line's first 256 bytes, and is never called; the lines around it run.
func TestHostileInputLongLines(t *testing.T) {
	t.Parallel()
	if engine.MaxLineBytes != 16<<20 {
		t.Fatalf("engine.MaxLineBytes = %d, want 16 MiB: adjust this test's line lengths", engine.MaxLineBytes)
	}
	t.Run("10 MiB line is an item", func(t *testing.T) {
		t.Parallel()
		srv, paths := bigHeaderServer(t)
		long := strings.Repeat("x", 10<<20)
		out := outPath(t)
		res, _ := runBounded(t, invocation{args: []string{"run", "http", "--input", writeFile(t, "items.txt", "a\n"+long+"\nb\n"),
			"--out", out, "--url", srv.URL + "/items/{item}", "--timeout", "20s"}}, 30*time.Second)
		if res.code != 0 {
			t.Errorf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
		}
		checkRows(t, readRows(t, out), []wantRow{{item: "a", ok: true}, {item: long, ok: true}, {item: "b", ok: true}})
		got := paths()
		slices.Sort(got)
		if len(got) != 3 || got[0] != "/items/a" || got[1] != "/items/b" || got[2] != "/items/"+long {
			t.Errorf("the server saw %d paths of lengths %v, want /items/a, /items/b and the long line", len(got), lengths(got))
		}
	})
	t.Run("4 MiB line that gets no answer, then --only-failed", func(t *testing.T) {
		// Its failed row (the item, and an error that names the URL) is read back by
		// --only-failed, which calls the item again, whole. 4 MiB rather than 10 keeps the
		// test to a few seconds under the race detector; what matters is that the item is
		// far above net/http's 1 MB header limit and bufio's default line sizes.
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close() // nothing listens there now
		long := strings.Repeat("x", 4<<20)
		out1 := outPath(t)
		res, _ := runBounded(t, invocation{args: []string{"run", "http", "--input", writeFile(t, "items.txt", "a\n"+long+"\n"),
			"--out", out1, "--url", "http://" + ln.Addr().String() + "/items/{item}", "--retries", "0"}}, 30*time.Second)
		if res.code != 1 {
			t.Errorf("first run: exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
		}
		srv, paths := bigHeaderServer(t)
		out2 := outPath(t)
		res, _ = runBounded(t, invocation{args: []string{"run", "http", "--input", out1, "--only-failed",
			"--out", out2, "--url", srv.URL + "/items/{item}", "--timeout", "20s"}}, 30*time.Second)
		if res.code != 0 {
			t.Errorf("--only-failed: exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
		}
		checkRows(t, readRows(t, out2), []wantRow{{item: "a", ok: true}, {item: long, ok: true}})
		got := paths()
		slices.Sort(got)
		if len(got) != 2 || got[0] != "/items/a" || got[1] != "/items/"+long {
			t.Errorf("--only-failed: the server saw paths of lengths %v, want /items/a and the long line", lengths(got))
		}
	})
	t.Run("line over the limit fails", func(t *testing.T) {
		t.Parallel()
		srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
		long := strings.Repeat("y", engine.MaxLineBytes+1)
		out := outPath(t)
		res, _ := runBounded(t, invocation{args: []string{"run", "http", "--input", writeFile(t, "items.txt", "a\n"+long+"\nb\n"),
			"--out", out, "--url", srv.URL + "/items/{item}"}}, 30*time.Second)
		if res.code != 1 {
			t.Errorf("exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
		}
		checkRows(t, readRows(t, out), []wantRow{
			{item: "a", ok: true},
			{item: long[:256], error: fmt.Sprintf("input line 2 is longer than %d bytes", engine.MaxLineBytes)},
			{item: "b", ok: true},
		})
		var got []string
		for _, a := range srv.seen() {
			got = append(got, a.path)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"/items/a", "/items/b"}) {
			t.Errorf("the server saw paths of lengths %v, want /items/a and /items/b", lengths(got))
		}
	})
}

func lengths(ss []string) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
}

// TestHostileSIGHUP: SIGHUP (the terminal went away, an ssh link dropped) does not end the
// run: it goes on to the end, every item gets its row, and the progress lines continue in a
// log next to the results.
func TestHostileSIGHUP(t *testing.T) {
	t.Parallel()
	const n, workers = 100, 4
	gate := make(chan struct{})
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		okJSON(w, r)
	})
	var closeGate sync.Once
	t.Cleanup(func() { closeGate.Do(func() { close(gate) }) }) // before srv.Close waits for handlers
	out := outPath(t)
	sig := make(chan os.Signal, 1)
	done := make(chan result, 1)
	in := writeItems(t, n)
	go func() {
		done <- run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--progress-every", "50ms",
			"--url", srv.URL + "/items/{item}", "--parallelism", strconv.Itoa(workers)}, signals: sig})
	}()
	if !waitFor(10*time.Second, func() bool { return srv.inflight.Load() == workers }) {
		t.Fatalf("the server sees %d in flight, want %d", srv.inflight.Load(), workers)
	}
	sig <- syscall.SIGHUP
	if !waitFor(5*time.Second, func() bool { b, _ := os.ReadFile(out + ".log"); return strings.Contains(string(b), "SIGHUP") }) {
		t.Fatal("no log next to the results after SIGHUP")
	}
	closeGate.Do(func() { close(gate) })
	var res result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the run did not end")
	}
	if res.code != 0 {
		t.Errorf("exit status %d, want 0: SIGHUP must not end the run; stderr:\n%s", res.code, res.stderr)
	}
	if rows := readRows(t, out); len(rows) != n {
		t.Errorf("%d rows, want %d: the run must go on to the end after SIGHUP", len(rows), n)
	}
	log, _ := os.ReadFile(out + ".log")
	if !strings.Contains(string(log), "done in") {
		t.Errorf("the log next to the results lacks the progress and summary lines:\n%s", log)
	}
}

// mainEnv, when set, makes TestHostileMainProcess act as the throttle command: the tests
// that need a real process (its own signal dispositions, its own stdio) run this test binary
// as one, with throttle's arguments after "--".
const mainEnv = "THROTTLE_TEST_MAIN"

// TestHostileMainProcess is the throttle command when the test binary runs as one (see
// mainEnv); otherwise it does nothing.
func TestHostileMainProcess(t *testing.T) {
	if os.Getenv(mainEnv) != "1" {
		return
	}
	env := cli.System()
	env.Args = nil
	if i := slices.Index(os.Args, "--"); i >= 0 {
		env.Args = os.Args[i+1:]
	}
	os.Exit(cli.Main(env))
}

// TestHostileSIGPIPE: `throttle run … 2>&1 | head -1` — the reader goes away after the first
// line and every later progress line is written to a closed pipe. The process must not die
// of SIGPIPE: it runs to its end, exits 0 and writes every row.
func TestHostileSIGPIPE(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	if _, err := exec.LookPath("head"); err != nil {
		t.Skip("no head")
	}
	const n = 1000
	dir := t.TempDir()
	in := writeItems(t, n)
	out := filepath.Join(dir, "results.jsonl")
	status := filepath.Join(dir, "status")
	// Progress every 10 ms for a run of about half a second: dozens of lines after head exits.
	script := `{ "$0" -test.run='^TestHostileMainProcess$' -- run sim --input "$1" --out "$2" --headless --progress-every 10ms ` +
		`--sim-latency 2ms --parallelism 4 2>&1; echo $? > "$3"; } | head -1`
	cmd := exec.Command("sh", "-c", script, os.Args[0], in, out, status)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sh: %v; output:\n%s", err, stdout.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the pipeline did not end within 60s; output:\n%s", stdout.String())
	}
	if got := strings.Count(stdout.String(), "\n"); got != 1 || !strings.Contains(stdout.String(), "1,000 items") {
		t.Errorf("head printed %q, want the run's first line", stdout.String())
	}
	b, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	if code := strings.TrimSpace(string(b)); code != "0" {
		t.Errorf("throttle exited %s, want 0 (141 is death by SIGPIPE)", code)
	}
	rows := readRows(t, out)
	byItem := rowsByItem(t, rows)
	for i := range n {
		if r, ok := byItem[strconv.Itoa(i)]; !ok || !*r.OK {
			t.Errorf("item %d: row %+v, want an ok row", i, r)
		}
	}
	if len(rows) != n {
		t.Errorf("%d rows, want %d", len(rows), n)
	}
}
