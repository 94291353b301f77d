package adapters

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// quotaStep is one call of a quota decision table: it arrives at simT0+at with busy calls being
// served, and gets status, retryAfter and the quota the answer states.
type quotaStep struct {
	at         time.Duration
	busy       int
	status     int
	retryAfter time.Duration
	remaining  int64
	reset      time.Duration
}

func TestSimQuotaDecide(t *testing.T) {
	const ms, sec = time.Millisecond, time.Second
	tests := []struct {
		name  string
		cfg   SimConfig
		steps []quotaStep
	}{
		{
			name: "quota per window, then 429 with Retry-After until the window ends, rounded up",
			cfg:  SimConfig{Quota: 3, Window: 2 * sec},
			steps: []quotaStep{
				{0, 0, 200, 0, 2, 2 * sec}, // remaining counts this call
				{0, 0, 200, 0, 1, 2 * sec},
				{10 * ms, 0, 200, 0, 0, 2 * sec}, // 1.99s rounded up
				{20 * ms, 0, 429, 2 * sec, 0, 2 * sec},
				{1500 * ms, 0, 429, sec, 0, sec}, // 0.5s rounded up
				{1999 * ms, 0, 429, sec, 0, sec},
				{2000 * ms, 0, 200, 0, 2, 2 * sec}, // a new window: the whole quota again
				{3001 * ms, 0, 200, 0, 1, sec},     // 0.999s
				{7 * sec, 0, 200, 0, 2, sec},       // windows stay aligned to the start: [6s, 8s)
			},
		},
		{
			name: "a call refused for concurrency uses none of the quota",
			cfg:  SimConfig{Quota: 2, Window: sec, Concurrency: 1, Overload: Overload429},
			steps: []quotaStep{
				{0, 1, 429, 0, 2, sec}, // no Retry-After: the concurrency limit says none
				{0, 0, 200, 0, 1, sec},
				{0, 0, 200, 0, 0, sec},
				{0, 0, 429, sec, 0, sec},
			},
		},
		{
			name: "a call refused by the rate bucket uses no quota; one refused by the quota takes no token",
			cfg:  SimConfig{Quota: 2, Window: 10 * sec, Rate: 1, Burst: 1},
			steps: []quotaStep{
				{0, 0, 200, 0, 1, 10 * sec},
				{0, 0, 429, sec, 1, 10 * sec}, // the bucket is empty, the quota is not
				{sec, 0, 200, 0, 0, 9 * sec},
				{3 * sec, 0, 429, 7 * sec, 0, 7 * sec}, // quota spent: the bucket's token stays
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSim(tt.cfg)
			s.winOrigin = simT0
			for i, st := range tt.steps {
				d := s.decide(simT0.Add(st.at), st.busy)
				if d.quota == nil {
					t.Fatalf("step %d: decide(t0+%v) states no quota", i, st.at)
				}
				got := quotaStep{st.at, st.busy, d.status, d.retryAfter, d.quota.Remaining, d.quota.Reset}
				if got != st || d.quota.Limit != int64(tt.cfg.Quota) {
					t.Errorf("step %d: decide(t0+%v, busy %d) = %d retry-after %v quota %+v, want %d retry-after %v remaining %d reset %v",
						i, st.at, st.busy, d.status, d.retryAfter, *d.quota, st.status, st.retryAfter, st.remaining, st.reset)
				}
			}
		})
	}
}

func TestSimNoQuotaStatesNone(t *testing.T) {
	s := NewSim(SimConfig{Rate: 1})
	for i := range 2 {
		if d := s.decide(simT0, 0); d.quota != nil {
			t.Errorf("call %d without a quota states %+v, want nil", i, *d.quota)
		}
	}
}

func TestSimHandlerQuotaHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Quota: 2, Window: 3 * time.Second, Latency: 10 * time.Millisecond})
		h := s.Handler()
		time.Sleep(500 * time.Millisecond)
		type answer struct {
			status                              int
			limit, remaining, reset, retryAfter string
		}
		get := func() answer {
			w := simDo(h, "GET", "/items/k", nil)
			return answer{w.Code, w.Header().Get("X-RateLimit-Limit"), w.Header().Get("X-RateLimit-Remaining"),
				w.Header().Get("X-RateLimit-Reset"), w.Header().Get("Retry-After")}
		}
		want := []answer{
			{200, "2", "1", "3", ""}, // 2.5s left, rounded up
			{200, "2", "0", "3", ""}, // 2.49s
			{429, "2", "0", "3", "3"},
		}
		for i, w := range want {
			if got := get(); got != w {
				t.Errorf("GET %d = %+v, want %+v", i, got, w)
			}
		}
		time.Sleep(2 * time.Second) // 0.47s left in the window
		if got, w := get(), (answer{429, "2", "0", "1", "1"}); got != w {
			t.Errorf("GET near the window's end = %+v, want %+v", got, w)
		}
		time.Sleep(500 * time.Millisecond) // the next window
		if got, w := get(), (answer{200, "2", "1", "3", ""}); got != w {
			t.Errorf("GET in the next window = %+v, want %+v", got, w)
		}
	})
}

func TestSimQuotaStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Quota: 3, Window: time.Second, Latency: 10 * time.Millisecond})
		serveAll(t.Context(), s, "a", "b", "c", "d", "e")
		want := SimStats{Calls: 5, OK: 3, TooMany: 2, MaxInFlight: 5, Overload: OverloadLatency, Quota: 3, Window: time.Second, QuotaUsed: 3}
		if st := s.Stats(); st != want {
			t.Errorf("Stats() = %+v, want %+v", st, want)
		}
		w := simDo(s.Handler(), "GET", "/stats", nil)
		for _, k := range []string{`"quota":3`, `"window_ns":1000000000`, `"quota_used":3`} {
			if !strings.Contains(w.Body.String(), k) {
				t.Errorf("GET /stats = %s, want it to hold %s", w.Body, k)
			}
		}
		time.Sleep(time.Second)
		if st := s.Stats(); st.QuotaUsed != 0 {
			t.Errorf("in the next window, Stats().QuotaUsed = %d, want 0", st.QuotaUsed)
		}
	})
}

func TestSimSetQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Latency: time.Millisecond})
		time.Sleep(300 * time.Millisecond)
		s.SetQuota(2, time.Second) // windows from now
		a, _ := serveAll(t.Context(), s, "a", "b", "c")
		if got := statuses(a); !slices.Equal(got, []int{200, 200, 429}) || slices.MaxFunc(a, byRetryAfter).RetryAfter != time.Second {
			t.Errorf("after SetQuota(2, 1s): statuses %v, want [200 200 429] with retry-after 1s", got)
		}
		s.SetQuota(3, time.Second) // same window: what it used stays
		a, _ = serveAll(t.Context(), s, "d", "e")
		if got := statuses(a); !slices.Equal(got, []int{200, 429}) {
			t.Errorf("after SetQuota(3, 1s): statuses %v, want [200 429]", got)
		}
		time.Sleep(200 * time.Millisecond)
		s.SetQuota(1, 5*time.Second) // a new window length restarts the windows
		a, _ = serveAll(t.Context(), s, "f")
		if a[0].Status != 200 || a[0].Quota.Reset != 5*time.Second {
			t.Errorf("after SetQuota(1, 5s): %d reset %v, want 200 and 5s", a[0].Status, a[0].Quota.Reset)
		}
		s.SetQuota(0, 0)
		a, _ = serveAll(t.Context(), s, "g", "h")
		if a[0].Status != 200 || a[1].Status != 200 || a[0].Quota != nil {
			t.Errorf("after SetQuota(0, 0): %d %d quota %v, want 200 200 and no quota", a[0].Status, a[1].Status, a[0].Quota)
		}
	})
}

// statuses returns the sorted statuses of answers.
func statuses(a []SimAnswer) []int {
	var st []int
	for _, x := range a {
		st = append(st, x.Status)
	}
	slices.Sort(st)
	return st
}

func byRetryAfter(a, b SimAnswer) int { return int(a.RetryAfter - b.RetryAfter) }

