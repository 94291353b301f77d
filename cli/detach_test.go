package cli_test

import (
	"net/http"
	"os"
	"os/exec"
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
	get, err := exec.Command(bin, "ctl", "--control", sock, "get").CombinedOutput()
	if err != nil || !strings.Contains(string(get), "running") {
		t.Errorf("ctl get on the detached job: %v\n%s", err, get)
	}
	if !waitFor(20*time.Second, func() bool { _, err := os.Stat(sock); return os.IsNotExist(err) }) {
		t.Fatal("the detached job did not end")
	}
	if rows := readRows(t, out); len(rows) != 400 {
		t.Errorf("%d rows, want 400", len(rows))
	}
	if log, _ := os.ReadFile(out + ".log"); !strings.Contains(string(log), "done in") {
		t.Errorf("the log lacks the summary:\n%s", log)
	}
}
