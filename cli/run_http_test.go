package cli_test

// Integration tests of `throttle run http` through cli.Main against a loopback server started
// by each test: result rows, exit statuses, limits measured at the server, progress lines,
// signals and secrets.
//
// They run in real time. The ones that measure timing (rate cap, pace, Retry-After) do not
// call t.Parallel, so that the others do not load the two CPUs of the machine while they
// measure; each says in a comment which tolerance it allows and why.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/engine"
)

// itemID returns the number at the end of a path such as /items/17, or -1.
func itemID(path string) int {
	n, err := strconv.Atoi(path[strings.LastIndexByte(path, '/')+1:])
	if err != nil {
		return -1
	}
	return n
}

// TestRunHTTPOneRowPerItem runs 500 items against a server that answers 503 and 429 at random
// (with Retry-After: 0), 404 for some items and 503 forever for others: every item has
// exactly one row, its attempts are the calls the server saw for it, ok rows carry the
// server's output and failed rows their status and error; the exit status is 1 when some
// failed and 0 when all ended ok.
func TestRunHTTPOneRowPerItem(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		failSome bool
		want     int
	}{
		{"some fail", true, 1},
		{"all ok after retries", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 500
			var mu sync.Mutex
			rng := rand.New(rand.NewPCG(1, 2))
			srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
				id := itemID(a.path)
				if tc.failSome && id%25 == 7 {
					http.NotFound(w, r)
					return
				}
				if tc.failSome && id%25 == 13 {
					http.Error(w, "down", http.StatusServiceUnavailable)
					return
				}
				mu.Lock()
				x := rng.Float64()
				mu.Unlock()
				// At most two retryable answers per item, so that --retries 3 always suffices.
				if a.nth <= 2 {
					switch {
					case x < 0.15:
						w.Header().Set("Retry-After", "0")
						http.Error(w, "busy", http.StatusServiceUnavailable)
						return
					case x < 0.30:
						tooMany(w, "0")
						return
					}
				}
				okJSON(w, r)
			})
			out := outPath(t)
			res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, n), "--out", out,
				"--url", srv.URL + "/items/{item}", "--parallelism", "16", "--retries", "3", "--max-backoff", "20ms"}})
			if res.code != tc.want {
				t.Fatalf("exit status %d, want %d; stderr:\n%s", res.code, tc.want, res.stderr)
			}
			rows := readRows(t, out)
			if len(rows) != n {
				t.Errorf("%d rows, want %d", len(rows), n)
			}
			byItem := rowsByItem(t, rows)
			calls := map[int]int{}
			for _, a := range srv.seen() {
				calls[itemID(a.path)]++
			}
			var ok, failed int
			for i := range n {
				r, found := byItem[strconv.Itoa(i)]
				if !found {
					t.Errorf("item %d has no row", i)
					continue
				}
				if *r.Attempts != calls[i] {
					t.Errorf("item %d: row says %d attempts, the server saw %d calls", i, *r.Attempts, calls[i])
				}
				if *r.OK {
					ok++
					want := fmt.Sprintf(`{"path":"/items/%d"}`, i)
					if string(r.Output) != want || r.Status != 200 || r.Error != "" {
						t.Errorf("item %d: ok row with output %s, status %d, error %q; want output %s, status 200, no error",
							i, r.Output, r.Status, r.Error, want)
					}
					continue
				}
				failed++
				if r.Status == 0 || r.Error == "" || *r.Attempts < 1 {
					t.Errorf("item %d: failed row without status, error or attempts: %+v", i, r)
				}
				switch {
				case !tc.failSome:
					t.Errorf("item %d failed: %s", i, r.Error)
				case i%25 == 7 && (r.Status != 404 || *r.Attempts != 1 || !strings.HasPrefix(r.Error, "404")):
					t.Errorf("item %d: status %d, %d attempts, error %q; want 404 after 1 attempt", i, r.Status, *r.Attempts, r.Error)
				case i%25 == 13 && (r.Status != 503 || *r.Attempts != 4 || !strings.Contains(r.Error, "after 4 attempts")):
					t.Errorf("item %d: status %d, %d attempts, error %q; want 503 after 4 attempts", i, r.Status, *r.Attempts, r.Error)
				case i%25 != 7 && i%25 != 13:
					t.Errorf("item %d failed: %s", i, r.Error)
				}
			}
			wantFailed := 0
			if tc.failSome {
				wantFailed = 2 * n / 25
			}
			if failed != wantFailed || ok != n-wantFailed {
				t.Errorf("%d ok and %d failed rows, want %d and %d", ok, failed, n-wantFailed, wantFailed)
			}
			t.Logf("%d calls for %d items", len(srv.seen()), n)
		})
	}
}

