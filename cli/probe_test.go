package cli_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestProbeRecommendsHalfTheCapacity: `throttle probe` against a simulated API with a hidden
// limit of 200 calls/s at 50 ms recommends a rate and a parallelism within 25% of half of it
// (100/s; 100/s × 50 ms = 5 in flight).
func TestProbeRecommendsHalfTheCapacity(t *testing.T) {
	t.Parallel()
	r := run(t, invocation{args: []string{"probe", "sim", "--item", "x", "--sim-rate", "200/s", "--step", "700ms"}})
	if r.code != 0 {
		t.Fatalf("probe exit %d, stderr:\n%s", r.code, r.stderr)
	}
	m := regexp.MustCompile(`start with: --parallelism (\d+) --rate ([0-9.]+)/s`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("probe output has no recommendation:\n%s", r.stdout)
	}
	p, _ := strconv.Atoi(m[1])
	rate, _ := strconv.ParseFloat(m[2], 64)
	if rate < 75 || rate > 125 || p < 4 || p > 6 {
		t.Errorf("probe recommends --parallelism %d --rate %.0f/s, want within 25%% of 5 and 100/s:\n%s", p, rate, r.stdout)
	}
	if !strings.Contains(r.stdout, "stopped: 429s at parallelism") {
		t.Errorf("probe does not say it stopped at the 429s:\n%s", r.stdout)
	}
}

func TestProbeUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"probe"},
		{"probe", "sim"},
		{"probe", "sim", "--item", "x", "--input", "y"},
		{"probe", "sim", "--item", "x", "--step", "1ms"},
		{"probe", "sim", "--item", "x", "--start", "8", "--max-parallelism", "4"},
	} {
		if r := run(t, invocation{args: args}); r.code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage); stderr:\n%s", args, r.code, r.stderr)
		}
	}
}

// TestRunAutoPrintsItsChanges: headless --auto prints every automatic change as a line.
func TestRunAutoPrintsItsChanges(t *testing.T) {
	t.Parallel()
	in := writeItems(t, 600)
	r := run(t, invocation{args: []string{"run", "sim", "--input", in, "--out", outPath(t), "--auto", "--parallelism", "1",
		"--sim-rate", "0", "--sim-latency", "10ms", "--sim-sigma", "0", "--progress-every", "500ms"}})
	if r.code != 0 {
		t.Fatalf("run --auto exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if !regexp.MustCompile(`parallelism 1 → 2 \(auto\)`).MatchString(r.stderr) {
		t.Errorf("run --auto printed no automatic change:\n%s", r.stderr)
	}
}
