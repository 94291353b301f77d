package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/throttle-dev/throttle/engine"
)

// Overload modes of a [Sim] past its hidden concurrency capacity.
const (
	// OverloadLatency makes a call that arrives with n calls already being served take
	// (n+1)/Concurrency times its normal latency once that ratio passes 1, like a server that
	// queues: throughput saturates at about Concurrency/Latency calls per second.
	OverloadLatency = "latency"
	// Overload429 answers 429 at once (without Retry-After) to a call that arrives while
	// Concurrency calls are being served.
	Overload429 = "429"
)

// Defaults of [SimConfig].
const (
	// DefaultSimLatency is the median latency used when SimConfig.Latency is 0.
	DefaultSimLatency = 50 * time.Millisecond
	// DefaultSimSigma is the lognormal spread that callers such as `throttle demo` should use by
	// default. SimConfig.Sigma 0 means a fixed latency, so NewSim cannot apply it by itself.
	DefaultSimSigma = 0.25
)

// SimConfig describes a simulated API: its hidden limits and how it answers.
// The zero value is a server without limits that answers every call after a fixed 50ms.
type SimConfig struct {
	// Rate is the number of calls per second the server accepts (a token bucket); 0 means no
	// rate limit. Calls past it get 429 with a Retry-After.
	Rate float64
	// Burst is the size of the rate bucket; 0 means 1 when Rate > 0.
	Burst int
	// Concurrency is how many calls the server serves at once without degrading; 0 means no
	// limit. Overload says what happens past it.
	Concurrency int
	// Overload is [OverloadLatency] (the default when empty) or [Overload429].
	Overload string
	// Latency is the median latency of a call; 0 means [DefaultSimLatency].
	Latency time.Duration
	// Sigma is the spread of the lognormal latency around its median (the standard deviation
	// of its logarithm); 0 means every call takes exactly Latency. See [DefaultSimSigma].
	Sigma float64
	// RetryAfter is the wait that rate-limit 429s ask for; 0 means the time until the bucket
	// holds the next token.
	RetryAfter time.Duration
	// ErrorRate is the share of admitted calls, from 0 to 1, that fail with 503.
	ErrorRate float64
	// Window and Quota are a fixed-window quota: at most Quota admitted calls in each Window,
	// the windows aligned to the Sim's start. Both 0 means none; set both or neither. Every
	// answer then says the quota (X-RateLimit-Limit, -Remaining, -Reset in whole seconds, rounded
	// up), and a call past it gets 429 with a Retry-After of the seconds until the window ends.
	Window time.Duration
	Quota  int
	// Seed seeds the random latencies and errors.
	Seed int64
}

// Validate reports the first invalid field of c, or nil.
func (c SimConfig) Validate() error {
	if err := checkSimLimits(c.Rate, c.Burst, c.Concurrency); err != nil {
		return err
	}
	if err := checkSimQuota(c.Quota, c.Window); err != nil {
		return err
	}
	switch {
	case c.Overload != "" && c.Overload != OverloadLatency && c.Overload != Overload429:
		return fmt.Errorf("adapters: sim overload %q is neither %q nor %q", c.Overload, OverloadLatency, Overload429)
	case c.Latency < 0:
		return fmt.Errorf("adapters: sim latency %v is negative", c.Latency)
	case c.Sigma < 0 || math.IsNaN(c.Sigma) || math.IsInf(c.Sigma, 0):
		return fmt.Errorf("adapters: sim sigma %v is not a finite number >= 0", c.Sigma)
	case c.RetryAfter < 0:
		return fmt.Errorf("adapters: sim retry-after %v is negative", c.RetryAfter)
	case !(c.ErrorRate >= 0 && c.ErrorRate <= 1):
		return fmt.Errorf("adapters: sim error rate %v is not between 0 and 1", c.ErrorRate)
	}
	return nil
}

