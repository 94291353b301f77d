package adapters

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// ParseQuota reads what an answer says of the caller's quota: the X-RateLimit-Limit,
// -Remaining and -Reset headers that many APIs send (Reset as seconds to wait, or as a Unix
// time when it is that large), the RateLimit-Limit, -Remaining and -Reset fields of the IETF
// draft, or its single RateLimit header ("limit=100, remaining=0, reset=30"). It returns nil
// when the answer says nothing of a remaining count.
func ParseQuota(h http.Header, now time.Time) *engine.Quota {
	q := engine.Quota{Limit: -1, Remaining: -1}
	for _, prefix := range []string{"X-Ratelimit-", "Ratelimit-", "X-Rate-Limit-"} {
		if v, ok := headerInt(h, prefix+"Remaining"); ok {
			q.Remaining = v
			if l, ok := headerInt(h, prefix+"Limit"); ok {
				q.Limit = l
			}
			if r, ok := headerInt(h, prefix+"Reset"); ok {
				q.Reset = resetIn(r, now)
			}
			return &q
		}
	}
	if v := h.Get("Ratelimit"); v != "" { // draft-ietf-httpapi-ratelimit-headers: one header
		for part := range strings.SplitSeq(v, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
			if err != nil {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "limit":
				q.Limit = n
			case "remaining", "r":
				q.Remaining = n
			case "reset", "t":
				q.Reset = resetIn(n, now)
			}
		}
		if q.Remaining >= 0 {
			return &q
		}
	}
	return nil
}

// resetIn turns a reset value into a wait: seconds, or a Unix time when it is that large (as
// GitHub sends it).
func resetIn(v int64, now time.Time) time.Duration {
	const unixTimes = 1_000_000_000 // 2001: no API asks to wait 30 years
	if v >= unixTimes {
		return max(time.Unix(v, 0).Sub(now), 0)
	}
	return time.Duration(max(v, 0)) * time.Second
}

func headerInt(h http.Header, key string) (int64, bool) {
	v := strings.TrimSpace(h.Get(key))
	if v == "" {
		return 0, false
	}
	if i := strings.IndexByte(v, ','); i >= 0 { // "100, 100;w=60": the first is the current one
		v = strings.TrimSpace(v[:i])
	}
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		if f, ferr := strconv.ParseFloat(v, 64); ferr == nil { // "1.5" seconds
			return int64(f + 0.999), true
		}
		return 0, false
	}
	return n, true
}
