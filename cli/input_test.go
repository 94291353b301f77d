package cli_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// countLines counts the newlines in a file that a run may be writing: its rows so far.
func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// paddedLine is item i of the growing-input tests: 1 KiB long, so that a few thousand of them
// are more than the run reads ahead of its calls.
func paddedLine(i int) string {
	return fmt.Sprintf("item-%06d-%s", i, strings.Repeat("p", 1000))
}

// TestInputGrowsWithoutFollow: lines appended to --input while the run reads it are not taken
// (the run stops at the size it counted at the start) and the run says so; every counted
// item gets exactly one row.
func TestInputGrowsWithoutFollow(t *testing.T) {
	t.Parallel()
	const n, more = 3000, 200 // n lines: far more than the reader's buffer and the engine's queue hold
	gate := make(chan struct{})
	var closeGate sync.Once
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	t.Cleanup(func() { closeGate.Do(func() { close(gate) }) })
	var b strings.Builder
	for i := range n {
		b.WriteString(paddedLine(i) + "\n")
	}
	in := writeFile(t, "items.txt", b.String())
	out := outPath(t)
	done := make(chan result, 1)
	stderr := &syncBuffer{}
	go func() {
		done <- run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--headless",
			"--url", srv.URL + "/{item}", "--parallelism", "8"}, stderr: stderr})
	}()
	// Once calls are waiting at the gate the count is done: append while the reader is held.
	if !waitFor(10*time.Second, func() bool { return srv.inflight.Load() == 8 }) {
		t.Fatalf("no calls in flight; stderr:\n%s", stderr.String())
	}
	f, err := os.OpenFile(in, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := n; i < n+more; i++ {
		fmt.Fprintln(f, paddedLine(i))
	}
	f.Close()
	closeGate.Do(func() { close(gate) })
	var res result
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the run did not end")
	}
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	rows := readRows(t, out)
	seen := itemCounts(rows)
	if len(rows) != n || len(seen) != n {
		t.Errorf("%d rows of %d items, want %d: the run must stop at the lines counted at the start", len(rows), len(seen), n)
	}
	if seen[paddedLine(n)] != 0 {
		t.Error("an appended line was run without --follow")
	}
	want := fmt.Sprintf("input grew by %d bytes while the run read it; stopped at the %d items counted at the start; use --follow to take appended lines", more*(len(paddedLine(0))+1), n)
	if !strings.Contains(res.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
	}
}

// TestInputFollow: with --follow, lines appended to --input (each written in two halves 0.5 ms
// apart) are taken once their newline has arrived, each once, never a half of one; a half
// line at the end is not taken; a drain ends the run.
func TestInputFollow(t *testing.T) {
	t.Parallel()
	in := writeFile(t, "items.txt", "first\nsecond\n")
	out := outPath(t)
	sig := make(chan os.Signal, 1)
	done := make(chan result, 1)
	go func() {
		done <- run(t, invocation{args: []string{"run", "sim", "--input", in, "--out", out, "--headless",
			"--sim-rate", "0", "--sim-latency", "100us", "--parallelism", "4", "--follow"}, signals: sig})
	}()
	if !waitFor(10*time.Second, func() bool { return countLines(out) == 2 }) {
		t.Fatalf("%d rows of the first two lines", countLines(out))
	}
	f, err := os.OpenFile(in, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const more = 100
	for i := range more {
		line := fmt.Sprintf("appended-line-%06d-tail", i)
		f.WriteString(line[:10])
		time.Sleep(500 * time.Microsecond)
		f.WriteString(line[10:] + "\n")
	}
	f.WriteString("half-a-line") // its newline never comes
	if !waitFor(10*time.Second, func() bool { return countLines(out) == 2+more }) {
		t.Fatalf("%d rows, want %d: --follow must take the appended lines", countLines(out), 2+more)
	}
	time.Sleep(300 * time.Millisecond) // time enough for a wrong reader to take the half line
	sig <- syscall.SIGTERM
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a drained --follow run did not end")
	}
	if res.code != 130 {
		t.Errorf("exit status %d, want 130 (drained); stderr:\n%s", res.code, res.stderr)
	}
	re := regexp.MustCompile(`^(first|second|appended-line-\d{6}-tail)$`)
	seen := map[string]int{}
	for _, r := range readRows(t, out) {
		if !re.MatchString(r.item()) {
			t.Errorf("row of %q: not a whole line", r.item())
		}
		if seen[r.item()]++; seen[r.item()] > 1 {
			t.Errorf("%q has two rows", r.item())
		}
	}
	if len(seen) != 2+more {
		t.Errorf("%d items have a row, want %d", len(seen), 2+more)
	}
}

