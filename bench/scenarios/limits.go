package main

// ---- limits: how well throttle finds and holds a server's limit, beside a plain script ----

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/throttle-dev/throttle/adapters"
)

// The simulated servers of the limits scenario: a median latency of 50 ms with a heavy tail
// (sigma 0.9: p99 ≈ 8 × the median), so the mean latency is 50 ms · e^(0.9²/2) ≈ 75 ms.
const (
	limitsLatency = 50 * time.Millisecond
	limitsSigma   = 0.9
	limitsSeed    = 17
	// limitsBucket is the width of the timeline buckets; a "1 s ok rate" is the ok answers of
	// 100 consecutive buckets.
	limitsBucket = 10 * time.Millisecond
	// limitsDeadline is how many ideal job lengths a contestant may take before it is killed.
	limitsDeadline = 6
)

// limitsMeanLatency is the mean of the lognormal latency: median · e^(σ²/2).
var limitsMeanLatency = time.Duration(float64(limitsLatency) * math.Exp(limitsSigma*limitsSigma/2))

// limitShape is a server's limit: the sim that has it and the ok rate that is ideal against it.
type limitShape struct {
	name, desc string
	cfg        adapters.SimConfig
	limit      float64 // the most ok answers per second the server gives (the first phase's)
	conc       bool    // a concurrency limit: the contestants set parallelism, not a rate
	// phases, when set, change the rate limit at fractions of the ideal job length (halve,
	// double): a first phase and one change.
	phases []limitPhase
}

type limitPhase struct {
	at   float64 // fraction of the job length
	rate float64
}

// items is the job's size: the ok answers an ideal client gets in job.
func (s limitShape) items(job time.Duration) int {
	if len(s.phases) == 0 {
		return int(math.Round(job.Seconds() * s.limit))
	}
	n := 0.0
	for i, p := range s.phases {
		end := 1.0
		if i+1 < len(s.phases) {
			end = s.phases[i+1].at
		}
		n += (end - p.at) * job.Seconds() * p.rate
	}
	return int(math.Round(n))
}

// change is the shape's change of limit, if it has one.
func (s limitShape) change() (limitPhase, bool) {
	if len(s.phases) < 2 {
		return limitPhase{}, false
	}
	return s.phases[1], true
}

// topLimit is the highest limit of the job: what the contestants' settings are 25% over.
func (s limitShape) topLimit() float64 {
	top := s.limit
	for _, p := range s.phases {
		top = max(top, p.rate)
	}
	return top
}

func limitShapes() []limitShape {
	base := adapters.SimConfig{Latency: limitsLatency, Sigma: limitsSigma, Seed: limitsSeed}
	with := func(f func(*adapters.SimConfig)) adapters.SimConfig {
		c := base
		f(&c)
		return c
	}
	concIdeal := 16 / limitsMeanLatency.Seconds()
	return []limitShape{
		{name: "bucket", desc: "token bucket 200/s, burst 10, 429 with Retry-After: 1",
			cfg: with(func(c *adapters.SimConfig) { c.Rate, c.Burst, c.RetryAfter = 200, 10, time.Second }), limit: 200},
		{name: "window", desc: "fixed window: 400 calls per 2 s (X-RateLimit-* headers; 429 with Retry-After to the window's end)",
			cfg: with(func(c *adapters.SimConfig) { c.Quota, c.Window = 400, 2*time.Second }), limit: 200},
		{name: "conc429", desc: fmt.Sprintf("16 calls at once, 429 without Retry-After past them (ideal 16 / mean latency = %.0f/s)", concIdeal),
			cfg: with(func(c *adapters.SimConfig) { c.Concurrency, c.Overload = 16, adapters.Overload429 }), limit: concIdeal, conc: true},
		{name: "conclat", desc: fmt.Sprintf("16 calls at once, latency grows past them (ideal %.0f/s)", concIdeal),
			cfg: with(func(c *adapters.SimConfig) { c.Concurrency, c.Overload = 16, adapters.OverloadLatency }), limit: concIdeal, conc: true},
		{name: "halve", desc: "token bucket 200/s (burst 10, Retry-After: 1), halved to 100/s from half the job",
			cfg:   with(func(c *adapters.SimConfig) { c.Rate, c.Burst, c.RetryAfter = 200, 10, time.Second }),
			limit: 200, phases: []limitPhase{{0, 200}, {0.5, 100}}},
		{name: "double", desc: "token bucket 100/s (burst 10, Retry-After: 1), doubled to 200/s from a third of the job",
			cfg:   with(func(c *adapters.SimConfig) { c.Rate, c.Burst, c.RetryAfter = 100, 10, time.Second }),
			limit: 100, phases: []limitPhase{{0, 100}, {1.0 / 3, 200}}},
	}
}

