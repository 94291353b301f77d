package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
)

// rowSink is a RowWriter that keeps the rows and can refuse after a number of them.
type rowSink struct {
	mu    sync.Mutex
	rows  []EncodedRow
	limit int // rows it takes before failing; -1 for no limit
}

func (s *rowSink) Write(p []byte) (int, error) { panic("Write called on a RowWriter") }

func (s *rowSink) WriteRows(rows []EncodedRow) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range rows {
		if s.limit >= 0 && len(s.rows) >= s.limit {
			return i, errors.New("sink full")
		}
		r.Line = append([]byte(nil), r.Line...)
		s.rows = append(s.rows, r)
	}
	return len(rows), nil
}

func TestRowWriterGetsEachRowWithItsIndex(t *testing.T) {
	sink := &rowSink{limit: -1}
	e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 4, Burst: 1}, Adapter: okAdapter(), Results: sink}, numbered(500))
	sum, err := e.Run(context.Background())
	if err != nil || sum.OK != 500 {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	seen := map[int64]bool{}
	for _, r := range sink.rows {
		var row struct{ Item string }
		if err := json.Unmarshal(r.Line, &row); err != nil || !r.OK || r.Line[len(r.Line)-1] != '\n' {
			t.Fatalf("row %q ok=%v: %v", r.Line, r.OK, err)
		}
		if row.Item != itoa64(r.Index) { // numbered input: the line is its index
			t.Fatalf("row for item %q carries index %d", row.Item, r.Index)
		}
		seen[r.Index] = true
	}
	if len(seen) != 500 {
		t.Fatalf("%d distinct indexes for 500 items", len(seen))
	}
}

func TestRowWriterFailureCountsWhatWasNotWritten(t *testing.T) {
	sink := &rowSink{limit: 120}
	e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 2, Burst: 1}, Adapter: okAdapter(), Results: sink}, numbered(300))
	sum, _ := e.Run(context.Background())
	// As with a file that fails: the rows taken count, the rest are lost, and the run drains.
	// The items not run are those read and not started and those never read (NotRun): how
	// far the reader got when the drain came is the scheduler's (it failed 3% of loaded runs
	// when only the first were counted).
	if sum.OK != 120 || sum.Lost < 1 || sum.OK+sum.Lost+sum.NotRun() != 300 {
		t.Fatalf("summary %+v (not run %d): want 120 written, the rest lost or not run", sum, sum.NotRun())
	}
}

func TestItemFrom(t *testing.T) {
	it := ItemFrom(7, `{"id": 3}`, true, "")
	if it.Index != 7 || it.Fields["id"] != json.Number("3") || it.Invalid != "" {
		t.Fatalf("%+v", it)
	}
	if it := ItemFrom(1, `[1]`, true, ""); it.Invalid == "" {
		t.Fatal("a JSON array item was rebuilt as valid")
	}
	if it := ItemFrom(1, "x", false, "input line 2 contains a NUL byte"); it.Invalid == "" || it.Fields != nil {
		t.Fatalf("%+v", it)
	}
}

func okAdapter() Adapter {
	return AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) { return Outcome{Verdict: OK, Status: 200}, nil })
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
