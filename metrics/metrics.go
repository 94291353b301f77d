// Package metrics exposes a run as Prometheus metrics. Counters of calls, their latency and
// control changes are fed from the engine's event stream by one goroutine; the gauges and the
// engine's own exact counters are read from a snapshot when Prometheus scrapes. Like every
// observer it reads the engine through a bounded, lossy subscription and snapshots, so it
// can never hold a call up; what it costs is the engine building and sending one event per
// call (see bench_test.go).
//
// Every throttle_ metric carries one label naming the run, [JobLabel], and otherwise only
// labels with a small fixed set of values: nothing about single items ever becomes a label.
package metrics

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// JobLabel names the run on every throttle_ metric. It is not "job": Prometheus sets job
// itself on every scraped series (from the scrape config's job_name), and an exposed "job"
// would either be renamed exported_job or, with honor_labels, replace the scrape's own.
// "job_name" is avoided too, since it reads as that scrape-config key.
const JobLabel = "throttle_job"

// durationBuckets are throttle_call_duration_seconds' upper bounds, from 1 ms (a cache or a
// loopback) to 60 s (the longest timeouts worth waiting for), about ×2.5 apart.
var durationBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// DefaultSampleEvery is how often the retry queue is sampled for throttle_backoff_seconds_total.
const DefaultSampleEvery = 100 * time.Millisecond

// DefaultBuffer is the event subscription's room: at 300,000 calls/s, 27 ms of the drain
// goroutine not being scheduled before events are dropped (and counted).
const DefaultBuffer = 8192

// Options configure an [Observer].
type Options struct {
	// Job is the value of [JobLabel]: how the operator knows the run (the screen's title).
	Job string
	// StatusNotHTTP says the adapter's status is not an HTTP status (exec's exit code), so
	// that an exit code of 200 is not counted as status_class="2xx".
	StatusNotHTTP bool
	// SampleEvery is the retry queue's sampling interval; 0 means [DefaultSampleEvery].
	SampleEvery time.Duration
	// Buffer is the event subscription's size; 0 means [DefaultBuffer].
	Buffer int
	// Shared says the caller feeds the events with [Observer.Observe] from a subscription it
	// already has (the CLI's monitor), so that the engine publishes each event once for both:
	// a second subscriber alone costs several percent at a million calls a second.
	Shared bool
}

// outcome and status-class labels, indexed like probes.Class and statusClass.
var (
	outcomes      = [...]string{"ok", "429", "timeout", "connection", "5xx", "4xx", "other"}
	statusClasses = [...]string{"2xx", "3xx", "4xx", "5xx", "none"}
)

const (
	sc2xx = iota
	sc3xx
	sc4xx
	sc5xx
	scNone
)

// knobs and sources are the label values throttle_control_changes_total may take; anything
// else is "other", so that a stray origin (a control-socket client names its own) cannot
// grow the series.
var (
	knobs = func() map[string]string {
		m := map[string]string{"state": "state", "effective rate": "effective_rate", "effective parallelism": "effective_parallelism"}
		for _, k := range engine.Knobs() {
			m[k.String()] = strings.ReplaceAll(k.String(), "-", "_")
		}
		return m
	}()
	sources = map[string]bool{
		"cli": true, "tui": true, "ctl": true, "auto": true, "advisor": true, "probe": true,
		"signal": true, "engine": true, "context": true, "cluster": true, "redis": true, "adapt": true,
	}
)

// Observer holds a run's metrics and feeds them. Create it with [New] before the run
// starts, serve [Observer.Handler], and call [Observer.Finish] when the run has ended.
type Observer struct {
	eng   *engine.Engine
	reg   *prometheus.Registry
	sub   *engine.Subscription
	every time.Duration
	http  bool
	// common marks the (outcome, status class) pairs exported from the first scrape, so that
	// rate() and increase() see their first calls; rarer pairs appear when they happen.
	common [len(outcomes)][len(statusClasses)]bool

	// Owned by the drain goroutine (and by Finish once it has stopped).
	local   tally
	changes *prometheus.CounterVec
	backoff prometheus.Counter
	lastN   int
	lastAt  time.Time

	mu        sync.Mutex
	published tally // local as of the last tick, for scrapes

	stop     chan struct{}
	done     chan struct{}
	finished sync.Once
	final    atomic.Pointer[engine.Snapshot]
}

// tally is what the drain goroutine counts from call ends. It counts in plain fields and
// publishes a copy with every sample of the retry queue (and at the end), rather than pay for
// a Prometheus counter and histogram per call: a scrape sees calls up to a sample old.
type tally struct {
	calls [len(outcomes)][len(statusClasses)]uint64
	// buckets[i] counts latencies in (bound[i-1], bound[i]]; the last one those above all.
	buckets [len(durationBuckets) + 1]uint64
	sum     time.Duration
	count   uint64
}

