package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// namedLimit connects to the test Redis and creates a limit named after the test with s,
// removed at the end.
func namedLimit(t *testing.T, s LimitSet) (*Limits, string) {
	t.Helper()
	return namedLimitAt(t, limitsRedisURL(t), s)
}

func namedLimitAt(t *testing.T, url string, s LimitSet) (*Limits, string) {
	t.Helper()
	ctx := context.Background()
	l, err := ConnectLimits(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("t-%s-%x", strings.NewReplacer("/", "-", " ", "_", ":", "-").Replace(t.Name()), rand.Uint32())
	if len(name) > 64 {
		name = name[len(name)-64:]
	}
	if _, _, err := l.Set(ctx, name, "test", s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = l.Remove(context.Background(), name, "test", true)
		l.Close()
	})
	return l, name
}

func ptr[T any](v T) *T { return &v }

// namedGate puts inner behind uses as the job named job, closed at the end of the test.
// An unexpected Redis error fails the test.
func namedGate(t *testing.T, l *Limits, inner engine.Adapter, job string, opts GateOptions, uses ...LimitUse) *Gate {
	t.Helper()
	opts.Job = job
	if opts.Outage == nil {
		opts.Outage = NewOutage(func(err error) { t.Errorf("job %s: unexpected redis error %v", job, err) })
	}
	g, err := l.Use(context.Background(), inner, uses, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// namedEngines runs one engine per adapter (local parallelism par) on items of its own
// until they end or, when stopAfter > 0, until they are drained after it. It returns their
// summaries and when they started.
func namedEngines(t *testing.T, adapters []engine.Adapter, items, par int, stopAfter time.Duration, during func()) ([]engine.Summary, time.Time) {
	t.Helper()
	var alongside func([]*engine.Engine)
	if during != nil {
		alongside = func([]*engine.Engine) { during() }
	}
	sums, start := runEngines(t, adapters, "j", items, par, stopAfter, alongside)
	for i, s := range sums {
		if s.Failed != 0 {
			t.Fatalf("engine %d: %+v: want no failed item", i, s)
		}
	}
	return sums, start
}

// shares counts the calls of each job that started in [from, to).
func shares(starts []gateStart, from, to time.Time, jobs int) []int {
	n := make([]int, jobs)
	for _, s := range starts {
		if !s.at.Before(from) && s.at.Before(to) {
			n[s.host]++
		}
	}
	return n
}

// busiestWindow is the most calls that started within w of each other.
func busiestWindow(starts []gateStart, w time.Duration) int {
	most := 0
	for i := range starts {
		n := 0
		for k := i; k < len(starts) && starts[k].at.Sub(starts[i].at) < w; k++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

func TestLimitSetGetListRemove(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{Rate: ptr(50.0), Burst: ptr(5), Parallelism: ptr(128)})
	ctx := context.Background()
	info, err := l.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	want := LimitConfig{Rate: 50, Burst: 5, Parallelism: 128, Lease: DefaultLimitLease}
	if info.LimitConfig != want || info.UpdatedBy != "test" || info.InFlight != 0 || len(info.Jobs) != 0 {
		t.Fatalf("get: %+v, want %+v set by test, idle", info, want)
	}
	gen := func() string { return l.Client().HGet(ctx, LimitKey(name, "conf"), "gen").Val() }
	before := gen()

	created, changes, err := l.Set(ctx, name, "ops", LimitSet{Rate: ptr(200.0), Parallelism: ptr(128), TPM: ptr(60000.0)})
	if err != nil || created {
		t.Fatalf("set: created %v, %v", created, err)
	}
	got := fmt.Sprint(changes)
	if got != "[rate 50/s → 200/s tpm none → 60000]" {
		t.Fatalf("changes %s: want the rate and the tpm, not the unchanged parallelism", got)
	}
	if gen() == before {
		t.Fatal("a changed rate kept the GCRA generation: the old bucket would delay the raise")
	}
	if _, _, err := l.Set(ctx, name, "ops", LimitSet{Lease: ptr(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	info, _ = l.Get(ctx, name)
	if info.Rate != 200 || info.Burst != 5 || info.TPM != 60000 || info.Lease != 3*time.Second || info.UpdatedBy != "ops" {
		t.Fatalf("after the sets: %+v", info)
	}

	for _, bad := range []LimitSet{{Burst: ptr(0)}, {Rate: ptr(-1.0)}, {Parallelism: ptr(-2)}, {Lease: ptr(time.Millisecond)},
		{Rate: ptr(0.0), Parallelism: ptr(0), TPM: ptr(0.0)}} {
		if _, _, err := l.Set(ctx, name, "ops", bad); err == nil {
			t.Fatalf("set %+v: accepted", bad)
		}
	}
	if _, _, err := l.Set(ctx, "bad name", "ops", LimitSet{Rate: ptr(1.0)}); err == nil {
		t.Fatal("a name with a space was accepted")
	}
	if _, err := l.Get(ctx, name+"-none"); !errors.Is(err, ErrNoLimit) {
		t.Fatalf("get of a missing limit: %v, want ErrNoLimit", err)
	} else if ne, ok := errors.AsType[*NoLimitError](err); !ok || ne.Name != name+"-none" {
		t.Fatalf("get of a missing limit: %#v, want a *NoLimitError naming %s-none", err, name)
	}
	all, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, i := range all {
		found = found || i.Name == name
	}
	if !found {
		t.Fatalf("ls %v lacks %s", all, name)
	}

	// A job alive keeps it from removal, unless forced.
	g := namedGate(t, l, engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		return engine.Outcome{Verdict: engine.OK}, nil
	}), "job-a", GateOptions{Label: "movies.txt"}, LimitUse{Name: name, Weight: 2})
	if err := l.Remove(ctx, name, "ops", false); !errors.Is(err, ErrLimitInUse) {
		t.Fatalf("rm of a limit in use: %v, want ErrLimitInUse", err)
	}
	g.Close()
	if err := l.Remove(ctx, name, "ops", false); err != nil {
		t.Fatalf("rm once the job left: %v", err)
	}
	if _, err := l.Get(ctx, name); !errors.Is(err, ErrNoLimit) {
		t.Fatalf("get after rm: %v", err)
	}
	if err := l.Remove(ctx, name, "ops", false); !errors.Is(err, ErrNoLimit) {
		t.Fatalf("rm twice: %v, want ErrNoLimit", err)
	} else if ne, ok := errors.AsType[*NoLimitError](err); !ok || ne.Name != name {
		t.Fatalf("rm twice: %#v, want a *NoLimitError naming %s", err, name)
	}
	// Of several limits, the error names the one missing, for the CLI to say how to create it.
	if _, _, err := l.Set(ctx, name+"-other", "ops", LimitSet{Rate: ptr(5.0)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Remove(context.Background(), name+"-other", "ops", true) })
	_, err = l.Use(ctx, engine.AdapterFunc(nil), []LimitUse{{Name: name + "-other"}, {Name: name}}, GateOptions{})
	if ne, ok := errors.AsType[*NoLimitError](err); !ok || ne.Name != name || !errors.Is(err, ErrNoLimit) ||
		err.Error() != "cluster: no such shared limit: "+name {
		t.Fatalf("use of a missing limit: %v, want a *NoLimitError naming %s", err, name)
	}
}

// TestLimitInfoShowsUse: get shows the calls in flight now, the calls of the last second and
// the jobs with their weights; a job that leaves is gone from the list.
func TestLimitInfoShowsUse(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{Parallelism: ptr(10)})
	ctx := context.Background()
	release := make(chan struct{})
	var in sync.WaitGroup
	in.Add(3)
	hang := engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		in.Done()
		<-release
		return engine.Outcome{Verdict: engine.OK}, nil
	})
	a := namedGate(t, l, hang, "job-a", GateOptions{Label: "movies.txt"}, LimitUse{Name: name, Weight: 2})
	b := namedGate(t, l, engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		return engine.Outcome{Verdict: engine.OK}, nil
	}), "job-b", GateOptions{Label: "people.txt"}, LimitUse{Name: name})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := a.Do(ctx, engine.Item{}); err != nil {
				t.Error(err)
			}
		})
	}
	in.Wait()
	for range 5 {
		if _, err := b.Do(ctx, engine.Item{}); err != nil {
			t.Fatal(err)
		}
	}
	// b's last lease may wait keepIdle for a next call, and its calls on kept leases are
	// counted with its next trip (the lease's return): wait for both.
	var info LimitInfo
	waitUntil(time.Second, func() bool {
		var err error
		info, err = l.Get(ctx, name)
		return err == nil && info.InFlight == 3 && len(info.Jobs) == 2 && info.Jobs[1].Calls == 5
	})
	if info.InFlight != 3 || len(info.Jobs) != 2 || info.AliveJobs() != 2 {
		t.Fatalf("info %+v: want 3 in flight, 2 jobs alive", info)
	}
	ja, jb := info.Jobs[0], info.Jobs[1]
	if ja.ID != "job-a" || ja.Weight != 2 || ja.InFlight != 3 || ja.Calls != 3 || ja.Label != "movies.txt" ||
		jb.ID != "job-b" || jb.Weight != 1 || jb.InFlight != 0 || jb.Calls != 5 {
		t.Fatalf("jobs %+v", info.Jobs)
	}
	// The calls of the last whole second: 8 were made within the current one or the last.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 50*time.Millisecond)))
	if info, _ := l.Get(ctx, name); info.CallsPerSecond > 8 {
		t.Fatalf("calls/s %v after 8 calls", info.CallsPerSecond)
	}
	close(release)
	wg.Wait()
	b.Close()
	info, _ = l.Get(ctx, name)
	if info.InFlight != 0 || len(info.Jobs) != 1 || info.Jobs[0].ID != "job-a" {
		t.Fatalf("after job-b left and job-a's calls ended: %+v", info)
	}
	if f := l.Client().HKeys(ctx, LimitKey(name, "state")).Val(); strings.Contains(strings.Join(f, " "), "job-b") {
		t.Fatalf("state fields %v: job-b left its counts behind", f)
	}
	if st := a.Status(); len(st) != 1 || st[0].Name != name || st[0].Weight != 2 || st[0].Config.Parallelism != 10 || st[0].Binds != "" {
		t.Fatalf("status %+v: want the limit, not binding", st)
	}
}

