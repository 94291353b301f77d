// Command scenarios measures throttle as a whole and prints a table of figures, each with the
// command that produced it: the engine's overhead per item and the http adapter's calls/s
// (from the Go benchmarks, run as a child `go test`), rate adherence against a loopback
// server, peak RSS on a 10M-line input and under inputs, servers and knobs that used to blow it
// up, end-to-end items/s of `throttle run sim`, and what --record costs and how fast `throttle replay --headless` reads a million calls.
//
//	go run ./bench/scenarios -bin bin/throttle     # noop, http, rate, rss, memory, replay: each figure the median of 3 runs
//	go run ./bench/scenarios -only rate,rss -n 5   # some scenarios, median of 5
//	go run ./bench/scenarios -only memory          # peak RSS: 8 MiB lines, 9 MB headers, ctl set parallelism 100000000
//	go run ./bench/scenarios -only e2e             # also: end-to-end items/s on 1M lines
//	go run ./bench/scenarios -only replay          # --record's cost, replay --headless of 1M calls
//	go run ./bench/scenarios -only cluster         # --redis: cost per call, 1 to 3 hosts (THROTTLE_TEST_REDIS)
//	go run ./bench/scenarios -only shares          # --redis: each host's share of a job's calls, cap binding or not
//	go run ./bench/scenarios -only limits          # finding and holding a server's limit, beside a plain script (10-15 min)
//
// Run it from the repository root. It listens only on 127.0.0.1, writes only to a temporary
// directory that it removes, and stops by itself (every child and run has a deadline).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
)

// scenarios in the order they run; -only picks some of them. e2e is left out by default to
// keep a run of everything under three minutes on 2 cores; rss gives the same figures at 10M.
var (
	scenarios        = []string{"noop", "http", "rate", "rss", "memory", "e2e", "replay", "cluster", "shares", "limits"}
	defaultScenarios = []string{"noop", "http", "rate", "rss", "memory", "replay"}
)

// extraTables print the tables of scenarios whose figures do not fit the main table's
// columns; they follow it.
var extraTables []func(io.Writer)

type options struct {
	only      map[string]bool
	n         int
	nSet      bool // -n was given
	bin       string
	benchtime string
	rateFor   time.Duration
	rssLines  int
	e2eLines  int
	out       string
	tmp       string

	limitsJob           time.Duration
	limitsLong          bool
	limitsShapes        string
	parallelContestants bool
	limitsOnly          string // contestants whose name holds this, "" for all
	limitsLog           string // a directory for each throttle run's --log, "" for none
}

// figure is one line of the table: a quantity measured n times.
type figure struct {
	name     string
	unit     string
	goal     string
	command  string
	values   []float64
	worst    func([]float64) float64 // when set, the table also shows the worst run
	decimals int                     // when set, values are shown with this many decimals
	notes    []string
}

func main() {
	var (
		o    options
		only string
	)
	flag.StringVar(&only, "only", strings.Join(defaultScenarios, ","), "comma-separated scenarios to run, of "+strings.Join(scenarios, ", "))
	flag.IntVar(&o.n, "n", 3, "runs of each scenario; the table shows the median")
	flag.StringVar(&o.bin, "bin", "", "throttle binary for rss and e2e (default: build one into a temporary directory)")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "-benchtime of the go test benchmarks (noop, http)")
	flag.DurationVar(&o.rateFor, "rate-for", 5*time.Second, "length of each rate-adherence run")
	flag.IntVar(&o.rssLines, "rss-lines", 10_000_000, "input lines of the rss scenario")
	flag.IntVar(&o.e2eLines, "e2e-lines", 1_000_000, "input lines of the e2e scenario")
	flag.StringVar(&o.out, "out", "/dev/null", "--out of the throttle runs (rss, e2e)")
	flag.DurationVar(&o.limitsJob, "limits-job", 30*time.Second, "limits: the job's length at the ideal rate (its items = length × limit)")
	flag.BoolVar(&o.limitsLong, "limits-long", false, "limits: also run every shape with 100 s jobs")
	flag.StringVar(&o.limitsShapes, "limits-shapes", "", "limits: comma-separated shapes to run (default all: bucket, window, conc429, conclat, halve, double)")
	flag.StringVar(&o.limitsOnly, "limits-contestants", "", "limits: run only the contestants whose name holds this text (auto, probe, script, over)")
	flag.StringVar(&o.limitsLog, "limits-log", "", "limits: keep each throttle run's event log (--log) in this directory, to read the engine's adapt changes")
	flag.BoolVar(&o.parallelContestants, "parallel-contestants", false, "limits: run the contestants of a shape at the same time (faster; they share the cores)")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { o.nSet = o.nSet || f.Name == "n" })
	o.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(scenarios, s) {
			fatalf("-only %q: unknown scenario; want some of %s", s, strings.Join(scenarios, ", "))
		}
		o.only[s] = true
	}
	if o.n < 1 {
		fatalf("-n %d: want at least 1", o.n)
	}
	if o.limitsJob < time.Second {
		fatalf("-limits-job %v: want at least 1s", o.limitsJob)
	}
	if _, err := os.Stat("go.mod"); err != nil {
		fatalf("run me from the repository root (no go.mod here)")
	}
	tmp, err := os.MkdirTemp("", "throttle-bench-")
	if err != nil {
		fatalf("%v", err)
	}
	o.tmp = tmp
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig                 // the children, in our process group, get ctrl+c too
		_ = os.RemoveAll(tmp) // scratch files of the benchmark
		os.Exit(130)
	}()
	code := run(&o)
	_ = os.RemoveAll(tmp) // scratch files of the benchmark
	os.Exit(code)
}

