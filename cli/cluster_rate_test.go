package cli

import (
	"math"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/cluster"
)

// TestJobRateSumsTheHosts: the job's calls/s is the sum of its live hosts' own rates, over the
// longest time one was measured; no host measured yet is "measuring" (0 over 0), and a host
// that left takes its rate with it (the sum of counts fell below zero then).
func TestJobRateSumsTheHosts(t *testing.T) {
	hosts := []cluster.HostStatus{
		{Host: "a/1", PerSecond: 100, Over: 5 * time.Second},
		{Host: "b/2", PerSecond: 60, Over: 5 * time.Second},
		{Host: "c/3", PerSecond: 40, Over: 2 * time.Second},
	}
	for _, tc := range []struct {
		hosts []cluster.HostStatus
		ps    float64
		over  time.Duration
	}{
		{hosts, 200, 5 * time.Second},
		{hosts[:2], 160, 5 * time.Second},
		{hosts[2:], 40, 2 * time.Second},
		{[]cluster.HostStatus{{Host: "d/4"}}, 0, 0},
		{nil, 0, 0},
	} {
		if ps, over := jobRate(tc.hosts); math.Abs(ps-tc.ps) > 1e-9 || over != tc.over {
			t.Errorf("%d hosts: %.1f calls/s over %v, want %.1f over %v", len(tc.hosts), ps, over, tc.ps, tc.over)
		}
	}
}
