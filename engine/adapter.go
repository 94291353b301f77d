package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Item is one unit of input: a line of a text file, or one object of a JSON Lines file.
type Item struct {
	// Index is the item's 0-based position among the input's items (blank lines are not items).
	Index int64
	// Line is the input line without its line ending.
	Line string
	// JSON is true when the item came from JSON Lines input; Line then holds the object's text.
	JSON bool
	// Fields holds the decoded object of a JSON Lines item, nil otherwise.
	Fields map[string]any
	// Invalid, when not empty, says why the item cannot be called (e.g. a JSONL line that is not
	// an object). The engine writes a failed row for it without calling the adapter.
	Invalid string
}

// Verdict is an adapter's classification of an answer it obtained.
type Verdict uint8

const (
	// OK means the call succeeded.
	OK Verdict = iota
	// Retry means the answer asks to try again later (429, 408, 5xx, a retryable exit code).
	Retry
	// Fail means the answer is final and not a success (most 4xx).
	Fail
)

// String returns "ok", "retry" or "fail".
func (v Verdict) String() string {
	switch v {
	case OK:
		return "ok"
	case Retry:
		return "retry"
	default:
		return "fail"
	}
}

// Outcome is the answer to one call. Like [net/http.RoundTripper], an adapter returns an
// Outcome whenever it obtained an answer, even a 429 or a 500; it returns an error only when
// no answer was obtained (a network error, a timeout).
type Outcome struct {
	// Verdict classifies the answer for the retry policy.
	Verdict Verdict
	// Status is the protocol's status (HTTP status, exit code); 0 when there is none.
	Status int
	// Message describes a non-OK answer, e.g. "429 Too Many Requests".
	Message string
	// RetryAfter is the wait the server asked for (Retry-After); 0 when it asked for none.
	RetryAfter time.Duration
	// Quota is what the answer said of the caller's quota (X-RateLimit-*, RateLimit-*
	// headers), nil when it said nothing. A quota spent (Remaining 0) holds every worker until
	// its reset, as a Retry-After does.
	Quota *Quota
	// LocalRetryAfter says the Retry-After concerns only this call's target — one host of many,
	// which the adapter holds back itself — so the engine waits it out before this item's next
	// attempt but does not hold every worker.
	LocalRetryAfter bool
	// Output is kept in the result row; it must be a valid JSON value, or nil.
	Output json.RawMessage
	// Extra holds further fields for the result row (e.g. file, bytes, sha256); values must
	// marshal to JSON.
	Extra map[string]any
}

// Quota is a target's account of the caller's quota, as rate-limited APIs send it.
type Quota struct {
	// Limit is the quota's size (-1 when not said); Remaining what is left of it now.
	Limit, Remaining int64
	// Reset is how long until the quota is renewed; 0 when not said.
	Reset time.Duration
}

// Adapter calls the external system for one item. Do must be safe for concurrent use and must
// return promptly when ctx is done. It returns an error only when no answer was obtained; wrap
// it with [Permanent] when retrying cannot help (e.g. a template that cannot be expanded).
type Adapter interface {
	Do(ctx context.Context, it Item) (Outcome, error)
}

// AdapterFunc lets an ordinary function serve as an [Adapter].
type AdapterFunc func(ctx context.Context, it Item) (Outcome, error)

// Do calls f(ctx, it).
func (f AdapterFunc) Do(ctx context.Context, it Item) (Outcome, error) { return f(ctx, it) }

// Batcher is an optional interface of adapters that take a whole chunk in one call (a database
// batch, a batch HTTP endpoint). DoBatch returns one Outcome per item, in order; an error means
// no answer was obtained for any of them. The engine counts one call for the batch.
type Batcher interface {
	DoBatch(ctx context.Context, items []Item) ([]Outcome, error)
}

// Resizer is an optional interface of adapters that hold a resource per worker (a database
// connection each): the engine calls Resize with the parallelism when the run starts (its
// first calls may come a moment before) and each time it changes, so that raising it opens
// connections and lowering it closes them.
// Workers are numbered from 0 ([WorkerOf]); after Resize(n), workers n and above finish the
// call they are in, if any, and make no other.
type Resizer interface {
	Resize(parallelism int)
}

type workerKey struct{}

// WorkerOf returns the number of the worker making a call, from the call's context: 0 up to
// the parallelism. ok is false for a context that is not an engine call's.
func WorkerOf(ctx context.Context) (id int, ok bool) {
	w, ok := ctx.Value(workerKey{}).(*worker)
	if !ok {
		return 0, false
	}
	return w.id, true
}

// laterError says a call was not made and when to try it.
type laterError struct{ after time.Duration }

func (l laterError) Error() string { return fmt.Sprintf("not now: try again in %v", l.after) }

// Later is the error an adapter returns when it did not make the call because its target is
// not ready for it yet (a host's Retry-After, a per-host or shared limit): the engine puts the
// item back to be tried after d, counting neither a call nor an attempt, and the worker goes on
// with other items instead of waiting. Return it before anything reached the target.
func Later(d time.Duration) error { return laterError{after: max(d, 0)} }

// IsLater reports whether err is a [Later], and its wait.
func IsLater(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false // the hot path: errors.As would put l on the heap for every call
	}
	var l laterError
	if errors.As(err, &l) {
		return l.after, true
	}
	return 0, false
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent wraps err so that the engine fails the item at once instead of retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was wrapped by [Permanent].
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