// TestInputFollowRefused: --follow is for a regular file; stdin and a FIFO are read as they
// come already.
func TestInputFollowRefused(t *testing.T) {
	t.Parallel()
	res := run(t, invocation{args: []string{"run", "sim", "--input", "-", "--out", outPath(t), "--follow"}})
	if res.code != 2 || !strings.Contains(res.stderr, "--follow") {
		t.Errorf("--follow on stdin: exit %d, stderr %q; want 2 and a reason", res.code, res.stderr)
	}
}

// TestInputFIFO: a FIFO as --input (what <(…) gives) is read once, as it comes: every line
// runs once, and no seek fails after its data was read.
func TestInputFIFO(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "items.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO: %v", err)
	}
	const n = 500
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		for i := range n {
			fmt.Fprintf(f, "%d\n", i)
		}
	}()
	out := outPath(t)
	res, _ := runBounded(t, invocation{args: []string{"run", "sim", "--input", fifo, "--out", out, "--headless",
		"--sim-rate", "0", "--sim-latency", "100us", "--parallelism", "8"}}, 30*time.Second)
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	rows := readRows(t, out)
	seen := itemCounts(rows)
	if len(rows) != n || len(seen) != n {
		t.Errorf("%d rows of %d distinct items, want %d each once", len(rows), len(seen), n)
	}
}

// TestFileModes: results, the event log and the recording are created 0600: they hold
// whatever the target answered. A results file that exists keeps its mode, with a note.
func TestFileModes(t *testing.T) {
	t.Parallel()
	old := syscall.Umask(0)
	syscall.Umask(old) // only read: a umask that takes owner bits would defeat any mode
	if old&0o600 != 0 {
		t.Skipf("umask %04o takes the owner's bits", old)
	}
	dir := t.TempDir()
	out, log, rec := filepath.Join(dir, "results.jsonl"), filepath.Join(dir, "run.log"), filepath.Join(dir, "run.rec")
	res := run(t, invocation{args: []string{"run", "sim", "--input", writeItems(t, 20), "--out", out, "--log", log,
		"--record", rec, "--headless", "--sim-rate", "0", "--sim-latency", "100us"}})
	if res.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	for _, p := range []string{out, log, rec} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), st.Mode().Perm())
		}
	}
	if strings.Contains(res.stderr, "note:") {
		t.Errorf("a note for files it created itself:\n%s", res.stderr)
	}

	shared := filepath.Join(dir, "shared.jsonl")
	if err := os.WriteFile(shared, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o640); err != nil {
		t.Fatal(err)
	}
	res = run(t, invocation{args: []string{"run", "sim", "--input", writeItems(t, 5), "--out", shared,
		"--headless", "--sim-rate", "0", "--sim-latency", "100us"}})
	if st, _ := os.Stat(shared); res.code != 0 || st.Mode().Perm() != 0o640 {
		t.Errorf("an existing results file: exit %d, mode %04o; want 0 and its own 0640 kept", res.code, st.Mode().Perm())
	}
	if !strings.Contains(res.stderr, "note: --out "+shared+" already exists with mode 0640") {
		t.Errorf("no note that others may read the results:\n%s", res.stderr)
	}
}

// mainProcess starts this test binary as the throttle command (see TestHostileMainProcess)
// with args, its stdin from stdin (nil: none) and its stderr into a buffer.
func mainProcess(t *testing.T, stdin *os.File, args ...string) (*exec.Cmd, *syncBuffer, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHostileMainProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() // closed, so that every receiver sees the end
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd, stderr, done
}

