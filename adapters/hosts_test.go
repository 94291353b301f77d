package adapters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// politeHost is a loopback server that records when each call arrived and how many it served
// at once.
type politeHost struct {
	srv      *httptest.Server
	mu       sync.Mutex
	arrivals []time.Time
	busy     int
	maxBusy  int
	tooMany  int // answer 429 with Retry-After: 1 to this many first calls
}

func newPoliteHost(t *testing.T, latency time.Duration) *politeHost {
	h := &politeHost{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.arrivals = append(h.arrivals, time.Now())
		h.busy++
		h.maxBusy = max(h.maxBusy, h.busy)
		limited := h.tooMany > 0
		if limited {
			h.tooMany--
		}
		h.mu.Unlock()
		defer func() { h.mu.Lock(); h.busy--; h.mu.Unlock() }()
		if limited {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			return
		}
		time.Sleep(latency)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// maxIn returns the most arrivals within any window of length d.
func (h *politeHost) maxIn(d time.Duration) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := slices.Clone(h.arrivals)
	slices.SortFunc(a, func(x, y time.Time) int { return x.Compare(y) })
	best := 0
	for i, j := 0, 0; j < len(a); j++ {
		for a[j].Sub(a[i]) >= d {
			i++
		}
		best = max(best, j-i+1)
	}
	return best
}

// runHosts runs one item per URL through the http adapter with per-host limits.
func runHosts(t *testing.T, urls []string, lim HostLimits, parallelism int) (engine.Summary, *HTTP) {
	t.Helper()
	a := newTestHTTP(t, HTTPConfig{URL: "{item}", PerHost: lim})
	var out bytes.Buffer
	e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: parallelism, Burst: 1}, Retries: 3,
		Adapter: a, Source: engine.NewLineReader(strings.NewReader(strings.Join(urls, "\n")), false), Total: int64(len(urls)), Results: &out})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sum, a
}

func TestPerHostLimitsHoldOnEachHost(t *testing.T) {
	hosts := []*politeHost{newPoliteHost(t, 20*time.Millisecond), newPoliteHost(t, 20*time.Millisecond), newPoliteHost(t, 20*time.Millisecond)}
	var urls []string
	for i := range 60 { // interleaved, as a crawl list is
		for _, h := range hosts {
			urls = append(urls, h.srv.URL+"/page/"+string(rune('a'+i%26)))
		}
	}
	began := time.Now()
	sum, a := runHosts(t, urls, HostLimits{Rate: 40, Burst: 1, Parallelism: 2}, 24)
	took := time.Since(began)
	if sum.OK != int64(len(urls)) {
		t.Fatalf("summary %+v", sum)
	}
	for i, h := range hosts {
		if h.maxBusy > 2 {
			t.Errorf("host %d served %d calls at once; the per-host limit is 2", i, h.maxBusy)
		}
		if n := h.maxIn(time.Second); n > 41 {
			t.Errorf("host %d got %d calls within a second; the per-host rate is 40/s, burst 1", i, n)
		}
		if n := h.maxIn(100 * time.Millisecond); n > 5 {
			t.Errorf("host %d got %d calls within 100 ms; want at most 5", i, n)
		}
	}
	// The hosts are served side by side: 60 calls each at 40/s is 1.5 s, not the 4.5 s of one
	// host after another (the margin is for a loaded 2-core machine).
	if took > 3500*time.Millisecond {
		t.Errorf("the run took %v: the hosts were not served in parallel", took)
	}
	loads := a.Hosts(10)
	if len(loads) != 3 {
		t.Fatalf("Hosts = %+v, want the 3 hosts", loads)
	}
	for _, l := range loads {
		if l.Calls != 60 || l.InFlight != 0 || l.Waiting != 0 {
			t.Errorf("host load at the end %+v", l)
		}
	}
}

