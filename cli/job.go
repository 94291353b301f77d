package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// job is what a command hands to runJob: the adapter and how to name the job.
type job struct {
	adapter engine.Adapter
	name    string // the adapter's name
	target  string // what it calls, for a recording's header: no secrets
	// hosts, when set, lists the busiest hosts of a run with per-host limits (the screen shows them).
	hosts func(n int) []adapters.HostLoad
	// connections, when set, counts the connections the adapter holds open (one per worker).
	connections func() int
	// binding, when set, says which shared limit holds the run back (throttle limit).
	binding func() string
	// controls, when set, is what the screen steers instead of the local engine (a shared job's
	// settings, which every host follows).
	controls engine.Controls
	title    string // the screen's title; default "name · input"
}

// input is an opened --input.
type input struct {
	source engine.Source
	total  int64
	name   string
	close  func() error
}

// openInput opens --input ("-" is stdin) and counts its items in a fast first pass, so that
// progress has a total; stdin's total is unknown.
func openInput(env *Env, path string) (*input, error) {
	if path == "" {
		return nil, usageError("--input is required: a file of items, one per line, or - for stdin")
	}
	jsonl := strings.HasSuffix(strings.ToLower(path), ".jsonl")
	if path == "-" {
		return &input{source: engine.NewLineReader(env.Stdin, false), total: -1, name: "stdin", close: func() error { return nil }}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError("--input: %v", err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, usageError("--input %s is a directory; want a file of items", path)
	}
	total, err := engine.CountItems(f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, usageError("--input: %v", err)
	}
	return &input{source: engine.NewLineReader(f, jsonl), total: total, name: path, close: f.Close}, nil
}

// runJob runs one job to its end and maps its outcome to the contract's exit status.
func runJob(ctx context.Context, env *Env, rf *runFlags, j job) error {
	settings, err := rf.settings()
	if err != nil {
		return err
	}
	if n, why := engine.DefaultMaxParallelism(); settings.MaxParallelism > n {
		fmt.Fprintf(env.Stderr, "warning: --max-parallelism %d is above the default ceiling %d (%s): so many calls in flight may run out of memory or open files\n", settings.MaxParallelism, n, why)
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
	if rf.job != "" {
		return runClusterJob(ctx, env, rf, j, settings)
	}
	if rf.detach {
		if rf.input == "-" {
			return usageError("--detach cannot read items from stdin")
		}
		return detach(env, rf)
	}
	if rf.resume && rf.onlyFailed {
		return usageError("--resume and --only-failed do not go together: --only-failed already runs only what is not ok")
	}
	open := func() (*input, error) { return openInput(env, rf.input) }
	if rf.onlyFailed {
		open = func() (*input, error) { return onlyFailed(rf.input) }
	}
	in, err := open() // first, so that a bad --input leaves no results file behind
	if err != nil {
		return err
	}
	defer func() { in.close() }()
	out, err := openResults(rf.out)
	if err != nil {
		return err
	}
	defer out.Close()
	if rf.resume {
		reopen := open
		if rf.input == "-" {
			reopen = nil
		}
		if err := resume(env, out, rf.out, in, reopen); err != nil {
			return err
		}
	}
	if rf.dedupe {
		dedupe(in)
	}

	e, err := engine.New(engine.Config{
		Settings: settings, Retries: rf.retries, MaxBackoff: rf.maxBackoff, Timeout: rf.timeout,
		Chunk: rf.chunk, Adapter: j.adapter, Source: in.source, Total: in.total, Results: out, SyncEvery: rf.fsyncEvery,
		Adapt: rf.adapt, Hold: rf.holdMode(),
	})
	if err != nil {
		return usageError("%v", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	title := j.title
	if title == "" {
		title = fmt.Sprintf("%s · %s", j.name, in.name)
	}
	var (
		sum    engine.Summary
		runErr error
	)
	rec, err := startRecording(rf, j, in, settings, e)
	if err != nil {
		return err
	}
	obs, err := startObservers(ctx, env, rf, e, j, title)
	if err != nil {
		stopRecording(env, rec, engine.Summary{}, rf.record)
		return err
	}
	mon, stopMonitor := startMonitor(ctx, e, rf.auto, obs.feeds...)
	defer stopMonitor()
	stopControl, sock := serveControl(env, e, mon, rf, title)
	defer stopControl()

	if wantScreen(env, rf) {
		sum, runErr = runScreen(ctx, env, e, mon, title, rf, j)
		stopRecording(env, rec, sum, rf.record)
		printSummary(env.Stdout, sum, mon.Overall(), rf.out)
	} else {
		rep := startHeadless(env.Stderr, e, mon, title, rf.progressEvery)
		if sock != "" {
			rep.say("control: throttle ctl --control " + sock + " get · throttle attach --control " + sock)
		}
		sig := handleSignals(env, e, rep.say, func() {
			// Progress lines go on in a log next to the results; stderr is likely a dead tty.
			if f, err := os.OpenFile(rf.out+".log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
				rep.redirect(f)
				rep.say("SIGHUP: the terminal went away; the job goes on (throttle attach to watch it)")
			}
		})
		sum, runErr = e.Run(ctx)
		sig.stop()
		rep.stop()
		stopRecording(env, rec, sum, rf.record)
		rep.summary(sum, mon.Overall(), rf.out)
	}
	stopMonitor() // every event fed, before the observers take the run's end
	obs.finish(env, rf, sum)

	switch {
	case runErr != nil:
		return &exitError{code: ExitFailures, err: runErr}
	case sum.Interrupted():
		return exitCode(ExitInterrupted)
	case sum.Failed > 0 || sum.Lost > 0:
		return exitCode(ExitFailures)
	}
	return nil
}

// startMonitor feeds a probes.Monitor from the run's events (for the screen, the advice and
// the auto-tuner) and, with auto, starts the tuner. The returned function stops both.
// Other observers (feeds) share its subscription: the engine publishes each event once.
func startMonitor(ctx context.Context, e *engine.Engine, auto bool, feeds ...func(engine.Event)) (*probes.Monitor, func()) {
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
			mon.Tuner(e).Run(tctx)
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
