package cli_test

// Tests of --metrics through cli.Main: a run scraped while it goes on and after it ended,
// parsed as Prometheus parses it, its counters checked against the result rows and the calls
// the server saw; promtool's verdict on the exposition; and the addresses that are refused.

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches url and parses it with the Prometheus text parser; it returns the body too.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("scrape: Content-Type %q, want the Prometheus text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	m, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape: not the Prometheus text format: %v\n%s", err, body)
	}
	return m, body
}

// sample returns the value of the one series of name whose labels include want (for a
// histogram its count), failing the test when there is not exactly one.
func sample(t *testing.T, m map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	var v float64
	n := 0
	for _, mt := range m[name].GetMetric() {
		labels := map[string]string{}
		for _, lp := range mt.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			match = match && labels[want[i]] == want[i+1]
		}
		if !match {
			continue
		}
		n++
		switch {
		case mt.Counter != nil:
			v = mt.GetCounter().GetValue()
		case mt.Gauge != nil:
			v = mt.GetGauge().GetValue()
		case mt.Histogram != nil:
			v = float64(mt.GetHistogram().GetSampleCount())
		case mt.Untyped != nil:
			v = mt.GetUntyped().GetValue()
		}
	}
	if n != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, n)
	}
	return v
}

var metricsLine = regexp.MustCompile(`metrics on (http://\S+/metrics)`)