// contestant is one way to run the job: it gives the command for a shape.
type contestant struct {
	name string
	cmd  func(o *options, s limitShape, url, input, out string) (bin string, args []string)
}

// overSettings are the settings 25% above what the shape's (highest) limit needs: a rate of
// 1.25 × the limit and enough workers for 1.25 × that rate at the mean latency; for a
// concurrency limit, 1.25 × the concurrency and no rate.
func overSettings(s limitShape) (parallelism int, rate float64) {
	if s.conc {
		return int(math.Ceil(float64(s.cfg.Concurrency) * 1.25)), 0
	}
	top := s.topLimit()
	return int(math.Ceil(1.25 * 1.25 * top * limitsMeanLatency.Seconds())), 1.25 * top
}

func limitContestants() []contestant {
	throttle := func(o *options, url, input, out string, extra ...string) (string, []string) {
		return o.bin, append([]string{"run", "http", "--headless", "--url", url + "/items/{item}", "--input", input,
			"--out", out, "--retries", "6"}, extra...)
	}
	over := func(o *options, s limitShape, url, input, out string, more ...string) (string, []string) {
		p, r := overSettings(s)
		extra := []string{"--parallelism", strconv.Itoa(p)}
		if r > 0 {
			extra = append(extra, "--rate", strconv.FormatFloat(r, 'f', -1, 64))
		}
		return throttle(o, url, input, out, append(extra, more...)...)
	}
	return []contestant{
		{"throttle 25% over", func(o *options, s limitShape, url, input, out string) (string, []string) {
			return over(o, s, url, input, out)
		}},
		{"  same, --hold probe", func(o *options, s limitShape, url, input, out string) (string, []string) {
			return over(o, s, url, input, out, "--hold", "probe")
		}},
		{"throttle --auto from 2", func(o *options, s limitShape, url, input, out string) (string, []string) {
			return throttle(o, url, input, out, "--auto", "--parallelism", "2", "--max-parallelism", "64")
		}},
		{"  same (--auto), --hold probe", func(o *options, s limitShape, url, input, out string) (string, []string) {
			return throttle(o, url, input, out, "--auto", "--parallelism", "2", "--max-parallelism", "64", "--hold", "probe")
		}},
		{"script 25% over", func(o *options, s limitShape, url, input, out string) (string, []string) {
			p, r := overSettings(s)
			return pythonBin(), []string{"bench/baseline/pool.py", "--url", url, "--input", input, "--out", out,
				"--threads", strconv.Itoa(p), "--rate", strconv.FormatFloat(r, 'f', -1, 64), "--burst", "10"}
		}},
	}
}

