package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// batcher is an adapter that takes whole chunks; it records each batch it gets.
type batcher struct {
	mu      sync.Mutex
	batches [][]string
	single  int // calls of Do, which a batching adapter should not get
	answer  func(items []Item, call int) ([]Outcome, error)
}

var _ Batcher = (*batcher)(nil)

func (b *batcher) Do(ctx context.Context, it Item) (Outcome, error) {
	b.mu.Lock()
	b.single++
	b.mu.Unlock()
	return Outcome{Verdict: OK}, nil
}

func (b *batcher) DoBatch(ctx context.Context, items []Item) ([]Outcome, error) {
	lines := make([]string, len(items))
	for i, it := range items {
		lines[i] = it.Line
	}
	b.mu.Lock()
	b.batches = append(b.batches, lines)
	n := len(b.batches)
	b.mu.Unlock()
	time.Sleep(10 * time.Millisecond)
	if b.answer != nil {
		return b.answer(items, n)
	}
	outs := make([]Outcome, len(items))
	for i, it := range items {
		outs[i] = Outcome{Verdict: OK, Status: 200}
		if it.Line == "13" {
			outs[i] = Outcome{Verdict: Fail, Status: 404, Message: "404 Not Found"}
		}
	}
	return outs, nil
}

// TestChunkBatcher: with Chunk 10 an adapter that implements Batcher gets batches of at most
// 10 items, each item in one batch, each item with its own row; an invalid item is not sent.
func TestChunkBatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		input := numbered(20) + "bad\x00line\n" + strings.TrimPrefix(numbered(95), numbered(20))
		b := &batcher{}
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 3}, Chunk: 10, Adapter: b}, input)
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 94 || s.Failed != 2 {
			t.Fatalf("Run() = ok %d, failed %d, %v; want 94, 2 (404 and the NUL line), nil", s.OK, s.Failed, err)
		}
		if b.single != 0 {
			t.Errorf("Do called %d times, want 0: the adapter batches", b.single)
		}
		seen, full := map[string]int{}, 0
		for _, batch := range b.batches {
			if len(batch) > 10 || len(batch) == 0 {
				t.Errorf("batch of %d items, want 1..10", len(batch))
			}
			if len(batch) == 10 {
				full++
			}
			for _, line := range batch {
				seen[line]++
			}
		}
		if full < 8 { // 96 lines in chunks of 10, one chunk holding the NUL line
			t.Errorf("%d full batches of %d, want at least 8 for 95 items", full, len(b.batches))
		}
		if len(seen) != 95 || seen["bad\x00line"] != 0 {
			t.Errorf("batches held %d distinct items (NUL line %d times), want the 95 valid ones", len(seen), seen["bad\x00line"])
		}
		for line, n := range seen {
			if n != 1 {
				t.Errorf("item %s sent in %d batches, want 1", line, n)
			}
		}
		rows := rowsByItem(t, parseRows(t, out.Bytes()))
		if len(rows) != 96 {
			t.Errorf("rows = %d, want 96", len(rows))
		}
		if r := rows["13"]; r.OK || r.Status != 404 || r.Error != "404 Not Found" {
			t.Errorf("item 13 row = %+v, want its own 404", r)
		}
		if r := rows["bad\x00line"]; r.OK || r.Attempts != 0 || !strings.Contains(r.Error, "NUL") {
			t.Errorf("NUL line row = %+v, want failed, 0 attempts, an error naming the NUL byte", r)
		}
	})
}

// TestBatchCountsOneCall: a batch is one call in Summary.Calls and Snapshot.Calls, as the rate
// cap and pacing count it.
func TestBatchCountsOneCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &batcher{}
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 2}, Chunk: 10, Adapter: b}, numbered(40))
		s, err := e.Run(context.Background())
		if err != nil || s.OK+s.Failed != 40 {
			t.Fatalf("Run() = ok %d, failed %d, %v; want 40 rows, nil", s.OK, s.Failed, err)
		}
		if s.Calls != int64(len(b.batches)) || e.Snapshot().Calls != s.Calls {
			t.Errorf("Summary.Calls = %d, Snapshot.Calls = %d, want %d: a batch is one call", s.Calls, e.Snapshot().Calls, len(b.batches))
		}
	})
}

