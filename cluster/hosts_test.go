package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// TestHeartbeatListsTheHosts: hosts that beat are listed by name with their counts; a host
// that leaves is gone at once; a host that dies stays listed, not alive.
func TestHeartbeatListsTheHosts(t *testing.T) {
	t.Parallel()
	jobs := limitsJobs(t, "", "web-2", "web-1", "web-3")
	const every = 100 * time.Millisecond
	beat := func(j *Job, s engine.Snapshot) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { j.Heartbeat(ctx, every, func() engine.Snapshot { return s }); close(done) }()
		return func() { cancel(); <-done }
	}
	stop2 := beat(jobs[0], engine.Snapshot{InFlight: 4, Calls: 120, OK: 100, Failed: 3})
	defer stop2()
	stop1 := beat(jobs[1], engine.Snapshot{InFlight: 1, Calls: 7, OK: 7})
	stop3 := beat(jobs[2], engine.Snapshot{Calls: 1})
	ctx := context.Background()

	var hosts []HostStatus
	deadline := time.Now().Add(2 * time.Second)
	for len(hosts) < 3 && time.Now().Before(deadline) {
		var err error
		if hosts, err = jobs[0].Hosts(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	names := func(hs []HostStatus) string {
		var n []string
		for _, h := range hs {
			if h.Alive {
				n = append(n, h.Host)
			} else {
				n = append(n, h.Host+"(dead)")
			}
		}
		return strings.Join(n, ",")
	}
	if got := names(hosts); got != "web-1,web-2,web-3" {
		t.Fatalf("hosts %s: want web-1,web-2,web-3, sorted and alive", got)
	}
	if h := hosts[1]; h.InFlight != 4 || h.Calls != 120 || h.OK != 100 || h.Failed != 3 || time.Since(h.At) > 2*time.Second {
		t.Fatalf("web-2: %+v: want its snapshot's counts, beaten just now", h)
	}

	stop1() // web-1 leaves
	jobs[2].Close()
	stop3() // web-3 dies: its last beat stays
	time.Sleep(3*every + 150*time.Millisecond)
	hosts, err := jobs[0].Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(hosts); got != "web-2,web-3(dead)" {
		t.Fatalf("hosts %s: want web-2 alive, web-1 gone, web-3 dead", got)
	}
}

// TestCollectorMark: a job has no collector until its coordinator beats; while it beats the
// hosts see it by name; once the beats stop the mark goes after collectorTTL, and a job marked
// collected needs none.
func TestCollectorMark(t *testing.T) {
	j := queueJob(t)
	ctx := context.Background()
	if host, done, err := j.Collector(ctx); err != nil || host != "" || done || !j.Uncollected(ctx) {
		t.Fatalf("before any beat: %q, %v, %v, uncollected %v; want nobody, not done", host, done, err, j.Uncollected(ctx))
	}
	bctx, stop := context.WithCancel(ctx)
	beat := make(chan struct{})
	go func() { defer close(beat); j.CollectorBeat(bctx) }()
	if !waitUntil(3*time.Second, func() bool { h, _, _ := j.Collector(ctx); return h == j.Host() }) {
		t.Fatal("the collector's beat never showed its host")
	}
	if j.Uncollected(ctx) {
		t.Fatal("uncollected while a collector beats")
	}
	stop()
	<-beat
	if err := j.Collected(ctx); err != nil {
		t.Fatal(err)
	}
	if _, done, err := j.Collector(ctx); err != nil || !done || j.Uncollected(ctx) {
		t.Fatalf("after Collected: done %v, %v, uncollected %v; want done", done, err, j.Uncollected(ctx))
	}
}

// waitUntil polls ok every 20 ms until it holds or d passes.
func waitUntil(d time.Duration, ok func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return ok()
}

// TestHeartbeatSaysItsRate: a host beats its own calls per second, each count read with its
// time, so that the job's rate is the sum of its hosts' whatever their beats' phases.
func TestHeartbeatSaysItsRate(t *testing.T) {
	t.Parallel()
	j := limitsJobs(t, "", "web-1")[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		j.Heartbeat(ctx, 100*time.Millisecond, func() engine.Snapshot {
			return engine.Snapshot{Calls: int64(200 * time.Since(start).Seconds())} // 200 calls/s
		})
		close(done)
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(1500 * time.Millisecond)
	hosts, err := j.Hosts(context.Background())
	if err != nil || len(hosts) != 1 {
		t.Fatalf("hosts %+v, %v", hosts, err)
	}
	if h := hosts[0]; h.PerSecond < 196 || h.PerSecond > 204 || h.Over < time.Second {
		t.Fatalf("web-1 beat %.1f calls/s over %v: want 200 over at least 1 s", h.PerSecond, h.Over)
	}
}
