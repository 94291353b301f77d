package tui_test

// End-to-end tests of the screen: they build the real binary, run `throttle demo` in a
// detached tmux server of their own (its own socket, a fixed window size, TERM=xterm-256color)
// and drive it with send-keys, reading the screen with capture-pane and the simulated API's
// own view of the run from its GET /stats. Under CI=true a missing tmux fails; elsewhere the
// tests skip.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

const (
	// pollEvery is how often the screen, a file or the sim API is read while waiting.
	pollEvery = 150 * time.Millisecond
	// patience bounds every wait: generous, for a noisy 2-core machine under -race.
	patience = 20 * time.Second
)

var (
	simAPIRe      = regexp.MustCompile(`sim API (127\.0\.0\.1:\d+)`)
	inFlightRe    = regexp.MustCompile(`workers (\d+) in flight / (\d+)`)
	parallelismRe = regexp.MustCompile(`parallelism\s+(\d+)\b`)
	tuiChangeRe   = regexp.MustCompile(`tui\s+parallelism \d+ → \d+`)
	errorsRuleRe  = regexp.MustCompile(`─ errors\b`)
	summaryRe     = regexp.MustCompile(`(?m)^(done|drained|stopped) in [^:]+: ([\d,]+) items, ([\d,]+) ok, ([\d,]+) failed`)
	notRunRe      = regexp.MustCompile(`(?m)^([\d,]+) items were not run`)
)

// TestTmuxDemo drives `throttle demo` in tmux: the panels, raising parallelism (seen on the
// screen and by the simulated server), quitting mid-run, a run that ends by itself, and the
// layout at 160x48 and after a resize.
func TestTmuxDemo(t *testing.T) {
	bin := tmuxAndBinary(t)

	t.Run("raise parallelism then quit", func(t *testing.T) {
		t.Parallel()
		testRaiseAndQuit(t, bin)
	})
	t.Run("run ends by itself", func(t *testing.T) {
		t.Parallel()
		testRunEnds(t, bin)
	})
	t.Run("160x48 then resize", func(t *testing.T) {
		t.Parallel()
		testLargeThenResize(t, bin)
	})
}

// testRaiseAndQuit runs a long demo whose simulated server is bound by concurrency (no rate
// limit, 200ms per call), so that the calls it sees in flight follow the parallelism.
func testRaiseAndQuit(t *testing.T, bin string) {
	dir := t.TempDir()
	out := filepath.Join(dir, "r.jsonl")
	s := startDemo(t, bin, dir, 80, 24,
		"--items", "4000", "--sim-rate", "0", "--sim-latency", "200ms", "--auto=false", "--parallelism", "8", "--out", out)

	screen := s.waitFor("the panels at 80x24", func(sc string) bool {
		return panelsShown(sc, 8) == ""
	})
	s.checkFrame(screen, 80, 24)
	api := simAPI(t, screen)

	before := readStats(t, api)
	if before.MaxInFlight > 8 {
		t.Errorf("sim /stats max_in_flight = %d at parallelism 8, want at most 8", before.MaxInFlight)
	}

	s.send("PageUp") // ×2: 8 → 16
	s.waitFor("the in-flight limit 16 after PageUp", func(sc string) bool {
		return limitShown(sc) == 16
	})
	s.send("Up")
	s.send("Up") // +1 twice: 16 → 18
	screen = s.waitFor("the in-flight limit 18 after Up Up", func(sc string) bool {
		return limitShown(sc) == 18 && knobShown(sc) == 18
	})
	if !strings.Contains(screen, "17 → 18") {
		t.Errorf("no \"17 → 18\" (change log or message) on the screen after Up Up (screen below)")
	}

	// The server must see the new limit: 18 calls at once, never more.
	var st simStats
	deadline := time.Now().Add(patience)
	for {
		st = readStats(t, api)
		if st.MaxInFlight >= 18 || time.Now().After(deadline) {
			break
		}
		time.Sleep(pollEvery)
	}
	if st.MaxInFlight != 18 {
		t.Errorf("sim /stats max_in_flight = %d after raising parallelism 8 → 18, want 18 (before: %d)",
			st.MaxInFlight, before.MaxInFlight)
	}

	t.Logf("sim max_in_flight: %d at parallelism 8, %d after raising to 18", before.MaxInFlight, st.MaxInFlight)

	// q asks for confirmation while calls are in flight; a second q drains and quits.
	s.send("q")
	s.waitFor("the quit confirmation", func(sc string) bool {
		return strings.Contains(lastLine(sc), "q or y drains and quits")
	})
	if _, ok := s.exitStatus(); ok {
		t.Fatal("the program exited on the first q, want a confirmation first")
	}
	s.send("q")
	if code := s.waitExit(); code != 130 {
		t.Errorf("exit status after q q mid-run = %d, want 130 (interrupted, drained)", code)
	}
	final := s.checkClean()
	items, ok, notRun := parseSummary(t, final, "drained")
	if ok != items {
		t.Errorf("summary: %d items, %d ok; want every row ok (no limits, no errors)", items, ok)
	}
	if items+notRun != 4000 {
		t.Errorf("summary: %d items with a row + %d not run = %d, want 4000", items, notRun, items+notRun)
	}
	// A long path goes on the next line: the summary fits 80 columns.
	if !regexp.MustCompile(`results appended to\s+` + regexp.QuoteMeta(out)).MatchString(final) {
		t.Errorf("the summary does not name the results file %s (screen below)", out)
	}
	if !strings.Contains(final, "simulated API on http://"+api) {
		t.Errorf("the shell's screen before the TUI (\"simulated API on http://%s\") was not restored (screen below)", api)
	}
	rows := readRows(t, out, 4000)
	if int64(len(rows)) != items {
		t.Errorf("%s has %d rows, want %d (the summary's items)", out, len(rows), items)
	}
}

