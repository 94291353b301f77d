package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/record"
	"github.com/throttle-dev/throttle/replay"
)

// replayFlags are the flags of `throttle replay`.
type replayFlags struct {
	headless bool
	export   string
	whatIf   string
	speed    string
	fps      int
}

func newReplayCmd(env *Env) *cobra.Command {
	f := &replayFlags{}
	cmd := &cobra.Command{
		Use:   "replay FILE",
		Short: "Replay a recorded run (TUI, or --headless summary), or ask what-if",
		Long: `Replay a run recorded with --record. On a terminal, the same screen as a live
run, with replay keys: space pauses, 1 2 3 4 play at 1x 10x 100x or as fast as possible,
←/→ seek 10s, PgUp/PgDn seek 1m, n jumps to the next change of a knob, b to the next burst
of 429s. With --headless (or without a terminal): the run's summary and a per-minute table
(calls/s, latency percentiles, 429 share, errors, parallelism, rate).

--what-if fits a model of the target from the recording (latency by calls in flight, where
429s began, the error share) and runs the real engine against it in virtual time with the
settings asked, then reports the predicted finish time, calls/s and 429s next to what the
recording did. It says when the recording has no data near the asked setting.`,
		Example: `  throttle run sim --input ids.txt --record run.rec --parallelism 8
  throttle replay run.rec                       # the screen, with replay keys
  throttle replay run.rec --headless            # summary and per-minute table
  throttle replay run.rec --what-if parallelism=64,rate=300
  throttle replay run.rec --export jsonl | jq -c 'select(.type=="change")'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplay(cmd, env, f, args[0])
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&f.headless, "headless", false, "no TUI: print the summary and a per-minute table (automatic when stdout is not a terminal)")
	fs.StringVar(&f.export, "export", "", "write the recording as plain JSON lines to stdout: jsonl")
	fs.StringVar(&f.whatIf, "what-if", "", "predict a run with other settings: parallelism=N,rate=R,pace=D,burst=N,auto=on (comma-separated)")
	fs.StringVar(&f.speed, "speed", "1x", "starting replay speed on the screen: 1x, 10x, 100x or max")
	fs.IntVar(&f.fps, "fps", 4, "screen refreshes per second (1-30)")
	return cmd
}

func runReplay(cmd *cobra.Command, env *Env, f *replayFlags, path string) error {
	switch {
	case f.export != "" && f.export != "jsonl":
		return usageError("--export %q: the one export format is jsonl", f.export)
	case f.export != "" && f.whatIf != "":
		return usageError("--export and --what-if do not go together")
	case f.fps < 1 || f.fps > 30:
		return usageError("--fps %d: want 1 to 30", f.fps)
	}
	if f.export != "" {
		file, err := os.Open(path)
		if err != nil {
			return usageError("%v", err)
		}
		defer func() { _ = file.Close() }()                                                       // read-only
		if err := record.Export(file, env.Stdout); err != nil && !errors.Is(err, syscall.EPIPE) { // | head is fine
			return usageError("%s: %v", path, err)
		}
		return nil
	}
	var ask *replay.WhatIf
	if f.whatIf != "" {
		w, err := replay.ParseWhatIf(f.whatIf)
		if err != nil {
			return usageError("--what-if: %v", err)
		}
		ask = &w
	}
	speed, err := replay.ParseSpeed(f.speed)
	if err != nil {
		return usageError("--speed: %v", err)
	}
	rec, err := record.Open(path)
	if err != nil {
		return usageError("%v", err)
	}
	if ask != nil {
		return printWhatIf(cmd, env.Stdout, rec, *ask)
	}
	if f.headless || !env.StdoutTTY || !wantScreen(env, &runFlags{}) {
		printReplay(env.Stdout, rec, path)
		return nil
	}
	return replayScreen(cmd.Context(), env, rec, path, speed, f.fps)
}

// describeRecording is the first line of a replay: what ran, when, where, how.
func describeRecording(rec *record.Recording, path string) string {
	h := rec.Header
	total := "unknown total"
	if h.Total >= 0 {
		total = human.Count(h.Total) + " items"
	}
	where := ""
	if h.Host != "" {
		where = " on " + h.Host
	}
	return fmt.Sprintf("%s: %s · %s · started %s%s · %s", path, h.Adapter, total,
		h.Started.UTC().Format("2006-01-02 15:04:05 UTC"), where, describeSettings(h.Settings.Engine()))
}

// printReplay writes a recording's summary — the same lines, computed the same way, as the
// live run printed — and its per-minute table.
func printReplay(w io.Writer, rec *record.Recording, path string) {
	fmt.Fprintln(w, describeRecording(rec, path))
	if rec.Cut {
		fmt.Fprintf(w, "the recording was cut off (the run crashed or is still going): replayed up to %s\n", human.Clock(rec.Elapsed()))
	}
	if rec.Dropped > 0 {
		fmt.Fprintf(w, "warning: the recorder missed %s (its buffer was full); numbers below are short by that much\n", human.Counted(rec.Dropped, "event", "events"))
	}
	s := replay.Summarize(rec)
	printSummary(w, s.Summary, s.Latency, "")
	if s.FromCalls {
		fmt.Fprintln(w, "(item totals counted from the calls: the recording has no end record)")
	}
	if s.Uncalled > 0 {
		were := "rows were"
		if s.Uncalled == 1 {
			were = "row was"
		}
		fmt.Fprintf(w, "%s %s written without a call (invalid input, or retries pending when the run drained)\n", human.Count(s.Uncalled), were)
	}
	for _, c := range rec.Changes {
		if c.Knob == "start" || c.Origin == "engine" {
			continue
		}
		fmt.Fprintf(w, "%s  %s\n", human.Clock(c.At), engine.Change{Origin: c.Origin, Knob: c.Knob, From: c.From, To: c.To})
	}
	fmt.Fprintln(w)
	writeMinutes(w, replay.Minutes(rec))
}

// writeMinutes writes the per-minute table.
func writeMinutes(w io.Writer, mins []replay.Minute) {
	fmt.Fprintf(w, "%-7s %9s %9s %9s %9s %6s %7s %5s %9s\n", "minute", "calls/s", "p50", "p95", "p99", "429", "errors", "par", "rate")
	for _, m := range mins {
		fmt.Fprintf(w, "%-7s %9.1f %9s %9s %9s %5.1f%% %7s %5d %9s\n", human.Clock(m.At), m.PerSecond(),
			latencyOrDash(m.P50, m.Calls), latencyOrDash(m.P95, m.Calls), latencyOrDash(m.P99, m.Calls),
			100*m.TooManyShare(), human.Count(m.Errors), m.Parallelism, engine.FormatRate(m.Rate))
	}
}

func latencyOrDash(d time.Duration, calls int64) string {
	if calls == 0 {
		return "-"
	}
	return human.Latency(d)
}

// printWhatIf runs the asked settings against a model of the recording's target and prints
// the prediction next to what the recording did.
func printWhatIf(cmd *cobra.Command, w io.Writer, rec *record.Recording, ask replay.WhatIf) error {
	p, err := replay.Predict(cmd.Context(), rec, ask)
	if err != nil {
		return err
	}
	fmt.Fprint(w, p.Report())
	return nil
}