// pythonBin is the python3 that runs the baseline script; "" when there is none.
func pythonBin() string {
	if p, err := exec.LookPath("python3"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return ""
}

// limitRun is what one contestant's run against one shape gave.
type limitRun struct {
	wall     time.Duration
	timedOut bool
	exit     int
	stderr   string // the last line
	calls    int64
	tooMany  int64
	busiest  int64         // most ok answers in any 1 s window
	to90     time.Duration // from the start until a 1 s window held ≥ 90% of the limit; -1: never
	follow   time.Duration // halve: from the halving until the ok rate stays within 10% and 429s stop; -1: never
	late429  float64       // halve: 429s as a share of answers in the last half of the halved phase
	lateOK   float64       // halve: ok answers per second in the last half of the halved phase
	use      time.Duration // double: from the raise until a 1 s window held ≥ 90% of the new limit; -1: never
	useBest  int64         // double: the most ok answers in a 1 s window after the raise
	ok, fail int           // rows
	problem  string        // a violation of "exactly one row per item"; "" when there is none
}

// limitsScenario runs each contestant against each shape of server, each against its own
// fresh sim served on 127.0.0.1, and prints a table of how close each came to the limit.
func limitsScenario(o *options) ([]*figure, error) {
	runs := o.n
	if !o.nSet {
		runs = 1
	}
	var names []string
	for _, s := range limitShapes() {
		names = append(names, s.name)
	}
	for _, s := range strings.Split(o.limitsShapes, ",") {
		if s != "" && !slices.Contains(names, s) {
			return nil, fmt.Errorf("-limits-shapes: unknown shape %q; want some of %s", s, strings.Join(names, ", "))
		}
	}
	jobs := []time.Duration{o.limitsJob}
	if o.limitsLong && o.limitsJob != 100*time.Second {
		jobs = append(jobs, 100*time.Second)
	}
	var (
		mu         sync.Mutex
		violations []string
	)
	table := &limitsTable{runs: runs, nSet: o.nSet, parallel: o.parallelContestants, bin: o.bin}
	for _, job := range jobs {
		for _, s := range limitShapes() {
			if o.limitsShapes != "" && !slices.Contains(strings.Split(o.limitsShapes, ","), s.name) {
				continue
			}
			n := s.items(job)
			input, err := writeIDs(o, n)
			if err != nil {
				return nil, err
			}
			sec := &limitsSection{shape: s, job: job, n: n}
			table.sections = append(table.sections, sec)
			for _, c := range limitContestants() {
				if !strings.Contains(c.name, o.limitsOnly) {
					continue
				}
				row := &limitsRow{contestant: c.name, runs: make([]limitRun, 0, runs)}
				sec.rows = append(sec.rows, row)
				bin, args := c.cmd(o, s, "URL", "IDS", "OUT")
				if bin == o.bin {
					bin = "throttle"
				}
				row.command = showCommand(bin, args)
				if bin == "" {
					row.skip = "python3 not found"
				}
			}
			for r := range runs {
				var wg sync.WaitGroup
				i := -1
				for _, c := range limitContestants() {
					if !strings.Contains(c.name, o.limitsOnly) {
						continue
					}
					i++
					i := i // the closure below runs later, with -parallel-contestants
					row := sec.rows[i]
					if row.skip != "" {
						continue
					}
					one := func() {
						fmt.Fprintf(os.Stderr, "limits %v · %s · %s · run %d of %d…\n", job, s.name, c.name, r+1, runs)
						lr, err := limitsRun(o, s, c, job, input, n, fmt.Sprintf("%s-%d-%d-%d", s.name, job/time.Second, i, r))
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							row.errs = append(row.errs, err.Error())
							fmt.Fprintf(os.Stderr, "limits %s · %s: %v\n", s.name, c.name, err)
							return
						}
						row.runs = append(row.runs, lr)
						if lr.problem != "" {
							v := fmt.Sprintf("%v %s · %s, run %d: %s", job, s.name, c.name, r+1, lr.problem)
							violations = append(violations, v)
							fmt.Fprintf(os.Stderr, "\n!!! ROW CONTRACT VIOLATED: %s\n\n", v)
						}
						fmt.Fprintf(os.Stderr, "  %s · %s: wall %v (%.2f × ideal)%s · 429s %.1f%% of %d calls · busiest 1 s %d ok · rows %d ok %d failed\n",
							s.name, c.name, lr.wall.Round(100*time.Millisecond), lr.wall.Seconds()/job.Seconds(), timeoutMark(lr), pct(lr.tooMany, lr.calls), lr.calls, lr.busiest, lr.ok, lr.fail)
					}
					if o.parallelContestants {
						wg.Go(one)
					} else {
						one()
					}
				}
				wg.Wait()
			}
		}
	}
	if o.bin != "" && o.limitsOnly == "" {
		// The demo's log is kept with -limits-log too: one run in nine (34% of its limit, the
		// others 90-92%) could not be explained afterwards for want of it.
		for r := range runs {
			fmt.Fprintf(os.Stderr, "limits · demo · run %d of %d…\n", r+1, runs)
			d, err := demoRun(o, r)
			if err != nil {
				table.demoErrs = append(table.demoErrs, err.Error())
				continue
			}
			table.demo = append(table.demo, d)
		}
	}
	extraTables = append(extraTables, table.print)
	if len(violations) > 0 {
		return nil, fmt.Errorf("%d runs broke the one-row-per-item contract:\n  %s", len(violations), strings.Join(violations, "\n  "))
	}
	return nil, nil
}

