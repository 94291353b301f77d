package main

// ---- memory: peak RSS of the binary under inputs, servers and knobs that used to blow it up ----

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// memoryGoal is the bar for each of the three runs.
const memoryGoal = "< 300 MB"

// memoryScenario runs the binary three times over (each o.n times) and reports its peak RSS:
// 200 lines of 8 MiB on stdin, a server answering 9 MB of headers at parallelism 256, and a
// run told `ctl set parallelism 100000000` (which must be refused) and then `ctl stop`.
func memoryScenario(o *options) ([]*figure, error) {
	figs, err := memoryLongLines(o)
	if err != nil {
		return figs, err
	}
	f, err := memoryBigHeaders(o)
	figs = append(figs, f)
	if err != nil {
		return figs, err
	}
	f, err = memoryCtlParallelism(o)
	figs = append(figs, f)
	return figs, err
}

// hwm follows a running child's peak RSS (VmHWM in /proc/PID/status) until stop. Not the
// rusage of wait: on Linux a child started with vfork reports the larger of its own peak and
// this process's at the time of its exec, and this process runs servers that send 9 MB headers.
type hwm struct {
	peakKiB int64
	stop    chan struct{}
	done    chan struct{}
}

func watchHWM(pid int) *hwm {
	h := &hwm{stop: make(chan struct{}), done: make(chan struct{})}
	path := fmt.Sprintf("/proc/%d/status", pid)
	go func() {
		defer close(h.done)
		for {
			if b, err := os.ReadFile(path); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						var kib int64
						_, _ = fmt.Sscanf(strings.TrimSpace(v), "%d", &kib) // a line that is not a number leaves the peak as it was
						h.peakKiB = max(h.peakKiB, kib)
					}
				}
			}
			select {
			case <-h.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return h
}

// mb stops following and returns the peak in MB (VmHWM only grows: a poll every 10 ms misses
// at most the growth of the child's last 10 ms).
func (h *hwm) mb() float64 {
	close(h.stop)
	<-h.done
	return float64(h.peakKiB) * 1024 / 1e6
}

// longLines yields n lines of size bytes each, copied from one line as they are read: 1.6 GB
// never sits in memory or on disk, and the pipe is as fast as the binary reads it.
type longLines struct {
	n    int
	line []byte // one line, newline included
	done int    // lines done
	off  int    // bytes of the current line done
}

func newLongLines(n, size int) *longLines {
	line := make([]byte, size+1)
	for i := range size {
		line[i] = 'a' + byte(i%26)
	}
	line[size] = '\n'
	return &longLines{n: n, line: line}
}

func (l *longLines) Read(p []byte) (int, error) {
	if l.done == l.n {
		return 0, io.EOF
	}
	k := copy(p, l.line[l.off:])
	if l.off += k; l.off == len(l.line) {
		l.done, l.off = l.done+1, 0
	}
	return k, nil
}

// runMemChild runs bin with args (stdin from in, if any) within limit and returns its peak RSS,
// its exit status and the tail of its stderr.
func runMemChild(bin string, args []string, in io.Reader, limit time.Duration) (float64, int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return 0, -1, "", err
	}
	peak := watchHWM(cmd.Process.Pid)
	err := cmd.Wait()
	mb := peak.mb()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, -1, "", err
	}
	if ctx.Err() != nil {
		return 0, -1, "", fmt.Errorf("%s %s did not finish within %v", bin, strings.Join(args, " "), limit)
	}
	return mb, cmd.ProcessState.ExitCode(), lastLine(stderr.String()), nil
}

// lastLine returns the summary line of a run's stderr ("done in …"), else its last line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "done in") {
			return l
		}
	}
	return lines[len(lines)-1]
}

// memoryLongLines: 200 lines of 8 MiB read from stdin, each sent as a request body to a
// loopback server that answers a small JSON (through http), or echoed back in the answer
// (through sim: each row then holds the line twice).
func memoryLongLines(o *options) ([]*figure, error) {
	const n, size = 200, 8 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, `{"bytes":%d}`, got)
	})}
	go func() { _ = srv.Serve(ln) }()  // ErrServerClosed once closed
	defer func() { _ = srv.Close() }() // the scenario is over
	runs := []struct {
		label string
		args  []string
	}{
		{"http POST", []string{"run", "http", "--url", "http://" + ln.Addr().String() + "/", "--method", "POST", "--body", "{item}"}},
		{"sim (echoes the line)", []string{"run", "sim", "--sim-latency", "1ms", "--sim-sigma", "0"}},
	}
	var figs []*figure
	for _, r := range runs {
		args := append(r.args, "--input", "-", "--out", o.out, "--headless")
		fig := &figure{name: "peak RSS: 200 lines of 8 MiB on stdin (1.6 GB), " + r.label, unit: "MB", goal: memoryGoal,
			command: "200 lines of 8 MiB | " + o.bin + " " + strings.Join(args, " "), worst: slices.Max[[]float64]}
		figs = append(figs, fig)
		for range o.n {
			mb, code, tail, err := runMemChild(o.bin, args, newLongLines(n, size), 3*time.Minute)
			if err != nil {
				return figs, err
			}
			if code != 0 {
				return figs, fmt.Errorf("200 lines of 8 MiB, %s: exit status %d: %s", r.label, code, tail)
			}
			fig.values = append(fig.values, mb)
		}
	}
	return figs, nil
}

