package cli_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// TestClusterSummaryJSON: --summary-json works for a shared job on its coordinator, the host
// that collects the rows: items, by_status, by_class and failures are the job's rows as the
// results file has them, and the document says which figures are the host's own. A host that
// joins is told why it cannot write one.
func TestClusterSummaryJSON(t *testing.T) {
	url := redisURL(t)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/")); n%10 == 3 {
			http.Error(w, "no such thing", http.StatusNotFound) // 4 of 40 fail, at once
			return
		}
		okJSON(w, r)
	})
	job := jobName("test-sum")
	out := outPath(t)
	sumPath := filepath.Join(t.TempDir(), "s.json")
	res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 40), "--out", out, "--url", srv.URL + "/{item}",
		"--parallelism", "4", "--headless", "--redis", url, "--job", job, "--summary-json", sumPath}})
	if res.code != 1 {
		t.Fatalf("exit %d, want 1 (4 items failed); stderr:\n%s", res.code, res.stderr)
	}
	b, err := os.ReadFile(sumPath)
	if err != nil {
		t.Fatalf("no --summary-json: %v; stderr:\n%s", err, res.stderr)
	}
	var doc struct {
		summaryDoc        // what every summary holds; the job's part below
		Results    string `json:"results"`
		Job        struct {
			Name      string   `json:"name"`
			HostScope []string `json:"host_scope"`
			Rows      int64    `json:"rows"`
			Hosts     []struct {
				Host  string `json:"host"`
				Calls int64  `json:"calls"`
			} `json:"hosts"`
		} `json:"job"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	rows := readRows(t, out)
	var ok, failed int64
	for _, r := range rows {
		if *r.OK {
			ok++
		} else {
			failed++
		}
	}
	if doc.State != "done" || doc.Items.Total != 40 || doc.Items.OK != ok || doc.Items.Failed != failed || ok != 36 || failed != 4 {
		t.Errorf("state %q, items %+v; the results file has %d ok, %d failed of 40:\n%s", doc.State, doc.Items, ok, failed, b)
	}
	if doc.ByStatus["200"] != 36 || doc.ByStatus["404"] != 4 || doc.ByClass["4xx"] != 4 {
		t.Errorf("by_status %v, by_class %v; want 36 × 200 and 4 × 404 (4xx)", doc.ByStatus, doc.ByClass)
	}
	if len(doc.Failures) != 1 || doc.Failures[0].Count != 4 || doc.Failures[0].Status != 404 || doc.Failures[0].Sample == "" {
		t.Errorf("failures %+v, want one group of 4 × 404 with a sample", doc.Failures)
	}
	if doc.Job.Name != job || doc.Job.Rows != 40 || len(doc.Job.HostScope) == 0 || len(doc.Job.Hosts) != 1 || doc.Results != out {
		t.Errorf("job %+v, results %q; want the job's name, 40 rows, the host-scoped fields named, one host", doc.Job, doc.Results)
	}

	var calls int64
	for _, h := range doc.Job.Hosts {
		calls += h.Calls
	}
	if calls < 40 {
		t.Errorf("the hosts made %d calls in all, want at least one per item (40)", calls)
	}
}

// TestClusterSummaryCountsEveryHostsFailures: the coordinator's text summary breaks down the
// job's failed rows, every host's, as the results file holds them; not only those of the calls
// the coordinator made itself.
func TestClusterSummaryCountsEveryHostsFailures(t *testing.T) {
	url := redisURL(t)
	bin := bintest.Build(t)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		time.Sleep(50 * time.Millisecond)
		if n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/")); n%10 == 3 {
			http.Error(w, "no such thing", http.StatusNotFound) // 30 of 300 fail, at once
			return
		}
		okJSON(w, r)
	})
	hosts, out := startSharedJob(t, bin, url, "test-sumfail", 300, 4, 1, srv.URL)
	coord, joined := hosts[0], hosts[1]
	for _, h := range hosts {
		select {
		case err := <-h.done: // the coordinator exits 1: items failed
			t.Logf("host exited: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatalf("the job did not end:\n%s", h.stderr())
		}
	}
	failed := 0
	for _, r := range readRows(t, out) {
		if !*r.OK {
			failed++
		}
	}
	if failed != 30 {
		t.Fatalf("%d failed rows in the file, want 30\n%s", failed, coord.stderr())
	}
	if calls := hostCalls(t, joined, joined.stdout()); calls == 0 {
		t.Fatalf("the joined host made no call: the test shows nothing\n%s", joined.stderr())
	}
	if want := "  30 × 404 (4xx)"; !strings.Contains(coord.stdout(), want) {
		t.Errorf("the coordinator's summary lacks %q, the job's failed rows:\n%s", want, coord.stdout())
	}
}
