package tui_test

// The tuning story of the README, driven on the real binary in tmux at the design width and
// at 60x20: raise parallelism with a key, see the 429s it causes and where they come from,
// lower it, see them stop, drain; then every number on the final screen is checked against
// the results file, the summary the run prints and its --summary-json. The waits poll the
// screen with generous deadlines: nothing here depends on how fast a loaded machine is, only
// on the simulated API's hidden limit (50/s) against what the workers can ask of it (20/s a
// worker at a fixed 50 ms).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tuningPatience bounds each wait of the tuning test: the 429 share of the header covers 10
// seconds, and a loaded 2-core machine may take long to build, start and draw.
const tuningPatience = 90 * time.Second

var (
	effCeilingRe  = regexp.MustCompile(`parallelism \d+ effective · ceiling (\d+)`)
	plainKnobRe   = regexp.MustCompile(`parallelism\s+(\d+)\s+max`)
	shareRe       = regexp.MustCompile(`429s (\d+(?:\.\d+)?)%`)
	countsRe      = regexp.MustCompile(`ok ([\d,]+)\s+failed ([\d,]+)\s+retries ([\d,]+)`)
	doneOfTotalRe = regexp.MustCompile(`([\d,]+) / ([\d,]+)`)
	ruleTooMany   = regexp.MustCompile(`whole run ([\d,]+) × 429`)
	sourceRe      = regexp.MustCompile(`binding: (server|Retry-After)`)
)

// TestTmuxDemoTuning drives the tuning story at 80x24 and at 60x20.
func TestTmuxDemoTuning(t *testing.T) {
	bin := tmuxAndBinary(t)
	for _, sz := range []struct{ w, h int }{{80, 24}, {60, 20}} {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			t.Parallel()
			testTuning(t, bin, sz.w, sz.h)
		})
	}
}

