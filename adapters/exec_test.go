package adapters

// Tests of the exec adapter with real processes (sh, sleep, cat, printf), so they run in real
// time: each kill test waits a few hundred milliseconds at most, and the file stays well under
// 15 s, the race detector included.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/throttle-dev/throttle/engine"
)

// newTestExec returns an adapter for cfg, failing the test if NewExec refuses it.
func newTestExec(t *testing.T, cfg ExecConfig) *Exec {
	t.Helper()
	x, err := NewExec(cfg)
	if err != nil {
		t.Fatalf("NewExec(%q): %v", cfg.Command, err)
	}
	return x
}

// shell returns the command sh -c script, with args as $1, $2, ….
func shell(script string, args ...string) []string {
	return append([]string{"sh", "-c", script, "sh"}, args...)
}

// pidIn returns the pid a command wrote to path, or 0 while there is none.
func pidIn(path string) int {
	b, _ := os.ReadFile(path)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// readPID waits up to 2 s for a command to have written its pid to path, and returns it.
func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if pid := pidIn(path); pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s after 2s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gone reports whether process pid has ended: it does not exist, or is a zombie that its new
// parent has not reaped yet (a container's init may never reap it).
func gone(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command's name, which is in parentheses: "123 (sleep) Z …".
	rest := b[bytes.LastIndexByte(b, ')')+1:]
	return len(bytes.TrimSpace(rest)) > 0 && bytes.TrimSpace(rest)[0] == 'Z'
}

// mustBeGone fails the test unless process pid ends within a second; it kills it either way,
// so that a failed test leaves nothing behind.
func mustBeGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s (pid %d) is still running after the call returned", what, pid)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExecOutput runs commands that exit 0: stdout is kept as JSON when it is JSON, otherwise
// as a string without trailing newlines; {item} and {.field} stay one argument each; with
// Stdin the item goes to stdin and the arguments are taken as they are.
func TestExecOutput(t *testing.T) {
	t.Parallel()
	jsonl := engine.Item{Line: `{"id": 7, "name": "a b"}`, JSON: true,
		Fields: map[string]any{"id": json.Number("7"), "name": "a b"}}
	for _, tc := range []struct {
		name    string
		command []string
		stdin   bool
		item    engine.Item
		want    string // the output's JSON text; "" for none
	}{
		{"JSON is kept as JSON", shell(`printf '%s\n' "$1"`, "{item}"), false, engine.Item{Line: `{"a": [1, 2]}`}, `{"a":[1,2]}`},
		{"a number is JSON", shell(`echo 42`), false, engine.Item{Line: "x"}, `42`},
		{"text is a string without trailing newlines", shell(`printf '%s\n\n' "$1"`, "{item}"), false, engine.Item{Line: "hello world"}, `"hello world"`},
		{"inner newlines stay", shell(`printf 'a\nb\r\n'`), false, engine.Item{Line: "x"}, `"a\nb"`},
		{"invalid UTF-8 is replaced", shell(`printf 'a\377'`), false, engine.Item{Line: "x"}, `"a\ufffd"`},
		{"no stdout, no output", []string{"true"}, false, engine.Item{Line: "x"}, ""},
		{"an item with spaces and quotes is one argument", shell(`printf '%s|%s' "$#" "$1"`, "{item}"), false,
			engine.Item{Line: `a "b" 'c' $HOME;`}, `"1|a \"b\" 'c' $HOME;"`},
		{"fields of a JSONL item", shell(`printf '%s|%s' "$1" "$2"`, "{.id}", "{.name}"), false, jsonl, `"7|a b"`},
		{"stdin: a line", []string{"cat"}, true, engine.Item{Line: "hi there"}, `"hi there"`},
		{"stdin: a JSONL object", []string{"cat"}, true, jsonl, `{"id":7,"name":"a b"}`},
		{"stdin: arguments as they are", shell(`printf '%s %s' "$1" "${HOME:+set}"`, "{item}"), true,
			engine.Item{Line: "x"}, `"{item} set"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := newTestExec(t, ExecConfig{Command: tc.command, Stdin: tc.stdin})
			out, err := x.Do(context.Background(), tc.item)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if out.Verdict != engine.OK || out.Status != 0 || out.Message != "" || out.Extra != nil {
				t.Errorf("verdict %v, status %d, message %q, extra %v; want ok, 0, none, none", out.Verdict, out.Status, out.Message, out.Extra)
			}
			if string(out.Output) != tc.want {
				t.Errorf("output %s, want %s", out.Output, tc.want)
			}
		})
	}
}

// TestExecOutputCap cuts stdout at MaxOutput, at a rune boundary, keeps it as a string and
// says so; a command writing far more than the cap is not blocked by a full pipe.
func TestExecOutputCap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		max     int64
		command []string
		want    string // the kept text
	}{
		{"cut", 10, shell(`printf '{"a":"0123456789abcdef"}'`), `{"a":"0123`},
		{"cut inside a rune", 4, shell(`printf 'aaa\303\251'`), "aaa"},
		{"a megabyte at the default cap", 0, shell(`yes | head -c 1048576`), strings.Repeat("y\n", DefaultMaxOutput/2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := newTestExec(t, ExecConfig{Command: tc.command, MaxOutput: tc.max})
			out, err := x.Do(context.Background(), engine.Item{Line: "x"})
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			var got string
			if err := json.Unmarshal(out.Output, &got); err != nil {
				t.Fatalf("output %.40s… is not a JSON string: %v", out.Output, err)
			}
			if out.Verdict != engine.OK || got != tc.want || out.Extra["truncated"] != true {
				t.Errorf("verdict %v, output %.40q (%d bytes), extra %v; want ok, %.40q (%d bytes), truncated",
					out.Verdict, got, len(got), out.Extra, tc.want, len(tc.want))
			}
		})
	}
	t.Run("exactly the cap is not cut", func(t *testing.T) {
		t.Parallel()
		x := newTestExec(t, ExecConfig{Command: shell(`printf 1234567890`), MaxOutput: 10})
		out, err := x.Do(context.Background(), engine.Item{Line: "x"})
		if err != nil || string(out.Output) != "1234567890" || out.Extra != nil {
			t.Errorf("output %s, extra %v, err %v; want 1234567890 (a JSON number), no extra", out.Output, out.Extra, err)
		}
	})
}

// TestExecExit classifies non-zero exits and signals: an answer with the exit code as status
// and stderr's tail (never stdout) in the message; RetryExit codes are Retry.
func TestExecExit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		script      string
		verdict     engine.Verdict
		status      int
		wantMessage string
	}{
		{"fail with stderr", `echo stdout-text; echo first >&2; echo; echo second >&2; exit 3`, engine.Fail, 3, "exit status 3: first | second"},
		{"fail without stderr", `exit 1`, engine.Fail, 1, "exit status 1"},
		{"a retryable code", `echo busy >&2; exit 75`, engine.Retry, 75, "exit status 75: busy"},
		{"the other codes fail", `exit 76`, engine.Fail, 76, "exit status 76"},
		{"killed by a signal", `echo dying >&2; kill -KILL $$`, engine.Fail, 0, "killed by signal SIGKILL: dying"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := newTestExec(t, ExecConfig{Command: shell(tc.script), RetryExit: []int{75, 111}})
			out, err := x.Do(context.Background(), engine.Item{Line: "x"})
			if err != nil {
				t.Fatalf("Do: %v; want an outcome", err)
			}
			if out.Verdict != tc.verdict || out.Status != tc.status || out.Message != tc.wantMessage || out.Output != nil {
				t.Errorf("verdict %v, status %d, message %q, output %s; want %v, %d, %q, none",
					out.Verdict, out.Status, out.Message, out.Output, tc.verdict, tc.status, tc.wantMessage)
			}
		})
	}
}