// TestLimitHoldsCapAndRateAcrossJobs: two jobs of 16 workers each never have more than the
// limit's 6 calls in flight between them nor more than rate + burst calls in any second,
// and with the rate binding each gets about half the calls.
func TestLimitHoldsCapAndRateAcrossJobs(t *testing.T) {
	l, name := namedLimit(t, LimitSet{Rate: ptr(100.0), Burst: ptr(5), Parallelism: ptr(6)})
	calls := &gateCalls{}
	// Mostly fast calls, with a slow one now and then: the rate binds, and the cap is met.
	slow := func(n int64) time.Duration {
		if n%7 == 0 {
			return 120 * time.Millisecond
		}
		return 15 * time.Millisecond
	}
	var adapters []engine.Adapter
	var gates []*Gate
	for j := range 2 {
		var n atomic.Int64
		inner := engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) {
			return calls.adapter(j, slow(n.Add(1)), nil).Do(ctx, it)
		})
		g := namedGate(t, l, inner, fmt.Sprintf("job-%d", j), GateOptions{}, LimitUse{Name: name})
		gates = append(gates, g)
		adapters = append(adapters, g.Adapter())
	}
	_, start := namedEngines(t, adapters, 1000, 16, 2500*time.Millisecond, nil)
	starts := calls.snapshot()
	most := 0
	for _, s := range starts {
		most = max(most, s.conc)
	}
	if most > 6 || most < 5 {
		t.Fatalf("at most %d calls in flight across the jobs: want the limit's 6 reached, never passed", most)
	}
	// As in TestGateHoldsTheGlobalRate: 20 ms of the window for the delivery jitter.
	if n := busiestWindow(starts, time.Second-20*time.Millisecond); n > 105 || n < 90 {
		t.Fatalf("%d calls in the busiest second: want close to the rate, never above rate + burst = 105", n)
	}
	n := shares(starts, start.Add(300*time.Millisecond), starts[len(starts)-1].at, 2)
	total := n[0] + n[1]
	for j := range 2 {
		if share := float64(n[j]) / float64(total); share < 0.4 || share > 0.6 {
			t.Fatalf("calls per job %v: job %d got %.0f%%, want 40–60%%", n, j, 100*share)
		}
	}
	// Waiting calls are woken by a freed slot or take turns at tokens: they do not poll. About 3
	// a call is usual here; a poller every 25 ms would make over 10; 5 leaves room for a loaded
	// machine, where wake-ups arrive late.
	trips := gates[0].trips.Load() + gates[1].trips.Load()
	if perCall := float64(trips) / float64(len(starts)); perCall > 5 {
		t.Fatalf("%d acquisitions for %d calls: want few round trips a call, not polling", trips, len(starts))
	}
	t.Logf("at most %d in flight, calls per job %v, %.2f acquisitions a call", most, n, float64(trips)/float64(len(starts)))
}