// checkSimLimits validates the live limits of a Sim.
func checkSimLimits(r float64, burst, concurrency int) error {
	switch {
	case r < 0 || math.IsNaN(r) || math.IsInf(r, 0):
		return fmt.Errorf("adapters: sim rate %v is not a finite number >= 0", r)
	case burst < 0:
		return fmt.Errorf("adapters: sim burst %d is negative", burst)
	case concurrency < 0:
		return fmt.Errorf("adapters: sim concurrency %d is negative", concurrency)
	}
	return nil
}

// checkSimQuota validates a fixed-window quota of a Sim.
func checkSimQuota(quota int, window time.Duration) error {
	switch {
	case quota < 0:
		return fmt.Errorf("adapters: sim quota %d is negative", quota)
	case window < 0:
		return fmt.Errorf("adapters: sim window %v is negative", window)
	case quota > 0 && window == 0:
		return fmt.Errorf("adapters: sim quota %d needs a window", quota)
	case quota == 0 && window > 0:
		return fmt.Errorf("adapters: sim window %v needs a quota", window)
	}
	return nil
}

// SimAnswer is the answer of a [Sim] to one call.
type SimAnswer struct {
	// Status is the HTTP status: 200, 429 or 503; 0 when ctx ended before the answer.
	Status int
	// RetryAfter is the wait a 429 asks for, exact (the HTTP header rounds it up to whole
	// seconds); 0 when the answer asks for none.
	RetryAfter time.Duration
	// Body is a small JSON object: {"id":KEY,"value":N} for 200, {"error":MESSAGE} otherwise.
	Body []byte
	// Quota is the fixed-window quota as the answer states it (Reset in whole seconds, rounded
	// up, as the HTTP header says it); nil when the Sim has none.
	Quota *engine.Quota
}

// SimStats counts the calls a [Sim] received and shows its current limits.
type SimStats struct {
	// Calls counts every call: Calls = OK + TooMany + Errors + Canceled once none is in flight.
	Calls int64 `json:"calls"`
	// OK counts 200 answers.
	OK int64 `json:"ok"`
	// TooMany counts 429 answers (rate or concurrency).
	TooMany int64 `json:"too_many"`
	// Errors counts 503 answers.
	Errors int64 `json:"errors"`
	// Canceled counts calls whose ctx ended before their answer.
	Canceled int64 `json:"canceled"`
	// InFlight is the number of calls inside Serve now, rejected ones included: the client's
	// concurrency as the server sees it.
	InFlight int64 `json:"in_flight"`
	// MaxInFlight is the highest InFlight since the Sim started or since ResetMaxInFlight.
	MaxInFlight int64 `json:"max_in_flight"`
	// Busy is the number of admitted calls being served now: what Concurrency limits.
	Busy int `json:"busy"`
	// Rate is the current rate limit in calls per second; 0 means none.
	Rate float64 `json:"rate"`
	// Burst is the current bucket size.
	Burst int `json:"burst"`
	// Concurrency is the current concurrency capacity; 0 means none.
	Concurrency int `json:"concurrency"`
	// Overload is the overload mode, [OverloadLatency] or [Overload429].
	Overload string `json:"overload"`
	// Quota is the fixed-window quota, calls per Window; 0 means none.
	Quota int `json:"quota"`
	// Window is the quota's window, in nanoseconds in JSON.
	Window time.Duration `json:"window_ns"`
	// QuotaUsed is how much of the current window's quota the calls so far used.
	QuotaUsed int `json:"quota_used"`
}

// Sim is a simulated external API with hidden limits, served in process by [Sim.Serve], over
// HTTP by [Sim.Handler], or to the engine by [SimAdapter]. Its limits may change while it runs
// ([Sim.SetLimits]). A Sim is safe for concurrent use.
type Sim struct {
	calls, ok, tooMany, errs, canceled atomic.Int64
	inFlight, maxInFlight              atomic.Int64

	start time.Time // when NewSim made it

	mu   sync.Mutex
	cfg  SimConfig     // with defaults applied and the live limits; guarded by mu
	lim  *rate.Limiter // nil when cfg.Rate == 0; guarded by mu
	rng  *rand.Rand    // guarded by mu
	busy int           // admitted calls being served; guarded by mu
	// The fixed-window quota, when cfg.Quota > 0: windows of cfg.Window from winOrigin; winIdx
	// is the window that used counts in. Guarded by mu.
	winOrigin time.Time
	winIdx    int64
	used      int

	// The timeline of answers, once EnableTimeline was called: the instants of 200 and 429
	// answers as offsets from start.
	timeline    atomic.Bool
	tlMu        sync.Mutex
	tlOK, tl429 []time.Duration // guarded by tlMu
}

