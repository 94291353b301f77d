package cli

import "testing"

// TestWantScreen: the TUI only on a terminal that can draw it; headless otherwise, decided
// before Bubble Tea starts.
func TestWantScreen(t *testing.T) {
	for _, tc := range []struct {
		tty      bool
		term     string
		headless bool
		want     bool
	}{
		{true, "xterm-256color", false, true},
		{true, "screen", false, true},
		{false, "xterm-256color", false, false}, // a pipe or a file
		{true, "dumb", false, false},
		{true, "", false, false},
		{true, "xterm", true, false}, // --headless
	} {
		env := &Env{StdoutTTY: tc.tty, LookupEnv: func(k string) (string, bool) {
			if k == "TERM" && tc.term != "" {
				return tc.term, true
			}
			return "", false
		}}
		if got := wantScreen(env, &runFlags{headless: tc.headless}); got != tc.want {
			t.Errorf("wantScreen(tty %v, TERM %q, headless %v) = %v, want %v", tc.tty, tc.term, tc.headless, got, tc.want)
		}
	}
	for _, v := range []struct {
		val  string
		want bool
	}{{"1", true}, {"yes", true}, {"0", true}, {"", false}} {
		env := &Env{LookupEnv: func(k string) (string, bool) { return v.val, k == "NO_COLOR" && v.val != "" }}
		if got := noColor(env); got != v.want {
			t.Errorf("noColor(NO_COLOR=%q) = %v, want %v (any non-empty value means no colour)", v.val, got, v.want)
		}
	}
}
