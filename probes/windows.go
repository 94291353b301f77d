package probes

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/throttle-dev/throttle/engine"
)

// DefaultWindow is the length of the windows the advisor judges by.
const DefaultWindow = 5 * time.Second

// Window is what happened in one fixed window of a run: calls that ended in it, by outcome
// and error class, and their latency percentiles.
type Window struct {
	Start  time.Time
	Length time.Duration
	// Calls ended in the window; OK + TooMany + the error classes add up to Calls.
	Calls, OK, TooMany                                int64
	Timeouts, Connection, Server5xx, Client4xx, Other int64
	// TooManyTimed counts the 429s that came with a Retry-After: a server that says when to come
	// back counts requests over time, one that does not usually counts connections.
	TooManyTimed int64
	// Retries counts calls that were a retry (attempt 2 or later).
	Retries int64
	// InFlight is the mean number of calls in flight when the window's calls started,
	// themselves included.
	InFlight float64
	// Latency of the calls that ended in the window.
	P50, P95, P99, Max, Mean time.Duration
	// MeanOK is the mean latency of the successful calls alone: fast rejections would make a
	// server look quicker than it is.
	MeanOK time.Duration
	// Held is how much of the window the pool could not call: the Retry-After holds of the
	// whole pool (a 429's Retry-After, or a HoldStart event) and, after each, the mean latency
	// it takes the pool's first calls to come back; in a run's first window, also the time
	// before its first calls. Its ok rate says less than what the target takes. OKFree counts
	// the ok calls that ended outside the holds (all of OK when Held is 0).
	Held   time.Duration
	OKFree int64
}

// Accepted is the rate the target accepted in the window: ok calls per second of the time no
// hold starved, and that time; 0 and 0 for a window without calls or without such time.
func (w Window) Accepted() (perSecond float64, over time.Duration) {
	over = w.Length - w.Held
	if w.Calls == 0 || over <= 0 {
		return 0, 0
	}
	return float64(w.okFree()) / over.Seconds(), over
}

// okFree counts the ok calls that ended outside the holds.
func (w Window) okFree() int64 {
	if w.Held == 0 {
		return w.OK
	}
	return w.OKFree
}

// PerSecond turns a count of the window into a rate.
func (w Window) PerSecond(n int64) float64 {
	if w.Length <= 0 {
		return 0
	}
	return float64(n) / w.Length.Seconds()
}

// Errors counts the failed calls other than 429s.
func (w Window) Errors() int64 {
	return w.Timeouts + w.Connection + w.Server5xx + w.Client4xx + w.Other
}

// TooManyShare is the share of calls answered 429, from 0 to 1.
func (w Window) TooManyShare() float64 { return share(w.TooMany, w.Calls) }

// ErrorShare is the share of calls that failed otherwise, from 0 to 1.
func (w Window) ErrorShare() float64 { return share(w.Errors(), w.Calls) }