// TestLimitFairShares: two jobs that both want more than the limit share it by their
// weights (within 20%) whether the parallelism or the rate binds; a job that wants little
// leaves the rest to the other (the shares are work-conserving).
func TestLimitFairShares(t *testing.T) {
	cases := []struct {
		name    string
		set     LimitSet
		d       time.Duration
		weights [2]float64
		par     [2]int
		want    float64 // job 0's share of the calls
		within  float64 // relative
	}{
		{"parallelism equal", LimitSet{Parallelism: ptr(6)}, 30 * time.Millisecond, [2]float64{1, 1}, [2]int{16, 4}, 0.5, 0.2},
		{"parallelism 2:1", LimitSet{Parallelism: ptr(6)}, 30 * time.Millisecond, [2]float64{2, 1}, [2]int{16, 16}, 2.0 / 3, 0.2},
		{"rate 2:1", LimitSet{Rate: ptr(120.0), Burst: ptr(2)}, 5 * time.Millisecond, [2]float64{2, 1}, [2]int{16, 16}, 2.0 / 3, 0.2},
		// One worker: it has what it asks for, one slot of 6, but for the moments the other
		// job's waiting calls take the slot it just gave back, before its next call asks
		// (it then has the next slot freed). The rest of the limit goes to the other job.
		{"a job that wants little", LimitSet{Parallelism: ptr(6)}, 30 * time.Millisecond, [2]float64{1, 1}, [2]int{1, 16}, 1.0 / 6, 0.4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, name := namedLimit(t, c.set)
			calls := &gateCalls{}
			var es []*engine.Engine
			var wg sync.WaitGroup
			for j := range 2 {
				g := namedGate(t, l, calls.adapter(j, c.d, nil), fmt.Sprintf("job-%d", j), GateOptions{}, LimitUse{Name: name, Weight: c.weights[j]})
				var lines strings.Builder
				for k := range 2000 {
					fmt.Fprintf(&lines, "%d\n", k)
				}
				e, err := engine.New(engine.Config{
					Settings: engine.Settings{Parallelism: c.par[j], Burst: 1}, Timeout: 10 * time.Second, Adapter: g.Adapter(),
					Source: engine.NewLineReader(strings.NewReader(lines.String()), false), Total: 2000, Results: io.Discard,
				})
				if err != nil {
					t.Fatal(err)
				}
				es = append(es, e)
			}
			start := time.Now()
			for _, e := range es {
				wg.Go(func() {
					if s, err := e.Run(context.Background()); err != nil || s.Failed > 0 {
						t.Errorf("run: %+v, %v", s, err)
					}
				})
			}
			time.Sleep(1500 * time.Millisecond)
			for _, e := range es {
				e.Drain("test")
			}
			end := time.Now()
			wg.Wait()
			starts := calls.snapshot()
			n := shares(starts, start.Add(300*time.Millisecond), end, 2)
			got := float64(n[0]) / float64(n[0]+n[1])
			if got < c.want*(1-c.within) || got > c.want*(1+c.within) {
				t.Fatalf("calls per job %v: job 0 got %.1f%%, want %.1f%% ± %.0f%%", n, 100*got, 100*c.want, 100*c.within)
			}
			if c.set.Parallelism != nil {
				// Work-conserving: the limit is used whole, whatever the shares.
				most := 0
				for _, s := range starts {
					most = max(most, s.conc)
				}
				window := end.Sub(start.Add(300 * time.Millisecond))
				capacity := float64(window) / float64(c.d) * 6
				if most > 6 || float64(n[0]+n[1]) < 0.8*capacity {
					t.Fatalf("at most %d in flight, %d calls of %.0f that 6 slots allow: want the limit used (≥ 80%%), never passed", most, n[0]+n[1], capacity)
				}
			}
			t.Logf("calls per job %v: %.1f%% (want %.1f%%)", n, 100*got, 100*c.want)
		})
	}
}

