package probes

import (
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// Monitor is every observer a live run needs, fed from one subscription: the per-second
// series for charts, the advisor's windows and the auto-tuner's shorter ones.
type Monitor struct {
	*Series
	advisor *Windows
	auto    *Windows
	cfg     AdvisorConfig
}

// NewMonitor returns a Monitor whose advisor judges by cfg. The auto-tuner's windows are kept
// only when auto is set: each observer costs the event path.
func NewMonitor(cfg AdvisorConfig, auto bool) *Monitor {
	cfg = cfg.withDefaults()
	keep := int(cfg.CleanFor/DefaultWindow) + 12
	m := &Monitor{Series: NewSeries(), advisor: NewWindows(DefaultWindow, keep), cfg: cfg}
	if auto {
		m.auto = newWindows(AutoWindow, 30)
	}
	return m
}

// Observe feeds one event to every observer.
func (m *Monitor) Observe(ev engine.Event) {
	m.Series.Observe(ev)
	m.advisor.Observe(ev)
	if m.auto != nil {
		m.auto.Observe(ev)
	}
}

// Latency is the latency of the last complete advisor window (5 s).
func (m *Monitor) Latency(now time.Time) Stats { return m.advisor.Latest(now) }

// Overall is the latency over the whole run so far.
func (m *Monitor) Overall() Stats { return m.advisor.Run() }

// Advice is the advisor's suggestion for the run's settings (ceilings) and the congestion
// response's effective values now.
func (m *Monitor) Advice(now time.Time, set engine.Settings, eff engine.Effective) Advice {
	return Advise(m.advisor.Recent(now), set, eff, m.cfg)
}

// Tuner returns an auto-tuner that turns k by this monitor's short windows; the Monitor must
// have been made with auto set.
func (m *Monitor) Tuner(k Knobs) *Tuner {
	if m.auto == nil {
		panic("probes: Tuner of a Monitor made without auto")
	}
	return NewTuner(k, m.auto)
}

// Feed observes every event of sub until stop is closed, then the events still buffered, so
// that a run's last calls count. Run it on its own goroutine.
func Feed(sub *engine.Subscription, stop <-chan struct{}, observers ...func(engine.Event)) {
	observe := func(ev engine.Event) {
		for _, o := range observers {
			o(ev)
		}
	}
	for {
		select {
		case ev := <-sub.C:
			observe(ev)
		case <-stop:
			for {
				select {
				case ev := <-sub.C:
					observe(ev)
				default:
					return
				}
			}
		}
	}
}
