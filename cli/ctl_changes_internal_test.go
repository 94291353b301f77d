package cli

import (
	"strings"
	"testing"
)

// TestCtlChangeLogAligned: ctl get prints the change log in columns: times as clocks,
// right-aligned, so every change starts at the same column (issue 20: "ctl get's change-log
// columns misaligned").
func TestCtlChangeLogAligned(t *testing.T) {
	in := []string{
		"0s  state running (cli)",
		"9s  parallelism 2 → 4 (auto)",
		"1m2s  effective rate 250/s → 188/s (blind) (adapt)",
		"1h0m5s  parallelism 4 → 8 (ctl)",
	}
	got := changeLines(in)
	want := []string{
		"   0:00  state running (cli)",
		"   0:09  parallelism 2 → 4 (auto)",
		"   1:02  effective rate 250/s → 188/s (blind) (adapt)",
		"1:00:05  parallelism 4 → 8 (ctl)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("change lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	col := -1
	for _, l := range got {
		lead := len(l) - len(strings.TrimLeft(l, " "))
		i := lead + strings.Index(l[lead:], "  ") + 2
		if col >= 0 && i != col {
			t.Errorf("%q: the change starts at column %d, the others at %d", l, i, col)
		}
		col = i
	}
}
