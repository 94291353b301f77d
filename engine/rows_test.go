package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestEveryItemOneRow runs 2,000 items against an adapter that answers 503 and 429 at random
// (some 429s with Retry-After), sometimes obtains no answer, sometimes answers a final 404, and
// checks the results file: every item exactly once, counts equal to the Summary and the
// Snapshot, attempts equal to the calls the adapter saw and at most Retries+1, each row telling
// the last answer, "after N attempts" on failures that were retried.
func TestEveryItemOneRow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const items, retries = 2000, 3
		rng := newRand(1)
		rec := newRecorder()
		var (
			mu      sync.Mutex
			last    = map[string]string{} // each item's last answer, as its row must tell it
			tooMany int
		)
		a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
			time.Sleep(rng.between(time.Millisecond, 30*time.Millisecond))
			var (
				out Outcome
				err error
			)
			switch p := rng.Float64(); {
			case p < 0.55:
				out = Outcome{Verdict: OK, Status: 200, Output: json.RawMessage(`{"n":` + it.Line + `}`)}
			case p < 0.70:
				out = Outcome{Verdict: Retry, Status: 503, Message: "503 Service Unavailable"}
			case p < 0.80:
				out = Outcome{Verdict: Retry, Status: 429, Message: "429 Too Many Requests"}
			case p < 0.85:
				out = Outcome{Verdict: Retry, Status: 429, Message: "429 Too Many Requests", RetryAfter: 300 * time.Millisecond}
			case p < 0.95:
				err = errors.New("read tcp: connection reset by peer")
			default:
				out = Outcome{Verdict: Fail, Status: 404, Message: "404 Not Found"}
			}
			mu.Lock()
			defer mu.Unlock()
			if out.Status == 429 {
				tooMany++
			}
			if err != nil {
				last[it.Line] = err.Error()
			} else {
				last[it.Line] = out.Message
			}
			return out, err
		})
		e, out := newTestEngine(t, Config{
			Settings:   Settings{Parallelism: 16},
			Retries:    retries,
			MaxBackoff: 2 * time.Second,
			Adapter:    a,
			Jitter:     newRand(2).Float64,
		}, numbered(items))

		s, err := e.Run(context.Background())
		if err != nil {
			t.Fatalf("Run() error = %v, want nil", err)
		}
		rows := parseRows(t, out.Bytes())
		byItem := rowsByItem(t, rows)
		if len(rows) != items {
			t.Errorf("rows = %d, want %d", len(rows), items)
		}
		var okRows, failedRows, retriesMade int64
		for i := range items {
			key := strconv.Itoa(i)
			r, found := byItem[key]
			if !found {
				t.Errorf("item %s has no row", key)
				continue
			}
			calls := rec.per[key]
			retriesMade += int64(calls - 1)
			if r.Attempts != calls || r.Attempts < 1 || r.Attempts > retries+1 {
				t.Errorf("item %s: attempts = %d, adapter saw %d calls, want equal and in [1, %d]", key, r.Attempts, calls, retries+1)
			}
			if r.OK {
				okRows++
				if r.Status != 200 || string(r.Output) != `{"n":`+key+`}` || r.Error != "" {
					t.Errorf("item %s: ok row %+v, want status 200, output {\"n\":%s}, no error", key, r, key)
				}
				continue
			}
			failedRows++
			want := last[key]
			if r.Attempts > 1 {
				want += fmt.Sprintf(" after %d attempts", r.Attempts)
			}
			if r.Error != want {
				t.Errorf("item %s: error = %q, want %q", key, r.Error, want)
			}
			if wantStatus := map[string]int{"503 Service Unavailable": 503, "429 Too Many Requests": 429, "404 Not Found": 404}[last[key]]; r.Status != wantStatus {
				t.Errorf("item %s: status = %d, want %d for %q", key, r.Status, wantStatus, last[key])
			}
			if r.Attempts < retries+1 && !strings.HasPrefix(r.Error, "404") {
				t.Errorf("item %s: failed with a retryable answer after %d attempts, want %d attempts", key, r.Attempts, retries+1)
			}
		}
		if okRows == 0 || failedRows == 0 {
			t.Errorf("ok rows %d, failed rows %d: the test wants both", okRows, failedRows)
		}
		if s.OK != okRows || s.Failed != failedRows || s.Lost != 0 || s.NotStarted != 0 || s.State != Done {
			t.Errorf("Summary = ok %d, failed %d, lost %d, not started %d, state %v; want ok %d, failed %d, 0, 0, done",
				s.OK, s.Failed, s.Lost, s.NotStarted, s.State, okRows, failedRows)
		}
		if total := int64(len(rec.calls)); s.Calls != total || s.Retries != retriesMade || s.TooMany != int64(tooMany) {
			t.Errorf("Summary calls %d, retries %d, 429s %d; want %d, %d, %d", s.Calls, s.Retries, s.TooMany, total, retriesMade, tooMany)
		}
		snap := e.Snapshot()
		if snap.OK != okRows || snap.Failed != failedRows || snap.Done() != items || snap.Read != items ||
			snap.InFlight != 0 || snap.BackingOff != 0 || snap.State != Done {
			t.Errorf("Snapshot after Run = ok %d, failed %d, done %d, read %d, in flight %d, backing off %d, %v; want %d, %d, %d, %d, 0, 0, done",
				snap.OK, snap.Failed, snap.Done(), snap.Read, snap.InFlight, snap.BackingOff, snap.State, okRows, failedRows, items, items)
		}
	})
}