// NewSim returns a Sim configured by cfg, with a full rate bucket. It panics if cfg is not
// valid: a caller holding user input checks it first with [SimConfig.Validate].
func NewSim(cfg SimConfig) *Sim {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.Overload == "" {
		cfg.Overload = OverloadLatency
	}
	if cfg.Latency == 0 {
		cfg.Latency = DefaultSimLatency
	}
	now := time.Now()
	s := &Sim{rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x7468726f74746c65)), start: now, winOrigin: now}
	s.cfg = cfg
	s.setLimitsLocked(now, cfg.Rate, cfg.Burst, cfg.Concurrency)
	return s
}

// Started returns when the Sim was made: the origin of its quota windows and of [Sim.OKTimeline].
func (s *Sim) Started() time.Time { return s.start }

// Config returns the Sim's configuration with its defaults applied and its current limits.
func (s *Sim) Config() SimConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// SetLimits replaces the hidden limits at once, for the calls that arrive from now on: rate
// in calls per second (0 for none), the bucket's burst (0 for 1) and the concurrency capacity
// (0 for none). The bucket keeps its tokens, clamped to the new burst; it starts full when a
// rate limit is set where there was none. SetLimits panics if a value is negative or the rate
// is not finite.
func (s *Sim) SetLimits(rate float64, burst, concurrency int) {
	if err := checkSimLimits(rate, burst, concurrency); err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLimitsLocked(time.Now(), rate, burst, concurrency)
}

// SetQuota replaces the fixed-window quota at once: quota calls per window (both 0 for none).
// A new window length restarts the windows now, with the whole quota; a new quota alone keeps
// the current window and what it used. SetQuota panics if the values are not valid (see
// [SimConfig.Quota]).
func (s *Sim) SetQuota(quota int, window time.Duration) {
	if err := checkSimQuota(quota, window); err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setQuotaLocked(time.Now(), quota, window)
}

// setQuotaLocked applies a valid quota at instant now. It requires that s.mu is held.
func (s *Sim) setQuotaLocked(now time.Time, quota int, window time.Duration) {
	if window != s.cfg.Window {
		s.winOrigin, s.winIdx, s.used = now, 0, 0
	}
	s.cfg.Quota, s.cfg.Window = quota, window
}

// windowLocked moves the quota to the window of instant now and returns how long until that
// window ends, rounded up to whole seconds (at least 1s) as rate-limit headers say it. It
// requires that s.mu is held and cfg.Quota > 0.
func (s *Sim) windowLocked(now time.Time) time.Duration {
	elapsed := max(now.Sub(s.winOrigin), 0)
	k := int64(elapsed / s.cfg.Window)
	if k != s.winIdx {
		s.winIdx, s.used = k, 0
	}
	end := s.winOrigin.Add(time.Duration(k+1) * s.cfg.Window)
	return ceilSecond(end.Sub(now))
}

// ceilSecond rounds d up to whole seconds, at least one.
func ceilSecond(d time.Duration) time.Duration {
	return max((d+time.Second-1)/time.Second, 1) * time.Second
}

// setLimitsLocked applies valid limits at instant now. It requires that s.mu is held.
func (s *Sim) setLimitsLocked(now time.Time, r float64, burst, concurrency int) {
	if r > 0 && burst < 1 {
		burst = 1
	}
	switch {
	case r == 0:
		s.lim = nil
	case s.lim == nil:
		s.lim = rate.NewLimiter(rate.Limit(r), burst)
	default:
		s.lim.SetLimitAt(now, rate.Limit(r))
		s.lim.SetBurstAt(now, burst)
	}
	s.cfg.Rate, s.cfg.Burst, s.cfg.Concurrency = r, burst, concurrency
}