func testTuning(t *testing.T, bin string, w, h int) {
	dir := t.TempDir()
	out, sumFile := filepath.Join(dir, "r.jsonl"), filepath.Join(dir, "s.json")
	// 20,000 items never finish in the test's time: the run ends by the drain.
	s := startDemo(t, bin, dir, w, h, "--items", "20000", "--auto=false", "--parallelism", "1",
		"--sim-rate", "50/s", "--sim-latency", "50ms", "--sim-sigma", "0", "--out", out, "--summary-json", sumFile)

	// 1. One worker asks 20 calls/s of an API that takes 50/s: a clean start.
	screen := s.waitWithin(tuningPatience, "the screen at parallelism 1 with calls done", func(sc string) bool {
		done, _ := progress(sc)
		return ceilingShown(sc) == 1 && done > 0 && keyBarShown(sc)
	})
	checkReadable(t, screen, w, h)
	if share := tooManyShare(screen); share != 0 {
		t.Errorf("429s %.1f%% at parallelism 1 (20 calls/s of an API that takes 50/s), want 0 (screen below)", share)
	}

	// The help: every key and the legend of the worker strip, nothing cut.
	s.send("?")
	help := s.waitWithin(tuningPatience, "the help", func(sc string) bool { return strings.Contains(sc, "any key closes") })
	checkReadable(t, help, w, h)
	for _, want := range []string{"× above the limit", "■ calling", "○ idle", "e.g. parallelism 64", "pace longer", "rate ceiling"} {
		if !strings.Contains(help, want) {
			t.Errorf("the help at %dx%d lacks %q (screen below)", w, h, want)
		}
	}
	s.send("z") // any key closes the help
	s.waitWithin(tuningPatience, "the help closed", func(sc string) bool { return strings.Contains(sc, "─ knobs") })

	// 2. Raise with PgUp, one doubling at a time: 1 → 2 → 4 → 8 workers, 160 calls/s asked.
	for _, want := range []int{2, 4, 8} {
		s.send("PageUp")
		s.waitWithin(tuningPatience, fmt.Sprintf("the parallelism ceiling %d after PgUp", want), func(sc string) bool {
			return ceilingShown(sc) == want
		})
	}

	// 3. The 429s it causes, and where they come from: the status in the header's share (and,
	// where the errors panel has room, its count), and the limit: the server's.
	screen = s.waitWithin(tuningPatience, "the 429s of parallelism 8 and their source", func(sc string) bool {
		ok := tooManyShare(sc) > 0 && sourceRe.MatchString(sc)
		if w >= 80 {
			ok = ok && ruleCount(sc) > 0
		}
		return ok
	})
	t.Logf("after the raise: 429s %.1f%%, %s", tooManyShare(screen), sourceRe.FindString(screen))
	checkReadable(t, screen, w, h)

	// 4. Lower with PgDn until one worker is left: the 429s stop (none over the last 10 s).
	for range 8 {
		if ceilingShown(s.capture()) == 1 {
			break
		}
		before := ceilingShown(s.capture())
		s.send("PageDown")
		s.waitWithin(tuningPatience, "the parallelism ceiling lower after PgDn", func(sc string) bool {
			c := ceilingShown(sc)
			return c > 0 && c < before
		})
	}
	screen = s.waitWithin(tuningPatience, "no 429 over the last 10 s at parallelism 1", func(sc string) bool {
		return ceilingShown(sc) == 1 && tooManyShare(sc) == 0 && strings.Contains(sc, "429s 0") && keyBarShown(sc)
	})
	checkReadable(t, screen, w, h)

	// 5. Drain: the final screen stays until a key.
	s.send("d")
	s.waitWithin(tuningPatience, "the drain confirmation", func(sc string) bool {
		return strings.Contains(lastLine(sc), "drain: no new calls")
	})
	s.send("y")
	final := s.waitWithin(tuningPatience, "the final screen", func(sc string) bool {
		return strings.Contains(lastLine(sc), "press any key to exit")
	})
	checkReadable(t, final, w, h)
	s.send("x")
	if code := s.waitExit(); code != 130 {
		t.Errorf("exit status after a drain = %d, want 130 (interrupted, drained)", code)
	}
	printed := s.checkClean()

	// 6. Every number of the final screen against the rows, the summary and its JSON.
	rows := readTuningRows(t, out)
	var sum struct {
		Items struct {
			Total  int64 `json:"total"`
			OK     int64 `json:"ok"`
			Failed int64 `json:"failed"`
			NotRun int64 `json:"not_run"`
		} `json:"items"`
		Calls   int64 `json:"calls"`
		Retries int64 `json:"retries"`
		TooMany int64 `json:"429s"`
	}
	b, err := os.ReadFile(sumFile)
	if err != nil {
		t.Fatalf("--summary-json: %v", err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatalf("--summary-json: %v", err)
	}
	js := sum.Items
	pItems, pOK, pNotRun := parseSummary(t, printed, "drained")

	okShown, failedShown, retriesShown := headerCounts(t, final)
	done, total := progress(final)
	adv := advisorText(final)
	t.Logf("final screen: %d / %d, ok %d failed %d retries %d; advisor: %s", done, total, okShown, failedShown, retriesShown, adv)
	t.Logf("rows %d (ok %d, failed %d, attempts %d); json %+v calls %d retries %d 429s %d", rows.n, rows.ok, rows.failed, rows.attempts,
		js, sum.Calls, sum.Retries, sum.TooMany)

	if sum.TooMany == 0 {
		t.Errorf("the summary counts no 429 after a raise to 8 workers against a limit of 50/s")
	}
	for _, c := range []struct {
		what        string
		screen, ref int64
	}{
		{"items done (progress line) vs rows", done, rows.n},
		{"total (progress line) vs --summary-json items.total", total, js.Total},
		{"ok (header) vs ok rows", okShown, rows.ok},
		{"failed (header) vs failed rows", failedShown, rows.failed},
		{"retries (header) vs attempts beyond the first in the rows", retriesShown, rows.attempts - rows.n},
		{"retries (header) vs --summary-json retries", retriesShown, sum.Retries},
		{"ok (final line) vs ok rows", advisorCount(t, adv, "ok"), rows.ok},
		{"failed (final line) vs failed rows", advisorCount(t, adv, "failed"), rows.failed},
		{"not run (final line) vs total less rows", advisorCount(t, adv, "not run"), js.Total - rows.n},
		{"calls (final line) vs attempts in the rows", advisorCount(t, adv, "calls"), rows.attempts},
		{"calls (final line) vs --summary-json calls", advisorCount(t, adv, "calls"), sum.Calls},
		{"× 429 (final line) vs --summary-json 429s", advisorCount(t, adv, "× 429"), sum.TooMany},
		{"ok (header) vs --summary-json items.ok", okShown, js.OK},
		{"not run (final line) vs --summary-json items.not_run", advisorCount(t, adv, "not run"), js.NotRun},
		{"items (printed summary) vs rows", pItems, rows.n},
		{"ok (printed summary) vs ok rows", pOK, rows.ok},
		{"not run (printed summary) vs --summary-json items.not_run", pNotRun, js.NotRun},
	} {
		if c.screen != c.ref {
			t.Errorf("%s: %d ≠ %d", c.what, c.screen, c.ref)
		}
	}
	if w >= 80 {
		if n := ruleCount(final); n != sum.TooMany {
			t.Errorf("the errors panel's \"%d × 429\" ≠ the summary's %d", n, sum.TooMany)
		}
	}
}

// checkReadable fails a screen with a row wider than w, other than h rows, or a cut (…); and
// a screen whose header lacks its words, or whose key line (when it shows the keys) lacks
// the help and quit keys.
func checkReadable(t *testing.T, screen string, w, h int) {
	t.Helper()
	lines := strings.Split(screen, "\n")
	if len(lines) != h {
		t.Errorf("the screen has %d rows, want %d (screen below)", len(lines), h)
	}
	for i, l := range lines {
		if n := len([]rune(l)); n > w {
			t.Errorf("row %d is %d cells wide, want at most %d: %q", i, n, w, l)
		}
		if strings.Contains(l, "…") {
			t.Errorf("row %d is cut: %q", i, l)
		}
	}
	head := strings.Join(lines[:min(5, len(lines))], "\n")
	// "calls/s" may read "/s" at 80 columns; the final screen says "N × 429" for "429s N%".
	for _, word := range []string{"sim API", "items", "/s", "ok ", "failed ", "retries ", "429"} {
		if !strings.Contains(head, word) {
			t.Errorf("the header lacks %q:\n%s", word, head)
		}
	}
	if last := lastLine(screen); strings.Contains(last, "ceilings") && !keyBarShown(screen) {
		t.Errorf("the key line lacks ? help or q quit: %q", last)
	}
}

// keyBarShown says whether the last line is the key bar with its help and quit keys.
func keyBarShown(screen string) bool {
	last := lastLine(screen)
	return strings.Contains(last, "? help") && strings.Contains(last, "q quit")
}

// ceilingShown is the parallelism the keys turn: the ceiling beside an effective value that
// binds, else the knob; -1 when neither shows.
func ceilingShown(screen string) int {
	m := effCeilingRe.FindStringSubmatch(screen)
	if m == nil {
		m = plainKnobRe.FindStringSubmatch(screen)
	}
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// tooManyShare is the header's 429 share in percent, or -1.
func tooManyShare(screen string) float64 {
	m := shareRe.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return f
}

func count(s string) int64 {
	n, _ := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
	return n
}

// ruleCount is N in the errors panel's "N × 429", or -1.
func ruleCount(screen string) int64 {
	m := ruleTooMany.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	return count(m[1])
}

// progress is the progress line's "done / total".
func progress(screen string) (done, total int64) {
	m := doneOfTotalRe.FindStringSubmatch(screen)
	if m == nil {
		return -1, -1
	}
	return count(m[1]), count(m[2])
}

func headerCounts(t *testing.T, screen string) (ok, failed, retries int64) {
	t.Helper()
	m := countsRe.FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("no \"ok N failed N retries N\" in the header (screen below)")
	}
	return count(m[1]), count(m[2]), count(m[3])
}

// advisorText is the advisor panel's words, its lines joined: on the final screen, the
// run's last word.
func advisorText(screen string) string {
	lines := strings.Split(screen, "\n")
	var words []string
	in := false
	for _, l := range lines[:len(lines)-1] {
		switch {
		case strings.HasPrefix(l, "─ advisor"), strings.HasPrefix(l, "─ summary"): // the final screen's summary
			in = true
		case strings.HasPrefix(l, "─"):
			in = false
		case in:
			words = append(words, strings.TrimSpace(l))
		}
	}
	return strings.Join(words, " ")
}

// advisorCount is N in "N what" of the final line, e.g. "1,032 ok", "5 × 429".
func advisorCount(t *testing.T, text, what string) int64 {
	t.Helper()
	m := regexp.MustCompile(`([\d,]+) ` + regexp.QuoteMeta(what) + `\b`).FindStringSubmatch(text)
	if what == "× 429" {
		m = regexp.MustCompile(`([\d,]+) × 429`).FindStringSubmatch(text)
	}
	if m == nil {
		t.Errorf("the final screen's summary lacks \"N %s\": %q", what, text)
		return -1
	}
	return count(m[1])
}

// tuningRows are the counts of a results file.
type tuningRows struct{ n, ok, failed, attempts int64 }

func readTuningRows(t *testing.T, path string) tuningRows {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	defer f.Close()
	var r tuningRows
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var row struct {
			Item     string `json:"item"`
			OK       bool   `json:"ok"`
			Attempts int64  `json:"attempts"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("%s: not a JSON row: %v: %q", path, err, sc.Text())
		}
		if seen[row.Item] {
			t.Errorf("%s: a second row for item %s", path, row.Item)
		}
		seen[row.Item] = true
		r.n++
		r.attempts += row.Attempts
		if row.OK {
			r.ok++
		} else {
			r.failed++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("results: %v", err)
	}
	return r
}