// TestRunHTTPRateCap runs --rate 40 --burst 3 at parallelism 16 for about 3 s against a fast
// server, and slides a 1 s window over every arrival at the server.
func TestRunHTTPRateCap(t *testing.T) {
	const (
		n     = 130 // 3 at once, then one each 25 ms: the last starts 3.175 s after the first
		rate  = 40
		burst = 3
	)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
	res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, n), "--out", outPath(t),
		"--url", srv.URL + "/items/{item}", "--rate", strconv.Itoa(rate), "--burst", strconv.Itoa(burst), "--parallelism", "16"}})
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	seen := srv.seen()
	if len(seen) != n {
		t.Fatalf("the server saw %d calls, want %d", len(seen), n)
	}
	times := make([]time.Time, len(seen))
	for i, a := range seen {
		times[i] = a.at
	}
	got, at := maxInWindow(times, time.Second)
	span := times[len(times)-1].Sub(times[0])
	t.Logf("at most %d arrivals in a 1 s window (the one starting %v after the first); %d arrivals over %v",
		got, at.Round(time.Millisecond), n, span.Round(time.Millisecond))
	// The token bucket grants its 3 tokens at t0 and one more each 25 ms, so the calls start at
	// t0, t0, t0, t0+25ms, …: a half-open 1 s window of starts holds at most 3+39 = 42, and
	// the contract's "rate + burst" = 43 already allows a window 25 ms wider. The server
	// measures arrivals, each a start plus a delay (the engine's timer firing late, the
	// request's trip over loopback) that varies by a few ms, and by tens of ms when the race
	// detector and another test binary share the two CPUs: a window of arrivals can then hold
	// the starts of a window up to that spread wider. We allow one call more, i.e. a spread of
	// up to 50 ms. A real overrun is far beyond that: a burst that refills too fast or a rate
	// applied per worker shows as many calls more.
	const limit = rate + burst + 1
	if got > limit {
		t.Errorf("%d calls arrived within 1 s (window starting %v after the first), want at most %d (rate %d + burst %d + 1 for jitter)",
			got, at, limit, rate, burst)
	}
	// The cap must also be what limited the run, or the check above proves nothing.
	if got < rate-2 || span < 3*time.Second {
		t.Errorf("at most %d calls in 1 s and %v from first to last arrival: the run did not reach the cap", got, span)
	}
}

