package engine

import (
	"context"
	"time"
)

// WaitingFor tells the engine that the call of ctx has not reached its target yet: it waits
// for what ("limit tmdb", "host api.example.com", "tpm"), a turn the adapter or a wrapper of
// it takes before the call really starts. Until [CallStarts], the worker shows as
// [WorkerWaiting] with what in [Snapshot.WaitingFor], and is not counted in flight. A context
// that is not an engine call's is ignored, so an adapter may call it whoever calls it.
func WaitingFor(ctx context.Context, what string) {
	w, ok := ctx.Value(workerKey{}).(*worker)
	if !ok {
		return
	}
	w.waitFor.Store(&what)
	w.set(WorkerWaiting)
}

// CallStarts tells the engine that the call of ctx really starts now: the time since the
// engine admitted the call (the wait for a shared limit, a host's turn, tokens) is the row's
// wait_ms, not its latency, which counts from here. An adapter that never says so has its
// call start when the engine admitted it. Said again (a wrapper, then the adapter it wraps,
// each took a turn), the last one counts.
func CallStarts(ctx context.Context) {
	w, ok := ctx.Value(workerKey{}).(*worker)
	if !ok {
		return
	}
	d := w.e.clock.Now().Sub(w.sendStart)
	w.began.Store(int64(max(d, 0)) + 1) // 0 says "not told"
	w.set(WorkerCalling)
}

// waited returns how long the call just made waited before it started (0 when the adapter
// never said), and resets it for the next call.
func (w *worker) waited() time.Duration {
	d := w.began.Swap(0)
	if d == 0 {
		return 0
	}
	return time.Duration(d - 1)
}
