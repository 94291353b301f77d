package main

// ---- shares: how the calls of one job spread over its hosts ----

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sharesScenario measures, with the real binary and a Redis from THROTTLE_TEST_REDIS, each
// host's share of a job's calls when a coordinator and two hosts that join share it (the
// figure the median of o.n runs, each run's shares in the notes):
//   - a global cap that binds: --parallelism 6, 600 items of 100 ms: the smallest host's
//     share (every host should have its fair share of the cap; want ≥ 15%);
//   - a cap that does not bind: 16 per host (--host-parallelism 16), 3,000 items of 50 ms:
//     the largest distance of a host's share from a third, relative to a third (want ≤ 20%).
func sharesScenario(o *options) ([]*figure, error) {
	url := os.Getenv("THROTTLE_TEST_REDIS")
	if url == "" {
		return nil, fmt.Errorf("set THROTTLE_TEST_REDIS (e.g. redis://127.0.0.1:6379/0) to measure jobs across hosts")
	}
	slow100, stop100, err := benchServer(100 * time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer stop100()
	slow50, stop50, err := benchServer(50 * time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer stop50()
	in600, err := writeIDs(o, 600)
	if err != nil {
		return nil, err
	}
	in3000, err := writeIDs(o, 3000)
	if err != nil {
		return nil, err
	}
	base := func(in, srv string) []string {
		return []string{"run", "http", "--input", in, "--out", o.out, "--url", srv + "/{item}", "--headless", "--timeout", "5s"}
	}
	job := func(i int) string { return fmt.Sprintf("bench-shares-%d-%d", os.Getpid(), i) }
	capped := func(i int) []string {
		return append(base(in600, slow100), "--parallelism", "6", "--redis", url, "--job", job(i))
	}
	open := func(i int) []string {
		return append(base(in3000, slow50), "--parallelism", "1000", "--host-parallelism", "16", "--redis", url, "--job", job(i))
	}
	least := &figure{name: "cap 6 binds, 600 calls of 100 ms, 3 hosts: the smallest host's share", unit: "%", goal: "≥ 15", decimals: 1,
		command: o.bin + " " + join(capped(0)) + " + 2 × join", worst: slices.Min[[]float64]}
	spread := &figure{name: "16 per host, 3,000 calls of 50 ms, 3 hosts: largest distance from a third", unit: "% of ⅓", goal: "≤ 20", decimals: 1,
		command: o.bin + " " + join(open(0)) + " + 2 × join", worst: slices.Max[[]float64]}
	for i := range o.n {
		calls, err := hostsCalls(o.bin, capped(10*i+1), url, job(10*i+1), 2)
		if err != nil {
			return []*figure{least, spread}, err
		}
		s := shares(calls)
		least.values = append(least.values, 100*slices.Min(s))
		least.notes = append(least.notes, fmt.Sprintf("run %d: calls %v, shares %s", i+1, calls, percents(s)))
		if calls, err = hostsCalls(o.bin, open(10*i+2), url, job(10*i+2), 2); err != nil {
			return []*figure{least, spread}, err
		}
		s = shares(calls)
		d := 0.0
		for _, x := range s {
			d = max(d, math.Abs(x-1.0/3)*3)
		}
		spread.values = append(spread.values, 100*d)
		spread.notes = append(spread.notes, fmt.Sprintf("run %d: calls %v, shares %s", i+1, calls, percents(s)))
	}
	return []*figure{least, spread}, nil
}

var summaryCalls = regexp.MustCompile(`(?m)^(?:the job [\d.]+ items/s · this host )?([\d,]+) calls, `) // a coordinator says which figures are its own

// hostsCalls runs a coordinator and n hosts that join its job, each to its end, and returns
// the calls each made (the coordinator's first), from their end summaries.
func hostsCalls(bin string, args []string, url, job string, n int) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	outs := make([]*bytes.Buffer, n+1)
	cmds := make([]*exec.Cmd, n+1)
	for i := range cmds {
		a := args
		if i > 0 {
			a = []string{"join", "--redis", url, "--job", job, "--headless"}
		}
		outs[i] = &bytes.Buffer{}
		cmds[i] = exec.CommandContext(ctx, bin, a...)
		cmds[i].Stdout = outs[i]
		if err := cmds[i].Start(); err != nil {
			return nil, err
		}
		if i == 0 {
			time.Sleep(300 * time.Millisecond) // the coordinator defines the job first
		}
	}
	calls := make([]int, len(cmds))
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			return nil, fmt.Errorf("host %d of %s: %w", i, job, err)
		}
		m := summaryCalls.FindStringSubmatch(outs[i].String())
		if m == nil {
			return nil, fmt.Errorf("host %d of %s: no end summary: %s", i, job, outs[i])
		}
		calls[i], _ = strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	}
	return calls, nil
}

func shares(calls []int) []float64 {
	total := 0
	for _, c := range calls {
		total += c
	}
	s := make([]float64, len(calls))
	for i, c := range calls {
		s[i] = float64(c) / float64(max(total, 1))
	}
	return s
}

func percents(s []float64) string {
	p := make([]string, len(s))
	for i, x := range s {
		p[i] = fmt.Sprintf("%.0f%%", 100*x)
	}
	return strings.Join(p, " · ")
}
