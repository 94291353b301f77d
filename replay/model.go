package replay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/record"
)

// Model is a target as a recording saw it: how long it took to answer by how many calls were
// in flight, where its 429s began, and how often it failed otherwise.
type Model struct {
	// buckets hold the latencies of answered calls by calls in flight at their start,
	// ordered by in-flight.
	buckets []latencyBucket
	// queues is set when the latency grew with the calls in flight (see fitLatency).
	queues bool

	// MaxInFlight is the most calls in flight the recording saw; MaxRate the highest calls/s
	// over a 5 s window.
	MaxInFlight int
	MaxRate     float64

	// Rate is the target's estimated rate limit (calls/s accepted while it answered 429 with a
	// Retry-After); 0 when it never did. Burst is its estimated bucket.
	Rate  float64
	Burst int
	// RetryAfter is the Retry-After its 429s asked for when it was always the same; 0 when it
	// varied, as when a server names the time to its next token.
	RetryAfter time.Duration
	// Concurrency is the calls the target served at once before answering 429 without a
	// Retry-After; 0 when it never did.
	Concurrency int
	// TooManyLatency is how long a 429 took to come back.
	TooManyLatency time.Duration
	// RetryShare is the share of answered calls that failed and were retryable (5xx, network
	// errors); FailShare the share that failed for good. ErrStatus is the commonest status
	// of the retryable failures (0: no answer).
	RetryShare, FailShare float64
	ErrStatus             int
	// Calls is how many calls the model was fitted from.
	Calls int
}

type latencyBucket struct {
	lo, hi  int     // calls in flight, inclusive
	mean    float64 // the mean calls in flight of its samples
	samples []time.Duration
	median  time.Duration
}

// maxSamples bounds what a bucket keeps: enough for a p99, small for a long recording.
const maxSamples = 2000

// minBucket is the fewest calls a latency bucket is made of.
const minBucket = 50

// Fit fits a model of the target from a recording.
func Fit(rec *record.Recording) (*Model, error) {
	m := &Model{Calls: len(rec.Calls)}
	if len(rec.Calls) < minBucket {
		return nil, fmt.Errorf("the recording holds %d calls; a model needs at least %d", len(rec.Calls), minBucket)
	}
	var answered, retryErr, failErr int
	statuses := map[int]int{}
	var tooManyLat, retryAfters []time.Duration
	byInFlight := map[int][]time.Duration{}
	for _, c := range rec.Calls {
		m.MaxInFlight = max(m.MaxInFlight, int(c.InFlight))
		if c.Class == probes.ClassTooMany {
			tooManyLat = append(tooManyLat, c.Latency)
			if c.RetryAfter > 0 {
				retryAfters = append(retryAfters, c.RetryAfter)
			}
			continue
		}
		answered++
		switch {
		case c.Class == probes.ClassOK:
			byInFlight[int(c.InFlight)] = append(byInFlight[int(c.InFlight)], c.Latency)
		case c.Verdict == engine.Fail:
			failErr++
		default:
			retryErr++
			statuses[int(c.Status)]++
		}
	}
	if answered > 0 {
		m.RetryShare, m.FailShare = float64(retryErr)/float64(answered), float64(failErr)/float64(answered)
	}
	for st, n := range statuses {
		if n > statuses[m.ErrStatus] || (n == statuses[m.ErrStatus] && st > m.ErrStatus) {
			m.ErrStatus = st
		}
	}
	m.fitLatency(byInFlight)
	if len(m.buckets) == 0 {
		return nil, errors.New("the recording holds too few answered calls to fit the target's latency")
	}
	m.TooManyLatency = median(tooManyLat)
	if len(retryAfters) > 0 {
		slices.Sort(retryAfters)
		lo, hi := retryAfters[len(retryAfters)/10], retryAfters[len(retryAfters)*9/10]
		if hi-lo <= hi/10 {
			m.RetryAfter = median(retryAfters)
		}
	}
	m.fitLimits(rec)
	return m, nil
}

