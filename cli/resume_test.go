package cli_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

func isOK(r row) bool { return r.OK != nil && *r.OK }

// lastRows returns each item's last row, and how many rows each item has.
func lastRows(t *testing.T, path string) (map[string]row, map[string]int) {
	t.Helper()
	last, n := map[string]row{}, map[string]int{}
	for _, r := range readRows(t, path) {
		last[r.item()] = r
		n[r.item()]++
	}
	return last, n
}

// TestResumeMatchesByContent: --resume skips items with an ok row by what they say, not by
// their line number, so an edited input (reordered, with new items) runs exactly the items
// not yet ok; a failed row is superseded by the new run's row.
func TestResumeMatchesByContent(t *testing.T) {
	t.Parallel()
	fail := map[string]bool{"b": true}
	var mu sync.Mutex
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		mu.Lock()
		f := fail[strings.TrimPrefix(a.path, "/")]
		mu.Unlock()
		if f {
			w.WriteHeader(404)
			return
		}
		okJSON(w, r)
	})
	out := outPath(t)
	args := func(in string) []string {
		return []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}", "--resume"}
	}
	if r := run(t, invocation{args: args(writeFile(t, "a.txt", "a\nb\nc\n"))}); r.code != 1 {
		t.Fatalf("first run exit %d, want 1 (b fails):\n%s", r.code, r.stderr)
	}
	mu.Lock()
	fail["b"] = false
	mu.Unlock()
	before := srv.count()
	r := run(t, invocation{args: args(writeFile(t, "b.txt", "d\nc\nb\na\n"))})
	if r.code != 0 {
		t.Fatalf("resumed run exit %d, want 0:\n%s", r.code, r.stderr)
	}
	var called []string
	for _, a := range srv.seen()[before:] {
		called = append(called, strings.TrimPrefix(a.path, "/"))
	}
	if strings.Join(called, ",") != "d,b" && strings.Join(called, ",") != "b,d" {
		t.Errorf("resumed run called %q, want only b (failed before) and d (new)", called)
	}
	if !strings.Contains(r.stderr, "2 items already ok") {
		t.Errorf("resume does not say what it skipped:\n%s", r.stderr)
	}
	last, _ := lastRows(t, out)
	for _, it := range []string{"a", "b", "c", "d"} {
		if !isOK(last[it]) {
			t.Errorf("item %q: last row %+v, want ok", it, last[it])
		}
	}
}

// TestResumeCutsATornLine: a half-written last line (a kill during a write) is cut, with a
// message, and the run appends whole rows after it.
func TestResumeCutsATornLine(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	out := outPath(t)
	in := writeFile(t, "in.txt", "x\ny\n")
	if r := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}"}}); r.code != 0 {
		t.Fatalf("first run exit %d:\n%s", r.code, r.stderr)
	}
	data, _ := os.ReadFile(out)
	first := strings.SplitAfter(string(data), "\n")[0]
	if err := os.WriteFile(out, []byte(first+`{"item":"y","ok":tr`), 0o644); err != nil { // y's row torn
		t.Fatal(err)
	}
	r := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}", "--resume"}})
	if r.code != 0 || !strings.Contains(r.stderr, "cut a torn last line") {
		t.Fatalf("resume exit %d, want 0 and a message about the torn line:\n%s", r.code, r.stderr)
	}
	last, n := lastRows(t, out) // readRows fails on any line that is not a whole row
	if len(last) != 2 || n["x"] != 1 || n["y"] != 1 || !isOK(last["y"]) {
		t.Errorf("after resume: rows per item %v, want x and y once each, y ok", n)
	}
}

// TestOutIsLocked: a second run on the same --out is refused while the first holds it.
func TestOutIsLocked(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { <-release; okJSON(w, r) })
	out := outPath(t)
	in := writeFile(t, "in.txt", "x\n")
	first := make(chan result)
	go func() {
		first <- run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}"}})
	}()
	if !waitFor(5*time.Second, func() bool { return srv.count() > 0 }) {
		t.Fatal("the first run never called")
	}
	second := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}"}})
	close(release)
	if second.code != 2 || !strings.Contains(second.stderr, "another throttle run is writing it") {
		t.Errorf("second run exit %d, want 2 and a clear message:\n%s", second.code, second.stderr)
	}
	if r := <-first; r.code != 0 {
		t.Errorf("first run exit %d", r.code)
	}
	if srv.count() != 1 {
		t.Errorf("server saw %d calls, want 1: the refused run must call nothing", srv.count())
	}
}