// TestLimitSetReachesJobsAtOnce: a rate raised with Set while calls wait for tokens is
// applied at once (their waits are cut short by the announcement), and each job hears of it.
func TestLimitSetReachesJobsAtOnce(t *testing.T) {
	l, name := namedLimit(t, LimitSet{Rate: ptr(2.0), Burst: ptr(2)})
	calls := &gateCalls{}
	heard := make(chan string, 4)
	var adapters []engine.Adapter
	for j := range 2 {
		g := namedGate(t, l, calls.adapter(j, time.Millisecond, nil), fmt.Sprintf("job-%d", j), GateOptions{
			OnChange: func(n, by string, c []LimitChange) { heard <- fmt.Sprintf("%v %s %v", n == name, by, c) },
		}, LimitUse{Name: name})
		adapters = append(adapters, g.Adapter())
	}
	var raised time.Time
	namedEngines(t, adapters, 30, 8, 0, func() {
		time.Sleep(700 * time.Millisecond)
		raised = time.Now()
		if _, _, err := l.Set(context.Background(), name, "ops", LimitSet{Rate: ptr(200.0)}); err != nil {
			t.Error(err)
		}
	})
	before, after := 0, 0
	for _, s := range calls.snapshot() {
		switch d := s.at.Sub(raised); {
		case d < 0:
			before++
		case d < time.Second:
			after++
		}
	}
	// A second at the old rate allows 2 calls, so 30 in the second after the raise show it
	// applied at once; the second (not less) leaves room for a loaded machine's scheduling.
	if before > 4 || after < 30 {
		t.Fatalf("%d calls in 700 ms at 2/s burst 2, %d in the second after the raise to 200/s: want ≤ 4, then the raise at once (≥ 30)", before, after)
	}
	t.Logf("%d calls before the raise, %d in the second after it", before, after)
	for range 2 {
		select {
		case h := <-heard:
			if h != "true ops [rate 2/s → 200/s]" {
				t.Fatalf("a job heard %q", h)
			}
		case <-time.After(time.Second):
			t.Fatal("a job did not hear of the change")
		}
	}
}

