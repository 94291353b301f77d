package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/cluster"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/tui"
)

// runClusterJob runs this host's share of a job across hosts (--redis, --job). The host started
// with --input is the coordinator: it defines the job, feeds the shared work list from its
// input and writes the one results file from the shared results stream. Every host, the
// coordinator included, runs its own engine on items from the list, under the job's global
// cap, rate and Retry-After gate, and follows the job's live settings.
func runClusterJob(ctx context.Context, env *Env, rf *runFlags, j job, settings engine.Settings) error {
	if ctx == nil {
		ctx = context.Background()
	}
	coordinator := !rf.joined
	switch {
	case coordinator && rf.input == "":
		return usageError("--redis: the host that starts a job needs --input; other hosts join it with throttle join --redis %s --job %s", rf.redis, rf.job)
	case rf.config != "":
		return usageError("--config with --job: a joining host would need the same file; give the flags on the command line (or print them with --print-config)")
	case rf.resume || rf.onlyFailed || rf.dedupe || rf.detach || rf.record != "" || rf.follow || rf.summaryJSON != "":
		return usageError("--resume, --only-failed, --dedupe, --detach, --record, --follow and --summary-json are for a run on one host, not yet for a shared job")
	}
	cj, err := cluster.Connect(ctx, rf.redis, rf.job, "")
	if err != nil {
		return usageError("%v", err)
	}
	defer func() { _ = cj.Close() }() // the job's rows and state were written before; this drops the connection

	var (
		in      *input
		out     *os.File
		total   int64  = -1
		stopAll func() // set once the workers start, before anything can end the run
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if coordinator {
		if in, err = openInput(ctx, env, rf.input, false, -1); err != nil {
			return err
		}
		defer func() { _ = in.close() }() // the input is read-only
		if out, err = openResults(env, rf.out); err != nil {
			return err
		}
		defer func() { _ = out.Close() }() // the rows were synced (out.Sync, checked) before
		total = in.total
		if err := cj.Reset(ctx); err != nil {
			return usageError("--redis: %v", err)
		}
		if err := cj.Define(ctx, joinArgs(env.Args)); err != nil {
			return usageError("--redis: %v", err)
		}
		if err := cj.InitSettings(ctx, settings, "cli"); err != nil {
			return usageError("--redis: %v", err)
		}
	} else {
		if settings, err = cj.Settings(ctx); err != nil {
			return usageError("--redis: %v", err)
		}
	}

	var (
		mu       sync.Mutex
		say      = func(line string) { fmt.Fprintln(env.Stderr, line) }
		outage   bool
		setSayer = func(f func(string)) { mu.Lock(); say = f; mu.Unlock() }
	)
	report := func(err error) { // Redis went away, or came back
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil && !outage:
			outage = true
			say("redis unavailable (" + err.Error() + "): the job is paused; nothing is lost, it resumes when redis is back")
		case err == nil && outage:
			outage = false
			say("redis is back: the job resumes")
		}
	}

	lease := rf.lease
	if lease <= 0 {
		lease = max(10*time.Second, 2*rf.timeout)
	}
	src := cj.Source(runCtx, cluster.SourceOptions{Lease: lease, OnRedisError: report})
	gate := cj.Gate(j.adapter, cluster.GateOptions{LeaseTTL: rf.timeout + 10*time.Second, OnRedisError: report})
	if rf.hostPar < 0 {
		return usageError("--host-parallelism %d: must be 0 (none) or more", rf.hostPar)
	}
	// This host's workers: the job's cap (leases in redis hold the total to it), or fewer, and
	// never more than one host's default ceiling: the job's cap is a sum over hosts, so a large
	// one is capped on each host rather than refused.
	ceiling, _ := engine.DefaultMaxParallelism()
	localCap := func(global int) int {
		n := min(global, ceiling)
		if rf.hostPar > 0 {
			n = min(n, rf.hostPar)
		}
		return n
	}
	local := settings
	local.Parallelism, local.MaxParallelism = localCap(settings.Parallelism), 0
	local.Rate, local.Burst = 0, 1 // the rate is the job's, in redis
	e, err := engine.New(engine.Config{
		Settings: local, Retries: rf.retries, MaxBackoff: rf.maxBackoff, Timeout: rf.timeout,
		Chunk: rf.chunk, Adapter: gate.Adapter(), Source: src, Total: -1, Results: src.Sink(), Origin: "cluster",
		Adapt: rf.adapt, Hold: rf.holdMode(), Redact: scrubHook(env, rf),
	})
	if err != nil {
		return usageError("%v", err)
	}
	ctrl := cj.Controls(e)
	j.controls = ctrl
	j.hosts = clusterHosts(cj, gate, ctrl)

	var wg sync.WaitGroup
	var produced, collectErr error
	var stats cluster.CollectStats
	collectCtx, stopCollect := context.WithCancel(ctx)
	defer stopCollect()
	if coordinator {
		wg.Add(2)
		go func() {
			defer wg.Done()
			// Entries of a few items save round trips; a host that dies takes only those with it.
			_, produced = cj.Produce(runCtx, in.source, max(rf.chunk, 20))
		}()
		go func() {
			defer wg.Done()
			stats, collectErr = cj.Collect(collectCtx, out, total, cluster.CollectOptions{})
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = cj.Watch(runCtx, func(s engine.Settings, c engine.Change) {
			ctrl.Update(s)
			// This host's engine follows the job's cap (within its own) and pace, as one change.
			cur := e.Snapshot().Settings
			next := cur
			next.Parallelism, next.Pace = localCap(s.Parallelism), s.Pace
			_ = e.Set(engine.Diff(cur, next), c.Origin)
		})
	}()
	go func() {
		defer wg.Done()
		cj.Heartbeat(runCtx, time.Second, func() engine.Snapshot {
			s := e.Snapshot()
			s.InFlight = gate.LocalInFlight() // the engine's count includes workers waiting at the gate
			return s
		})
	}()
	stopAll = func() { cancel(); wg.Wait() }

	title := j.title
	if title == "" {
		title = fmt.Sprintf("%s · job %s · %s", j.name, rf.job, cj.Host())
	}
	obs, err := startObservers(ctx, env, rf, e, j, title)
	if err != nil {
		return err
	}
	mon, stopMonitor := startMonitor(ctx, e, false)
	defer stopMonitor()
	stopControl, sock := serveControl(env, ctrl, mon, rf, title)
	defer stopControl()

	var sum engine.Summary
	var runErr error
	if wantScreen(env, rf) {
		sum, runErr = runScreen(ctx, env, e, mon, title, rf, j)
	} else {
		rep := startHeadless(env.Stderr, e, mon, title, rf.progressEvery, j.binding)
		setSayer(rep.say)
		role := "joined as " + cj.Host()
		if coordinator {
			role = fmt.Sprintf("coordinator %s: other hosts join with throttle join --redis %s --job %s", cj.Host(), rf.redis, rf.job)
		}
		rep.say(role)
		if sock != "" {
			rep.say("control: throttle ctl --control " + sock + " get")
		}
		sig := handleSignals(env, e, rep.say, nil)
		stopLines := clusterLines(rep.say, j.hosts, 5*rf.progressEvery)
		sum, runErr = e.Run(runCtx)
		stopLines()
		sig.stop()
		rep.stop()
	}
	printSummary(env.Stdout, sum, mon.Overall(), "") // the run's output: stdout (CONTRACT.md, Streams)
	obs.finish(env, rf, sum)
	if coordinator {
		if sum.Interrupted() {
			stopCollect() // the other hosts go on; the rows so far are in the file
		}
		wgDone := make(chan struct{})
		go func() { cancel(); wg.Wait(); close(wgDone) }()
		<-wgDone
		switch {
		case collectErr != nil && !errors.Is(collectErr, context.Canceled):
			return &exitError{code: ExitFailures, err: fmt.Errorf("results: %w", collectErr)}
		case produced != nil && !errors.Is(produced, context.Canceled):
			return &exitError{code: ExitFailures, err: fmt.Errorf("input: %w", produced)}
		}
		if st, err := out.Stat(); err == nil && st.Mode().IsRegular() { // /dev/null cannot sync
			if err := out.Sync(); err != nil {
				return &exitError{code: ExitFailures, err: fmt.Errorf("results: %w", err)}
			}
		}
		fmt.Fprintf(env.Stderr, "job %s: %s rows in %s (%s ok, %s failed; %s duplicate rows from re-run items dropped)\n",
			rf.job, human.Count(stats.Rows), rf.out, human.Count(stats.OK), human.Count(stats.Failed), human.Count(stats.Duplicates))
		switch {
		case runErr != nil:
			return &exitError{code: ExitFailures, err: runErr}
		case sum.Interrupted():
			return exitCode(ExitInterrupted)
		case stats.Failed > 0 || (total >= 0 && stats.Rows < total):
			return exitCode(ExitFailures)
		}
		return nil
	}
	stopAll()
	switch {
	case runErr != nil:
		return &exitError{code: ExitFailures, err: runErr}
	case sum.Interrupted():
		return exitCode(ExitInterrupted)
	}
	return nil
}

// clusterHosts lists the job's hosts for the screen's hosts panel, after the whole job: calls
// in flight across hosts against the global cap, and calls/s against the rate.
func clusterHosts(cj *cluster.Job, gate *cluster.Gate, ctrl engine.Controls) func(int) tui.Hosts {
	var lastCalls int64
	var lastAt time.Time
	return func(n int) tui.Hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		set := ctrl.Snapshot().Settings
		job := &tui.JobLoad{Cap: set.Parallelism, Rate: set.Rate}
		if v, err := gate.InFlight(ctx); err == nil {
			job.InFlight = v
		}
		hosts, _ := cj.Hosts(ctx)
		job.Hosts = len(hosts)
		var rows []tui.HostLoad
		var calls int64
		for _, h := range hosts {
			calls += h.Calls
			if len(rows) < n-1 { // the job takes the panel's first place
				rows = append(rows, tui.HostLoad{Host: h.Host, InFlight: h.InFlight, Calls: h.Calls})
			}
		}
		now := time.Now()
		if !lastAt.IsZero() && now.After(lastAt) {
			job.PerSecond = float64(calls-lastCalls) / now.Sub(lastAt).Seconds()
		}
		lastCalls, lastAt = calls, now
		return tui.Hosts{Job: job, Rows: rows}
	}
}

