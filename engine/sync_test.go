package engine

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// syncCounter is a results writer that counts its syncs and the rows written before each.
type syncCounter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	syncs []int // rows written at each sync
}

func (s *syncCounter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncCounter) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncs = append(s.syncs, strings.Count(s.buf.String(), "\n"))
	return nil
}

// TestSyncEvery: while rows are written, they are synced at least every SyncEvery, and once
// more at the end; with 0, only at the end.
func TestSyncEvery(t *testing.T) {
	for _, tc := range []struct {
		every     time.Duration
		min, max  int
		wantFinal int
	}{
		{time.Second, 9, 12, 100}, // 100 calls of 100 ms over ~10 s: about one sync a second, plus the last
		{0, 1, 1, 100},
	} {
		synctest.Test(t, func(t *testing.T) {
			w := &syncCounter{}
			e, err := New(Config{
				Settings: Settings{Parallelism: 1, Burst: 1}, SyncEvery: tc.every, Results: w,
				Adapter: AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
					time.Sleep(100 * time.Millisecond)
					return Outcome{Verdict: OK}, nil
				}),
				Source: NewLineReader(strings.NewReader(strings.Repeat("x\n", 100)), false),
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(w.syncs); n < tc.min || n > tc.max || w.syncs[n-1] != tc.wantFinal {
				t.Errorf("SyncEvery %v: syncs after rows %v; want %d to %d syncs, the last after all %d rows",
					tc.every, w.syncs, tc.min, tc.max, tc.wantFinal)
			}
		})
	}
}