// TestLimitRetryAfterHoldsEveryJob: one job's 429 with Retry-After holds the other job's
// calls too, for that long.
func TestLimitRetryAfterHoldsEveryJob(t *testing.T) {
	l, name := namedLimit(t, LimitSet{Parallelism: ptr(8)})
	calls := &gateCalls{}
	const hold = 600 * time.Millisecond
	var told atomic.Int64
	answer := func(n int64) (engine.Outcome, bool) {
		if n == 15 {
			told.Store(time.Now().UnixNano())
			return engine.Outcome{Verdict: engine.Retry, Status: 429, Message: "429 Too Many Requests", RetryAfter: hold}, true
		}
		return engine.Outcome{}, false
	}
	a := namedGate(t, l, calls.adapter(0, 20*time.Millisecond, answer), "job-a", GateOptions{}, LimitUse{Name: name})
	b := namedGate(t, l, calls.adapter(1, 20*time.Millisecond, nil), "job-b", GateOptions{}, LimitUse{Name: name})
	namedEngines(t, []engine.Adapter{a.Adapter(), b.Adapter()}, 100, 8, 0, nil)
	checkHeld(t, calls, told.Load(), hold, 2, "job")
}

// TestLimitDeadJobsSlotsComeBack: a job whose calls hang keeps their slots by renewing its
// leases; once it dies (its Redis connection gone) its slots come back within the lease.
func TestLimitDeadJobsSlotsComeBack(t *testing.T) {
	const lease = 400 * time.Millisecond
	l, name := namedLimit(t, LimitSet{Parallelism: ptr(2), Lease: ptr(lease)})
	dyingConn, err := ConnectLimits(context.Background(), limitsRedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	slotsOfTheDead(t, "job", lease, 150*time.Millisecond,
		func(a engine.Adapter) *Gate {
			return namedGate(t, dyingConn, a, "dying", GateOptions{Outage: NewOutage(func(error) {})}, LimitUse{Name: name})
		},
		func(a engine.Adapter) *Gate { return namedGate(t, l, a, "other", GateOptions{}, LimitUse{Name: name}) },
		func(other *Gate) {
			if st := other.Status(); st[0].Binds != "parallelism" {
				t.Fatalf("status %+v: want the limit's parallelism binding", st)
			}
			if b := other.Binding(); b != "shared limit "+name+": parallelism 2" {
				t.Fatalf("binding %q", b)
			}
		},
		func() { _ = dyingConn.Close() }) // the job dies: no renewal, no release
}

// TestLimitWaitsOutARedisOutageAndARemoval: with Redis cut, calls return engine.Later
// without reaching the adapter and the outage is told once; with the limit removed they wait
// too, never going on without it; when each is back, calls go on and nothing failed.
func TestLimitWaitsOutARedisOutageAndARemoval(t *testing.T) {
	t.Parallel()
	proxy, via := newLimitsProxy(t)
	// A short lease: a lease granted to a request that sat in the cut connection frees itself
	// at its end, which the last check waits for.
	direct, name := namedLimit(t, LimitSet{Rate: ptr(500.0), Burst: ptr(10), Parallelism: ptr(8), Lease: ptr(2 * time.Second)})
	ctx := context.Background()
	l, err := ConnectLimits(ctx, via)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var reports []error
	reported := func() []error { mu.Lock(); defer mu.Unlock(); return append([]error(nil), reports...) }
	var inner atomic.Int64
	g := namedGate(t, l, engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		inner.Add(1)
		time.Sleep(2 * time.Millisecond)
		return engine.Outcome{Verdict: engine.OK}, nil
	}), "job", GateOptions{OutageWait: 50 * time.Millisecond, Outage: NewOutage(func(err error) {
		mu.Lock()
		reports = append(reports, err)
		mu.Unlock()
	})}, LimitUse{Name: name})
	if _, err := g.Do(ctx, engine.Item{}); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	for range 2 {
		if _, err := g.Do(ctx, engine.Item{}); err == nil {
			t.Fatal("a call went through with redis cut")
		} else if _, ok := engine.IsLater(err); !ok {
			t.Fatalf("a call with redis cut: %v, want engine.Later", err)
		}
	}
	if r := reported(); len(r) != 1 || !errors.Is(r[0], ErrRedis) || inner.Load() != 1 {
		t.Fatalf("reports %v, inner calls %d: want one ErrRedis report and no call", r, inner.Load())
	}
	if b := g.Binding(); b != "shared limit "+name+": unavailable" {
		t.Fatalf("binding during the outage: %q", b)
	}
	proxy.Restore(t)
	waitCalls(t, g, 3*time.Second)
	waitReports(t, g, reported, 2, 3*time.Second)
	if r := reported(); r[1] != nil {
		t.Fatalf("reports %v: want the outage, then its end", r)
	}

	// Removed under the job: calls wait and say so; set again, they go on.
	if err := direct.Remove(ctx, name, "ops", true); err != nil {
		t.Fatal(err)
	}
	before := inner.Load()
	for range 3 {
		if _, err := g.Do(ctx, engine.Item{}); err == nil {
			t.Fatal("a call went through a removed limit")
		}
	}
	if r := reported(); len(r) != 3 || !errors.Is(r[2], ErrNoLimit) || inner.Load() != before {
		t.Fatalf("reports %v: want the removal told once, no call", r)
	} else if ne, ok := errors.AsType[*NoLimitError](r[2]); !ok || ne.Name != name {
		t.Fatalf("the removal reported as %#v, want a *NoLimitError naming %s", r[2], name)
	}
	if _, _, err := direct.Set(ctx, name, "ops", LimitSet{Parallelism: ptr(4)}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, g, 3*time.Second)
	waitReports(t, g, reported, 4, 3*time.Second)

	runAcrossOutage(t, g, proxy)
	// The leases of calls that ended during the outage are given back once Redis is back. An
	// acquisition whose request sat in the cut connection can reach Redis after its release was
	// sent: that lease frees itself at its expiry (10 s here), which bounds what an outage holds.
	deadline := time.Now().Add(11 * time.Second)
	for {
		info, err := direct.Get(ctx, name)
		if err == nil && info.InFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%+v, %v: want every lease released", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCalls calls g until a call goes through, within d.
func waitCalls(t *testing.T, g *Gate, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := g.Do(context.Background(), engine.Item{})
		if err == nil {
			return
		}
		if _, ok := engine.IsLater(err); !ok || time.Now().After(deadline) {
			t.Fatalf("a call after the limit came back: %v", err)
		}
	}
}

