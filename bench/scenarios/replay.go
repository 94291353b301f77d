package main

// ---- replay: --record, and `throttle replay --headless` of a million-call recording ----

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// replayCalls is the size of the run the replay scenario records and replays: the issue's
// goal is a headless replay of a million calls in under 3 s.
const replayCalls = 1_000_000

// replayCalled is the calls count of a replay's latency line: "… over 1,000,000 calls".
var replayCalled = regexp.MustCompile(`(?m)^latency p50 .* over ([\d,]+) calls$`)

// replayScenario measures, with the real binary and each figure the median of o.n runs:
// `run sim` of a million items as fast as the engine goes, without and with --record (the
// engine's items/s, from the summary line: the recorder's cost at full speed, where nothing
// hides it); the recording's bytes per call; and `throttle replay FILE --headless`, its wall
// time (the goal: under 3 s) and peak RSS.
//
// The simulated target answers in 1 ns, so the recorded latencies are a few microseconds:
// a recording of a real target, with more digits to its latencies, is larger per call.
func replayScenario(o *options) ([]*figure, error) {
	input, err := writeIDs(o, replayCalls)
	if err != nil {
		return nil, err
	}
	rec := filepath.Join(o.tmp, "big.rec")
	runArgs := []string{"run", "sim", "--input", input, "--out", o.out, "--parallelism", "64",
		"--sim-latency", "1ns", "--sim-sigma", "0", "--headless"}
	recArgs := append(slices.Clip(runArgs), "--record", rec)
	replayArgs := []string{"replay", rec, "--headless"}
	show := func(args []string) string {
		s := o.bin + " " + strings.Join(args, " ")
		return strings.NewReplacer(input, "FILE", rec, "big.rec").Replace(s)
	}
	label := fmt.Sprintf("%s calls: ", group(strconv.Itoa(replayCalls)))
	off := &figure{name: label + "run sim, engine items/s, without --record", unit: "items/s", goal: "—",
		command: show(runArgs), worst: slices.Min[[]float64]}
	on := &figure{name: label + "run sim, engine items/s, with --record", unit: "items/s", goal: "—",
		command: show(recArgs), worst: slices.Min[[]float64]}
	size := &figure{name: label + "recording size per call", unit: "B/call", goal: "—",
		command: show(recArgs), decimals: 1}
	wall := &figure{name: label + "replay --headless, wall clock", unit: "s", goal: "< 3 s",
		command: show(replayArgs) + " > /dev/null", worst: slices.Max[[]float64], decimals: 2}
	rss := &figure{name: label + "replay --headless, peak RSS", unit: "MB", goal: "—",
		command: show(replayArgs) + " > /dev/null", worst: slices.Max[[]float64]}
	figs := []*figure{off, on, size, wall, rss}
	note := func(n string) {
		if !slices.Contains(wall.notes, n) {
			wall.notes = append(wall.notes, n)
		}
	}
	for range o.n {
		// Without, then with --record, back to back, so that both meet the same noise.
		r, err := runChild(o.bin, runArgs, nil)
		if err != nil {
			return figs, err
		}
		if r.exit != 0 || r.summaryRate == 0 {
			return figs, fmt.Errorf("%s: exit status %d: %s", show(runArgs), r.exit, r.stderrTail)
		}
		off.values = append(off.values, r.summaryRate)
		if r, err = runChild(o.bin, recArgs, nil); err != nil {
			return figs, err
		}
		if r.exit != 0 || r.summaryRate == 0 {
			return figs, fmt.Errorf("%s: exit status %d: %s", show(recArgs), r.exit, r.stderrTail)
		}
		on.values = append(on.values, r.summaryRate)
		fi, err := os.Stat(rec)
		if err != nil {
			return figs, err
		}
		size.values = append(size.values, float64(fi.Size())/replayCalls)

		var out bytes.Buffer // a few lines: no cost beside the file's
		r, err = runChild(o.bin, replayArgs, &out)
		if err != nil {
			return figs, err
		}
		if r.exit != 0 {
			return figs, fmt.Errorf("%s: exit status %d: %s", show(replayArgs), r.exit, r.stderrTail)
		}
		wall.values = append(wall.values, r.wall.Seconds())
		if r.maxRSSExists {
			rss.values = append(rss.values, float64(r.maxRSSKiB)*1024/1e6)
		}
		// A recorder that missed events leaves a smaller recording: say so next to the time.
		m := replayCalled.FindStringSubmatch(out.String())
		if m == nil {
			return figs, fmt.Errorf("%s: no latency line in its output:\n%s", show(replayArgs), out.String())
		}
		if got := strings.ReplaceAll(m[1], ",", ""); got != strconv.Itoa(replayCalls) {
			note(fmt.Sprintf("a recording held %s calls, not %s (the recorder missed events)", m[1], group(strconv.Itoa(replayCalls))))
		}
	}
	return figs, nil
}

// runChild runs the binary with args, with a deadline, its stdout to stdout (nil: discarded),
// and returns its wall time, exit status, peak RSS, the items/s of its summary line and the
// last line of its stderr.
func runChild(bin string, args []string, stdout io.Writer) (childRun, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr, summary bytes.Buffer // the summary is on stdout, progress on stderr
	cmd.Stdout, cmd.Stderr = &summary, &stderr
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(stdout, &summary)
	}
	t := time.Now()
	err := cmd.Run()
	r := childRun{wall: time.Since(t)}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return r, err
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("%s did not finish within 3 minutes", bin)
	}
	r.exit = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSSKiB, r.maxRSSExists = ru.Maxrss, true // KiB on Linux
	}
	if m := summaryRate.FindAllStringSubmatch(summary.String()+stderr.String(), -1); m != nil {
		r.summaryRate, _ = strconv.ParseFloat(m[len(m)-1][1], 64)
	}
	tail := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	r.stderrTail = tail[len(tail)-1]
	return r, nil
}
