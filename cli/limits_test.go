package cli_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/internal/bintest"

	"github.com/throttle-dev/throttle/internal/cuttest"

	"github.com/throttle-dev/throttle/cluster"
)

// limitName is a shared limit's name of its own for a test, removed at the end.
func limitName(t *testing.T, url string) string {
	t.Helper()
	name := fmt.Sprintf("t-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		l, err := cluster.ConnectLimits(context.Background(), url)
		if err == nil {
			_ = l.Remove(context.Background(), name, "test", true)
			l.Close()
		}
	})
	return name
}

// limitArrival is one request as the shared-limit test's server saw it: which job (by its
// path), and how many of that job's and of all calls it was serving, itself included.
type limitArrival struct {
	at       time.Time
	job      string
	mine     int
	inflight int
}

// limitServer is a loopback server whose latency the test sets as it goes, counting the
// calls in flight of each job (the first part of the path: /movie/…, /person/…).
type limitServer struct {
	url     string
	latency atomic.Int64 // ns; with every 7th call of a job slower, when slow is set
	slow    atomic.Bool
	mu      sync.Mutex
	byJob   map[string]int
	calls   map[string]int
	total   int
	seen    []limitArrival
}

func newLimitServer(t *testing.T) *limitServer {
	s := &limitServer{byJob: map[string]int{}, calls: map[string]int{}}
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		job := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0]
		s.mu.Lock()
		s.byJob[job]++
		s.total++
		s.calls[job]++
		n := s.calls[job]
		s.seen = append(s.seen, limitArrival{at: a.at, job: job, mine: s.byJob[job], inflight: s.total})
		s.mu.Unlock()
		d := time.Duration(s.latency.Load())
		if s.slow.Load() && n%7 == 0 {
			d = 150 * time.Millisecond
		}
		time.Sleep(d)
		s.mu.Lock()
		s.byJob[job]--
		s.total--
		s.mu.Unlock()
		okJSON(w, r)
	})
	s.url = srv.URL
	return s
}

func (s *limitServer) arrivals() []limitArrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]limitArrival(nil), s.seen...)
}

func (s *limitServer) inFlight(job string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byJob[job]
}

