package engine

import (
	"fmt"
	"syscall"
)

// filesPerCall is the open files one call in flight may need (its socket), and filesReserve
// what the process needs besides (results, input, logs, the control socket).
const (
	filesPerCall = 1
	filesReserve = 64
)

// openFileLimit reads and raises RLIMIT_NOFILE; a variable so tests can stand in for the OS.
var openFileLimit = func(need uint64) (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < need && lim.Cur < lim.Max {
		want := min(need, lim.Max)
		raised := lim
		raised.Cur = want
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim.Cur = want
		}
	}
	return lim.Cur, lim.Max, nil
}

// checkOpenFiles makes sure n calls in flight fit the open-file limit, raising the soft limit
// up to the hard one if needed, and warns (never fails) when they cannot fit: the run goes on,
// and calls past the limit will fail with "too many open files" rows.
func (e *Engine) checkOpenFiles(n int) {
	need := uint64(n*filesPerCall + filesReserve)
	soft, hard, err := openFileLimit(need)
	if err != nil {
		e.warn(fmt.Sprintf("could not read the open-file limit: %v", err))
		return
	}
	if soft < need {
		e.warn(fmt.Sprintf("parallelism %d needs about %d open files but the limit is %d (hard limit %d): raise it with `ulimit -n %d` or lower parallelism to %d",
			n, need, soft, hard, need, max(1, int(soft)-filesReserve)))
	}
}