// TestExecStderrTail quotes only the last ~512 bytes of stderr, on one line, without terminal
// escapes or control characters, and with URLs redacted.
func TestExecStderrTail(t *testing.T) {
	t.Parallel()
	script := `head -c 5000 /dev/zero | tr '\0' x >&2
printf '\n\033[31mred\033[0m\tTAB\r\nsee https://user:pw@example.com/x?token=abc123\n\303\251 LAST\n' >&2
exit 2`
	x := newTestExec(t, ExecConfig{Command: shell(script)})
	out, err := x.Do(context.Background(), engine.Item{Line: "x"})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	msg := out.Message
	const prefix = "exit status 2: …"
	if !strings.HasPrefix(msg, prefix) || !strings.HasSuffix(msg, "red TAB | see https://REDACTED@example.com/x?token=REDACTED | é LAST") {
		t.Errorf("message %q: want %q, x…, then the last lines, redacted", msg, prefix)
	}
	if len(msg) > len(prefix)+stderrTail {
		t.Errorf("message of %d bytes: want the tail of stderr only (%d bytes at most)", len(msg), stderrTail)
	}
	for _, r := range msg {
		if unicode.IsControl(r) {
			t.Errorf("message %q has control character %U", msg, r)
		}
	}
	if strings.Contains(msg, "abc123") || strings.Contains(msg, "pw@") {
		t.Errorf("message %q holds a URL's secret", msg)
	}
}

