// Package cli holds throttle's commands. Each command takes its dependencies (streams,
// environment, signals, whether stdout is a terminal) from an [Env], so that it can be tested
// without a process of its own.
package cli

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit statuses of the contract.
const (
	ExitOK          = 0   // every item ok
	ExitFailures    = 1   // the run finished and some items failed (all recorded)
	ExitUsage       = 2   // usage or configuration error: nothing was called
	ExitInterrupted = 130 // interrupted: in-flight calls drained, every finished item recorded
)

// Version is the program's version, set at build time with -ldflags "-X …/cli.Version=v1.2.3".
var Version = ""

// Env is everything a command takes from its process.
type Env struct {
	Args      []string // without the program name
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer
	LookupEnv func(string) (string, bool)
	// StdoutTTY says whether stdout is a terminal (no TUI and no colour otherwise).
	StdoutTTY bool
	// Signals delivers SIGINT, SIGTERM and SIGHUP: the first drains the run, a second SIGINT
	// stops it.
	Signals <-chan os.Signal
}

// System returns the Env of this process and starts catching its signals. SIGPIPE is ignored
// so that `throttle … 2>&1 | head` cannot kill a backfill; SIGHUP is caught only if it is not
// already ignored (a job started under nohup keeps ignoring it).
func System() Env {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	if !signal.Ignored(syscall.SIGHUP) {
		signal.Notify(sig, syscall.SIGHUP)
	}
	signal.Ignore(syscall.SIGPIPE)
	return Env{
		Args:      os.Args[1:],
		Stdin:     os.Stdin,
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
		LookupEnv: os.LookupEnv,
		StdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		Signals:   sig,
	}
}

// exitError carries an exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as a usage or configuration error (exit 2, nothing called).
func usageError(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode is a command's result when it has nothing to print.
func exitCode(code int) error { return &exitError{code: code} }

// Main runs the command line in env and returns the process's exit status.
func Main(env Env) int {
	if env.LookupEnv == nil {
		env.LookupEnv = func(string) (string, bool) { return "", false }
	}
	root := newRoot(&env)
	root.SetArgs(env.Args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return ExitOK
	}
	return printError(env.Stderr, cmd, err)
}

func init() {
	cobra.EnableCommandSorting = false // help lists commands and adapters in the order they are added
}

func newRoot(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "throttle",
		Short: "Run big backfill jobs as fast as the other system allows, and no faster",
		Long: `throttle runs a finite list of work items (IDs, URLs, prompts, rows) through an
adapter (http, sim, …) under limits you can change while it runs: parallelism,
per-worker pacing and a global rate cap. Every item ends as one JSON line in the
results file, success or failure, so the results are also the retry manifest.

Start low, watch the 429s and latency, raise after clean logs.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		CompletionOptions: cobra.CompletionOptions{
			DisableDefaultCmd: true,
		},
	}
	installHelp(root, env)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%v (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(newRunCmd(env), newDemoCmd(env), newProbeCmd(env), newCtlCmd(env), newAttachCmd(env), newReplayCmd(env), newJoinCmd(env), newLimitCmd(env), newVersionCmd(env))
	root.AddCommand(newCompletionCmd(env))
	return root
}

func versionString() string {
	v := Version
	bi, ok := debug.ReadBuildInfo()
	if v == "" && ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "dev"
	}
	goVersion := "unknown"
	if ok {
		goVersion = bi.GoVersion
	}
	return fmt.Sprintf("throttle %s (%s)", v, goVersion)
}

func newVersionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(env.Stdout, versionString())
			return nil
		},
	}
}
