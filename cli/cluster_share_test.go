package cli_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// TestClusterCapSharedByHosts: a coordinator and two hosts that join a moment later, under a
// global cap of 6 that binds (600 items of 100 ms): each host has its fair share of the cap,
// so every host makes calls — at least 15% of them each — and the server never sees more
// than 6 in flight. Without the shares the coordinator's waiting workers took every freed
// lease and the joined hosts made no call at all.
func TestClusterCapSharedByHosts(t *testing.T) {
	url := redisURL(t)
	bin := bintest.Build(t)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		time.Sleep(100 * time.Millisecond)
		okJSON(w, r)
	})
	const items = 600
	hosts, out := startSharedJob(t, bin, url, "test-share", items, 6, 2, srv.URL)
	coord := hosts[0]
	for _, h := range hosts {
		select {
		case err := <-h.done:
			if err != nil {
				t.Fatalf("a host: %v\n%s", err, h.stderr())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("the job did not end:\n%s", h.stderr())
		}
	}
	if rows := readRows(t, out); len(rows) != items || len(rowsByItem(t, rows)) != items {
		t.Fatalf("%d rows: want %d, one per item\n%s", len(rows), items, coord.stderr())
	}
	maxIn := 0
	for _, a := range srv.seen() {
		maxIn = max(maxIn, a.inflight)
	}
	if maxIn > 6 {
		t.Errorf("the server saw %d calls in flight: the global cap is 6", maxIn)
	}
	calls := make([]int, len(hosts))
	total := 0
	for i, h := range hosts {
		calls[i] = hostCalls(t, h, h.stdout())
		total += calls[i]
	}
	if total < items {
		t.Fatalf("calls per host %v: %d in all, want at least one per item", calls, total)
	}
	shares := make([]string, len(hosts))
	for i, n := range calls {
		share := float64(n) / float64(total)
		shares[i] = fmt.Sprintf("%.0f%%", 100*share)
		if share < 0.15 {
			t.Errorf("host %d made %d of %d calls (%.0f%%): want every host its share of the cap, at least 15%%", i, n, total, 100*share)
		}
	}
	t.Logf("calls per host (coordinator, join, join): %v = %v of %d; at most %d in flight", calls, shares, total, maxIn)
}

var callsLine = regexp.MustCompile(`(?m)^(?:the job [\d.]+ items/s · this host )?([\d,]+) calls, `) // a coordinator says which figures are its own

// hostCalls reads the calls a host made from its end summary on stdout ("1,234 calls, 0
// retries, …").
func hostCalls(t *testing.T, h *host, stdout string) int {
	t.Helper()
	m := callsLine.FindAllStringSubmatch(stdout, -1)
	if len(m) == 0 {
		t.Fatalf("no end summary with the host's calls:\n%s\n%s", stdout, h.stderr())
		return 0
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[len(m)-1][1], ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startSharedJob starts the coordinator of a job of n items against the server at srvURL
// under a global cap of parallelism, waits until it coordinates, and starts joins hosts that
// join it. It returns the hosts, the coordinator first, and the results file.
func startSharedJob(t *testing.T, bin, redisURL, name string, n, parallelism, joins int, srvURL string) ([]*host, string) {
	t.Helper()
	in, out := writeItems(t, n), outPath(t)
	job := jobName(name)
	coord := startHost(t, bin, "run", "http", "--input", in, "--out", out, "--url", srvURL+"/{item}", "--headless",
		"--parallelism", strconv.Itoa(parallelism), "--timeout", "5s", "--redis", redisURL, "--job", job)
	coord.waitFor(t, "coordinator", 10*time.Second)
	hosts := []*host{coord}
	for range joins {
		hosts = append(hosts, startHost(t, bin, "join", "--redis", redisURL, "--job", job, "--headless"))
	}
	return hosts, out
}