func TestPerHostRetryAfterHoldsOnlyThatHost(t *testing.T) {
	slow, other := newPoliteHost(t, 5*time.Millisecond), newPoliteHost(t, 5*time.Millisecond)
	slow.tooMany = 1
	var urls []string
	for i := range 40 {
		urls = append(urls, slow.srv.URL+"/"+string(rune('a'+i%26)), other.srv.URL+"/"+string(rune('a'+i%26)))
	}
	sum, a := runHosts(t, urls, HostLimits{Rate: 100, Burst: 1, Parallelism: 2}, 8)
	if sum.OK != int64(len(urls)) || sum.TooMany != 1 {
		t.Fatalf("summary %+v", sum)
	}
	slow.mu.Lock()
	first := slow.arrivals[0]
	quiet := 0 // calls that arrived after the 429 was answered and within its second
	for _, at := range slow.arrivals[1:] {
		if at.After(first.Add(50*time.Millisecond)) && at.Before(first.Add(950*time.Millisecond)) {
			quiet++
		}
	}
	slow.mu.Unlock()
	if quiet > 0 {
		t.Errorf("the host that asked for 1 s of quiet got %d calls within it", quiet)
	}
	other.mu.Lock()
	during := 0
	for _, at := range other.arrivals {
		if at.After(first) && at.Before(first.Add(900*time.Millisecond)) {
			during++
		}
	}
	other.mu.Unlock()
	if during < 20 {
		t.Errorf("the other host got %d calls during the first host's Retry-After: the hold was not per host", during)
	}
	var tooMany int64
	for _, l := range a.Hosts(2) {
		tooMany += l.TooMany
	}
	if tooMany != 1 {
		t.Errorf("host loads %+v: want the one 429 counted", a.Hosts(2))
	}
}

func TestPerHostWaitEndsWithTheCall(t *testing.T) {
	g := newHostGate(HostLimits{Parallelism: 1}, time.Now)
	done, err := g.enter(context.Background(), "a:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.enter(ctx, "A:1"); err == nil {
		t.Fatal("a second call to a host with one slot got in")
	} else if _, later := engine.IsLater(err); !later && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call that cannot have its host's turn: %v", err)
	}
	if l := g.loads(1); l[0].InFlight != 1 || l[0].Waiting != 0 {
		t.Fatalf("after a wait gave up: %+v", l)
	}
	done(200, 0)
	if _, err := g.enter(context.Background(), "a:1"); err != nil {
		t.Fatal("the slot was not freed:", err)
	}
}

func TestPerHostForgetsIdleHosts(t *testing.T) {
	now := time.Unix(0, 0)
	g := newHostGate(HostLimits{Rate: 10}, func() time.Time { return now })
	for i := range maxIdleHosts {
		done, _ := g.enter(context.Background(), "h"+strconv.Itoa(i))
		done(200, 0)
	}
	now = now.Add(2 * time.Minute)
	done, _ := g.enter(context.Background(), "new")
	done(200, 0)
	if n := len(g.loads(1 << 20)); n > 10 {
		t.Fatalf("%d hosts remembered after the idle ones should have gone", n)
	}
}

// TestPerHostWaitIsNotLatency: one host served one call at a time, four workers. The calls of
// one host cannot overlap, so their latencies add up to at most the run's time; the turns the
// other workers waited are the rows' wait_ms. (Counted as latency, as they were, the rows
// added up to about four times the run.)
func TestPerHostWaitIsNotLatency(t *testing.T) {
	h := newPoliteHost(t, 5*time.Millisecond)
	var urls []string
	for i := range 24 {
		urls = append(urls, h.srv.URL+"/"+strconv.Itoa(i))
	}
	a := newTestHTTP(t, HTTPConfig{URL: "{item}", PerHost: HostLimits{Parallelism: 1}})
	var out bytes.Buffer
	e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: 4, Burst: 1}, Retries: 3,
		Adapter: a, Source: engine.NewLineReader(strings.NewReader(strings.Join(urls, "\n")), false), Total: int64(len(urls)), Results: &out})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if sum, err := e.Run(context.Background()); err != nil || sum.OK != 24 {
		t.Fatalf("Run = %+v, %v", sum, err)
	}
	took := time.Since(began)
	var latency, wait time.Duration
	waited := 0
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r struct {
			LatencyMS float64 `json:"latency_ms"`
			WaitMS    float64 `json:"wait_ms"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		latency += time.Duration(r.LatencyMS * float64(time.Millisecond))
		wait += time.Duration(r.WaitMS * float64(time.Millisecond))
		if r.WaitMS > 0 {
			waited++
		}
	}
	if h.maxBusy != 1 {
		t.Fatalf("the host served %d calls at once; want 1", h.maxBusy)
	}
	if latency > took {
		t.Errorf("the rows' latencies add up to %v, more than the run's %v: the wait for the host's turn counted as latency", latency, took)
	}
	if waited < 12 || latency+wait <= took {
		t.Errorf("%d of 24 rows have a wait_ms (%v in all, latency %v, run %v); want most: four workers took turns at one host", waited, wait, latency, took)
	}
}