// TestRunHTTPPace runs 4 workers with --pace 100ms against a fast server: 40 calls/s within
// 5%, counted at the server over the steady part of the run.
func TestRunHTTPPace(t *testing.T) {
	const (
		n      = 130 // 4 at t0, then 4 each 100 ms: about 3.2 s
		window = 2 * time.Second
	)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
	res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, n), "--out", outPath(t),
		"--url", srv.URL + "/items/{item}", "--parallelism", "4", "--pace", "100ms"}})
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	seen := srv.seen()
	if len(seen) != n {
		t.Fatalf("the server saw %d calls, want %d", len(seen), n)
	}
	// The steady part: skip the first 500 ms (connections being opened, workers getting into
	// step) and count the arrivals in the next 2 s, a whole number of paces, so that each
	// worker contributes 20 calls whatever its phase. What the count may lose is the pace's own
	// drift: a worker starts a pace after its previous start, and its timer fires a little late
	// (µs normally, a few ms under the race detector on a loaded machine), which 5% (5 ms a
	// call) covers.
	from := seen[0].at.Add(500 * time.Millisecond)
	count := 0
	for _, a := range seen {
		if !a.at.Before(from) && a.at.Before(from.Add(window)) {
			count++
		}
	}
	perSec := float64(count) / window.Seconds()
	t.Logf("%d calls in the %v from %v after the first arrival: %.1f calls/s", count, window, 500*time.Millisecond, perSec)
	if perSec < 40*0.95 || perSec > 40*1.05 {
		t.Errorf("4 workers at pace 100ms made %.1f calls/s, want 40 ± 5%%", perSec)
	}
}

// TestRunHTTPRetryAfter checks that a 429 with Retry-After: 1 is honoured: the item's next
// call comes at least 1 s after it, and the whole pool holds back for that second.
func TestRunHTTPRetryAfter(t *testing.T) {
	// inFlightMargin is how long after a 429 leaves the server other calls may still arrive:
	// those the engine started before the 429 reached it are not held (nothing can recall
	// them). Such a call is on its way within the 429's trip back plus its own trip out,
	// well under a millisecond on loopback; we allow 100 ms for a loaded machine under the
	// race detector, and check the remaining 900 ms of every hold.
	const inFlightMargin = 100 * time.Millisecond
	hold := time.Second
	spread := engine.HoldSpread(hold)

	// checkHolds fails the test for an arrival between inFlightMargin and 1 s after a 429.
	checkHolds := func(t *testing.T, seen []arrival, is429 func(arrival) bool) {
		t.Helper()
		for _, r := range seen {
			if !is429(r) {
				continue
			}
			for _, a := range seen {
				if d := a.at.Sub(r.at); d > inFlightMargin && d < hold {
					t.Errorf("%s arrived %v after the 429 with Retry-After: 1 to %s (#%d)", a.path, d, r.path, r.nth)
				}
			}
		}
	}

	t.Run("first call of each item", func(t *testing.T) {
		const n = 4
		srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
			if a.nth == 1 {
				tooMany(w, "1")
				return
			}
			okJSON(w, r)
		})
		out := outPath(t)
		res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, n), "--out", out,
			"--url", srv.URL + "/items/{item}", "--parallelism", "4"}})
		if res.code != 0 {
			t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
		}
		seen := srv.seen()
		first := map[string]time.Time{}
		for _, a := range seen {
			switch a.nth {
			case 1:
				first[a.path] = a.at
			case 2:
				// Exact: the 429 left the server after its arrival, the engine got it later
				// still and scheduled the retry a full Retry-After after that.
				if d := a.at.Sub(first[a.path]); d < hold {
					t.Errorf("%s: second call %v after the first, want at least %v", a.path, d, hold)
				}
			default:
				t.Errorf("%s: call #%d, want 2 calls per item", a.path, a.nth)
			}
		}
		checkHolds(t, seen, func(a arrival) bool { return a.nth == 1 })
		for _, r := range readRows(t, out) {
			if !*r.OK || *r.Attempts != 2 {
				t.Errorf("row %s: ok %v after %d attempts, want ok after 2", r.Item, *r.OK, *r.Attempts)
			}
		}
	})

	t.Run("one 429 holds the whole pool", func(t *testing.T) {
		// 15 calls of 25 ms per worker: without the hold they would all arrive in the
		// 400 ms after the 429, well inside the window the hold must keep quiet.
		const n, workers = 60, 4
		srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
			if a.path == "/items/3" && a.nth == 1 {
				tooMany(w, "1")
				return
			}
			time.Sleep(25 * time.Millisecond)
			okJSON(w, r)
		})
		res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, n), "--out", outPath(t),
			"--url", srv.URL + "/items/{item}", "--parallelism", strconv.Itoa(workers)}})
		if res.code != 0 {
			t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
		}
		seen := srv.seen()
		is429 := func(a arrival) bool { return a.path == "/items/3" && a.nth == 1 }
		checkHolds(t, seen, is429)
		i429 := slices.IndexFunc(seen, is429)
		if i429 < 0 {
			t.Fatal("item 3 was never called")
		}
		s := seen[i429].at
		// After the hold, every worker comes back within HoldSpread (250 ms) of its end, never
		// before it. Allow 100 ms past that for the 429's trip back and timers firing late.
		var back []time.Duration
		for _, a := range seen[i429+1:] {
			if d := a.at.Sub(s); d >= hold {
				back = append(back, d)
			}
		}
		slices.Sort(back)
		late := hold + spread + 100*time.Millisecond
		if len(back) < workers || back[workers-1] > late {
			t.Errorf("after the hold the first calls arrived %v after the 429; want %d of them by %v", back[:min(len(back), workers)], workers, late)
		}
		if n := len(seen) - i429 - 1 - len(back); n > 0 {
			t.Logf("%d calls arrived within %v of the 429 (already in flight)", n, inFlightMargin)
		}
	})
}

