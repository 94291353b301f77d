package adapters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redact"
)

// DefaultMaxOutput is the number of stdout bytes an [Exec] adapter keeps in a result row
// unless [ExecConfig.MaxOutput] says otherwise.
const DefaultMaxOutput = 64 << 10

// DefaultKillGrace is how long an [Exec] adapter waits between SIGTERM and SIGKILL unless
// [ExecConfig.KillGrace] says otherwise.
const DefaultKillGrace = 2 * time.Second

// stderrTail is how many of the last bytes of stderr a failed call's message quotes: enough
// for the error a program prints last, not a whole traceback in every row.
const stderrTail = 512

// ExecConfig configures an [Exec] adapter. Its zero value is not usable: Command is required.
type ExecConfig struct {
	// Command is the program and its arguments. The program is looked up in PATH once, by
	// [NewExec], so it may not hold a placeholder. Each argument is a template (see
	// [Template]): {item} and {.name} are inserted as they are and stay one argument whatever
	// they hold, since no shell splits or expands them. ${NAME} is refused (see [NewExec]).
	Command []string
	// Stdin writes the item (its line, or a JSON Lines object's text) and a newline to the
	// command's stdin, and takes the arguments as they are, not as templates. Without it the
	// command's stdin is empty (/dev/null), so that it cannot read throttle's own.
	Stdin bool
	// MaxOutput is the number of stdout bytes kept in the result row; 0 means
	// [DefaultMaxOutput].
	MaxOutput int64
	// RetryExit lists the exit codes that ask to try again later (e.g. 75, EX_TEMPFAIL); other
	// non-zero exits fail.
	RetryExit []int
	// KillGrace is how long a command has to exit after SIGTERM before its process group is
	// killed; 0 means [DefaultKillGrace].
	KillGrace time.Duration
}

// Exec is the exec adapter: one process per item, started directly (no shell unless the
// command is one) in a process group of its own. It is safe for concurrent use.
//
// Exit 0 is ok, and stdout is the row's output: as JSON when it is JSON, otherwise as a string
// with its trailing newlines dropped (as $(…) does); past MaxOutput it is cut, kept as a
// string, and the row says "truncated": true. Another exit is an answer, not an error: its
// Outcome has the exit code as Status, Verdict Retry for the codes of RetryExit and Fail for the
// others, and a Message with the code and the tail of stderr on one line (never stdout). A
// command killed by a signal nobody in throttle sent fails with "killed by signal SIGNAME".
//
// When ctx is done (the engine's per-call timeout, or a stopped run), the whole process group
// gets SIGTERM, and SIGKILL after KillGrace; Do then returns an error wrapping ctx's. When the
// command exits, whatever it left running in its group is killed, so that a call leaves no
// process behind; a process that left the group (setsid, a daemon) is not tracked. A command
// that cannot be started (removed since [NewExec], not executable, an argument list too long)
// is a [engine.Permanent] error.
type Exec struct {
	path      string      // the program as LookPath found it
	argv0     string      // the program as given
	args      []*Template // nil with stdin
	raw       []string    // the arguments as given
	stdin     bool
	maxOutput int64
	retry     map[int]bool
	grace     time.Duration
}

var _ engine.Adapter = (*Exec)(nil)

