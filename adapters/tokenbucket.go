package adapters

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// TokenBucket is a token bucket whose tokens can be given back: a caller takes what it
// expects a call to cost before the call and corrects by what it really cost after it
// ([TokenBucket.Adjust]), which [golang.org/x/time/rate] cannot do.
//
// Takes are served in order: a take that finds too few tokens, or others waiting, queues,
// and only the first in the queue waits for the refill, so a large take is never starved by
// small ones. Tokens given back go at once to the first waiter, not to whoever comes next:
// a give-back is worth most while takes wait. A take larger than the burst raises the burst
// to it, so that no take waits for more than the bucket can hold. Giving back never fills
// the bucket past its burst; charging more than it holds leaves it in debt. The bucket
// starts full.
//
// The methods ending in At take the instant as a parameter and never wait, so that the
// bucket's decisions can be tested at fixed instants; [TokenBucket.Take] and
// [TokenBucket.Adjust] read time.Now (which testing/synctest virtualises). A nil
// *TokenBucket has no limit: its takes never wait. A TokenBucket is safe for concurrent use.
type TokenBucket struct {
	rate float64 // tokens per second

	mu      sync.Mutex
	burst   float64       // guarded by mu: it grows to the largest take
	tokens  float64       // at last; negative after a charge beyond what the bucket held
	last    time.Time     // zero until the first use
	queue   []*float64    // the waiting takes, first first; each points to its size
	changed chan struct{} // closed and replaced when the first waiter may go sooner
}

// NewTokenBucket returns a full bucket that refills at rate tokens per second up to burst. It
// panics if rate or burst is not a finite number > 0.
func NewTokenBucket(rate, burst float64) *TokenBucket {
	for _, v := range []float64{rate, burst} {
		if !(v > 0) || math.IsInf(v, 0) {
			panic(fmt.Sprintf("adapters: token bucket rate %v, burst %v: want finite numbers > 0", rate, burst))
		}
	}
	return &TokenBucket{rate: rate, burst: burst, tokens: burst, changed: make(chan struct{})}
}

// advanceLocked refills the bucket up to now. It requires that b.mu is held.
func (b *TokenBucket) advanceLocked(now time.Time) {
	if b.last.IsZero() {
		b.last = now
		return
	}
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// takeLocked takes n at now if the bucket holds them, else returns how long the refill needs
// to cover them. It requires that b.mu is held.
func (b *TokenBucket) takeLocked(now time.Time, n float64) (bool, time.Duration) {
	if n > b.burst {
		b.burst = n // a take the bucket cannot hold would wait for ever
	}
	b.advanceLocked(now)
	if b.tokens >= n {
		b.tokens -= n
		return true, 0
	}
	return false, durationOf((n - b.tokens) / b.rate)
}

// broadcastLocked wakes the waiters: the first of them may go sooner. It requires that b.mu
// is held.
func (b *TokenBucket) broadcastLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// TakeAt takes n tokens at instant now when no take is waiting and the bucket holds them,
// and reports true. Otherwise it takes nothing and returns how long the refill needs to
// cover n, not counting the takes waiting before it: [TokenBucket.Take] queues and waits.
func (b *TokenBucket) TakeAt(now time.Time, n float64) (ok bool, wait time.Duration) {
	if b == nil {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) > 0 {
		b.advanceLocked(now)
		return false, durationOf(max(n-b.tokens, 0) / b.rate)
	}
	return b.takeLocked(now, n)
}

// AdjustAt corrects the bucket at instant now once a call's real cost is known: n > 0 takes
// n more tokens (the call cost more than was taken; the debt delays later takes), n < 0
// gives -n back (it cost less), never filling the bucket past its burst.
func (b *TokenBucket) AdjustAt(now time.Time, n float64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(now)
	b.tokens = min(b.burst, b.tokens-n)
	if n < 0 && len(b.queue) > 0 {
		b.broadcastLocked()
	}
}

// TokensAt returns the tokens in the bucket at instant now, not counting the takes waiting;
// a negative number is a debt.
func (b *TokenBucket) TokensAt(now time.Time) float64 {
	if b == nil {
		return math.Inf(1)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(now)
	return b.tokens
}

// Take waits until n tokens are there for it, after the takes that waited before it, and
// takes them. When ctx ends first, it takes nothing and returns ctx.Err().
func (b *TokenBucket) Take(ctx context.Context, n float64) error {
	if b == nil {
		return ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	if len(b.queue) == 0 {
		if ok, _ := b.takeLocked(time.Now(), n); ok {
			b.mu.Unlock()
			return nil
		}
	}
	me := &n
	b.queue = append(b.queue, me)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var tick <-chan time.Time
		if b.queue[0] == me {
			ok, wait := b.takeLocked(time.Now(), n)
			if ok {
				b.queue = b.queue[1:]
				if len(b.queue) > 0 {
					b.broadcastLocked() // the next waiter is first now
				}
				b.mu.Unlock()
				return nil
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tick = timer.C
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-tick:
		case <-changed:
		case <-ctx.Done():
			b.mu.Lock()
			first := b.queue[0] == me
			b.queue = slices.DeleteFunc(b.queue, func(p *float64) bool { return p == me })
			if first && len(b.queue) > 0 {
				b.broadcastLocked()
			}
			b.mu.Unlock()
			return ctx.Err()
		}
		b.mu.Lock()
	}
}

// Adjust is [TokenBucket.AdjustAt] now.
func (b *TokenBucket) Adjust(n float64) { b.AdjustAt(time.Now(), n) }