// Stats returns the Sim's counters and current limits.
func (s *Sim) Stats() SimStats {
	st := SimStats{
		Calls:       s.calls.Load(),
		OK:          s.ok.Load(),
		TooMany:     s.tooMany.Load(),
		Errors:      s.errs.Load(),
		Canceled:    s.canceled.Load(),
		InFlight:    s.inFlight.Load(),
		MaxInFlight: s.maxInFlight.Load(),
	}
	s.mu.Lock()
	st.Busy = s.busy
	st.Rate, st.Burst, st.Concurrency, st.Overload = s.cfg.Rate, s.cfg.Burst, s.cfg.Concurrency, s.cfg.Overload
	if s.cfg.Quota > 0 {
		s.windowLocked(time.Now())
		st.Quota, st.Window, st.QuotaUsed = s.cfg.Quota, s.cfg.Window, s.used
	}
	s.mu.Unlock()
	return st
}

// ResetMaxInFlight restarts the MaxInFlight of [Sim.Stats] from the current InFlight.
func (s *Sim) ResetMaxInFlight() {
	s.maxInFlight.Store(s.inFlight.Load())
}

// simDecision is what the server does with one call.
type simDecision struct {
	status     int
	retryAfter time.Duration
	latency    time.Duration // how long until the answer
	busy       bool          // the call holds a unit of concurrency capacity until it ends
	msg        string        // the error of a non-200 answer
	quota      *engine.Quota // the quota the answer states; nil when there is none
}

// decide is decideLocked with s.mu held.
func (s *Sim) decide(now time.Time, busy int) simDecision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decideLocked(now, busy)
}

// decideLocked decides the fate of a call arriving at instant now while busy admitted calls
// are being served. When the call is admitted it takes a token from the bucket and a unit of
// the window's quota; it draws from the random source; nothing else changes. The checks run
// in this order: concurrency (429 mode), quota, rate. It requires that s.mu is held.
func (s *Sim) decideLocked(now time.Time, busy int) simDecision {
	base := s.sampleLatencyLocked()
	fast := base / 10
	var q *engine.Quota
	if s.cfg.Quota > 0 {
		reset := s.windowLocked(now)
		q = &engine.Quota{Limit: int64(s.cfg.Quota), Remaining: int64(max(s.cfg.Quota-s.used, 0)), Reset: reset}
	}
	c := s.cfg.Concurrency
	if c > 0 && busy >= c && s.cfg.Overload == Overload429 {
		return simDecision{status: http.StatusTooManyRequests, latency: fast, msg: "too many concurrent requests", quota: q}
	}
	if q != nil && q.Remaining == 0 {
		return simDecision{status: http.StatusTooManyRequests, retryAfter: q.Reset, latency: fast, msg: "quota exceeded", quota: q}
	}
	if s.lim != nil && !s.lim.AllowN(now, 1) {
		ra := s.cfg.RetryAfter
		if ra == 0 {
			ra = untilNextToken(s.lim.TokensAt(now), s.cfg.Rate)
		}
		return simDecision{status: http.StatusTooManyRequests, retryAfter: ra, latency: fast, msg: "rate limit exceeded", quota: q}
	}
	if q != nil {
		s.used++
		q.Remaining--
	}
	lat := base
	if c > 0 && busy+1 > c && s.cfg.Overload == OverloadLatency {
		lat = time.Duration(float64(base) * float64(busy+1) / float64(c))
	}
	if s.cfg.ErrorRate > 0 && s.rng.Float64() < s.cfg.ErrorRate {
		return simDecision{status: http.StatusServiceUnavailable, latency: lat, busy: true, msg: "service unavailable", quota: q}
	}
	return simDecision{status: http.StatusOK, latency: lat, busy: true, quota: q}
}

