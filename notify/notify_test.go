package notify

// Tests of the end-of-run bytes: the exact sequences for each case, and that nothing in a
// title or text can escape them. The wiring (a terminal or not, $TMUX, --notify) is tested in
// cli.

import (
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

func TestEnd(t *testing.T) {
	t.Parallel()
	done := engine.Summary{State: engine.Done, Total: 1239, OK: 1234, Failed: 5, Elapsed: 12*time.Minute + 300*time.Millisecond}
	const text = "done: 1,234 ok, 5 failed in 12m"
	for _, tc := range []struct {
		name          string
		desktop, tmux bool
		sum           engine.Summary
		want          string
	}{
		{"bell only", false, false, done, "\a"},
		{"desktop", true, false, done,
			"\x1b]9;throttle: " + text + "\a" + "\x1b]777;notify;throttle;" + text + "\a" + "\a"},
		{"desktop under tmux", true, true, done,
			"\x1bPtmux;\x1b\x1b]9;throttle: " + text + "\a\x1b\\" +
				"\x1bPtmux;\x1b\x1b]777;notify;throttle;" + text + "\a\x1b\\" + "\a"},
		{"tmux without desktop: the bell needs no wrapping", false, true, done, "\a"},
		{"never started", true, false, engine.Summary{}, ""},
		{"never started, bell only", false, false, engine.Summary{}, ""},
		{"drained, rows lost", true, false,
			engine.Summary{State: engine.Draining, OK: 1000000, Failed: 0, Lost: 2, Elapsed: time.Hour + 5*time.Minute},
			"\x1b]9;throttle: drained: 1,000,000 ok, 0 failed, 2 lost in 1h05m\a" +
				"\x1b]777;notify;throttle;drained: 1,000,000 ok, 0 failed, 2 lost in 1h05m\a\a"},
		{"stopped", true, false, engine.Summary{State: engine.Stopping, OK: 3, Failed: 1, Elapsed: 1500 * time.Millisecond},
			"\x1b]9;throttle: stopped: 3 ok, 1 failed in 2s\a\x1b]777;notify;throttle;stopped: 3 ok, 1 failed in 2s\a\a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := End(tc.sum, tc.desktop, tc.tmux); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestTerminalControls: nothing in the title or text can end the sequence early or start one
// of its own: control characters (C0, DEL, C1) and invalid UTF-8 are dropped, and a ';' in OSC
// 777's title, which would shift its fields, becomes ','.
func TestTerminalControls(t *testing.T) {
	t.Parallel()
	title := "jobs;x\x1b]0;pwned\a\u009b"
	text := "done\x1b[2J\r\n\x7f: 1 ok \xff· ü"
	want := "\x1b]9;jobs;x]0;pwned: done[2J: 1 ok · ü\a" + "\x1b]777;notify;jobs,x]0,pwned;done[2J: 1 ok · ü\a"
	if got := Terminal(title, text, false); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	wrapped := Terminal(title, text, true)
	inner := strings.ReplaceAll(want, "\x1b", "\x1b\x1b")
	if wrapped != "\x1bPtmux;"+strings.SplitAfter(inner, "\a")[0]+"\x1b\\"+"\x1bPtmux;"+strings.SplitAfter(inner, "\a")[1]+"\x1b\\" {
		t.Errorf("under tmux: %q", wrapped)
	}
}