// testRunEnds lets a short demo finish: the final screen stays until a key is pressed.
func testRunEnds(t *testing.T, bin string) {
	dir := t.TempDir()
	out := filepath.Join(dir, "r.jsonl")
	s := startDemo(t, bin, dir, 80, 24, "--items", "100", "--sim-rate", "1000/s", "--out", out)

	screen := s.waitFor("the final screen", func(sc string) bool {
		return strings.Contains(sc, "done") && strings.Contains(lastLine(sc), "press any key to exit")
	})
	s.checkFrame(screen, 80, 24)
	// The final screen stays: nobody pressed a key yet.
	time.Sleep(time.Second)
	if code, ok := s.exitStatus(); ok {
		t.Fatalf("the program exited (status %d) before a key was pressed, want the final screen to stay", code)
	}
	if sc := s.capture(); !strings.Contains(lastLine(sc), "press any key to exit") {
		t.Fatalf("the final screen changed without a key press (screen below)")
	}

	s.send("x")
	if code := s.waitExit(); code != 0 {
		t.Errorf("exit status of a run that ended with every item ok = %d, want 0", code)
	}
	final := s.checkClean()
	items, ok, notRun := parseSummary(t, final, "done")
	if items != 100 || ok != 100 || notRun != 0 {
		t.Errorf("summary: %d items, %d ok, %d not run; want 100, 100, 0", items, ok, notRun)
	}
	rows := readRows(t, out, 100)
	if len(rows) != 100 {
		t.Errorf("%s has %d rows, want 100", out, len(rows))
	}
	for item, r := range rows {
		if !r.OK {
			t.Errorf("row of item %s: ok false, want true", item)
		}
	}
}

