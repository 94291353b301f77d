package tui_test

// The "when ssh drops" end-to-end test: `throttle run` shows its screen in a tmux pane, the
// pane's terminal vanishes (the tmux server is killed, which hangs up the pty), and the job
// must go on headless, answer `throttle ctl`, show itself live in `throttle attach` from a new
// pane, and finish with every row written. It reuses the helpers of tmux_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

const (
	// attachItems × attachLatency / attachParallelism ≈ 12 s of work: long enough to hang
	// up, query and attach before the end, short enough to keep the test near 15 s.
	attachItems       = 2400
	attachLatency     = 20 * time.Millisecond
	attachParallelism = 4
)

var (
	doneOfRe     = regexp.MustCompile(`([\d,]+) / ([\d,]+)`)
	progressRe   = regexp.MustCompile(`(?m)^\d+:\d\d  running  [\d,]+/[\d,]+ `)
	logSummaryRe = regexp.MustCompile(`(?m)^done in [^:]+: ([\d,]+) items, ([\d,]+) ok, ([\d,]+) failed`)
)

// TestTmuxAttach: the TUI's terminal goes away mid-run; the job goes on, answers ctl, is
// attached from a new terminal (live), is detached from with q, and ends with every row.
func TestTmuxAttach(t *testing.T) {
	bin := tmuxAndBinary(t)

	// An ssh drop: the pty closes, the login shell (the session leader) dies of its SIGHUP,
	// and the kernel then sends SIGHUP to the foreground process group: the run.
	t.Run("ssh drop", func(t *testing.T) {
		t.Parallel()
		testDetachAttach(t, bin, hangupSIGHUP)
	})
	// The pty closes but the session leader lives on (it ignores or traps SIGHUP): the run
	// gets no SIGHUP, only EOF on reads of its terminal and EIO on writes.
	t.Run("pty closed without SIGHUP", func(t *testing.T) {
		t.Parallel()
		testDetachAttach(t, bin, hangupNoSignal)
	})
}