func run(o *options) int {
	start := time.Now()
	var figs []*figure
	failed := false
	step := func(name string, f func(*options) ([]*figure, error)) {
		if !o.only[name] {
			return
		}
		t := time.Now()
		fmt.Fprintf(os.Stderr, "scenario %s (%d runs)…\n", name, o.n)
		got, err := f(o)
		figs = append(figs, got...)
		if err != nil {
			failed = true
			fmt.Fprintf(os.Stderr, "scenario %s: %v\n", name, err)
		}
		fmt.Fprintf(os.Stderr, "scenario %s took %s\n", name, time.Since(t).Round(100*time.Millisecond))
	}
	step("noop", benchNoop)
	step("http", benchHTTP)
	step("rate", rateAdherence)
	if o.only["rss"] || o.only["memory"] || o.only["e2e"] || o.only["replay"] || o.only["cluster"] || o.only["shares"] || o.only["limits"] {
		if err := ensureBinary(o); err != nil {
			fmt.Fprintf(os.Stderr, "building throttle: %v\n", err)
			return 1
		}
	}
	step("rss", peakRSS)
	step("memory", memoryScenario)
	step("e2e", endToEnd)
	step("replay", replayScenario)
	step("cluster", clusterScenario)
	step("shares", sharesScenario)
	step("limits", limitsScenario)

	if len(figs) > 0 || len(extraTables) == 0 {
		fmt.Printf("\nthrottle benchmarks · %s · %s · median of %d runs; [worst run] where it matters\n",
			time.Now().Format("2006-01-02 15:04"), machine(), o.n)
		printTable(os.Stdout, figs)
	}
	for _, t := range extraTables {
		t(os.Stdout)
	}
	fmt.Printf("\ntotal %s\n", time.Since(start).Round(time.Second))
	if failed {
		return 1
	}
	return 0
}

// columns measures aligned columns over rows (a cell widens its column unless skip says it
// does not) and returns a function that prints one row in them, indented by two spaces.
func columns(w io.Writer, rows [][]string, skip func(row []string, j int) bool) func([]string) {
	var widths []int
	for _, r := range rows {
		for j, c := range r {
			if j == len(widths) {
				widths = append(widths, 0)
			}
			if skip == nil || !skip(r, j) {
				widths[j] = max(widths[j], utf8.RuneCountInString(c))
			}
		}
	}
	return func(r []string) {
		var b strings.Builder
		for j, c := range r {
			b.WriteString(c)
			if j < len(r)-1 {
				b.WriteString(strings.Repeat(" ", max(widths[j]-utf8.RuneCountInString(c), 0)+2))
			}
		}
		fmt.Fprintln(w, "  "+strings.TrimRight(b.String(), " "))
	}
}

// printTable prints the figures in aligned columns, each group under the command that
// produced it.
func printTable(w io.Writer, figs []*figure) {
	head := []string{"FIGURE", "MEDIAN [WORST]", "GOAL / CAP", "RUNS"}
	rows := make([][]string, len(figs))
	for i, f := range figs {
		rows[i] = []string{f.name, f.median(), f.goal, f.runs()}
	}
	line := columns(w, append([][]string{head}, rows...), nil)
	fmt.Fprintln(w)
	line(head)
	last := ""
	for i, f := range figs {
		if f.command != last {
			fmt.Fprintf(w, "\n$ %s\n", f.command)
			last = f.command
		}
		line(rows[i])
	}
	seen := map[string]bool{}
	for _, f := range figs {
		for _, n := range f.notes {
			if !seen[n] {
				seen[n] = true
				fmt.Fprintf(w, "\nnote: %s\n", n)
			}
		}
	}
}

