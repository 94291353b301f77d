package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// simT0 is the fixed instant at which decision tables start.
var simT0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// simStep is one call of a decision table: it arrives at simT0+at with busy calls being served.
type simStep struct {
	at         time.Duration
	busy       int
	status     int
	retryAfter time.Duration
	latency    time.Duration
}

func TestSimDecide(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name  string
		cfg   SimConfig
		steps []simStep
	}{
		{
			name: "no limits: every call is served at the median latency",
			cfg:  SimConfig{},
			steps: []simStep{
				{0, 0, 200, 0, 50 * ms},
				{0, 100, 200, 0, 50 * ms},
			},
		},
		{
			name: "rate admits the burst, then asks to wait for the next token",
			cfg:  SimConfig{Rate: 10, Burst: 3, Latency: 50 * ms},
			steps: []simStep{
				{0, 0, 200, 0, 50 * ms},
				{0, 0, 200, 0, 50 * ms},
				{0, 0, 200, 0, 50 * ms},
				{0, 0, 429, 100 * ms, 5 * ms}, // empty bucket: a token in 1/rate, rejected fast
				{40 * ms, 0, 429, 60 * ms, 5 * ms},
				{100 * ms, 0, 200, 0, 50 * ms}, // exactly when the previous 429 said
				{100 * ms, 0, 429, 100 * ms, 5 * ms},
				{350 * ms, 0, 200, 0, 50 * ms}, // 2.5 tokens
				{350 * ms, 0, 200, 0, 50 * ms},
				{350 * ms, 0, 429, 50 * ms, 5 * ms}, // half a token left
			},
		},
		{
			name: "burst defaults to 1",
			cfg:  SimConfig{Rate: 2},
			steps: []simStep{
				{0, 0, 200, 0, 50 * ms},
				{0, 0, 429, 500 * ms, 5 * ms},
			},
		},
		{
			name: "slow rate asks for long waits",
			cfg:  SimConfig{Rate: 0.1},
			steps: []simStep{
				{0, 0, 200, 0, 50 * ms},
				{0, 0, 429, 10 * time.Second, 5 * ms},
				{2500 * ms, 0, 429, 7500 * ms, 5 * ms},
				{10 * time.Second, 0, 200, 0, 50 * ms},
			},
		},
		{
			name: "configured Retry-After replaces the computed one",
			cfg:  SimConfig{Rate: 1, RetryAfter: 3 * time.Second},
			steps: []simStep{
				{0, 0, 200, 0, 50 * ms},
				{0, 0, 429, 3 * time.Second, 5 * ms},
			},
		},
		{
			name: "429 mode rejects at capacity, without Retry-After",
			cfg:  SimConfig{Concurrency: 2, Overload: Overload429, Latency: 100 * ms},
			steps: []simStep{
				{0, 0, 200, 0, 100 * ms},
				{0, 1, 200, 0, 100 * ms}, // latency does not grow in 429 mode
				{0, 2, 429, 0, 10 * ms},
				{0, 5, 429, 0, 10 * ms},
			},
		},
		{
			name: "429 mode spends no token on a call it rejects",
			cfg:  SimConfig{Rate: 1, Concurrency: 1, Overload: Overload429},
			steps: []simStep{
				{0, 1, 429, 0, 5 * ms},
				{0, 0, 200, 0, 50 * ms},
				{0, 0, 429, time.Second, 5 * ms}, // now the bucket is empty
			},
		},
		{
			name: "latency mode: latency grows with in-flight/capacity past capacity",
			cfg:  SimConfig{Concurrency: 4, Overload: OverloadLatency, Latency: 100 * ms},
			steps: []simStep{
				{0, 0, 200, 0, 100 * ms},
				{0, 3, 200, 0, 100 * ms}, // the 4th call still fits
				{0, 4, 200, 0, 125 * ms}, // 5 in flight / 4
				{0, 7, 200, 0, 200 * ms},
				{0, 11, 200, 0, 300 * ms},
			},
		},
		{
			name: "latency is the default overload mode",
			cfg:  SimConfig{Concurrency: 1, Latency: 100 * ms},
			steps: []simStep{
				{0, 0, 200, 0, 100 * ms},
				{0, 1, 200, 0, 200 * ms},
			},
		},
		{
			name: "error rate 1 fails every admitted call with 503 at full latency",
			cfg:  SimConfig{ErrorRate: 1},
			steps: []simStep{
				{0, 0, 503, 0, 50 * ms},
				{0, 0, 503, 0, 50 * ms},
			},
		},
		{
			name: "the rate limit answers before the error rate",
			cfg:  SimConfig{Rate: 1, ErrorRate: 1},
			steps: []simStep{
				{0, 0, 503, 0, 50 * ms},
				{0, 0, 429, time.Second, 5 * ms},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSim(tt.cfg)
			for i, st := range tt.steps {
				d := s.decide(simT0.Add(st.at), st.busy)
				got := simStep{st.at, st.busy, d.status, d.retryAfter, d.latency}
				if got != st {
					t.Errorf("step %d: decide(t0+%v, busy %d) = %d retry-after %v latency %v, want %d retry-after %v latency %v",
						i, st.at, st.busy, d.status, d.retryAfter, d.latency, st.status, st.retryAfter, st.latency)
				}
				if want := st.status != 429; d.busy != want {
					t.Errorf("step %d: decide(t0+%v, busy %d).busy = %v, want %v", i, st.at, st.busy, d.busy, want)
				}
			}
		})
	}
}

