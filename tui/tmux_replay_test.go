package tui_test

// The replay screen end to end: `throttle replay` of the committed recording in a tmux pane,
// driven with the replay keys. It reuses the helpers of tmux_test.go.

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replayRecording is the committed recording (testdata/recordings/README.md): 44 s of `run
// sim`, parallelism raised 4 → 8 at 0:14 (429s follow) and lowered to 6 at 0:29.
const replayRecording = "../testdata/recordings/sim-429.rec"

var (
	replayRe       = regexp.MustCompile(`REPLAY (\d+:\d\d) / (\d+:\d\d) · (\w+)( · paused)?`)
	raiseChangeRe  = regexp.MustCompile(`0:14\s+ctl\s+parallelism 4 → 8`)
	replayPanelsRe = []string{"─ knobs as recorded", "workers ", "p95", "429/s", "─ errors", "─ advisor", "─ changes"}
)

// replayShown is what the header says of the replay: position, length, speed, paused.
type replayShown struct {
	pos, length time.Duration
	speed       string
	paused      bool
	ok          bool
}

func readReplay(screen string) replayShown {
	m := replayRe.FindStringSubmatch(firstLine(screen))
	if m == nil {
		return replayShown{}
	}
	return replayShown{pos: clockOf(m[1]), length: clockOf(m[2]), speed: m[3], paused: m[4] != "", ok: true}
}

// clockOf reads human.Clock's "m:ss".
func clockOf(s string) time.Duration {
	m, sec, _ := strings.Cut(s, ":")
	mi, _ := strconv.Atoi(m)
	si, _ := strconv.Atoi(sec)
	return time.Duration(mi)*time.Minute + time.Duration(si)*time.Second
}

// TestTmuxReplay plays the committed recording at 80x24: the panels, speed, seeking, the
// jump to a change, pausing, the end of the run (no final screen), and q; and a SIGTERM.
func TestTmuxReplay(t *testing.T) {
	bin := tmuxAndBinary(t)
	rec, err := filepath.Abs(replayRecording)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("keys", func(t *testing.T) {
		t.Parallel()
		testReplayKeys(t, bin, rec)
	})
	t.Run("SIGTERM", func(t *testing.T) {
		t.Parallel()
		testReplaySignal(t, bin, rec)
	})
}