func timeoutMark(r limitRun) string {
	if r.timedOut {
		return " TIMEOUT"
	}
	return ""
}

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// showCommand is a command line for the table, with the placeholders URL, IDS and OUT.
func showCommand(bin string, args []string) string {
	if bin == "" {
		bin = "python3"
	}
	if strings.HasSuffix(bin, "python3") {
		bin = "python3"
	}
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "{}* ") {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return bin + " " + strings.Join(q, " ")
}

// limitsRun runs contestant c once against a fresh sim of shape s, on the input of n ids.
func limitsRun(o *options, s limitShape, c contestant, job time.Duration, input string, n int, tag string) (limitRun, error) {
	sim := adapters.NewSim(s.cfg)
	sim.EnableTimeline()
	url, shutdown, err := adapters.StartSimServer(sim, "127.0.0.1:0")
	if err != nil {
		return limitRun{}, err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	}()
	out := filepath.Join(o.tmp, "rows-"+tag+".jsonl")
	defer func() { _ = os.Remove(out) }() // a scratch file; what the run measured is read already
	bin, args := c.cmd(o, s, url, input, out)
	if o.limitsLog != "" && bin == o.bin {
		args = append(args, "--log", filepath.Join(o.limitsLog, tag+".log"))
	}

	deadline := time.Duration(limitsDeadline * float64(job))
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return limitRun{}, err
	}
	start := time.Now()
	stop := make(chan struct{})
	changed := make(chan struct{})
	go func() { // the limit changes of the halve and double shapes, at fractions of the job from the start
		defer close(changed)
		for _, p := range s.phases[min(1, len(s.phases)):] {
			t := time.NewTimer(time.Until(start.Add(time.Duration(p.at * float64(job)))))
			select {
			case <-t.C:
				sim.SetLimits(p.rate, s.cfg.Burst, s.cfg.Concurrency)
			case <-stop:
				t.Stop()
				return
			}
		}
	}()
	err = cmd.Wait()
	r := limitRun{wall: time.Since(start)}
	close(stop)
	<-changed
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && ctx.Err() == nil {
		return r, err
	}
	r.timedOut = ctx.Err() != nil
	r.exit = cmd.ProcessState.ExitCode()
	tail := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	r.stderr = tail[len(tail)-1]
	if r.exit != 0 && !r.timedOut && r.exit != 1 {
		return r, fmt.Errorf("%s: exit status %d: %s", showCommand(bin, args), r.exit, r.stderr)
	}

	st := sim.Stats()
	r.calls, r.tooMany = st.Calls, st.TooMany
	ok, tm := sim.Timeline(start, limitsBucket)
	r.busiest = maxWindow(ok, 0, len(ok))
	r.to90 = firstReach(ok, 0, 0.9*s.limit)
	if ch, ok2 := s.change(); ok2 {
		at := int(ch.at * float64(job) / float64(limitsBucket))
		if ch.rate < s.limit {
			// Judged up to a second before the last ok answer: the run's end thins its last second.
			end := len(ok)
			for end > 0 && ok[end-1] == 0 {
				end--
			}
			r.follow, r.lateOK, r.late429 = followTime(ok, tm, at, max(at+1, end-window1s), ch.rate)
		} else {
			r.use = firstReach(ok, at, 0.9*ch.rate)
			if at < len(ok) {
				r.useBest = maxWindow(ok[at:], 0, len(ok)-at)
			}
			if r.use >= 0 {
				r.use -= time.Duration(at) * limitsBucket
			}
		}
	}
	r.ok, r.fail, r.problem = checkRows(out, input, n)
	if r.timedOut {
		r.problem = "" // killed: rows are missing by design
	}
	return r, nil
}