// waitReports waits until there are n reports, making calls through g: an end is told once
// calls went through for a second.
func waitReports(t *testing.T, g *Gate, reported func() []error, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for len(reported()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("reports %v: want %d", reported(), n)
		}
		if _, err := g.Do(context.Background(), engine.Item{}); err != nil {
			t.Fatalf("a call once the limit was back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLimitTokensPerMinute: a tpm counts each call's tokens (the adapter's estimate): a
// second's tokens at once, then the rate of tokens; a call of more than a minute's tokens
// fails at once; a job without an estimate is not held by the tpm.
func TestLimitTokensPerMinute(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{TPM: ptr(6000.0)}) // 100 tokens a second, a burst of 100
	ctx := context.Background()
	ok := engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		return engine.Outcome{Verdict: engine.OK}, nil
	})
	g := namedGate(t, l, ok, "llm", GateOptions{Tokens: func(items []engine.Item) int { return len(items[0].Line) }}, LimitUse{Name: name})
	if !g.CountsTokens() {
		t.Fatal("a gate with a Tokens option does not count tokens")
	}
	big := engine.Item{Line: strings.Repeat("x", 45)}
	var second time.Time
	for k := range 2 {
		second = time.Now()
		if _, err := g.Do(ctx, big); err != nil {
			t.Fatalf("call %d of 45 tokens within the burst of 100: %v", k, err)
		}
	}
	// The third is due in 350 ms: more than a call waits in the gate.
	if _, err := g.Do(ctx, big); err == nil {
		t.Fatal("a third call of 45 tokens got through a burst of 100")
	} else if _, ok := engine.IsLater(err); !ok {
		t.Fatalf("a call over the tpm: %v, want engine.Later", err)
	}
	if st := g.Status(); st[0].Binds != "tpm" {
		t.Fatalf("status %+v: want the tpm binding", st)
	}
	if _, err := g.Do(ctx, engine.Item{Line: strings.Repeat("x", 6001)}); !engine.IsPermanent(err) {
		t.Fatalf("a call of 6001 tokens under 6000 a minute: %v, want a permanent error", err)
	}
	// Tokens come back at 100 a second: the 35 missing 350 ms after the second call.
	for {
		_, err := g.Do(ctx, big)
		if err == nil {
			break
		}
		if _, ok := engine.IsLater(err); !ok || time.Since(second) > 2*time.Second {
			t.Fatalf("a call of 45 tokens: %v", err)
		}
	}
	if d := time.Since(second); d < 300*time.Millisecond || d > 700*time.Millisecond {
		t.Fatalf("a third call of 45 tokens went through %v after the second: want about 350 ms", d)
	}
	plain := namedGate(t, l, ok, "http", GateOptions{}, LimitUse{Name: name})
	if plain.CountsTokens() {
		t.Fatal("a gate over a plain adapter counts tokens")
	}
	for range 5 {
		if _, err := plain.Do(ctx, big); err != nil {
			t.Fatalf("a job without token estimates held by the tpm: %v", err)
		}
	}
}

