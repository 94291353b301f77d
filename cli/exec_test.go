package cli_test

// Integration tests of `throttle run exec` through cli.Main with real commands (sh, cat,
// printf, true): result rows, --retry-exit, --timeout with --kill-grace, --stdin, --max-output,
// and the usage errors that stop a run before any item. They take about a second in all.

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunExecRows runs ten items through sh: items 3 and 7 exit 4 with a message on stderr.
// Every item has one row; ok rows keep stdout as JSON, failed rows the exit status and stderr,
// never stdout; the run exits 1.
func TestRunExecRows(t *testing.T) {
	t.Parallel()
	out := outPath(t)
	script := `case $1 in 3|7) echo "stdout of $1"; echo "no such user: $1" >&2; exit 4;; esac; printf '{"n": %s}\n' "$1"`
	res := run(t, invocation{args: []string{"run", "exec", "--input", writeItems(t, 10), "--out", out, "--parallelism", "4",
		"--", "sh", "-c", script, "sh", "{item}"}})
	if res.code != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
	}
	byItem := rowsByItem(t, readRows(t, out))
	if len(byItem) != 10 {
		t.Errorf("%d items with rows, want 10", len(byItem))
	}
	for i := range 10 {
		r, ok := byItem[strconv.Itoa(i)]
		switch {
		case !ok:
			t.Errorf("item %d has no row", i)
		case i == 3 || i == 7:
			want := "exit status 4: no such user: " + strconv.Itoa(i)
			if *r.OK || r.Status != 4 || r.Error != want || *r.Attempts != 1 || r.Output != nil {
				t.Errorf("item %d: ok %v, status %d, error %q, %d attempts, output %s; want failed, 4, %q, 1, none",
					i, *r.OK, r.Status, r.Error, *r.Attempts, r.Output, want)
			}
		default:
			want := `{"n":` + strconv.Itoa(i) + `}`
			if !*r.OK || r.Status != 0 || r.Error != "" || string(r.Output) != want {
				t.Errorf("item %d: ok %v, status %d, error %q, output %s; want ok, no status, no error, %s",
					i, *r.OK, r.Status, r.Error, r.Output, want)
			}
		}
	}
}

// TestRunExecRetryExit retries the exit codes of --retry-exit up to --retries times, then
// fails the item; other codes fail at once. Each call appends its item to a file, so the
// attempts in the rows are checked against the processes that ran.
func TestRunExecRetryExit(t *testing.T) {
	t.Parallel()
	out := outPath(t)
	calls := filepath.Join(t.TempDir(), "calls")
	items := writeFile(t, "items.txt", "busy\nbroken\n")
	script := `echo "$2" >> "$1"; echo "$2 says no" >&2; [ "$2" = busy ] && exit 75; exit 76`
	res := run(t, invocation{args: []string{"run", "exec", "--input", items, "--out", out,
		"--retry-exit", "75,111", "--retries", "2", "--max-backoff", "5ms", "--", "sh", "-c", script, "sh", calls, "{item}"}})
	if res.code != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
	}
	byItem := rowsByItem(t, readRows(t, out))
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	ran := strings.Fields(string(b))
	for _, tc := range []struct {
		item     string
		status   int
		attempts int
		err      string
	}{
		{"busy", 75, 3, "exit status 75: busy says no after 3 attempts"},
		{"broken", 76, 1, "exit status 76: broken says no"},
	} {
		r := byItem[tc.item]
		if r.OK == nil || *r.OK || r.Status != tc.status || *r.Attempts != tc.attempts || r.Error != tc.err {
			t.Errorf("row of %s: %+v; want failed, status %d, %d attempts, error %q", tc.item, r, tc.status, tc.attempts, tc.err)
		}
		n := 0
		for _, it := range ran {
			if it == tc.item {
				n++
			}
		}
		if n != tc.attempts {
			t.Errorf("%s ran %d times, want %d", tc.item, n, tc.attempts)
		}
	}
}

// TestRunExecTimeout runs a command that ignores SIGTERM under --timeout 200ms and
// --kill-grace 100ms: each attempt is killed after 300 ms, the timeout is retried like any
// timeout, and the row says so.
func TestRunExecTimeout(t *testing.T) {
	t.Parallel()
	out := outPath(t)
	start := time.Now()
	res := run(t, invocation{args: []string{"run", "exec", "--input", writeItems(t, 1), "--out", out,
		"--timeout", "200ms", "--kill-grace", "100ms", "--retries", "1", "--max-backoff", "5ms",
		"--", "sh", "-c", `trap "" TERM; sleep 30`}})
	took := time.Since(start)
	if res.code != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
	}
	rows := readRows(t, out)
	const want = "timeout after 200ms after 2 attempts"
	if len(rows) != 1 || *rows[0].OK || rows[0].Error != want || *rows[0].Attempts != 2 {
		t.Fatalf("rows %+v; want one failed row with error %q after 2 attempts", rows, want)
	}
	// Two attempts of 300 ms each; a second of margin for a loaded machine, far below the
	// 30 s the command would take if it were not killed.
	if took > 2*time.Second {
		t.Errorf("the run took %v; want about 600ms", took)
	}
}