// fitLatency groups answered calls by in-flight into buckets of at least minBucket calls.
func (m *Model) fitLatency(by map[int][]time.Duration) {
	levels := make([]int, 0, len(by))
	for n := range by {
		levels = append(levels, n)
	}
	slices.Sort(levels)
	var cur *latencyBucket
	for _, n := range levels {
		if cur == nil {
			cur = &latencyBucket{lo: n}
		}
		cur.hi = n
		cur.mean += float64(n * len(by[n]))
		cur.samples = append(cur.samples, by[n]...)
		// Close a bucket once it holds enough calls, or once it grows wide: a bucket that
		// spans 9 to 24 in flight would hide the knee the model is for.
		if len(cur.samples) >= minBucket || (cur.hi-cur.lo+1 > max(2, cur.lo/4) && len(cur.samples) >= minBucket/5) {
			m.buckets = append(m.buckets, *cur)
			cur = nil
		}
	}
	if cur != nil { // a thin top: fold it into the bucket below, or keep it alone
		if k := len(m.buckets); k > 0 {
			m.buckets[k-1].hi = cur.hi
			m.buckets[k-1].mean += cur.mean
			m.buckets[k-1].samples = append(m.buckets[k-1].samples, cur.samples...)
		} else {
			m.buckets = append(m.buckets, *cur)
		}
	}
	for i := range m.buckets {
		b := &m.buckets[i]
		b.mean /= float64(len(b.samples))
		slices.Sort(b.samples)
		b.median = b.samples[len(b.samples)/2]
		if len(b.samples) > maxSamples { // keep evenly spaced quantiles
			kept := make([]time.Duration, maxSamples)
			for j := range kept {
				kept[j] = b.samples[j*len(b.samples)/maxSamples]
			}
			b.samples = kept
		}
	}
	// A target whose latency grew by a quarter or more over the range has passed its capacity
	// and queues: its throughput holds, so past the data its latency grows in proportion to
	// the calls in flight.
	m.queues = len(m.buckets) > 1 && m.buckets[len(m.buckets)-1].median > m.buckets[0].median*5/4
}

// fitLimits estimates where the target began to answer 429, by rate or by concurrency, and
// the most the recording asked of it.
func (m *Model) fitLimits(rec *record.Recording) {
	calls := slices.Clone(rec.Calls)
	slices.SortFunc(calls, func(a, b record.Call) int { return int(a.Start - b.Start) })
	end := calls[len(calls)-1].Start
	const window = 5 * time.Second
	// Windows of 5 s, every second: all calls started (what was asked), those accepted and
	// the 429s with and without a Retry-After.
	var bestAccepted float64
	var peakSecond int64
	sec := func(d time.Duration) int { return int(d / time.Second) }
	n := sec(end) + 1
	started, accepted, timed := make([]int64, n), make([]int64, n), make([]int64, n)
	tooManyAt := map[int][2]int{} // in flight → (calls, 429s without Retry-After)
	for _, c := range calls {
		s := sec(c.Start)
		started[s]++
		x := tooManyAt[int(c.InFlight)]
		x[0]++
		switch {
		case c.Class != probes.ClassTooMany:
			accepted[s]++
		case c.RetryAfter > 0:
			timed[s]++
		default:
			x[1]++
		}
		tooManyAt[int(c.InFlight)] = x
	}
	w := int(window / time.Second)
	for i := 0; i+w <= n || (i == 0 && n < w); i++ {
		var st, acc, tm int64
		for j := i; j < min(i+w, n); j++ {
			st, acc, tm = st+started[j], acc+accepted[j], tm+timed[j]
		}
		span := float64(min(w, n-i))
		m.MaxRate = max(m.MaxRate, float64(st)/span)
		if tm > 0 {
			bestAccepted = max(bestAccepted, float64(acc)/span)
		}
	}
	for s := range n {
		if timed[s] > 0 {
			peakSecond = max(peakSecond, accepted[s])
		}
	}
	if bestAccepted > 0 {
		m.Rate, m.Burst = fitBucket(calls, bestAccepted, peakSecond)
	}
	// Concurrency: the lowest in-flight from which most calls got a 429 without Retry-After.
	levels := make([]int, 0, len(tooManyAt))
	for k := range tooManyAt {
		levels = append(levels, k)
	}
	slices.Sort(levels)
	for _, k := range levels {
		if x := tooManyAt[k]; x[0] >= 10 && float64(x[1]) > 0.5*float64(x[0]) {
			m.Concurrency = max(1, k-1)
			break
		}
	}
}