// sampleLatencyLocked draws a lognormal latency with median cfg.Latency. It requires that s.mu
// is held.
func (s *Sim) sampleLatencyLocked() time.Duration {
	if s.cfg.Sigma == 0 {
		return s.cfg.Latency
	}
	return time.Duration(float64(s.cfg.Latency) * math.Exp(s.cfg.Sigma*s.rng.NormFloat64()))
}

// untilNextToken returns how long a bucket holding tokens (< 1) and filling at r per second
// takes to hold one, rounded up to the millisecond (with a nanosecond of slack so that float
// noise cannot add a millisecond).
func untilNextToken(tokens, r float64) time.Duration {
	ms := math.Ceil((1-tokens)/r*1e3 - 1e-6)
	if ms < 1 {
		ms = 1
	}
	return time.Duration(ms) * time.Millisecond
}

// Serve answers one call for key: it decides as the hidden limits say, then waits the call's
// latency (a short one for a 429) and returns the answer. When ctx ends first, Serve returns
// at once with Status 0. Serve is what the HTTP handler and [SimAdapter] call.
func (s *Sim) Serve(ctx context.Context, key string) SimAnswer {
	s.calls.Add(1)
	s.noteInFlight(s.inFlight.Add(1))
	defer s.inFlight.Add(-1)
	if ctx.Err() != nil {
		s.canceled.Add(1)
		return SimAnswer{}
	}

	s.mu.Lock()
	d := s.decideLocked(time.Now(), s.busy)
	if d.busy {
		s.busy++
	}
	s.mu.Unlock()
	if d.busy {
		defer func() {
			s.mu.Lock()
			s.busy--
			s.mu.Unlock()
		}()
	}

	t := time.NewTimer(d.latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		s.canceled.Add(1)
		return SimAnswer{}
	case <-t.C:
	}

	switch d.status {
	case http.StatusOK:
		s.ok.Add(1)
		s.note(&s.tlOK)
		body, _ := json.Marshal(struct {
			ID    string `json:"id"`
			Value uint32 `json:"value"`
		}{simID(key), simValue(key)})
		return SimAnswer{Status: d.status, Body: body, Quota: d.quota}
	case http.StatusTooManyRequests:
		s.tooMany.Add(1)
		s.note(&s.tl429)
	default:
		s.errs.Add(1)
	}
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{d.msg})
	return SimAnswer{Status: d.status, RetryAfter: d.retryAfter, Body: body, Quota: d.quota}
}

// note appends the instant of an answer to a timeline, if the timeline is on.
func (s *Sim) note(tl *[]time.Duration) {
	if !s.timeline.Load() {
		return
	}
	at := time.Since(s.start)
	s.tlMu.Lock()
	*tl = append(*tl, at)
	s.tlMu.Unlock()
}

// EnableTimeline makes the Sim note the instant of each 200 and 429 answer from now on, for
// [Sim.Timeline] and [Sim.OKTimeline]: a lock and 8 bytes per answer, so it is off by default.
func (s *Sim) EnableTimeline() { s.timeline.Store(true) }

// Timeline counts the 200 and 429 answers noted since [Sim.EnableTimeline] in buckets of
// width bucket from instant from: ok[i] and tooMany[i] count the answers given in
// [from+i·bucket, from+(i+1)·bucket). Answers before from are left out. Both slices have the
// same length, up to the bucket of the last answer. It panics if bucket is not positive.
func (s *Sim) Timeline(from time.Time, bucket time.Duration) (ok, tooMany []int64) {
	if bucket <= 0 {
		panic(fmt.Sprintf("adapters: sim timeline bucket %v is not positive", bucket))
	}
	off := from.Sub(s.start)
	s.tlMu.Lock()
	defer s.tlMu.Unlock()
	n := 0
	for _, tl := range [][]time.Duration{s.tlOK, s.tl429} {
		for _, at := range tl {
			if at >= off {
				n = max(n, int((at-off)/bucket)+1)
			}
		}
	}
	ok, tooMany = make([]int64, n), make([]int64, n)
	for _, at := range s.tlOK {
		if at >= off {
			ok[(at-off)/bucket]++
		}
	}
	for _, at := range s.tl429 {
		if at >= off {
			tooMany[(at-off)/bucket]++
		}
	}
	return ok, tooMany
}

