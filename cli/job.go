package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/tui"
)

// job is what a command hands to runJob: the adapter and how to name the job.
type job struct {
	adapter engine.Adapter
	name    string // the adapter's name
	target  string // what it calls, for a recording's header: no secrets
	// hosts, when set, lists the busiest hosts of a run with per-host limits (the screen shows them).
	hosts func(n int) tui.Hosts
	// connections, when set, counts the connections the adapter holds open (one per worker).
	connections func() int
	// binding, when set, says which shared limit holds the run back (throttle limit).
	binding func() string
	// controls, when set, is what the screen steers instead of the local engine (a shared job's
	// settings, which every host follows).
	controls engine.Controls
	// progress, when set, is the whole job's rows against its total (a shared job's
	// coordinator): the progress lines count those, not this host's.
	progress func() jobRows
	title    string // the screen's title; default "name · input"
}

// jobRows is a shared job's progress: its rows from every host, its total (0: unknown) and
// when the rest should be in (0: cannot tell yet).
type jobRows struct {
	rows, total int64
	eta         time.Duration
}

// input is an opened --input.
type input struct {
	source engine.Source
	total  int64
	name   string
	size   int64 // the size a regular file was counted at (and is read up to); -1 otherwise
	close  func() error
}

// errCountInterrupted ends a run that a signal stopped before anything was called.
var errCountInterrupted = &exitError{code: ExitInterrupted, err: errors.New("interrupted while reading the input before the run; nothing was called")}

// openInput opens --input ("-" is stdin). A regular file is read as it was when the run
// started: its items are counted in a fast first pass up to its size then (so that progress
// has a total), and the run reads up to that same size (size, when not -1, is a size counted
// before: a second pass over the same input must see the same items). With follow, the file
// is read on as it grows and the total is unknown. Stdin and every input that cannot be read
// twice (a FIFO, <(…), /dev/stdin on a pipe, a device such as /dev/zero) are read once as
// they come, total unknown. ctx bounds the counting pass: a signal must not wait for it.
func openInput(ctx context.Context, env *Env, path string, follow bool, size int64) (*input, error) {
	if path == "" {
		return nil, usageError("--input is required: a file of items, one per line, or - for stdin")
	}
	jsonl := strings.HasSuffix(strings.ToLower(path), ".jsonl")
	if path == "-" {
		if follow {
			return nil, usageError("--follow is for a file that grows; stdin is already read as it comes, to its end")
		}
		return &input{source: engine.NewLineReader(env.Stdin, false), total: -1, name: "stdin", size: -1, close: func() error { return nil }}, nil
	}
	f, err := openWithin(ctx, path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errCountInterrupted
		}
		return nil, usageError("--input: %v", err)
	}
	st, err := f.Stat()
	switch {
	case err != nil:
		_ = f.Close() // read-only
		return nil, usageError("--input: %v", err)
	case st.IsDir():
		_ = f.Close() // read-only
		return nil, usageError("--input %s is a directory; want a file of items", path)
	case !st.Mode().IsRegular():
		if follow {
			_ = f.Close() // read-only
			return nil, usageError("--follow %s: not a regular file; a pipe or a device is already read as it comes, to its end (drop --follow)", path)
		}
		return &input{source: engine.NewLineReader(f, jsonl), total: -1, name: path, size: -1, close: f.Close}, nil
	case follow:
		fr := engine.FollowFile(f)
		return &input{source: engine.NewLineReader(fr, jsonl), total: -1, name: path, size: -1,
			close: func() error { fr.Close(); return f.Close() }}, nil
	}
	if size < 0 {
		size = st.Size()
	}
	total, err := engine.CountItemsContext(ctx, io.NewSectionReader(f, 0, size))
	if err != nil {
		_ = f.Close() // read-only
		if ctx.Err() != nil {
			return nil, errCountInterrupted
		}
		return nil, usageError("--input: %v", err)
	}
	fr := engine.ReadFileAt(f, size)
	return &input{source: engine.NewLineReader(fr, jsonl), total: total, name: path, size: size,
		close: func() error { fr.Close(); return f.Close() }}, nil
}