// fitBucket finds the token bucket (rate, burst) that best explains which calls the target
// accepted and which it answered 429 with a Retry-After: the bucket is replayed over the
// calls in the order they started, and the candidate that mispredicts fewest answers wins.
// The accepted rate alone would be misleading: after every shared Retry-After pause the
// workers come back together and a bucket of one token turns most of them away, so a target
// that takes 200 calls/s can be seen accepting a few.
func fitBucket(calls []record.Call, accepted float64, peak int64) (float64, int) {
	type arrival struct {
		at time.Duration
		ok bool
	}
	var seq []arrival
	for _, c := range calls {
		if c.Class == probes.ClassTooMany && c.RetryAfter == 0 {
			continue // a concurrency 429: not the bucket's
		}
		seq = append(seq, arrival{c.Start, c.Class != probes.ClassTooMany})
	}
	misses := func(r float64, b int) int {
		tokens, last, n := float64(b), time.Duration(0), 0
		for _, a := range seq {
			tokens = min(float64(b), tokens+r*(a.at-last).Seconds())
			last = a.at
			if (tokens >= 1) != a.ok {
				n++
			}
			if a.ok {
				tokens = max(tokens-1, 0)
			}
		}
		return n
	}
	bestR, bestB, best := accepted, 1, misses(accepted, 1)
	try := func(r float64, b int) {
		if n := misses(r, b); n < best {
			bestR, bestB, best = r, b, n
		}
	}
	hi := max(float64(peak), accepted) * 200
	for _, b := range []int{1, 2, 3, 5, 10, 20, 50} {
		for r := accepted / 2; r <= hi; r *= 1.1 {
			try(r, b)
		}
	}
	for r := bestR * 0.9; r <= bestR*1.1; r *= 1.005 { // refine
		try(r, bestB)
	}
	return bestR, bestB
}

// latencyAt draws an answered call's latency with n calls in flight (itself included).
func (m *Model) latencyAt(n int, rng *rand.Rand) time.Duration {
	i, _ := slices.BinarySearchFunc(m.buckets, n, func(b latencyBucket, n int) int {
		switch {
		case b.hi < n:
			return -1
		case b.lo > n:
			return 1
		}
		return 0
	})
	i = min(i, len(m.buckets)-1)
	b := m.buckets[i]
	d := b.samples[rng.IntN(len(b.samples))]
	if n > b.hi && m.queues {
		d = time.Duration(float64(d) * float64(n) / b.mean)
	}
	return d
}

// String describes the model in one paragraph.
func (m *Model) String() string {
	var parts []string
	lo, hi := m.buckets[0], m.buckets[len(m.buckets)-1]
	lat := fmt.Sprintf("latency %s at %s in flight", human.Latency(lo.median), levels(lo))
	if len(m.buckets) > 1 {
		lat += fmt.Sprintf(", %s at %s", human.Latency(hi.median), levels(hi))
	}
	if m.queues {
		lat += " (it queues: past that, latency grows with the calls in flight)"
	}
	parts = append(parts, lat)
	if m.Rate > 0 {
		ra := "the time to its next token"
		if m.RetryAfter > 0 {
			ra = human.Latency(m.RetryAfter)
		}
		parts = append(parts, fmt.Sprintf("429s past about %s calls/s (Retry-After %s)", perSecond(m.Rate), ra))
	}
	if m.Concurrency > 0 {
		parts = append(parts, fmt.Sprintf("429s past about %d calls in flight", m.Concurrency))
	}
	if m.Rate == 0 && m.Concurrency == 0 {
		parts = append(parts, "no 429s")
	}
	if e := m.RetryShare + m.FailShare; e > 0 {
		parts = append(parts, fmt.Sprintf("%.1f%% errors", 100*e))
	}
	return fmt.Sprintf("model of the target from %s calls: %s", human.Count(int64(m.Calls)), strings.Join(parts, "; "))
}

func levels(b latencyBucket) string {
	if b.lo == b.hi {
		return fmt.Sprint(b.lo)
	}
	return fmt.Sprintf("%d-%d", b.lo, b.hi)
}

func perSecond(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