// OKTimeline counts the 200 answers per bucket since the Sim started: [Sim.Timeline] from
// [Sim.Started].
func (s *Sim) OKTimeline(bucket time.Duration) []int64 {
	ok, _ := s.Timeline(s.start, bucket)
	return ok
}

// noteInFlight raises MaxInFlight to n if n is higher.
func (s *Sim) noteInFlight(n int64) {
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			return
		}
	}
}

// simValue is the deterministic number a Sim answers for key.
func simValue(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32() % 1_000_000
}

// Handler returns the Sim's HTTP API:
//
//	GET  /items/{key}  Serve(key): 200, 429 (with Retry-After in whole seconds) or 503, JSON body;
//	                   with a quota, X-RateLimit-Limit, -Remaining and -Reset (seconds) on each
//	GET  /stats        Stats as JSON
//	POST /limits       set any of rate, burst, concurrency, quota, window (form or query
//	                   values; window as a duration such as 2s, or seconds); answers Stats
//
// The key is the unescaped path segment, so a key holding "/" must be sent escaped (%2F).
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{key}", s.serveItem)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeSimJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("POST /limits", s.serveLimits)
	return mux
}

// serveItem answers GET /items/{key}.
func (s *Sim) serveItem(w http.ResponseWriter, r *http.Request) {
	a := s.Serve(r.Context(), r.PathValue("key"))
	if a.Status == 0 {
		return // the client is gone
	}
	if a.Status == http.StatusTooManyRequests && a.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(a.RetryAfter))
	}
	if q := a.Quota; q != nil {
		w.Header().Set("X-RateLimit-Limit", strconv.FormatInt(q.Limit, 10))
		w.Header().Set("X-RateLimit-Remaining", strconv.FormatInt(q.Remaining, 10))
		w.Header().Set("X-RateLimit-Reset", retryAfterSeconds(q.Reset))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body) // the client went away: nothing to tell it
}

// retryAfterSeconds formats d as a Retry-After delta: whole seconds rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	secs := (d + time.Second - 1) / time.Second
	return strconv.FormatInt(max(int64(secs), 1), 10)
}

// serveLimits answers POST /limits.
func (s *Sim) serveLimits(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "adapters: sim limits: "+err.Error(), http.StatusBadRequest)
		return
	}
	for k := range r.Form {
		if k != "rate" && k != "burst" && k != "concurrency" && k != "quota" && k != "window" {
			http.Error(w, fmt.Sprintf("adapters: sim limits: unknown field %q (want rate, burst, concurrency, quota, window)", k), http.StatusBadRequest)
			return
		}
	}
	var (
		rt      *float64
		burst   *int
		conc    *int
		quota   *int
		window  *time.Duration
		problem error
	)
	if v, ok := r.Form["rate"]; ok {
		f, err := strconv.ParseFloat(v[0], 64)
		if err != nil {
			problem = errors.Join(problem, fmt.Errorf("adapters: sim rate %q is not a number", v[0]))
		}
		rt = &f
	}
	if v, ok := r.Form["burst"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil {
			problem = errors.Join(problem, fmt.Errorf("adapters: sim burst %q is not an integer", v[0]))
		}
		burst = &n
	}
	if v, ok := r.Form["concurrency"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil {
			problem = errors.Join(problem, fmt.Errorf("adapters: sim concurrency %q is not an integer", v[0]))
		}
		conc = &n
	}
	if v, ok := r.Form["quota"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil {
			problem = errors.Join(problem, fmt.Errorf("adapters: sim quota %q is not an integer", v[0]))
		}
		quota = &n
	}
	if v, ok := r.Form["window"]; ok {
		d, err := parseSimWindow(v[0])
		if err != nil {
			problem = errors.Join(problem, err)
		}
		window = &d
	}
	if problem != nil {
		http.Error(w, problem.Error(), http.StatusBadRequest)
		return
	}

	s.mu.Lock()
	newRate, newBurst, newConc := s.cfg.Rate, s.cfg.Burst, s.cfg.Concurrency
	if rt != nil {
		newRate = *rt
	}
	if burst != nil {
		newBurst = *burst
	}
	if conc != nil {
		newConc = *conc
	}
	newQuota, newWindow := s.cfg.Quota, s.cfg.Window
	if quota != nil {
		newQuota = *quota
	}
	if window != nil {
		newWindow = *window
	}
	err := checkSimLimits(newRate, newBurst, newConc)
	if err == nil {
		err = checkSimQuota(newQuota, newWindow)
	}
	if err == nil {
		now := time.Now()
		s.setLimitsLocked(now, newRate, newBurst, newConc)
		s.setQuotaLocked(now, newQuota, newWindow)
	}
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeSimJSON(w, http.StatusOK, s.Stats())
}

