package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/throttle-dev/throttle/control"
)

// detach starts the same run in the background, in a session of its own (no terminal, so an
// ssh drop cannot reach it), its progress lines in <out>.log, its control socket named on
// the command line so that this process can say how to attach; it returns once the run
// serves its socket.
func detach(env *Env, rf *runFlags) error {
	self, err := os.Executable()
	if err != nil {
		return usageError("--detach: %v", err)
	}
	// Without --control the job names its socket after its own pid, as every run does, so
	// that the name says which process serves it; this process learns the pid once it has
	// started the job. The directory is checked first, so that a bad one fails here.
	sock, dir := rf.control, ""
	if sock == "" {
		if dir, err = control.Dir(); err != nil {
			return usageError("--detach: %v", err)
		}
	}
	var args []string
	for _, a := range env.Args {
		if a != "--detach" && !strings.HasPrefix(a, "--detach=") {
			args = append(args, a)
		}
	}
	args = append(args, "--headless")
	logPath := rf.out + ".log"
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return usageError("--detach: %v", err)
	}
	defer func() { _ = log.Close() }() // the child holds its own copy of the log
	null, err := os.Open(os.DevNull)
	if err != nil {
		return usageError("--detach: %v", err)
	}
	defer func() { _ = null.Close() }() // /dev/null
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return usageError("--detach: %v", err)
	}
	if sock == "" {
		// control.DefaultPath's name for a process's first run, which the job is.
		sock = filepath.Join(dir, strconv.Itoa(cmd.Process.Pid)+".sock")
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(10 * time.Second)
	for {
		if resp, err := control.Do(sock, control.Request{Cmd: "get"}); err == nil && resp.OK {
			fmt.Fprintf(env.Stdout, "started in the background (pid %d): rows to %s, progress to %s\n  throttle attach --control %s\n  throttle ctl --control %s get\n",
				cmd.Process.Pid, rf.out, logPath, sock, sock)
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return &exitError{code: ExitUsage, err: fmt.Errorf("the background run ended at once (%w); its log %s says:\n%s", err, logPath, tail(string(b), 10))}
		case <-deadline:
			return &exitError{code: ExitFailures, err: fmt.Errorf("the background run (pid %d) does not answer on %s; see %s", cmd.Process.Pid, sock, logPath)}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
