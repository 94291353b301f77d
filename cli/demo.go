package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/adapters"
)

func newDemoCmd(env *Env) *cobra.Command {
	rf := &runFlags{}
	sf := &simFlags{}
	var items int
	cmd := &cobra.Command{
		Use:   "demo [flags]",
		Short: "Run a real http job against an embedded simulated API on 127.0.0.1",
		Long: `Start a simulated API on 127.0.0.1 with a hidden rate limit (100/s, a token
bucket that answers 429 with a whole-second Retry-After; latency with a heavy
tail), and run a real http job of 5,000 items against it: the same engine,
adapter and results as 'throttle run http'.

By default it runs --auto from parallelism 2: watch slow start double the
workers until the API pushes back, then the effective rate settle just under
the hidden limit. With --auto=false you tune by hand: start low, raise with the
keys after clean seconds, and see the 429s, the Retry-After hold of the whole
pool and the effective rate that the engine keeps under your ceiling.`,
		Example: `  # --auto finds the limit:
  throttle demo

  # Tune it yourself from 2 workers: raise with ↑ after clean seconds.
  throttle demo --auto=false --parallelism 2

  # A ceiling 25% over the hidden limit: the engine holds the run under it.
  throttle demo --auto=false --parallelism 16 --rate 125/s

  # End each Retry-After hold with a test call instead of waiting it out.
  throttle demo --hold probe`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if items < 1 {
				return usageError("--items %d: must be at least 1", items)
			}
			if rf.config != "" || rf.printConfig {
				return usageError("--config and --print-config are for throttle run; the demo makes its own job")
			}
			cfg, err := sf.config()
			if err != nil {
				return err
			}
			if _, err := rf.settings(); err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "throttle-demo-")
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			// The directory holds the generated ids and, without --out, the demo's results: it
			// goes when the demo ends, whichever way it ends, so that demos leave nothing in /tmp.
			scratch := !cmd.Flags().Changed("out")
			defer func() { _ = os.RemoveAll(dir) }() // the summary says the results went with it

			rf.input = filepath.Join(dir, "ids.txt")
			if err := writeIDs(rf.input, items); err != nil {
				return err
			}
			if scratch {
				rf.out, rf.scratchOut = filepath.Join(dir, "results.jsonl"), true
			}
			url, shutdown, err := adapters.StartSimServer(adapters.NewSim(cfg), "127.0.0.1:0")
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = shutdown(ctx)
			}()
			fmt.Fprintf(env.Stderr, "simulated API on %s: hidden limit %s (burst %d), median latency %v\n",
				url, sf.rate, sf.burst, sf.latency)
			a, err := adapters.NewHTTP(adapters.HTTPConfig{URL: url + "/items/{item}", UserAgent: "throttle-demo"})
			if err != nil {
				return err
			}
			defer func() { _ = a.Close() }() // the demo's rows are written; this stops the simulated API
			return runJob(cmd.Context(), env, rf, job{adapter: a, name: "demo http", target: url + "/items/{item}",
				title: "demo · sim API " + strings.TrimPrefix(url, "http://")})
		},
	}
	fs := cmd.Flags()
	rf.register(fs, false)
	for _, name := range []string{"config", "print-config"} { // the demo makes its own job
		_ = fs.MarkHidden(name)
	}
	for name, v := range map[string]string{"parallelism": "2", "retries": "6", "auto": "true"} {
		_ = fs.Set(name, v)
		fs.Lookup(name).DefValue = v
	}
	fs.IntVar(&items, "items", 5000, "number of work items (ids 1..N)")
	sf.register(cmd, "100/s", 10)
	_ = fs.Set("sim-sigma", "0.9") // a real API's tail: p99 about 8× the median
	fs.Lookup("sim-sigma").DefValue = "0.9"
	return cmd
}

func writeIDs(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	w := bufio.NewWriter(f)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "%d\n", i)
	}
	if err := w.Flush(); err != nil {
		_ = f.Close() // the flush failed: that error is the one to tell
		return fmt.Errorf("demo: %w", err)
	}
	return f.Close()
}
