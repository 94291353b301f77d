package cli_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// ownRedis starts a redis-server of the test's own on a free loopback port, without
// persistence, so that the test may kill it and start it again empty. It returns the URL
// and a function that kills the server (SIGKILL) and starts a new, empty one on the same port.
func ownRedis(t *testing.T) (url string, restartEmpty func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed, and CI must run this test")
		}
		t.Skip("redis-server is not installed: this test starts and kills a Redis of its own")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	var cmd *exec.Cmd
	start := func() {
		cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !waitFor(5*time.Second, func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
			}
			return err == nil
		}) {
			t.Fatal("redis-server did not listen within 5 s")
		}
	}
	start()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return fmt.Sprintf("redis://127.0.0.1:%d/0", port), func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		start()
	}
}

// TestClusterRedisRestartedEmpty: a Redis that comes back without the job's keys (it
// restarted without persistence) is recognised by its missing generation: every host says
// the job's state is gone and stops within 10 s, exit non-zero, and the coordinator's
// summary counts exactly the items of the job that have no row in its file.
func TestClusterRedisRestartedEmpty(t *testing.T) {
	url, restartEmpty := ownRedis(t)
	bin := bintest.Build(t)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) {
		time.Sleep(50 * time.Millisecond)
		okJSON(w, r)
	})
	const items = 3000
	in, out := writeItems(t, items), outPath(t)
	coord := startHost(t, bin, "run", "http", "--input", in, "--out", out, "--url", srv.URL+"/{item}", "--headless",
		"--parallelism", "8", "--timeout", "2s", "--redis", url, "--job", "gone")
	coord.waitFor(t, "coordinator", 10*time.Second)
	joined := startHost(t, bin, "join", "--redis", url, "--job", "gone", "--headless")
	joined.waitFor(t, "joined as", 10*time.Second)
	if !waitFor(10*time.Second, func() bool { return len(srv.seen()) >= 150 }) {
		t.Fatalf("the job made %d calls in 10 s", len(srv.seen()))
	}
	// Starting the coordinator again while the job runs is refused: it would reset it.
	again := startHost(t, bin, "run", "http", "--input", in, "--out", outPath(t), "--url", srv.URL+"/{item}", "--headless",
		"--parallelism", "8", "--redis", url, "--job", "gone")
	select {
	case err := <-again.done:
		if err == nil || !strings.Contains(again.stderr(), "job gone is running") || !strings.Contains(again.stderr(), "--reset") {
			t.Errorf("a second coordinator of a live job: %v, want a refusal that names --reset:\n%s", err, again.stderr())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a second coordinator of a live job still runs after 10 s:\n%s", again.stderr())
	}

	restartEmpty()
	restarted := time.Now()
	const gone = "redis no longer holds the job's state"
	for name, h := range map[string]*host{"coordinator": coord, "joined host": joined} {
		select {
		case err := <-h.done:
			took := time.Since(restarted)
			t.Logf("%s stopped %v after the restart", name, took.Round(time.Millisecond))
			if took > 10*time.Second {
				t.Errorf("%s stopped %v after the restart; want within 10 s", name, took)
			}
			if err == nil {
				t.Errorf("%s exited 0 with the job's state gone", name)
			}
			if !strings.Contains(h.stderr(), gone) {
				t.Errorf("%s did not say %q:\n%s", name, gone, h.stderr())
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s still runs 15 s after redis restarted empty:\n%s", name, h.stderr())
		}
	}

	rows := readRows(t, out)
	missing := items - len(rowsByItem(t, rows))
	if missing <= 0 {
		t.Fatalf("every item has its row; the restart came too late to test anything")
	}
	want := fmt.Sprintf("job gone: %s of its 3,000 items have no row", humanCount(missing))
	if !strings.Contains(coord.stderr(), want) {
		t.Errorf("the coordinator did not say %q:\n%s", want, coord.stderr())
	}
	// The summary on stdout counts the job's items, not the coordinator's share: those not
	// run, and those whose calls ended as it stopped but whose rows could not be written.
	count := func(re string) int {
		m := regexp.MustCompile(re).FindStringSubmatch(coord.stdout())
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
		return n
	}
	notRun, lost := count(`([0-9,]+) items were not run`), count(`([0-9,]+) finished items? could not be written`)
	if notRun+lost != missing {
		t.Errorf("the summary says %d items not run and %d rows not written, want %d in all (the job's items without a row)\n%s", notRun, lost, missing, coord.stdout())
	}

	// The coordinator's file and --resume finish the job: the items without a row run, once.
	before := len(srv.seen())
	resumed := startHost(t, bin, "run", "http", "--input", in, "--out", out, "--url", srv.URL+"/{item}", "--headless",
		"--parallelism", "8", "--timeout", "2s", "--redis", url, "--job", "gone", "--resume")
	select {
	case err := <-resumed.done:
		if err != nil {
			t.Fatalf("--resume: %v\n%s", err, resumed.stderr())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("--resume did not end in 60 s:\n%s", resumed.stderr())
	}
	rows = readRows(t, out)
	byItem := rowsByItem(t, rows)
	if len(rows) != items || len(byItem) != items {
		t.Errorf("after --resume: %d rows for %d distinct items, want %d, one each", len(rows), len(byItem), items)
	}
	for _, r := range rows {
		if r.OK == nil || !*r.OK {
			t.Fatalf("row %+v failed", r)
		}
	}
	if calls := len(srv.seen()) - before; calls != missing {
		t.Errorf("--resume made %d calls for the %d items without a row", calls, missing)
	}
}

// humanCount writes n with thousands separators, as the summary does.
func humanCount(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestClusterCoordinatorKilledThenResumed: the coordinator dies (SIGKILL) while a joined host
// goes on, and says that nobody collects its rows and how to finish the job. Starting it
// again is refused while the job's hosts run (it would reset the job); with --resume --reset
// it takes the job over from its results file: the old host stops (the job it knew is gone)
// and every item ends with exactly one row, ok.
func TestClusterCoordinatorKilledThenResumed(t *testing.T) {
	url := redisURL(t)
	bin := bintest.Build(t)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) {
		time.Sleep(50 * time.Millisecond)
		okJSON(w, r)
	})
	const items = 2000
	in, out := writeItems(t, items), outPath(t)
	job := jobName("killed")
	args := []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{item}", "--headless",
		"--parallelism", "16", "--host-parallelism", "8", "--timeout", "2s", "--redis", url, "--job", job}
	coord := startHost(t, bin, args...)
	coord.waitFor(t, "coordinator", 10*time.Second)
	joined := startHost(t, bin, "join", "--redis", url, "--job", job, "--headless")
	joined.waitFor(t, "joined as", 10*time.Second)
	if !waitFor(10*time.Second, func() bool { return len(srv.seen()) >= 300 }) {
		t.Fatalf("the job made %d calls in 10 s", len(srv.seen()))
	}
	if err := coord.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-coord.done; err == nil {
		t.Fatal("the coordinator exited 0 on SIGKILL")
	}
	// The joined host goes on, and says that nobody collects its rows and how to finish.
	joined.waitFor(t, "nobody collects the job's rows", 20*time.Second)
	if !strings.Contains(joined.stderr(), "--resume --reset") {
		t.Errorf("the joined host says nobody collects, but not how to finish the job:\n%s", joined.stderr())
	}

	again := startHost(t, bin, append(args, "--resume")...)
	select {
	case err := <-again.done:
		if err == nil || !strings.Contains(again.stderr(), "--reset") {
			t.Fatalf("--resume of a job whose hosts run: %v, want a refusal that names --reset:\n%s", err, again.stderr())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("--resume of a job whose hosts run still runs after 10 s:\n%s", again.stderr())
	}

	resumed := startHost(t, bin, append(args, "--resume", "--reset")...)
	select {
	case err := <-resumed.done:
		if err != nil {
			t.Fatalf("--resume --reset: %v\n%s", err, resumed.stderr())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("--resume --reset did not end in 90 s:\n%s", resumed.stderr())
	}
	select {
	case err := <-joined.done:
		if err == nil {
			t.Error("the old joined host exited 0 with its job gone")
		}
		// Taken over by --reset: the job was started anew (or, seen between the reset and the
		// new run's definition, its state was gone).
		if e := joined.stderr(); !strings.Contains(e, "the job was started anew") && !strings.Contains(e, "redis no longer holds the job's state") {
			t.Errorf("the old joined host ended without saying its job is gone:\n%s", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the old joined host still runs 10 s after the job was taken over:\n%s", joined.stderr())
	}
	rows := readRows(t, out)
	byItem := rowsByItem(t, rows)
	if len(rows) != items || len(byItem) != items {
		t.Errorf("%d rows for %d distinct items; want %d, one each", len(rows), len(byItem), items)
	}
	for _, r := range rows {
		if r.OK == nil || !*r.OK {
			t.Fatalf("row %+v failed", r)
		}
	}
}
