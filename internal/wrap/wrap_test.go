package wrap

import (
	"slices"
	"strings"
	"testing"
)

// widest is the width of s's widest line.
func widest(s string) int {
	m := 0
	for _, l := range strings.Split(s, "\n") {
		m = max(m, Width(l))
	}
	return m
}

func TestWidthCountsColumnsNotBytes(t *testing.T) {
	for s, want := range map[string]int{"abc": 3, "50/s × 2.3 s ≈ 115": 18, "…": 1, "raise with ↑": 12, "": 0} {
		if got := Width(s); got != want {
			t.Errorf("Width(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestFill(t *testing.T) {
	words := strings.Fields("one two three four five six seven")
	got := Fill("  x: ", words, 5, 16)
	want := []string{"  x: one two", "     three four", "     five six", "     seven"}
	if !slices.Equal(got, want) {
		t.Errorf("Fill = %q, want %q", got, want)
	}
	// A word wider than the room after hang moves left as far as it needs; one wider than
	// the whole width stands alone and whole.
	got = Fill("", strings.Fields("see https://example.com/a/b and https://example.com/a/very/long/path/indeed ok"), 10, 24)
	want = []string{"see", " https://example.com/a/b", "          and", "https://example.com/a/very/long/path/indeed", "          ok"}
	if !slices.Equal(got, want) {
		t.Errorf("Fill with long words = %q, want %q", got, want)
	}
	// Only an indentation before a word too wide for it: the word moves left.
	if got := Fill("          ", []string{"0123456789abcdef"}, 10, 20); !slices.Equal(got, []string{"    0123456789abcdef"}) {
		t.Errorf("Fill after an indentation = %q", got)
	}
}

func TestProse(t *testing.T) {
	in := `A paragraph written for
eighty columns, long enough to be filled anew.

  get                 the live settings, counts and change log (--json)
  set KEY VALUE       parallelism N, applied
                      at once
  SELECT count(*) FROM pg_stat_activity WHERE application_name = 'x'
counts them.`
	got := Prose(in, 46)
	want := `A paragraph written for eighty columns, long
enough to be filled anew.

  get                 the live settings,
                      counts and change log
                      (--json)
  set KEY VALUE       parallelism N, applied
                      at once
  SELECT count(*) FROM pg_stat_activity WHERE
      application_name = 'x'
counts them.`
	if got != want {
		t.Errorf("Prose at 46:\n%s\nwant:\n%s", got, want)
	}
	if w := widest(got); w > 46 {
		t.Errorf("Prose at 46 is %d wide", w)
	}
	if !slices.Equal(strings.Fields(got), strings.Fields(in)) {
		t.Errorf("Prose changed the words:\n%s", got)
	}
	// What fits stays as written, blank lines and all.
	short := "one two\nthree\n\n  a  b"
	if got := Prose(short, 80); got != "one two three\n\n  a  b" {
		t.Errorf("Prose at 80 = %q", got)
	}
}

func TestExample(t *testing.T) {
	in := `  # Crawl many sites: 1 call/s and 2 at once per site,
  # 64 calls in all.
  throttle run http --input urls.txt --url '{item}' --parallelism 64 \
      --per-host-rate 1/s

  # short`
	got := Example(in, 40)
	want := `  # Crawl many sites: 1 call/s and 2 at
  # once per site, 64 calls in all.
  throttle run http --input urls.txt --url '{item}' --parallelism 64 \
      --per-host-rate 1/s

  # short`
	if got != want {
		t.Errorf("Example at 40:\n%s\nwant:\n%s", got, want)
	}
}
