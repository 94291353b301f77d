// Package record writes a run as it happens to a compact, crash-tolerant recording and reads
// it back for `throttle replay`: every call, every change of a knob with who made it, the
// Retry-After holds and a snapshot of the counters each second. A recording holds no secrets
// and no response bodies: calls are kept as numbers and an outcome class, never a message.
//
// # Format (version 1)
//
// A recording is a gzip stream of JSON lines, flushed every second so that a recording cut
// off by a crash reads back up to its last flush. The first line is the [Header], a JSON
// object. Every later line is a JSON array whose first element says what it is; times are
// microseconds since Header.Started:
//
//	[0, start, latency, worker, index, items, attempt, inflight, status, class, verdict, final, retry_after]  a call
//	[1, at, "origin", "knob", "from", "to"]                                                                  a change
//	[2, at, until]                                                                                           a Retry-After hold
//	[3, at, state, read, ok, failed, calls, retries, too_many, errors, inflight, backing_off]                a snapshot
//	[4, at, "message"]                                                                                       a warning
//	[5, at, n]                                                                   n events the recorder missed
//	[6, at, {summary}]                                                           the end of the run ([End])
//
// class is the call's outcome class (0 ok, 1 429, 2 timeout, 3 connection, 4 5xx, 5 other
// 4xx, 6 other); verdict is 0 ok, 1 retry, 2 fail; a snapshot's state is 0 running, 1 paused,
// 2 draining, 3 stopping, 4 done. These numbers are the format's own (see codes.go), not the
// values of [probes.Class], [engine.Verdict] or [engine.State], and never change. final is 1
// when the call's item got its row and 0 when it was to be tried again; retry_after is the
// Retry-After the answer asked for, in microseconds. `throttle replay FILE --export jsonl` writes the same
// records as plain JSON objects with named fields.
package record