// window1s is the number of timeline buckets in a second.
const window1s = int(time.Second / limitsBucket)

// at returns counts[i], 0 past either end.
func at(counts []int64, i int) int64 {
	if i < 0 || i >= len(counts) {
		return 0
	}
	return counts[i]
}

// maxWindow returns the most answers in any 1 s window that ends in buckets [from, to).
func maxWindow(counts []int64, from, to int) int64 {
	var sum, best int64
	for i := from - window1s; i < to; i++ {
		sum += at(counts, i) - at(counts, i-window1s)
		if i >= from {
			best = max(best, sum)
		}
	}
	return best
}

// firstReach returns when, from the start, the first 1 s window that starts at bucket from or
// later ends holding at least goal answers; -1 when none does.
func firstReach(counts []int64, from int, goal float64) time.Duration {
	var sum int64
	for i := from; i < len(counts); i++ {
		sum += counts[i]
		if i-window1s >= from {
			sum -= counts[i-window1s]
		}
		if i-window1s >= from-1 && float64(sum) >= goal {
			return time.Duration(i+1) * limitsBucket
		}
	}
	return -1
}

// followTime returns how long after bucket change the client first held the new limit: the
// end of the first 1 s window that holds 90-110% of limit ok answers and at most one 429,
// from whose start through bucket end the 429s are under 2% of the answers (a client that
// probes past the limit now and then still follows it; one that keeps hammering does not);
// -1 when none does. It also returns, for the last half of [change, end), the ok answers per
// second and the share of 429s among the answers.
func followTime(ok, tm []int64, change, end int, limit float64) (d time.Duration, okRate, share429 float64) {
	sum := func(c []int64, from, to int) (n int64) { // buckets [from, to)
		for i := from; i < to; i++ {
			n += at(c, i)
		}
		return n
	}
	mid := (change + end) / 2
	o, t := sum(ok, mid, end), sum(tm, mid, end)
	okRate, share429 = float64(o)/(time.Duration(end-mid)*limitsBucket).Seconds(), pct(t, o+t)
	for first := change; first+window1s <= end; first++ {
		o, t := sum(ok, first, first+window1s), sum(tm, first, first+window1s)
		if t > 1 || math.Abs(float64(o)-limit) > 0.1*limit {
			continue
		}
		if restOK, rest429 := sum(ok, first, end), sum(tm, first, end); pct(rest429, restOK+rest429) < 2 {
			return time.Duration(first+window1s-change) * limitsBucket, okRate, share429
		}
	}
	return -1, okRate, share429
}

