package engine

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Settings are the knobs an operator turns while a run goes on.
type Settings struct {
	// Parallelism is max_parallelism: the most calls in flight at once (at least 1).
	Parallelism int
	// MaxParallelism is a ceiling Parallelism may not pass; 0 means none.
	MaxParallelism int
	// Pace is each worker's minimum interval between the starts of two consecutive calls.
	Pace time.Duration
	// Rate caps calls per second across the run; 0 means unlimited.
	Rate float64
	// Burst is the token bucket's size for Rate (at least 1).
	Burst int
}

// validate reports the first setting that is out of range.
func (s Settings) validate() error {
	switch {
	case s.Parallelism < 1:
		return fmt.Errorf("engine: parallelism %d: must be at least 1", s.Parallelism)
	case s.MaxParallelism < 0:
		return fmt.Errorf("engine: max parallelism %d: must be 0 (none) or more", s.MaxParallelism)
	case s.MaxParallelism > 0 && s.Parallelism > s.MaxParallelism:
		return fmt.Errorf("engine: parallelism %d exceeds max parallelism %d", s.Parallelism, s.MaxParallelism)
	case s.Pace < 0:
		return fmt.Errorf("engine: pace %v: must not be negative", s.Pace)
	case s.Rate < 0 || math.IsNaN(s.Rate) || math.IsInf(s.Rate, 0):
		return fmt.Errorf("engine: rate %v/s: must be a number, 0 (none) or more", s.Rate)
	case s.Burst < 1:
		return fmt.Errorf("engine: burst %d: must be at least 1", s.Burst)
	}
	return nil
}

// State is where a run is in its life.
type State uint8

const (
	// Running means calls are being dispatched.
	Running State = iota
	// Paused means no new call starts; calls in flight finish.
	Paused
	// Draining means no new item is taken; calls in flight finish; then the run ends.
	Draining
	// Stopping means calls in flight were cancelled; the run ends as soon as their rows are written.
	Stopping
	// Done means the run ended.
	Done
)

// String returns the state's name as the TUI and progress lines show it.
func (s State) String() string {
	return [...]string{"running", "paused", "draining", "stopping", "done"}[s]
}

// Change is one entry of the change log: who changed which knob, from what to what. A change
// that turned several knobs at once (rate and burst) is one entry whose Knob, From and To list
// them in the same order, separated by ", ": [Change.Parts] splits it.
type Change struct {
	At     time.Time
	Origin string // "cli", "tui", "ctl", "auto", "signal", "engine"
	Knob   string // a [Knob]'s name ("parallelism", "rate, burst"), or "state", "note", "start"
	From   string
	To     string
}

// changeSep separates the knobs of a change that turned several.
const changeSep = ", "

// Parts returns the change knob by knob: a change of rate and burst gives a change of rate
// and a change of burst, at the same time and from the same origin; any other change gives
// itself.
func (c Change) Parts() []Change {
	if !strings.Contains(c.Knob, changeSep) {
		return []Change{c}
	}
	knobs, froms, tos := strings.Split(c.Knob, changeSep), strings.Split(c.From, changeSep), strings.Split(c.To, changeSep)
	if len(froms) != len(knobs) || len(tos) != len(knobs) {
		return []Change{c}
	}
	out := make([]Change, len(knobs))
	for i := range knobs {
		out[i] = Change{At: c.At, Origin: c.Origin, Knob: knobs[i], From: froms[i], To: tos[i]}
	}
	return out
}

// What renders the change without its origin: "parallelism 16 → 24", "rate 50/s → 100/s,
// burst 1 → 5", "note: text".
func (c Change) What() string {
	var parts []string
	for _, p := range c.Parts() {
		if p.From == "" {
			parts = append(parts, fmt.Sprintf("%s: %s", p.Knob, p.To))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s → %s", p.Knob, p.From, p.To))
		}
	}
	return strings.Join(parts, changeSep)
}

// String renders the change for a log line: "parallelism 16 → 24 (tui)".
func (c Change) String() string { return c.What() + " (" + c.Origin + ")" }
