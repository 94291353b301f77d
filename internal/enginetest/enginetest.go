// Package enginetest is a test kit: what tests and benchmarks need to drive an engine,
// generated input of any length and an adapter with no cost of its own. Product code must not
// import it (TestImportRules at the module's root fails if it does); what-if runs have their
// own input in replay.
package enginetest

import (
	"context"
	"io"
	"strconv"

	"github.com/throttle-dev/throttle/engine"
)

// Lines returns an io.Reader of n generated lines ("item-0\n", "item-1\n", …), made as they
// are read, so that an input of any length costs no memory.
func Lines(n int) io.Reader { return &lines{n: n} }

type lines struct {
	n, next int
	pending []byte // the unread rest of the current line
}

func (g *lines) Read(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		if len(g.pending) == 0 {
			if g.next == g.n {
				break
			}
			g.pending = strconv.AppendInt(append(g.pending[:0], "item-"...), int64(g.next), 10)
			g.pending = append(g.pending, '\n')
			g.next++
		}
		k := copy(p[written:], g.pending)
		g.pending = g.pending[k:]
		written += k
	}
	if written == 0 {
		return 0, io.EOF
	}
	return written, nil
}

// Noop answers every call at once with OK, like a target with no latency: what is left of a
// run's cost is the engine's own (reading, dispatch, admission, settling, writing rows).
var Noop = engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
})