// clusterLines says how the whole job goes every so often, under the host's own progress
// lines; the returned function stops it.
func clusterLines(say func(string), hosts func(int) tui.Hosts, every time.Duration) func() {
	return periodically(every, func() {
		h := hosts(8)
		var parts []string
		if h.Job != nil {
			parts = append(parts, fmt.Sprintf("%s: %d in flight", h.Job.Caption(), h.Job.InFlight))
		}
		for _, r := range h.Rows {
			parts = append(parts, fmt.Sprintf("%s %d", r.Host, r.InFlight))
		}
		say("cluster: " + strings.Join(parts, " · "))
	})
}

// periodically calls f every interval on a goroutine of its own; the returned function stops
// it and waits for a call under way.
func periodically(every time.Duration, f func()) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				f()
			case <-done:
				return
			}
		}
	}()
	return sync.OnceFunc(func() { close(done); <-stopped })
}

// joinFlags are the flags of the coordinator's command line that a joining host must not run
// with: its own files and modes. Valued flags take the next word unless written --flag=value.
var (
	joinValued = map[string]bool{"--input": true, "--out": true, "--record": true, "--control": true, "--redis": true, "--job": true}
	joinBools  = map[string]bool{"--headless": true, "--resume": true, "--only-failed": true, "--dedupe": true, "--detach": true, "--joined": true}
)

