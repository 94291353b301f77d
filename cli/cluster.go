package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/cluster"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/internal/redact"
	"github.com/throttle-dev/throttle/tui"
)

// clusterPlan plans this host's share of a job across hosts (--redis, --job). The host started
// with --input is the coordinator: it defines the job, feeds the shared work list from its
// input and writes the one results file from the shared results stream. Every host, the
// coordinator included, runs its own engine on items from the list, under the job's global
// cap, rate and Retry-After gate, and follows the job's live settings; the tuner (--auto)
// runs on the coordinator only, and its changes reach every host.
func clusterPlan(ctx context.Context, env *Env, rf *runFlags, j *job, settings engine.Settings) (p *runPlan, err error) {
	coordinator := !rf.joined
	switch {
	case coordinator && rf.input == "":
		return nil, usageError("--redis: the host that starts a job needs --input; other hosts join it with throttle join --redis %s --job %s", redact.URL(rf.redis), rf.job)
	case rf.config != "":
		return nil, usageError("--config with --job: a joining host would need the same file; give the flags on the command line (or print them with --print-config)")
	case rf.joined && (rf.resume || rf.reset):
		return nil, usageError("--resume and --reset are the coordinator's: it holds the results file and defines the job")
	case rf.onlyFailed || rf.dedupe:
		return nil, usageError("--only-failed and --dedupe read the results file of a run on one host; a shared job's rows are collected by its coordinator: run them on one host, or finish the job with --resume on its coordinator")
	case rf.detach || rf.follow:
		return nil, usageError("--detach and --follow are for a run on one host: a shared job's hosts are started with throttle join, and its input is read once")
	case rf.hostPar < 0:
		return nil, usageError("--host-parallelism %d: must be 0 (none) or more", rf.hostPar)
	}
	cj, err := cluster.Connect(ctx, rf.redis, rf.job, "")
	if err != nil {
		return nil, usageError("%v", err)
	}
	var (
		in   *input
		out  *os.File
		gate *cluster.Gate
	)
	closeAll := func() {
		if gate != nil {
			gate.Close() // this host leaves the job's shares
		}
		_ = cj.Close() // the job's rows and state were written before; this drops the connection
		if in != nil {
			_ = in.close() // the input is read-only
		}
		if out != nil {
			_ = out.Close() // the rows were synced (out.Sync, checked) before
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	total := int64(-1)
	if coordinator {
		// A job whose hosts still beat is live: starting it again here would delete its work
		// list and the rows not yet collected under them.
		if hosts, err := cj.Hosts(ctx); err == nil && !rf.reset {
			var alive []string
			for _, h := range hosts {
				if h.Alive {
					alive = append(alive, h.Host)
				}
			}
			if len(alive) > 0 {
				return nil, usageError("--redis: job %s is running (hosts %s): add this host with throttle join --redis %s --job %s; "+
					"--reset starts it anew, and with --resume finishes it from %s (its hosts stop; the rows not yet collected are run again)",
					rf.job, strings.Join(alive, ", "), redact.URL(rf.redis), rf.job, rf.out)
			}
		}
		// The input, the results file and, with --resume, the items already ok in it skipped.
		if in, out, err = prepare(ctx, env, rf); err != nil {
			return nil, err
		}
		total = in.total
		if err := cj.Reset(ctx); err != nil {
			return nil, usageError("--redis: %v", err)
		}
		if err := cj.Define(ctx, joinArgs(env.Args)); err != nil {
			return nil, usageError("--redis: %v", err)
		}
		if err := cj.InitSettings(ctx, settings, "cli"); err != nil {
			return nil, usageError("--redis: %v", err)
		}
	} else {
		if settings, err = cj.Settings(ctx); err != nil {
			return nil, usageError("--redis: %v", err)
		}
		// A job whose rows are all in its coordinator's file has nothing left to run: a
		// host that joined it would end at once, with nothing said.
		if _, done, err := cj.Collector(ctx); err == nil && done {
			return nil, usageError("--redis: job %s is finished: its coordinator wrote every row; to run it again, start it anew on the coordinator (throttle run … --redis … --job %s)", rf.job, rf.job)
		}
		if _, err = cj.Generation(ctx); err != nil {
			return nil, usageError("--redis: %v", err)
		}
	}

	// Reports of Redis going away and coming back go where the run's lines go, once the
	// plan starts; they may come before (from the source's first read). One Outage for the
	// gate, the work list and the collector: an outage they all see is told once.
	var (
		mu      sync.Mutex
		say     = func(line string) { fmt.Fprintln(env.Stderr, line) }
		gone    atomic.Pointer[error] // why the job's state is gone (ErrJobGone, ErrJobRestarted), once it is
		jobGone func(why error)       // set below, once the source exists
	)
	outage := cluster.NewOutage(func(err error) {
		if err != nil && !errors.Is(err, cluster.ErrNoSettings) {
			mu.Lock()
			defer mu.Unlock()
			say("redis unavailable (" + err.Error() + "): the job is paused; nothing is lost, it resumes when redis is back")
			return
		}
		// Back, but with the job? A Redis that restarted empty answers too; and a Redis that
		// answers without the job's settings was reset under it. Not here: the Outage must
		// not wait on a round trip.
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			switch gen := cj.CheckGeneration(cctx); {
			case errors.Is(gen, cluster.ErrJobGone):
				jobGone(gen)
			case gen == nil && err == nil:
				mu.Lock()
				say("redis is back: the job resumes")
				mu.Unlock()
			case gen == nil:
				mu.Lock()
				say(fmt.Sprintf("job %s: %v: its calls wait", rf.job, err))
				mu.Unlock()
			}
		}()
	})

	lease := rf.lease
	if lease <= 0 {
		lease = max(10*time.Second, 2*rf.timeout)
	}
	// The job's cap and rate are the job's own limit, shared fairly by its live hosts.
	if gate, err = cj.Gate(ctx, j.adapter, cluster.GateOptions{Label: "job " + rf.job, Outage: outage}); err != nil {
		return nil, usageError("--redis: %v", err)
	}
	j.adapter = gate.Adapter()
	runCtx, cancel := context.WithCancel(ctx)
	collectCtx, stopCollect := context.WithCancel(ctx)
	if j.title == "" {
		j.title = fmt.Sprintf("%s · job %s · %s", j.name, rf.job, cj.Host())
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
	var eng atomic.Pointer[engine.Engine] // set once the engine exists
	src := cj.Source(runCtx, cluster.SourceOptions{Lease: lease, Outage: outage, Slots: hostSlots(&eng, local.Parallelism, rf.chunk)})
	// goneNext says what to do once the job's state is gone (why).
	goneNext := func(why error) string {
		switch {
		case errors.Is(why, cluster.ErrJobRestarted) && coordinator:
			return rf.out + " holds the rows this run collected; the new run has its own coordinator and results"
		case errors.Is(why, cluster.ErrJobRestarted):
			return "to help the new run, join it again: throttle join --redis " + redact.URL(rf.redis) + " --job " + rf.job
		case coordinator:
			return rf.out + " holds the rows collected; finish the job with the same command and --resume"
		}
		return "the coordinator finishes it with --resume"
	}
	// A Redis without the job's state (it restarted empty, or the job was started anew):
	// the work list, the leases and the rows not yet collected are gone, and waiting would
	// wait for ever. Every host stops: the calls in flight get 5 s to end, then they are
	// cancelled; their rows have nowhere to go.
	var stopTimer *time.Timer
	var goneOnce sync.Once
	jobGone = func(why error) {
		goneOnce.Do(func() {
			gone.Store(&why)
			src.Abandon(why)
			mu.Lock()
			say(fmt.Sprintf("job %s: %v: this host stops; %s", rf.job, why, goneNext(why)))
			mu.Unlock()
			if e := eng.Load(); e != nil {
				e.Drain("cluster")
				mu.Lock()
				stopTimer = time.AfterFunc(5*time.Second, func() { e.Stop("cluster") })
				mu.Unlock()
			}
			stopCollect()
			cancel()
		})
	}
	local.Rate, local.Burst = 0, 1 // the rate is the job's, in redis

	var (
		ctrl              *cluster.Controls
		wg                sync.WaitGroup
		produced, collect error
		stats             cluster.CollectStats
		tally             *collectTally // the rows the coordinator writes, counted for the summary and --summary-json
		hostsSeen         func() []cluster.HostStatus
		began             time.Time
	)
	if out != nil {
		tally = newCollectTally(out)
	}
	stopped := false
	stopWork := func() { // the feed, the settings and the heartbeat; the collection goes on
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
	}
	progress := &jobProgress{start: time.Now()}
	progress.store(cluster.CollectStats{}, total)
	items := &input{source: src, total: -1, name: "job " + rf.job, size: -1, close: func() error { return nil }}
	p = &runPlan{
		in: items, results: src.Sink(), settings: local, origin: "cluster", tune: rf.auto && coordinator,
		started: fmt.Sprintf("the job's %s; this host up to %d", describeSettings(settings), local.Parallelism),
		controls: func(e *engine.Engine) controlsWithNote {
			ctrl = cj.Controls(e)
			ctrl.Update(settings) // the job's, read or written above: shown from the first line
			return ctrl
		},
		hosts: func() func(int) tui.Hosts { return clusterHosts(cj, ctrl, progress.load) },
		start: func(e *engine.Engine, sayer func(string)) func() {
			eng.Store(e)
			began = time.Now()
			stopWatch := func() {}
			if coordinator && rf.summaryJSON != "" {
				hostsSeen, stopWatch = watchHosts(cj, 500*time.Millisecond)
			}
			mu.Lock()
			say = sayer
			mu.Unlock()
			if coordinator {
				wg.Add(2)
				go func() {
					defer wg.Done()
					_, produced = cj.Produce(runCtx, in.source, entryItems(settings.Parallelism, rf.chunk))
				}()
				go func() {
					defer wg.Done()
					// Resumed, the items run keep their places in the input: indexes up to its size.
					// While it collects, the hosts know someone collects their rows.
					beatCtx, stopBeat := context.WithCancel(collectCtx)
					beat := make(chan struct{})
					go func() { defer close(beat); cj.CollectorBeat(beatCtx) }()
					stats, collect = cj.Collect(collectCtx, tally, total, cluster.CollectOptions{OnRows: progress.store, AnyIndex: rf.resume, Outage: outage})
					stopBeat()
					<-beat
				}()
			}
			if !coordinator {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cj.WatchCollector(runCtx, func(missing bool, host string) {
						if missing {
							sayer("nobody collects the job's rows (its coordinator is gone): this host's rows wait in redis, nothing is lost; " + finishHint)
						} else {
							sayer("the job's rows are collected again, by " + host)
						}
					})
				}()
			}
			wg.Add(3)
			go func() {
				defer wg.Done()
				cj.WatchGeneration(runCtx, time.Second, jobGone)
			}()
			go func() {
				defer wg.Done()
				_ = cj.Watch(runCtx, func(s engine.Settings, c engine.Change) {
					ctrl.Update(s)
					// This host's engine follows the job's cap (within its own) and pace, as one
					// change; its log says the job's change as it was made (the rate too, which
					// the gate keeps), not this host's part of it.
					cur := e.Snapshot().Settings
					next := cur
					next.Parallelism, next.Pace = localCap(s.Parallelism), s.Pace
					if c.Knob == "sync" || c.Knob == "start" { // the settings read or begun: no knob was turned
						_ = e.Set(engine.Diff(cur, next), c.Origin)
						return
					}
					_ = e.Follow(engine.Diff(cur, next), c)
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
			return func() { stopCollect(); stopWork(); stopWatch() }
		},
		headless: func(say func(string)) func() {
			role := "joined as " + cj.Host()
			if coordinator {
				of := ""
				if total >= 0 {
					of = fmt.Sprintf(" (a job of %s items)", human.Count(total))
				}
				role = fmt.Sprintf("coordinator %s%s: other hosts join with throttle join --redis %s --job %s", cj.Host(), of, redact.URL(rf.redis), rf.job)
			}
			say(role)
			return clusterLines(say, clusterHosts(cj, ctrl, progress.load), 5*rf.progressEvery)
		},
		close: func() { stopCollect(); stopWork(); outage.Close(); closeAll() }, // an outage's end after the summary is no news
	}
	if coordinator {
		if tally != nil {
			p.rows = tally.snapshot // the job's rows, every host's, as the file holds them
		}
		p.progress = progress.load
		p.summaryJSON = func(f *os.File, r endReport) error {
			var hosts []cluster.HostStatus
			if hostsSeen != nil {
				hosts = hostsSeen()
			}
			if ctrl != nil {
				r.settings = ctrl.Snapshot().Settings // the job's, not this host's share
			}
			return clusterSummaryJSON(f, cj.Host(), hosts, rf.job, total, r, stats, tally, time.Since(began))
		}
	} else {
		p.sink = "job " + rf.job + "'s coordinator (through redis)"
	}
	p.settle = func(sum *engine.Summary) {
		mu.Lock()
		if stopTimer != nil {
			stopTimer.Stop()
		}
		mu.Unlock()
		if !coordinator {
			// The run may have ended on the job's state being gone (its rows had nowhere to
			// go) before the generation's watch looked: one look says so, before the summary.
			if gone.Load() == nil {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
				if err := cj.CheckGeneration(cctx); errors.Is(err, cluster.ErrJobGone) {
					jobGone(err)
				}
				cancel()
			}
			stopWork()
			return
		}
		if sum.Interrupted() {
			stopCollect() // the other hosts go on; the rows so far are in the file
		}
		stopWork() // the collection ends by itself once every row is in
		if total >= 0 {
			// The job's items and rows, not this host's share: what is not run is every
			// item of the input without a row in the file, whichever host had it.
			sum.Total, sum.OK, sum.Failed = total, stats.OK, stats.Failed
			sum.NotStarted = max(0, total-stats.Rows-sum.Lost)
		}
	}
	p.finish = func(sum engine.Summary) (bool, error) {
		if !coordinator {
			if why := gone.Load(); why != nil {
				return true, fmt.Errorf("job %s: %w: %s", rf.job, *why, goneNext(*why))
			}
			if cj.Uncollected(context.WithoutCancel(ctx)) {
				return true, fmt.Errorf("job %s: nobody collected this host's rows: they wait in redis; %s", rf.job, finishHint)
			}
			return false, nil
		}
		switch {
		case collect != nil && !errors.Is(collect, context.Canceled):
			return true, fmt.Errorf("results: %w", collect)
		case produced != nil && !errors.Is(produced, context.Canceled):
			return true, fmt.Errorf("input: %w", produced)
		}
		if st, err := out.Stat(); err == nil && st.Mode().IsRegular() { // /dev/null cannot sync
			if err := out.Sync(); err != nil {
				return true, fmt.Errorf("results: %w", err)
			}
		}
		if collect == nil { // every row of the job is in the file
			mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_ = cj.Collected(mctx) // at worst a host that ends later says nobody collected: its rows are in the file all the same
			cancel()
		}
		fmt.Fprintf(env.Stderr, "job %s: %s in %s (%s ok, %s failed; %s from re-run items dropped)\n",
			rf.job, human.Counted(stats.Rows, "row", "rows"), rf.out, human.Count(stats.OK), human.Count(stats.Failed),
			human.Counted(stats.Duplicates, "duplicate row", "duplicate rows"))
		if missing := total - stats.Rows; total >= 0 && missing > 0 {
			// The job's count, not this host's: the other hosts' items are missing too.
			fmt.Fprintf(env.Stderr, "job %s: %s of its %s items have no row in %s\n", rf.job, human.Count(missing), human.Count(total), rf.out)
		}
		if why := gone.Load(); why != nil {
			return true, fmt.Errorf("job %s: %w: %s", rf.job, *why, goneNext(*why))
		}
		return stats.Failed > 0 || (total >= 0 && stats.Rows < total), nil
	}
	return p, nil
}

// entryItems is how many items one entry of the work list holds. A host takes entries whole,
// so an entry is small beside one host's share of the cap (a quarter of the job's
// parallelism, at most 16 workers' worth): the work then goes to whichever host has room,
// and a host that dies or stalls holds little. A host reads several entries in one round trip
// when it has room for them.
func entryItems(parallelism, chunk int) int {
	return chunk * min(16, max(1, parallelism/4))
}

// hostSlots is how many items this host's engine can have started at once: its workers'
// items and those waiting out a backoff. Before the engine exists, its first parallelism.
// The engine's count is read at most every 100 ms.
func hostSlots(eng *atomic.Pointer[engine.Engine], first, chunk int) func() int {
	var (
		at    time.Time
		slots = first * chunk
	)
	return func() int { // Next's goroutine only
		e := eng.Load()
		if e == nil || time.Since(at) < 100*time.Millisecond {
			return slots
		}
		s := e.Snapshot()
		slots, at = s.Settings.Parallelism*chunk+s.BackingOff, time.Now()
		return slots
	}
}

// jobProgress is the whole job's progress as the coordinator's collector sees it: rows in the
// results file of the job's items. A joined host has none (total 0).
type jobProgress struct {
	start       time.Time
	rows, total atomic.Int64
}

func (p *jobProgress) store(st cluster.CollectStats, total int64) {
	p.rows.Store(st.Rows)
	p.total.Store(total)
}

// load returns the rows so far, the total (0: unknown) and when the rest should be in (0:
// cannot tell yet), at the pace of the rows so far.
func (p *jobProgress) load() jobRows {
	if p == nil {
		return jobRows{}
	}
	r := jobRows{rows: p.rows.Load(), total: max(0, p.total.Load())}
	if el := time.Since(p.start); r.rows > 0 && r.total > r.rows {
		r.eta = el / time.Duration(r.rows) * time.Duration(r.total-r.rows)
	}
	return r
}

// clusterHosts lists the job's live hosts for the screen's hosts panel, after the whole job:
// calls in flight across hosts against the global cap, calls/s against the rate and, on the
// coordinator, the rows of the whole job against its total.
func clusterHosts(cj *cluster.Job, ctrl engine.Controls, progress func() jobRows) func(int) tui.Hosts {
	return func(n int) tui.Hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		set := ctrl.Snapshot().Settings
		job := &tui.JobLoad{Cap: set.Parallelism, Rate: set.Rate}
		jr := progress()
		job.Rows, job.Total, job.ETA = jr.rows, jr.total, jr.eta
		if v, err := cj.InFlight(ctx); err == nil {
			job.InFlight = v
		}
		all, _ := cj.Hosts(ctx)
		// A host that stopped beating (it died) is no longer one of the job's: its calls in
		// flight are not, and its leases expire.
		hosts := slices.DeleteFunc(all, func(h cluster.HostStatus) bool { return !h.Alive })
		job.Hosts = len(hosts)
		var rows []tui.HostLoad
		for _, h := range hosts {
			if len(rows) < n-1 { // the job takes the panel's first place
				rows = append(rows, tui.HostLoad{Host: h.Host, InFlight: h.InFlight, Calls: h.Calls})
			}
		}
		job.PerSecond, job.Over = jobRate(hosts)
		return tui.Hosts{Job: job, Rows: rows}
	}
}

// jobRate is the calls per second of a job across its live hosts: the sum of the rates each
// measured between its own beats (see [cluster.HostStatus]), and the longest time one was
// measured over (at most probes.RateWindow); 0 and 0 while none has measured a second. (The
// sum of the hosts' counts at a look mixes beats up to a second old, and falls when a host
// leaves: it read 206/s under a rate of 200/s, and -83/s after a host died.)
func jobRate(hosts []cluster.HostStatus) (perSecond float64, over time.Duration) {
	for _, h := range hosts {
		perSecond += h.PerSecond
		over = max(over, h.Over)
	}
	return perSecond, over
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
	joinBools  = map[string]bool{"--headless": true, "--resume": true, "--reset": true, "--only-failed": true, "--dedupe": true, "--detach": true, "--joined": true}
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

// finishHint is what finishes a job whose coordinator is gone.
const finishHint = "start the job's coordinator again on its host, with its command and --resume --reset (same --input and --out), to finish the job"