func TestSimHandlerLimitsQuota(t *testing.T) {
	tests := []struct {
		name, form string
		status     int
		quota      int
		window     time.Duration
		errMsg     string
	}{
		{"quota and window", "quota=10&window=2s", 200, 10, 2 * time.Second, ""},
		{"window in seconds", "window=0.5", 200, 4, 500 * time.Millisecond, ""},
		{"quota alone keeps the window", "quota=7", 200, 7, time.Second, ""},
		{"both 0 lift the quota", "quota=0&window=0", 200, 0, 0, ""},
		{"quota 0 alone leaves a window without quota", "quota=0", 400, 4, time.Second, "needs a quota"},
		{"bad window", "window=soon", 400, 4, time.Second, `adapters: sim window "soon"`},
		{"bad quota", "quota=1.5", 400, 4, time.Second, `adapters: sim quota "1.5" is not an integer`},
		{"negative quota", "quota=-3", 400, 4, time.Second, "adapters: sim quota -3 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSim(SimConfig{Quota: 4, Window: time.Second})
			w := simDo(s.Handler(), "POST", "/limits", strings.NewReader(tt.form))
			if w.Code != tt.status {
				t.Errorf("POST /limits %q = %d %s, want %d", tt.form, w.Code, w.Body, tt.status)
			}
			if cfg := s.Config(); cfg.Quota != tt.quota || cfg.Window != tt.window {
				t.Errorf("POST /limits %q: quota %d window %v, want %d %v", tt.form, cfg.Quota, cfg.Window, tt.quota, tt.window)
			}
			if tt.status == 400 && !strings.Contains(w.Body.String(), tt.errMsg) {
				t.Errorf("POST /limits %q = %s, want it to hold %q", tt.form, w.Body, tt.errMsg)
			}
			if tt.status == 200 {
				var st SimStats
				if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Quota != tt.quota || st.Window != tt.window {
					t.Errorf("POST /limits answer %s (%v), want the new quota", w.Body, err)
				}
			}
		})
	}
}

func TestSimAdapterQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := NewSimAdapter(NewSim(SimConfig{Quota: 1, Window: 2 * time.Second}))
		it := engine.Item{Line: "x"}
		got, err := a.Do(t.Context(), it)
		if want := (engine.Quota{Limit: 1, Remaining: 0, Reset: 2 * time.Second}); err != nil || got.Verdict != engine.OK || got.Quota == nil || *got.Quota != want {
			t.Errorf("first Do = %+v, %v; want ok with quota %+v", got, err, want)
		}
		got, err = a.Do(t.Context(), it) // 50ms later: 1.95s left
		if want := (engine.Quota{Limit: 1, Remaining: 0, Reset: 2 * time.Second}); err != nil || got.Verdict != engine.Retry || got.Status != 429 ||
			got.RetryAfter != 2*time.Second || got.Quota == nil || *got.Quota != want {
			t.Errorf("second Do = %+v, %v; want retry 429 after 2s with quota %+v", got, err, want)
		}
	})
}

func TestSimTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Rate: 2, Burst: 2, Latency: 100 * time.Millisecond})
		serveAll(t.Context(), s, "off") // before EnableTimeline: not noted
		if ok, tm := s.Timeline(s.Started(), time.Second); len(ok) != 0 || len(tm) != 0 {
			t.Errorf("Timeline before EnableTimeline = %v %v, want empty", ok, tm)
		}
		time.Sleep(900 * time.Millisecond) // t = 1s: 2 tokens again
		s.EnableTimeline()
		serveAll(t.Context(), s, "a", "b", "c") // 2 ok at 1.1s, a 429 at 1.01s
		time.Sleep(1900 * time.Millisecond)     // t = 3s
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() { s.Serve(t.Context(), "d") }) // 2 ok at 3.1s, a 429 at 3.01s
		}
		wg.Wait()
		ok, tm := s.Timeline(s.Started(), time.Second)
		if !slices.Equal(ok, []int64{0, 2, 0, 2}) || !slices.Equal(tm, []int64{0, 1, 0, 1}) {
			t.Errorf("Timeline(start, 1s) = %v %v, want [0 2 0 2] [0 1 0 1]", ok, tm)
		}
		if got := s.OKTimeline(500 * time.Millisecond); !slices.Equal(got, []int64{0, 0, 2, 0, 0, 0, 2}) {
			t.Errorf("OKTimeline(500ms) = %v, want [0 0 2 0 0 0 2]", got)
		}
		ok, tm = s.Timeline(s.Started().Add(1050*time.Millisecond), time.Second) // leaves out the first 429
		if !slices.Equal(ok, []int64{2, 0, 2}) || !slices.Equal(tm, []int64{0, 1, 0}) {
			t.Errorf("Timeline(start+1.05s, 1s) = %v %v, want [2 0 2] [0 1 0]", ok, tm)
		}
	})
}
