package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/cluster"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/tui"
)

// The http adapter's busiest hosts reach the screen as its own rows, field for field, and
// the number of hosts asked for reaches the adapter.
func TestHostRowsCarryTheAdaptersLoads(t *testing.T) {
	asked := 0
	rows := hostRows(func(n int) []adapters.HostLoad {
		asked = n
		return []adapters.HostLoad{{Host: "shop.example:443", InFlight: 2, Waiting: 5, Calls: 120, TooMany: 3},
			{Host: "blog.example:443", InFlight: 1, Calls: 80}}
	})(6)
	want := tui.Hosts{Rows: []tui.HostLoad{{Host: "shop.example:443", InFlight: 2, Waiting: 5, Calls: 120, TooMany: 3},
		{Host: "blog.example:443", InFlight: 1, Calls: 80}}}
	if asked != 6 || rows.Job != nil || !slices.Equal(rows.Rows, want.Rows) {
		t.Fatalf("asked %d, got %+v; want 6 and %+v", asked, rows, want)
	}
	if got := hostRows(func(int) []adapters.HostLoad { return nil })(6); got.Job != nil || len(got.Rows) != 0 {
		t.Fatalf("no hosts gave %+v", got)
	}
}

// The headless line of a job across hosts says the whole job first, then its hosts.
func TestClusterLinesSayTheJobThenItsHosts(t *testing.T) {
	var mu sync.Mutex
	var said []string
	stop := clusterLines(func(s string) { mu.Lock(); said = append(said, s); mu.Unlock() }, func(n int) tui.Hosts {
		if n != 8 {
			t.Errorf("asked for %d hosts, want 8", n)
		}
		return tui.Hosts{Job: &tui.JobLoad{Hosts: 2, InFlight: 5, Cap: 64, PerSecond: 49.6, Rate: 100, Over: 5 * time.Second},
			Rows: []tui.HostLoad{{Host: "box-a", InFlight: 3}, {Host: "box-b", InFlight: 2}}}
	}, 5*time.Millisecond)
	if !until(2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(said) > 0 }) {
		t.Fatal("no cluster line")
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if want := "cluster: all 2 hosts (cap 64, 50 calls/s of 100/s · last 5s): 5 in flight · box-a 3 · box-b 2"; said[0] != want {
		t.Fatalf("said %q, want %q", said[0], want)
	}
}

// clusterHosts fills the screen's panel of a job across hosts from the job's heartbeats and
// its global gate (a real Redis): the job (hosts, calls in flight across hosts against the
// cap, calls/s against the rate) in fields of its own, then the hosts by name.
func TestClusterHostsFillTheJobAndItsHosts(t *testing.T) {
	url := os.Getenv("THROTTLE_TEST_REDIS")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("THROTTLE_TEST_REDIS is not set (CI=true): a test of a job across hosts needs a real Redis")
		}
		t.Skip("THROTTLE_TEST_REDIS is not set: set it (e.g. redis://127.0.0.1:6379/0) to test jobs across hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	name := fmt.Sprintf("test-hosts-%d-%d", os.Getpid(), time.Now().UnixNano())
	set := engine.Settings{Parallelism: 64, Rate: 100, Burst: 1}
	var jobs []*cluster.Job
	for _, host := range []string{"box-a", "box-b"} {
		j, err := cluster.Connect(ctx, url, name, host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = j.Close() })
		jobs = append(jobs, j)
	}
	a := jobs[0]
	if err := a.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Reset(context.Background()) })
	if err := a.InitSettings(ctx, set, "cli"); err != nil {
		t.Fatal(err)
	}

	// Two hosts beat: box-a with 3 calls in flight, box-b with 2; box-a's calls grow.
	var callsA atomic.Int64
	callsA.Store(900)
	beats := []func() engine.Snapshot{
		func() engine.Snapshot { return engine.Snapshot{InFlight: 3, Calls: callsA.Load()} },
		func() engine.Snapshot { return engine.Snapshot{InFlight: 2, Calls: 700} },
	}
	bctx, stopBeats := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() { j.Heartbeat(bctx, 20*time.Millisecond, beats[i]) })
	}
	defer wg.Wait()
	defer stopBeats()

	// One call in flight through the job's gate, held until the test ends.
	release := make(chan struct{})
	gate, err := a.Gate(ctx, engine.AdapterFunc(func(ctx context.Context, _ engine.Item) (engine.Outcome, error) {
		<-release
		return engine.Outcome{Verdict: engine.OK}, nil
	}), cluster.GateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	called := make(chan struct{})
	go func() {
		defer close(called)
		_, _ = gate.Do(ctx, engine.Item{Line: "x"})
	}()
	defer func() { close(release); <-called }()

	e, err := engine.New(engine.Config{Settings: set, Adapter: engine.AdapterFunc(func(context.Context, engine.Item) (engine.Outcome, error) {
		return engine.Outcome{Verdict: engine.OK}, nil
	}), Source: engine.NewLineReader(strings.NewReader(""), false), Results: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	// The coordinator's collector has 300 of the job's 1,200 rows after 10 s.
	prog := &jobProgress{start: time.Now().Add(-10 * time.Second)}
	prog.store(cluster.CollectStats{Rows: 300}, 1200)
	hosts := clusterHosts(a, e, prog.load)
	var got tui.Hosts
	if !until(5*time.Second, func() bool {
		got = hosts(6)
		return got.Job != nil && got.Job.Hosts == 2 && got.Job.InFlight == 1
	}) {
		t.Fatalf("the panel never showed 2 hosts and 1 call in flight: %+v", got)
	}
	if j := got.Job; j.Cap != 64 || j.Rate != 100 {
		t.Errorf("job %+v: want cap 64 and rate 100", *j)
	}
	if j := got.Job; j.Rows != 300 || j.Total != 1200 || j.ETA < 30*time.Second || j.ETA > 40*time.Second {
		t.Errorf("job %+v: want 300 of 1,200 rows, the rest in 30 s at 30 rows/s", *j)
	}
	if c := got.Job.Caption(); !strings.Contains(c, "300/1,200 rows 25.0% ETA 3") {
		t.Errorf("caption %q does not give the job's progress", c)
	}
	wantRows := []tui.HostLoad{{Host: "box-a", InFlight: 3, Calls: callsA.Load()}, {Host: "box-b", InFlight: 2, Calls: 700}}
	if !slices.Equal(got.Rows, wantRows) {
		t.Errorf("rows %+v, want %+v", got.Rows, wantRows)
	}
	if two := hosts(2); len(two.Rows) != 1 || two.Rows[0].Host != "box-a" {
		t.Errorf("asked for 2 places, the job takes one: rows %+v, want box-a alone", two.Rows)
	}

	// Calls/s across hosts: the growth of the calls since the look that opens the window, over
	// the time between (at least a second).
	callsA.Add(500)
	if !until(5*time.Second, func() bool {
		got = hosts(6)
		return got.Job != nil && got.Job.PerSecond > 0
	}) {
		t.Fatalf("calls grew by 500 and the job's calls/s stayed 0: %+v", got.Job)
	}
}

// until polls cond every 10 ms for up to d and reports whether it came true.
func until(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}
