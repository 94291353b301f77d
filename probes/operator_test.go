package probes

import (
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// noteKnobs takes the tuner's notes; it turns nothing.
type noteKnobs struct{ notes []string }

func (k *noteKnobs) Snapshot() engine.Snapshot       { return engine.Snapshot{} }
func (k *noteKnobs) Set(engine.Update, string) error { return nil }
func (k *noteKnobs) Note(origin, text string)        { k.notes = append(k.notes, text) }

// TestOperatorChanged: an operator's hand on a knob pauses the tuner, whether the change was
// made on this host or came back from a shared job's Redis as HOST/ORIGIN; the tuner's own
// changes, the start, the engine's and the congestion response's, and a resync do not.
func TestOperatorChanged(t *testing.T) {
	at := time.Unix(1000, 0)
	for _, c := range []struct {
		origin, knob string
		want         bool
	}{
		{"tui", "parallelism", true},
		{"ctl", "rate", true},
		{"vm/41/tui", "parallelism", true},
		{"vm/41/ctl", "pace", true},
		{"auto", "parallelism", false},
		{"vm/41/auto", "parallelism", false},
		{"vm/41/cli", "start", false},
		{"cluster", "start", false},
		{"vm/41/redis", "sync", false},
		{"adapt", "effective parallelism", false},
		{"engine", "state", false},
		{"tui", "state", false}, // a pause is not a knob
	} {
		k := &noteKnobs{}
		tu := NewTuner(k, nil)
		s := engine.Snapshot{Changes: []engine.Change{{At: at, Origin: c.origin, Knob: c.knob}}}
		if got := tu.operatorChanged(s, at); got != c.want {
			t.Errorf("a change of %s by %q: operatorChanged = %v, want %v", c.knob, c.origin, got, c.want)
		}
		if got := !tu.pausedTo.IsZero(); got != c.want {
			t.Errorf("a change of %s by %q: paused %v, want %v", c.knob, c.origin, got, c.want)
		}
	}
}