// testDetachAttach runs the job in a pane, makes the pane's terminal vanish as mode says,
// then checks the job from ctl, attaches to it from a new pane, detaches, and waits for its
// end.
func testDetachAttach(t *testing.T, bin string, mode paneMode) {
	dir := t.TempDir()
	ids := filepath.Join(dir, "ids.txt")
	var b strings.Builder
	for i := 1; i <= attachItems; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	if err := os.WriteFile(ids, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "r.jsonl")
	ctlDir := filepath.Join(dir, "ctl")
	if err := os.Mkdir(ctlDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(ctlDir, "run.sock")
	if len(sock) > 100 { // a unix socket's path holds 107 bytes: $TMPDIR is too long
		short, err := os.MkdirTemp("", "throttle-ctl-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(short) }) // a scratch directory
		ctlDir = filepath.Join(short, "ctl")
		if err := os.Mkdir(ctlDir, 0o700); err != nil {
			t.Fatal(err)
		}
		sock = filepath.Join(ctlDir, "run.sock")
	}

	// 1. The TUI run in a pane of its own tmux server; a shell that outlives the terminal
	// records the run's exit status.
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run := startProgram(t, bin, runDir, 80, 24, mode,
		"run", "sim", "--input", ids, "--out", out,
		"--sim-latency", attachLatency.String(), "--sim-sigma", "0",
		"--parallelism", strconv.Itoa(attachParallelism), "--control", sock)
	screen := run.waitFor("the run's screen, running", func(sc string) bool {
		return strings.Contains(firstLine(sc), "throttle") && strings.Contains(firstLine(sc), "running") && doneShown(sc) > 0
	})
	checkScreenSize(t, screen, 80, 24)
	if !strings.Contains(screen, "sim · ") {
		t.Errorf("the title does not name the job (\"sim · …\"): %q", firstLine(screen))
	}
	st := ctlStatus(t, bin, sock)
	pid := st.PID
	if st.State != "running" || pid <= 0 {
		t.Fatalf("ctl get before the hangup: state %q, pid %d; want running and a pid", st.State, pid)
	}
	t.Cleanup(func() { killLeftover(t, pid) }) // only if the test failed before the end
	t.Logf("the run (pid %d) shows its screen after %v: done %d", pid, time.Since(start).Round(time.Millisecond), doneShown(screen))

	// 2. The terminal vanishes: killing the tmux server closes the pty; the run gets a SIGHUP
	// or not, as mode says, and EOF on reads of its terminal.
	hup := time.Now()
	if _, err := run.tmux("kill-server"); err != nil {
		t.Fatalf("tmux kill-server: %v", err)
	}

	// 3. The job goes on headless: ctl answers running, its count grows, and it does not spin
	// a core on the dead terminal.
	first := ctlStatus(t, bin, sock)
	if first.State != "running" {
		t.Fatalf("ctl get after the hangup: state %q, want running", first.State)
	}
	cpu0, ok0 := cpuTime(pid)
	at0 := time.Now()
	grown := waitStatus(t, bin, sock, "the done count to grow after the hangup", func(s ctlState) bool {
		return s.OK+s.Failed > first.OK+first.Failed+50
	})
	if grown.State != "running" {
		t.Errorf("ctl get after the hangup: state %q, want running", grown.State)
	}
	if plain := ctlPlain(t, bin, sock); !strings.Contains(plain, fmt.Sprintf("(pid %d): running", pid)) {
		t.Errorf("ctl get (text) after the hangup does not say running:\n%s", plain)
	}
	time.Sleep(time.Until(at0.Add(2 * time.Second)))
	if cpu1, ok1 := cpuTime(pid); ok0 && ok1 {
		share := (cpu1 - cpu0).Seconds() / time.Since(at0).Seconds()
		t.Logf("after the hangup: done %d → %d; cpu %.0f%% of a core", first.OK+first.Failed, grown.OK+grown.Failed, 100*share)
		if share > 0.6 {
			t.Errorf("the headless run used %.0f%% of a core after the hangup: a dead terminal is read in a loop?", 100*share)
		}
	}
	logPath := out + ".log"
	waitFile(t, logPath, "\"the terminal went away\" in "+logPath, func(s string) bool {
		return strings.Contains(s, "the terminal went away")
	})

	// 4. A new terminal attaches: the same screen, live.
	attDir := filepath.Join(dir, "attach")
	if err := os.Mkdir(attDir, 0o700); err != nil {
		t.Fatal(err)
	}
	att := startProgram(t, bin, attDir, 80, 24, stayAfterExit, "attach", "--control", sock)
	screen = att.waitFor("the attached screen, running", func(sc string) bool {
		l := firstLine(sc)
		return strings.Contains(l, "throttle") && strings.Contains(l, "sim · ") && strings.Contains(l, "running") && doneShown(sc) > 0
	})
	checkScreenSize(t, screen, 80, 24)
	d1 := doneShown(screen)
	if total := totalShown(screen); total != attachItems {
		t.Errorf("the attached screen shows a total of %d, want %d: %q", total, attachItems, doneOfRe.FindString(screen))
	}
	if !strings.Contains(lastLine(screen), "detach") {
		t.Errorf("the attached screen's key line has no \"detach\": %q", lastLine(screen))
	}
	screen = att.waitFor("the attached screen's done count to move", func(sc string) bool {
		return strings.Contains(firstLine(sc), "running") && doneShown(sc) > d1
	})
	d2 := doneShown(screen)
	if d2 >= attachItems {
		t.Errorf("the attached screen shows %d done of %d: attached too late to see it live", d2, attachItems)
	}
	t.Logf("attached %v after the hangup: done %d then %d", time.Since(hup).Round(time.Millisecond), d1, d2)

	// q detaches: the attach exits 0 and says so, the job goes on.
	att.send("q")
	if code := att.waitExit(); code != 0 {
		t.Errorf("exit status of attach after q = %d, want 0 (detached)", code)
	}
	final := waitJoined(t, att, "\"detached; the job goes on\" after q", func(sc string) bool {
		return strings.Contains(sc, "detached; the job goes on")
	})
	if !strings.Contains(final, "throttle attach --control "+sock) {
		t.Errorf("the detach message does not say how to attach again (throttle attach --control %s):\n%s", sock, final)
	}
	if flags, err := att.tmux("display-message", "-p", "-t", att.name,
		"alternate_on=#{alternate_on} cursor_flag=#{cursor_flag} mouse_any_flag=#{mouse_any_flag}"); err != nil {
		t.Errorf("tmux display-message: %v", err)
	} else if got, want := strings.TrimSpace(flags), "alternate_on=0 cursor_flag=1 mouse_any_flag=0"; got != want {
		t.Errorf("terminal modes after detaching: %s, want %s", got, want)
	}
	for _, tui := range []string{"q detach", "─ knobs", "in flight /"} {
		if strings.Contains(final, tui) {
			t.Errorf("the screen after detaching still shows %q from the TUI (screen below)", tui)
		}
	}
	if after := ctlStatus(t, bin, sock); after.State != "running" {
		t.Errorf("ctl get after detaching: state %q, want running (the job goes on)", after.State)
	} else {
		t.Logf("detached at %v into the run: done %d of %d", time.Since(start).Round(time.Millisecond), after.OK+after.Failed, attachItems)
	}

	// 5. The job ends by itself: exit 0, every row once and ok, the log's progress and
	// summary, the socket removed.
	deadline := time.Now().Add(time.Duration(attachItems/attachParallelism)*attachLatency + patience)
	code, ended := 0, false
	for !ended {
		if code, ended = run.exitStatus(); ended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run has not ended %v after it started (done %d of %d)",
				time.Since(start).Round(time.Second), lastDone(bin, sock), attachItems)
		}
		time.Sleep(pollEvery)
	}
	t.Logf("the run ended with status %d, %v after it started", code, time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit status of the run = %d, want 0 (every item ok)", code)
	}
	if syscall.Kill(pid, 0) == nil {
		// The shell saw its child exit; the pid can only be alive if reused.
		t.Logf("pid %d is alive again (reused?)", pid)
	}

	rows := readRows(t, out, attachItems)
	if len(rows) != attachItems {
		t.Errorf("%s has %d rows, want %d (one per item)", out, len(rows), attachItems)
	}
	for item, r := range rows {
		if !r.OK {
			t.Errorf("row of item %s: ok false, want true", item)
		}
	}

	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("the progress log: %v", err)
	}
	progress := len(progressRe.FindAll(log, -1))
	if progress < 2 {
		t.Errorf("%s has %d progress lines (\"M:SS  running  N/T …\"), want at least 2:\n%s", logPath, progress, log)
	}
	// The first report after the hangup counts its rate over the time since the lines began,
	// not every call since the run's start over one interval: at most the workers' 200/s.
	if m := regexp.MustCompile(`last ([\d.]+)s: ([\d.]+) calls/s`).FindSubmatch(log); m == nil {
		t.Errorf("%s has no rate over its window (\"last Ns: R calls/s\"):\n%s", logPath, log)
	} else if perSec, _ := strconv.ParseFloat(string(m[2]), 64); perSec > 1.1*float64(attachParallelism)/attachLatency.Seconds() {
		t.Errorf("%s: the first report after the hangup says %s: more than %d workers at %v can make", logPath, m[0], attachParallelism, attachLatency)
	}
	for _, l := range strings.Split(string(log), "\n") {
		if n := utf8.RuneCountInString(l); n > 80 && regexp.MustCompile(`^(\d+:\d\d  |  last |  whole run|  \S+ window: |  run so far: )`).MatchString(l) {
			t.Errorf("%s: a progress line of %d columns: %q", logPath, n, l)
		}
	}
	m := logSummaryRe.FindSubmatch(log)
	if m != nil {
		t.Logf("%s: %d progress lines, then %q", filepath.Base(logPath), progress, m[0])
	}
	if m == nil {
		t.Errorf("%s has no summary line (\"done in …: N items, N ok, N failed\"):\n%s", logPath, log)
	} else if want := commas(attachItems); string(m[1]) != want || string(m[2]) != want || string(m[3]) != "0" {
		t.Errorf("%s summary: %s; want %s items, %s ok, 0 failed", logPath, m[0], want, want)
	}
	if !regexp.MustCompile(`results appended to\s+` + regexp.QuoteMeta(out)).Match(log) { // a long path on the next line
		t.Errorf("%s does not name the results file %s:\n%s", logPath, out, log)
	}
	if fi, err := os.Stat(logPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s is mode %v, want no access for others", logPath, fi.Mode().Perm())
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket %s is still there after the end (%v)", sock, err)
	}
	if _, err := runThrottle(bin, "ctl", "--control", sock, "get"); err == nil {
		t.Errorf("ctl get after the end answered, want a failure (no run there)")
	}
}