func TestSimLatencySpread(t *testing.T) {
	const n = 4001
	s := NewSim(SimConfig{Latency: 50 * time.Millisecond, Sigma: DefaultSimSigma, Seed: 7})
	lats := make([]time.Duration, n)
	logs := make([]float64, n)
	var mean float64
	for i := range lats {
		lats[i] = s.decide(simT0, 0).latency
		logs[i] = math.Log(float64(lats[i]) / float64(50*time.Millisecond))
		mean += logs[i] / n
	}
	var variance float64
	for _, l := range logs {
		variance += (l - mean) * (l - mean) / (n - 1)
	}
	slices.Sort(lats)
	if med := lats[n/2]; med < 48500*time.Microsecond || med > 51500*time.Microsecond {
		t.Errorf("median latency = %v, want 50ms ± 3%%", med)
	}
	if sd := math.Sqrt(variance); math.Abs(sd-DefaultSimSigma) > 0.02 {
		t.Errorf("spread of log latency = %.3f, want %.2f ± 0.02", sd, DefaultSimSigma)
	}

	// The same seed draws the same latencies; another seed does not.
	a, b, c := NewSim(SimConfig{Sigma: 0.5, Seed: 1}), NewSim(SimConfig{Sigma: 0.5, Seed: 1}), NewSim(SimConfig{Sigma: 0.5, Seed: 2})
	var same, other int
	for range 20 {
		la := a.decide(simT0, 0).latency
		if la == b.decide(simT0, 0).latency {
			same++
		}
		if la == c.decide(simT0, 0).latency {
			other++
		}
	}
	if same != 20 || other == 20 {
		t.Errorf("20 latencies: %d equal with the same seed (want 20), %d with another (want fewer)", same, other)
	}
}

