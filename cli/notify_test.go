package cli

// Tests of the wiring of the end-of-run bell and desktop notification (package notify, which
// tests the bytes themselves): a terminal or not, $TMUX, --notify, and one run through Main.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// TestNotifyEnd: the wiring of the end-of-run bytes (package notify): written to stderr only
// when it is a terminal, the desktop notification only with --notify, wrapped for tmux when
// $TMUX is set, nothing for a run that never started.
func TestNotifyEnd(t *testing.T) {
	t.Parallel()
	done := engine.Summary{State: engine.Done, Total: 1239, OK: 1234, Failed: 5, Elapsed: 12*time.Minute + 300*time.Millisecond}
	const text = "done: 1,234 ok, 5 failed in 12m"
	for _, tc := range []struct {
		name   string
		tty    bool
		notify bool
		tmux   bool
		sum    engine.Summary
		want   string
	}{
		{"bell only", true, false, false, done, "\a"},
		{"notify", true, true, false, done,
			"\x1b]9;throttle: " + text + "\a" + "\x1b]777;notify;throttle;" + text + "\a" + "\a"},
		{"notify under tmux", true, true, true, done,
			"\x1bPtmux;\x1b\x1b]9;throttle: " + text + "\a\x1b\\" +
				"\x1bPtmux;\x1b\x1b]777;notify;throttle;" + text + "\a\x1b\\" + "\a"},
		{"not a terminal", false, true, false, done, ""},
		{"never started", true, true, false, engine.Summary{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			env := &Env{Stderr: &stderr, StdoutTTY: tc.tty, LookupEnv: func(k string) (string, bool) {
				if k == "TMUX" && tc.tmux {
					return "/tmp/tmux-0/default,1234,0", true
				}
				return "", false
			}}
			notifyEnd(env, &runFlags{notify: tc.notify}, tc.sum)
			if got := stderr.String(); got != tc.want {
				t.Errorf("wrote %q\nwant   %q", got, tc.want)
			}
		})
	}
}

// TestNotifyEndFileStderr: a stderr that is a file is asked whether it is a terminal, whatever
// stdout is: a log file gets no bell and no escape sequences.
func TestNotifyEndFileStderr(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := &Env{Stderr: f, StdoutTTY: true, LookupEnv: func(string) (string, bool) { return "", false }}
	notifyEnd(env, &runFlags{notify: true}, engine.Summary{State: engine.Done, OK: 1})
	if st, err := f.Stat(); err != nil || st.Size() != 0 {
		t.Errorf("%d bytes written to a file (%v), want none", st.Size(), err)
	}
}

// TestNotifyRun: a run through Main with --notify, under tmux, on a terminal, ends its stderr
// with the wrapped notification and the bell; the summary is on stdout.
func TestNotifyRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "items.txt")
	if err := os.WriteFile(input, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := Main(Env{
		Args:   []string{"run", "sim", "--input", input, "--out", filepath.Join(dir, "results.jsonl"), "--sim-latency", "1ms", "--headless", "--notify"},
		Stdin:  strings.NewReader(""),
		Stdout: &stdout, Stderr: &stderr, StdoutTTY: true,
		LookupEnv: func(k string) (string, bool) {
			if k == "TMUX" {
				return "/tmp/tmux-0/default,1,0", true
			}
			return "", false
		},
		Signals: make(chan os.Signal),
	})
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr.String())
	}
	const text = "done: 3 ok, 0 failed in 0s"
	want := "\x1bPtmux;\x1b\x1b]9;throttle: " + text + "\a\x1b\\" + "\x1bPtmux;\x1b\x1b]777;notify;throttle;" + text + "\a\x1b\\" + "\a"
	if !strings.HasSuffix(stderr.String(), want) {
		t.Errorf("stderr ends %q, want %q", stderr.String()[max(0, stderr.Len()-200):], want)
	}
	if strings.Count(stderr.String(), "\a") != 3 || !strings.Contains(stdout.String(), "done in") || strings.Contains(stderr.String(), "done in") {
		t.Errorf("want the summary on stdout and exactly one notification and one bell on stderr:\nstdout %q\nstderr %q", stdout.String(), stderr.String())
	}
}
