// Package notify tells the operator that a run ended, through the terminal itself: the bell
// and, when asked, a desktop notification (OSC 9 and OSC 777), which reaches the operator's
// desktop over ssh with nothing installed on either side. It returns the bytes to write; the
// caller decides where, and writes them only to a terminal (escape sequences in a log file
// are garbage).
package notify

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
)

// Title is the notification's title.
const Title = "throttle"

// End returns what to write to the terminal when a run ends with sum: with desktop a
// notification saying how it ended ([Text]), then the bell. tmux says the terminal is reached
// through tmux, whose passthrough the notification then needs. Nothing for a zero Summary: the
// run never started.
func End(sum engine.Summary, desktop, tmux bool) string {
	if sum.State == engine.Running { // a zero Summary: the run never started
		return ""
	}
	if !desktop {
		return "\a"
	}
	return Terminal(Title, Text(sum), tmux) + "\a"
}

// Text is the notification's text: "done: 1,234 ok, 5 failed in 12m".
func Text(sum engine.Summary) string {
	verb := sum.Ended()
	s := fmt.Sprintf("%s: %s ok, %s failed", verb, human.Count(sum.OK), human.Count(sum.Failed))
	if sum.Lost > 0 {
		s += fmt.Sprintf(", %s lost", human.Count(sum.Lost))
	}
	return s + " in " + human.Span(sum.Elapsed)
}

// Terminal returns the escape sequences of a desktop notification: OSC 9 (iTerm2, kitty,
// WezTerm, Ghostty) and OSC 777 (urxvt, foot, VTE with the notify patch, WezTerm, Ghostty).
// Both are sent because no variable says reliably which one a terminal reads (over ssh and
// tmux, TERM_PROGRAM is gone); a terminal ignores the one it does not know, and one that reads
// both shows two. Under tmux each is wrapped in its DCS passthrough, with the inner ESCs
// doubled, since tmux would otherwise swallow them (tmux ≥ 3.3 also needs `set -g
// allow-passthrough on`). Control characters are removed from title and text, so that nothing
// in them can end the sequence early or start another.
func Terminal(title, text string, tmux bool) string {
	title, text = stripControls(title), stripControls(text)
	seqs := []string{
		"\x1b]9;" + title + ": " + text + "\a",
		// ';' separates OSC 777's fields: one in the title would move text into the body.
		"\x1b]777;notify;" + strings.ReplaceAll(title, ";", ",") + ";" + text + "\a",
	}
	var b strings.Builder
	for _, s := range seqs {
		if tmux {
			s = "\x1bPtmux;" + strings.ReplaceAll(s, "\x1b", "\x1b\x1b") + "\x1b\\"
		}
		b.WriteString(s)
	}
	return b.String()
}

// stripControls returns s without control characters (C0, DEL, C1) and invalid UTF-8.
func stripControls(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}