// TestSharedLimitAcrossJobs is the test: two different jobs (different inputs, one
// loopback server) share a named limit of 100/s, burst 5, 6 in flight. The server never sees
// more than 6 in flight nor more than 105 calls in any second; each job gets 40–60% of the
// calls while both run; `limit set` to 200/s mid-run reaches the server within 200 ms; a job
// killed with SIGKILL gives its slots back within the limit's lease.
func TestSharedLimitAcrossJobs(t *testing.T) {
	rurl := redisURL(t)
	bin := bintest.Build(t)
	name := limitName(t, rurl)
	const lease = 2 * time.Second
	if r := run(t, invocation{args: []string{"limit", "set", name, "--rate", "100/s", "--burst", "5", "--parallelism", "6", "--lease", lease.String(), "--redis", rurl}}); r.code != 0 {
		t.Fatalf("limit set: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	srv := newLimitServer(t)
	// Mostly 20 ms, each job's 7th call 150 ms: the rate binds and the 6 slots fill now and then.
	srv.latency.Store(int64(20 * time.Millisecond))
	srv.slow.Store(true)

	var lines [2]strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&lines[0], "m%d\n", i)
		fmt.Fprintf(&lines[1], "p%d\n", i)
	}
	movies, people := writeFile(t, "movies.txt", lines[0].String()), writeFile(t, "people.txt", lines[1].String())
	outA, outB := outPath(t), outPath(t)
	job := func(in, out, path string) *host {
		return startHost(t, bin, "run", "http", "--input", in, "--out", out, "--url", srv.url+"/"+path+"/{item}",
			"--headless", "--parallelism", "16", "--timeout", "5s", "--progress-every", "100ms", "--limit", name, "--redis", rurl)
	}
	a, b := job(movies, outA, "movie"), job(people, outB, "person")
	for _, h := range []*host{a, b} {
		h.waitFor(t, "shared limit "+name+": rate 100/s, burst 5, parallelism 6", 10*time.Second)
	}
	if !waitFor(5*time.Second, func() bool { return srv.inFlight("movie") > 0 && srv.inFlight("person") > 0 }) {
		t.Fatalf("both jobs did not reach the server:\n%s\n%s", a.stderr(), b.stderr())
	}
	both := time.Now()

	// Both jobs under the shared rate; then fast calls, so that a raise would show at once.
	time.Sleep(2500 * time.Millisecond)
	srv.slow.Store(false)
	srv.latency.Store(int64(5 * time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	set := time.Now()
	if r := run(t, invocation{args: []string{"limit", "set", name, "--rate", "200/s", "--redis", rurl}}); r.code != 0 || !strings.Contains(r.stdout, "rate 100/s → 200/s; 2 jobs use it") {
		t.Fatalf("limit set mid-run: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	a.waitFor(t, "limit "+name+": rate 100/s → 200/s (by ", 2*time.Second)

	// Long calls: the 6 slots bind, 3 for each job; then one job dies.
	time.Sleep(time.Second)
	srv.latency.Store(int64(200 * time.Millisecond))
	time.Sleep(time.Second)
	l, err := cluster.ConnectLimits(context.Background(), rurl)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hn, _ := os.Hostname()
	leasesOfB := func() int {
		n := 0
		for _, m := range l.Client().ZRange(context.Background(), cluster.LimitKey(name, "leases"), 0, -1).Val() {
			if strings.HasPrefix(m, fmt.Sprintf("%s/%d/", hn, b.cmd.Process.Pid)) {
				n++
			}
		}
		return n
	}
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The releases the job sent before it died may still be on their way to Redis: its slots
	// are those left once they landed.
	time.Sleep(100 * time.Millisecond)
	counted := time.Now()
	held := leasesOfB()
	if held == 0 {
		t.Fatalf("the killed job held no slot: the test did not see the lease at work\n%s", b.stderr())
	}
	// Its slots stay taken until their leases expire, then the other job has all 6.
	if !waitFor(lease+time.Second, func() bool { return leasesOfB() == 0 }) {
		t.Fatalf("%d slots of the killed job still taken %v after it died (lease %v)", leasesOfB(), time.Since(killed), lease)
	}
	back := time.Since(killed)
	if !waitFor(time.Second, func() bool { return srv.inFlight("movie") == 6 }) {
		t.Fatalf("the live job never reached the 6 slots after the dead job's leases expired")
	}
	full := time.Since(killed)
	if back > lease+300*time.Millisecond || full > lease+600*time.Millisecond {
		t.Fatalf("the killed job's %d slots came back %v after it died, the live job had 6 in flight after %v: want within the lease %v", held, back, full, lease)
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		_ = err // the drain is what is awaited; what the server saw is checked below
	case <-time.After(10 * time.Second):
		t.Fatalf("the job did not drain:\n%s", a.stderr())
	}

	// What the server saw.
	seen := srv.arrivals()
	var beforeSet []time.Time
	mostIn, afterKill := 0, 0
	calls := map[string]int{}
	for _, x := range seen {
		mostIn = max(mostIn, x.inflight)
		if x.at.Before(set) {
			beforeSet = append(beforeSet, x.at)
			if x.at.After(both.Add(300 * time.Millisecond)) {
				calls[x.job]++
			}
		}
		if x.job == "movie" && x.at.After(counted) && x.at.Before(killed.Add(back-50*time.Millisecond)) {
			afterKill = max(afterKill, x.mine)
		}
	}
	if mostIn > 6 {
		t.Errorf("the server saw %d calls in flight: the shared limit is 6", mostIn)
	}
	// Counted at the server, a second may also hold a few calls admitted just before it that
	// arrived late (a loaded machine delays some by milliseconds): 100 + burst 5 + 3.
	busiest, at := maxInWindow(beforeSet, time.Second)
	if busiest > 108 || busiest < 90 {
		t.Errorf("the server saw %d calls in the second from %v: want close to 100/s, never more than 100 + burst 5 (+ 3 late arrivals)", busiest, at)
	}
	share := float64(calls["movie"]) / float64(calls["movie"]+calls["person"])
	if share < 0.4 || share > 0.6 {
		t.Errorf("calls while both ran: %v: the first job got %.0f%%, want 40–60%%", calls, 100*share)
	}
	// The raise: at 100/s burst 5, no 100 ms holds more than 15 calls; at 200/s, 20.
	var raisedAt time.Duration = -1
	for i, x := range seen {
		n := 0
		for k := i; k >= 0 && x.at.Sub(seen[k].at) < 100*time.Millisecond; k-- {
			n++
		}
		if n >= 18 {
			if x.at.Before(set) {
				t.Fatalf("%d calls in the 100 ms before %v, before the raise", n, x.at.Sub(both))
			}
			raisedAt = x.at.Sub(set)
			break
		}
	}
	if raisedAt < 0 || raisedAt > 200*time.Millisecond {
		t.Errorf("the raise to 200/s showed at the server %v after limit set: want within 200 ms", raisedAt)
	}
	if afterKill > 6-held {
		t.Errorf("the live job had %d in flight while the dead job's %d slots were taken", afterKill, held)
	}

	// The job's own lines say which limit binds it, and nothing failed.
	if !regexp.MustCompile(`(?m)^limit ` + name + ` binds this job: (share of )?rate\n  now \d+ of 6 in flight \(\d+ of this job\), \d+ waiting ·`).MatchString(a.stderr()) {
		t.Errorf("no status line saying the shared rate binds:\n%s", a.stderr())
	}
	rows := readRows(t, outA)
	rowsByItem(t, rows)
	for _, r := range rows {
		if r.OK == nil || !*r.OK {
			t.Fatalf("row %+v failed", r)
		}
	}
	t.Logf("max in flight %d; busiest second %d calls; calls while both ran %v (%.0f%%); raise seen after %v; %d slots of the killed job back after %v, 6 for the other after %v; %d rows",
		mostIn, busiest, calls, 100*share, raisedAt.Round(time.Millisecond), held, back.Round(time.Millisecond), full.Round(time.Millisecond), len(rows))
}

// TestSharedLimitRedisOutage: Redis goes away mid-run: the job says so once, makes no call
// while it cannot take from its limit, and goes on when Redis is back; no item fails. A lease
// held when Redis went away is still a place in the limit: the host may hand it to its next
// call for keepFor (50 ms) after Redis admitted it, not later.
func TestSharedLimitRedisOutage(t *testing.T) {
	rurl := redisURL(t)
	name := limitName(t, rurl)
	if r := run(t, invocation{args: []string{"limit", "set", name, "--parallelism", "2", "--redis", rurl}}); r.code != 0 {
		t.Fatalf("limit set: %d %s", r.code, r.stderr)
	}
	proxy, via := cuttest.StartURL(t, rurl)
	var calls, during atomic.Int64
	var cut atomic.Bool
	var cutAt, backAt time.Time
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		calls.Add(1)
		if cut.Load() && a.at.Sub(cutAt) > 150*time.Millisecond {
			during.Add(1)
		}
		time.Sleep(20 * time.Millisecond)
		okJSON(w, r)
	})
	const items = 150
	in, out := writeItems(t, items), outPath(t)
	stderr := &syncBuffer{}
	go func() {
		if !waitFor(10*time.Second, func() bool { return calls.Load() >= 20 }) {
			return
		}
		proxy.Cut()
		cutAt = time.Now()
		cut.Store(true)
		// Longer than go-redis's own retries of a command (about a second), which a blip
		// does not outlast.
		time.Sleep(2 * time.Second)
		cut.Store(false)
		proxy.Restore(t)
		backAt = time.Now()
	}()
	r := run(t, invocation{stderr: stderr, args: []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}",
		"--headless", "--parallelism", "8", "--limit", name, "--redis", via}})
	if r.code != 0 {
		t.Fatalf("exit %d, want 0 (every item ok)\n%s", r.code, r.stderr)
	}
	if cutAt.IsZero() || backAt.IsZero() {
		t.Fatalf("the run ended before the outage was over\n%s", r.stderr)
	}
	want := "redis unavailable: calls wait for the shared limit " + name + "; nothing is lost"
	if strings.Count(r.stderr, want) != 1 || strings.Count(r.stderr, "redis is back: calls take from the shared limit "+name+" again") != 1 {
		t.Fatalf("want the outage and its end said once each:\n%s", r.stderr)
	}
	// The calls in flight when Redis went away end, and their kept leases may serve the next
	// calls for keepFor; no call starts later than that (150 ms, for a loaded machine).
	if n := during.Load(); n > 0 {
		t.Fatalf("%d calls reached the server more than 150 ms after redis went away: want none", n)
	}
	rows := readRows(t, out)
	if len(rowsByItem(t, rows)) != items {
		t.Fatalf("%d rows, want %d", len(rows), items)
	}
	for _, row := range rows {
		if !isOK(row) {
			t.Fatalf("row %+v failed", row)
		}
	}
}

// TestSharedLimitRemovedDuringRun: a limit removed (rm --force) under a running job makes its
// calls wait, and stderr names the limit gone and how to bring it back; set again, the run goes
// on and every item is ok.
func TestSharedLimitRemovedDuringRun(t *testing.T) {
	rurl := redisURL(t)
	name := limitName(t, rurl)
	limit := func(args ...string) {
		t.Helper()
		if r := run(t, invocation{args: append(append([]string{"limit"}, args...), "--redis", rurl)}); r.code != 0 {
			t.Errorf("limit %v: %d %s", args, r.code, r.stderr)
		}
	}
	limit("set", name, "--parallelism", "2")
	var calls atomic.Int64
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		calls.Add(1)
		time.Sleep(10 * time.Millisecond)
		okJSON(w, r)
	})
	const items = 60
	in, out := writeItems(t, items), outPath(t)
	stderr := &syncBuffer{}
	gone := "shared limit " + name + " is gone from redis (throttle limit rm --force?): calls wait for it; nothing is lost; throttle limit set " +
		name + " … brings it back"
	go func() {
		if !waitFor(10*time.Second, func() bool { return calls.Load() >= 10 }) {
			return
		}
		limit("rm", name, "--force")
		waitFor(5*time.Second, func() bool { return strings.Contains(stderr.String(), gone) })
		limit("set", name, "--parallelism", "2")
	}()
	r := run(t, invocation{stderr: stderr, args: []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}",
		"--headless", "--parallelism", "4", "--limit", name, "--redis", rurl}})
	if r.code != 0 {
		t.Fatalf("exit %d, want 0 (every item ok)\n%s", r.code, r.stderr)
	}
	if strings.Count(r.stderr, gone) != 1 {
		t.Fatalf("want the removal said once, naming the limit (%q):\n%s", gone, r.stderr)
	}
	if rows := rowsByItem(t, readRows(t, out)); len(rows) != items {
		t.Fatalf("%d items with rows, want %d", len(rows), items)
	}
}