// TestRunUsageErrors: a usage or configuration error exits 2 before any call.
func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
	in := writeItems(t, 3)
	dir := t.TempDir()
	url := srv.URL + "/items/{item}"
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no adapter", []string{"run", "--input", in}, "needs an adapter"},
		{"missing --input", []string{"run", "http", "--url", url}, "--input is required"},
		{"unknown flag", []string{"run", "http", "--input", in, "--url", url, "--fast"}, "unknown flag: --fast"},
		{"unknown flag before the adapter", []string{"run", "--fast", "http", "--input", in, "--url", url}, "unknown flag: --fast"},
		{"bad --rate", []string{"run", "http", "--input", in, "--url", url, "--rate", "fast"}, "--rate"},
		{"bad --parallelism", []string{"run", "http", "--input", in, "--url", url, "--parallelism", "0"}, "--parallelism 0"},
		{"unknown adapter", []string{"run", "ftp", "--input", in}, `unknown adapter "ftp"`},
		{"missing input file", []string{"run", "http", "--input", filepath.Join(dir, "nope.txt"), "--url", url}, "no such file"},
		{"input is a directory", []string{"run", "http", "--input", dir, "--url", url}, "is a directory"},
		{"missing --url", []string{"run", "http", "--input", in}, "needs --url"},
		{"url without scheme", []string{"run", "http", "--input", in, "--url", host + "/items/{item}"}, "url template"},
		{"url without http scheme", []string{"run", "http", "--input", in, "--url", "localhost:1/items/{item}"}, "not http or https"},
		{"secret in the url", []string{"run", "http", "--input", in, "--url", url + "?key=${KEY}"}, "not allowed in a url"},
		{"bad header", []string{"run", "http", "--input", in, "--url", url, "--header", "no colon"}, "header 1 of 1"},
		{"unknown command", []string{"runn", "http"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "results.jsonl")
			res := run(t, invocation{args: append(tc.args, "--out", out), env: map[string]string{"KEY": "k"}})
			if res.code != 2 {
				t.Errorf("%q: exit status %d, want 2; stderr:\n%s", tc.args, res.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.want) || !strings.Contains(res.stderr, "nothing was called") {
				t.Errorf("%q: stderr %q, want it to say %q and \"nothing was called\"", tc.args, res.stderr, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%q: the results file was created", tc.args)
			}
		})
	}
	if n := srv.count(); n != 0 {
		t.Errorf("the server saw %d calls after usage errors, want 0", n)
	}
}

