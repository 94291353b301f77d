package cli_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
)

// TestCongestionShapesOverLoopback runs `throttle run http` against the simulated API over
// real loopback HTTP in each limit shape, with settings 25% over the limit (or --auto from
// parallelism 2), and checks what the run must always give: every item one ok row, 429s under
// 2% of the calls, and the engine's own answer in its change log. It is a correctness test;
// how fast each shape runs is measured by `make bench`, beside the simplest script.
func TestCongestionShapesOverLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   adapters.SimConfig
		items int
		flags []string
		saw   string // a line of the change log the run must print; "" for none
		at    time.Duration
		then  func(*adapters.Sim)
	}{
		{name: "token bucket", cfg: adapters.SimConfig{Rate: 200, Burst: 10, RetryAfter: time.Second},
			items: 1000, flags: []string{"--rate", "250", "--parallelism", "16"}, saw: "effective rate 250/s →"},
		{name: "fixed window", cfg: adapters.SimConfig{Quota: 200, Window: time.Second},
			items: 800, flags: []string{"--rate", "250", "--parallelism", "16"}},
		{name: "concurrency 429", cfg: adapters.SimConfig{Concurrency: 8, Overload: adapters.Overload429},
			items: 1000, flags: []string{"--parallelism", "10"}, saw: "effective parallelism 10 →"},
		{name: "concurrency latency", cfg: adapters.SimConfig{Concurrency: 8, Overload: adapters.OverloadLatency},
			items: 1000, flags: []string{"--auto", "--parallelism", "2", "--max-parallelism", "32"}, saw: "(auto)"},
		{name: "halved", cfg: adapters.SimConfig{Rate: 200, Burst: 10, RetryAfter: time.Second},
			items: 1000, flags: []string{"--rate", "1000", "--parallelism", "32"}, saw: "effective rate",
			at: 2 * time.Second, then: func(s *adapters.Sim) { s.SetLimits(100, 10, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Latency, tc.cfg.Sigma, tc.cfg.Seed = 20*time.Millisecond, 0.9, 5
			sim := adapters.NewSim(tc.cfg)
			url, shutdown, err := adapters.StartSimServer(sim, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = shutdown(context.Background()) })
			if tc.then != nil {
				timer := time.AfterFunc(tc.at, func() { tc.then(sim) })
				t.Cleanup(func() { timer.Stop() })
			}
			out := outPath(t)
			args := append([]string{"run", "http", "--headless", "--input", writeItems(t, tc.items), "--out", out,
				"--url", url + "/items/{item}", "--retries", "8"}, tc.flags...)
			res := run(t, invocation{args: args})
			if res.code != 0 {
				t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
			}
			rows := readRows(t, out)
			byItem := rowsByItem(t, rows)
			for i := range tc.items {
				if r, ok := byItem[strconv.Itoa(i)]; !ok || !*r.OK {
					t.Errorf("item %d: row %+v, want an ok row", i, r)
				}
			}
			if len(rows) != tc.items {
				t.Errorf("%d rows, want %d (one per item)", len(rows), tc.items)
			}
			st := sim.Stats()
			if share := float64(st.TooMany) / float64(st.Calls); share >= 0.02 {
				t.Errorf("429s are %.1f%% of %d calls, want under 2%%; stderr:\n%s", 100*share, st.Calls, res.stderr)
			}
			if tc.saw != "" && !strings.Contains(res.stderr, tc.saw) {
				t.Errorf("stderr does not show %q:\n%s", tc.saw, res.stderr)
			}
			if t.Failed() {
				t.Logf("sim: %+v", st)
			}
		})
	}
}