// TestOnlyFailedRetriesTheFailures: a results file as input with --only-failed runs the items
// whose last row failed, once each, keeping JSONL items as objects.
func TestOnlyFailedRetriesTheFailures(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	results := writeFile(t, "old.jsonl", strings.Join([]string{
		`{"item":"a","ok":false,"status":503,"attempts":4,"error":"503 after 4 attempts"}`,
		`{"item":"b","ok":true,"status":200,"attempts":1}`,
		`{"item":"c","ok":false,"status":404,"attempts":1,"error":"404 Not Found"}`,
		`{"item":"c","ok":true,"status":200,"attempts":1}`,
		`{"item":{"id":"d"},"ok":false,"status":429,"attempts":4,"error":"429"}`,
		`{"item":"a","ok":false,"status":503,"attempts":4,"error":"503 after 4 attempts"}`,
	}, "\n")+"\n")
	out := outPath(t)
	r := run(t, invocation{args: []string{"run", "http", "--input", results, "--only-failed", "--out", out, "--url", srv.URL + "/{item}"}})
	if r.code != 0 {
		t.Fatalf("--only-failed exit %d:\n%s", r.code, r.stderr)
	}
	var called []string
	for _, a := range srv.seen() {
		called = append(called, strings.TrimPrefix(a.path, "/"))
	}
	got := strings.Join(called, ",")
	if len(called) != 2 || !strings.Contains(got, "a") || !strings.Contains(got, `{"id":"d"}`) {
		t.Errorf("--only-failed called %q, want a and the object {\"id\":\"d\"} once each", called)
	}
	for _, rw := range readRows(t, out) {
		if rw.item() == `{"id":"d"}` {
			var obj map[string]any
			if err := json.Unmarshal(rw.Item, &obj); err != nil {
				t.Errorf("the JSONL item came back as %s, want an object", rw.Item)
			}
		}
	}
}

// TestDedupe: duplicates run once per occurrence, or once with --dedupe.
func TestDedupe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flag  []string
		calls int
	}{{nil, 5}, {[]string{"--dedupe"}, 2}} {
		srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
		args := append([]string{"run", "http", "--input", writeFile(t, "d.txt", "x\ny\nx\nx\ny\n"), "--out", outPath(t), "--url", srv.URL + "/{item}"}, tc.flag...)
		if r := run(t, invocation{args: args}); r.code != 0 || srv.count() != tc.calls {
			t.Errorf("%v: exit %d, %d calls; want 0 and %d calls", tc.flag, r.code, srv.count(), tc.calls)
		}
	}
}

// TestCrashResume kills `throttle run` with SIGKILL at random moments, 20 times, resuming
// each time, then checks that every input item is in the output exactly once, ok.
func TestCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary 20+ times")
	}
	t.Parallel()
	bin := bintest.Build(t)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		time.Sleep(time.Duration(2+rand.IntN(6)) * time.Millisecond)
		okJSON(w, r)
	})
	const items = 3000
	in := writeItems(t, items)
	out := outPath(t)
	args := []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}", "--parallelism", "16", "--resume", "--headless"}
	for kill := 0; kill < 20; kill++ {
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(30+rand.IntN(120)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	cmd := exec.Command(bin, args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}
	last, n := lastRows(t, out)
	if len(last) != items {
		t.Fatalf("output holds %d distinct items, want %d", len(last), items)
	}
	var dup []string
	for it, c := range n {
		if c != 1 || !isOK(last[it]) {
			dup = append(dup, fmt.Sprintf("%s×%d ok=%v", it, c, isOK(last[it])))
		}
	}
	if len(dup) > 0 {
		t.Errorf("%d items not exactly once and ok, e.g. %v", len(dup), dup[:min(5, len(dup))])
	}
}
