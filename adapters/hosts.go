package adapters

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/throttle-dev/throttle/engine"
)

// HostLimits are per-host limits of an http adapter: politeness to each site of a URL list
// that spans many, while the run's own knobs cap the whole job. Zero fields are no limit.
type HostLimits struct {
	// Rate caps the calls per second to one host; Burst is its bucket (at least 1).
	Rate  float64
	Burst int
	// Parallelism caps the calls in flight to one host.
	Parallelism int
}

// active reports whether any limit is set.
func (l HostLimits) active() bool { return l.Rate > 0 || l.Parallelism > 0 }

// HostLoad is one host's share of a run, for the screen: what is in flight and waiting for
// the host's turn now, and the calls and 429s so far.
type HostLoad struct {
	Host              string
	InFlight, Waiting int
	Calls, TooMany    int64
}

// hostGate makes calls take their turn per host. A call waiting for its host's turn holds its
// worker for up to maxHostWait, shown as waiting for the host (engine.WaitingFor), not in
// flight; the wait is the row's wait_ms, not latency.
type hostGate struct {
	lim HostLimits
	now func() time.Time

	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	slots     chan struct{} // nil: no parallelism limit
	limiter   *rate.Limiter // nil: no rate limit
	holdUntil time.Time     // the host's own Retry-After
	last      time.Time     // the host's last use, for forgetting idle hosts
	HostLoad
}

// maxIdleHosts is how many hosts the gate remembers before it forgets idle ones: a list of a
// million sites must not grow a million limiters.
const maxIdleHosts = 4096

func newHostGate(lim HostLimits, now func() time.Time) *hostGate {
	if lim.Burst < 1 {
		lim.Burst = 1
	}
	return &hostGate{lim: lim, now: now, hosts: map[string]*hostState{}}
}

// maxHostWait is the longest a call waits for its host's turn while holding its worker; past
// it the call is put back (engine.Later), so that one slow or held host of a list cannot take
// every worker while the other hosts' items wait.
const maxHostWait = 200 * time.Millisecond

// enter waits for host's turn — a free slot, the end of its Retry-After, a token of its rate —
// for up to maxHostWait, or returns engine.Later with the wait left. The returned function ends
// the call with its status and the Retry-After it asked for.
func (g *hostGate) enter(ctx context.Context, host string) (func(status int, retryAfter time.Duration), error) {
	host = strings.ToLower(host)
	g.mu.Lock()
	h := g.hostLocked(host)
	h.Waiting++
	wait := h.holdUntil.Sub(g.now())
	g.mu.Unlock()
	admitted := false
	defer func() {
		if !admitted {
			g.mu.Lock()
			h.Waiting--
			g.mu.Unlock()
		}
	}()
	// A call that waits for its host's turn says so: the engine shows its worker waiting for
	// the host and counts the wait as the row's wait_ms, not as latency.
	waiting := false
	waitFor := func() {
		if !waiting {
			waiting = true
			engine.WaitingFor(ctx, "host "+host)
		}
	}
	if wait > maxHostWait {
		return nil, engine.Later(wait)
	}
	deadline := g.now().Add(maxHostWait)
	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
		default:
			waitFor()
			t := time.NewTimer(maxHostWait)
			select {
			case h.slots <- struct{}{}:
				t.Stop()
			case <-t.C:
				return nil, engine.Later(maxHostWait)
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
	}
	if wait > 0 {
		waitFor()
		if err := sleepCtx(ctx, wait); err != nil {
			g.free(h)
			return nil, err
		}
	}
	if h.limiter != nil {
		now := g.now()
		r := h.limiter.ReserveN(now, 1)
		d := r.DelayFrom(now)
		if now.Add(d).After(deadline) {
			r.CancelAt(now)
			g.free(h)
			return nil, engine.Later(d)
		}
		if d > 0 {
			waitFor()
		}
		if err := sleepCtx(ctx, d); err != nil {
			r.CancelAt(g.now())
			g.free(h)
			return nil, err
		}
	}
	if waiting {
		engine.CallStarts(ctx)
	}
	admitted = true
	g.mu.Lock()
	h.Waiting--
	h.InFlight++
	g.mu.Unlock()
	return func(status int, retryAfter time.Duration) {
		g.mu.Lock()
		h.InFlight--
		h.Calls++
		h.last = g.now()
		if status == 429 {
			h.TooMany++
			if until := h.last.Add(retryAfter); retryAfter > 0 && until.After(h.holdUntil) {
				h.holdUntil = until
			}
		}
		g.mu.Unlock()
		g.free(h)
	}, nil
}

func (g *hostGate) free(h *hostState) {
	if h.slots != nil {
		<-h.slots
	}
}

// hostLocked returns host's state, made on first use. It requires g.mu.
func (g *hostGate) hostLocked(host string) *hostState {
	if h, ok := g.hosts[host]; ok {
		return h
	}
	if len(g.hosts) >= maxIdleHosts {
		g.forgetIdleLocked()
	}
	h := &hostState{HostLoad: HostLoad{Host: host}, last: g.now()}
	if g.lim.Parallelism > 0 {
		h.slots = make(chan struct{}, g.lim.Parallelism)
	}
	if g.lim.Rate > 0 {
		h.limiter = rate.NewLimiter(rate.Limit(g.lim.Rate), g.lim.Burst)
	}
	g.hosts[host] = h
	return h
}

// forgetIdleLocked drops hosts that have nothing in flight or waiting and whose bucket has
// refilled and hold passed, so that forgetting them changes nothing. It requires g.mu.
func (g *hostGate) forgetIdleLocked() {
	now := g.now()
	refill := time.Minute
	if g.lim.Rate > 0 {
		refill = max(refill, time.Duration(float64(g.lim.Burst)/g.lim.Rate*float64(time.Second)))
	}
	for k, h := range g.hosts {
		if h.InFlight == 0 && h.Waiting == 0 && now.Sub(h.last) > refill && now.After(h.holdUntil) {
			delete(g.hosts, k)
		}
	}
}

// loads returns the n busiest hosts: by calls in flight and waiting, then by 429s.
func (g *hostGate) loads(n int) []HostLoad {
	g.mu.Lock()
	all := make([]HostLoad, 0, len(g.hosts))
	for _, h := range g.hosts {
		all = append(all, h.HostLoad)
	}
	g.mu.Unlock()
	slices.SortFunc(all, func(a, b HostLoad) int {
		if d := (b.InFlight + b.Waiting) - (a.InFlight + a.Waiting); d != 0 {
			return d
		}
		if b.TooMany != a.TooMany {
			return int(b.TooMany - a.TooMany)
		}
		return strings.Compare(a.Host, b.Host)
	})
	return all[:min(n, len(all))]
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
