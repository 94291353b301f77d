package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers shared by the engine's tests. Runs that depend on time happen inside a
// testing/synctest bubble: the adapters below sleep a latency, so a minute of a run costs
// microseconds, and every instant the tests compare is exact.

// numbered returns n input lines "0\n" … "n-1\n".
func numbered(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

// newTestEngine returns an Engine over the text input, its rows written to the returned buffer
// (read it only after Run returned). cfg's Source, Total and Results are filled in when unset.
func newTestEngine(t *testing.T, cfg Config, input string) (*Engine, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	if cfg.Source == nil {
		cfg.Source = NewLineReader(strings.NewReader(input), false)
		n, err := CountItems(strings.NewReader(input))
		if err != nil {
			t.Fatalf("CountItems: %v", err)
		}
		cfg.Total = n
	}
	if cfg.Results == nil {
		cfg.Results = &out
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e, &out
}

// runAsync starts e.Run in its own goroutine; the returned function waits for it.
func runAsync(ctx context.Context, e *Engine) func() (Summary, error) {
	type result struct {
		s   Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := e.Run(ctx)
		done <- result{s, err}
	}()
	return func() (Summary, error) {
		r := <-done
		return r.s, r.err
	}
}

// row is a result row as a consumer of the results file reads it.
type row struct {
	Item         json.RawMessage `json:"item"`
	OK           bool            `json:"ok"`
	Status       int             `json:"status"`
	Attempts     int             `json:"attempts"`
	LatencyMS    float64         `json:"latency_ms"`
	At           string          `json:"at"`
	Output       json.RawMessage `json:"output"`
	Error        string          `json:"error"`
	WaitMS       float64         `json:"wait_ms"`
	RetryAfterMS int64           `json:"retry_after_ms"`
	Invalid      bool            `json:"invalid"`
}

// key is the row's item: the input line for text input, the object's text for JSONL.
func (r row) key() string {
	var s string
	if json.Unmarshal(r.Item, &s) == nil {
		return s
	}
	return string(r.Item)
}

// parseRows decodes a results file strictly: every line one JSON object of known fields,
// every line ended by a newline.
func parseRows(t *testing.T, b []byte) []row {
	t.Helper()
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("results do not end with a newline: ...%q", b[max(0, len(b)-80):])
	}
	var rows []row
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			if len(b) == 0 {
				break
			}
			t.Fatalf("results line %d is empty", i+1)
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var r row
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("results line %d %q: %v", i+1, line, err)
		}
		if dec.More() {
			t.Fatalf("results line %d %q holds more than one value", i+1, line)
		}
		rows = append(rows, r)
	}
	return rows
}

// rowsByItem indexes rows by item and fails the test on an item with two rows.
func rowsByItem(t *testing.T, rows []row) map[string]row {
	t.Helper()
	m := make(map[string]row, len(rows))
	for _, r := range rows {
		if prev, dup := m[r.key()]; dup {
			t.Errorf("item %q has two rows: %+v and %+v", r.key(), prev, r)
		}
		m[r.key()] = r
	}
	return m
}

// call is one adapter call as the adapter saw it start.
type call struct {
	at       time.Time
	item     string
	attempt  int // this item's calls so far, this one included
	inflight int // calls inside the adapter when this one began, itself included
}

// recorder counts and records the calls an adapter receives. Safe for concurrent use.
type recorder struct {
	inflight atomic.Int64
	mu       sync.Mutex
	calls    []call
	per      map[string]int
	maxIn    int
}

func newRecorder() *recorder { return &recorder{per: map[string]int{}} }

// begin records the start of a call of it.
func (r *recorder) begin(it Item) call {
	n := int(r.inflight.Add(1))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.per[it.Line]++
	c := call{at: time.Now(), item: it.Line, attempt: r.per[it.Line], inflight: n}
	r.calls = append(r.calls, c)
	r.maxIn = max(r.maxIn, n)
	return c
}

func (r *recorder) end() { r.inflight.Add(-1) }

// adapter wraps f as an Adapter whose calls r records.
func (r *recorder) adapter(f func(ctx context.Context, it Item, c call) (Outcome, error)) AdapterFunc {
	return func(ctx context.Context, it Item) (Outcome, error) {
		c := r.begin(it)
		defer r.end()
		return f(ctx, it, c)
	}
}

// snapshot returns a copy of the calls so far, in order of their start.
func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// startTimes returns the calls' start instants, sorted.
func (r *recorder) startTimes() []time.Time {
	cs := r.snapshot()
	ts := make([]time.Time, len(cs))
	for i, c := range cs {
		ts[i] = c.at
	}
	slices.SortFunc(ts, time.Time.Compare)
	return ts
}

// between counts the calls that started in [from, to).
func (r *recorder) between(from, to time.Time) int {
	n := 0
	for _, c := range r.snapshot() {
		if !c.at.Before(from) && c.at.Before(to) {
			n++
		}
	}
	return n
}

// sleeper is an adapter that answers OK after a fixed latency, recorded by rec.
func sleeper(rec *recorder, latency time.Duration) AdapterFunc {
	return rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
		time.Sleep(latency)
		return Outcome{Verdict: OK, Status: 200}, nil
	})
}

// maxInWindow returns the most sorted instants that fall in one window [t, t+w) starting at
// one of them, and where that window starts.
func maxInWindow(ts []time.Time, w time.Duration) (int, time.Time) {
	best, at, j := 0, time.Time{}, 0
	for i := range ts {
		if j < i {
			j = i
		}
		for j < len(ts) && ts[j].Sub(ts[i]) < w {
			j++
		}
		if j-i > best {
			best, at = j-i, ts[i]
		}
	}
	return best, at
}

// lockedRand is a seeded random source safe for concurrent use (Config.Jitter is called from
// every worker).
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRand(seed uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

// between returns a uniform duration in [lo, hi).
func (l *lockedRand) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(l.Float64()*float64(hi-lo))
}

// drainEvents returns the events waiting in s without blocking.
func drainEvents(s *Subscription) []Event {
	var evs []Event
	for {
		select {
		case ev := <-s.C:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}
