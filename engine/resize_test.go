package engine

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// perWorker is an adapter that holds a resource per worker, as a database adapter holds a
// connection: it records which workers called and what Resize said.
type perWorker struct {
	mu      sync.Mutex
	sizes   []int
	callers map[int]bool
	bad     int // calls without a worker number
}

func (p *perWorker) Resize(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sizes = append(p.sizes, n)
}

func (p *perWorker) Do(ctx context.Context, it Item) (Outcome, error) {
	id, ok := WorkerOf(ctx)
	p.mu.Lock()
	if !ok {
		p.bad++
	}
	p.callers[id] = true
	p.mu.Unlock()
	time.Sleep(10 * time.Millisecond)
	return Outcome{Verdict: OK}, nil
}

func TestResizerFollowsParallelism(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &perWorker{callers: map[int]bool{}}
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 4, Burst: 1}, Adapter: a}, numbered(3000))
		go func() {
			time.Sleep(time.Second)
			_ = e.SetParallelism(16, "tui")
			time.Sleep(time.Second)
			_ = e.SetParallelism(16, "tui") // no change: no Resize
			_ = e.SetParallelism(2, "tui")
		}()
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if want := []int{4, 16, 2}; len(a.sizes) != len(want) || a.sizes[0] != 4 || a.sizes[1] != 16 || a.sizes[2] != 2 {
			t.Fatalf("Resize calls %v, want %v", a.sizes, want)
		}
		for id := range 16 {
			if !a.callers[id] {
				t.Fatalf("worker %d never called; callers %v", id, a.callers)
			}
		}
		if len(a.callers) != 16 || a.bad != 0 {
			t.Fatalf("callers %v, %d calls without a worker number", a.callers, a.bad)
		}
	})
}

func TestWorkerOfAnotherContext(t *testing.T) {
	if _, ok := WorkerOf(context.Background()); ok {
		t.Fatal("WorkerOf found a worker in a plain context")
	}
}
