package record

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// Run is what a Recorder watches: an [*engine.Engine].
type Run interface {
	Subscribe(buffer int, kinds ...engine.EventKind) *engine.Subscription
	Snapshot() engine.Snapshot
}

// Defaults of a Recorder.
const (
	// Buffer is how many events the recorder's subscription holds: a third of a second at
	// 50,000 calls/s (the recorder takes them every 10 ms), so that a busy disk delays the
	// recording without costing events.
	Buffer = 1 << 14
	// FlushEvery bounds what a crash can cost a recording.
	FlushEvery = time.Second
)

// Recorder writes one run's recording as it happens. It reads the run's events through a
// bounded subscription, so a slow disk never slows calls: were the buffer ever to overflow,
// the recording says how many events it missed.
type Recorder struct {
	dst     io.Closer
	out     *countingWriter
	buf     *bufio.Writer
	zw      *gzip.Writer
	run     Run
	sub     *engine.Subscription
	started time.Time
	line    []byte

	stop    chan struct{}
	done    chan struct{}
	dropped int64 // events the subscription dropped, as already written
	calls   int64 // calls written

	mu  sync.Mutex // guards err
	err error
}

// Start writes the header to w and records run's events until [Recorder.Close]. Call it
// before the run starts so that no event is missed; h.Started, h.Format and h.Version are
// filled in here. The recorder owns w and closes it.
func Start(w io.WriteCloser, h Header, run Run) (*Recorder, error) {
	h.Format, h.Version, h.Started = formatName, Version, time.Now()
	cw := &countingWriter{w: w}
	buf := bufio.NewWriterSize(cw, 64<<10)
	zw, _ := gzip.NewWriterLevel(buf, gzip.BestSpeed) // a valid level: no error
	r := &Recorder{dst: w, out: cw, buf: buf, zw: zw, run: run, started: h.Started, stop: make(chan struct{}), done: make(chan struct{})}
	head, err := json.Marshal(h)
	if err == nil {
		_, err = zw.Write(append(head, '\n'))
	}
	if err == nil {
		err = r.flush()
	}
	if err != nil {
		_ = w.Close() // the header could not be written: that error is the one to tell
		return nil, fmt.Errorf("record: %w", err)
	}
	r.sub = run.Subscribe(Buffer, engine.CallEnd, engine.ControlChange, engine.HoldStart, engine.Warning)
	go r.loop()
	return r, nil
}

// drainEvery is how often the recorder takes the events waiting in its buffer. Taking them in
// batches rather than as they come spares the engine a wake-up of the recorder per call: at
// 50,000 calls/s that halves what recording costs.
const drainEvery = 10 * time.Millisecond

// loop writes the waiting events every drainEvery and, every FlushEvery, a snapshot, then
// flushes.
func (r *Recorder) loop() {
	defer close(r.done)
	drain := time.NewTicker(drainEvery)
	defer drain.Stop()
	flush := time.NewTicker(FlushEvery)
	defer flush.Stop()
	for {
		select {
		case <-drain.C:
			r.drain()
		case <-flush.C:
			r.drain()
			r.snapshot()
			r.fail(r.flush())
		case <-r.stop:
			r.drain()
			return
		}
	}
}

// drain writes the events waiting in the buffer.
func (r *Recorder) drain() {
	for n := len(r.sub.C); n > 0; n-- {
		r.event(<-r.sub.C)
	}
}

// Close records what is left of the run's events, its last snapshot and its summary, and
// closes the recording. It returns the first write error the recording met.
func (r *Recorder) Close(sum engine.Summary) error {
	close(r.stop)
	<-r.done
	r.sub.Close()
	r.snapshot()
	end, err := json.Marshal(EndOf(sum))
	if err == nil {
		r.begin(kindEnd, time.Now())
		r.line = append(append(r.line, ','), end...)
		r.end()
	}
	r.fail(err)
	r.fail(r.zw.Close())
	r.fail(r.buf.Flush())
	r.fail(r.dst.Close())
	return r.Err()
}

// Size reports, once the recorder is closed, the calls it recorded and the bytes it wrote.
func (r *Recorder) Size() (calls, bytes int64) { return r.calls, r.out.n }

// countingWriter counts the bytes that reach the file.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Err returns the first write error, if any.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Recorder) fail(err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = fmt.Errorf("record: %w", err)
	}
}

// flush pushes everything written so far to the file, so that a crash loses at most the
// last FlushEvery.
func (r *Recorder) flush() error {
	return errors.Join(r.zw.Flush(), r.buf.Flush())
}

func (r *Recorder) event(ev engine.Event) {
	switch ev.Kind {
	case engine.CallEnd:
		r.calls++
		start := ev.At.Add(-ev.Latency)
		r.begin(kindCall, start)
		r.num(int64(ev.Latency / time.Microsecond))
		r.num(int64(ev.Worker))
		r.num(ev.Index)
		r.num(int64(ev.Items))
		r.num(int64(ev.Attempt))
		r.num(int64(ev.InFlight))
		r.num(int64(ev.Status))
		r.num(classCodes.encode(probes.Classify(ev)))
		r.num(verdictCodes.encode(ev.Verdict))
		r.flag(ev.Final)
		r.num(int64(ev.RetryAfter / time.Microsecond))
	case engine.ControlChange:
		c := ev.Change
		r.begin(kindChange, c.At)
		r.str(c.Origin)
		r.str(c.Knob)
		r.str(c.From)
		r.str(c.To)
	case engine.HoldStart:
		r.begin(kindHold, ev.At)
		r.num(r.offset(ev.Until))
	case engine.Warning:
		r.begin(kindWarning, ev.At)
		r.str(ev.Message)
	default:
		return
	}
	r.end()
}

// snapshot records the run's counters and any events the subscription had to drop.
func (r *Recorder) snapshot() {
	s := r.run.Snapshot()
	r.begin(kindSnapshot, s.At)
	for _, v := range []int64{stateCodes.encode(s.State), s.Read, s.OK, s.Failed, s.Calls, s.Retries, s.TooMany, s.Errors,
		int64(s.InFlight), int64(s.BackingOff)} {
		r.num(v)
	}
	r.end()
	if d := r.sub.Dropped(); d > r.dropped {
		r.begin(kindDropped, s.At)
		r.num(d - r.dropped)
		r.end()
		r.dropped = d
	}
}

func (r *Recorder) offset(t time.Time) int64 { return int64(t.Sub(r.started) / time.Microsecond) }

func (r *Recorder) begin(kind int, at time.Time) {
	r.line = append(r.line[:0], '[')
	r.line = strconv.AppendInt(r.line, int64(kind), 10)
	r.num(r.offset(at))
}

func (r *Recorder) num(v int64) {
	r.line = strconv.AppendInt(append(r.line, ','), v, 10)
}

func (r *Recorder) flag(b bool) {
	if b {
		r.line = append(r.line, ",1"...)
	} else {
		r.line = append(r.line, ",0"...)
	}
}

func (r *Recorder) str(s string) {
	q, _ := json.Marshal(s) // a string always marshals
	r.line = append(append(r.line, ','), q...)
}

func (r *Recorder) end() {
	r.line = append(r.line, ']', '\n')
	if _, err := r.zw.Write(r.line); err != nil {
		r.fail(err)
	}
}