// termWithin sends SIGTERM to cmd and fails the test unless it exits within d; it returns the
// exit status.
func termWithin(t *testing.T, cmd *exec.Cmd, done <-chan struct{}, d time.Duration, stderr *syncBuffer) int {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("still running %v after SIGTERM; stderr:\n%s", d, stderr.String())
		return -1
	}
}

// TestInputEndless: /dev/zero as --input and as stdin is one line that never ends. It becomes
// a failed row when it passes 16 MiB, and SIGTERM ends the run within 2 s with that row
// written.
func TestInputEndless(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	for _, name := range []string{"--input /dev/zero", "stdin from /dev/zero"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := outPath(t)
			args := []string{"run", "sim", "--out", out, "--headless", "--progress-every", "50ms", "--sim-rate", "0", "--input"}
			var stdin *os.File
			if strings.HasPrefix(name, "stdin") {
				z, err := os.Open("/dev/zero")
				if err != nil {
					t.Fatal(err)
				}
				defer z.Close()
				stdin, args = z, append(args, "-")
			} else {
				args = append(args, "/dev/zero")
			}
			cmd, stderr, done := mainProcess(t, stdin, args...)
			if !waitFor(20*time.Second, func() bool { return strings.Contains(stderr.String(), "failed 1") }) {
				t.Fatalf("no failed row for the endless line; stderr:\n%s", stderr.String())
			}
			if code := termWithin(t, cmd, done, 2*time.Second, stderr); code != 130 {
				t.Errorf("exit status %d after SIGTERM, want 130; stderr:\n%s", code, stderr.String())
			}
			rows := readRows(t, out)
			if len(rows) != 1 || *rows[0].OK || !strings.Contains(rows[0].Error, "input line 1 is longer than 16777216 bytes") {
				t.Errorf("rows %+v, want one failed row for the too-long line 1", rows)
			}
		})
	}
}

// TestInputCountingAnswersSIGTERM: the counting pass over a huge input (a sparse file of
// 64 GiB: one line of zeros) ends at SIGTERM within 2 s, exit 130, nothing called.
func TestInputCountingAnswersSIGTERM(t *testing.T) {
	t.Parallel()
	huge := filepath.Join(t.TempDir(), "huge.txt")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil {
		f.Close()
		t.Skipf("no sparse file: %v", err)
	}
	f.Close()
	out := outPath(t)
	cmd, stderr, done := mainProcess(t, nil, "run", "sim", "--input", huge, "--out", out, "--headless", "--sim-rate", "0")
	time.Sleep(500 * time.Millisecond) // well into the count: it takes seconds
	select {
	case <-done:
		t.Fatalf("the run ended before SIGTERM (%v): the input is too small to test the count; stderr:\n%s", cmd.ProcessState, stderr.String())
	default:
	}
	if code := termWithin(t, cmd, done, 2*time.Second, stderr); code != 130 {
		t.Errorf("exit status %d after SIGTERM in the count, want 130; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "nothing was called") {
		t.Errorf("stderr does not say the run was interrupted before it called anything:\n%s", stderr.String())
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a results file was left by a run interrupted in its count")
	}
}

// TestInputFIFONoWriter: a FIFO that nobody writes to holds the opening of the input; SIGTERM
// still ends the run within 2 s, exit 130, nothing called.
func TestInputFIFONoWriter(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "items.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO: %v", err)
	}
	t.Cleanup(func() { // let the open the run gave up on return, so that nothing is left blocked
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	sig := make(chan os.Signal, 1)
	done := make(chan result, 1)
	out := outPath(t)
	go func() {
		done <- run(t, invocation{args: []string{"run", "sim", "--input", fifo, "--out", out, "--headless"}, signals: sig})
	}()
	time.Sleep(200 * time.Millisecond)
	sig <- syscall.SIGTERM
	select {
	case res := <-done:
		if res.code != 130 || !strings.Contains(res.stderr, "nothing was called") {
			t.Errorf("exit %d, stderr %q; want 130 and that nothing was called", res.code, res.stderr)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("SIGTERM did not end a run waiting for a FIFO's writer within 2 s")
	}
}
