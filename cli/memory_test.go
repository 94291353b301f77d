package cli_test

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// `ctl set parallelism 100000000` is refused with the ceiling and its reason (it once spawned a
// hundred million workers and froze the socket); the socket still answers, and `ctl stop`
// still ends the run.
func TestCtlParallelismAboveTheCeilingIsRefused(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		time.Sleep(20 * time.Millisecond)
		okJSON(w, r)
	})
	c := startControlled(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 5000), "--out", outPath(t),
		"--url", srv.URL + "/{item}", "--parallelism", "2"}}, func() bool { return srv.count() > 0 })
	ctl, done := c.ctl, c.done
	ceiling, _ := engine.DefaultMaxParallelism()
	r := ctl("set", "parallelism", "100000000")
	if r.code != 2 || !strings.Contains(r.stderr, "exceeds max parallelism") || !strings.Contains(r.stderr, "open-file") {
		t.Errorf("ctl set parallelism 100000000: exit %d; want 2 and the ceiling with its reason\n%s", r.code, r.stderr)
	}
	r = ctl("get", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"parallelism":2`) || !strings.Contains(r.stdout, `"max_parallelism":`) {
		t.Errorf("ctl get after the refusal: exit %d; want parallelism still 2 and the ceiling shown\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, `"max_parallelism":`+strconv.Itoa(ceiling)) {
		t.Errorf("ctl get does not show the default ceiling %d:\n%s", ceiling, r.stdout)
	}
	at := time.Now()
	if r := ctl("stop"); r.code != 0 {
		t.Fatalf("ctl stop: exit %d\n%s", r.code, r.stderr)
	}
	select {
	case res := <-done:
		if res.code != 130 {
			t.Errorf("run exit %d after ctl stop, want 130", res.code)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the run did not end within 5 s of ctl stop (%v)", time.Since(at))
	}
}

// --parallelism past the default ceiling is a usage error with the reason before anything is
// opened; 1e8 is not a number of workers at all; an explicit --max-parallelism wins, with a
// warning when it is above the default.
func TestParallelismCeilingOnTheCommandLine(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	out := outPath(t)
	base := []string{"run", "http", "--input", writeItems(t, 3), "--out", out, "--url", srv.URL + "/{item}", "--headless"}
	r := run(t, invocation{args: append(base, "--parallelism", "100000000")})
	if r.code != 2 || !strings.Contains(r.stderr, "exceeds max parallelism") || !strings.Contains(r.stderr, "--max-parallelism sets another") {
		t.Errorf("--parallelism 100000000: exit %d; want 2 and the reason\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused --parallelism left a results file: %v", err)
	}
	if r := run(t, invocation{args: append(base, "--parallelism", "1e8")}); r.code != 2 || !strings.Contains(r.stderr, "--parallelism") {
		t.Errorf("--parallelism 1e8: exit %d; want 2 naming the flag\n%s", r.code, r.stderr)
	}
	ceiling, _ := engine.DefaultMaxParallelism()
	above := strconv.Itoa(ceiling + 1)
	r = run(t, invocation{args: append(base, "--parallelism", "2", "--max-parallelism", above)})
	if r.code != 0 || !strings.Contains(r.stderr, "warning: --max-parallelism "+above+" is above the default ceiling") {
		t.Errorf("--max-parallelism %s: exit %d; want the run, with a warning\n%s", above, r.code, r.stderr)
	}
	if r := run(t, invocation{args: append(base, "--parallelism", "2")}); r.code != 0 || !strings.Contains(r.stderr, "max parallelism "+strconv.Itoa(ceiling)) {
		t.Errorf("the start line does not show the default ceiling %d: exit %d\n%s", ceiling, r.code, r.stderr)
	}
}

// --save-dir caps each saved body at 1 GiB unless --max-file says otherwise, and says so at
// start: an answer that never ends (a gzip bomb) no longer fills the disk before --timeout.
func TestSaveDirMaxFileDefault(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		w.Header().Set("Content-Length", "2147483648") // 2 GiB announced; a few bytes sent
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("{}"))
	})
	dir := t.TempDir()
	out := outPath(t)
	r := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 1), "--out", out, "--url", srv.URL + "/{item}",
		"--save-dir", dir, "--retries", "0", "--headless"}})
	if want := "saving bodies to " + dir + " (each at most 1GiB: the default; --max-file sets another)"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
	}
	rows := readRows(t, out)
	if len(rows) != 1 || rows[0].OK == nil || *rows[0].OK || !strings.Contains(rows[0].Error, "(--max-file) of 1073741824 bytes") {
		t.Errorf("a 2 GiB body under the default cap: rows %+v; want one failed row naming the 1 GiB cap", rows)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the refused body left %d entries in --save-dir", len(entries))
	}
	r = run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 1), "--out", outPath(t), "--url", srv.URL + "/{item}",
		"--save-dir", t.TempDir(), "--max-file", "3GiB", "--retries", "0", "--headless"}})
	if !strings.Contains(r.stderr, "(each at most 3GiB: --max-file)") {
		t.Errorf("an explicit --max-file is not the one announced:\n%s", r.stderr)
	}
	r = run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 1), "--out", outPath(t), "--url", srv.URL + "/{item}", "--max-file", "1GiB"}})
	if r.code != 2 || !strings.Contains(r.stderr, "go with --save-dir") {
		t.Errorf("--max-file without --save-dir: exit %d; want 2\n%s", r.code, r.stderr)
	}
}
