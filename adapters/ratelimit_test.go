package adapters

import (
	"net/http"
	"testing"
	"time"
)

func TestParseQuota(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name      string
		header    http.Header
		nilWanted bool
		limit     int64
		remaining int64
		reset     time.Duration
	}{
		{"github style: reset as a unix time", http.Header{"X-Ratelimit-Limit": {"5000"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"1800000042"}}, false, 5000, 0, 42 * time.Second},
		{"seconds to wait", http.Header{"X-Ratelimit-Remaining": {"17"}, "X-Ratelimit-Reset": {"30"}}, false, -1, 17, 30 * time.Second},
		{"IETF draft fields", http.Header{"Ratelimit-Limit": {"100"}, "Ratelimit-Remaining": {"3"}, "Ratelimit-Reset": {"7"}}, false, 100, 3, 7 * time.Second},
		{"IETF draft, one header", http.Header{"Ratelimit": {`limit=100, remaining=0, reset=12`}}, false, 100, 0, 12 * time.Second},
		{"a policy list: the first value counts", http.Header{"X-Ratelimit-Limit": {"10, 10;w=1"}, "X-Ratelimit-Remaining": {"4"}}, false, 10, 4, 0},
		{"fractional seconds round up", http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"1.2"}}, false, -1, 0, 2 * time.Second},
		{"nothing said", http.Header{"Content-Type": {"text/plain"}}, true, 0, 0, 0},
		{"garbage", http.Header{"X-Ratelimit-Remaining": {"lots"}}, true, 0, 0, 0},
	} {
		q := ParseQuota(tc.header, now)
		if tc.nilWanted {
			if q != nil {
				t.Errorf("%s: %+v, want nil", tc.name, q)
			}
			continue
		}
		if q == nil || q.Limit != tc.limit || q.Remaining != tc.remaining || q.Reset != tc.reset {
			t.Errorf("%s: %+v, want limit %d remaining %d reset %v", tc.name, q, tc.limit, tc.remaining, tc.reset)
		}
	}
}
