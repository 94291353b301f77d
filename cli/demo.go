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
		Long: `Start a simulated API on 127.0.0.1 with a hidden rate limit, and run a real http
job against it: the same engine, adapter and results as 'throttle run http'. The
default settings ask for more than the hidden limit allows, so you will see 429s,
the shared Retry-After hold, retries, and a summary.`,
		Example: `  throttle demo
  throttle demo --parallelism 2                 # too low: slow but clean
  throttle demo --rate 90/s --parallelism 16    # a cap just under the hidden limit`,
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
			rf.input = filepath.Join(dir, "ids.txt")
			if err := writeIDs(rf.input, items); err != nil {
				return err
			}
			if !cmd.Flags().Changed("out") {
				rf.out = filepath.Join(dir, "results.jsonl")
			} else {
				defer os.RemoveAll(dir) // only the generated ids are in it; the results are elsewhere
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
			defer a.Close()
			return runJob(cmd.Context(), env, rf, job{adapter: a, name: "demo http", target: url + "/items/{item}",
				title: "demo · sim API " + strings.TrimPrefix(url, "http://")})
		},
	}
	fs := cmd.Flags()
	rf.register(fs, false)
	for _, name := range []string{"config", "print-config"} { // the demo makes its own job
		_ = fs.MarkHidden(name)
	}
	_ = fs.Set("parallelism", "8")
	fs.Lookup("parallelism").DefValue = "8"
	_ = fs.Set("retries", "6")
	fs.Lookup("retries").DefValue = "6"
	fs.IntVar(&items, "items", 600, "number of work items (ids 1..N)")
	sf.register(cmd, "100/s", 10)
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
		f.Close()
		return fmt.Errorf("demo: %w", err)
	}
	return f.Close()
}
