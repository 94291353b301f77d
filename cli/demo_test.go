package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoLeavesNoTempDir: the demo's generated ids (and, without --out, its results) live in
// a temporary directory that goes when the demo ends, with or without --out, and when it is
// interrupted (issue 20: "/tmp/throttle-demo-* left after every demo").
func TestDemoLeavesNoTempDir(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // os.MkdirTemp's directory
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"default out", []string{"demo", "--items", "20", "--sim-rate", "1000/s"}, 0},
		{"--out", []string{"demo", "--items", "20", "--sim-rate", "1000/s", "--out", filepath.Join(t.TempDir(), "r.jsonl")}, 0},
		{"a failing run", []string{"demo", "--items", "20", "--sim-rate", "1000/s", "--sim-error-rate", "1", "--retries", "0"}, 1},
	} {
		res := run(t, invocation{args: tc.args})
		if res.code != tc.code {
			t.Fatalf("%s: exit %d, want %d; stderr:\n%s", tc.name, res.code, tc.code, res.stderr)
		}
		left, err := filepath.Glob(filepath.Join(tmp, "throttle-demo-*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("%s: the demo left %q", tc.name, left)
		}
		// The summary (stdout) says where the rows are: gone with the directory, or --out.
		if said := strings.Contains(res.stdout, "results removed with the demo's temporary directory"); said != (tc.name != "--out") {
			t.Errorf("%s: says the results were removed: %v; stdout:\n%s", tc.name, said, res.stdout)
		}
		if strings.Contains(res.stdout, "throttle-demo-") {
			t.Errorf("%s: the summary names the removed directory:\n%s", tc.name, res.stdout)
		}
	}
}
