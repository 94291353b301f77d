package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"

	"golang.org/x/term"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/eventlog"
	"github.com/throttle-dev/throttle/internal/redact"
	"github.com/throttle-dev/throttle/notify"
)

// startEventLog starts the event log of --log (package eventlog) on e, before it runs; the
// returned function ends it with the run's summary and says on stderr when the log lost
// lines or could not be finished.
func startEventLog(_ context.Context, env *Env, rf *runFlags, e *engine.Engine, j job, title string) (func(engine.Summary), error) {
	f, err := openPrivate(env, "--log", rf.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return nil, usageError("--log: %v", err)
	}
	// Log lines appended to the results or the input would corrupt the one and add items to
	// the other.
	if st, err := f.Stat(); err == nil {
		for flag, path := range map[string]string{"--out": rf.out, "--input": rf.input} {
			if other, err := os.Stat(path); err == nil && os.SameFile(st, other) {
				_ = f.Close() // nothing was written to it yet
				return nil, usageError("--log %s is the %s file; give the log a file of its own", rf.logFile, flag)
			}
		}
	}
	l := eventlog.Start(f, e, eventlog.Job{
		Title: title, Adapter: j.name, Target: j.target, Input: rf.input, Out: rf.out,
		Retries: rf.retries, Timeout: rf.timeout, Chunk: rf.chunk, Auto: rf.auto, Version: versionString(),
	}, eventlog.Options{Scrub: newScrubber(env, rf).Text})
	return func(sum engine.Summary) {
		if err := l.End(sum); err != nil {
			fmt.Fprintf(env.Stderr, "throttle: --log %s: %v\n", rf.logFile, err)
		}
	}, nil
}

// envRef matches a ${NAME} placeholder of a template.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// newScrubber returns the scrubber of the secrets a run reads: the variables of every ${NAME}
// on its command line and in its job file (--config). The adapters scrub what they keep with
// the secrets of each call; this is the second lock, given to the engine (see [scrubHook]) and
// to the log, for adapters that do not know a secret (exec, whose command may print one) and
// for the texts no adapter looks at.
func newScrubber(env *Env, rf *runFlags) *redact.Vars {
	var names []string
	add := func(text string) {
		for _, m := range envRef.FindAllStringSubmatch(text, -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
	}
	for _, a := range env.Args {
		add(a)
	}
	if rf.config != "" {
		if b, err := os.ReadFile(rf.config); err == nil {
			add(string(b))
		}
	}
	return redact.NewVars(env.LookupEnv, names)
}

// scrubHook is the engine's [engine.Config.Redact]: the run's secrets scrubbed from every text
// the engine takes in, URLs left alone (an ok answer's output may hold URLs that are data, and
// the adapters redact those of their errors). nil when the run reads no variable.
func scrubHook(env *Env, rf *runFlags) func(string) string {
	v := newScrubber(env, rf)
	if v.Empty() {
		return nil
	}
	return v.String
}

// notifyEnd tells the operator that the run ended (package notify): the bell on stderr and,
// with --notify, a desktop notification. Nothing is written unless stderr is a terminal.
func notifyEnd(env *Env, rf *runFlags, sum engine.Summary) {
	if !stderrTerminal(env) {
		return
	}
	_, tmux := env.LookupEnv("TMUX")
	_, _ = io.WriteString(env.Stderr, notify.End(sum, rf.notify, tmux)) // a bell and a notification on the terminal: nobody to tell if it fails
}

// stderrTerminal reports whether env's stderr is a terminal. Env says so of stdout only; a
// stderr that is a file can be asked, and any other is taken to go where stdout goes.
func stderrTerminal(env *Env) bool {
	if f, ok := env.Stderr.(interface{ Fd() uintptr }); ok {
		return term.IsTerminal(int(f.Fd()))
	}
	return env.StdoutTTY
}