// checkRows reads a results file and checks that it holds exactly one row per input item;
// it returns the ok and failed rows, and the first violation it saw.
func checkRows(out, input string, n int) (ok, failed int, problem string) {
	want := map[string]bool{}
	in, err := os.ReadFile(input)
	if err != nil {
		return 0, 0, err.Error()
	}
	for _, l := range strings.Split(strings.TrimSpace(string(in)), "\n") {
		want[l] = true
	}
	f, err := os.Open(out)
	if err != nil {
		return 0, 0, "no results file: " + err.Error()
	}
	defer func() { _ = f.Close() }() // read-only
	seen := map[string]int{}
	var bad, extra, rows int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		rows++
		var row struct {
			Item json.RawMessage `json:"item"`
			OK   bool            `json:"ok"`
		}
		if json.Unmarshal(sc.Bytes(), &row) != nil {
			bad++
			continue
		}
		var item string
		if json.Unmarshal(row.Item, &item) != nil {
			item = string(row.Item)
		}
		if !want[item] {
			extra++
		}
		seen[item]++
		if row.OK {
			ok++
		} else {
			failed++
		}
	}
	var dups, missing int
	for it := range want {
		switch c := seen[it]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	var p []string
	if rows != n {
		p = append(p, fmt.Sprintf("%d rows for %d items", rows, n))
	}
	for _, x := range []struct {
		n    int
		what string
	}{{missing, "items without a row"}, {dups, "duplicate rows"}, {extra, "rows of items not in the input"}, {bad, "rows that are not JSON"}} {
		if x.n > 0 {
			p = append(p, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	return ok, failed, strings.Join(p, ", ")
}

// ---- the demo at its defaults ----

type demoResult struct {
	hidden, items float64 // the hidden limit and the items of the run
	summary, wall float64 // items/s: the summary line's, and items / wall time
	wallTime      time.Duration
	exit          int
	command       string
}

var (
	demoHidden = regexp.MustCompile(`hidden limit ([\d.]+)/s`)
	demoDone   = regexp.MustCompile(`done in [^:]+: ([\d,]+) items`)
)

func demoRun(o *options, r int) (demoResult, error) {
	out := filepath.Join(o.tmp, fmt.Sprintf("demo-%d.jsonl", r))
	defer func() { _ = os.Remove(out) }() // a scratch file; what the run measured is read already
	args := []string{"demo", "--headless", "--out", out}
	if o.limitsLog != "" {
		args = append(args, "--log", filepath.Join(o.limitsLog, fmt.Sprintf("demo-%d.log", r)))
	}
	d := demoResult{command: "throttle demo --headless"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.bin, args...)
	var stdout, stderr bytes.Buffer // the summary is on stdout, the hidden limit and progress on stderr
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return d, err
	}
	start := time.Now()
	err := cmd.Wait()
	d.wallTime = time.Since(start)
	if ctx.Err() != nil {
		return d, fmt.Errorf("throttle demo did not finish within 3 minutes")
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return d, err
	}
	d.exit = cmd.ProcessState.ExitCode()
	text := stderr.String() + "\n" + stdout.String()
	m := demoHidden.FindStringSubmatch(text)
	if m == nil {
		return d, fmt.Errorf("throttle demo: no hidden limit in its output")
	}
	d.hidden, _ = strconv.ParseFloat(m[1], 64)
	if m := demoDone.FindStringSubmatch(text); m != nil {
		d.items, _ = strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
	}
	if m := summaryRate.FindAllStringSubmatch(text, -1); m != nil {
		d.summary, _ = strconv.ParseFloat(m[len(m)-1][1], 64)
	}
	if d.items == 0 || d.hidden == 0 {
		return d, fmt.Errorf("throttle demo: no summary line in its output (exit %d)", d.exit)
	}
	d.wall = d.items / d.wallTime.Seconds()
	return d, nil
}

// ---- the table ----

type limitsTable struct {
	bin      string
	runs     int
	nSet     bool
	parallel bool
	sections []*limitsSection
	demo     []demoResult
	demoErrs []string
}

type limitsSection struct {
	shape limitShape
	job   time.Duration
	n     int
	rows  []*limitsRow
}

type limitsRow struct {
	contestant, command, skip string
	runs                      []limitRun
	errs                      []string
}

// durs formats the median of durations, -1 meaning never; with more than one run, the worst
// in brackets.
func durs(runs []limitRun, get func(limitRun) time.Duration) string {
	var v []float64
	for _, r := range runs {
		d := get(r)
		if d < 0 {
			v = append(v, math.Inf(1))
		} else {
			v = append(v, d.Seconds())
		}
	}
	f := func(x float64) string {
		if math.IsInf(x, 1) {
			return "never"
		}
		return strconv.FormatFloat(x, 'f', 1, 64) + " s"
	}
	if len(v) == 0 {
		return "—"
	}
	s := f(median(v))
	if len(v) > 1 {
		s += " [" + f(slices.Max(v)) + "]"
	}
	return s
}

func floats(runs []limitRun, get func(limitRun) float64) []float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = get(r)
	}
	return v
}

