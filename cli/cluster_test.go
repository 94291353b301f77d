package cli_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// redisURL returns THROTTLE_TEST_REDIS, or skips the test (fails it under CI=true).
func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("THROTTLE_TEST_REDIS")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("THROTTLE_TEST_REDIS is not set (CI=true): a test of a job across hosts needs a real Redis")
		}
		t.Skip("THROTTLE_TEST_REDIS is not set: set it (e.g. redis://127.0.0.1:6379/0) to test jobs across hosts")
	}
	return u
}

// jobName is a shared job's name of its own for a test: the prefix, the process and the time.
func jobName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano())
}

// host is one throttle process of a shared job, its stderr kept and watched.
type host struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	err  strings.Builder
	out  strings.Builder // stdout: the summary
	done chan error
}

// hostStdout collects a host's stdout under its lock.
type hostStdout struct{ h *host }

func (w hostStdout) Write(p []byte) (int, error) {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	return w.h.out.Write(p)
}

func startHost(t *testing.T, bin string, args ...string) *host {
	t.Helper()
	h := &host{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	h.cmd.Env = append(os.Environ(), "NO_COLOR=1")
	pr, pw := io.Pipe()
	h.cmd.Stderr = pw
	h.cmd.Stdout = hostStdout{h}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			h.mu.Lock()
			h.err.WriteString(sc.Text() + "\n")
			h.mu.Unlock()
		}
	}()
	go func() { h.done <- h.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { _ = h.cmd.Process.Kill() })
	return h
}

func (h *host) stderr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err.String()
}

func (h *host) stdout() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

func (h *host) waitFor(t *testing.T, what string, d time.Duration) {
	t.Helper()
	if !waitFor(d, func() bool { return strings.Contains(h.stderr(), what) }) {
		t.Fatalf("no %q within %v:\n%s", what, d, h.stderr())
	}
}

// TestClusterThreeHosts: a coordinator and two hosts that join share one job against one
// loopback server: the server never sees more than the global cap in flight nor more than
// rate+burst calls in any second; a cap raised with ctl on one host reaches the server
// within 200 ms; a host killed with SIGKILL mid-run loses nothing: one row per item.
func TestClusterThreeHosts(t *testing.T) {
	url := redisURL(t)
	bin := bintest.Build(t)
	var mu sync.Mutex
	var over time.Time // when the server first saw more than the first cap in flight
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if a.inflight > 6 {
			mu.Lock()
			if over.IsZero() {
				over = time.Now()
			}
			mu.Unlock()
		}
		time.Sleep(100 * time.Millisecond)
		okJSON(w, r)
	})
	const items = 1200
	in, out := writeItems(t, items), outPath(t)
	job := jobName("test")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil { // the control socket wants a private directory
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "c.sock")
	coord := startHost(t, bin, "run", "http", "--input", in, "--out", out, "--url", srv.URL+"/{item}", "--headless",
		"--parallelism", "6", "--rate", "120/s", "--burst", "5", "--timeout", "2s", "--lease", "3s",
		"--redis", url, "--job", job, "--control", sock)
	coord.waitFor(t, "coordinator", 10*time.Second)
	joiners := []*host{startHost(t, bin, "join", "--redis", url, "--job", job, "--headless"),
		startHost(t, bin, "join", "--redis", url, "--job", job, "--headless")}
	for _, j := range joiners {
		j.waitFor(t, "joined as", 10*time.Second)
	}
	time.Sleep(2 * time.Second)

	// Raise the cap from one host; the server must see it within 200 ms.
	raised := time.Now()
	if b, err := exec.Command(bin, "ctl", "--control", sock, "set", "parallelism", "10").CombinedOutput(); err != nil {
		t.Fatalf("ctl set: %v\n%s\ncoordinator:\n%s", err, b, coord.stderr())
	}
	if !waitFor(2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return !over.IsZero() }) {
		t.Fatal("the raised cap never reached the server")
	}
	mu.Lock()
	seen := over.Sub(raised)
	mu.Unlock()
	t.Logf("the raise reached the server after %v", seen)
	if seen > 200*time.Millisecond {
		t.Errorf("the raise reached the server after %v; want within 200 ms", seen)
	}

	// A lowered rate, which the gate keeps and no engine applies, is in every host's log as
	// the operator turned it.
	if b, err := exec.Command(bin, "ctl", "--control", sock, "set", "rate", "100/s").CombinedOutput(); err != nil {
		t.Fatalf("ctl set rate: %v\n%s", err, b)
	}
	for _, h := range append([]*host{coord}, joiners...) {
		h.waitFor(t, "rate 120/s → 100/s (", 5*time.Second)
	}

	// Kill a host mid-run: its items go to the others after the lease.
	time.Sleep(time.Second)
	if err := joiners[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-coord.done:
		if err != nil {
			t.Fatalf("coordinator: %v\n%s", err, coord.stderr())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the job did not end:\n%s", coord.stderr())
	}
	if err := <-joiners[0].done; err != nil {
		t.Errorf("the surviving host: %v\n%s", err, joiners[0].stderr())
	}
	// A joined host wrote no file: its summary says where its rows went.
	if sum := joiners[0].stdout(); !strings.Contains(sum, "rows sent to job "+job+"'s coordinator") || strings.Contains(sum, "results appended") {
		t.Errorf("the joined host's summary does not say where its rows went:\n%s", sum)
	}

	rows := readRows(t, out)
	byItem := rowsByItem(t, rows)
	if len(rows) != items || len(byItem) != items {
		t.Fatalf("%d rows for %d distinct items; want %d, one each\n%s", len(rows), len(byItem), items, coord.stderr())
	}
	for _, r := range rows {
		if r.OK == nil || !*r.OK {
			t.Fatalf("row %+v failed", r)
		}
	}
	maxIn := 0
	var starts []time.Time
	for _, a := range srv.seen() {
		maxIn = max(maxIn, a.inflight)
		starts = append(starts, a.at)
	}
	if maxIn > 10 {
		t.Errorf("the server saw %d calls in flight; the global cap was at most 10", maxIn)
	}
	if n, at := maxInWindow(starts, time.Second); n > 125 {
		t.Errorf("the server saw %d calls in the second after %v; the global rate is 120/s, burst 5", n, at)
	}
	// A host that joins the finished job is told so, and runs nothing.
	b, err := exec.Command(bin, "join", "--redis", url, "--job", job, "--headless").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(b), "job "+job+" is finished") {
		t.Errorf("join of the finished job: %v\n%s\nwant exit 2 and that the job is finished", err, b)
	}
	_ = context.Background
}