// TestChunkBatchErrors: a batch that obtained no answer is retried; a batch answered with the
// wrong number of outcomes fails its items with an error saying so.
func TestChunkBatchErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &batcher{answer: func(items []Item, call int) ([]Outcome, error) {
			if call == 1 {
				return nil, errors.New("connection refused")
			}
			return make([]Outcome, len(items)), nil // all OK (the zero Verdict)
		}}
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 1}, Chunk: 4, Retries: 2, Adapter: b}, numbered(4))
		if s, err := e.Run(context.Background()); err != nil || s.OK != 4 {
			t.Fatalf("Run() = ok %d, %v; want 4, nil", s.OK, err)
		}
		for key, r := range rowsByItem(t, parseRows(t, out.Bytes())) {
			if r.Attempts != 2 {
				t.Errorf("item %s attempts = %d, want 2 (a failed batch, then a retry)", key, r.Attempts)
			}
		}

		b = &batcher{answer: func(items []Item, call int) ([]Outcome, error) { return []Outcome{{}}, nil }}
		e, out = newTestEngine(t, Config{Settings: Settings{Parallelism: 1}, Chunk: 3, Retries: 2, Adapter: b}, numbered(3))
		if s, err := e.Run(context.Background()); err != nil || s.Failed != 3 || len(b.batches) != 1 {
			t.Fatalf("Run() = failed %d, %d batches, %v; want 3, 1, nil", s.Failed, len(b.batches), err)
		}
		for key, r := range rowsByItem(t, parseRows(t, out.Bytes())) {
			if want := "engine: adapter answered 1 outcomes for a batch of 3 items"; r.Error != want {
				t.Errorf("item %s error = %q, want %q", key, r.Error, want)
			}
		}
	})
}

// TestChunkWithoutBatcher: without Batcher each item of a chunk is its own call, and pacing
// counts calls, not chunks.
func TestChunkWithoutBatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, out := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 1, Pace: 100 * time.Millisecond},
			Chunk:    5,
			Adapter:  sleeper(rec, time.Millisecond),
		}, numbered(10))
		t0 := time.Now()
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 10 || s.Calls != 10 {
			t.Fatalf("Run() = ok %d, calls %d, %v; want 10, 10, nil", s.OK, s.Calls, err)
		}
		for i, c := range rec.snapshot() {
			if want := t0.Add(time.Duration(i) * 100 * time.Millisecond); !c.at.Equal(want) {
				t.Errorf("call %d (item %s) at +%v, want +%v", i, c.item, c.at.Sub(t0), want.Sub(t0))
			}
		}
		if n := len(parseRows(t, out.Bytes())); n != 10 {
			t.Errorf("rows = %d, want 10", n)
		}
	})
}

// costly is an adapter whose calls cost a fixed number of rate tokens.
type costly struct {
	AdapterFunc
	cost int
}

func (c costly) Cost(items []Item) int { return c.cost * len(items) }

// TestCoster: a call costing more tokens than the burst fails its item with a clear error at
// once (no hang, no call); a call within the burst takes its tokens from the rate.
func TestCoster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		e, out := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 2, Rate: 10, Burst: 2},
			Adapter:  costly{sleeper(rec, time.Millisecond), 5},
		}, numbered(3))
		t0 := time.Now()
		s, err := e.Run(context.Background())
		if err != nil || s.Failed != 3 || len(rec.snapshot()) != 0 {
			t.Fatalf("Run() = failed %d, %d calls, %v; want 3, 0, nil", s.Failed, len(rec.snapshot()), err)
		}
		if d := time.Since(t0); d > 0 {
			t.Errorf("Run took %v, want no wait for tokens that can never come", d)
		}
		for key, r := range rowsByItem(t, parseRows(t, out.Bytes())) {
			if want := "engine: call costs 5 tokens, more than the burst 2"; r.Error != want || r.Attempts != 0 {
				t.Errorf("item %s row = %+v, want error %q, 0 attempts", key, r, want)
			}
		}

		rec = newRecorder()
		e, _ = newTestEngine(t, Config{
			Settings: Settings{Parallelism: 4, Rate: 10, Burst: 2},
			Adapter:  costly{sleeper(rec, time.Millisecond), 2},
		}, numbered(50))
		if s, err := e.Run(context.Background()); err != nil || s.OK != 50 {
			t.Fatalf("Run() = ok %d, %v; want 50, nil", s.OK, err)
		}
		if got, _ := maxInWindow(rec.startTimes(), time.Second); got > 6 {
			t.Errorf("%d calls costing 2 tokens in one second at 10 tokens/s burst 2, want at most 6", got)
		}
	})
}