func share(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// Windows cuts a run's event stream into fixed windows and keeps the most recent ones, plus
// the latency over the whole run. It is safe for concurrent use.
type Windows struct {
	mu       sync.Mutex
	length   time.Duration
	keep     int
	closed   []Window // oldest first
	cur      Window
	curHist  *hdrhistogram.Histogram
	runHist  *hdrhistogram.Histogram
	latSum   time.Duration
	okSum    time.Duration
	startsIn int64
	startsN  int64
	holds    []holdSpan // recent holds, merged, oldest first
	refill   time.Duration
	first    time.Time // the first call end seen
}

// holdSpan is a hold of the whole pool: no call started from from to to.
type holdSpan struct{ from, to time.Time }

// maxHolds bounds the holds a Windows remembers until its windows close past them.
const maxHolds = 64

// NewWindows returns a collector of windows of the given length that keeps the last keep.
func NewWindows(length time.Duration, keep int) *Windows {
	ws := newWindows(length, keep)
	ws.runHist = NewLatencyHistogram()
	return ws
}

// newWindows is NewWindows without the whole run's histogram, for the tuner, which never asks.
func newWindows(length time.Duration, keep int) *Windows {
	return &Windows{length: length, keep: max(keep, 1), curHist: NewLatencyHistogram()}
}

// Observe adds one event: a call end, or a hold of the whole pool.
func (ws *Windows) Observe(ev engine.Event) {
	switch ev.Kind {
	case engine.CallEnd:
	case engine.HoldStart:
		ws.mu.Lock()
		ws.holdLocked(ev.At, ev.Until)
		ws.mu.Unlock()
		return
	default:
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.advanceLocked(ev.At)
	if ws.first.IsZero() {
		ws.first = ev.At.Add(-ev.Latency) // the run called from about then
	}
	if ev.Status == 429 && ev.RetryAfter > 0 {
		// The engine holds every worker for a 429's Retry-After; subscribers that do not
		// take HoldStart events (and replays, which feed calls) see the hold here.
		ws.holdLocked(ev.At, ev.At.Add(ev.RetryAfter))
	}
	ws.startsIn += int64(ev.InFlight)
	ws.startsN++
	w := &ws.cur
	w.Calls++
	switch Classify(ev) {
	case ClassOK:
		w.OK++
		ws.okSum += ev.Latency
		if !ws.inHoldLocked(ev.At) {
			w.OKFree++
		}
	case ClassTooMany:
		w.TooMany++
		if ev.RetryAfter > 0 {
			w.TooManyTimed++
		}
	case ClassTimeout:
		w.Timeouts++
	case ClassConnection:
		w.Connection++
	case Class5xx:
		w.Server5xx++
	case Class4xx:
		w.Client4xx++
	default:
		w.Other++
	}
	if ev.Attempt > 1 {
		w.Retries++
	}
	RecordLatency(ws.curHist, ev.Latency)
	if ws.runHist != nil {
		RecordLatency(ws.runHist, ev.Latency)
	}
	ws.latSum += ev.Latency
}

// advanceLocked closes the current window, and any empty ones after it, up to the window
// that holds t. It requires ws.mu.
func (ws *Windows) advanceLocked(t time.Time) {
	if ws.cur.Start.IsZero() {
		ws.cur = Window{Start: t.Truncate(ws.length), Length: ws.length}
		return
	}
	for !t.Before(ws.cur.Start.Add(ws.length)) {
		ws.closeLocked()
	}
}

// holdLocked notes a hold of the whole pool from from to to. It requires ws.mu.
func (ws *Windows) holdLocked(from, to time.Time) {
	if !to.After(from) {
		return
	}
	if n := len(ws.holds); n > 0 && !from.After(ws.holds[n-1].to) {
		last := &ws.holds[n-1]
		if from.Before(last.from) {
			last.from = from
		}
		if to.After(last.to) {
			last.to = to
		}
		return
	}
	if len(ws.holds) == maxHolds {
		ws.holds = append(ws.holds[:0], ws.holds[1:]...)
	}
	ws.holds = append(ws.holds, holdSpan{from, to})
}

// inHoldLocked reports whether t falls in a hold or the refill after it. It requires ws.mu.
func (ws *Windows) inHoldLocked(t time.Time) bool {
	for i := len(ws.holds) - 1; i >= 0; i-- {
		h := ws.holds[i]
		if !t.Before(h.from) && t.Before(h.to.Add(ws.refill)) {
			return true
		}
	}
	return false
}

// heldLocked returns how much of [start, end) the holds (each followed by a refill) cover,
// and forgets the holds that end before end. It requires ws.mu.
func (ws *Windows) heldLocked(start, end time.Time, refill time.Duration) time.Duration {
	var held time.Duration
	keep := ws.holds[:0]
	for _, h := range ws.holds {
		to := h.to.Add(refill)
		if lo, hi := later(h.from, start), earlier(to, end); hi.After(lo) {
			held += hi.Sub(lo)
		}
		if to.After(end) {
			keep = append(keep, h)
		}
	}
	ws.holds = keep
	return min(held, end.Sub(start))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (ws *Windows) closeLocked() {
	w := ws.cur
	if w.Calls > 0 {
		w.P50, w.P95 = micros(ws.curHist.ValueAtQuantile(50)), micros(ws.curHist.ValueAtQuantile(95))
		w.P99, w.Max = micros(ws.curHist.ValueAtQuantile(99)), micros(ws.curHist.Max())
		w.Mean = ws.latSum / time.Duration(w.Calls)
	}
	if w.OK > 0 {
		w.MeanOK = ws.okSum / time.Duration(w.OK)
		ws.refill = w.MeanOK
	}
	if len(ws.holds) > 0 {
		w.Held = ws.heldLocked(w.Start, w.Start.Add(w.Length), ws.refill)
	}
	if before := ws.first.Sub(w.Start); before > 0 && w.Calls > 0 {
		w.Held = min(w.Held+before, w.Length) // the run's first window: it began before the run
	}
	if ws.startsN > 0 {
		w.InFlight = float64(ws.startsIn) / float64(ws.startsN)
	}
	ws.closed = append(ws.closed, w)
	if len(ws.closed) > ws.keep {
		ws.closed = append(ws.closed[:0], ws.closed[len(ws.closed)-ws.keep:]...)
	}
	ws.curHist.Reset()
	ws.latSum, ws.okSum, ws.startsIn, ws.startsN = 0, 0, 0, 0
	ws.cur = Window{Start: w.Start.Add(ws.length), Length: ws.length}
}

// Recent closes the windows that ended by now and returns the closed ones, oldest first.
func (ws *Windows) Recent(now time.Time) []Window {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if !ws.cur.Start.IsZero() {
		ws.advanceLocked(now)
	}
	return append([]Window(nil), ws.closed...)
}

// Latest returns the latency of the last complete window, or of the window under way while
// none is complete (the first seconds of a run).
func (ws *Windows) Latest(now time.Time) Stats {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.cur.Start.IsZero() {
		return Stats{}
	}
	ws.advanceLocked(now)
	for i := len(ws.closed) - 1; i >= 0; i-- {
		if w := ws.closed[i]; w.Calls > 0 {
			return Stats{Calls: w.Calls, OK: w.OK, TooMany: w.TooMany, Errors: w.Errors(), P50: w.P50, P95: w.P95, P99: w.P99, Max: w.Max}
		}
	}
	h := ws.curHist
	if h.TotalCount() == 0 {
		return Stats{}
	}
	return Stats{Calls: h.TotalCount(), P50: micros(h.ValueAtQuantile(50)), P95: micros(h.ValueAtQuantile(95)),
		P99: micros(h.ValueAtQuantile(99)), Max: micros(h.Max())}
}

// Run returns the latency over the whole run so far.
func (ws *Windows) Run() Stats {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.runHist == nil {
		return Stats{}
	}
	s := Stats{Calls: ws.runHist.TotalCount()}
	if s.Calls > 0 {
		s.P50, s.P95 = micros(ws.runHist.ValueAtQuantile(50)), micros(ws.runHist.ValueAtQuantile(95))
		s.P99, s.Max = micros(ws.runHist.ValueAtQuantile(99)), micros(ws.runHist.Max())
	}
	return s
}

// Class is the kind of a call's outcome.
type Class uint8

// The classes of [Classify].
const (
	ClassOK Class = iota
	ClassTooMany
	ClassTimeout
	ClassConnection
	Class5xx
	Class4xx
	ClassOther
)

// String names the class as recordings and logs write it.
func (c Class) String() string {
	names := [...]string{"ok", "429", "timeout", "connection", "5xx", "4xx", "other"}
	if int(c) < len(names) {
		return names[c]
	}
	return "class " + strconv.Itoa(int(c))
}

// Classify says what kind of outcome a call end is: ok, 429, timeout, connection error (no
// answer), 5xx, other 4xx, or other.
func Classify(ev engine.Event) Class {
	switch {
	case ev.Status == 429:
		return ClassTooMany
	case ev.Err && strings.HasPrefix(ev.Message, "timeout"):
		return ClassTimeout
	case ev.Err:
		return ClassConnection
	case ev.Verdict == engine.OK:
		return ClassOK
	case ev.Status >= 500 && ev.Status <= 599:
		return Class5xx
	case ev.Status >= 400 && ev.Status <= 499:
		return Class4xx
	default:
		return ClassOther
	}
}