// paneMode is how a pane's shell runs the program and what it does when the terminal goes.
type paneMode int

const (
	// stayAfterExit: the shell records the exit status and stays, so the pane can be read.
	stayAfterExit paneMode = iota
	// hangupSIGHUP: the pane's shell (the session leader, like an ssh login shell) dies of a
	// hangup, so the kernel sends SIGHUP to the foreground group; there an inner shell that
	// traps SIGHUP runs the program and records its exit status.
	hangupSIGHUP
	// hangupNoSignal: the pane's shell traps SIGHUP and outlives the hangup, so the program
	// gets no signal, only a dead terminal; the shell records its exit status.
	hangupNoSignal
)

// startProgram starts `throttle args…` in a fresh tmux server with a w×h window, like
// startDemo, its shell as mode says. A shell's trap of SIGHUP is not inherited: the program
// starts with SIGHUP at its default, as from a login shell.
func startProgram(t *testing.T, bin, dir string, w, h int, mode paneMode, args ...string) *session {
	t.Helper()
	s := &session{
		t:      t,
		socket: fmt.Sprintf("throttle-test-%d-%d", os.Getpid(), sessionSeq.Add(1)),
		conf:   filepath.Join(dir, "tmux.conf"),
		name:   "main",
		exit:   filepath.Join(dir, "exit"),
	}
	s.last.Store("")
	conf := "set -g status off\nset -g remain-on-exit on\nset -g history-limit 1000\n"
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	quoted := []string{shQuote(bin)}
	for _, a := range args {
		quoted = append(quoted, shQuote(a))
	}
	record := fmt.Sprintf("%s\nst=$?\necho \"$st\" > %s.tmp && mv %s.tmp %s\n",
		strings.Join(quoted, " "), shQuote(s.exit), shQuote(s.exit), shQuote(s.exit))
	body := "unset COLUMNS LINES\nTERM=xterm-256color\nexport TERM\n"
	switch mode {
	case stayAfterExit:
		body += record + "exec sleep 600\n"
	case hangupSIGHUP:
		inner := filepath.Join(dir, "inner.sh")
		if err := os.WriteFile(inner, []byte("trap : HUP\n"+record), 0o755); err != nil {
			t.Fatal(err)
		}
		body += "sh " + shQuote(inner) + "\n"
	case hangupNoSignal:
		body += "trap : HUP\n" + record
	}
	script := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}

	var socketPath string
	t.Cleanup(func() {
		_, _ = s.tmux("kill-server")
		if socketPath != "" {
			_ = os.Remove(socketPath)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last screen of tmux -L %s (%s):\n%s", s.socket, strings.Join(args[:min(2, len(args))], " "), s.last.Load())
		}
	})
	if _, err := s.tmux("new-session", "-d", "-s", s.name, "-x", strconv.Itoa(w), "-y", strconv.Itoa(h),
		"sh "+shQuote(script)); err != nil {
		t.Fatalf("tmux new-session: %v", err)
	}
	if p, err := s.tmux("display-message", "-p", "#{socket_path}"); err == nil {
		socketPath = strings.TrimSpace(p)
	}
	if got, err := s.tmux("display-message", "-p", "-t", s.name, "#{pane_width}x#{pane_height}"); err != nil {
		t.Fatalf("tmux display-message: %v", err)
	} else if want := fmt.Sprintf("%dx%d", w, h); strings.TrimSpace(got) != want {
		t.Fatalf("tmux pane is %s, want %s", strings.TrimSpace(got), want)
	}
	return s
}