// TestMetricsAgreeWithRows runs 40 items at parallelism 4 against a server that answers 429
// once to items 1, 11, …, 404 to items 2, 12, …, 500 always to items 3, 13, … and 200 to
// the rest, holding item 0 until the test has scraped once. The scrape during the run shows
// the call in flight and the knobs; the scrape after cli.Main returned agrees with the rows
// (ok and failed items, calls = attempts, retries = attempts beyond the first) and with the
// server (429s, 5xx answers); promlint and promtool accept the exposition.
func TestMetricsAgreeWithRows(t *testing.T) {
	t.Parallel()
	const n = 40
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		switch id := itemID(a.path); {
		case id == 0:
			<-hold
			okJSON(w, r)
		case id%10 == 1 && a.nth == 1:
			tooMany(w, "")
		case id%10 == 2:
			http.NotFound(w, r)
		case id%10 == 3:
			http.Error(w, "broken", http.StatusInternalServerError)
		default:
			okJSON(w, r)
		}
	})
	out := outPath(t)
	stderr := &syncBuffer{}
	done := make(chan result, 1)
	go func() {
		done <- run(t, invocation{stderr: stderr, args: []string{"run", "http", "--input", writeItems(t, n), "--out", out,
			"--url", srv.URL + "/items/{item}", "--parallelism", "4", "--rate", "1000", "--burst", "10",
			"--retries", "2", "--max-backoff", "5ms", "--metrics", "127.0.0.1:0",
			// The settings as given: the 429s would make the congestion response lower the
			// parallelism to the one slot item 0 holds until the test has scraped.
			"--adapt=false"}})
	}()

	var url string
	if !waitFor(5*time.Second, func() bool {
		if m := metricsLine.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		}
		return url != "" && srv.count() >= n/2
	}) {
		release()
		t.Fatalf("no metrics address on stderr, or the run did not get going:\n%s", stderr.String())
	}

	m, _ := scrape(t, url)
	if len(m["throttle_inflight"].GetMetric()) != 1 {
		t.Fatalf("during the run: no throttle_inflight in the scrape")
	}
	job := ""
	for _, lp := range m["throttle_inflight"].GetMetric()[0].GetLabel() {
		if lp.GetName() == "throttle_job" {
			job = lp.GetValue()
		}
	}
	if !strings.HasPrefix(job, "http · ") {
		t.Errorf("throttle_job = %q, want the run's title, http · <input>", job)
	}
	if v := sample(t, m, "throttle_inflight"); v < 1 || v > 4 {
		t.Errorf("during the run throttle_inflight = %v, want 1 to 4 (item 0 is held)", v)
	}
	if v := sample(t, m, "throttle_items_remaining"); v < 1 || v > n {
		t.Errorf("during the run throttle_items_remaining = %v, want 1 to %d", v, n)
	}
	for _, c := range []struct {
		name string
		want float64
	}{{"throttle_parallelism_limit", 4}, {"throttle_rate_limit_per_second", 1000}, {"throttle_pace_seconds", 0}} {
		if v := sample(t, m, c.name); v != c.want {
			t.Errorf("during the run %s = %v, want %v", c.name, v, c.want)
		}
	}
	if v := sample(t, m, "throttle_run_state", "state", "running"); v != 1 {
		t.Errorf(`during the run throttle_run_state{state="running"} = %v, want 1`, v)
	}

	release()
	var res result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the run did not end")
	}
	if res.code != 1 { // items 2, 3, 12, … fail
		t.Fatalf("exit %d, want 1\n%s", res.code, res.stderr)
	}

	m, body := scrape(t, url) // the server outlives the run: the final figures
	rows := readRows(t, out)
	var ok, failed, attempts, retries float64
	for _, r := range rows {
		if *r.OK {
			ok++
		} else {
			failed++
		}
		attempts += float64(*r.Attempts)
		retries += float64(*r.Attempts - 1)
	}
	var calls float64
	for _, mt := range m["throttle_calls_total"].GetMetric() {
		calls += mt.GetCounter().GetValue()
	}
	var status429, status5xx float64
	for _, a := range srv.seen() {
		switch id := itemID(a.path); {
		case id%10 == 1 && a.nth == 1:
			status429++
		case id%10 == 3:
			status5xx++
		}
	}
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"rows", float64(len(rows)), n},
		{`throttle_items_done_total{result="ok"} vs ok rows`, sample(t, m, "throttle_items_done_total", "result", "ok"), ok},
		{`throttle_items_done_total{result="failed"} vs failed rows`, sample(t, m, "throttle_items_done_total", "result", "failed"), failed},
		{"throttle_calls_total vs attempts in rows", calls, attempts},
		{"throttle_calls_total vs calls at the server", calls, float64(srv.count())},
		{"throttle_call_duration_seconds count vs attempts", sample(t, m, "throttle_call_duration_seconds"), attempts},
		{"throttle_retries_total vs attempts beyond the first", sample(t, m, "throttle_retries_total"), retries},
		{`throttle_calls_total{outcome="429"} vs 429s sent`, sample(t, m, "throttle_calls_total", "outcome", "429", "status_class", "4xx"), status429},
		{`throttle_calls_total{outcome="5xx"} vs 500s sent`, sample(t, m, "throttle_calls_total", "outcome", "5xx", "status_class", "5xx"), status5xx},
		{"throttle_items_remaining", sample(t, m, "throttle_items_remaining"), 0},
		{"throttle_inflight", sample(t, m, "throttle_inflight"), 0},
		{`throttle_run_state{state="done"}`, sample(t, m, "throttle_run_state", "state", "done"), 1},
		{"throttle_metrics_events_dropped_total", sample(t, m, "throttle_metrics_events_dropped_total"), 0},
	} {
		if c.got != c.want {
			t.Errorf("at the end: %s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if status429 != 4 || status5xx != 12 {
		t.Errorf("the server sent %v 429s and %v 500s, want 4 and 12 (the script did not run as planned)", status429, status5xx)
	}
	lint(t, body)
}

// promtoolInCI says whether a missing promtool fails the test under CI=true. It does: .ci/run
// installs Debian's prometheus package (--no-install-recommends: about 7 s and 300 MB), the
// only one with promtool; promlint also checks every exposition in process.
const promtoolInCI = true

// lint checks an exposition with promlint, in process, and with `promtool check metrics`
// when promtool is installed (Debian: apt-get install --no-install-recommends prometheus).
func lint(t *testing.T, exposition []byte) {
	t.Helper()
	problems, err := promlint.New(bytes.NewReader(exposition)).Lint()
	if err != nil {
		t.Errorf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	path, err := exec.LookPath("promtool")
	if err != nil {
		if promtoolInCI && os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed, and CI=true needs it: apt-get install -y --no-install-recommends prometheus")
		}
		t.Log("promtool is not installed: promtool check metrics skipped (promlint checked the exposition in process)")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestMetricsAddressRefused: --metrics with no host (it would listen on every interface),
// with no port, or on a port in use is a usage error, exit 2, before any call; the message
// suggests the explicit addresses.
func TestMetricsAddressRefused(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	for _, c := range []struct {
		addr string
		want []string
	}{
		{":9464", []string{"127.0.0.1:9464", "0.0.0.0:9464"}},
		{"9464", []string{"HOST:PORT", "127.0.0.1:9464"}},
		{"127.0.0.1:", []string{"no port", "127.0.0.1:9464"}},
		{busy.Addr().String(), []string{"address already in use"}},
	} {
		res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 3), "--out", outPath(t),
			"--url", srv.URL + "/{item}", "--metrics", c.addr}})
		if res.code != 2 {
			t.Errorf("--metrics %q: exit %d, want 2\n%s", c.addr, res.code, res.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(res.stderr, w) {
				t.Errorf("--metrics %q: stderr lacks %q:\n%s", c.addr, w, res.stderr)
			}
		}
	}
	if n := srv.count(); n != 0 {
		t.Errorf("the server saw %d calls from runs refused for their --metrics", n)
	}
}