// TestLimitCommand: limit set, get, ls and rm, with their usage errors; --limit with a
// limit that does not exist or a bad weight calls nothing.
func TestLimitCommand(t *testing.T) {
	rurl := redisURL(t)
	name := limitName(t, rurl)
	lim := func(args ...string) result {
		return run(t, invocation{args: append(append([]string{"limit"}, args...), "--redis", rurl)})
	}
	r := lim("set", name, "--rate", "50/s", "--burst", "5", "--parallelism", "128")
	if r.code != 0 || r.stdout != "limit "+name+" created: rate 50/s, burst 5, parallelism 128, tpm none, lease 10s\n" {
		t.Fatalf("set: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := lim("set", name, "--tpm", "60000", "--burst", "5"); r.code != 0 || !strings.Contains(r.stdout, "limit "+name+": tpm none → 60000; no job uses it now") {
		t.Fatalf("set tpm: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = lim("get", name)
	for _, want := range []string{"rate          50/s (burst 5)", "parallelism   128", "tpm           60000", "lease         10s", "0 in flight, 0 waiting for it, 0 calls/s (last whole second)", "jobs          0 using it now"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("get: %d, no %q in\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	if r := lim("get", name, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"rate": 50,`) || !strings.Contains(r.stdout, `"jobs": []`) {
		t.Fatalf("get --json: %d\n%s", r.code, r.stdout)
	}
	r = lim("ls")
	if r.code != 0 || !regexp.MustCompile(`(?m)^NAME +RATE +BURST +PARALLELISM +TPM +IN FLIGHT +WAITING +CALLS/S +JOBS$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^`+name+` +50/s +5 +128 +60000 +0 +0 +0 +0$`).MatchString(r.stdout) {
		t.Fatalf("ls: %d\n%s", r.code, r.stdout)
	}

	for _, bad := range [][]string{
		{"set", name},                          // nothing to set
		{"set", "a b", "--rate", "5"},          // bad name
		{"set", name, "--rate", "fast"},        // bad rate
		{"set", name, "--burst", "0"},          // refused by the limit's rules
		{"set", name + "-new", "--burst", "3"}, // a new limit that limits nothing
		{"set", name, "--lease", "forever"},    // bad duration
		{"get"},                                // no name
	} {
		if r := lim(bad...); r.code != 2 {
			t.Fatalf("limit %v: exit %d, want 2\n%s", bad, r.code, r.stderr)
		}
	}
	if r := run(t, invocation{args: []string{"limit", "ls"}}); r.code != 2 || !strings.Contains(r.stderr, "needs --redis") {
		t.Fatalf("ls without --redis: %d %s", r.code, r.stderr)
	}

	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	in := writeItems(t, 3)
	for _, c := range []struct {
		limit, want string
	}{
		{name + "-none", "no such shared limit"},
		{name + ":0", "the weight after ':'"},
		{name + ":x", "the weight after ':'"},
		{"bad name", "a limit's name"},
	} {
		r := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", outPath(t), "--url", srv.URL + "/{item}", "--headless",
			"--limit", c.limit, "--redis", rurl}})
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || srv.count() != 0 {
			t.Fatalf("--limit %s: exit %d, %d calls: want 2, none, and %q\n%s", c.limit, r.code, srv.count(), c.want, r.stderr)
		}
	}

	// Of two limits, the one missing is named, with how to create it, whatever the order.
	for _, limits := range [][]string{{name, name + "-missing"}, {name + "-missing", name}} {
		r := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", outPath(t), "--url", srv.URL + "/{item}", "--headless",
			"--limit", limits[0], "--limit", limits[1], "--redis", rurl}})
		want := "--limit " + name + "-missing: no such shared limit in the redis at " + rurl + "; create it first: throttle limit set " + name + "-missing "
		if r.code != 2 || !strings.Contains(r.stderr, want) || srv.count() != 0 {
			t.Fatalf("--limit %v: exit %d, %d calls: want 2, none, and %q\n%s", limits, r.code, srv.count(), want, r.stderr)
		}
	}

	// A job with a weight shows in get while it runs; rm refuses while it runs.
	slow := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		time.Sleep(50 * time.Millisecond)
		okJSON(w, r)
	})
	done := make(chan result)
	go func() {
		done <- run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 40), "--out", outPath(t), "--url", slow.URL + "/{item}",
			"--headless", "--parallelism", "2", "--limit", name + ":2", "--redis", rurl}})
	}()
	if !waitFor(5*time.Second, func() bool { return slow.count() > 0 }) {
		t.Fatal("the job did not start")
	}
	r = lim("get", name)
	if !regexp.MustCompile(`items\.txt +2 +\d +\d +\d+ +running`).MatchString(r.stdout) || !strings.Contains(r.stdout, "jobs          1 using it now") {
		t.Fatalf("get while a job of weight 2 runs:\n%s", r.stdout)
	}
	if r := lim("rm", name); r.code != 1 || !strings.Contains(r.stderr, "in use") {
		t.Fatalf("rm while in use: %d %s", r.code, r.stderr)
	}
	if r := <-done; r.code != 0 || !strings.Contains(strings.Join(strings.Fields(r.stderr), " "), "shared limit "+name+": rate 50/s, burst 5, parallelism 128, tpm 60000, lease 10s weight 2") ||
		!strings.Contains(strings.Join(strings.Fields(r.stderr), " "), "counts tokens per minute, but this adapter does not estimate") {
		t.Fatalf("the job: %d\n%s", r.code, r.stderr)
	}
	if r := lim("rm", name); r.code != 0 || r.stdout != "limit "+name+" removed\n" {
		t.Fatalf("rm: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := lim("get", name); r.code != 1 || !strings.Contains(r.stderr, "no such shared limit") {
		t.Fatalf("get after rm: %d %s", r.code, r.stderr)
	}
}

