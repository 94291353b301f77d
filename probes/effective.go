package probes

import (
	"strconv"

	"github.com/throttle-dev/throttle/engine"
)

// With the congestion response on, the operator's rate and parallelism are ceilings and the
// engine holds the run to an effective value under each while the target pushes back
// ([engine.Effective]). The helpers below say which of the two is in force, and write both the
// one way every screen, progress line and advice shows them: "rate 188/s effective · ceiling
// 250/s" while the effective value binds, plain "rate 250/s" when the ceiling does.

// EffectiveRate returns the rate cap in force (calls/s; 0 for none) and whether it is the
// engine's effective rate under the ceiling rather than the ceiling itself.
func EffectiveRate(set engine.Settings, eff engine.Effective) (float64, bool) {
	return eff.RateUnder(set) // the engine's own rule
}

// EffectiveParallelism returns the parallelism in force and whether it is the engine's
// effective parallelism under the ceiling rather than the ceiling itself.
func EffectiveParallelism(set engine.Settings, eff engine.Effective) (int, bool) {
	return eff.ParallelismUnder(set)
}

// Adapting reports whether the congestion response has acted in the run: it answered a
// pushback of the target, or holds an effective value. A run without it (--adapt=false, or a
// target that never pushed back) has neither.
func Adapting(eff engine.Effective) bool {
	return eff.Signals > 0 || eff.Rate > 0 || eff.Parallelism > 0
}

// RateText is the rate knob as shown everywhere: "rate 188/s effective · ceiling 250/s"
// while the effective rate binds ("ceiling none" under no ceiling), else "rate 250/s".
func RateText(set engine.Settings, eff engine.Effective) string {
	r, binds := EffectiveRate(set, eff)
	if !binds {
		return "rate " + engine.FormatRate(set.Rate)
	}
	return "rate " + engine.FormatComputedRate(r) + " effective · ceiling " + CeilingRate(set.Rate)
}

// ParallelismText is the parallelism knob as shown everywhere: "parallelism 6 effective ·
// ceiling 16" while the effective parallelism binds, else "parallelism 16".
func ParallelismText(set engine.Settings, eff engine.Effective) string {
	p, binds := EffectiveParallelism(set, eff)
	if !binds {
		return "parallelism " + strconv.Itoa(set.Parallelism)
	}
	return "parallelism " + strconv.Itoa(p) + " effective · ceiling " + strconv.Itoa(set.Parallelism)
}

// CeilingRate writes a rate ceiling: "250/s", or "none" when there is no rate ceiling.
func CeilingRate(r float64) string {
	if r <= 0 {
		return "none"
	}
	return engine.FormatRate(r)
}