// ctlState is the part of `throttle ctl get --json` the test reads.
type ctlState struct {
	PID    int    `json:"pid"`
	State  string `json:"state"`
	Total  int64  `json:"total"`
	OK     int64  `json:"ok"`
	Failed int64  `json:"failed"`
}

// runThrottle runs the binary as a plain process (no terminal), bounded in time.
func runThrottle(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("throttle %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func ctlStatus(t *testing.T, bin, sock string) ctlState {
	t.Helper()
	out, err := runThrottle(bin, "ctl", "--control", sock, "--json", "get")
	if err != nil {
		t.Fatalf("%v", err)
	}
	var s ctlState
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("ctl get --json: %v: %q", err, out)
	}
	return s
}

func ctlPlain(t *testing.T, bin, sock string) string {
	t.Helper()
	out, err := runThrottle(bin, "ctl", "--control", sock, "get")
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// waitStatus polls ctl get until ok accepts the state, and fails the test after patience.
func waitStatus(t *testing.T, bin, sock, what string, ok func(ctlState) bool) ctlState {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		s := ctlStatus(t, bin, sock)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not there after %v (last: %+v)", what, patience, s)
		}
		time.Sleep(pollEvery)
	}
}

// lastDone is the run's done count for a failure message, or -1.
func lastDone(bin, sock string) int64 {
	out, err := runThrottle(bin, "ctl", "--control", sock, "--json", "get")
	var s ctlState
	if err != nil || json.Unmarshal([]byte(out), &s) != nil {
		return -1
	}
	return s.OK + s.Failed
}

