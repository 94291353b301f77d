package cli

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// oneNouns finds a count of exactly one followed by a plural noun: "1 retries", "1 items".
var oneNouns = regexp.MustCompile(`(^|[^0-9.,])1 (retries|calls|items|rows|jobs|events|attempts|duplicate rows)\b|1 items were`)

// TestSummarySaysOneInTheSingular: a count of one reads "1 retry", "1 call", "1 item" (issue
// 20: "1 retries"); other counts keep the plural.
func TestSummarySaysOneInTheSingular(t *testing.T) {
	var b strings.Builder
	printSummary(&b, engine.Summary{State: engine.Draining, Total: 2, OK: 1, NotStarted: 1, Calls: 1, Retries: 1, TooMany: 1,
		Elapsed: time.Second}, probes.Stats{Calls: 1, P50: time.Millisecond}, "r.jsonl")
	got := b.String()
	if m := oneNouns.FindString(got); m != "" {
		t.Errorf("the summary says %q:\n%s", m, got)
	}
	for _, want := range []string{"1 item,", "1 call,", "1 retry,", "over 1 call\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("the summary lacks %q:\n%s", want, got)
		}
	}
	b.Reset()
	printSummary(&b, engine.Summary{State: engine.Done, Total: 3, OK: 3, Calls: 5, Retries: 2, Elapsed: time.Second},
		probes.Stats{Calls: 5, P50: time.Millisecond}, "r.jsonl")
	for _, want := range []string{"3 items,", "5 calls,", "2 retries,", "over 5 calls\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the summary lacks %q:\n%s", want, b.String())
		}
	}
}
