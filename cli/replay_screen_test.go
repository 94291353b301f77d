package cli

import (
	"slices"
	"testing"

	"github.com/throttle-dev/throttle/replay"
	"github.com/throttle-dev/throttle/tui"
)

// TestReplaySpeedsAgree: the screen's keys 1 to 4 choose replay.Speeds, which the tui package
// keeps its own copy of (it cannot import replay).
func TestReplaySpeedsAgree(t *testing.T) {
	if !slices.Equal(tui.ReplaySpeeds, replay.Speeds) {
		t.Errorf("tui.ReplaySpeeds %v, replay.Speeds %v", tui.ReplaySpeeds, replay.Speeds)
	}
}