func TestUntilNextToken(t *testing.T) {
	tests := []struct {
		tokens, rate float64
		want         time.Duration
	}{
		{0, 10, 100 * time.Millisecond},
		{0.4, 10, 60 * time.Millisecond},
		{0.999999, 10, time.Millisecond}, // never less than a millisecond
		{0, 3, 334 * time.Millisecond},   // rounded up: the token is there by then
		{0.25, 0.1, 7500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := untilNextToken(tt.tokens, tt.rate); got != tt.want {
			t.Errorf("untilNextToken(%v, %v) = %v, want %v", tt.tokens, tt.rate, got, tt.want)
		}
	}
}

func TestSimConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  SimConfig
		want string // a part of the error; "" for none
	}{
		{SimConfig{}, ""},
		{SimConfig{Rate: 5, Burst: 3, Concurrency: 8, Overload: "429", Latency: time.Second, Sigma: 1, RetryAfter: time.Second, ErrorRate: 1}, ""},
		{SimConfig{Rate: -1}, "adapters: sim rate -1"},
		{SimConfig{Rate: math.Inf(1)}, "adapters: sim rate +Inf"},
		{SimConfig{Rate: math.NaN()}, "adapters: sim rate NaN"},
		{SimConfig{Burst: -1}, "adapters: sim burst -1"},
		{SimConfig{Concurrency: -3}, "adapters: sim concurrency -3"},
		{SimConfig{Overload: "queue"}, `adapters: sim overload "queue"`},
		{SimConfig{Latency: -time.Second}, "adapters: sim latency -1s"},
		{SimConfig{Sigma: -0.1}, "adapters: sim sigma -0.1"},
		{SimConfig{RetryAfter: -time.Second}, "adapters: sim retry-after -1s"},
		{SimConfig{ErrorRate: 1.5}, "adapters: sim error rate 1.5"},
		{SimConfig{ErrorRate: math.NaN()}, "adapters: sim error rate NaN"},
		{SimConfig{Quota: 400, Window: 2 * time.Second}, ""},
		{SimConfig{Quota: -1, Window: time.Second}, "adapters: sim quota -1 is negative"},
		{SimConfig{Quota: 1, Window: -time.Second}, "adapters: sim window -1s is negative"},
		{SimConfig{Quota: 5}, "adapters: sim quota 5 needs a window"},
		{SimConfig{Window: time.Second}, "adapters: sim window 1s needs a quota"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v.Validate() = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestSimPanicsOnInvalidValues(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("NewSim(Rate -1)", func() { NewSim(SimConfig{Rate: -1}) })
	s := NewSim(SimConfig{Rate: 5})
	mustPanic("SetLimits(-1, 1, 0)", func() { s.SetLimits(-1, 1, 0) })
	mustPanic("SetLimits(1, 1, -1)", func() { s.SetLimits(1, 1, -1) })
	if got := s.Config().Rate; got != 5 {
		t.Errorf("after refused SetLimits, Config().Rate = %v, want 5", got)
	}
	mustPanic("NewSim(Quota 5 without a window)", func() { NewSim(SimConfig{Quota: 5}) })
	mustPanic("SetQuota(-1, 1s)", func() { s.SetQuota(-1, time.Second) })
	mustPanic("SetQuota(5, 0)", func() { s.SetQuota(5, 0) })
	mustPanic("Timeline(bucket 0)", func() { s.Timeline(s.Started(), 0) })
}

// serveAll starts one Serve per key at once and returns the answers and how long each took,
// in the order of keys. It must run inside a synctest bubble.
func serveAll(ctx context.Context, s *Sim, keys ...string) ([]SimAnswer, []time.Duration) {
	answers := make([]SimAnswer, len(keys))
	took := make([]time.Duration, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			start := time.Now()
			answers[i] = s.Serve(ctx, k)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	return answers, took
}

func TestSimRateWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate, burst = 20, 5
		s := NewSim(SimConfig{Rate: rate, Burst: burst, Latency: 10 * time.Millisecond})
		var (
			mu      sync.Mutex
			answers []SimAnswer
			wg      sync.WaitGroup
		)
		// 200 calls, one every 5ms, over [0, 995ms]: the bucket admits its burst plus the
		// 19.9 tokens it refills in that time.
		for range 200 {
			wg.Go(func() {
				a := s.Serve(t.Context(), "k")
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
			})
			time.Sleep(5 * time.Millisecond)
		}
		wg.Wait()
		var ok int
		for _, a := range answers {
			switch a.Status {
			case 200:
				ok++
			case 429:
				if a.RetryAfter <= 0 || a.RetryAfter > time.Second/rate {
					t.Errorf("429 RetryAfter = %v, want in (0, %v]", a.RetryAfter, time.Second/rate)
				}
			default:
				t.Errorf("status %d, want 200 or 429", a.Status)
			}
		}
		if want := burst + 19; ok != want {
			t.Errorf("200s in a 995ms window at rate %d burst %d = %d, want %d", rate, burst, ok, want)
		}
		if st := s.Stats(); st.OK != int64(ok) || st.TooMany != int64(200-ok) || st.Calls != 200 {
			t.Errorf("Stats() = %+v, want calls 200, ok %d, too_many %d", st, ok, 200-ok)
		}
	})
}

func TestSimConcurrency429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Concurrency: 3, Overload: Overload429, Latency: 100 * time.Millisecond})
		var (
			answers []SimAnswer
			took    []time.Duration
			done    = make(chan struct{})
		)
		go func() {
			answers, took = serveAll(t.Context(), s, "a", "b", "c", "d", "e")
			close(done)
		}()
		synctest.Wait() // the 5 calls arrived; all sleep
		if st := s.Stats(); st.InFlight != 5 || st.Busy != 3 || st.MaxInFlight != 5 {
			t.Errorf("while serving, Stats() in_flight %d busy %d max_in_flight %d, want 5, 3, 5", st.InFlight, st.Busy, st.MaxInFlight)
		}
		<-done
		var ok, rejected int
		for i, a := range answers {
			switch {
			case a.Status == 200 && took[i] == 100*time.Millisecond:
				ok++
			case a.Status == 429 && took[i] == 10*time.Millisecond && a.RetryAfter == 0:
				rejected++
			default:
				t.Errorf("call %d: status %d retry-after %v after %v, want 200 after 100ms or 429 without retry-after after 10ms", i, a.Status, a.RetryAfter, took[i])
			}
		}
		if ok != 3 || rejected != 2 {
			t.Errorf("5 calls at capacity 3: %d ok, %d rejected, want 3, 2", ok, rejected)
		}
		if st := s.Stats(); st.InFlight != 0 || st.Busy != 0 || st.OK != 3 || st.TooMany != 2 {
			t.Errorf("after, Stats() = %+v, want in_flight 0, busy 0, ok 3, too_many 2", st)
		}
		if a := s.Serve(t.Context(), "f"); a.Status != 200 {
			t.Errorf("once capacity is free, Serve = %d, want 200", a.Status)
		}
	})
}

