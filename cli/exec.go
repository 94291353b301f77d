package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/adapters"
)

func init() { registerAdapter(20, newExecCmd) }

// execFlags are the flags of the exec adapter; the command itself comes after --.
type execFlags struct {
	stdin     bool
	maxOutput string
	retryExit string
	killGrace time.Duration
}

func (f *execFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&f.stdin, "stdin", false, "write the item (the line, or a JSONL object's text) and a newline to the command's stdin; arguments are taken as they are")
	fs.StringVar(&f.maxOutput, "max-output", "64KiB", "stdout bytes kept in a row's output (e.g. 4KiB, 1MiB)")
	fs.StringVar(&f.retryExit, "retry-exit", "", "exit codes to retry, e.g. 75 or 6,7,28 (default none: every non-zero exit fails)")
	fs.DurationVar(&f.killGrace, "kill-grace", adapters.DefaultKillGrace, "after --timeout or a stop: time between SIGTERM and SIGKILL to the command's process group")
}

// config checks the flags and the command after -- (args, with dash from ArgsLenAtDash).
func (f *execFlags) config(args []string, dash int) (adapters.ExecConfig, error) {
	switch {
	case dash > 0:
		return adapters.ExecConfig{}, usageError("exec: %q before --: the command and its arguments go after --, e.g. throttle run exec --input urls.txt -- curl -sf {item}", args[0])
	case dash < 0 && len(args) > 0:
		return adapters.ExecConfig{}, usageError("exec: put the command after --, so that its flags are not read as throttle's: throttle run exec [flags] -- %s …", args[0])
	case len(args) == 0:
		return adapters.ExecConfig{}, usageError("exec needs a command after --, e.g. throttle run exec --input urls.txt -- curl -sf {item}")
	}
	maxOutput, err := parseSize(f.maxOutput)
	if err != nil {
		return adapters.ExecConfig{}, usageError("--max-output: %v", err)
	}
	if maxOutput == 0 {
		return adapters.ExecConfig{}, usageError("--max-output 0: must be positive (to keep nothing, send stdout to /dev/null in the command)")
	}
	retry, err := parseExitList(f.retryExit)
	if err != nil {
		return adapters.ExecConfig{}, usageError("--retry-exit: %v", err)
	}
	if f.killGrace <= 0 {
		return adapters.ExecConfig{}, usageError("--kill-grace %v: must be positive (e.g. 100ms)", f.killGrace)
	}
	return adapters.ExecConfig{Command: args, Stdin: f.stdin, MaxOutput: maxOutput, RetryExit: retry, KillGrace: f.killGrace}, nil
}

// parseExitList parses "75,111" or "64-78" into the exit codes it names; "" gives nil.
func parseExitList(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, errA := strconv.Atoi(strings.TrimSpace(lo))
		b, errB := a, error(nil)
		if isRange {
			b, errB = strconv.Atoi(strings.TrimSpace(hi))
		}
		if errA != nil || errB != nil || a < 1 || b > 255 || a > b {
			return nil, fmt.Errorf("%q: want exit codes or ranges from 1 to 255, e.g. 75,111 (0 is already ok)", strings.TrimSpace(part))
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

func newExecCmd(env *Env, act action) *cobra.Command {
	ef := &execFlags{}
	cmd := &cobra.Command{
		Use:   "exec [flags] -- COMMAND [ARGS…]",
		Short: "Run a command once per item (xargs -P with live knobs)",
		Long: `Run a command once per item, as xargs -P or GNU parallel would, but under limits you
can change while it runs and with one result row per item.

The command comes after --, and runs directly: no shell unless you ask for one. In
its arguments {item} is the input line and {.field} a field of a JSONL item; each
stays one argument whatever it holds. With --stdin the item (the line, or a JSONL
object's text) and a newline go to the command's stdin instead, and the arguments
are taken as they are. An item that starts with - reads as an option to most
programs: put it after the program's own --, or inside a URL.

Need a shell (a pipe, a redirection)? Ask for one: -- sh -c '…' sh {item}, and read
the item as "$1" in the script. Never put {item} inside the script: an item would
become shell code.

${NAME} is refused in arguments: a secret in argv is visible to every user through
ps. The command inherits throttle's environment, so it reads the variable itself
(PGPASSWORD for psql, or $NAME in sh -c; throttle reads ${NAME} as its own).

Exit 0 is ok: stdout goes into the row's "output", as JSON when it is JSON, else as
a string without its trailing newlines, cut at --max-output ("truncated": true).
Another exit fails with its status and the tail of stderr; --retry-exit lists exit
codes to retry like a 503 (after --retries, the row fails). Killed by a signal: fails.

Each call runs in a process group of its own. At --timeout (retried like any
timeout) or when the run is stopped, the group gets SIGTERM, then SIGKILL after
--kill-grace; when the command exits, whatever it left running in its group is
killed. A first ctrl+c does not reach the commands: it drains the run, and the calls
in flight finish.`,
		Example: `  # Warm a CDN cache (-S: curl's errors go into the rows); retry its DNS, connect and
  # timeout failures (exit 6, 7, 28):
  throttle run exec --input paths.txt --parallelism 8 --rate 20/s \
      --retry-exit 6,7,28 -- curl -sSf -o /dev/null \
      -w '{"code":%{http_code},"s":%{time_total}}' 'https://example.com/{item}'

  # A script that reads one JSON object on stdin and prints its result as JSON:
  throttle run exec --input users.jsonl --stdin --parallelism 4 \
      -- python3 transform.py

  # A pipeline needs a shell: the item goes in as $1, never inside the script.
  throttle run exec --input urls.txt \
      -- sh -c 'curl -sfL "$1" | sha256sum | cut -c1-64' sh {item}

  # One database transaction per id. The password comes from the environment, and
  # psql quotes the id itself (:'id' in backfill_one.sql):
  export PGPASSWORD=…
  throttle run exec --input ids.txt --parallelism 4 --timeout 5m \
      --retry-exit 2 -- psql -h db.internal -U app -X -q -tA \
      -v ON_ERROR_STOP=1 -v id={item} -f backfill_one.sql`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := ef.config(args, cmd.ArgsLenAtDash())
			if err != nil {
				return err
			}
			x, err := adapters.NewExec(cfg)
			if err != nil {
				return usageError("%v", err)
			}
			return act(cmd, job{adapter: x, name: "exec", target: x.String()})
		},
	}
	ef.register(cmd)
	return cmd
}