import (
	"strconv"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// Version is the format version this package writes and reads.
const Version = 1

// Record kinds: the first element of every line after the header.
const (
	kindCall = iota
	kindChange
	kindHold
	kindSnapshot
	kindWarning
	kindDropped
	kindEnd
)

// Header is the first line of a recording: what ran, where, and with which settings.
type Header struct {
	// Format is always "throttle-recording": it tells a recording from any other gzip file.
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Started time.Time `json:"started"`
	Host    string    `json:"host,omitempty"`
	// Throttle is the version of the binary that recorded.
	Throttle string `json:"throttle,omitempty"`
	// Adapter names the adapter ("http", "sim", …); Target is what it called, with any
	// secret-looking parts redacted; Input names the input.
	Adapter string `json:"adapter"`
	Target  string `json:"target,omitempty"`
	Input   string `json:"input,omitempty"`
	// Total is the number of input items, -1 when unknown.
	Total int64 `json:"total"`
	// Settings are the settings the run started with.
	Settings   Settings `json:"settings"`
	Retries    int      `json:"retries"`
	MaxBackoff Duration `json:"max_backoff"`
	Timeout    Duration `json:"timeout"`
	Chunk      int      `json:"chunk,omitempty"`
	Auto       bool     `json:"auto,omitempty"`
	// Adapt says the congestion response was on (recordings made before it existed read
	// false: their runs held the settings as given); Hold is "strict" or "probe".
	Adapt bool   `json:"adapt,omitempty"`
	Hold  string `json:"hold,omitempty"`
}

// formatName is Header.Format.
const formatName = "throttle-recording"

// Settings are [engine.Settings] with stable JSON names.
type Settings struct {
	Parallelism    int      `json:"parallelism"`
	MaxParallelism int      `json:"max_parallelism,omitempty"`
	Pace           Duration `json:"pace"`
	Rate           float64  `json:"rate"`
	Burst          int      `json:"burst"`
}

// SettingsOf converts engine settings for a header.
func SettingsOf(s engine.Settings) Settings {
	return Settings{Parallelism: s.Parallelism, MaxParallelism: s.MaxParallelism, Pace: Duration(s.Pace), Rate: s.Rate, Burst: s.Burst}
}

// Engine converts back to engine settings.
func (s Settings) Engine() engine.Settings {
	return engine.Settings{Parallelism: s.Parallelism, MaxParallelism: s.MaxParallelism, Pace: time.Duration(s.Pace), Rate: s.Rate, Burst: s.Burst}
}

// Duration is a time.Duration written in JSON as text ("250ms").
type Duration time.Duration

// MarshalText writes the duration as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Call is one call of a recording. Times are offsets from Header.Started.
type Call struct {
	Start      time.Duration
	Latency    time.Duration
	Index      int64
	RetryAfter time.Duration
	Worker     int32
	Items      int32
	InFlight   int32
	Attempt    int16
	Status     int16
	Class      probes.Class
	Verdict    engine.Verdict
	Final      bool
}

// End returns the offset at which the call ended.
func (c Call) End() time.Duration { return c.Start + c.Latency }

// classMessages stand in for the messages a recording does not keep, so that a replayed event
// classifies (and groups) as the live one did.
var classMessages = [...]string{
	probes.ClassTimeout:    "timeout",
	probes.ClassConnection: "connection error",
	probes.Class5xx:        "server error",
	probes.Class4xx:        "client error",
	probes.ClassOther:      "other error",
}

// Event rebuilds the call's end as an engine event of a run started at started.
func (c Call) Event(started time.Time) engine.Event {
	ev := engine.Event{Kind: engine.CallEnd, At: started.Add(c.End()), Worker: int(c.Worker), Index: c.Index,
		Items: int(c.Items), Attempt: int(c.Attempt), InFlight: int(c.InFlight), Latency: c.Latency,
		Status: int(c.Status), Verdict: c.Verdict, RetryAfter: c.RetryAfter, Final: c.Final}
	switch c.Class {
	case probes.ClassOK, probes.ClassTooMany:
	case probes.ClassTimeout, probes.ClassConnection:
		ev.Err, ev.Message = true, classMessages[c.Class]
	default:
		ev.Message = classMessages[c.Class]
		if c.Status != 0 {
			ev.Message = "HTTP " + strconv.Itoa(int(c.Status))
		}
	}
	return ev
}

// Hold is a Retry-After hold: from At, no call started until Until.
type Hold struct{ At, Until time.Duration }

// Snap is the run's counters at one instant.
type Snap struct {
	At                               time.Duration
	State                            engine.State
	Read, OK, Failed, Calls, Retries int64
	TooMany, Errors                  int64
	InFlight, BackingOff             int
}

// Warning is a warning the run gave.
type Warning struct {
	At      time.Duration
	Message string
}

// Change is a change of a knob or of the run's state, with its origin.
type Change struct {
	At                     time.Duration
	Origin, Knob, From, To string
}

// End closes a complete recording: the run's summary as the live run printed it.
type End struct {
	At         time.Duration `json:"-"`
	State      string        `json:"state"`
	Total      int64         `json:"total"`
	OK         int64         `json:"ok"`
	Failed     int64         `json:"failed"`
	NotStarted int64         `json:"not_started"`
	Lost       int64         `json:"lost"`
	Calls      int64         `json:"calls"`
	Retries    int64         `json:"retries"`
	TooMany    int64         `json:"too_many"`
	Elapsed    Duration      `json:"elapsed"`
	Warnings   []string      `json:"warnings,omitempty"`
}

// EndOf converts an engine summary for the end record.
func EndOf(s engine.Summary) End {
	return End{State: s.State.String(), Total: s.Total, OK: s.OK, Failed: s.Failed, NotStarted: s.NotStarted,
		Lost: s.Lost, Calls: s.Calls, Retries: s.Retries, TooMany: s.TooMany, Elapsed: Duration(s.Elapsed), Warnings: s.Warnings}
}
