package engine

import (
	"fmt"
	"sync"
	"syscall"
)

// A run's parallelism has a ceiling even when the operator sets none: every call in flight
// holds a worker, a socket or file, and buffers, so an unbounded value (ctl set parallelism
// 100000000, a key held down) would exhaust memory and file descriptors in seconds.
const (
	// callMemory is the memory budgeted for one call in flight: its worker, connection
	// buffers, response headers up to the http adapter's default cap, a kept body.
	callMemory = 1 << 20
	// memoryShare is the fraction (1/memoryShare) of the machine's memory that calls in flight
	// may take by default.
	memoryShare = 4
	// minDefaultCeiling is the default ceiling's floor, whatever the limits say.
	minDefaultCeiling = 256
)

// totalMemory returns the machine's memory in bytes, 0 when unknown; a variable so tests can
// stand in for the OS.
var totalMemory = systemMemory

// defaultCeiling is computed once: the limits it reads do not change during a run.
var defaultCeiling = sync.OnceValues(func() (int, string) { return computeCeiling() })

// DefaultMaxParallelism returns the ceiling on parallelism of a run that sets none, and how it
// was derived: the smaller of the open-file hard limit less what the process needs besides
// calls (the engine raises the soft limit up to the hard one as parallelism grows), and a
// quarter of the machine's memory at 1 MiB per call, but at least 256.
func DefaultMaxParallelism() (n int, why string) { return defaultCeiling() }

func computeCeiling() (int, string) {
	files, mem := -1, -1
	var parts []string
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Max > filesReserve {
		files = int(min(lim.Max-filesReserve, 1<<30) / filesPerCall)
		parts = append(parts, fmt.Sprintf("the open-file hard limit %d less %d", lim.Max, filesReserve))
	}
	if total := totalMemory(); total > 0 {
		mem = int(min(total/memoryShare/callMemory, 1<<30))
		parts = append(parts, fmt.Sprintf("a quarter of %s of memory at 1 MiB per call", formatBytes(total)))
	}
	n := 1 << 30
	for _, v := range []int{files, mem} {
		if v >= 0 {
			n = min(n, v)
		}
	}
	why := "the default"
	switch len(parts) {
	case 0:
		n = minDefaultCeiling
		why += ", neither the open-file limit nor the memory being known"
	case 1:
		why += ": " + parts[0]
	case 2:
		why += ": the smaller of " + parts[0] + " and " + parts[1]
	}
	if n < minDefaultCeiling {
		n = minDefaultCeiling
		why += ", raised to the floor of 256"
	}
	return n, why
}

// formatBytes renders n in binary units, one decimal: "23.5 GiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// CeilingError refuses a parallelism above the ceiling: the same refusal whoever asked (the
// command line, ctl, a key, the tuner, a cluster's settings).
type CeilingError struct {
	Parallelism int
	Max         int
	// Why says how a default ceiling was derived; empty when the operator set it.
	Why string
}

// Error says what was refused and where the ceiling comes from.
func (e *CeilingError) Error() string {
	if e.Why == "" {
		return fmt.Sprintf("engine: parallelism %d exceeds max parallelism %d (--max-parallelism)", e.Parallelism, e.Max)
	}
	return fmt.Sprintf("engine: parallelism %d exceeds max parallelism %d (%s; --max-parallelism sets another)", e.Parallelism, e.Max, e.Why)
}

// WithCeiling returns s with the default ceiling in MaxParallelism when it has none, and how
// that ceiling was derived ("" when s had its own).
func (s Settings) WithCeiling() (Settings, string) {
	if s.MaxParallelism != 0 {
		return s, ""
	}
	n, why := DefaultMaxParallelism()
	s.MaxParallelism = n
	return s, why
}

// Check reports the first setting out of range, as the engine will refuse it, the default
// ceiling applied when s has none: callers check their flags before they open anything.
func (s Settings) Check() error {
	s, why := s.WithCeiling()
	return s.check(why)
}

// check is validate, with the ceiling's refusal as a [*CeilingError] saying why.
func (s Settings) check(why string) error {
	if s.Parallelism >= 1 && s.MaxParallelism > 0 && s.Parallelism > s.MaxParallelism {
		return &CeilingError{Parallelism: s.Parallelism, Max: s.MaxParallelism, Why: why}
	}
	return s.validate()
}
