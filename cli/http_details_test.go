package cli_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// TestRunHonoursASpentQuota: an answer with X-RateLimit-Remaining: 0 holds the next call until
// the reset it names.
func TestRunHonoursASpentQuota(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		w.Header().Set("X-RateLimit-Limit", "100")
		if a.path == "/4" {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", "1")
		} else {
			w.Header().Set("X-RateLimit-Remaining", "50")
		}
		okJSON(w, r)
	})
	res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 10), "--out", outPath(t), "--headless",
		"--url", srv.URL + "/{item}", "--parallelism", "1"}})
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	seen := srv.seen()
	var spentAt, next time.Time
	for i, a := range seen {
		if a.path == "/4" && i+1 < len(seen) {
			spentAt, next = a.at, seen[i+1].at
		}
	}
	if spentAt.IsZero() {
		t.Fatalf("arrivals %v", seen)
	}
	if gap := next.Sub(spentAt); gap < 950*time.Millisecond {
		t.Fatalf("the call after a spent quota came %v later; the reset was 1 s", gap)
	}
}

// TestRunThroughAProxy: HTTP_PROXY sends the calls through a proxy (a loopback one, standing in
// for the target too), and NO_PROXY exempts a host from it.
func TestRunThroughAProxy(t *testing.T) {
	bin := bintest.Build(t)
	var mu sync.Mutex
	var asked []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.String()) // a proxy is asked for the absolute URL
		mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"via": "proxy"})
	}))
	defer proxy.Close()
	in := writeItems(t, 5)
	for _, tc := range []struct {
		noProxy string
		wantOK  bool
	}{{"", true}, {"example.invalid", false}} {
		out := outPath(t)
		cmd := exec.Command(bin, "run", "http", "--input", in, "--out", out, "--headless", "--retries", "0", "--timeout", "3s",
			"--url", "http://example.invalid/users/{item}")
		cmd.Env = append(os.Environ(), "HTTP_PROXY="+proxy.URL, "NO_PROXY="+tc.noProxy, "http_proxy=", "no_proxy=")
		b, _ := cmd.CombinedOutput()
		rows := readRows(t, out)
		if len(rows) != 5 {
			t.Fatalf("NO_PROXY=%q: %d rows\n%s", tc.noProxy, len(rows), b)
		}
		for _, r := range rows {
			if ok := r.OK != nil && *r.OK; ok != tc.wantOK {
				t.Fatalf("NO_PROXY=%q: row %+v\n%s", tc.noProxy, r, b)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 5 || !strings.HasPrefix(asked[0], "http://example.invalid/users/") {
		t.Fatalf("the proxy was asked %q: want the 5 calls of the first run, and none of the second", asked)
	}
}

// TestRunOKStatus: a backfill where a missing user is a normal answer: 404 counts as ok.
func TestRunOKStatus(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if strings.HasSuffix(a.path, "3") {
			w.WriteHeader(404)
			return
		}
		okJSON(w, r)
	})
	in := writeItems(t, 20)
	for _, tc := range []struct {
		okStatus string
		code     int
	}{{"200-299,404", 0}, {"", 1}} {
		out := outPath(t)
		args := []string{"run", "http", "--input", in, "--out", out, "--headless", "--url", srv.URL + "/{item}"}
		if tc.okStatus != "" {
			args = append(args, "--ok-status", tc.okStatus)
		}
		res := run(t, invocation{args: args})
		failed := 0
		for _, r := range readRows(t, out) {
			if r.OK == nil || !*r.OK {
				failed++
				if r.Status != 404 {
					t.Fatalf("row %+v", r)
				}
			}
		}
		if res.code != tc.code || (tc.code == 0) != (failed == 0) || (tc.code == 1 && failed != 2) {
			t.Fatalf("--ok-status %q: exit %d, %d failed rows", tc.okStatus, res.code, failed)
		}
	}
}
