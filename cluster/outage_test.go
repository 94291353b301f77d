package cluster

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// told records what an Outage told, and when (the bubble's clock).
type told struct {
	mu  sync.Mutex
	at  []time.Duration // since t0
	err []error
	t0  time.Time
}

func (k *told) tell(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.at = append(k.at, time.Since(k.t0))
	k.err = append(k.err, err)
}

// want fails the test unless the tells were exactly downs (true) and ups (false) at the
// given times.
func (k *told) want(t *testing.T, downs []bool, at []time.Duration) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	got := make([]bool, len(k.err))
	for i, err := range k.err {
		got[i] = err != nil
	}
	if len(got) != len(downs) || len(k.at) != len(at) {
		t.Fatalf("told %v at %v; want downs %v at %v", k.err, k.at, downs, at)
	}
	for i := range got {
		if got[i] != downs[i] || k.at[i] != at[i] {
			t.Fatalf("told %v at %v; want downs %v at %v", k.err, k.at, downs, at)
		}
	}
}

var errGone = errors.New("redis: connection refused")

func TestOutageToldOncePerOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &told{t0: time.Now()}
		o := NewOutage(k.tell)
		o.Report(nil, time.Now()) // Redis answers: nothing to tell
		for range 5 {
			o.Report(errGone, time.Now())
			time.Sleep(100 * time.Millisecond)
		}
		k.want(t, []bool{true}, []time.Duration{0})
		// A success right after the last failure (at 400 ms) is not "back" yet; with no
		// further report, the outage is told over one quiet period after the last failure.
		o.Report(nil, time.Now())
		k.want(t, []bool{true}, []time.Duration{0})
		time.Sleep(2 * time.Second)
		k.want(t, []bool{true, false}, []time.Duration{0, 400*time.Millisecond + outageQuiet})
		o.Report(nil, time.Now())
		k.want(t, []bool{true, false}, []time.Duration{0, 400*time.Millisecond + outageQuiet})

		// A second outage is told again; a success long after its last failure ends it at
		// once, on the caller's goroutine.
		o.Report(errGone, time.Now())
		time.Sleep(3 * time.Second)
		o.Report(nil, time.Now())
		at := 2500 * time.Millisecond
		k.want(t, []bool{true, false, true, false}, []time.Duration{0, 1400 * time.Millisecond, at, at + 3*time.Second})
	})
}

func TestOutageQuietPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &told{t0: time.Now()}
		o := NewOutage(k.tell)
		o.Report(errGone, time.Now())
		time.Sleep(500 * time.Millisecond)
		o.Report(nil, time.Now()) // answers again…
		time.Sleep(300 * time.Millisecond)
		o.Report(errGone, time.Now()) // …but a call still fails (800 ms): not over
		time.Sleep(time.Second)
		// Nothing answered since the failure at 800 ms: still out at 1.8 s.
		k.want(t, []bool{true}, []time.Duration{0})
		o.Report(nil, time.Now()) // 1.8 s: one quiet period after the last failure, over
		k.want(t, []bool{true, false}, []time.Duration{0, 1800 * time.Millisecond})

		// A call begun during the outage that fails after it was told over is part of it:
		// no new outage. One begun after is a new one.
		began := time.Now().Add(-time.Second)
		time.Sleep(10 * time.Millisecond)
		o.Report(errGone, began)
		k.want(t, []bool{true, false}, []time.Duration{0, 1800 * time.Millisecond})
		o.Report(errGone, time.Now())
		k.want(t, []bool{true, false, true}, []time.Duration{0, 1800 * time.Millisecond, 1810 * time.Millisecond})

		// A failure during the quiet period after a success moves the end: it is told one
		// quiet period after the last failure once something answered since.
		o.Report(nil, time.Now().Add(0))
		time.Sleep(600 * time.Millisecond)
		o.Report(errGone, time.Now()) // 2.41 s
		time.Sleep(100 * time.Millisecond)
		o.Report(nil, time.Now())
		time.Sleep(5 * time.Second)
		k.want(t, []bool{true, false, true, false}, []time.Duration{0, 1800 * time.Millisecond, 1810 * time.Millisecond, 2410*time.Millisecond + outageQuiet})
	})
}

func TestOutageConcurrentReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &told{t0: time.Now()}
		o := NewOutage(k.tell)
		var wg sync.WaitGroup
		// 50 callers fail through a 2 s outage, every 10 ms, while some of their calls answer.
		for i := range 50 {
			wg.Go(func() {
				for n := 0; time.Since(k.t0) < 2*time.Second; n++ {
					if (n+i)%3 == 0 {
						o.Report(nil, time.Now())
					} else {
						o.Report(errGone, time.Now())
					}
					time.Sleep(10 * time.Millisecond)
				}
				// Redis is back: every call answers from now on.
				for range 200 {
					o.Report(nil, time.Now())
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		k.mu.Lock()
		defer k.mu.Unlock()
		if len(k.err) != 2 || k.err[0] == nil || k.err[1] != nil || k.at[0] != 0 {
			t.Fatalf("told %v at %v; want one outage at 0 and its end", k.err, k.at)
		}
		// The last failures were reported at 1.99 s; the end comes one quiet period later.
		if k.at[1] < 1990*time.Millisecond+outageQuiet || k.at[1] > 2*time.Second+outageQuiet {
			t.Fatalf("outage told over at %v; want a quiet period after the last failure", k.at[1])
		}
	})
}

func TestOutageNil(t *testing.T) {
	var o *Outage
	o.Report(errGone, time.Now()) // a part without an Outage reports all the same
	o.Report(nil, time.Now())
	NewOutage(nil).Report(errGone, time.Now()) // and an Outage may tell nobody
}

// TestOutageClose: once closed (the run ended and said its summary), an Outage tells
// nothing more: not the end of an outage whose quiet second was still running, nor the end
// that a later success would tell.
func TestOutageClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &told{t0: time.Now()}
		o := NewOutage(k.tell)
		o.Report(errGone, time.Now())
		o.Report(nil, time.Now()) // back, but the quiet second is not over
		o.Close()
		time.Sleep(2 * outageQuiet)
		o.Report(nil, time.Now()) // would tell the end, a quiet second after the last failure
		o.Close()
		k.want(t, []bool{true}, []time.Duration{0})
		var none *Outage
		none.Close()
	})
}
