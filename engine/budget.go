package engine

import "sync"

// The queues between the engine's goroutines are bounded in bytes as well as in entries: a
// count alone lets 1,024 items of 8 MiB (or 4,096 rows of them) sit in memory at once.
const (
	// aheadBytes is how much item text the reader may hold ahead of the workers. A few MiB
	// keep every worker fed (reading them takes milliseconds); more only costs memory.
	aheadBytes = 4 << 20
	// pendingRowBytes is how much encoded row text may wait for the results writer: a few
	// batches of writes.
	pendingRowBytes = 4 << 20
)

// byteBudget bounds the bytes held in a queue. wait blocks while the bytes held have reached
// the limit; an entry is added whenever they are under it, so that no size of entry can block
// a run: the bytes held pass the limit by less than one entry (an entry larger than the
// whole limit passes alone).
type byteBudget struct {
	limit int64

	mu    sync.Mutex
	held  int64
	freed chan struct{} // closed and replaced by give when someone waits; nil when nobody does
}

func newByteBudget(limit int64) *byteBudget { return &byteBudget{limit: limit} }

// wait blocks until the bytes held are under the limit, and reports true; or false when
// cancel is closed first.
func (b *byteBudget) wait(cancel <-chan struct{}) bool {
	for {
		b.mu.Lock()
		if b.held < b.limit {
			b.mu.Unlock()
			return true
		}
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-cancel:
			return false
		}
	}
}

// add reserves n bytes without waiting: call it after wait, once n is known.
func (b *byteBudget) add(n int64) {
	b.mu.Lock()
	b.held += n
	b.mu.Unlock()
}

// take waits for room (see wait) and reserves n bytes; it gives up, reserving nothing, when
// cancel is closed first.
func (b *byteBudget) take(n int64, cancel <-chan struct{}) bool {
	for {
		if !b.wait(cancel) {
			return false
		}
		b.mu.Lock()
		if b.held < b.limit { // still: another taker may have come first
			b.held += n
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
	}
}

// give releases n bytes reserved by take.
func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	b.held -= n
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.mu.Unlock()
}

// inUse returns the bytes reserved now.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// itemBytes estimates the memory an item holds: its text, and about as much again for the
// decoded fields of a JSON Lines object.
func itemBytes(it Item) int64 {
	n := int64(len(it.Line) + len(it.Invalid))
	if it.Fields != nil {
		n *= 2
	}
	return n
}