func TestSimLatencyOverload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Concurrency: 2, Overload: OverloadLatency, Latency: 100 * time.Millisecond})
		answers, took := serveAll(t.Context(), s, "a", "b", "c", "d")
		slices.Sort(took)
		want := []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond}
		if !slices.Equal(took, want) {
			t.Errorf("4 calls at capacity 2 took %v, want %v", took, want)
		}
		for i, a := range answers {
			if a.Status != 200 {
				t.Errorf("call %d: status %d, want 200 (latency mode never rejects)", i, a.Status)
			}
		}
	})
}

func TestSimLatencySaturates(t *testing.T) {
	// 8 workers calling in a loop for 10s: capacity 2 at 100ms saturates at about 20 calls/s,
	// without a capacity 8 workers reach 80 calls/s.
	tests := []struct {
		concurrency int
		min, max    int64
	}{
		{2, 180, 205},
		{0, 800, 800},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			s := NewSim(SimConfig{Concurrency: tt.concurrency, Latency: 100 * time.Millisecond})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second+time.Millisecond)
			defer cancel()
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for ctx.Err() == nil {
						s.Serve(ctx, "k")
					}
				})
			}
			wg.Wait()
			if got := s.Stats().OK; got < tt.min || got > tt.max {
				t.Errorf("capacity %d: %d calls ok in 10s, want %d..%d", tt.concurrency, got, tt.min, tt.max)
			}
		})
	}
}

func TestSimSetLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := NewSim(SimConfig{Rate: 1000, Burst: 1000, Latency: 10 * time.Millisecond})
		for range 5 {
			if a := s.Serve(ctx, "k"); a.Status != 200 {
				t.Fatalf("at rate 1000, Serve = %d, want 200", a.Status)
			}
		}
		// The limit drops mid-run: the bucket keeps at most its new burst.
		s.SetLimits(1, 1, 0)
		if cfg := s.Config(); cfg.Rate != 1 || cfg.Burst != 1 || cfg.Concurrency != 0 {
			t.Errorf("after SetLimits(1, 1, 0), Config() rate %v burst %d concurrency %d", cfg.Rate, cfg.Burst, cfg.Concurrency)
		}
		if a := s.Serve(ctx, "k"); a.Status != 200 {
			t.Errorf("first call after the drop = %d, want 200 (one token left)", a.Status)
		}
		if a := s.Serve(ctx, "k"); a.Status != 429 || a.RetryAfter != 990*time.Millisecond {
			t.Errorf("second call after the drop = %d retry-after %v, want 429 retry-after 990ms", a.Status, a.RetryAfter)
		}
		time.Sleep(990 * time.Millisecond)
		if a := s.Serve(ctx, "k"); a.Status != 200 {
			t.Errorf("after waiting the retry-after, Serve = %d, want 200", a.Status)
		}

		// A lower burst clamps the tokens at once.
		s.SetLimits(10, 10, 0)
		time.Sleep(2 * time.Second)
		s.SetLimits(10, 3, 0)
		for i := range 4 {
			want := 200
			if i == 3 {
				want = 429
			}
			if d := s.decide(time.Now(), 0); d.status != want {
				t.Errorf("call %d after burst 10→3 = %d, want %d", i, d.status, want)
			}
		}

		// Rate 0 lifts the limit; a later rate starts with a full bucket.
		s.SetLimits(0, 0, 0)
		answers, _ := serveAll(ctx, s, "a", "b", "c", "d", "e", "f", "g", "h")
		for i, a := range answers {
			if a.Status != 200 {
				t.Errorf("without a rate limit, call %d = %d, want 200", i, a.Status)
			}
		}
		s.SetLimits(1, 2, 0)
		if cfg := s.Config(); cfg.Burst != 2 {
			t.Errorf("Config().Burst = %d, want 2", cfg.Burst)
		}
		got := []int{s.decide(time.Now(), 0).status, s.decide(time.Now(), 0).status, s.decide(time.Now(), 0).status}
		if !slices.Equal(got, []int{200, 200, 429}) {
			t.Errorf("after rate 0 → 1 burst 2, statuses %v, want [200 200 429]", got)
		}
		s.SetLimits(5, 0, 0)
		if cfg := s.Config(); cfg.Burst != 1 {
			t.Errorf("after SetLimits(5, 0, 0), Config().Burst = %d, want 1", cfg.Burst)
		}
	})
}

func TestSimSetConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Overload: Overload429, Latency: 100 * time.Millisecond})
		done := make(chan struct{})
		go func() {
			serveAll(t.Context(), s, "a", "b", "c")
			close(done)
		}()
		synctest.Wait()
		s.SetLimits(0, 0, 2) // 3 calls are being served: over the new capacity
		if a := s.Serve(t.Context(), "d"); a.Status != 429 {
			t.Errorf("after capacity 2 with 3 busy, Serve = %d, want 429", a.Status)
		}
		s.SetLimits(0, 0, 10)
		if a := s.Serve(t.Context(), "e"); a.Status != 200 {
			t.Errorf("after capacity 10 with 3 busy, Serve = %d, want 200", a.Status)
		}
		<-done
		if st := s.Stats(); st.Concurrency != 10 || st.OK != 4 || st.TooMany != 1 {
			t.Errorf("Stats() = %+v, want concurrency 10, ok 4, too_many 1", st)
		}
	})
}

func TestSimStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Rate: 10, Burst: 5, Latency: 20 * time.Millisecond})
		keys := make([]string, 20)
		for i := range keys {
			keys[i] = "k"
		}
		canceled, cancel := context.WithCancel(t.Context())
		cancel()
		done := make(chan struct{})
		go func() {
			serveAll(t.Context(), s, keys...)
			serveAll(canceled, s, "x", "y", "z") // never decided: no token spent
			close(done)
		}()
		synctest.Wait()
		if st := s.Stats(); st.InFlight != 20 || st.Busy != 5 {
			t.Errorf("20 calls at burst 5: Stats() in_flight %d busy %d, want 20, 5", st.InFlight, st.Busy)
		}
		<-done
		want := SimStats{Calls: 23, OK: 5, TooMany: 15, Canceled: 3, MaxInFlight: 20, Rate: 10, Burst: 5, Overload: OverloadLatency}
		if st := s.Stats(); st != want {
			t.Errorf("Stats() = %+v, want %+v", st, want)
		}

		s.ResetMaxInFlight()
		if st := s.Stats(); st.MaxInFlight != 0 {
			t.Errorf("after ResetMaxInFlight, MaxInFlight = %d, want 0", st.MaxInFlight)
		}
		time.Sleep(time.Second)
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { serveAll(t.Context(), s, "a", "b") })
		synctest.Wait()
		if st := s.Stats(); st.InFlight != 2 || st.MaxInFlight != 2 || st.Busy != 2 {
			t.Errorf("2 calls in flight: Stats() in_flight %d max_in_flight %d busy %d, want 2, 2, 2", st.InFlight, st.MaxInFlight, st.Busy)
		}

		e := NewSim(SimConfig{ErrorRate: 1})
		serveAll(t.Context(), e, "a", "b", "c", "d")
		if st := e.Stats(); st.Errors != 4 || st.Calls != 4 || st.OK != 0 {
			t.Errorf("error rate 1: Stats() = %+v, want errors 4 of 4 calls", st)
		}
	})
}

func TestSimServeCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Latency: time.Second})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
		defer cancel()
		start := time.Now()
		a := s.Serve(ctx, "k")
		if took := time.Since(start); a.Status != 0 || took != 5*time.Millisecond {
			t.Errorf("Serve with a 5ms deadline = status %d after %v, want 0 after 5ms", a.Status, took)
		}
		if st := s.Stats(); st.Canceled != 1 || st.Calls != 1 || st.InFlight != 0 || st.Busy != 0 {
			t.Errorf("Stats() = %+v, want calls 1, canceled 1, nothing in flight", st)
		}
	})
}

func TestSimServeBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Rate: 1})
		var ok struct {
			ID    string `json:"id"`
			Value uint32 `json:"value"`
		}
		a := s.Serve(t.Context(), `say "hi"`)
		if err := json.Unmarshal(a.Body, &ok); err != nil || ok.ID != `say "hi"` || ok.Value != simValue(`say "hi"`) {
			t.Errorf("200 body %s: id %q value %d (%v), want the key and %d", a.Body, ok.ID, ok.Value, err, simValue(`say "hi"`))
		}
		if a, b, again := simValue("a"), simValue("b"), simValue("a"); a == b || a != again {
			t.Errorf("simValue: a %d, b %d, want different, stable values", simValue("a"), simValue("b"))
		}
		var bad struct{ Error string }
		a = s.Serve(t.Context(), "k")
		if err := json.Unmarshal(a.Body, &bad); err != nil || bad.Error != "rate limit exceeded" {
			t.Errorf("429 body %s, want {\"error\":\"rate limit exceeded\"}", a.Body)
		}
	})
}