// TestRunFlagsBeforeOrAfterAdapter: the shared flags work before and after the adapter name.
func TestRunFlagsBeforeOrAfterAdapter(t *testing.T) {
	t.Parallel()
	const n = 5
	for _, tc := range []struct {
		name string
		args func(in, out, url string) []string
	}{
		{"before", func(in, out, url string) []string {
			return []string{"run", "--input", in, "--parallelism", "2", "--out", out, "http", "--url", url}
		}},
		{"after", func(in, out, url string) []string {
			return []string{"run", "http", "--url", url, "--input", in, "--parallelism", "2", "--out", out}
		}},
		{"mixed, with =", func(in, out, url string) []string {
			return []string{"run", "--input=" + in, "http", "--out=" + out, "--url=" + url, "--parallelism=2"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
			out := outPath(t)
			args := tc.args(writeItems(t, n), out, srv.URL+"/items/{item}")
			res := run(t, invocation{args: args})
			if res.code != 0 {
				t.Fatalf("%q: exit status %d, want 0; stderr:\n%s", args, res.code, res.stderr)
			}
			if got := srv.count(); got != n {
				t.Errorf("%q: the server saw %d calls, want %d", args, got, n)
			}
			if rows := readRows(t, out); len(rows) != n {
				t.Errorf("%q: %d rows, want %d", args, len(rows), n)
			}
			if !strings.Contains(res.stderr, "parallelism 2,") {
				t.Errorf("%q: stderr does not show parallelism 2:\n%s", args, res.stderr)
			}
		})
	}
}

// TestRunHeadlessProgress: with --progress-every 100ms, stderr has progress lines with
// done/total, calls/s, in flight, p50/p95 and 429s, and a final "done in" summary.
func TestRunHeadlessProgress(t *testing.T) {
	t.Parallel()
	const n = 30
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if a.nth == 1 && itemID(a.path)%5 == 0 {
			tooMany(w, "0")
			return
		}
		time.Sleep(30 * time.Millisecond)
		okJSON(w, r)
	})
	in := writeItems(t, n)
	res := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", outPath(t),
		"--url", srv.URL + "/items/{item}", "--parallelism", "2", "--max-backoff", "10ms", "--progress-every", "100ms"}})
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	// The first line, wrapped at 80 columns.
	if first, want := lines[0]+" "+strings.TrimSpace(lines[1]), fmt.Sprintf("http · %s · 30 items · parallelism 2", in); !strings.HasPrefix(first, want) {
		t.Errorf("first lines %q, want them to start with %q", first, want)
	}
	// The 429s (Retry-After: 0) may make the congestion response hold an effective
	// parallelism under the 2: the line then names it and the ceiling.
	// Each report: the counts of the whole run, then the screen's rate with its window (or
	// "measuring" right after a change), in flight now and the latency of the monitor's
	// window, in lines of 80 columns.
	progress := regexp.MustCompile(`(?m)^\d+:\d\d  \w+  (\d+)/30 [\d.]+%.*  whole run: failed \d+ · 429s (\d+) · errors \d+\n` +
		`  (?:last \d+s: [\d.]+|measuring: –) calls/s(?: · 429s \+\d+ since the last line)?  in flight \d+/(?:2|1 \(effective · ceiling 2\))\n` +
		`  run so far: p50 [\d.]+m?s p95 [\d.]+m?s`)
	var matched int
	var saw429 bool
	for _, m := range progress.FindAllStringSubmatch(res.stderr, -1) {
		matched++
		saw429 = saw429 || m[2] != "0"
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("a line of %d columns: %q", n, l)
		}
	}
	// About 0.5 s of calls at a line each 100 ms; a loaded machine may print fewer.
	if matched < 2 || !saw429 {
		t.Errorf("%d progress lines with done/total, calls/s, in flight, p50/p95 and 429s (429s seen: %v), want at least 2 and some 429s:\n%s",
			matched, saw429, res.stderr)
	}
	summary := regexp.MustCompile(`(?m)^done in [\d.]+m?s: 30 items, 30 ok, 0 failed\n\d+ calls, 6 retries, 6 × 429`)
	if !summary.MatchString(res.stdout) {
		t.Errorf("no summary line matching %s on stdout:\n%s", summary, res.stdout)
	}
}