// NewExec checks cfg and looks the program up in PATH (as [exec.LookPath] does), so that a
// typo fails before any item runs. It fails on an empty command, a program that is not found
// or holds a placeholder, an argument template that cannot be compiled, an exit code outside
// 1–255, a negative MaxOutput or KillGrace, and on ${NAME} in an argument: a secret expanded
// into argv is visible to every user of the machine through ps. The command inherits
// throttle's environment, so it can read the variable itself (e.g. $NAME in sh -c).
func NewExec(cfg ExecConfig) (*Exec, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("adapters: exec: no command")
	}
	x := &Exec{argv0: cfg.Command[0], raw: cfg.Command[1:], stdin: cfg.Stdin,
		maxOutput: cfg.MaxOutput, grace: cfg.KillGrace}
	switch {
	case x.maxOutput < 0:
		return nil, fmt.Errorf("adapters: exec: max output %d is negative", cfg.MaxOutput)
	case x.maxOutput == 0:
		x.maxOutput = DefaultMaxOutput
	}
	switch {
	case x.grace < 0:
		return nil, fmt.Errorf("adapters: exec: kill grace %v is negative", cfg.KillGrace)
	case x.grace == 0:
		x.grace = DefaultKillGrace
	}
	if len(cfg.RetryExit) > 0 {
		x.retry = make(map[int]bool, len(cfg.RetryExit))
		for _, c := range cfg.RetryExit {
			if c < 1 || c > 255 {
				return nil, fmt.Errorf("adapters: exec: retry exit code %d is outside 1-255", c)
			}
			x.retry[c] = true
		}
	}

	if !x.stdin {
		for i, arg := range cfg.Command {
			if j := strings.Index(arg, "${"); j >= 0 {
				v := arg[j:]
				if end := strings.IndexByte(v, '}'); end >= 0 {
					v = v[:end+1]
				}
				return nil, fmt.Errorf("adapters: exec: %s holds %s: a secret put into argv is visible to every user "+
					"through ps, so throttle does not expand variables in arguments. The command inherits the environment: "+
					"let it read the variable itself, e.g. -- sh -c 'curl -H \"Authorization: Bearer $TOKEN\" \"$1\"' sh {item} "+
					"(in a script write $TOKEN: throttle would read ${TOKEN} as its own placeholder)", argWord(i, len(cfg.Command)), v)
			}
			if strings.Contains(arg, "{items}") || strings.Contains(arg, "{items_jsonl}") {
				return nil, fmt.Errorf("adapters: exec: %s holds {items}: exec runs one process per item; use {item}", argWord(i, len(cfg.Command)))
			}
		}
	}
	prog, err := parseTemplate(x.argv0, false)
	if err != nil || len(prog.parts) != 1 || prog.parts[0].kind != tmplLiteral {
		return nil, fmt.Errorf("adapters: exec: the program %q may not hold a placeholder: it is looked up once, before the run", x.argv0)
	}
	if x.path, err = exec.LookPath(x.argv0); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = ee.Err // its text would say "exec:" and the name again
		}
		return nil, fmt.Errorf("adapters: exec: program %q: %w", x.argv0, err)
	}
	if x.path, err = filepath.Abs(x.path); err != nil {
		return nil, fmt.Errorf("adapters: exec: %w", err)
	}
	if !x.stdin {
		for i, arg := range x.raw {
			t, err := parseTemplate(arg, false)
			if err != nil {
				return nil, fmt.Errorf("adapters: exec: %s: %w", argWord(i+1, len(cfg.Command)), err)
			}
			x.args = append(x.args, t)
		}
	}
	return x, nil
}

// argWord names the word i of a command of n words in an error.
func argWord(i, n int) string {
	if i == 0 {
		return "the program"
	}
	return fmt.Sprintf("argument %d of %d", i, n-1)
}

// String returns the command as given, its words quoted for a shell where needed and the
// query and userinfo of any URL in them redacted: the run's target, for logs and recordings.
func (x *Exec) String() string {
	words := make([]string, 0, 1+len(x.raw))
	for _, w := range append([]string{x.argv0}, x.raw...) {
		words = append(words, shellQuote(redact.URLs(w)))
	}
	s := strings.Join(words, " ")
	if x.stdin {
		s += " (item on stdin)"
	}
	return s
}

// shellQuote returns s as a shell would read it back: as it is when that is safe, otherwise
// in single quotes.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Do runs the command for it and classifies how it ended. See [Exec] for what it returns.
func (x *Exec) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	argv := make([]string, 1, 1+len(x.raw))
	argv[0] = x.argv0
	if x.stdin {
		argv = append(argv, x.raw...)
	} else {
		var b strings.Builder
		for _, t := range x.args {
			b.Reset()
			if err := t.expand(&b, it, nil, nil); err != nil {
				return engine.Outcome{}, err
			}
			argv = append(argv, b.String())
		}
	}
	if err := ctx.Err(); err != nil {
		return engine.Outcome{}, err
	}

	stdout := &capWriter{max: x.maxOutput}
	stderr := &tailWriter{}
	cmd := &exec.Cmd{
		Path:   x.path,
		Args:   argv,
		Stdout: stdout,
		Stderr: stderr,
		// Its own group, so that one signal reaches every process of the call, and so that a
		// ctrl+c at the terminal (which drains the run) does not kill the calls in flight.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		// A process that left the group may hold the pipes open: it must not hold the call.
		WaitDelay: x.grace,
	}
	if x.stdin {
		cmd.Stdin = strings.NewReader(it.Line + "\n")
	}
	if err := cmd.Start(); err != nil {
		return engine.Outcome{}, startError(x.argv0, err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		waitExited(pgid)
		close(exited)
	}()
	var stopped error
	select {
	case <-exited:
	case <-ctx.Done():
		stopped = ctx.Err()
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		grace := time.NewTimer(x.grace)
		select {
		case <-exited:
		case <-grace.C:
		}
		grace.Stop()
	}
	// Until cmd.Wait reaps the leader, it is a zombie that keeps pgid from being reused, so
	// this signal cannot reach a stranger's group. It kills what the command left behind, or,
	// after the grace, the whole group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-exited
	_ = cmd.Wait() // the exit status is in ProcessState; a pipe error only shortens output
	if stopped != nil {
		return engine.Outcome{}, fmt.Errorf("adapters: exec %s: process group killed: %w", x.argv0, stopped)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus) // always, on Linux
	switch {
	case ws.Signaled():
		sig := unix.SignalName(ws.Signal())
		if sig == "" { // a real-time signal has no name
			sig = strconv.Itoa(int(ws.Signal()))
		}
		return engine.Outcome{Verdict: engine.Fail, Message: withTail("killed by signal "+sig, stderr)}, nil
	case ws.ExitStatus() != 0:
		code := ws.ExitStatus()
		out := engine.Outcome{Verdict: engine.Fail, Status: code, Message: withTail(fmt.Sprintf("exit status %d", code), stderr)}
		if x.retry[code] {
			out.Verdict = engine.Retry
		}
		return out, nil
	}
	out := engine.Outcome{Verdict: engine.OK}
	out.Output, out.Extra = stdout.output()
	return out, nil
}