// TestRunExecStdin writes each JSONL item to cat's stdin: the rows keep the objects as output.
// --max-output cuts a long line and the row says "truncated".
func TestRunExecStdin(t *testing.T) {
	t.Parallel()
	out := outPath(t)
	const long = `{"id": 2, "name": "a much longer name"}`
	items := writeFile(t, "users.jsonl", `{"id": 1, "name": "ada"}`+"\n"+long+"\n")
	res := run(t, invocation{args: []string{"run", "exec", "--input", items, "--out", out, "--stdin", "--max-output", "32", "--", "cat"}})
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[float64]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct {
			Item      struct{ ID float64 }
			Output    any
			Truncated bool
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("row %s: %v", line, err)
		}
		got[r.Item.ID] = map[string]any{"output": r.Output, "truncated": r.Truncated}
	}
	want := map[float64]map[string]any{
		1: {"output": map[string]any{"id": 1.0, "name": "ada"}, "truncated": false},
		2: {"output": long[:32], "truncated": true},
	}
	for id, w := range want {
		if g := got[id]; !jsonEqual(g, w) {
			t.Errorf("item %v: %v; want %v", id, g, w)
		}
	}
}

// jsonEqual reports whether a and b marshal to the same JSON.
func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// TestRunExecUsageErrors refuses a run before any item: exit 2, a message that says why, and
// no results file.
func TestRunExecUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string // after run exec --input … --out …
		want []string // in stderr
	}{
		{"no command", nil, []string{"exec needs a command after --"}},
		{"no --", []string{"true"}, []string{"put the command after --"}},
		{"words before --", []string{"x", "--", "true"}, []string{`"x" before --`}},
		{"a secret in argv", []string{"--", "curl", "-H", "Authorization: Bearer ${API_TOKEN}", "https://example.com/{item}"},
			[]string{"${API_TOKEN}", "visible to every user through ps", "inherits the environment"}},
		{"an unknown program", []string{"--", "throttle-no-such-program", "{item}"}, []string{`"throttle-no-such-program"`, "not found"}},
		{"a bad --retry-exit", []string{"--retry-exit", "0", "--", "true"}, []string{"--retry-exit", "1 to 255"}},
		{"a zero --kill-grace", []string{"--kill-grace", "0s", "--", "true"}, []string{"--kill-grace", "positive"}},
		{"a zero --max-output", []string{"--max-output", "0", "--", "true"}, []string{"--max-output", "positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := outPath(t)
			args := append([]string{"run", "exec", "--input", writeItems(t, 3), "--out", out}, tc.args...)
			res := run(t, invocation{args: args})
			if res.code != 2 {
				t.Errorf("exit status %d, want 2; stderr:\n%s", res.code, res.stderr)
			}
			for _, w := range append(tc.want, "nothing was called") {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, res.stderr)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("results file: %v; want none", err)
			}
		})
	}
}

// TestRunExecHelp lists exec among the adapters and explains its flags and the --.
func TestRunExecHelp(t *testing.T) {
	t.Parallel()
	res := run(t, invocation{args: []string{"run", "exec", "--help"}})
	for _, w := range []string{"exec [flags] -- COMMAND [ARGS…]", "--stdin", "--max-output", "--retry-exit", "--kill-grace",
		"--timeout", "sh -c", "ps"} {
		if !strings.Contains(res.stdout, w) {
			t.Errorf("run exec --help does not say %q:\n%s", w, res.stdout)
		}
	}
	if res := run(t, invocation{args: []string{"run", "--help"}}); !strings.Contains(res.stdout, "\n  exec ") {
		t.Errorf("run --help does not list exec:\n%s", res.stdout)
	}
}

// TestProbeExec ramps an exec target: the adapter is registered under probe too.
func TestProbeExec(t *testing.T) {
	t.Parallel()
	res := run(t, invocation{args: []string{"probe", "exec", "--item", "x", "--max-parallelism", "2", "--step", "100ms",
		"--max-time", "300ms", "--", "true"}})
	if res.code != 0 || !strings.Contains(res.stdout, "probing exec with item x") || !strings.Contains(res.stdout, "stopped:") {
		t.Errorf("exit status %d; stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}
