package cli_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// TestClusterRunPathOutlets: a job with --redis takes the run path of a job on one host, so its
// outlets work the same: --metrics counts every call the rows count, --summary-json and
// --record write their files, and the summary is on stdout.
func TestClusterRunPathOutlets(t *testing.T) {
	url := redisURL(t)
	const n = 60
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if itemID(a.path)%10 == 1 && a.nth == 1 {
			tooMany(w, "")
			return
		}
		okJSON(w, r)
	})
	dir := t.TempDir()
	out, sumPath, recPath := outPath(t), filepath.Join(dir, "s.json"), filepath.Join(dir, "run.rec")
	stderr := &syncBuffer{}
	job := jobName("outlets")
	r := run(t, invocation{stderr: stderr, args: []string{"run", "http", "--input", writeItems(t, n), "--out", out,
		"--url", srv.URL + "/items/{item}", "--parallelism", "4", "--max-backoff", "5ms", "--headless",
		"--redis", url, "--job", job, "--metrics", "127.0.0.1:0", "--summary-json", sumPath, "--record", recPath}})
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	m := metricsLine.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no metrics address on stderr:\n%s", stderr.String())
	}
	rows := readRows(t, out)
	if len(rows) != n {
		t.Fatalf("%d rows, want %d", len(rows), n)
	}
	var attempts float64
	for _, row := range rows {
		attempts += float64(*row.Attempts)
	}
	metrics, _ := scrape(t, m[1]) // the server outlives the run: the final figures
	var calls float64
	for _, mt := range metrics["throttle_calls_total"].GetMetric() {
		calls += mt.GetCounter().GetValue()
	}
	if calls != attempts || calls != float64(srv.count()) || attempts <= n {
		t.Fatalf("throttle_calls_total %v, attempts in rows %v, calls at the server %d: want all three equal (and retries among them)", calls, attempts, srv.count())
	}
	var sum struct {
		Items struct{ Total, OK int64 }
	}
	b, err := os.ReadFile(sumPath)
	if err != nil {
		t.Fatalf("--summary-json with --job: %v", err)
	}
	if err := json.Unmarshal(b, &sum); err != nil || sum.Items.OK != n {
		t.Fatalf("the summary JSON %s (%v): want %d items ok", b, err, n)
	}
	if st, err := os.Stat(recPath); err != nil || st.Size() == 0 {
		t.Fatalf("--record with --job wrote nothing: %v", err)
	}
	if !strings.Contains(r.stdout, "ok") {
		t.Fatalf("no summary on stdout: %q", r.stdout)
	}
}

// TestClusterAutoReachesEveryHost: --auto on the coordinator of a job across hosts tunes the
// job's settings, and a host that joined follows them (its change lines name the tuner).
func TestClusterAutoReachesEveryHost(t *testing.T) {
	url := redisURL(t)
	bin := bintest.Build(t)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		time.Sleep(20 * time.Millisecond)
		okJSON(w, r)
	})
	out := outPath(t)
	job := jobName("auto")
	coord := startHost(t, bin, "run", "http", "--input", writeItems(t, 3000), "--out", out, "--url", srv.URL+"/items/{item}",
		"--parallelism", "2", "--auto", "--headless", "--redis", url, "--job", job)
	coord.waitFor(t, "coordinator", 20*time.Second)
	joined := startHost(t, bin, "join", "--redis", url, "--job", job, "--headless")
	if !waitFor(30*time.Second, func() bool { return strings.Contains(joined.stderr(), "/auto)") }) {
		t.Fatalf("the joined host heard no change of the tuner's within 30 s:\n%s\ncoordinator:\n%s", joined.stderr(), coord.stderr())
	}
	if !strings.Contains(joined.stderr(), "parallelism") {
		t.Fatalf("the joined host heard a change of the tuner's without parallelism:\n%s", joined.stderr())
	}
	for _, h := range []*host{coord, joined} {
		_ = h.cmd.Process.Signal(os.Interrupt)
	}
	for _, h := range []*host{coord, joined} {
		select {
		case err := <-h.done:
			if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 130 {
				t.Errorf("a host interrupted: %v, want exit 130\n%s", err, h.stderr())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("a host did not end after SIGINT:\n%s", h.stderr())
		}
	}
}