// waitExited returns once the process pid has exited, without reaping it (WNOWAIT).
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// startError is the error of a command that could not be started: permanent, except when the
// machine is short of processes, files or memory for a moment.
func startError(name string, err error) error {
	e := fmt.Errorf("adapters: exec: cannot start %s: %w", name, err)
	for _, transient := range []error{syscall.EAGAIN, syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM} {
		if errors.Is(err, transient) {
			return e
		}
	}
	return engine.Permanent(e)
}

// capWriter keeps the first max bytes written to it and counts the rest, which it discards
// rather than refuse, so that a chatty command never blocks on a full pipe.
type capWriter struct {
	buf   []byte
	max   int64
	total int64
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - int64(len(w.buf)); room > 0 {
		w.buf = append(w.buf, p[:min(room, int64(len(p)))]...)
	}
	w.total += int64(len(p))
	return len(p), nil
}

// output returns what a row keeps of stdout: its JSON value when it is one, otherwise a JSON
// string without the trailing newlines; cut at max, a string and {"truncated": true}.
func (w *capWriter) output() (json.RawMessage, map[string]any) {
	if w.total > w.max {
		return jsonString(trimPartialRune(w.buf)), map[string]any{"truncated": true}
	}
	b := bytes.TrimRight(w.buf, "\r\n")
	if len(b) == 0 {
		return nil, nil // an empty stdout is not a JSON value
	}
	if utf8.Valid(b) {
		var buf bytes.Buffer
		if json.Compact(&buf, b) == nil {
			return buf.Bytes(), nil
		}
	}
	return jsonString(b), nil
}

// tailWriter keeps the last stderrTail bytes written to it.
type tailWriter struct {
	buf []byte
	cut bool // earlier bytes were dropped
}

func (w *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > stderrTail {
		p, w.cut = p[len(p)-stderrTail:], true
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) > 2*stderrTail { // trim now and then, not on every write
		w.buf, w.cut = append(w.buf[:0], w.buf[len(w.buf)-stderrTail:]...), true
	}
	return n, nil
}

// withTail returns what, followed by the tail of stderr on one line when there is one.
func withTail(what string, w *tailWriter) string {
	b, cut := w.buf, w.cut
	if len(b) > stderrTail {
		b, cut = b[len(b)-stderrTail:], true
	}
	if cut {
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	tail := oneLine(b)
	switch {
	case tail == "":
		return what
	case cut:
		return what + ": …" + tail
	}
	return what + ": " + tail
}

// oneLine returns b as one line of printable text: its lines trimmed and joined with " | ",
// terminal escape sequences dropped, other control characters made spaces, invalid UTF-8
// replaced, and the query and userinfo of URLs redacted.
func oneLine(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	var lines []string
	var line strings.Builder
	flush := func() {
		if l := strings.TrimSpace(line.String()); l != "" {
			lines = append(lines, l)
		}
		line.Reset()
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '\n' || r == '\r':
			flush()
		case r == 0x1b && strings.HasPrefix(s[i:], "["): // a CSI sequence such as "\x1b[31m"
			i++
			for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
				i++
			}
			i = min(i+1, len(s))
		case unicode.IsControl(r):
			line.WriteByte(' ')
		default:
			line.WriteRune(r)
		}
	}
	flush()
	return redact.URLs(strings.Join(lines, " | "))
}