// testLargeThenResize starts at 160x48, checks that the screen uses the room, then shrinks
// the window to 80x24 and checks that the screen is laid out again; ctrl+c drains and quits.
func testLargeThenResize(t *testing.T, bin string) {
	dir := t.TempDir()
	out := filepath.Join(dir, "r.jsonl")
	s := startDemo(t, bin, dir, 160, 48,
		"--items", "4000", "--sim-rate", "0", "--sim-latency", "200ms", "--auto=false", "--parallelism", "8", "--out", out)

	screen := s.waitFor("the panels at 160x48", func(sc string) bool {
		return panelsShown(sc, 8) == ""
	})
	s.checkFrame(screen, 160, 48)
	if !strings.Contains(lastLine(screen), "chart window") {
		t.Errorf("at 160 columns the key line has no \"chart window\": %q", lastLine(screen))
	}
	for range 3 {
		s.send("Up")
	}
	big := s.waitFor("three parallelism changes in the change log at 160x48", func(sc string) bool {
		return len(tuiChangeRe.FindAllString(sc, -1)) >= 3 && limitShown(sc) == 11
	})
	bigCharts, bigChanges := chartRows(big), len(tuiChangeRe.FindAllString(big, -1))

	if _, err := s.tmux("resize-window", "-t", s.name, "-x", "80", "-y", "24"); err != nil {
		t.Fatalf("tmux resize-window: %v", err)
	}
	small := s.waitFor("the screen laid out again at 80x24", func(sc string) bool {
		ls := strings.Split(sc, "\n")
		return len(ls) == 24 && strings.Contains(ls[0], "throttle") &&
			!strings.Contains(lastLine(sc), "chart window") && panelsShown(sc, 11) == ""
	})
	s.checkFrame(small, 80, 24)
	smallCharts, smallChanges := chartRows(small), len(tuiChangeRe.FindAllString(small, -1))
	t.Logf("chart rows %d at 160x48, %d at 80x24; tui changes listed %d and %d", bigCharts, smallCharts, bigChanges, smallChanges)
	if bigCharts < 2*smallCharts || smallCharts == 0 {
		t.Errorf("chart rows: %d at 160x48, %d at 80x24; want at least twice as many at 160x48", bigCharts, smallCharts)
	}
	if bigChanges <= smallChanges {
		t.Errorf("change log lines by tui: %d at 160x48, %d at 80x24; want more at 160x48", bigChanges, smallChanges)
	}

	s.send("C-c") // drains and quits once the calls in flight finish
	if code := s.waitExit(); code != 130 {
		t.Errorf("exit status after ctrl+c mid-run = %d, want 130 (interrupted, drained)", code)
	}
	final := s.checkClean()
	items, _, _ := parseSummary(t, final, "drained")
	if rows := readRows(t, out, 4000); int64(len(rows)) != items {
		t.Errorf("%s has %d rows, want %d (the summary's items)", out, len(rows), items)
	}
}

// buildThrottle builds the binary once for all the cases.
func buildThrottle(t *testing.T) string {
	t.Helper()
	return bintest.Build(t)
}

// session is a tmux server of one test, with one session running one demo.
type session struct {
	t      *testing.T
	socket string // tmux -L name: never the user's server
	conf   string
	name   string
	exit   string       // where the shell writes the demo's exit status
	last   atomic.Value // the last screen captured, shown when the test fails
}

var sessionSeq atomic.Int64

// startDemo starts `throttle demo args…` in a fresh tmux server with a w×h window. The shell
// records the exit status and then stays (so the pane's state can be read after the exit).
func startDemo(t *testing.T, bin, dir string, w, h int, args ...string) *session {
	t.Helper()
	return startProgram(t, bin, dir, w, h, stayAfterExit, append([]string{"demo"}, args...)...)
}

// tmux runs one tmux command against the test's own server.
func (s *session) tmux(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tmux", append([]string{"-L", s.socket, "-f", s.conf}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TMUX=") && !strings.HasPrefix(kv, "TMUX_PANE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	b, err := cmd.CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("tmux %s: %w: %s", strings.Join(args, " "), err, b)
	}
	return string(b), nil
}

// capture returns the visible screen, one line per row, trailing blanks removed.
func (s *session) capture() string {
	s.t.Helper()
	out, err := s.tmux("capture-pane", "-p", "-t", s.name)
	if err != nil {
		s.t.Fatalf("tmux capture-pane: %v", err)
	}
	out = strings.TrimSuffix(out, "\n")
	s.last.Store(out)
	return out
}

// send presses one key (a tmux key name: Up, PageUp, q, C-c).
func (s *session) send(key string) {
	s.t.Helper()
	if _, err := s.tmux("send-keys", "-t", s.name, key); err != nil {
		s.t.Fatalf("tmux send-keys %s: %v", key, err)
	}
}