// openWithin opens path for reading, giving up when ctx is done: opening a FIFO waits for
// its writer, maybe for ever, and a signal must still end the run. A file opened after that
// is closed.
func openWithin(ctx context.Context, path string) (*os.File, error) {
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.Open(path)
		ch <- opened{f, err}
	}()
	select {
	case o := <-ch:
		return o.f, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.f != nil {
				_ = o.f.Close() // nobody waits for it any more; read-only
			}
		}()
		return nil, ctx.Err()
	}
}

// watchStart answers SIGINT and SIGTERM while a run gets ready (the counting pass, a resume's
// pass over the results): the returned context is cancelled at the first one. stop ends the
// watch before the run's own handler takes the signals, and says whether one came.
func watchStart(ctx context.Context, env *Env) (context.Context, func() bool) {
	cctx, cancel := context.WithCancel(ctx)
	quit, done := make(chan struct{}), make(chan struct{})
	var got atomic.Bool
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case sig := <-env.Signals:
				if sig == syscall.SIGHUP {
					continue // as during the run: the job goes on without its terminal
				}
				got.Store(true)
				cancel()
				return
			}
		}
	}()
	return cctx, func() bool {
		close(quit)
		<-done
		return got.Load()
	}
}

// runJob runs one job to its end and maps its outcome to the contract's exit status. A run on
// one host and a host's share of a job across hosts (--redis, --job) take the same path: only
// the plan differs (where items come from, where rows go, who turns the knobs).
func runJob(ctx context.Context, env *Env, rf *runFlags, j job) error {
	settings, err := rf.settings()
	if err != nil {
		return err
	}
	if n, why := engine.DefaultMaxParallelism(); settings.MaxParallelism > n {
		fmt.Fprintf(env.Stderr, "warning: --max-parallelism %d is above the default ceiling %d (%s): so many calls in flight may run out of memory or open files\n", settings.MaxParallelism, n, why)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if len(rf.limits) > 0 { // the named shared limits come first: every call takes from them
		limited, release, err := wrapLimits(ctx, env, rf, j.adapter)
		if err != nil {
			return err
		}
		defer release()
		j.adapter = limited
		if b, ok := limited.(interface{ Binding() string }); ok {
			j.binding = b.Binding
		}
	}
	var p *runPlan
	if rf.job != "" {
		p, err = clusterPlan(ctx, env, rf, &j, settings)
	} else {
		if rf.detach {
			if rf.input == "-" {
				return usageError("--detach cannot read items from stdin")
			}
			return detach(env, rf)
		}
		p, err = localPlan(ctx, env, rf, settings)
	}
	if err != nil {
		return err
	}
	defer p.close()
	return runPlanned(ctx, env, rf, j, p)
}

// runPlan is what differs between a run on one host and a host's share of a job across hosts;
// everything else (the screen, the headless lines, the tuner, metrics, the log, the recording,
// the control socket, the summary and its JSON) is one path, runPlanned.
type runPlan struct {
	in        *input          // the items: an opened --input, or the job's shared work list
	results   io.Writer       // where this host's rows go
	settings  engine.Settings // this host's engine's
	syncEvery time.Duration   // how often the engine syncs results (a file); 0: never
	origin    string          // the engine's name for the changes it makes itself
	started   string          // what the change log says the run started with ("": the engine's settings)
	// controls, when set, wraps the engine with what the screen, ctl and the tuner turn (a
	// shared job's settings, which every host follows).
	controls func(e *engine.Engine) controlsWithNote
	hosts    func() func(n int) tui.Hosts // after controls: the hosts panel of a shared job
	progress func() jobRows               // the whole job's rows against its total, when this host collects them
	tune     bool                         // whether the tuner runs on this host (--auto; one host of a shared job)
	// start starts the plan's own work once the engine exists (a shared job's feed, collection,
	// settings and heartbeat) and returns what stops it; say is where its reports go.
	start func(e *engine.Engine, say func(string)) (stop func())
	// headless adds the plan's lines to the headless progress (a shared job's role, hosts);
	// the returned function stops them.
	headless func(say func(string)) (stop func())
	// settle, when set, is called once the engine's run ended, before the summary: it waits for
	// the plan's own work and makes the summary the job's (a coordinator counts the rows of
	// every host, and the items of the whole input without one).
	settle func(sum *engine.Summary)
	// finish is called after the summary: it waits for the plan's own work and says whether the
	// job failed (rows that failed or never came) beside the run's own error.
	finish func(sum engine.Summary) (failed bool, err error)
	// summaryJSON, when set, writes --summary-json (and closes f) in place of this host's
	// report, after finish: a shared job's coordinator writes the whole job's.
	summaryJSON func(f *os.File, hostReport endReport) error
	// rows, when set, counts the rows the summary breaks down in place of this host's engine's:
	// a shared job's coordinator counts every host's rows as it writes them to the file.
	rows func() tallied
	// sink, when set, names where this host's rows go in the summary, in place of --out (a
	// host that joined a shared job sends them to its coordinator).
	sink  string
	close func()
}

// controlsWithNote is what a tuner turns and a screen steers: an engine's controls and its
// change log's notes.
type controlsWithNote interface {
	engine.Controls
	Note(origin, text string)
}

// localPlan opens the input and the results of a run on one host.
func localPlan(ctx context.Context, env *Env, rf *runFlags, settings engine.Settings) (*runPlan, error) {
	if rf.resume && rf.onlyFailed {
		return nil, usageError("--resume and --only-failed do not go together: --only-failed already runs only what is not ok")
	}
	in, out, err := prepare(ctx, env, rf)
	if err != nil {
		return nil, err
	}
	return &runPlan{
		in: in, results: out, settings: settings, syncEvery: rf.fsyncEvery, tune: rf.auto,
		finish: func(sum engine.Summary) (bool, error) { return sum.Failed > 0 || sum.Lost > 0, nil },
		close: func() {
			_ = out.Close() // the engine synced the rows (checked) before the run ended
			_ = in.close()  // the input is read-only
		},
	}, nil
}

// runPlanned runs the engine of a plan to its end: the one run path.
func runPlanned(ctx context.Context, env *Env, rf *runFlags, j job, p *runPlan) error {
	var sumFile *os.File // --summary-json: opened now, so that a path that cannot be written fails before any call
	var err error
	if rf.summaryJSON != "" {
		if sumFile, err = openPrivate(env, "--summary-json", rf.summaryJSON, os.O_WRONLY|os.O_CREATE|os.O_TRUNC); err != nil {
			return usageError("--summary-json: %v", err)
		}
		defer func() { _ = sumFile.Close() }() // closed (checked) by writeSummaryJSON; this is for an early return
	}
	tally := newRowTally(p.results) // the rows by status and cause, for the summary
	e, err := engine.New(engine.Config{
		Settings: p.settings, Retries: rf.retries, MaxBackoff: rf.maxBackoff, Timeout: rf.timeout,
		Chunk: rf.chunk, Adapter: j.adapter, Source: p.in.source, Total: p.in.total, Results: tally, SyncEvery: p.syncEvery,
		Origin: p.origin, Started: p.started, Adapt: rf.adapt, Hold: rf.holdMode(), Redact: scrubHook(env, rf),
	})
	if err != nil {
		return usageError("%v", err)
	}
	var ctrl controlsWithNote = e
	if p.controls != nil {
		ctrl = p.controls(e)
		j.controls = ctrl
	}
	if p.hosts != nil {
		j.hosts = p.hosts()
	}
	j.progress = p.progress
	title := j.title
	if title == "" {
		title = fmt.Sprintf("%s · %s", j.name, p.in.name)
	}
	var (
		sum    engine.Summary
		runErr error
	)
	rec, err := startRecording(env, rf, j, p.in, p.settings, e)
	if err != nil {
		return err
	}
	obs, err := startObservers(ctx, env, rf, e, j, title)
	if err != nil {
		stopRecording(env, rec, engine.Summary{}, rf.record)
		return err
	}
	var tuner probes.Knobs
	if p.tune {
		tuner = ctrl
	}
	mon, stopMonitor := startMonitor(ctx, e, tuner, obs.feeds...)
	defer stopMonitor()
	stopControl, sock := serveControl(env, ctrl, mon, rf, title, j.progress)
	defer stopControl()

	var sayMu sync.Mutex
	say := func(line string) { fmt.Fprintln(env.Stderr, line) }
	sayer := func(line string) { sayMu.Lock(); f := say; sayMu.Unlock(); f(line) }
	stopPlan := func() {}
	if p.start != nil {
		stopPlan = p.start(e, sayer)
	}
	defer stopPlan()

	if wantScreen(env, rf) {
		sum, runErr = runScreen(ctx, env, e, mon, title, rf, j)
		stopRecording(env, rec, sum, rf.record)
	} else {
		rep := startHeadless(env.Stderr, e, mon, title, rf.progressEvery, j)
		sayMu.Lock()
		say = rep.say
		sayMu.Unlock()
		stopLines := func() {}
		if p.headless != nil {
			stopLines = p.headless(rep.say)
		}
		if sock != "" {
			rep.report("control: throttle ctl --control " + sock + " get · throttle attach --control " + sock)
		}
		var hungUp atomic.Bool
		sig := handleSignals(env, e, rep.say, func() {
			// Progress lines go on in a log next to the results; stderr is likely a dead tty.
			if f, err := os.OpenFile(rf.out+".log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
				rep.redirect(f)
				hungUp.Store(true)
				rep.say("SIGHUP: the terminal went away; the job goes on (throttle attach to watch it)")
			}
		})
		sum, runErr = e.Run(ctx)
		stopLines()
		sig.stop()
		rep.stop()
		stopRecording(env, rec, sum, rf.record)
		if hungUp.Load() { // the log has the progress lines: it gets their end too
			rep.end(endOf(env, rf, e, sum, mon, tally))
		}
	}
	if p.settle != nil {
		p.settle(&sum)
	}
	stopMonitor() // every event fed, before the observers take the run's end
	// The summary is the run's output: stdout, terminal or not (CONTRACT.md, Streams).
	report := endOf(env, rf, e, sum, mon, tally)
	if p.rows != nil {
		report.rows, report.jobRows = p.rows(), true
	}
	report.sink = p.sink
	printEnd(env.Stdout, report)
	obs.finish(env, rf, sum)
	failed, planErr := p.finish(sum)
	if sumFile != nil { // after finish: a plan's own work (a shared job's rows) has ended
		write := writeSummaryJSON
		if p.summaryJSON != nil {
			write = p.summaryJSON
		}
		if err := write(sumFile, report); err != nil {
			fmt.Fprintf(env.Stderr, "warning: --summary-json %s: %v\n", rf.summaryJSON, err)
		}
	}

	switch {
	case planErr != nil:
		return &exitError{code: ExitFailures, err: planErr}
	case runErr != nil:
		return &exitError{code: ExitFailures, err: runErr}
	case sum.Interrupted():
		return exitCode(ExitInterrupted)
	case failed:
		return exitCode(ExitFailures)
	}
	return nil
}

// prepare opens the input and the results of a run on one host, and passes over what a resume
// skips; a signal meanwhile ends the run before anything is called.
func prepare(ctx context.Context, env *Env, rf *runFlags) (in *input, out *os.File, err error) {
	sctx, stop := watchStart(ctx, env)
	defer func() {
		if stop() && err == nil {
			err = errCountInterrupted
		}
		if err != nil && in != nil {
			_ = in.close() // the setup failed: that error is the one to tell; the input is read-only
		}
		if err != nil && out != nil {
			_ = out.Close() // the setup failed before any row was written
		}
		if err != nil {
			in, out = nil, nil
		}
	}()
	open := func(size int64) (*input, error) { return openInput(sctx, env, rf.input, rf.follow, size) }
	if rf.onlyFailed {
		open = func(int64) (*input, error) { return onlyFailed(rf.input) }
	}
	if in, err = open(-1); err != nil { // first, so that a bad --input leaves no results file behind
		return in, out, err
	}
	if out, err = openResults(env, rf.out); err != nil {
		return in, out, err
	}
	if rf.resume {
		var reopen func() (*input, error)
		if in.total >= 0 && rf.input != "-" {
			size := in.size
			reopen = func() (*input, error) { return open(size) }
		}
		if err = resume(sctx, env, out, rf.out, in, reopen); err != nil {
			return in, out, err
		}
	}
	if rf.dedupe {
		dedupe(in)
	}
	return in, out, nil
}

// startMonitor feeds a probes.Monitor from the run's events (for the screen, the advice and
// the auto-tuner) and, with a tuner's knobs, starts the tuner on them. The returned function stops both.
// Other observers (feeds) share its subscription: the engine publishes each event once.
func startMonitor(ctx context.Context, e *engine.Engine, tuner probes.Knobs, feeds ...func(engine.Event)) (*probes.Monitor, func()) {
	auto := tuner != nil
	mon := probes.NewMonitor(probes.AdvisorConfig{}, auto)
	kinds := []engine.EventKind{engine.CallEnd}
	if len(feeds) > 0 {
		kinds = append(kinds, engine.ControlChange)
	}
	sub := e.Subscribe(8192, kinds...) // a lost event only blurs a percentile
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		probes.Feed(sub, stop, append([]func(engine.Event){mon.Observe}, feeds...)...)
	}()
	tctx, cancel := context.WithCancel(ctx)
	if auto {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mon.Tuner(tuner).Run(tctx)
		}()
	}
	return mon, sync.OnceFunc(func() {
		cancel()
		close(stop)
		wg.Wait()
		sub.Close()
	})
}