// TestLimitSeveralLimits: a call takes from every limit it uses, and a call refused by one
// takes nothing from another: its rate token is still there when the slot frees.
func TestLimitSeveralLimits(t *testing.T) {
	t.Parallel()
	l, rated := namedLimit(t, LimitSet{Rate: ptr(1.0), Burst: ptr(1)})
	_, capped := namedLimitAt(t, limitsRedisURL(t), LimitSet{Parallelism: ptr(1)})
	ctx := context.Background()
	release := make(chan struct{})
	entered := make(chan struct{})
	holder := namedGate(t, l, engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		close(entered)
		<-release
		return engine.Outcome{Verdict: engine.OK}, nil
	}), "holder", GateOptions{}, LimitUse{Name: capped})
	done := make(chan error)
	go func() { _, err := holder.Do(ctx, engine.Item{}); done <- err }()
	<-entered

	var calls atomic.Int64
	both := namedGate(t, l, engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		calls.Add(1)
		return engine.Outcome{Verdict: engine.OK}, nil
	}), "both", GateOptions{}, LimitUse{Name: rated}, LimitUse{Name: capped})
	for range 3 {
		if _, err := both.Do(ctx, engine.Item{}); err == nil {
			t.Fatal("a call got through a limit whose one slot is taken")
		}
	}
	if st := both.Status(); st[1].Binds != "parallelism" || st[0].Binds != "" {
		t.Fatalf("status %+v: want the second limit binding, not the first", st)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The rate's one token was never taken by the refused calls.
	if _, err := both.Do(ctx, engine.Item{}); err != nil || calls.Load() != 1 {
		t.Fatalf("a call once the slot is free: %v (%d calls): want it through on the rate's unspent token", err, calls.Load())
	}
	if _, err := both.Do(ctx, engine.Item{}); err == nil {
		t.Fatal("a second call at once got through a rate of 1/s burst 1")
	}
}