// joinArgs is the coordinator's command line for the hosts that join: the same adapter and
// flags, without its input, results file, socket and modes. Everything after "--" (a
// command for exec) is kept as it is.
func joinArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, _, hasValue := strings.Cut(a, "=")
		switch {
		case joinValued[name]:
			if !hasValue {
				i++ // its value
			}
			continue
		case joinBools[name]:
			continue
		}
		out = append(out, a)
	}
	return out
}

func newJoinCmd(env *Env) *cobra.Command {
	var url, name string
	var headless bool
	cmd := &cobra.Command{
		Use:   "join --redis URL --job NAME",
		Short: "Add this host's workers to a job that runs across hosts",
		Long: `Add this host's workers to a job started elsewhere with
  throttle run ADAPTER … --input FILE --redis URL --job NAME
The job's definition (the adapter and its flags) is read from Redis; secrets are
not there: ${NAME} templates read this host's own environment. This host takes items
from the shared list, under the job's global parallelism cap, rate and Retry-After
gate; its rows go to the coordinator, which writes the one results file. A TUI or
throttle ctl on any host changes the settings of every host.`,
		Example: `  export API_TOKEN=…   # each host reads its own secrets
  throttle join --redis redis://10.0.0.5:6379/0 --job users-backfill`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" || name == "" {
				return usageError("join needs --redis URL and --job NAME")
			}
			cj, err := cluster.Connect(cmd.Context(), url, name, "")
			if err != nil {
				return usageError("%v", err)
			}
			args, coord, err := cj.Definition(cmd.Context())
			_ = cj.Close() // only read from; the definition's error is what matters
			if err != nil {
				return usageError("%v", err)
			}
			fmt.Fprintf(env.Stderr, "joining job %s (coordinator %s): throttle %s\n", name, coord, strings.Join(args, " "))
			full := append([]string(nil), args...)
			extra := []string{"--redis", url, "--job", name, "--joined"}
			if headless {
				extra = append(extra, "--headless")
			}
			if i := indexOf(full, "--"); i >= 0 { // flags go before an exec command
				full = append(full[:i], append(extra, full[i:]...)...)
			} else {
				full = append(full, extra...)
			}
			root := newRoot(env)
			root.SetArgs(full)
			return root.ExecuteContext(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&url, "redis", "", "the Redis of the job (redis://HOST:6379/0)")
	cmd.Flags().StringVar(&name, "job", "", "the job's name")
	cmd.Flags().BoolVar(&headless, "headless", false, "no TUI: progress lines on stderr")
	return cmd
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
