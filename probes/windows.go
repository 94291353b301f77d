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
}

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

// Observe adds one event.
func (ws *Windows) Observe(ev engine.Event) {
	if ev.Kind != engine.CallEnd {
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.advanceLocked(ev.At)
	ws.startsIn += int64(ev.InFlight)
	ws.startsN++
	w := &ws.cur
	w.Calls++
	switch Classify(ev) {
	case ClassOK:
		w.OK++
		ws.okSum += ev.Latency
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

func (ws *Windows) closeLocked() {
	w := ws.cur
	if w.Calls > 0 {
		w.P50, w.P95 = micros(ws.curHist.ValueAtQuantile(50)), micros(ws.curHist.ValueAtQuantile(95))
		w.P99, w.Max = micros(ws.curHist.ValueAtQuantile(99)), micros(ws.curHist.Max())
		w.Mean = ws.latSum / time.Duration(w.Calls)
	}
	if w.OK > 0 {
		w.MeanOK = ws.okSum / time.Duration(w.OK)
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