// waitFile polls a file until ok accepts its content.
func waitFile(t *testing.T, path, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		b, _ := os.ReadFile(path)
		if ok(string(b)) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not there after %v (content: %q)", what, patience, b)
		}
		time.Sleep(pollEvery)
	}
}

// waitJoined polls the pane, wrapped lines joined, until ok accepts it.
func waitJoined(t *testing.T, s *session, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		out, err := s.tmux("capture-pane", "-p", "-J", "-t", s.name)
		if err != nil {
			t.Fatalf("tmux capture-pane: %v", err)
		}
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			lines = append(lines, strings.TrimRight(l, " "))
		}
		sc := strings.TrimRight(strings.Join(lines, "\n"), "\n")
		s.last.Store(sc)
		if ok(sc) {
			return sc
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not there after %v (screen below)", what, patience)
		}
		time.Sleep(pollEvery)
	}
}

// cpuTime is the user+system CPU time of a process so far, from /proc (Linux only).
func cpuTime(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the command name (in parentheses, which may hold spaces).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, true
}

// killLeftover ends the run if the test stopped before it did: SIGTERM drains it, SIGKILL
// after a while. It only signals the pid this test started.
func killLeftover(t *testing.T, pid int) {
	if syscall.Kill(pid, 0) != nil {
		return
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !bytes.Contains(b, []byte("throttle")) {
		return // gone, or the pid was reused
	}
	t.Logf("the run (pid %d) is still running: SIGTERM", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for range 50 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// doneShown is N in the progress bar's "N / T", or -1.
func doneShown(screen string) int {
	m := doneOfRe.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	return n
}

// totalShown is T in the progress bar's "N / T", or -1.
func totalShown(screen string) int {
	m := doneOfRe.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.ReplaceAll(m[2], ",", ""))
	return n
}

func firstLine(screen string) string {
	first, _, _ := strings.Cut(screen, "\n")
	return first
}

// checkScreenSize checks that the screen fills h rows of at most w cells.
func checkScreenSize(t *testing.T, screen string, w, h int) {
	t.Helper()
	lines := strings.Split(screen, "\n")
	if len(lines) != h {
		t.Errorf("the screen has %d rows, want %d", len(lines), h)
	}
	for i, l := range lines {
		if n := len([]rune(l)); n > w {
			t.Errorf("row %d is %d cells wide, want at most %d: %q", i, n, w, l)
		}
	}
}

// commas renders n as human.Count does: 2,400.
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
