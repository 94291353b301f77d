package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/control"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/tui"
)

func newAttachCmd(env *Env) *cobra.Command {
	var path string
	var fps int
	cmd := &cobra.Command{
		Use:   "attach [--control PATH]",
		Short: "Open the screen of a job that is already running",
		Long: `Open the same screen as 'throttle run' on a job that is already running (started
before an ssh drop, with --detach, or by someone else of your user), fed from its
control socket, with the same keys. q or ctrl+c detach and leave the job running;
d drains it. Several screens may attach at once.`,
		Example: `  throttle attach
  throttle attach --control /tmp/throttle-1000/4242.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !wantScreen(env, &runFlags{}) {
				return usageError("attach needs a terminal (use 'throttle ctl get' in scripts)")
			}
			sock, err := pickSocket(path)
			if err != nil {
				return err
			}
			r, err := control.Dial(sock)
			if err != nil {
				return &exitError{code: ExitFailures, err: err}
			}
			v := r.View()
			m := tui.New(r, r, tui.Options{Title: v.Title, Retries: v.Retries, Auto: v.Auto, FPS: fps, Plain: noColor(env), Attached: true})
			p := tea.NewProgram(m, tea.WithoutSignalHandler(), tea.WithFPS(fps), tea.WithOutput(env.Stdout))
			// Any signal — the terminal going away included — only detaches: the job is elsewhere.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				select {
				case <-env.Signals:
					p.Kill()
				case <-stop:
				}
			}()
			if _, err := p.Run(); err != nil && !errors.Is(err, tea.ErrProgramKilled) {
				return &exitError{code: ExitFailures, err: err}
			}
			switch s := r.View().Snapshot; {
			case s.Ended.IsZero():
				fmt.Fprintf(env.Stdout, "detached; the job goes on: throttle attach --control %s\n", sock)
			case r.Lost():
				fmt.Fprintln(env.Stdout, "the job went away before its end could be seen (its rows and log have its last numbers)")
			default: // the job's own summary numbers: its final snapshot's
				printSummary(env.Stdout, s.Summary(), probes.Stats{}, "")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "control", "", "the job's control socket (default: the only job running)")
	cmd.Flags().IntVar(&fps, "fps", 4, "refreshes per second")
	return cmd
}

// serveControl starts the run's control socket at --control or the default private place. A
// socket that cannot be made is a warning, not a failure: the run goes on without it.
func serveControl(env *Env, e engine.Controls, mon *probes.Monitor, rf *runFlags, title string, progress func() jobRows) (stop func(), where string) {
	path := rf.control
	if path == "" {
		var err error
		if path, err = control.DefaultPath(os.Getpid()); err != nil {
			fmt.Fprintf(env.Stderr, "warning: no control socket: %v\n", err)
			return func() {}, ""
		}
	}
	srv, err := control.Listen(path, e, title)
	if err != nil {
		fmt.Fprintf(env.Stderr, "warning: no control socket: %v\n", err)
		return func() {}, ""
	}
	srv.Viewer, srv.Retries, srv.Auto = mon, rf.retries, rf.auto
	if progress != nil {
		srv.Job = func() control.JobProgress {
			j := progress()
			return control.JobProgress{Rows: j.rows, Total: j.total, ETASeconds: j.eta.Seconds()}
		}
	}
	go srv.Serve()
	return func() { _ = srv.Close() }, srv.Path()
}

func newCtlCmd(env *Env) *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ctl [--control PATH] get | set KEY VALUE | pause | resume | drain | stop | list",
		Short: "Control a running job: read its state, change its knobs",
		Long: `Talk to a running job through its control socket (a private unix socket in
/tmp/throttle-UID, or --control PATH). With one job running, no --control is needed.

  get                 the live settings, counts and change log (--json for a script)
  set KEY VALUE       parallelism N | pace D | rate R | burst N, applied at once
  pause | resume      stop starting calls / start again
  drain | stop        end the run: let calls finish / cancel them
  list                the jobs of this user that are running

Every change is logged in the job's change log as "ctl".`,
		Example: `  throttle ctl get
  throttle ctl set parallelism 16
  throttle ctl --control /tmp/throttle-1000/4242.sock set rate 200/s`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "list" {
				return ctlList(env)
			}
			req := control.Request{Cmd: args[0]}
			switch args[0] {
			case "set":
				if len(args) != 3 {
					return usageError("ctl set takes a key and a value, e.g. ctl set parallelism 16")
				}
				req.Key, req.Value = args[1], args[2]
			case "get", "pause", "resume", "drain", "stop":
				if len(args) != 1 {
					return usageError("ctl %s takes no more arguments", args[0])
				}
			default:
				return usageError("unknown ctl command %q: get, set, pause, resume, drain, stop or list", args[0])
			}
			sock, err := pickSocket(path)
			if err != nil {
				return err
			}
			resp, err := control.Do(sock, req)
			if err != nil {
				return &exitError{code: ExitFailures, err: err}
			}
			if !resp.OK {
				return usageError("%s", resp.Error)
			}
			if asJSON {
				return json.NewEncoder(env.Stdout).Encode(resp.Status)
			}
			printStatus(env, resp.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "control", "", "the job's control socket (default: the only job running)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the state as JSON")
	return cmd
}

// pickSocket is --control, or the only live socket of this user.
func pickSocket(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	live, err := liveSockets()
	if err != nil {
		return "", usageError("%v", err)
	}
	switch len(live) {
	case 0:
		return "", usageError("no throttle job of yours is running (or give --control PATH)")
	case 1:
		return live[0].path, nil
	}
	var names []string
	for _, l := range live {
		names = append(names, l.path+" ("+l.title+")")
	}
	return "", usageError("%d jobs are running; pick one with --control: %s", len(live), strings.Join(names, ", "))
}

type liveSocket struct{ path, title string }

func liveSockets() ([]liveSocket, error) {
	paths, err := control.Sockets()
	if err != nil {
		return nil, err
	}
	var live []liveSocket
	for _, p := range paths {
		resp, err := control.Do(p, control.Request{Cmd: "get"})
		if err == nil && resp.OK {
			live = append(live, liveSocket{p, resp.Status.Title})
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			_ = os.Remove(p) // its run was killed before it could remove it
		}
	}
	return live, nil
}

func ctlList(env *Env) error {
	live, err := liveSockets()
	if err != nil {
		return usageError("%v", err)
	}
	if len(live) == 0 {
		fmt.Fprintln(env.Stdout, "no throttle job of yours is running")
		return nil
	}
	for _, l := range live {
		fmt.Fprintf(env.Stdout, "%s  %s\n", l.path, l.title)
	}
	return nil
}

func printStatus(env *Env, s *control.Status) {
	w := env.Stdout
	fmt.Fprintf(w, "%s (pid %d): %s\n", s.Title, s.PID, s.State)
	par, rate := fmt.Sprintf("parallelism %d", s.Parallelism), "rate "+s.Rate
	if s.EffectiveParallelism > 0 {
		par = fmt.Sprintf("parallelism %d effective · ceiling %d", s.EffectiveParallelism, s.Parallelism)
	}
	if s.EffectiveRate != "" {
		ceiling := s.Rate
		if ceiling == engine.FormatRate(0) {
			ceiling = "none"
		}
		rate = "rate " + s.EffectiveRate + " effective · ceiling " + ceiling
	}
	inFlight := fmt.Sprintf("in flight %d", s.InFlight)
	if s.Waiting > 0 && s.WaitingFor != "" {
		inFlight += fmt.Sprintf(", %d waiting for %s", s.Waiting, s.WaitingFor)
	}
	fmt.Fprintf(w, "%s (%s), pace %s, %s, burst %d\n", par, inFlight, s.Pace, rate, s.Burst)
	if s.Signals > 0 {
		limit := ""
		if s.TargetLimit != "" {
			limit = "; the target accepted " + s.TargetLimit + " when it last pushed back"
		}
		times := "times"
		if s.Signals == 1 {
			times = "time"
		}
		fmt.Fprintf(w, "the target pushed back %d %s%s\n", s.Signals, times, limit)
	}
	done := "done " + human.Count(s.OK+s.Failed) + " of ?"
	if s.Total >= 0 {
		done = "done " + human.Count(s.OK+s.Failed) + " of " + human.Count(s.Total)
	}
	if j := s.Job; j != nil && j.Total > 0 {
		// The coordinator of a job across hosts: the job's rows, then this host's counts.
		line := fmt.Sprintf("job: %s/%s rows %.1f%%", human.Count(j.Rows), human.Count(j.Total), 100*float64(j.Rows)/float64(j.Total))
		if j.ETASeconds > 0 {
			line += " · ETA " + human.Clock(time.Duration(j.ETASeconds*float64(time.Second)))
		}
		fmt.Fprintln(w, line)
		done = "this host: done " + human.Count(s.OK+s.Failed)
	}
	fmt.Fprintf(w, "%s: ok %s, failed %s · calls %s, retries %s, 429s %s, errors %s\n",
		done, human.Count(s.OK), human.Count(s.Failed), human.Count(s.Calls),
		human.Count(s.Retries), human.Count(s.TooMany), human.Count(s.Errors))
	if s.RateWindow != "" { // the screen's figures, with their window
		fmt.Fprintf(w, "%s: %.1f calls/s, 429s %.1f%%\n", s.RateWindow, s.CallsPerSecond, 100*s.TooManyShare)
	}
	for _, c := range changeLines(s.Changes) {
		fmt.Fprintln(w, "  "+c)
	}
}

// changeLines aligns the status's change log for reading: each change comes as "1m2s  what
// (origin)" (the time since the start as Go writes a duration, which is what --json keeps);
// printed, the time is a clock (1:02) right-aligned to the widest, so the changes start in
// one column.
func changeLines(changes []string) []string {
	clocks := make([]string, len(changes))
	rest := make([]string, len(changes))
	width := 0
	for i, c := range changes {
		at, what, ok := strings.Cut(c, "  ")
		d, err := time.ParseDuration(at)
		if !ok || err != nil {
			clocks[i], rest[i] = "", c
			continue
		}
		clocks[i], rest[i] = human.Clock(d), what
		width = max(width, len(clocks[i]))
	}
	out := make([]string, len(changes))
	for i := range changes {
		out[i] = fmt.Sprintf("%*s  %s", width, clocks[i], rest[i])
	}
	return out
}