// TestNewExecRefuses checks what NewExec refuses before any item runs, and that each error
// says why.
func TestNewExecRefuses(t *testing.T) {
	t.Parallel()
	notExecutable := filepath.Join(t.TempDir(), "job.sh")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  ExecConfig
		want []string // in the error
	}{
		{"no command", ExecConfig{}, []string{"no command"}},
		{"${NAME} in an argument", ExecConfig{Command: []string{"curl", "-H", "Authorization: Bearer ${TOKEN}"}},
			[]string{"argument 2 of 2 holds ${TOKEN}", "ps", "inherits the environment", "$TOKEN"}},
		{"${NAME} inside sh -c", ExecConfig{Command: shell(`echo ${TOKEN}`)}, []string{"argument 2 of 3 holds ${TOKEN}"}},
		{"an unknown program", ExecConfig{Command: []string{"throttle-no-such-program"}},
			[]string{`program "throttle-no-such-program"`, "not found"}},
		{"a program that is not executable", ExecConfig{Command: []string{notExecutable}}, []string{"permission denied"}},
		{"a placeholder as the program", ExecConfig{Command: []string{"{item}"}}, []string{"may not hold a placeholder"}},
		{"{items}", ExecConfig{Command: []string{"echo", "{items}"}}, []string{"one process per item"}},
		{"a bad template", ExecConfig{Command: []string{"echo", "{.}"}}, []string{"argument 1 of 1", "empty field name"}},
		{"exit code 0 to retry", ExecConfig{Command: []string{"true"}, RetryExit: []int{0}}, []string{"exit code 0"}},
		{"exit code 256 to retry", ExecConfig{Command: []string{"true"}, RetryExit: []int{256}}, []string{"exit code 256"}},
		{"a negative max output", ExecConfig{Command: []string{"true"}, MaxOutput: -1}, []string{"negative"}},
		{"a negative grace", ExecConfig{Command: []string{"true"}, KillGrace: -time.Second}, []string{"negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x, err := NewExec(tc.cfg)
			if err == nil {
				t.Fatalf("NewExec(%q) = %v, want an error", tc.cfg.Command, x)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// With Stdin the arguments are not templates: ${NAME} is the command's own business.
	if _, err := NewExec(ExecConfig{Command: shell(`echo ${TOKEN}`), Stdin: true}); err != nil {
		t.Errorf("with Stdin, ${TOKEN} in sh -c: %v; want it taken as it is", err)
	}
}

// TestExecProgramGone fails an item permanently when the program found at startup can no
// longer be started.
func TestExecProgramGone(t *testing.T) {
	t.Parallel()
	prog := filepath.Join(t.TempDir(), "job.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho ok\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	x := newTestExec(t, ExecConfig{Command: []string{prog}})
	if out, err := x.Do(context.Background(), engine.Item{Line: "x"}); err != nil || string(out.Output) != `"ok"` {
		t.Fatalf("before removal: output %s, err %v; want \"ok\"", out.Output, err)
	}
	if err := os.Remove(prog); err != nil {
		t.Fatal(err)
	}
	_, err := x.Do(context.Background(), engine.Item{Line: "x"})
	if !engine.IsPermanent(err) || !strings.Contains(err.Error(), "cannot start") {
		t.Errorf("after removal: err %v; want a permanent \"cannot start\" error", err)
	}
}

// TestExecTimeoutKillsGroup runs a command whose shell and grandchild both ignore SIGTERM: at
// the deadline the group gets SIGTERM, then SIGKILL after the grace, and Do returns an error
// wrapping context.DeadlineExceeded with no process left.
func TestExecTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	const timeout, grace = 300 * time.Millisecond, 300 * time.Millisecond
	pidFile := filepath.Join(t.TempDir(), "pid")
	x := newTestExec(t, ExecConfig{Command: shell(`trap "" TERM; sleep 30 & echo $! > "$1"; wait`, pidFile), KillGrace: grace})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	_, err := x.Do(ctx, engine.Item{Line: "x"})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v; want one wrapping context.DeadlineExceeded", err)
	}
	// Not before the grace (SIGTERM alone cannot end it), and soon after: 700 ms of margin for
	// a loaded machine under the race detector.
	if took < timeout+grace-20*time.Millisecond || took > timeout+grace+700*time.Millisecond {
		t.Errorf("Do returned after %v; want about %v (timeout + grace)", took, timeout+grace)
	}
	mustBeGone(t, readPID(t, pidFile), "the grandchild that ignores SIGTERM")
}

// TestExecStopKillsGrandchildren cancels a call whose shell dies of SIGTERM while its
// grandchild ignores it: the grandchild is killed as soon as the shell is gone, not after the
// grace, and Do returns ctx's error.
func TestExecStopKillsGrandchildren(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	x := newTestExec(t, ExecConfig{
		Command:   shell(`sh -c 'trap "" TERM; sleep 30' & echo $! > "$1"; sleep 30 & wait`, pidFile),
		KillGrace: 5 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // stop the call once the grandchild runs
		for deadline := time.Now().Add(2 * time.Second); pidIn(pidFile) == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	_, err := x.Do(ctx, engine.Item{Line: "x"})
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v; want one wrapping context.Canceled", err)
	}
	if took > 2*time.Second {
		t.Errorf("Do returned after %v; want well before the 5s grace, since the shell died of SIGTERM", took)
	}
	mustBeGone(t, readPID(t, pidFile), "the grandchild that ignores SIGTERM")
}

// TestExecExitKillsLeftovers runs a command that exits leaving a background child holding its
// stdout: the call ends at once with the output, and the child is killed.
func TestExecExitKillsLeftovers(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	x := newTestExec(t, ExecConfig{Command: shell(`sleep 30 & echo $! > "$1"; echo done`, pidFile), KillGrace: 5 * time.Second})
	start := time.Now()
	out, err := x.Do(context.Background(), engine.Item{Line: "x"})
	if err != nil || string(out.Output) != `"done"` {
		t.Fatalf("output %s, err %v; want \"done\"", out.Output, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Do returned after %v; want at once, not after the child or the 5s grace", took)
	}
	mustBeGone(t, readPID(t, pidFile), "the background child")
}

// TestExecEscapedProcess runs a command whose child leaves the process group (setsid) and
// keeps stdout open: it cannot be killed with the group, but it holds the call no longer than
// the grace.
func TestExecEscapedProcess(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid:", err)
	}
	const grace = 300 * time.Millisecond
	pidFile := filepath.Join(t.TempDir(), "pid")
	x := newTestExec(t, ExecConfig{Command: shell(`setsid sh -c 'echo $$ > "$1"; exec sleep 30' sh "$1" &
while [ ! -s "$1" ]; do sleep 0.01; done # gone from the group, which dies when this shell exits
echo done`, pidFile), KillGrace: grace})
	start := time.Now()
	out, err := x.Do(context.Background(), engine.Item{Line: "x"})
	took := time.Since(start)
	pid := readPID(t, pidFile)
	defer syscall.Kill(pid, syscall.SIGKILL)
	if err != nil || out.Verdict != engine.OK || string(out.Output) != `"done"` {
		t.Errorf("verdict %v, output %s, err %v; want ok, \"done\"", out.Verdict, out.Output, err)
	}
	if took > grace+time.Second {
		t.Errorf("Do returned after %v; want within the %v grace", took, grace)
	}
}

// TestExecEngineParallelism runs sleep 0.05 per item through the engine at parallelism 2 and
// raises it to 8 mid-run: the processes running at once, counted by the commands themselves
// in a shared log, follow (2 at most before, 8 at most and reached after).
func TestExecEngineParallelism(t *testing.T) {
	t.Parallel()
	const n = 100
	log := filepath.Join(t.TempDir(), "log")
	// Each line is one small O_APPEND write, so lines never interleave.
	x := newTestExec(t, ExecConfig{Command: shell(`echo start >> "$1"; sleep 0.05; echo end >> "$1"`, log)})
	var items strings.Builder
	for i := range n {
		fmt.Fprintln(&items, i)
	}
	var rows bytes.Buffer
	e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: 2, Burst: 1}, Adapter: x,
		Source: engine.NewLineReader(strings.NewReader(items.String()), false), Total: n, Results: &rows})
	if err != nil {
		t.Fatal(err)
	}
	type ran struct {
		sum engine.Summary
		err error
	}
	done := make(chan ran, 1)
	go func() {
		sum, err := e.Run(context.Background())
		done <- ran{sum, err}
	}()
	started := func() int {
		b, _ := os.ReadFile(log)
		return bytes.Count(b, []byte("start"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for started() < 12 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("raise\n") // before the raise: every later start is counted after it
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetParallelism(8, "test"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.sum.OK != n {
		t.Fatalf("run: %d ok of %d, err %v; rows:\n%s", r.sum.OK, n, r.err, rows.String())
	}

	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	running, most, before, starts := 0, 0, -1, 0
	for _, line := range strings.Fields(string(b)) {
		switch line {
		case "start":
			running++
			starts++
		case "end":
			running--
		case "raise":
			before, most = most, running
		}
		most = max(most, running)
	}
	t.Logf("at most %d processes at once before the raise, %d after", before, most)
	if starts != n || running != 0 {
		t.Errorf("%d starts, %d running at the end; want %d and 0", starts, running, n)
	}
	if before != 2 {
		t.Errorf("at most %d processes at once at parallelism 2; want 2", before)
	}
	if most != 8 {
		t.Errorf("at most %d processes at once after raising parallelism to 8; want 8", most)
	}
}

// TestExecString shows the command as a shell would read it, with URLs redacted.
func TestExecString(t *testing.T) {
	t.Parallel()
	x := newTestExec(t, ExecConfig{Command: []string{"curl", "-sf", "https://u:p@example.com/{item}?key=k", "it's"}})
	const want = `curl -sf 'https://REDACTED@example.com/{item}?key=REDACTED' 'it'\''s'`
	if got := x.String(); got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}
