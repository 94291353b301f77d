package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// bigLines yields n lines of size bytes each, made as they are read.
type bigLines struct {
	n, size, done, off int
}

func (b *bigLines) Read(p []byte) (int, error) {
	w := 0
	for w < len(p) && b.done < b.n {
		if b.off == b.size {
			p[w] = '\n'
			w++
			b.done, b.off = b.done+1, 0
			continue
		}
		k := min(len(p)-w, b.size-b.off)
		copy(p[w:w+k], bytes.Repeat([]byte{'x'}, k))
		w += k
		b.off += k
	}
	if w == 0 {
		return 0, io.EOF
	}
	return w, nil
}

// The reader holds at most aheadBytes of items ahead of the workers, not 1,024 items whatever
// their size: with every worker stuck in a call, 1 MiB items stop being read after a handful.
func TestReadAheadBoundedInBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const item = 1 << 20
		release := make(chan struct{})
		a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			<-release
			return Outcome{Verdict: OK}, nil
		})
		e, err := New(Config{Settings: Settings{Parallelism: 2, Burst: 1}, Adapter: a,
			Source: NewLineReader(&bigLines{n: 200, size: item}, false), Total: 200, Results: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		wait := runAsync(context.Background(), e)
		synctest.Wait()
		// 2 in calls, aheadBytes of them in the queue; none read while there is no room.
		want := int64(2 + aheadBytes/item)
		if got := e.Snapshot().Read; got != want {
			t.Errorf("with both workers in a call, %d items of 1 MiB were read; want %d (2 in calls, %d MiB ahead)", got, want, aheadBytes>>20)
		}
		if held := e.ahead.inUse(); held > aheadBytes {
			t.Errorf("%d bytes held ahead; want at most %d", held, aheadBytes)
		}
		close(release)
		s, err := wait()
		if err != nil || s.OK != 200 {
			t.Fatalf("Run = %+v, %v; want 200 ok", s, err)
		}
		if held := e.ahead.inUse(); held != 0 {
			t.Errorf("after the run %d bytes are still reserved ahead; want 0", held)
		}
	})
}

// An item larger than the whole budget still passes, alone; so does a row larger than the
// writer's budget.
func TestItemLargerThanBudgetPassesAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		size := aheadBytes + pendingRowBytes + 1
		e, out := newTestEngine(t, Config{Settings: Settings{Parallelism: 3}, Adapter: sleeper(newRecorder(), time.Millisecond)},
			strings.Repeat("y", size)+"\n"+strings.Repeat("z", size)+"\nsmall\n")
		s, err := e.Run(context.Background())
		if err != nil || s.OK != 3 {
			t.Fatalf("Run = %+v, %v; want 3 ok", s, err)
		}
		if n := bytes.Count(out.Bytes(), []byte("\n")); n != 3 {
			t.Errorf("%d rows; want 3", n)
		}
	})
}

func TestByteBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newByteBudget(10)
		for range 2 {
			if !b.take(6, nil) {
				t.Fatal("take under the limit waited")
			}
		}
		// 12 held: at the limit, the next entry waits, whatever its size.
		got := make(chan bool)
		go func() { got <- b.take(1, nil) }()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("take at the limit did not wait")
		default:
		}
		b.give(6)
		if !<-got {
			t.Fatal("take after a give failed")
		}
		if n := b.inUse(); n != 7 {
			t.Errorf("inUse = %d; want 7", n)
		}
		b.add(3)
		cancel := make(chan struct{})
		go func() { got <- b.wait(cancel) }()
		synctest.Wait()
		close(cancel)
		if <-got {
			t.Error("a cancelled wait reported room")
		}
		b.give(10)
		if !b.take(100, nil) {
			t.Error("an entry larger than the limit did not pass alone")
		}
		if n := b.inUse(); n != 100 {
			t.Errorf("inUse = %d; want 100", n)
		}
	})
}

// The default ceiling: the smaller of the files and the memory terms, with a floor; a
// parallelism above it is refused with the reason, by New and by SetParallelism alike.
func TestDefaultCeiling(t *testing.T) {
	old := totalMemory
	defer func() { totalMemory = old }()
	totalMemory = func() uint64 { return 8 << 30 } // 8 GiB: 2,048 calls of 1 MiB in a quarter
	n, why := computeCeiling()
	if n < minDefaultCeiling || n > 2048 {
		t.Errorf("ceiling %d with 8 GiB; want 256 to 2,048", n)
	}
	if !strings.Contains(why, "8.0 GiB of memory") {
		t.Errorf("why = %q; want it to name the memory", why)
	}
	totalMemory = func() uint64 { return 64 << 20 } // 16 calls' worth: the floor holds
	if n, why := computeCeiling(); n != minDefaultCeiling || !strings.Contains(why, "floor") {
		t.Errorf("ceiling with 64 MiB = %d (%q); want the floor %d", n, why, minDefaultCeiling)
	}

	def, _ := DefaultMaxParallelism()
	s := Settings{Parallelism: def + 1, Burst: 1}
	var ce *CeilingError
	if err := s.Check(); !errors.As(err, &ce) || ce.Max != def || !strings.Contains(err.Error(), "--max-parallelism") {
		t.Errorf("Check(parallelism %d) = %v; want a CeilingError at %d naming --max-parallelism", def+1, err, def)
	}
	if _, err := New(Config{Settings: s, Adapter: sleeper(newRecorder(), 0), Source: NewLineReader(strings.NewReader(""), false), Results: io.Discard}); !errors.As(err, &ce) {
		t.Errorf("New(parallelism %d) = %v; want a CeilingError", def+1, err)
	}
	s.MaxParallelism = def + 1 // set by the operator: it wins
	if err := s.Check(); err != nil {
		t.Errorf("Check with an explicit max above the default = %v; want nil", err)
	}

	e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 2}, Adapter: sleeper(newRecorder(), 0)}, "")
	if got := e.Settings().MaxParallelism; got != def {
		t.Errorf("a run without a max has MaxParallelism %d; want the default %d", got, def)
	}
	err := e.SetParallelism(100_000_000, "ctl")
	if !errors.As(err, &ce) || ce.Why == "" {
		t.Errorf("SetParallelism(100000000) = %v; want a CeilingError saying why", err)
	}
	if got := e.Settings().Parallelism; got != 2 {
		t.Errorf("after the refusal parallelism is %d; want 2", got)
	}
	if err := e.SetParallelism(def, "ctl"); err != nil {
		t.Errorf("SetParallelism(the ceiling) = %v; want nil", err)
	}
}