func TestSimHammer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers, capacity = 300, 50
		s := NewSim(SimConfig{Rate: 500, Burst: 20, Concurrency: capacity, Overload: Overload429, Sigma: 0.5, ErrorRate: 0.1, Seed: 3})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					s.Serve(ctx, "k")
				}
			})
		}
		maxBusy := 0
		wg.Go(func() { // limits change while the calls run
			for i := 0; ctx.Err() == nil; i++ {
				s.SetLimits(float64(100+i%400), 1+i%30, capacity)
				time.Sleep(7 * time.Millisecond)
			}
		})
		wg.Go(func() {
			for ctx.Err() == nil {
				maxBusy = max(maxBusy, s.Stats().Busy)
				time.Sleep(time.Millisecond)
			}
		})
		wg.Wait()
		st := s.Stats()
		if st.Calls != st.OK+st.TooMany+st.Errors+st.Canceled {
			t.Errorf("Stats() = %+v: calls != ok + too_many + errors + canceled", st)
		}
		if st.InFlight != 0 || st.Busy != 0 || st.MaxInFlight != workers {
			t.Errorf("Stats() in_flight %d busy %d max_in_flight %d, want 0, 0, %d", st.InFlight, st.Busy, st.MaxInFlight, workers)
		}
		if maxBusy > capacity || maxBusy == 0 {
			t.Errorf("busy peaked at %d, want 1..%d", maxBusy, capacity)
		}
		if st.OK == 0 || st.TooMany == 0 || st.Errors == 0 {
			t.Errorf("Stats() = %+v, want some of each answer", st)
		}
	})
}