// waitWithin polls the screen until ok accepts it, and fails the test after d.
func (s *session) waitWithin(d time.Duration, what string, ok func(screen string) bool) string {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		sc := s.capture()
		if ok(sc) {
			return sc
		}
		if code, exited := s.exitStatus(); exited {
			s.t.Fatalf("waiting for %s: the program exited with status %d (screen below)", what, code)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waiting for %s: not there after %v (screen below)", what, d)
		}
		time.Sleep(pollEvery)
	}
}

// waitFor polls the screen until ok accepts it, and fails the test after patience.
func (s *session) waitFor(what string, ok func(screen string) bool) string {
	s.t.Helper()
	return s.waitWithin(patience, what, ok)
}

// exitStatus returns the demo's exit status once the shell has written it.
func (s *session) exitStatus() (int, bool) {
	b, err := os.ReadFile(s.exit)
	if err != nil {
		return 0, false
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		s.t.Fatalf("exit status file %s holds %q", s.exit, b)
	}
	return code, true
}

// waitExit waits for the program to exit on its own and returns its exit status.
func (s *session) waitExit() int {
	s.t.Helper()
	start := time.Now()
	deadline := start.Add(patience)
	for {
		if code, ok := s.exitStatus(); ok {
			s.t.Logf("exited with status %d after %v", code, time.Since(start).Round(time.Millisecond))
			return code
		}
		if time.Now().After(deadline) {
			s.capture()
			s.t.Fatalf("the program has not exited %v later (screen below)", patience)
		}
		time.Sleep(pollEvery)
	}
}

// checkFrame checks a screen of the TUI: the header on the first row, the key line on the
// last, nothing wrapped (a wrapped line would scroll the header away) and no row wider than w.
func (s *session) checkFrame(screen string, w, h int) {
	s.t.Helper()
	lines := strings.Split(screen, "\n")
	if len(lines) != h {
		s.t.Errorf("the screen has %d rows, want %d", len(lines), h)
	}
	if !strings.Contains(lines[0], "throttle") || !simAPIRe.MatchString(lines[0]) {
		s.t.Errorf("the first row is not the header with the title: %q", lines[0])
	}
	for i, l := range lines {
		if n := len([]rune(l)); n > w {
			s.t.Errorf("row %d is %d cells wide, want at most %d: %q", i, n, w, l)
		}
	}
}

// checkClean waits until the shell's screen is back after the exit and checks that the
// terminal is as the program found it: main screen, cursor shown, no mouse or keypad modes,
// no piece of the TUI. It returns the screen with wrapped lines joined.
func (s *session) checkClean() string {
	s.t.Helper()
	var screen string
	deadline := time.Now().Add(patience)
	for {
		out, err := s.tmux("capture-pane", "-p", "-J", "-t", s.name)
		if err != nil {
			s.t.Fatalf("tmux capture-pane: %v", err)
		}
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			lines = append(lines, strings.TrimRight(l, " "))
		}
		screen = strings.TrimRight(strings.Join(lines, "\n"), "\n")
		s.last.Store(screen)
		if strings.Contains(screen, "results appended to") {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no \"results appended to\" on the screen %v after the exit (screen below)", patience)
		}
		time.Sleep(pollEvery)
	}
	flags, err := s.tmux("display-message", "-p", "-t", s.name,
		"alternate_on=#{alternate_on} cursor_flag=#{cursor_flag} mouse_any_flag=#{mouse_any_flag} keypad_cursor_flag=#{keypad_cursor_flag} pane_dead=#{pane_dead}")
	if err != nil {
		s.t.Fatalf("tmux display-message: %v", err)
	}
	flags = strings.TrimSpace(flags)
	if want := "alternate_on=0 cursor_flag=1 mouse_any_flag=0 keypad_cursor_flag=0 pane_dead=0"; flags != want {
		s.t.Errorf("terminal modes after the exit: %s, want %s", flags, want)
	}
	for _, tui := range []string{"q quit", "press any key", "─ knobs", "─ changes", "in flight /"} {
		if strings.Contains(screen, tui) {
			s.t.Errorf("the screen after the exit still shows %q from the TUI (screen below)", tui)
		}
	}
	return screen
}