// TestSharedLimitWaitIsNotLatency: a job of 8 workers under a shared rate of 5/s against a
// server that answers at once (the 200–250 ms rows against a 1–4 ms server). The rows'
// latency_ms and the summary's p50 are the server's; the wait for the limit is the rows'
// wait_ms; the progress lines say the workers wait for the limit and that it binds; and
// `limit ls` agrees with the job: none (or one) in flight, the rest waiting.
func TestSharedLimitWaitIsNotLatency(t *testing.T) {
	t.Parallel()
	rurl := redisURL(t)
	name := limitName(t, rurl)
	if r := run(t, invocation{args: []string{"limit", "set", name, "--rate", "5/s", "--redis", rurl}}); r.code != 0 {
		t.Fatalf("limit set: %d %s", r.code, r.stderr)
	}
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	out := outPath(t)
	done := make(chan result, 1)
	go func() {
		done <- run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 14), "--out", out, "--url", srv.URL + "/{item}",
			"--headless", "--parallelism", "8", "--progress-every", "400ms", "--limit", name, "--redis", rurl}})
	}()
	if !waitFor(5*time.Second, func() bool { return srv.count() >= 6 }) { // past a heartbeat with calls waiting
		t.Fatal("the job did not get going")
	}
	ls := run(t, invocation{args: []string{"limit", "ls", "--redis", rurl}})
	m := regexp.MustCompile(`(?m)^` + name + ` +5/s +1 +none +none +(\d+) +(\d+) +\d+ +1$`).FindStringSubmatch(ls.stdout)
	if m == nil {
		t.Fatalf("limit ls:\n%s", ls.stdout)
	}
	if inFlight, _ := strconv.Atoi(m[1]); inFlight > 1 {
		t.Errorf("limit ls says %s in flight at 5/s against a server that answers at once:\n%s", m[1], ls.stdout)
	}
	if waiting, _ := strconv.Atoi(m[2]); waiting < 4 {
		t.Errorf("limit ls says %s waiting of the job's 8 workers at 5/s: want most of them:\n%s", m[2], ls.stdout)
	}
	r := <-done
	if r.code != 0 {
		t.Fatalf("the job: %d\n%s", r.code, r.stderr)
	}
	waited := 0
	for _, row := range readRows(t, out) {
		if *row.LatencyMS > 100 {
			t.Errorf("row %s: latency_ms %v; want the server's (a few ms), not the wait for the limit", row.item(), *row.LatencyMS)
		}
		if row.WaitMS >= 100 {
			waited++
		}
	}
	if waited < 8 {
		t.Errorf("%d of 14 rows waited 100 ms or more at 5/s over 8 workers; want most", waited)
	}
	if p50 := regexp.MustCompile(`latency p50 ([\d.]+)(ms|s) `).FindStringSubmatch(r.stdout); p50 == nil || p50[2] != "ms" {
		t.Errorf("the summary's latency is not the server's few ms:\n%s", r.stdout)
	} else if v, _ := strconv.ParseFloat(p50[1], 64); v > 100 {
		t.Errorf("the summary's p50 is %sms: the wait for the limit counted as latency:\n%s", p50[1], r.stdout)
	}
	for _, want := range []string{"waiting for limit " + name, "binding: shared limit " + name + ": rate 5/s"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the progress lines lack %q:\n%s", want, r.stderr)
		}
	}
	// The progress reports (a clock, then lines indented) and the limit's status lines.
	report := regexp.MustCompile(`^(\d+:\d\d  |  |limit ` + name + ` |shared limit )`)
	for _, l := range strings.Split(r.stderr, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 && report.MatchString(l) {
			t.Errorf("a progress line of %d columns: %q", n, l)
		}
	}
}
