package control

import (
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// Version is the protocol's version: requests and responses are JSON lines over the socket,
// one response per request.
const Version = 1

// Request is one command: get, view, set, pause, resume, drain or stop. A set carries one
// change, applied as one: the knobs of Set (name → value, as [engine.Update.Fields] writes
// them) and Key with Value (one knob, as `ctl set KEY VALUE` gives it). Origin names who asks
// in the change log: "tui" for an attached screen, else "ctl".
type Request struct {
	V      int               `json:"v"`
	Cmd    string            `json:"cmd"`
	Key    string            `json:"key,omitempty"`
	Value  string            `json:"value,omitempty"`
	Set    map[string]string `json:"set,omitempty"`
	Origin string            `json:"origin,omitempty"`
	// Viewer names an attached screen in its view requests, so that a job that ends waits
	// (briefly) until each screen that watches it has fetched its final view.
	Viewer string `json:"viewer,omitempty"`
}

// Response answers one Request: the state after it, or why it failed (nothing changed then).
type Response struct {
	V      int     `json:"v"`
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	View   *View   `json:"view,omitempty"`
}

// View is everything an attached screen draws: the engine's snapshot and the statistics of
// the run's monitor. It holds no item, header or secret either.
type View struct {
	Title    string              `json:"title"`
	Retries  int                 `json:"retries"`
	Auto     bool                `json:"auto"`
	Snapshot engine.Snapshot     `json:"snapshot"`
	Points   []probes.Point      `json:"points"`
	Latency  probes.Stats        `json:"latency"`
	Overall  probes.Stats        `json:"overall"` // the latency over the whole run, which the summary says
	Errors   []probes.ErrorGroup `json:"errors"`
	Advice   probes.Advice       `json:"advice"`
}

// Viewer gives the statistics of a run for [View]: a [*probes.Monitor].
type Viewer interface {
	Points(now time.Time, span time.Duration) []probes.Point
	Latency(now time.Time) probes.Stats
	Overall() probes.Stats
	Errors(n int) []probes.ErrorGroup
	Advice(now time.Time, set engine.Settings, eff engine.Effective) probes.Advice
}

// Status is what the socket tells of a run: its title, settings and counts, and the newest
// changes. It holds no item, no header and no secret.
type Status struct {
	Title       string    `json:"title"`
	PID         int       `json:"pid"`
	State       string    `json:"state"`
	Started     time.Time `json:"started"`
	Parallelism int       `json:"parallelism"`
	MaxParallel int       `json:"max_parallelism"`
	Pace        string    `json:"pace"`
	Rate        string    `json:"rate"`
	Burst       int       `json:"burst"`
	Total       int64     `json:"total"`
	OK          int64     `json:"ok"`
	Failed      int64     `json:"failed"`
	Calls       int64     `json:"calls"`
	Retries     int64     `json:"retries"`
	TooMany     int64     `json:"too_many"`
	Errors      int64     `json:"errors"`
	InFlight    int       `json:"in_flight"`
	// Waiting counts the calls admitted that wait for their turn (a shared limit, a host):
	// not in flight; WaitingFor says for what most of them wait ("limit tmdb").
	Waiting    int      `json:"waiting"`
	WaitingFor string   `json:"waiting_for,omitempty"`
	BackingOff int      `json:"backing_off"`
	Changes    []string `json:"changes"`

	// CallsPerSecond and TooManyShare (0 to 1) are the run's current rates as its screen
	// shows them (probes.Measure), over RateWindow: "last 5s", "last 2s" after a change,
	// "measuring" right after one, "whole run" once it ended; "" when the job keeps no
	// statistics.
	CallsPerSecond float64 `json:"calls_per_second"`
	TooManyShare   float64 `json:"too_many_share"`
	RateWindow     string  `json:"rate_window"`

	// With the congestion response on, parallelism and rate above are the ceilings; these are
	// the values the run holds itself to under them while they bind: 0 and "" when the
	// ceiling applies. TargetLimit is the rate the target accepted when it last pushed back
	// ("" if never), Signals the pushbacks the response answered.
	EffectiveParallelism int    `json:"effective_parallelism"`
	EffectiveRate        string `json:"effective_rate"`
	TargetLimit          string `json:"target_limit"`
	Signals              int    `json:"signals"`

	// Job, on the coordinator of a job across hosts, is the whole job's progress; the counts
	// above are then this host's.
	Job *JobProgress `json:"job,omitempty"`
}

// JobProgress is a shared job's progress as its coordinator knows it: the rows every host's
// calls gave, written to the results file, against the input's total (0: not known), and
// when the rest should be in (0: cannot tell yet).
type JobProgress struct {
	Rows       int64   `json:"rows"`
	Total      int64   `json:"total"`
	ETASeconds float64 `json:"eta_seconds"`
}

// statusOf is the status of a run from its snapshot and, when the job has statistics, their
// per-second points (nil when it has none).
func statusOf(title string, pid int, s engine.Snapshot, points []probes.Point, measured bool) *Status {
	st := &Status{Title: title, PID: pid, State: s.State.String(), Started: s.Started,
		Parallelism: s.Settings.Parallelism, MaxParallel: s.Settings.MaxParallelism, Pace: s.Settings.Pace.String(),
		Rate: engine.FormatRate(s.Settings.Rate), Burst: s.Settings.Burst, Total: s.Total, OK: s.OK, Failed: s.Failed,
		Calls: s.Calls, Retries: s.Retries, TooMany: s.TooMany, Errors: s.Errors, InFlight: s.InFlight, BackingOff: s.BackingOff,
		Waiting: s.ByState[engine.WorkerWaiting]}
	st.WaitingFor, _ = s.Waiting()
	if p, eff := probes.EffectiveParallelism(s.Settings, s.Effective); eff {
		st.EffectiveParallelism = p
	}
	if r, eff := probes.EffectiveRate(s.Settings, s.Effective); eff {
		st.EffectiveRate = engine.FormatComputedRate(r)
	}
	if s.Effective.Limit > 0 {
		st.TargetLimit = engine.FormatComputedRate(s.Effective.Limit)
	}
	st.Signals = s.Effective.Signals
	if measured {
		f := probes.Measure(s, points)
		st.CallsPerSecond, st.TooManyShare, st.RateWindow = f.CallsPerSecond(), f.TooManyShare(), f.Window()
	}
	if !s.Ended.IsZero() {
		st.State = "ended"
	}
	for _, c := range s.Changes {
		st.Changes = append(st.Changes, c.At.Sub(s.Started).Round(time.Second).String()+"  "+c.String())
	}
	return st
}