// gatedServer answers the first `fast` calls at once and holds every later one until gate
// closes or the client gives up.
func gatedServer(t *testing.T, fast int, gate chan struct{}) *recServer {
	t.Helper()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if a.nth == 1 && itemID(a.path) >= fast {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		okJSON(w, r)
	})
	t.Cleanup(func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}) // runs before srv.Close, which waits for the handlers
	return srv
}

// TestRunSignals: a first SIGINT drains the run (no call starts, the calls in flight finish
// and get rows, exit 130); a second one cancels the calls in flight (rows "canceled: run
// stopped", exit 130).
//
// The server answers 12 calls at once and then holds every call, so that at the moment the
// test sends SIGINT all 4 workers are inside a call and none can start another: any call that
// reaches the server later was started after the signal.
func TestRunSignals(t *testing.T) {
	t.Parallel()
	const n, fast, workers = 100, 12, 4
	for _, tc := range []struct {
		name      string
		second    bool // send a second SIGINT instead of letting the held calls finish
		wantError string
	}{
		{"drain", false, ""},
		{"second interrupt cancels", true, "canceled: run stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gate := make(chan struct{})
			srv := gatedServer(t, fast, gate)
			out := outPath(t)
			sig := make(chan os.Signal, 2)
			stderr := &syncBuffer{}
			in := writeItems(t, n)
			done := make(chan result, 1)
			go func() {
				done <- run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out,
					"--url", srv.URL + "/items/{item}", "--parallelism", strconv.Itoa(workers)}, signals: sig, stderr: stderr})
			}()
			if !waitFor(10*time.Second, func() bool { return srv.count() == fast+workers && srv.inflight.Load() == workers }) {
				t.Fatalf("the server saw %d calls with %d in flight, want %d with %d", srv.count(), srv.inflight.Load(), fast+workers, workers)
			}
			sig <- syscall.SIGINT
			if !waitFor(5*time.Second, func() bool { return strings.Contains(stderr.String(), "draining") }) {
				t.Fatalf("no draining message after SIGINT:\n%s", stderr.String())
			}
			// The message is printed just before the engine is told to drain.
			time.Sleep(20 * time.Millisecond)
			if tc.second {
				sig <- syscall.SIGINT
			} else {
				close(gate)
			}
			var res result
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("the run did not end after SIGINT:\n%s", stderr.String())
			}
			if res.code != 130 {
				t.Errorf("exit status %d, want 130; stderr:\n%s", res.code, res.stderr)
			}
			if got := srv.count(); got != fast+workers {
				t.Errorf("the server saw %d calls, want %d: a call started after SIGINT", got, fast+workers)
			}
			rows := readRows(t, out)
			byItem := rowsByItem(t, rows)
			attempted := map[int]bool{}
			for _, a := range srv.seen() {
				attempted[itemID(a.path)] = true
			}
			if len(rows) != len(attempted) {
				t.Errorf("%d rows for %d attempted items", len(rows), len(attempted))
			}
			for item := range attempted {
				r, ok := byItem[strconv.Itoa(item)]
				switch {
				case !ok:
					t.Errorf("item %d was called and has no row", item)
				case item < fast:
					if !*r.OK {
						t.Errorf("item %d: %s, want ok", item, r.Error)
					}
				case tc.second && (*r.OK || r.Error != tc.wantError):
					t.Errorf("item %d: ok %v, error %q; want failed with %q", item, *r.OK, r.Error, tc.wantError)
				case !tc.second && !*r.OK:
					t.Errorf("item %d: %s, want ok (drained)", item, r.Error)
				}
			}
			if !strings.Contains(res.stdout, "items were not run and have no row") {
				t.Errorf("the summary does not say that items were left:\n%s", res.stdout)
			}
		})
	}
}