// memoryBigHeaders: every answer carries 9 MB of headers; 1,000 calls at parallelism 256.
func memoryBigHeaders(o *options) (*figure, error) {
	pad := strings.Repeat("x", 4<<10)
	const headers = 9_000_000 / (4<<10 + 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 1 << 20, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for i := range headers {
			h["X-Pad-"+fmt.Sprint(i)] = []string{pad}
		}
		_, _ = io.WriteString(w, `{"ok":true}`) // the client went away: nothing to tell it
	})}
	go func() { _ = srv.Serve(ln) }()  // ErrServerClosed once closed
	defer func() { _ = srv.Close() }() // the scenario is over
	input, err := writeIDs(o, 1000)
	if err != nil {
		return nil, err
	}
	args := []string{"run", "http", "--input", input, "--out", o.out, "--url", "http://" + ln.Addr().String() + "/{item}",
		"--parallelism", "256", "--retries", "0", "--headless"}
	cmdline := strings.Replace(o.bin+" "+strings.Join(args, " "), input, "FILE", 1)
	fig := &figure{name: "peak RSS: 9 MB of headers in every answer, parallelism 256, 1,000 calls", unit: "MB", goal: memoryGoal,
		command: "server answering 9 MB of headers on 127.0.0.1; FILE of 1,000 lines; " + cmdline, worst: slices.Max[[]float64]}
	for range o.n {
		mb, code, tail, err := runMemChild(o.bin, args, nil, 3*time.Minute)
		if err != nil {
			return fig, err
		}
		// Every item fails (exit 1): its row says the headers were over --max-header.
		if code != 1 || !strings.Contains(tail, " 0 ok, 1,000 failed") {
			fig.notes = append(fig.notes, fmt.Sprintf("9 MB headers: exit status %d (want 1, every item failed): %s", code, tail))
		}
		fig.values = append(fig.values, mb)
	}
	return fig, nil
}

// memoryCtlParallelism: a run told `ctl set parallelism 100000000` mid-run, which must be
// refused with the reason while the socket stays responsive, then `ctl stop`, which must end it.
func memoryCtlParallelism(o *options) (*figure, error) {
	input, err := writeIDs(o, 100_000)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(o.tmp, "ctl.sock")
	args := []string{"run", "sim", "--input", input, "--out", o.out, "--sim-latency", "50ms", "--sim-sigma", "0",
		"--parallelism", "4", "--control", sock, "--headless"}
	cmdline := strings.Replace(o.bin+" "+strings.Join(args, " "), input, "FILE", 1)
	fig := &figure{name: "peak RSS: ctl set parallelism 100000000 mid-run (refused), then ctl stop", unit: "MB", goal: memoryGoal,
		command: cmdline + "   # FILE of 100,000 lines; after 1 s: throttle ctl --control SOCK set parallelism 100000000, then ctl stop", worst: slices.Max[[]float64]}
	for range o.n {
		mb, err := ctlRun(o.bin, args, sock)
		if err != nil {
			return fig, err
		}
		fig.values = append(fig.values, mb)
	}
	return fig, nil
}

// ctlRun starts the run, sends the two ctl commands and checks what each answered.
func ctlRun(bin string, args []string, sock string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = os.Remove(sock) // a stale socket, if any
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	peak := watchHWM(cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctl := func(words ...string) (int, string) {
		c := exec.CommandContext(ctx, bin, append([]string{"ctl", "--control", sock}, words...)...)
		out, _ := c.CombinedOutput()
		return c.ProcessState.ExitCode(), strings.TrimSpace(string(out))
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill() // the run failed already; it may have ended by itself
			return 0, fmt.Errorf("ctl: no control socket after 10 s: %s", stderr.String())
		}
	}
	time.Sleep(time.Second)
	code, out := ctl("set", "parallelism", "100000000")
	if code != 2 || !strings.Contains(out, "max parallelism") {
		_ = cmd.Process.Kill() // the run failed already; it may have ended by itself
		return 0, fmt.Errorf("ctl set parallelism 100000000: exit %d, %q; want a refusal (exit 2) that names the ceiling", code, out)
	}
	if code, out := ctl("get"); code != 0 || !strings.Contains(out, "parallelism") {
		_ = cmd.Process.Kill() // the run failed already; it may have ended by itself
		return 0, fmt.Errorf("ctl get after the refusal: exit %d, %q", code, out)
	}
	t := time.Now()
	if code, out := ctl("stop"); code != 0 {
		_ = cmd.Process.Kill() // the run failed already; it may have ended by itself
		return 0, fmt.Errorf("ctl stop: exit %d, %q", code, out)
	}
	select {
	case err := <-done:
		_ = err // its exit is what ctl stop was to bring; its status is not measured
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill() // the run failed already; it may have ended by itself
		return 0, fmt.Errorf("the run did not end within 10 s of ctl stop")
	}
	if cmd.ProcessState.ExitCode() == 0 {
		return 0, fmt.Errorf("the run exited 0 after ctl stop; want the interrupted status (%s)", time.Since(t))
	}
	return peak.mb(), nil
}
