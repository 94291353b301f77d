package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
)

// probeFlags bound a probe: it never calls more, longer or wider than these.
type probeFlags struct {
	input    string
	item     string
	start    int
	max      int
	step     time.Duration
	maxTime  time.Duration
	maxCalls int64
	timeout  time.Duration
}

// probeSample is how many items of --input the probe cycles through.
const probeSample = 1000

func newProbeCmd(env *Env) *cobra.Command {
	pf := &probeFlags{}
	cmd := &cobra.Command{
		Use:   "probe ADAPTER [flags]",
		Short: "Find a target's safe parallelism and rate before a run",
		Long: `Ramp calls against the target before a run: parallelism 1, 2, 4, … each held for
--step, stopping at the first sign of the limit (429s, more than 5% errors, a latency
knee, throughput that stops growing) or at the bounds (--max-calls, --max-time,
--max-parallelism). Calls are never retried, so a probe never retries into a 429
storm. It reports each step, the knee, the capacity it saw, and starting values at
about half of it — the seed's advice: "API allows 1,000/s: start at 500".

The items come from a sample of --input (the first 1,000, cycled) or from one fixed
--item. The calls are real: probe a target you may call.`,
		Example: `  throttle probe http --item 42 \
      --url 'https://api.example.com/v1/users/{item}' \
      --header 'Authorization: Bearer ${API_TOKEN}'
  throttle probe sim --item x --sim-rate 200/s --step 2s`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("probe needs an adapter: one of %s", adapterNames(cmd))
			}
			return usageError("unknown adapter %q: want one of %s", args[0], adapterNames(cmd))
		},
	}
	fs := cmd.PersistentFlags()
	fs.StringVar(&pf.input, "input", "", "items to probe with (the first 1,000 are cycled); or --item")
	fs.StringVar(&pf.item, "item", "", "one fixed item to probe with")
	fs.IntVar(&pf.start, "start", 1, "first parallelism")
	fs.IntVar(&pf.max, "max-parallelism", 256, "highest parallelism tried")
	fs.DurationVar(&pf.step, "step", 5*time.Second, "how long each parallelism is held")
	fs.DurationVar(&pf.maxTime, "max-time", 2*time.Minute, "the whole probe's time limit")
	fs.Int64Var(&pf.maxCalls, "max-calls", 5000, "the most calls the probe makes")
	fs.DurationVar(&pf.timeout, "timeout", 30*time.Second, "per call")
	probe := func(cmd *cobra.Command, j job) error { return probeJob(cmd.Context(), env, pf, j) }
	addAdapters(cmd, env, probe)
	return cmd
}

// cycle is a Source that repeats a sample of items without end.
type cycle struct {
	items []engine.Item
	n     int64
}

func (c *cycle) Next() (engine.Item, error) {
	it := c.items[c.n%int64(len(c.items))]
	it.Index = c.n
	c.n++
	return it, nil
}

func (pf *probeFlags) sample(env *Env) (*cycle, string, error) {
	switch {
	case pf.item != "" && pf.input != "":
		return nil, "", usageError("give --input or --item, not both")
	case pf.item != "":
		return &cycle{items: []engine.Item{{Line: pf.item}}}, "item " + pf.item, nil
	case pf.input == "":
		return nil, "", usageError("probe needs --input (a sample of items) or --item (one item)")
	}
	in, err := openInput(context.Background(), env, pf.input, false, -1)
	if err != nil {
		return nil, "", err
	}
	defer func() { _ = in.close() }() // the input is read-only
	c := &cycle{}
	for len(c.items) < probeSample {
		it, err := in.source.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", usageError("--input: %v", err)
		}
		if it.Invalid == "" {
			c.items = append(c.items, it)
		}
	}
	if len(c.items) == 0 {
		return nil, "", usageError("--input %s has no valid item to probe with", pf.input)
	}
	return c, fmt.Sprintf("%s (%s)", in.name, human.Counted(int64(len(c.items)), "item", "items")), nil
}

// probeJob ramps the adapter's target and prints what it found.
func probeJob(ctx context.Context, env *Env, pf *probeFlags, j job) error {
	switch {
	case pf.start < 1 || pf.max < pf.start:
		return usageError("--start %d and --max-parallelism %d: want 1 ≤ start ≤ max", pf.start, pf.max)
	case pf.step < 100*time.Millisecond:
		return usageError("--step %v: want at least 100ms", pf.step)
	case pf.maxTime <= 0 || pf.maxCalls <= 0 || pf.timeout < 0:
		return usageError("--max-time, --max-calls must be positive and --timeout not negative")
	}
	src, what, err := pf.sample(env)
	if err != nil {
		return err
	}
	e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: pf.start, MaxParallelism: pf.max, Burst: 1}, Retries: 0,
		Timeout: pf.timeout, Adapter: j.adapter, Source: src, Total: -1, Results: io.Discard, Origin: "probe"})
	if err != nil {
		return usageError("%v", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-env.Signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	ws := probes.NewWindows(min(pf.step/4, time.Second), 400)
	sub := e.Subscribe(1<<14, engine.CallEnd)
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() { defer close(fed); probes.Feed(sub, stop, ws.Observe) }()
	ran := make(chan struct{})
	go func() { defer close(ran); _, _ = e.Run(context.Background()) }()

	out := env.Stdout
	fmt.Fprintf(out, "probing %s with %s: parallelism from %d, doubling every %v (at most %d calls, %v)\n",
		j.name, what, pf.start, pf.step, pf.maxCalls, pf.maxTime)
	res := probes.Ramp(ctx, e, ws, probes.RampConfig{Start: pf.start, Max: pf.max, Step: pf.step, MaxTime: pf.maxTime, MaxCalls: pf.maxCalls})
	e.Stop("probe")
	<-ran
	close(stop)
	<-fed

	fmt.Fprintf(out, "%12s %9s %9s %9s %7s %7s\n", "parallelism", "ok/s", "mean", "p95", "429s", "errors")
	for _, s := range res.Steps {
		fmt.Fprintf(out, "%12d %9.1f %9s %9s %7d %7d\n", s.Parallelism, s.OKPerSec, human.Latency(s.Mean), human.Latency(s.P95), s.TooMany, s.Errors)
	}
	fmt.Fprintf(out, "stopped: %s\n", res.Stop)
	if res.Knee.Parallelism > 0 {
		fmt.Fprintf(out, "knee: parallelism %d at %.1f ok/s, p95 %s; the most seen: %.1f ok/s\n",
			res.Knee.Parallelism, res.Knee.OKPerSec, human.Latency(res.Knee.P95), res.Capacity)
	}
	if res.Capacity > 0 {
		fmt.Fprintf(out, "start with: --parallelism %d --rate %s   (about half of what the target took; raise after clean logs)\n",
			res.Parallelism, strings.TrimSuffix(engine.FormatRate(res.Rate), "/s")+"/s")
	}
	if res.Stop == "interrupted" {
		return exitCode(ExitInterrupted)
	}
	return nil
}