// TestRunSecrets: a ${API_TOKEN} header reaches the server, and the token appears nowhere in
// the results or the output, even when the server echoes the header in its answers.
func TestRunSecrets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, token string }{
		{"plain token", "tok-3f9a.b_Zq+x=="},
		// Go's encoding/json writes &, < and > as \u0026, \u003c and \u003e by default, and
		// PHP's json_encode writes / as \/: a server that echoes JSON hides such a token from a
		// byte search, but not from whoever reads the row.
		{"token that JSON escapes", "pw/&<x>9-long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 15
			srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
				auth := r.Header.Get("Authorization")
				switch itemID(a.path) % 5 {
				case 0: // a JSON echo, as json.Marshal writes it
					b, _ := json.Marshal(map[string]string{"you_sent": auth})
					w.Header().Set("Content-Type", "application/json")
					w.Write(b)
				case 1: // a plain-text echo
					fmt.Fprintf(w, "hello %s", auth)
				case 2: // an error page that echoes the request
					http.Error(w, "unauthorized: "+auth, http.StatusForbidden)
				case 3: // JSON written by hand, unescaped
					fmt.Fprintf(w, `{"headers":{"Authorization":[%q]}}`, auth)
				default: // JSON as PHP's json_encode writes it: "/" as "\/"
					b, _ := json.Marshal(map[string]string{"auth": auth})
					w.Header().Set("Content-Type", "application/json")
					w.Write(bytes.ReplaceAll(b, []byte("/"), []byte(`\/`)))
				}
			})
			out := outPath(t)
			args := []string{"run", "http", "--input", writeItems(t, n), "--out", out,
				"--url", srv.URL + "/items/{item}", "--header", "Authorization: Bearer ${API_TOKEN}", "--parallelism", "3"}
			res := run(t, invocation{args: args, env: map[string]string{"API_TOKEN": tc.token}})
			if res.code != 1 { // the 403s
				t.Errorf("exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
			}
			for _, a := range srv.seen() {
				if got := a.header.Get("Authorization"); got != "Bearer "+tc.token {
					t.Errorf("%s: the server got Authorization %q, want the token", a.path, got)
				}
			}
			if got := srv.count(); got != n {
				t.Errorf("the server saw %d calls, want %d", got, n)
			}
			raw, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for what, text := range map[string]string{"results": string(raw), "stderr": res.stderr, "stdout": res.stdout} {
				if strings.Contains(text, tc.token) {
					t.Errorf("the token is in %s:\n%s", what, text)
				}
			}
			// Decoded, too: a JSON escape must not hide it.
			rows := readRows(t, out)
			if len(rows) != n {
				t.Errorf("%d rows, want %d", len(rows), n)
			}
			for _, r := range rows {
				var v any
				if len(r.Output) > 0 {
					if err := json.Unmarshal(r.Output, &v); err != nil {
						t.Fatalf("row %s: output %s: %v", r.Item, r.Output, err)
					}
				}
				if s := fmt.Sprint(v) + r.Error; strings.Contains(s, tc.token) {
					t.Errorf("row %s: the token is in its decoded output or error: %s", r.Item, s)
				}
			}
		})
	}
}

// TestDemo: `throttle demo` against its embedded simulated API, with a fast limit, writes a
// row per item to the --out it is given and exits 0.
func TestDemo(t *testing.T) {
	t.Parallel()
	out := outPath(t)
	res := run(t, invocation{args: []string{"demo", "--items", "50", "--sim-rate", "1000/s", "--out", out}})
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	rows := readRows(t, out)
	byItem := rowsByItem(t, rows)
	for i := 1; i <= 50; i++ {
		if r, ok := byItem[strconv.Itoa(i)]; !ok || !*r.OK {
			t.Errorf("item %d: row %+v, want an ok row", i, r)
		}
	}
	if len(rows) != 50 {
		t.Errorf("%d rows, want 50", len(rows))
	}
	if !strings.Contains(res.stderr, "simulated API on http://127.0.0.1:") || !strings.Contains(res.stdout, "done in ") {
		t.Errorf("stderr does not show the simulated API, or stdout the summary:\n%s\nstdout:\n%s", res.stderr, res.stdout)
	}
}