func testReplayKeys(t *testing.T, bin, rec string) {
	s := startProgram(t, bin, t.TempDir(), 80, 24, stayAfterExit, "replay", rec)
	screen := s.waitFor("the replay screen at 1x", func(sc string) bool {
		r := readReplay(sc)
		return r.ok && r.speed == "1x" && missing(sc, replayPanelsRe) == ""
	})
	checkScreenSize(t, screen, 80, 24)
	if r := readReplay(screen); r.length != 44*time.Second {
		t.Errorf("the replay's length is %v, want the recorded run's 0:44", r.length)
	}
	if last := lastLine(screen); !strings.Contains(last, "space pause") || strings.Contains(last, "drain") {
		t.Errorf("the key line is not the replay's: %q", last)
	}

	// 10x: the position runs past 0:10 within about a second.
	s.send("2")
	s.waitFor("the position past 0:10 at 10x", func(sc string) bool {
		r := readReplay(sc)
		return r.speed == "10x" && r.pos >= 10*time.Second
	})

	// space pauses: the position stands still.
	s.send("Space")
	screen = s.waitFor("the replay paused", func(sc string) bool { return readReplay(sc).paused })
	at := readReplay(screen).pos
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(pollEvery) {
		if r := readReplay(s.capture()); r.pos != at || !r.paused {
			t.Fatalf("paused at %v, the header then says %v (paused %v)", at, r.pos, r.paused)
		}
	}

	// ← and → seek 10 s.
	s.send("Left")
	s.waitFor("10 s back", func(sc string) bool { return readReplay(sc).pos == max(at-10*time.Second, 0) })
	s.send("Right")
	s.waitFor("10 s on again", func(sc string) bool { return readReplay(sc).pos == min(at, 44*time.Second) })

	// PgUp goes back to the start; n jumps to the raise, which the change log then shows.
	s.send("PageUp")
	s.waitFor("the start after PgUp", func(sc string) bool { return readReplay(sc).pos == 0 })
	s.send("n")
	screen = s.waitFor("the raise in the change log after n", func(sc string) bool {
		return readReplay(sc).pos == 14*time.Second && raiseChangeRe.MatchString(sc) && limitShown(sc) == 8
	})
	checkScreenSize(t, screen, 80, 24)

	// A knob key changes nothing and says so.
	s.send("Up")
	s.waitFor("the read-only message", func(sc string) bool {
		return strings.Contains(lastLine(sc), "read-only") && limitShown(sc) == 8
	})

	// As fast as possible to the end: the run's end is shown, and is no final screen.
	s.send("4")
	s.send("Space")
	screen = s.waitFor("the end of the run", func(sc string) bool {
		r := readReplay(sc)
		return r.speed == "max" && r.pos == r.length && strings.Contains(sc, "done in 44")
	})
	if strings.Contains(screen, "press any key") {
		t.Errorf("the end of a replay asks for any key (screen below)")
	}
	// Paused first: at max speed, 10 s back is played again in 10 ms.
	s.send("Space")
	s.send("Left")
	s.waitFor("a seek back from the end", func(sc string) bool {
		r := readReplay(sc)
		return r.ok && r.pos < r.length
	})

	s.send("q")
	if code := s.waitExit(); code != 0 {
		t.Errorf("exit status after q = %d, want 0", code)
	}
	checkRestored(t, s)
}

// testReplaySignal: a SIGTERM closes the replay screen at once, exit 130.
func testReplaySignal(t *testing.T, bin, rec string) {
	s := startProgram(t, bin, t.TempDir(), 80, 24, stayAfterExit, "replay", rec, "--speed", "10x")
	s.waitFor("the replay screen at 10x", func(sc string) bool { return readReplay(sc).speed == "10x" })
	pid := childOf(t, s)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("kill -TERM %d: %v", pid, err)
	}
	if code := s.waitExit(); code != 130 {
		t.Errorf("exit status after SIGTERM = %d, want 130", code)
	}
	checkRestored(t, s)
}

// childOf is the pid of the program the pane's shell runs.
func childOf(t *testing.T, s *session) int {
	t.Helper()
	out, err := s.tmux("display-message", "-p", "-t", s.name, "#{pane_pid}")
	if err != nil {
		t.Fatalf("tmux display-message: %v", err)
	}
	shell := strings.TrimSpace(out)
	b, err := os.ReadFile(filepath.Join("/proc", shell, "task", shell, "children"))
	if err != nil {
		t.Skipf("no /proc children of the pane's shell: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		t.Fatalf("the pane's shell %s has children %q, want the program alone", shell, f)
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

// checkRestored checks that the terminal is as the program found it after its exit.
func checkRestored(t *testing.T, s *session) {
	t.Helper()
	flags, err := s.tmux("display-message", "-p", "-t", s.name, "alternate_on=#{alternate_on} cursor_flag=#{cursor_flag}")
	if err != nil {
		t.Fatalf("tmux display-message: %v", err)
	}
	if got, want := strings.TrimSpace(flags), "alternate_on=0 cursor_flag=1"; got != want {
		t.Errorf("terminal modes after the exit: %s, want %s", got, want)
	}
	if sc := s.capture(); strings.Contains(sc, "REPLAY") || strings.Contains(sc, "─ knobs") {
		t.Errorf("the screen after the exit still shows the replay (screen below)")
	}
}

// missing returns the first of want not on the screen, or "".
func missing(screen string, want []string) string {
	for _, w := range want {
		if !strings.Contains(screen, w) {
			return w
		}
	}
	return ""
}
