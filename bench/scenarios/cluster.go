package main

// ---- cluster: what --redis costs a call, and how a job scales from 1 to 3 hosts ----

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/throttle-dev/throttle/cluster"
)

// clusterScenario measures, with the real binary and a Redis from THROTTLE_TEST_REDIS, each
// figure the median of o.n runs:
//   - the coordination's cost: `run http` of 20,000 items against a loopback server that
//     answers at once, on one host, without and with --redis (calls/s, and the difference as
//     microseconds per call);
//   - a job's own rate under --redis: 3,000 items at --rate 400 (burst 1), parallelism 8, on
//     one host, as the server sees them arrive (the mean rate and the busiest second);
//   - scaling: 3,000 items against a server that takes 50 ms, each host holding at most 16
//     calls (--host-parallelism 16) under a global cap that does not bind, on 1 and on 3 hosts,
//     every host's process started and in the job before the clock starts (see startedHosts):
//     what is measured is the work across hosts, not how soon a process joins.
func clusterScenario(o *options) ([]*figure, error) {
	url := os.Getenv("THROTTLE_TEST_REDIS")
	if url == "" {
		return nil, fmt.Errorf("set THROTTLE_TEST_REDIS (e.g. redis://127.0.0.1:6379/0) to measure jobs across hosts")
	}
	fast, stopFast, err := benchServer(0)
	if err != nil {
		return nil, err
	}
	defer stopFast()
	slow, stopSlow, err := benchServer(50 * time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer stopSlow()
	const fastItems, slowItems = 20000, 3000
	fastIn, err := writeIDs(o, fastItems)
	if err != nil {
		return nil, err
	}
	slowIn, err := writeIDs(o, slowItems)
	if err != nil {
		return nil, err
	}
	base := func(in, srv string) []string {
		return []string{"run", "http", "--input", in, "--out", o.out, "--url", srv + "/{item}", "--headless"}
	}
	job := func(i int) string { return fmt.Sprintf("bench-%d-%d", os.Getpid(), i) }
	plain := append(base(fastIn, fast), "--parallelism", "32")
	shared := func(i int) []string {
		return append(slices.Clone(plain), "--redis", url, "--job", job(i))
	}
	scaled := func(i int) []string {
		return append(base(slowIn, slow), "--parallelism", "1000", "--host-parallelism", "16", "--redis", url, "--job", job(i))
	}
	// The coordinator's control socket, in a directory of mode 0700 as the socket wants.
	ctlDir, err := os.MkdirTemp("", "throttle-bench-ctl-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(ctlDir) }() // a temporary directory
	sock := filepath.Join(ctlDir, "coordinator.sock")
	off := &figure{name: "20,000 calls, one host: calls/s without --redis", unit: "calls/s", goal: "—", command: o.bin + " " + join(plain), worst: slices.Min[[]float64]}
	on := &figure{name: "same, with --redis (one host)", unit: "calls/s", goal: "—", command: o.bin + " " + join(shared(0)), worst: slices.Min[[]float64]}
	cost := &figure{name: "redis coordination per call", unit: "µs", goal: "—", command: "(1/with − 1/without)", decimals: 1}
	kept := &figure{name: "with --redis over without, same run", unit: "%", goal: "≥ 50%", command: "(with / without)", worst: slices.Min[[]float64]}
	one := &figure{name: "3,000 calls of 50 ms, 16 per host: 1 host", unit: "calls/s", goal: "≈ 320", command: o.bin + " " + join(scaled(0)) + " (held by --rate 1/h, then ctl set rate 0)", worst: slices.Min[[]float64]}
	three := &figure{name: "same, 3 hosts (2 join with throttle join)", unit: "calls/s", goal: "≈ 960", command: "+ 2 × " + o.bin + " join --redis URL --job NAME, all in the job before the clock", worst: slices.Min[[]float64]}
	linear := &figure{name: "1 → 3 hosts: 3-host calls/s over 3 × 1-host", unit: "×", goal: "≥ 0.85", command: "(same runs)", decimals: 2}
	// A job's own rate under --redis, held as the target sees it: the gate takes each call's
	// token of the rate in Redis, ahead of its due time, so that the round trip makes no call
	// late (burst 1 would lose the lateness).
	arr, arrAddr, stopArr, err := serveArrivals()
	if err != nil {
		return nil, err
	}
	defer stopArr() // the scenario is over
	const rateItems, rate = 3000, 400
	rated := func(i int) []string {
		return append(base(slowIn, arrAddr), "--parallelism", "8", "--rate", strconv.Itoa(rate), "--redis", url, "--job", job(i))
	}
	rateMean := &figure{name: "--redis --rate 400 (burst 1), one host: mean rate (server), (calls−1)/(last−first)", unit: "/s", goal: "≥ 388 (97%)", command: o.bin + " " + join(rated(0)), decimals: 1, worst: slices.Min[[]float64]}
	rateMost := &figure{name: "same: max calls in any 1 s window (server)", unit: "", goal: "≤ 401 (+2 loopback)", command: "(same runs)", worst: slices.Max[[]float64]}
	rateMost.notes = []string{loopbackJitter}
	figs := []*figure{off, on, cost, kept, one, three, linear, rateMean, rateMost}
	for i := range o.n {
		w0, err := timed(o.bin, plain)
		if err != nil {
			return figs, err
		}
		w1, err := timed(o.bin, shared(10*i+1))
		if err != nil {
			return figs, err
		}
		off.values = append(off.values, fastItems/w0.Seconds())
		on.values = append(on.values, fastItems/w1.Seconds())
		cost.values = append(cost.values, (w1-w0).Seconds()/fastItems*1e6)
		kept.values = append(kept.values, 100*w0.Seconds()/w1.Seconds())
		w, err := startedHosts(o.bin, append(scaled(10*i+2), "--control", sock), sock, url, job(10*i+2), 0)
		if err != nil {
			return figs, err
		}
		one.values = append(one.values, slowItems/w.Seconds())
		w3, err := startedHosts(o.bin, append(scaled(10*i+3), "--control", sock), sock, url, job(10*i+3), 2)
		if err != nil {
			return figs, err
		}
		three.values = append(three.values, slowItems/w3.Seconds())
		linear.values = append(linear.values, w.Seconds()/(3*w3.Seconds()))
		arr.take()
		if _, err := timed(o.bin, rated(10*i+4)); err != nil {
			return figs, err
		}
		at := arr.take()
		if len(at) != rateItems {
			return figs, fmt.Errorf("--redis --rate %d: the server saw %d calls, want %d", rate, len(at), rateItems)
		}
		slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
		rateMean.values = append(rateMean.values, float64(len(at)-1)/at[len(at)-1].Sub(at[0]).Seconds())
		rateMost.values = append(rateMost.values, float64(maxInWindow(at, time.Second)))
	}
	return figs, nil
}

// benchServer serves 200 after latency on 127.0.0.1 until stopped.
func benchServer(latency time.Duration) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if latency > 0 {
			time.Sleep(latency)
		}
		_, _ = w.Write([]byte(`{"ok":true}`)) // the client went away: nothing to tell it
	})}
	go func() { _ = srv.Serve(ln) }() // ErrServerClosed once closed
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// timed runs the binary to its end and returns its wall time; a failed run is an error.
func timed(bin string, args []string) (time.Duration, error) {
	r, err := runChild(bin, args, nil)
	if err != nil {
		return 0, err
	}
	if r.exit != 0 {
		return 0, fmt.Errorf("%s %s: exit status %d: %s", bin, join(args), r.exit, r.stderrTail)
	}
	return r.wall, nil
}