func (t *limitsTable) print(w io.Writer) {
	fmt.Fprintf(w, "\nlimits: how close each contestant gets to the server's limit · real binary, real loopback HTTP · %s · %s\n",
		time.Now().Format("2006-01-02 15:04"), machine())
	if t.nSet {
		fmt.Fprintf(w, "each figure the median of %d runs; [worst run] in brackets\n", t.runs)
	} else {
		fmt.Fprintf(w, "ONE run per contestant (-n not given; -n 3 gives medians but takes three times as long), so these are single runs, not medians\n")
	}
	if t.parallel {
		fmt.Fprintf(w, "contestants of a shape ran at the same time (-parallel-contestants): they share the 2 cores\n")
	}
	fmt.Fprintf(w, "throttle is %s\n", t.bin)
	fmt.Fprintf(w, "latency: lognormal, median %v, sigma %.1f (mean %v, p99 ≈ 8 × median); ideal = items / limit; killed past %d × ideal\n",
		limitsLatency, limitsSigma, limitsMeanLatency.Round(100*time.Microsecond), limitsDeadline)
	head := []string{"SHAPE", "CONTESTANT", "WALL/IDEAL", "429s % CALLS", "BUSIEST 1 s ok", "TO 90% (1 s)", "FOLLOW ½", "USE 2×", "ROWS"}
	var lines [][]string
	var commands []string
	for _, sec := range t.sections {
		name := sec.shape.name
		if len(t.sections) > len(limitShapes()) {
			name += fmt.Sprintf(" %v", sec.job)
		}
		lines = append(lines, nil) // a section line
		commands = append(commands, fmt.Sprintf("%s: %s · limit %.0f/s · %s items · ideal %v", name, sec.shape.desc, sec.shape.limit, group(strconv.Itoa(sec.n)), sec.job))
		for _, row := range sec.rows {
			commands = append(commands, "  "+row.contestant+": "+row.command)
			cells := []string{name, row.contestant}
			switch {
			case row.skip != "":
				cells = append(cells, "skipped: "+row.skip)
			case len(row.runs) == 0:
				cells = append(cells, "failed: "+strings.Join(row.errs, "; "))
			default:
				cells = append(cells, t.cells(sec, row)...)
			}
			lines = append(lines, cells)
		}
	}
	line := columns(w, append([][]string{head}, lines...), func(l []string, j int) bool {
		return j >= len(head) || len(l) == 3 && j == 2 // a long "skipped"/"failed" cell does not widen its column
	})
	fmt.Fprintln(w)
	line(head)
	for _, l := range lines {
		if l == nil {
			fmt.Fprintln(w)
			continue
		}
		line(l)
	}
	fmt.Fprintf(w, "\ndemo at its defaults:\n")
	if len(t.demo) > 0 {
		d := t.demo
		sum := median(floatsOf(d, func(x demoResult) float64 { return x.summary }))
		wall := median(floatsOf(d, func(x demoResult) float64 { return x.wall }))
		fmt.Fprintf(w, "  $ %s\n  %.0f items against a hidden limit of %.0f/s: %.1f items/s by its summary line = %.0f%% of the limit (%.1f items/s by wall time, start included = %.0f%%); %s wall\n",
			d[0].command, d[0].items, d[0].hidden, sum, 100*sum/d[0].hidden, wall, 100*wall/d[0].hidden,
			time.Duration(median(floatsOf(d, func(x demoResult) float64 { return x.wallTime.Seconds() }))*float64(time.Second)).Round(100*time.Millisecond))
	}
	for _, e := range t.demoErrs {
		fmt.Fprintf(w, "  failed: %s\n", e)
	}
	fmt.Fprintf(w, "\nthe contestants (URL is the sim's http://127.0.0.1:PORT, IDS the ids file, OUT a fresh results file):\n")
	for _, c := range commands {
		if !strings.HasPrefix(c, "  ") {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, c)
	}
	fmt.Fprintf(w, `
how to read it:
  WALL/IDEAL     wall time of the process (start to exit) / (items / limit); 1.00 is perfect
                 "T/O×k (≈x)": k runs killed at %d × ideal; x extrapolates the ratio from the rows they wrote
  429s %% CALLS   the server's 429 answers / every call it got (its own counters)
  BUSIEST 1 s ok the most 200 answers in any 1 s window (10 ms steps); the limit allows limit + burst (window: up to 800 across a boundary)
  TO 90%% (1 s)   from the start until the end of the first 1 s window that held ≥ 90%% of the limit (1.0 s is the least possible)
  FOLLOW ½       halve: from the halving to the end of the first 1 s window with 90-110%% of the new limit and ≤ 1 × 429,
                 after whose start the 429s stay under 2%% of answers
                 ("never: r/s, x%% 429": the ok rate and the 429s' share of answers in the phase's last half)
  USE 2×         double: from the raise to 200/s until a 1 s window holds ≥ 180 ok ("never: best b": the best 1 s after it)
  ROWS           ok/failed rows; the out file must hold exactly one row per item (checked: missing, duplicates, strangers)
  the script:    bench/baseline/pool.py, urllib without keep-alive (a connection per call), per-thread Retry-After or 0.25 s doubling backoff
`, limitsDeadline)
}