// bucketBounds are durationBuckets as durations, so that a call's latency is placed without
// a conversion to float.
var bucketBounds = func() []time.Duration {
	b := make([]time.Duration, len(durationBuckets))
	for i, s := range durationBuckets {
		b[i] = time.Duration(s * float64(time.Second))
	}
	return b
}()

// New subscribes to e's call ends and control changes and starts the goroutine that feeds
// the counters. Call it before e.Run so that no event is missed.
func New(e *engine.Engine, opt Options) *Observer {
	if opt.SampleEvery <= 0 {
		opt.SampleEvery = DefaultSampleEvery
	}
	if opt.Buffer <= 0 {
		opt.Buffer = DefaultBuffer
	}
	o := &Observer{
		eng:   e,
		reg:   prometheus.NewRegistry(),
		every: opt.SampleEvery,
		http:  !opt.StatusNotHTTP,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "throttle_control_changes_total",
			Help: "Changes of a knob (parallelism, pace, rate, burst), of an effective value the congestion response keeps under them (effective_rate, effective_parallelism; source adapt), or of the run's state (pause, resume, drain, stop, done), by who made them.",
		}, []string{"knob", "source"}),
		backoff: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "throttle_backoff_seconds_total",
			Help: "Item-seconds spent in the retry queue (backing off, or due and waiting for a worker), integrated from the queue's length sampled every " + opt.SampleEvery.String() + ".",
		}),
	}
	pairs := [][2]int{{0, sc2xx}, {1, sc4xx}, {2, scNone}, {3, scNone}, {4, sc5xx}, {5, sc4xx}}
	if !o.http {
		pairs = [][2]int{{0, scNone}, {2, scNone}, {3, scNone}, {6, scNone}}
	}
	for _, p := range pairs {
		o.common[p[0]][p[1]] = true
	}
	// Lossy by design: a full buffer drops (and counts) events rather than wait for us.
	if !opt.Shared {
		o.sub = e.Subscribe(opt.Buffer, engine.CallEnd, engine.ControlChange)
	}
	throttle := prometheus.WrapRegistererWith(prometheus.Labels{JobLabel: opt.Job}, o.reg)
	throttle.MustRegister(o.changes, o.backoff, &snapshotCollector{o: o})
	o.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	go o.run()
	return o
}

