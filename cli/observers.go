package cli

import (
	"context"

	"github.com/throttle-dev/throttle/engine"
)

// observers are a run's optional outlets: Prometheus metrics (--metrics, package metrics), the
// event log (--log, package eventlog) and the bell and notification at its end (--notify,
// package notify). Each reads the engine like any observer, through bounded subscriptions and
// snapshots, so none can slow the calls; cli only wires the flags to them.
type observers struct {
	stops []func(engine.Summary)
	// feeds take the run's events from the monitor's subscription (see startMonitor).
	feeds []func(engine.Event)
}

// startObservers starts the outlets the flags ask for; an outlet that cannot start (a port in
// use, a log file that cannot be created) is a usage error before anything is called.
func startObservers(ctx context.Context, env *Env, rf *runFlags, e *engine.Engine, j job, title string) (*observers, error) {
	o := &observers{}
	if rf.metrics != "" {
		stop, feed, err := startMetrics(ctx, env, rf, e, j, title)
		if err != nil {
			o.finish(env, &runFlags{}, engine.Summary{})
			return nil, err
		}
		o.stops = append(o.stops, stop)
		o.feeds = append(o.feeds, feed)
	}
	if rf.logFile != "" {
		stop, err := startEventLog(ctx, env, rf, e, j, title)
		if err != nil {
			o.finish(env, &runFlags{}, engine.Summary{})
			return nil, err
		}
		o.stops = append(o.stops, stop)
	}
	return o, nil
}

// finish ends the outlets with the run's summary, then rings the bell and notifies.
func (o *observers) finish(env *Env, rf *runFlags, sum engine.Summary) {
	for i := len(o.stops) - 1; i >= 0; i-- {
		o.stops[i](sum)
	}
	o.stops = nil
	notifyEnd(env, rf, sum)
}