// panelsShown returns what is missing from a TUI screen at the given parallelism limit, or "".
func panelsShown(screen string, limit int) string {
	lines := strings.Split(screen, "\n")
	if len(lines) < 8 || !simAPIRe.MatchString(lines[0]) {
		return "the header"
	}
	body := strings.Join(lines[3:len(lines)-1], "\n")
	switch {
	case limitShown(screen) != limit:
		return fmt.Sprintf("workers … in flight / %d", limit)
	case knobShown(body) != limit:
		return fmt.Sprintf("the parallelism knob at %d", limit)
	case !strings.Contains(body, "pace") || !strings.Contains(body, "rate"):
		return "the pace and rate knobs"
	case !strings.Contains(body, "p95"):
		return "the latency panel (p95)"
	case !strings.Contains(body, "429"):
		return "the 429 panel"
	case !errorsRuleRe.MatchString(body):
		return "the errors rule"
	}
	return ""
}

// limitShown is N in "workers … in flight / N", or -1.
func limitShown(screen string) int {
	m := inFlightRe.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[2])
	return n
}

// knobShown is N in the knob line "parallelism N", or -1.
func knobShown(screen string) int {
	m := parallelismRe.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// chartRows counts the rows that carry a chart's y axis.
func chartRows(screen string) int {
	n := 0
	for _, l := range strings.Split(screen, "\n") {
		if strings.ContainsAny(l, "┤┼") {
			n++
		}
	}
	return n
}

func lastLine(screen string) string {
	lines := strings.Split(screen, "\n")
	return lines[len(lines)-1]
}

// simAPI reads the simulated API's host:port from the title.
func simAPI(t *testing.T, screen string) string {
	t.Helper()
	m := simAPIRe.FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("no \"sim API 127.0.0.1:PORT\" in the title (screen below)")
	}
	return m[1]
}

// simStats are the fields of the sim's GET /stats that the tests read.
type simStats struct {
	Calls       int64 `json:"calls"`
	InFlight    int64 `json:"in_flight"`
	MaxInFlight int64 `json:"max_in_flight"`
}

func readStats(t *testing.T, hostport string) simStats {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + hostport + "/stats")
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stats: %s", resp.Status)
	}
	var st simStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	return st
}

// parseSummary reads the summary printed after the exit: rows written, rows ok, items not run.
func parseSummary(t *testing.T, screen, verb string) (items, ok, notRun int64) {
	t.Helper()
	m := summaryRe.FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("no summary line (\"%s in …: N items, N ok, N failed\") after the exit (screen below)", verb)
	}
	if m[1] != verb {
		t.Errorf("the summary says %q, want %q", m[1], verb)
	}
	num := func(s string) int64 {
		n, _ := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
		return n
	}
	items, ok = num(m[2]), num(m[3])
	if nr := notRunRe.FindStringSubmatch(screen); nr != nil {
		notRun = num(nr[1])
	}
	t.Logf("summary: %s", m[0])
	return items, ok, notRun
}

// row is the part of a results row the tests read.
type row struct {
	Item string `json:"item"`
	OK   bool   `json:"ok"`
}

// readRows reads a results file: every line valid JSON, one row per item, items 1..maxItem.
func readRows(t *testing.T, path string, maxItem int) map[string]row {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	defer f.Close()
	rows := map[string]row{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("%s:%d: not a JSON row: %v: %q", path, n, err, sc.Text())
			continue
		}
		if id, err := strconv.Atoi(r.Item); err != nil || id < 1 || id > maxItem {
			t.Errorf("%s:%d: item %q, want 1..%d", path, n, r.Item, maxItem)
		}
		if _, dup := rows[r.Item]; dup {
			t.Errorf("%s:%d: a second row for item %s", path, n, r.Item)
		}
		rows[r.Item] = r
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("results: %v", err)
	}
	return rows
}

// shQuote quotes s for sh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tmuxAndBinary skips a test under -short, fails it under CI=true without tmux (else skips),
// and builds the binary it drives.
func tmuxAndBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("drives the real binary in tmux; skipped with -short")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("CI=true but tmux is not installed (%v): .ci/run installs it", err)
		}
		t.Skipf("tmux is not installed (%v): install it to run the end-to-end TUI tests", err)
	}
	return buildThrottle(t)
}