// signals is the CLI's one place for SIGINT, SIGTERM and SIGHUP during a run.
type signals struct {
	done     chan struct{}
	received atomic.Bool
}

func (s *signals) stop() { close(s.done) }

// handleSignals drains the run on the first SIGINT or SIGTERM and stops it on a second
// SIGINT, telling the operator through say. SIGHUP — the terminal went away, an ssh link
// dropped — does not end the run: hangup is called once and the job goes on.
func handleSignals(env *Env, e *engine.Engine, say func(string), hangup func()) *signals {
	s := &signals{done: make(chan struct{})}
	go func() {
		interrupts := 0
		for {
			select {
			case <-s.done:
				return
			case sig := <-env.Signals:
				if sig == syscall.SIGHUP {
					if hangup != nil {
						hangup()
						hangup = nil
					}
					continue
				}
				s.received.Store(true)
				if sig == syscall.SIGINT {
					interrupts++
				}
				if interrupts >= 2 {
					say("second interrupt: cancelling the calls in flight; their items get failed rows")
					e.Stop("signal")
					continue
				}
				if e.State() < engine.Draining {
					say(fmt.Sprintf("%v: draining — no new calls; waiting for %d in flight (ctrl+c again to cancel them)", sig, e.Snapshot().InFlight))
					e.Drain("signal")
				}
			}
		}
	}()
	return s
}

// endOf gathers the end report of a run on one host: the summary, the latency over the whole
// run, the rows by cause, the settings at the end with their changes, and the command that
// retries only the failures.
func endOf(env *Env, rf *runFlags, e *engine.Engine, sum engine.Summary, mon *probes.Monitor, tally *rowTally) endReport {
	r := endReport{sum: sum, lat: mon.Overall(), out: rf.out, scratch: rf.scratchOut, rows: tally.snapshot(), settings: e.Settings(), changes: e.Changes()}
	if sum.Failed > 0 && !rf.scratchOut { // a retry of rows that are gone would run nothing
		r.retry = retryArgs(env.Args, rf.out)
	}
	return r
}
