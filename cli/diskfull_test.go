package cli_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestDiskFull: when the results cannot be written (/dev/full answers ENOSPC), dispatch stops
// at once, the run exits non-zero with a clear message, and nothing is claimed done.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	in := writeItems(t, 2000)
	r := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", "/dev/full", "--url", srv.URL + "/{item}", "--parallelism", "4"}})
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stdout, "could not be written") {
		t.Errorf("stderr does not say why the results could not be written, or the summary that they were not:\n%s\nstdout:\n%s", r.stderr, r.stdout)
	}
	if !strings.Contains(r.stdout, "0 items, 0 ok, 0 failed") {
		t.Errorf("the summary claims rows that were never written:\n%s", r.stdout)
	}
	// Calls already made when the first write failed may be many on a busy machine (the
	// writer's first batch waits for it to be scheduled), but dispatch stops there.
	if srv.count() > 1000 {
		t.Errorf("server saw %d of 2000 calls; dispatch must stop at the first failed write", srv.count())
	}
}