// startedHosts runs a coordinator and n hosts that join its job, every one of them started
// and in the job before the clock starts, and returns the time from then to the
// coordinator's end. The coordinator starts held (--rate 1/h: its first call goes, the others
// wait), the joiners join, and once every host beats the clock starts and `ctl set rate 0`
// lets the job go on every host at once. args must hold --control sock.
func startedHosts(bin string, args []string, sock, url, job string, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var joiners []*exec.Cmd
	defer func() {
		for _, c := range joiners {
			_ = c.Process.Kill()
			_ = c.Wait() // killed: its exit status tells nothing
		}
	}()
	_ = os.Remove(sock) // a previous run's
	coord := exec.CommandContext(ctx, bin, append(slices.Clone(args), "--rate", "1/h")...)
	if err := coord.Start(); err != nil {
		return 0, err
	}
	cj, err := cluster.Connect(ctx, url, job, "bench")
	if err != nil {
		return 0, err
	}
	defer func() { _ = cj.Close() }()             // only read from
	if err := waitHosts(ctx, cj, 1); err != nil { // the coordinator defined the job
		return 0, err
	}
	for range n {
		c := exec.CommandContext(ctx, bin, "join", "--redis", url, "--job", job, "--headless")
		if err := c.Start(); err != nil {
			return 0, err
		}
		joiners = append(joiners, c)
	}
	if err := waitHosts(ctx, cj, n+1); err != nil {
		return 0, err
	}
	start := time.Now()
	if out, err := exec.CommandContext(ctx, bin, "ctl", "--control", sock, "set", "rate", "0").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s ctl set rate 0: %w: %s", bin, err, out)
	}
	if err := coord.Wait(); err != nil {
		return 0, fmt.Errorf("%s %s: %w", bin, join(args), err)
	}
	return time.Since(start), nil
}

// waitHosts returns once n hosts of the job are alive (they beat).
func waitHosts(ctx context.Context, cj *cluster.Job, n int) error {
	for {
		hosts, _ := cj.Hosts(ctx) // before the coordinator defined the job: none yet
		alive := 0
		for _, h := range hosts {
			if h.Alive {
				alive++
			}
		}
		if alive >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d hosts in the job: %w", alive, n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func join(args []string) string {
	s := ""
	for i, a := range args {
		if i > 0 {
			s += " "
		}
		s += strconv.Quote(a)[1 : len(strconv.Quote(a))-1]
	}
	return s
}