// Registry returns the registry holding the run's metrics and the Go and process collectors.
func (o *Observer) Registry() *prometheus.Registry { return o.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (o *Observer) Handler() http.Handler {
	return promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{
		// A failing collector (say /proc unreadable) must not hide the run's own metrics.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Finish folds the run's end into the metrics: it counts the events still buffered, stops
// the goroutine and the subscription, and from then on serves the final state, its counts
// taken from sum when it is the summary of a run that ended. It may be called more than
// once; calls after the first do nothing.
func (o *Observer) Finish(sum engine.Summary) {
	o.finished.Do(func() {
		close(o.stop)
		<-o.done
		if o.sub != nil {
			o.sub.Close()
		}
		s := o.eng.Snapshot()
		o.sampleBackoff(s.At, s.BackingOff)
		if sum.State >= engine.Draining { // a real summary, not the zero one of a run never started
			s.OK, s.Failed, s.Retries = sum.OK, sum.Failed, sum.Retries
		}
		o.final.Store(&s)
	})
}

// run counts events and samples the retry queue until Finish; then it counts what is still
// buffered, which is every event of a run that has returned.
func (o *Observer) run() {
	defer close(o.done)
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	var events <-chan engine.Event // nil, which never delivers, when the caller feeds us
	if o.sub != nil {
		events = o.sub.C
	}
	for {
		select {
		case ev := <-events:
			o.observe(ev)
			o.drain()
			// Let events gather before waiting on the channel again: waiting there, this
			// goroutine would be woken by the engine for every single event, which at 2,000
			// to 20,000 calls a second measured 2 to 5 µs of CPU per call, several times what
			// batches cost. The buffer holds 8 ms of events even at a million calls a second.
			time.Sleep(batchWait)
		case <-tick.C:
			s := o.eng.Snapshot()
			o.sampleBackoff(s.At, s.BackingOff)
			o.publish()
		case <-o.stop:
			o.drain()
			o.publish()
			return
		}
	}
}

// batchWait is how long the drain goroutine lets events gather after each batch.
const batchWait = time.Millisecond

// drain counts the events buffered now. It takes at most a buffer's worth, so that a stream
// faster than it still lets it sample and publish.
func (o *Observer) drain() {
	if o.sub == nil {
		return
	}
	for range cap(o.sub.C) {
		select {
		case ev := <-o.sub.C:
			o.observe(ev)
			continue
		default:
		}
		return
	}
}

// publish makes the tally so far what scrapes see.
func (o *Observer) publish() {
	o.mu.Lock()
	o.published = o.local
	o.mu.Unlock()
}

// sampleBackoff adds the item-seconds since the previous sample, assuming the queue held as
// many items as it did then: over many backoffs this neither over- nor under-counts, since
// each sample stands for exactly the interval after it.
func (o *Observer) sampleBackoff(now time.Time, n int) {
	if d := now.Sub(o.lastAt); d > 0 && o.lastN > 0 { // lastN is 0 until the first sample
		o.backoff.Add(float64(o.lastN) * d.Seconds())
	}
	o.lastN, o.lastAt = n, now
}

// Observe counts one event fed by the caller (see Options.Shared). It may be called from one
// goroutine at a time, concurrently with scrapes and with Finish.
func (o *Observer) Observe(ev engine.Event) {
	o.mu.Lock()
	o.observe(ev)
	o.mu.Unlock()
}

func (o *Observer) observe(ev engine.Event) {
	switch ev.Kind {
	case engine.CallEnd:
		c := probes.Classify(ev)
		if int(c) >= len(outcomes) {
			c = probes.ClassOther
		}
		t := &o.local
		t.calls[c][o.statusClass(ev)]++
		i := 0
		for i < len(bucketBounds) && ev.Latency > bucketBounds[i] {
			i++
		}
		t.buckets[i]++
		t.sum += ev.Latency
		t.count++
	case engine.ControlChange:
		for _, c := range ev.Change.Parts() { // a change of rate and burst counts for each
			if knob, source, ok := changeLabels(c); ok {
				o.changes.WithLabelValues(knob, source).Inc()
			}
		}
	}
}

func (o *Observer) statusClass(ev engine.Event) int {
	if ev.Err || !o.http {
		return scNone
	}
	switch s := ev.Status; {
	case s >= 200 && s <= 299:
		return sc2xx
	case s >= 300 && s <= 399:
		return sc3xx
	case s >= 400 && s <= 499:
		return sc4xx
	case s >= 500 && s <= 599:
		return sc5xx
	}
	return scNone
}

// changeLabels maps a change-log entry to its labels; ok is false for entries that change
// nothing (the run's "start" line, the tuner's notes). A cluster's origin names the host
// ("host-a/tui"): only the kind after the slash is kept, since hosts come and go.
func changeLabels(c engine.Change) (knob, source string, ok bool) {
	switch c.Knob {
	case "start", "note":
		return "", "", false
	}
	knob, ok = knobs[c.Knob]
	if !ok {
		knob = "other"
	}
	source = c.Origin
	if i := strings.LastIndexByte(source, '/'); i >= 0 {
		source = source[i+1:]
	}
	if !sources[source] {
		source = "other"
	}
	return knob, source, true
}

// snapshot returns the final state once the run has finished, else the live one.
func (o *Observer) snapshot() engine.Snapshot {
	if s := o.final.Load(); s != nil {
		return *s
	}
	return o.eng.Snapshot()
}

// snapshotCollector reads the gauges and the engine's exact counters from one snapshot per
// scrape, so that they agree with each other and cost the engine nothing between scrapes,
// and the calls and their durations from the drain goroutine's latest tally.
type snapshotCollector struct{ o *Observer }

var (
	descCalls = prometheus.NewDesc("throttle_calls_total",
		"Calls that ended (a batch is one call), by outcome (ok, 429, timeout, connection, 5xx, 4xx, other) and HTTP status class (none: no answer, or not an HTTP adapter).",
		[]string{"outcome", "status_class"}, nil)
	descDuration = prometheus.NewDesc("throttle_call_duration_seconds",
		"Duration of calls, from the call's start to its answer or error, whatever the outcome.", nil, nil)
	descInflight = prometheus.NewDesc("throttle_inflight",
		"Calls in flight now: started at their target (not those waiting for a shared limit or a host's turn).", nil, nil)
	descWaiting = prometheus.NewDesc("throttle_waiting",
		"Calls admitted by the run that wait for their turn at a shared limit, a host or an LLM's tokens: not in flight yet.", nil, nil)
	descParallelism = prometheus.NewDesc("throttle_parallelism_limit",
		"The parallelism limit: the most calls in flight at once. With the congestion response on it is the ceiling; see throttle_effective_parallelism_limit.", nil, nil)
	descRate = prometheus.NewDesc("throttle_rate_limit_per_second",
		"The global rate cap in calls per second; 0 means unlimited. With the congestion response on it is the ceiling; see throttle_effective_rate_limit_per_second.", nil, nil)
	descEffParallelism = prometheus.NewDesc("throttle_effective_parallelism_limit",
		"The parallelism the congestion response holds the run to under throttle_parallelism_limit after the target refused calls in flight; 0 when the ceiling applies.", nil, nil)
	descEffRate = prometheus.NewDesc("throttle_effective_rate_limit_per_second",
		"The rate in calls per second the congestion response holds the run to under throttle_rate_limit_per_second after the target pushed back; 0 when the ceiling applies.", nil, nil)
	descTargetLimit = prometheus.NewDesc("throttle_target_limit_per_second",
		"The rate in calls per second the target accepted when it last pushed back; absent when it never did.", nil, nil)
	descSignals = prometheus.NewDesc("throttle_congestion_signals_total",
		"Pushbacks of the target (429s, spent quotas) the congestion response answered, a burst of them from one moment counted once.", nil, nil)
	descPace = prometheus.NewDesc("throttle_pace_seconds",
		"Each worker's minimum interval between the starts of its calls; 0 means none.", nil, nil)
	descDone = prometheus.NewDesc("throttle_items_done_total",
		"Items whose row was written, by result (ok, failed).", []string{"result"}, nil)
	descRemaining = prometheus.NewDesc("throttle_items_remaining",
		"Items of the input without a row yet; absent when the input's size is unknown (stdin, a shared job).", nil, nil)
	descRetries = prometheus.NewDesc("throttle_retries_total",
		"Retries scheduled (each is one more attempt at an item or a batch).", nil, nil)
	descState = prometheus.NewDesc("throttle_run_state",
		"1 for the run's current state (running, paused, draining, stopping, done), 0 for the others.", []string{"state"}, nil)
	descDropped = prometheus.NewDesc("throttle_metrics_events_dropped_total",
		"Events the metrics' subscription dropped because its buffer was full; throttle_calls_total and throttle_call_duration_seconds miss that many calls.", nil, nil)
)

var states = []engine.State{engine.Running, engine.Paused, engine.Draining, engine.Stopping, engine.Done}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCalls, descDuration, descInflight, descWaiting, descParallelism, descRate, descEffParallelism, descEffRate,
		descTargetLimit, descSignals, descPace, descDone, descRemaining, descRetries, descState, descDropped} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	c.o.mu.Lock()
	t := c.o.published
	c.o.mu.Unlock()
	s := c.o.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descInflight, float64(s.InFlight))
	gauge(descWaiting, float64(s.ByState[engine.WorkerWaiting]))
	gauge(descParallelism, float64(s.Settings.Parallelism))
	gauge(descRate, s.Settings.Rate)
	effPar, effRate := 0.0, 0.0
	if p, eff := probes.EffectiveParallelism(s.Settings, s.Effective); eff {
		effPar = float64(p)
	}
	if r, eff := probes.EffectiveRate(s.Settings, s.Effective); eff {
		effRate = r
	}
	gauge(descEffParallelism, effPar)
	gauge(descEffRate, effRate)
	if s.Effective.Limit > 0 {
		gauge(descTargetLimit, s.Effective.Limit)
	}
	counter(descSignals, float64(s.Effective.Signals))
	gauge(descPace, s.Settings.Pace.Seconds())
	counter(descDone, float64(s.OK), "ok")
	counter(descDone, float64(s.Failed), "failed")
	if s.Total >= 0 {
		// Absent rather than -1 when unknown: a sentinel would poison sum() across jobs and
		// fire any "almost done" alert.
		gauge(descRemaining, float64(max(0, s.Total-s.Done())))
	}
	counter(descRetries, float64(s.Retries))
	for _, st := range states {
		v := 0.0
		if s.State == st {
			v = 1
		}
		gauge(descState, v, st.String())
	}
	dropped := int64(0) // fed by the caller (Options.Shared): its subscription counts its own
	if c.o.sub != nil {
		dropped = c.o.sub.Dropped()
	}
	counter(descDropped, float64(dropped))

	for oc := range t.calls {
		for sc, n := range t.calls[oc] {
			if n > 0 || c.o.common[oc][sc] {
				counter(descCalls, float64(n), outcomes[oc], statusClasses[sc])
			}
		}
	}
	cum := make(map[float64]uint64, len(durationBuckets))
	var below uint64
	for i, le := range durationBuckets {
		below += t.buckets[i]
		cum[le] = below
	}
	ch <- prometheus.MustNewConstHistogram(descDuration, t.count, t.sum.Seconds(), cum)
}