func floatsOf[T any](xs []T, get func(T) float64) []float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = get(x)
	}
	return v
}

// cells are the figures of one contestant against one shape.
func (t *limitsTable) cells(sec *limitsSection, row *limitsRow) []string {
	rs := row.runs
	ratio := floats(rs, func(r limitRun) float64 { return r.wall.Seconds() / sec.job.Seconds() })
	rs2 := strconv.FormatFloat(median(ratio), 'f', 2, 64)
	if len(rs) > 1 {
		rs2 += " [" + strconv.FormatFloat(slices.Max(ratio), 'f', 2, 64) + "]"
	}
	timeouts := 0
	for _, r := range rs {
		if r.timedOut {
			timeouts++
		}
	}
	if timeouts > 0 { // a killed run's ratio is a floor: extrapolate from the rows it wrote
		est := floats(rs, func(r limitRun) float64 {
			return r.wall.Seconds() / sec.job.Seconds() * float64(sec.n) / float64(max(r.ok+r.fail, 1))
		})
		rs2 = fmt.Sprintf("T/O×%d (≈%.1f)", timeouts, median(est))
		if timeouts < len(rs) {
			rs2 = strconv.FormatFloat(median(ratio), 'f', 2, 64) + " " + rs2
		}
	}
	tm := strconv.FormatFloat(median(floats(rs, func(r limitRun) float64 { return pct(r.tooMany, r.calls) })), 'f', 1, 64) + "%"
	busiest := format(median(floats(rs, func(r limitRun) float64 { return float64(r.busiest) })), "")
	to90 := durs(rs, func(r limitRun) time.Duration { return r.to90 })
	follow, use := "—", "—"
	if ch, ok := sec.shape.change(); ok && ch.rate < sec.shape.limit {
		follow = durs(rs, func(r limitRun) time.Duration { return r.follow })
		if strings.HasPrefix(follow, "never") {
			follow = fmt.Sprintf("never: %.0f/s, %.0f%% 429", median(floats(rs, func(r limitRun) float64 { return r.lateOK })),
				median(floats(rs, func(r limitRun) float64 { return r.late429 })))
		}
	} else if ok {
		use = durs(rs, func(r limitRun) time.Duration { return r.use })
		if strings.HasPrefix(use, "never") {
			use = fmt.Sprintf("never: best %s", format(median(floats(rs, func(r limitRun) float64 { return float64(r.useBest) })), ""))
		}
	}
	var rows []string
	for _, r := range rs {
		s := fmt.Sprintf("%d/%d", r.ok, r.fail)
		switch {
		case r.timedOut:
			s += " (killed)"
		case r.problem != "":
			s += " VIOLATION: " + r.problem
		}
		rows = append(rows, s)
	}
	return []string{rs2, tm, busiest, to90, follow, use, strings.Join(slices.Compact(rows), " · ")}
}