var errDiskFull = errors.New("no space left on device")

// fullDisk is a results file on a disk that fills after limit bytes: the write that crosses
// the limit writes what fits and fails, as write(2) does with ENOSPC, and so does every write
// after it.
type fullDisk struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	limit    int
	failedAt time.Time
}

func (d *fullDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	room := d.limit - d.buf.Len()
	if len(p) <= room {
		return d.buf.Write(p)
	}
	d.buf.Write(p[:room])
	if d.failedAt.IsZero() {
		d.failedAt = time.Now()
	}
	return room, errDiskFull
}

// TestResultsWriteFailure: when the results file fails, Run returns the error, dispatch stops
// at once, the rows that could not be written are counted Lost, and OK and Failed count only
// rows that are in the file.
func TestResultsWriteFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const items, parallelism = 1000, 8
		rec := newRecorder()
		disk := &fullDisk{limit: 5000}
		e, _ := newTestEngine(t, Config{
			Settings: Settings{Parallelism: parallelism},
			Adapter:  sleeper(rec, 10*time.Millisecond),
			Results:  disk,
		}, numbered(items))

		s, err := e.Run(context.Background())
		if !errors.Is(err, errDiskFull) || !strings.Contains(err.Error(), "writing results") {
			t.Fatalf("Run() error = %v, want one saying writing results failed, wrapping %v", err, errDiskFull)
		}
		if disk.failedAt.IsZero() {
			t.Fatal("the results file never failed")
		}
		calls := rec.snapshot()
		for _, c := range calls {
			if c.at.After(disk.failedAt) {
				t.Errorf("item %s started at +%v, after the results file failed at +%v", c.item, c.at.Sub(calls[0].at), disk.failedAt.Sub(calls[0].at))
			}
		}
		if len(calls) >= items {
			t.Errorf("adapter calls = %d, want dispatch to stop well before all %d items", len(calls), items)
		}
		if s.Lost == 0 {
			t.Errorf("Summary.Lost = 0, want > 0")
		}
		if s.State != Draining {
			t.Errorf("Summary.State = %v, want draining", s.State)
		}
		if got, want := s.OK+s.Failed+s.Lost, int64(len(calls)); got != want {
			t.Errorf("Summary ok+failed+lost = %d, want %d (every finished call's row is written or lost)", got, want)
		}
		complete := int64(bytes.Count(disk.buf.Bytes(), []byte("\n")))
		if s.OK+s.Failed > complete {
			t.Errorf("Summary ok+failed = %d, but the file holds only %d complete rows", s.OK+s.Failed, complete)
		}
	})
}

// TestResultsPartialWriteCounted: when the failing write got part of a batch into the file,
// the complete rows in that part are written rows (a --resume will skip their items), so they
// count in OK and Failed, not in Lost.
func TestResultsPartialWriteCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		disk := &fullDisk{limit: 5000}
		e, _ := newTestEngine(t, Config{
			Settings: Settings{Parallelism: 8}, // 8 rows end together: batches of several rows
			Adapter:  sleeper(rec, 10*time.Millisecond),
			Results:  disk,
		}, numbered(1000))
		s, err := e.Run(context.Background())
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("Run() error = %v, want %v", err, errDiskFull)
		}
		complete := int64(bytes.Count(disk.buf.Bytes(), []byte("\n")))
		if s.OK+s.Failed != complete {
			t.Errorf("Summary ok+failed = %d, lost %d; the file holds %d complete rows: want ok+failed = %d",
				s.OK+s.Failed, s.Lost, complete, complete)
		}
	})
}

// syncWriter is a results file with a Sync method, like *os.File.
type syncWriter struct {
	bytes.Buffer
	syncs   int
	syncErr error
}

func (w *syncWriter) Sync() error {
	w.syncs++
	return w.syncErr
}

// TestResultsSynced: a results writer with a Sync method is synced once when the run ends, and
// a failing sync is the run's error.
func TestResultsSynced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &syncWriter{}
		e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 2}, Adapter: sleeper(newRecorder(), time.Millisecond), Results: w}, numbered(10))
		if s, err := e.Run(context.Background()); err != nil || s.OK != 10 || w.syncs != 1 {
			t.Errorf("Run() = ok %d, %v, %d syncs; want 10, nil, 1", s.OK, err, w.syncs)
		}

		w = &syncWriter{syncErr: errDiskFull}
		e, _ = newTestEngine(t, Config{Settings: Settings{Parallelism: 2}, Adapter: sleeper(newRecorder(), time.Millisecond), Results: w}, numbered(10))
		if _, err := e.Run(context.Background()); !errors.Is(err, errDiskFull) {
			t.Errorf("Run() with a failing Sync: error = %v, want %v", err, errDiskFull)
		}
	})
}
