package engine

import "time"

// BaseBackoff is the first retry's backoff ceiling; each further attempt doubles it.
const BaseBackoff = 250 * time.Millisecond

// Backoff decides how long an item waits before its next attempt. attempt is the number of
// attempts made so far (1 after the first call); retryAfter is the wait the server asked for,
// 0 if none; maxWait caps both; jitter is a uniform random number in [0, 1).
//
// It is exponential backoff with full jitter: a uniform wait in [0, min(maxWait,
// BaseBackoff·2^(attempt-1))). A server's Retry-After is a floor under it, capped at maxWait:
// waiting less would only earn another 429, and a server that asks for a few milliseconds
// at every attempt must not use up an item's retries in one burst.
func Backoff(attempt int, retryAfter, maxWait time.Duration, jitter float64) time.Duration {
	ceiling := BaseBackoff
	for i := 1; i < attempt && ceiling < maxWait; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, maxWait)
	return min(max(retryAfter, time.Duration(jitter*float64(ceiling))), maxWait)
}

// HoldSpread is how far past a shared Retry-After hold each worker's start is spread, so that
// the whole pool does not hit the server in the same instant when the hold ends: a quarter of
// the hold, at most two seconds.
func HoldSpread(hold time.Duration) time.Duration {
	return min(hold/4, 2*time.Second)
}