// TestLimitBatches: over a batching adapter a chunk is one call, holding one lease.
func TestLimitBatches(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{Parallelism: ptr(4)})
	ctx := context.Background()
	var leases atomic.Int64
	inner := &gateBatcher{fn: func([]engine.Item) {
		leases.Store(l.Client().ZCard(ctx, LimitKey(name, "leases")).Val())
	}}
	g := namedGate(t, l, inner, "batch", GateOptions{}, LimitUse{Name: name})
	b, ok := g.Adapter().(engine.Batcher)
	if !ok {
		t.Fatal("the gate over a batcher does not batch")
	}
	if _, ok := any(g).(engine.Batcher); ok {
		t.Fatal("the gate itself batches: the engine would batch over any adapter")
	}
	if outs, err := b.DoBatch(ctx, make([]engine.Item, 5)); err != nil || len(outs) != 5 || leases.Load() != 1 {
		t.Fatalf("a batch of 5: %d outcomes, %v, %d leases during it: want 1", len(outs), err, leases.Load())
	}
	// The lease may wait keepIdle for the job's next call, then goes back.
	var info LimitInfo
	if !waitUntil(time.Second, func() bool { info, _ = l.Get(ctx, name); return info.InFlight == 0 }) {
		t.Fatalf("%d leases a second after the batch", info.InFlight)
	}
}

// TestLimitWaitIsNotLatency: eight workers under a shared rate of 5/s call a target that
// answers in 2 ms. While they wait, the engine shows them waiting for the limit, not in flight
// (as `limit ls` counts them: its IN FLIGHT is the calls holding a lease, its WAITING those
// refused by the limit); the rows' latency_ms is the target's, their wait for the limit
// wait_ms.
func TestLimitWaitIsNotLatency(t *testing.T) {
	t.Parallel()
	l, name := namedLimit(t, LimitSet{Rate: ptr(5.0)})
	fast := engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		time.Sleep(2 * time.Millisecond)
		return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
	})
	g := namedGate(t, l, fast, "job-w", GateOptions{}, LimitUse{Name: name})
	var out bytes.Buffer
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 8, Burst: 1}, Retries: 3, Timeout: 10 * time.Second,
		Adapter: g.Adapter(), Source: engine.NewLineReader(strings.NewReader(strings.Repeat("x\n", 16)), false),
		Total: 16, Results: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := e.Run(context.Background()); done <- err }()
	time.Sleep(1500 * time.Millisecond) // a heartbeat has told the limit of the waiting calls
	s := e.Snapshot()
	info, err := l.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if s.ByState[engine.WorkerWaiting] < 5 || s.WaitingFor["limit "+name] < 5 || s.InFlight > 2 || s.ByState[engine.WorkerCalling] > 2 {
		t.Errorf("snapshot: by state %v, waiting for %v, %d in flight; want most workers waiting for limit %s, at most 2 in flight",
			s.ByState, s.WaitingFor, s.InFlight, name)
	}
	if info.InFlight > 2 || info.Waiting < 5 || len(info.Jobs) != 1 || info.Jobs[0].Waiting != info.Waiting {
		t.Errorf("limit info %+v: want at most 2 in flight and the job's waiting calls (5 or more)", info)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waited := 0
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r struct {
			OK        bool    `json:"ok"`
			LatencyMS float64 `json:"latency_ms"`
			WaitMS    float64 `json:"wait_ms"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if !r.OK || r.LatencyMS > 100 {
			t.Errorf("row %s: want ok, latency_ms the target's 2 ms (under 100), not the wait for the limit", line)
		}
		if r.WaitMS >= 100 {
			waited++
		}
	}
	if waited < 10 {
		t.Errorf("%d of 16 rows waited 100 ms or more for a rate of 5/s over 8 workers; want most:\n%s", waited, out.String())
	}
}