// simDo runs a request through h and returns the recorded answer.
func simDo(h http.Handler, method, target string, body io.Reader) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, body)
	if body != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestSimHandlerItems(t *testing.T) {
	tests := []struct {
		name       string
		cfg        SimConfig
		calls      int // calls before the one checked
		path       string
		status     int
		retryAfter string // the header; "" for none
		body       string
	}{
		{"ok", SimConfig{}, 0, "/items/abc", 200, "", `{"id":"abc","value":` + jsonNumber(simValue("abc")) + `}`},
		{"escaped key", SimConfig{}, 0, "/items/a%2Fb%20c", 200, "", `{"id":"a/b c","value":` + jsonNumber(simValue("a/b c")) + `}`},
		{"rate 429 rounds retry-after up to 1s", SimConfig{Rate: 10}, 1, "/items/k", 429, "1", `{"error":"rate limit exceeded"}`},
		{"rate 429 at a slow rate", SimConfig{Rate: 0.25}, 1, "/items/k", 429, "4", `{"error":"rate limit exceeded"}`},
		{"configured retry-after rounds up", SimConfig{Rate: 1, RetryAfter: 2500 * time.Millisecond}, 1, "/items/k", 429, "3", `{"error":"rate limit exceeded"}`},
		{"503", SimConfig{ErrorRate: 1}, 0, "/items/k", 503, "", `{"error":"service unavailable"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := NewSim(tt.cfg).Handler()
				for range tt.calls {
					simDo(h, "GET", tt.path, nil)
				}
				w := simDo(h, "GET", tt.path, nil)
				if w.Code != tt.status || w.Header().Get("Retry-After") != tt.retryAfter || w.Body.String() != tt.body {
					t.Errorf("GET %s = %d Retry-After %q %s, want %d %q %s", tt.path, w.Code, w.Header().Get("Retry-After"), w.Body, tt.status, tt.retryAfter, tt.body)
				}
				if ct := w.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
			})
		})
	}
}

func jsonNumber(v uint32) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSimHandlerConcurrency429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Concurrency: 1, Overload: Overload429, RetryAfter: 5 * time.Second})
		h := s.Handler()
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { simDo(h, "GET", "/items/a", nil) })
		synctest.Wait()
		w := simDo(h, "GET", "/items/b", nil)
		if w.Code != 429 || w.Header().Get("Retry-After") != "" {
			t.Errorf("GET at capacity = %d Retry-After %q, want 429 without Retry-After", w.Code, w.Header().Get("Retry-After"))
		}
	})
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Millisecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Millisecond, "2"},
		{2500 * time.Millisecond, "3"},
		{10 * time.Second, "10"},
	}
	for _, tt := range tests {
		if got := retryAfterSeconds(tt.d); got != tt.want {
			t.Errorf("retryAfterSeconds(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestSimHandlerStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSim(SimConfig{Rate: 1, Burst: 2, Concurrency: 7, Overload: Overload429})
		h := s.Handler()
		for range 3 {
			simDo(h, "GET", "/items/k", nil)
		}
		w := simDo(h, "GET", "/stats", nil)
		var got SimStats
		if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != 200 || err != nil {
			t.Fatalf("GET /stats = %d %s (%v), want 200 and JSON", w.Code, w.Body, err)
		}
		want := SimStats{Calls: 3, OK: 2, TooMany: 1, MaxInFlight: 1, Rate: 1, Burst: 2, Concurrency: 7, Overload: Overload429}
		if got != want {
			t.Errorf("GET /stats = %+v, want %+v", got, want)
		}
		for _, k := range []string{`"calls":3`, `"too_many":1`, `"max_in_flight":1`, `"overload":"429"`} {
			if !strings.Contains(w.Body.String(), k) {
				t.Errorf("GET /stats = %s, want it to hold %s", w.Body, k)
			}
		}
	})
}

func TestSimHandlerLimits(t *testing.T) {
	type limits struct {
		rate        float64
		burst       int
		concurrency int
	}
	start := limits{10, 4, 6}
	tests := []struct {
		name   string
		query  string // after /limits
		form   string // the body
		status int
		want   limits
		errMsg string // a part of the 400 body
	}{
		{"form sets all", "", "rate=5&burst=2&concurrency=3", 200, limits{5, 2, 3}, ""},
		{"query sets a subset", "?concurrency=0", "", 200, limits{10, 4, 0}, ""},
		{"form and query together", "?burst=9", "rate=2.5", 200, limits{2.5, 9, 6}, ""},
		{"rate 0 lifts the limit", "", "rate=0", 200, limits{0, 4, 6}, ""},
		{"nothing changes nothing", "", "", 200, start, ""},
		{"rate not a number", "", "rate=fast", 400, start, `adapters: sim rate "fast" is not a number`},
		{"negative rate", "", "rate=-1", 400, start, "adapters: sim rate -1"},
		{"infinite rate", "", "rate=Inf", 400, start, "adapters: sim rate +Inf"},
		{"NaN rate", "", "rate=NaN", 400, start, "adapters: sim rate NaN"},
		{"fractional burst", "", "burst=1.5", 400, start, `adapters: sim burst "1.5" is not an integer`},
		{"negative concurrency", "?concurrency=-2", "", 400, start, "adapters: sim concurrency -2"},
		{"one bad value changes nothing", "", "rate=3&burst=x", 400, start, "burst"},
		{"unknown field", "", "concurency=3", 400, start, `unknown field "concurency"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSim(SimConfig{Rate: start.rate, Burst: start.burst, Concurrency: start.concurrency})
			w := simDo(s.Handler(), "POST", "/limits"+tt.query, strings.NewReader(tt.form))
			if w.Code != tt.status {
				t.Errorf("POST /limits%s %q = %d %s, want %d", tt.query, tt.form, w.Code, w.Body, tt.status)
			}
			cfg := s.Config()
			if got := (limits{cfg.Rate, cfg.Burst, cfg.Concurrency}); got != tt.want {
				t.Errorf("POST /limits%s %q: limits %+v, want %+v", tt.query, tt.form, got, tt.want)
			}
			if tt.status == 400 && !strings.Contains(w.Body.String(), tt.errMsg) {
				t.Errorf("POST /limits%s %q = %s, want it to hold %q", tt.query, tt.form, w.Body, tt.errMsg)
			}
			if tt.status == 200 {
				var st SimStats
				if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Rate != tt.want.rate || st.Burst != tt.want.burst || st.Concurrency != tt.want.concurrency {
					t.Errorf("POST /limits answer %s (%v), want the new stats", w.Body, err)
				}
			}
		})
	}
}

func TestSimHandlerMethods(t *testing.T) {
	h := NewSim(SimConfig{Latency: time.Millisecond}).Handler()
	tests := []struct {
		method, path string
		status       int
	}{
		{"GET", "/limits", http.StatusMethodNotAllowed},
		{"POST", "/items/k", http.StatusMethodNotAllowed},
		{"GET", "/items/", http.StatusNotFound},
		{"GET", "/nothing", http.StatusNotFound},
	}
	for _, tt := range tests {
		if w := simDo(h, tt.method, tt.path, nil); w.Code != tt.status {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, w.Code, tt.status)
		}
	}
}

