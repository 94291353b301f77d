package cli_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// TestDetach: run --detach returns at once with how to attach, the job runs in the background
// in a session of its own, answers ctl, and writes every row and its log.
func TestDetach(t *testing.T) {
	t.Parallel()
	bin := bintest.Build(t)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		time.Sleep(5 * time.Millisecond)
		okJSON(w, r)
	})
	out := outPath(t)
	start := time.Now()
	b, err := exec.Command(bin, "run", "http", "--input", writeItems(t, 400), "--out", out, "--url", srv.URL+"/{item}",
		"--parallelism", "2", "--detach").CombinedOutput()
	if err != nil {
		t.Fatalf("run --detach: %v\n%s", err, b)
	}
	m := regexp.MustCompile(`throttle attach --control (\S+)`).FindSubmatch(b)
	if m == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("run --detach printed no way to attach, or did not return at once (%v):\n%s", time.Since(start), b)
	}
	sock := string(m[1])
	// The socket is named after the job's pid, the one it prints (not the launcher's).
	if p := regexp.MustCompile(`started in the background \(pid (\d+)\)`).FindSubmatch(b); p == nil || filepath.Base(sock) != string(p[1])+".sock" {
		t.Errorf("the socket %s is not named after the job's pid:\n%s", sock, b)
	}
	get, err := exec.Command(bin, "ctl", "--control", sock, "get").CombinedOutput()
	if err != nil || !strings.Contains(string(get), "running") || !strings.Contains(string(get), "(pid "+strings.TrimSuffix(filepath.Base(sock), ".sock")+")") {
		t.Errorf("ctl get on the detached job: %v\n%s", err, get)
	}
	if set, err := exec.Command(bin, "ctl", "--control", sock, "set", "parallelism", "3").CombinedOutput(); err != nil {
		t.Errorf("ctl set on the detached job: %v\n%s", err, set)
	}
	if !waitFor(20*time.Second, func() bool { _, err := os.Stat(sock); return os.IsNotExist(err) }) {
		t.Fatal("the detached job did not end")
	}
	if rows := readRows(t, out); len(rows) != 400 {
		t.Errorf("%d rows, want 400", len(rows))
	}
	log, _ := os.ReadFile(out + ".log")
	if !strings.Contains(string(log), "done in") {
		t.Errorf("the log lacks the summary:\n%s", log)
	}
	// A change line in the log says when, as the progress lines do.
	if !regexp.MustCompile(`(?m)^\d+:\d\d  parallelism 2 → 3 \(ctl\)$`).Match(log) {
		t.Errorf("the log has no timed change line for the ctl set:\n%s", log)
	}
}