// TestRunStdin: --input - reads the items from stdin, whose total is unknown.
func TestRunStdin(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
	out := outPath(t)
	res := run(t, invocation{args: []string{"run", "http", "--input", "-", "--out", out, "--url", srv.URL + "/items/{item}"},
		stdin: "alpha\nbeta gamma\n\n  \ndelta/epsilon\r\n"})
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	first, _, _ := strings.Cut(res.stderr, "\n")
	if !strings.Contains(first, "stdin") || !strings.Contains(first, "unknown total") {
		t.Errorf("first line %q, want it to name stdin and say \"unknown total\"", first)
	}
	byItem := rowsByItem(t, readRows(t, out))
	for _, item := range []string{"alpha", "beta gamma", "delta/epsilon"} {
		if r, ok := byItem[item]; !ok || !*r.OK {
			t.Errorf("item %q: row %+v, want an ok row", item, r)
		}
	}
	if len(byItem) != 3 {
		t.Errorf("%d rows, want 3 (blank lines are not items)", len(byItem))
	}
	var paths []string
	for _, a := range srv.seen() {
		paths = append(paths, a.path)
	}
	slices.Sort(paths)
	if want := []string{"/items/alpha", "/items/beta gamma", "/items/delta/epsilon"}; !slices.Equal(paths, want) {
		t.Errorf("the server saw %q, want %q", paths, want)
	}
}

// TestRunJSONL: a .jsonl input fills {.id} in the URL; a line that is not a JSON object, or
// lacks the field, becomes a failed row with the reason instead of stopping the run.
func TestRunJSONL(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var escaped []string
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) {
		mu.Lock()
		escaped = append(escaped, r.URL.EscapedPath())
		mu.Unlock()
		okJSON(w, r)
	})
	in := writeFile(t, "users.jsonl", `{"id": 1, "name": "ann"}
{"id": "x/y"}
{"id": 3,
[1, 2]

{"name": "no id"}
{"id": 7}
`)
	out := outPath(t)
	res := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/users/{.id}"}})
	if res.code != 1 {
		t.Errorf("exit status %d, want 1 (some items failed); stderr:\n%s", res.code, res.stderr)
	}
	byItem := rowsByItem(t, readRows(t, out))
	for _, tc := range []struct {
		item  string // as the row holds it: the object, or the line when it is not one
		ok    bool
		error string // a part of the row's error
	}{
		{`{"id":1,"name":"ann"}`, true, ""},
		{`{"id":"x/y"}`, true, ""},
		{`{"id": 3,`, false, "input line 3 is not valid JSON"},
		{`[1, 2]`, false, "input line 4 is not a JSON object"},
		{`{"name":"no id"}`, false, "{.id}: the item has no such field"},
		{`{"id":7}`, true, ""},
	} {
		r, found := byItem[tc.item]
		switch {
		case !found:
			t.Errorf("no row for item %s", tc.item)
		case *r.OK != tc.ok || !strings.Contains(r.Error, tc.error):
			t.Errorf("item %s: ok %v, error %q; want ok %v, error containing %q", tc.item, *r.OK, r.Error, tc.ok, tc.error)
		}
	}
	if len(byItem) != 6 {
		t.Errorf("%d rows, want 6", len(byItem))
	}
	mu.Lock()
	slices.Sort(escaped)
	mu.Unlock()
	if want := []string{"/users/1", "/users/7", "/users/x%2Fy"}; !slices.Equal(escaped, want) {
		t.Errorf("the server saw %q, want %q", escaped, want)
	}
}