func TestStartSimServer(t *testing.T) {
	s := NewSim(SimConfig{Rate: 100, Burst: 1, Latency: time.Millisecond})
	base, shutdown, err := StartSimServer(s, "")
	if err != nil {
		t.Fatalf("StartSimServer: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() == "0" {
		t.Errorf("StartSimServer URL = %q, want http://127.0.0.1:PORT", base)
	}
	resp, err := http.Get(base + "/items/" + url.PathEscape("x/1"))
	if err != nil {
		t.Fatalf("GET item: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"id":"x/1","value":` + jsonNumber(simValue("x/1")) + `}`; resp.StatusCode != 200 || string(body) != want {
		t.Errorf("GET item = %d %s, want 200 %s", resp.StatusCode, body, want)
	}
	resp, err = http.Get(base + "/items/y")
	if err != nil {
		t.Fatalf("GET item: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("second GET at burst 1 = %d Retry-After %q, want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if st := s.Stats(); st.Calls != 2 {
		t.Errorf("Stats().Calls = %d, want 2", st.Calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, err := http.Get(base + "/stats"); err == nil {
		t.Errorf("GET after shutdown succeeded, want an error")
	}

	if _, _, err := StartSimServer(s, "256.0.0.1:0"); err == nil || !strings.HasPrefix(err.Error(), "adapters: sim server: ") {
		t.Errorf("StartSimServer on a bad address = %v, want an adapters: sim server error", err)
	}
}

func TestSimAdapter(t *testing.T) {
	tests := []struct {
		name  string
		cfg   SimConfig
		prime int // calls before the one checked
		want  engine.Outcome
	}{
		{"200 is ok with the body", SimConfig{}, 0,
			engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`{"id":"item-1","value":` + jsonNumber(simValue("item-1")) + `}`)}},
		{"rate 429 is retry with the exact wait", SimConfig{Rate: 4}, 1,
			engine.Outcome{Verdict: engine.Retry, Status: 429, Message: "429 Too Many Requests", RetryAfter: 200 * time.Millisecond}}, // 0.2 tokens refilled during the first call's 50ms
		{"configured retry-after", SimConfig{Rate: 1, RetryAfter: 2 * time.Second}, 1,
			engine.Outcome{Verdict: engine.Retry, Status: 429, Message: "429 Too Many Requests", RetryAfter: 2 * time.Second}},
		{"503 is retry", SimConfig{ErrorRate: 1}, 0,
			engine.Outcome{Verdict: engine.Retry, Status: 503, Message: "503 Service Unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := NewSimAdapter(NewSim(tt.cfg))
				it := engine.Item{Index: 1, Line: "item-1"}
				for range tt.prime {
					_, _ = a.Do(t.Context(), it) // priming: only the simulator's state matters
				}
				got, err := a.Do(t.Context(), it)
				if err != nil || got.Verdict != tt.want.Verdict || got.Status != tt.want.Status || got.Message != tt.want.Message ||
					got.RetryAfter != tt.want.RetryAfter || string(got.Output) != string(tt.want.Output) {
					t.Errorf("Do(%q) = %+v, %v; want %+v, nil", it.Line, got, err, tt.want)
				}
			})
		})
	}
}

func TestSimAdapterConcurrency429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := NewSimAdapter(NewSim(SimConfig{Concurrency: 1, Overload: Overload429}))
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { _, _ = a.Do(t.Context(), engine.Item{Line: "a"}) }) // the call is held; the test reads the simulator, not this outcome
		synctest.Wait()
		got, err := a.Do(t.Context(), engine.Item{Line: "b"})
		if err != nil || got.Verdict != engine.Retry || got.Status != 429 || got.RetryAfter != 0 {
			t.Errorf("Do at capacity = %+v, %v; want retry 429 without RetryAfter", got, err)
		}
	})
}

func TestSimAdapterContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := NewSimAdapter(NewSim(SimConfig{Latency: time.Second}))
		canceled, cancel := context.WithCancel(t.Context())
		cancel()
		if got, err := a.Do(canceled, engine.Item{Line: "k"}); !errors.Is(err, context.Canceled) || got.Status != 0 {
			t.Errorf("Do(canceled ctx) = %+v, %v; want no outcome, context.Canceled", got, err)
		}
		ctx, cancel2 := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel2()
		start := time.Now()
		got, err := a.Do(ctx, engine.Item{Line: "k"})
		if !errors.Is(err, context.DeadlineExceeded) || got.Status != 0 || time.Since(start) != 100*time.Millisecond {
			t.Errorf("Do(ctx with 100ms deadline) = %+v, %v after %v; want no outcome, context.DeadlineExceeded after 100ms", got, err, time.Since(start))
		}
	})
}