// parseSimWindow parses a quota window of POST /limits: a duration such as 2s or 500ms, or a
// number of seconds.
func parseSimWindow(v string) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return d, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e9 {
		return 0, fmt.Errorf("adapters: sim window %q is not a duration (e.g. 2s) or a number of seconds", v)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// writeSimJSON writes v as a JSON answer.
func writeSimJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "adapters: sim: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // the client went away: nothing to tell it
}

// StartSimServer serves s.Handler over HTTP on addr ("127.0.0.1:0", a free loopback port, when
// empty) until shutdown is called. It returns the server's base URL, e.g.
// "http://127.0.0.1:41234", whose items are at url+"/items/KEY". shutdown is
// [net/http.Server.Shutdown]: it waits for the calls in flight.
func StartSimServer(s *Sim, addr string) (url string, shutdown func(context.Context) error, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("adapters: sim server: %w", err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ErrServerClosed once shut down
	return "http://" + ln.Addr().String(), srv.Shutdown, nil
}

// SimAdapter is the [engine.Adapter] of a [Sim]: it serves each item in process, with the
// item's line as key. It is safe for concurrent use.
type SimAdapter struct {
	sim *Sim
}

var _ engine.Adapter = (*SimAdapter)(nil)

// NewSimAdapter returns an adapter that calls s.
func NewSimAdapter(s *Sim) *SimAdapter {
	return &SimAdapter{sim: s}
}

// Do serves it.Line. A 200 is [engine.OK] with the JSON body as Output; a 429 or 503 is
// [engine.Retry] with its status, a message such as "429 Too Many Requests" and the exact
// RetryAfter the Sim asked for. With a quota, each outcome carries it as Quota, as the http
// adapter reads it from the headers. When ctx ends before the answer, Do returns ctx.Err().
func (a *SimAdapter) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	ans := a.sim.Serve(ctx, it.Line)
	if ans.Status == 0 {
		if err := ctx.Err(); err != nil {
			return engine.Outcome{}, err
		}
		return engine.Outcome{}, errors.New("adapters: sim gave no answer")
	}
	out := engine.Outcome{Status: ans.Status, Quota: ans.Quota}
	switch {
	case ans.Status == http.StatusOK:
		out.Verdict = engine.OK
		out.Output = json.RawMessage(ans.Body)
		return out, nil
	case ans.Status == http.StatusTooManyRequests || ans.Status >= 500:
		out.Verdict = engine.Retry
	default:
		out.Verdict = engine.Fail
	}
	out.Message = fmt.Sprintf("%d %s", ans.Status, http.StatusText(ans.Status))
	out.RetryAfter = ans.RetryAfter
	return out, nil
}

// simMaxID is the most of an item the simulated API echoes as its answer's id: a real API
// answers a long request with a short record, and an echo of an 8 MiB line would double what
// each row holds.
const simMaxID = 1 << 10

// simID is the id the simulated API answers for key: key, cut to simMaxID bytes at a rune
// boundary.
func simID(key string) string {
	if len(key) <= simMaxID {
		return key
	}
	n := simMaxID
	for n > 0 && !utf8.RuneStart(key[n]) {
		n--
	}
	return key[:n]
}