func (f *figure) median() string {
	if len(f.values) == 0 {
		return "—"
	}
	s := f.format(median(f.values), f.unit)
	if f.worst != nil && len(f.values) > 1 {
		s += " [" + f.format(f.worst(f.values), "") + "]"
	}
	return s
}

func (f *figure) runs() string {
	parts := make([]string, len(f.values))
	for i, v := range f.values {
		parts[i] = f.format(v, "")
	}
	return strings.Join(parts, " ")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (f *figure) format(v float64, unit string) string {
	if f.decimals > 0 {
		s := strconv.FormatFloat(v, 'f', f.decimals, 64)
		if unit != "" {
			s += " " + unit
		}
		return s
	}
	return format(v, unit)
}

// format renders v with thousands separators, no decimals at 100 or more.
func format(v float64, unit string) string {
	var s string
	switch {
	case v >= 100 || v == float64(int64(v)):
		s = group(strconv.FormatInt(int64(v+0.5), 10))
	default:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

func group(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func machine() string {
	n := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n = bytes.Count(b, []byte("\nprocessor"))
		if bytes.HasPrefix(b, []byte("processor")) {
			n++
		}
	}
	return fmt.Sprintf("%d CPUs", n)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scenarios: "+format+"\n", args...)
	os.Exit(2)
}

// ---- noop and http: the Go benchmarks, run as a child go test ----

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// goBench runs `go test -bench pattern -count n pkg` and returns, for each benchmark, the values
// of metric (e.g. "items/s") in run order.
func goBench(o *options, pkg, pattern, metric string) (string, []string, map[string][]float64, error) {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-benchtime", o.benchtime, "-count", strconv.Itoa(o.n), pkg}
	cmdline := "go " + strings.Join(quoteAll(args), " ")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	values := map[string][]float64{}
	var order []string
	for _, line := range strings.Split(out.String(), "\n") {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fields := strings.Fields(m[2])
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i+1] != metric {
				continue
			}
			v, perr := strconv.ParseFloat(fields[i], 64)
			if perr != nil {
				continue
			}
			if _, seen := values[m[1]]; !seen {
				order = append(order, m[1])
			}
			values[m[1]] = append(values[m[1]], v)
		}
	}
	if err != nil {
		return cmdline, order, values, fmt.Errorf("%s: %w\n%s", cmdline, err, out.String())
	}
	return cmdline, order, values, nil
}

func quoteAll(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$*?[] ") {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return q
}

func benchNoop(o *options) ([]*figure, error) {
	cmdline, order, values, err := goBench(o, "./engine/", "^BenchmarkEngineNoop$", "items/s")
	var figs []*figure
	for _, name := range order {
		sub := strings.TrimPrefix(name, "BenchmarkEngineNoop/")
		figs = append(figs, &figure{
			name: "engine overhead, no-op adapter, " + sub, unit: "items/s", goal: "≥ 300,000",
			command: cmdline, values: values[name], worst: slices.Min[[]float64],
		})
	}
	return figs, err
}

func benchHTTP(o *options) ([]*figure, error) {
	cmdline, order, values, err := goBench(o, "./adapters/", "^BenchmarkHTTPLoopback$", "calls/s")
	var figs []*figure
	for _, name := range order {
		sub := strings.TrimPrefix(name, "BenchmarkHTTPLoopback/")
		figs = append(figs, &figure{
			name: "http adapter vs loopback server, parallelism " + strings.TrimPrefix(sub, "p"), unit: "calls/s",
			goal: "—", command: cmdline, values: values[name], worst: slices.Min[[]float64],
		})
	}
	return figs, err
}

// ---- rate: adherence to --rate/--burst as the server sees it ----

// arrivals is a loopback server that records when each request arrives.
type arrivals struct {
	mu sync.Mutex
	at []time.Time
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	a.mu.Lock()
	a.at = append(a.at, now)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`) // the client went away: nothing to tell it
}

func (a *arrivals) take() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	at := a.at
	a.at = nil
	return at
}

// serveArrivals starts a loopback server that notes when each call arrives: its address
// ("http://127.0.0.1:port") and what stops it.
func serveArrivals() (arr *arrivals, addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	arr = &arrivals{}
	srv := &http.Server{Handler: arr, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ErrServerClosed once closed
	return arr, "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// loopbackJitter says why a window the server measures may hold a call or two more than the cap.
const loopbackJitter = "a server-side window can exceed the cap by 1 or 2 when a call's delivery is delayed by a millisecond or two on the loopback (the window then starts at a late arrival and ends at prompt ones)"

// maxInWindow returns the most times that fall in any half-open window [t, t+w); ts is sorted.
func maxInWindow(ts []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for j < len(ts) && ts[j].Sub(ts[i]) < w {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

func rateAdherence(o *options) ([]*figure, error) {
	srvArr, addr, stop, err := serveArrivals()
	if err != nil {
		return nil, err
	}
	defer stop() // the scenario is over
	url := addr + "/items/{item}"

	const parallelism = 32
	var figs []*figure
	for _, c := range []struct {
		rate  float64
		burst int
	}{{500, 1}, {2000, 10}} {
		cmdline := fmt.Sprintf("go run ./bench/scenarios -only rate -n %d -rate-for %v   # in process: engine + http adapter, rate %v/s, burst %d, parallelism %d, server on 127.0.0.1",
			o.n, o.rateFor, c.rate, c.burst, parallelism)
		label := fmt.Sprintf("rate %v/s burst %d: ", c.rate, c.burst)
		cap1 := c.rate + float64(c.burst)
		cap100 := c.rate/10 + float64(c.burst)
		w1 := &figure{name: label + "max calls in any 1 s window (server)", unit: "", goal: "≤ " + format(cap1, ""), command: cmdline, worst: slices.Max[[]float64]}
		w100 := &figure{name: label + "max calls in any 100 ms window (server)", unit: "", goal: "≤ " + format(cap100, ""), command: cmdline, worst: slices.Max[[]float64]}
		w1.notes = []string{loopbackJitter + "; the engine-side rows measure the limiter itself"}
		mean := &figure{name: label + "mean rate (server), (calls−burst)/(last−first)", unit: "/s", goal: format(c.rate, "/s"), command: cmdline, decimals: 1}
		eng1 := &figure{name: label + "max call starts in any 1 s window (engine)", unit: "", goal: "≤ " + format(cap1, ""), command: cmdline, worst: slices.Max[[]float64]}
		eng100 := &figure{name: label + "max call starts in any 100 ms window (engine)", unit: "", goal: "≤ " + format(cap100, ""), command: cmdline, worst: slices.Max[[]float64]}
		for range o.n {
			n := int(c.rate*o.rateFor.Seconds()) + c.burst
			srvArr.take()
			starts, err := rateRun(url, n, parallelism, c.rate, c.burst)
			at := srvArr.take()
			if err != nil {
				return append(figs, w1, w100, mean, eng1, eng100), err
			}
			if len(at) != n {
				return append(figs, w1, w100, mean, eng1, eng100), fmt.Errorf("rate %v: server saw %d calls, want %d", c.rate, len(at), n)
			}
			slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
			w1.values = append(w1.values, float64(maxInWindow(at, time.Second)))
			w100.values = append(w100.values, float64(maxInWindow(at, 100*time.Millisecond)))
			mean.values = append(mean.values, float64(len(at)-c.burst)/at[len(at)-1].Sub(at[0]).Seconds())
			eng1.values = append(eng1.values, float64(maxInWindow(starts, time.Second)))
			eng100.values = append(eng100.values, float64(maxInWindow(starts, 100*time.Millisecond)))
		}
		figs = append(figs, w1, w100, mean, eng1, eng100)
	}
	return figs, nil
}

// rateRun runs n calls through the engine and the http adapter at the given rate and returns
// the instants the engine started them.
func rateRun(url string, n, parallelism int, r float64, burst int) ([]time.Time, error) {
	h, err := adapters.NewHTTP(adapters.HTTPConfig{URL: url})
	if err != nil {
		return nil, err
	}
	defer func() { _ = h.Close() }() // the scenario is over
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: parallelism, Rate: r, Burst: burst},
		Adapter:  h,
		Source:   engine.NewLineReader(strings.NewReader(lines(n)), false),
		Total:    int64(n),
		Results:  io.Discard,
		Timeout:  10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	sub := e.Subscribe(2*n + 64)
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(float64(n)/r*3*float64(time.Second))+10*time.Second)
	defer cancel()
	sum, err := e.Run(ctx)
	if err != nil {
		return nil, err
	}
	if sum.OK != int64(n) {
		return nil, fmt.Errorf("rate %v: %d of %d ok (%d failed, state %v)", r, sum.OK, n, sum.Failed, sum.State)
	}
	var starts []time.Time
	for len(starts) < n {
		select {
		case ev := <-sub.C:
			if ev.Kind == engine.CallStart {
				starts = append(starts, ev.At)
			}
		default:
			return nil, fmt.Errorf("rate %v: %d call-start events, want %d (%d dropped)", r, len(starts), n, sub.Dropped())
		}
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	return starts, nil
}

func lines(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

// ---- rss and e2e: bin/throttle run sim as a child process ----

func ensureBinary(o *options) error {
	if o.bin != "" {
		if _, err := os.Stat(o.bin); err == nil {
			return nil
		}
		fmt.Fprintf(os.Stderr, "%s is missing: building one\n", o.bin)
	}
	o.bin = filepath.Join(o.tmp, "throttle")
	cmd := exec.Command("go", "build", "-o", o.bin, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// writeIDs writes n lines of 8-digit IDs to a new file in the temporary directory.
func writeIDs(o *options, n int) (string, error) {
	path := filepath.Join(o.tmp, fmt.Sprintf("ids-%d.txt", n))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var buf []byte
	for i := range n {
		buf = strconv.AppendInt(buf[:0], int64(10_000_000+i), 10)
		buf = append(buf, '\n')
		_, _ = w.Write(buf) // a bufio.Writer keeps its first error for Flush, checked below
	}
	if err := w.Flush(); err != nil {
		_ = f.Close() // the flush failed: that error is the one to tell
		return "", err
	}
	return path, f.Close()
}

// childRun is what one run of the binary gave.
type childRun struct {
	maxRSSKiB    int64
	wall         time.Duration
	summaryRate  float64 // the items/s of throttle's summary line
	exit         int
	stderrTail   string
	maxRSSExists bool
}

var summaryRate = regexp.MustCompile(`([\d.]+) items/s`)

func runSim(o *options, input string) (childRun, []string, error) {
	args := []string{"run", "sim", "--input", input, "--out", o.out, "--parallelism", "64",
		"--sim-latency", "1ns", "--sim-sigma", "0", "--headless"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.bin, args...)
	var stdout, stderr bytes.Buffer // the summary is on stdout, progress on stderr
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t := time.Now()
	err := cmd.Run()
	r := childRun{wall: time.Since(t)}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return r, args, err
	}
	if ctx.Err() != nil {
		return r, args, fmt.Errorf("%s did not finish within 3 minutes", o.bin)
	}
	r.exit = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSSKiB, r.maxRSSExists = ru.Maxrss, true // KiB on Linux
	}
	if m := summaryRate.FindAllStringSubmatch(stdout.String(), -1); m != nil {
		r.summaryRate, _ = strconv.ParseFloat(m[len(m)-1][1], 64)
	}
	tail := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	r.stderrTail = tail[len(tail)-1]
	return r, args, nil
}

func simFigures(o *options, lines int) ([]*figure, error) {
	input, err := writeIDs(o, lines)
	if err != nil {
		return nil, err
	}
	label := fmt.Sprintf("run sim, FILE of %s lines: ", group(strconv.Itoa(lines)))
	var rss, wall, eng *figure
	var notes []string
	for range o.n {
		r, args, err := runSim(o, input)
		if err != nil {
			return nil, err
		}
		cmdline := o.bin + " " + strings.Join(args, " ")
		cmdline = strings.Replace(cmdline, input, "FILE", 1)
		if rss == nil {
			rss = &figure{name: label + "peak RSS", unit: "MB", goal: "< 100 MB", command: cmdline, worst: slices.Max[[]float64]}
			wall = &figure{name: label + "items/s, wall clock (incl. start, count pass)", unit: "items/s", goal: "—", command: cmdline, worst: slices.Min[[]float64]}
			eng = &figure{name: label + "items/s, engine (the summary line)", unit: "items/s", goal: "—", command: cmdline, worst: slices.Min[[]float64]}
		}
		if r.maxRSSExists {
			rss.values = append(rss.values, float64(r.maxRSSKiB)*1024/1e6)
		}
		wall.values = append(wall.values, float64(lines)/r.wall.Seconds())
		if r.summaryRate > 0 {
			eng.values = append(eng.values, r.summaryRate)
		}
		if r.exit != 0 {
			n := fmt.Sprintf("%s exited with status %d: %s", filepath.Base(o.bin), r.exit, r.stderrTail)
			if !slices.Contains(notes, n) {
				notes = append(notes, n)
			}
		}
	}
	wall.notes = notes
	return []*figure{rss, wall, eng}, nil
}

func peakRSS(o *options) ([]*figure, error)  { return simFigures(o, o.rssLines) }
func endToEnd(o *options) ([]*figure, error) { return simFigures(o, o.e2eLines) }
