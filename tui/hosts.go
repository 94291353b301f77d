package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
)

// Hosts is what the hosts panel draws: the busiest hosts of a run with per-host limits, or of
// a job across hosts, whose panel leads with the whole job. The screen owns these types, and
// the command fills them from wherever the hosts are counted (the http adapter's per-host
// turns, a shared job's heartbeats), so that the screen depends on neither.
type Hosts struct {
	// Job, when set, is the whole of a job across hosts, shown before its hosts.
	Job *JobLoad
	// Rows are the busiest hosts, busiest first.
	Rows []HostLoad
}

// empty reports whether there is nothing to draw: no panel then.
func (h Hosts) empty() bool { return h.Job == nil && len(h.Rows) == 0 }

// HostLoad is one host's row: what is in flight and waiting for the host's turn now, and the
// calls and 429s so far.
type HostLoad struct {
	Host              string
	InFlight, Waiting int
	Calls, TooMany    int64
}

// JobLoad is the whole of a job across hosts: its calls in flight against the job's cap, and
// its calls per second against the job's rate.
type JobLoad struct {
	// Hosts is how many hosts the job has.
	Hosts int
	// InFlight is the calls in flight across hosts; Cap the job's parallelism across hosts.
	InFlight, Cap int
	// PerSecond is the calls per second across hosts over the last Over (a
	// probes.CounterRate's; Over is 0 while less than a second was measured); Rate the job's
	// rate cap (0: none).
	PerSecond, Rate float64
	Over            time.Duration
	// Rows is how many items have their row in the results file, of Total (0: not known on
	// this host, which is not the coordinator); ETA, when not 0, is when the rest should be in.
	Rows, Total int64
	ETA         time.Duration
}

// Caption names the whole job: "all 3 hosts (cap 64, 50 calls/s of 100/s · last 5s)", or
// "– calls/s … · measuring" before a second was measured. The headless progress lines say it
// the same way.
func (j JobLoad) Caption() string {
	rate, window := "–", "measuring"
	if j.Over > 0 {
		rate, window = fmt.Sprintf("%.0f", j.PerSecond), "last "+human.Span(j.Over)
	}
	hosts := fmt.Sprintf("all %d hosts", j.Hosts)
	if j.Hosts == 1 {
		hosts = "1 host"
	}
	s := fmt.Sprintf("%s (cap %d, %s calls/s of %s · %s", hosts, j.Cap, rate, engine.FormatRate(j.Rate), window)
	if j.Total > 0 {
		s += fmt.Sprintf("; %s/%s rows %.1f%%", human.Count(j.Rows), human.Count(j.Total), 100*float64(j.Rows)/float64(j.Total))
		if j.ETA >= time.Second {
			s += " ETA " + human.Span(j.ETA)
		}
	}
	return s + ")"
}

// hostLoads renders the panel on one line: the job first ("all 3 hosts (…): 5"), then the
// busiest hosts ("a.example 2+3 waiting · 12×429", in flight + waiting).
func hostLoads(hosts Hosts) string {
	parts := make([]string, 0, len(hosts.Rows)+1)
	if j := hosts.Job; j != nil {
		parts = append(parts, fmt.Sprintf("%s: %d", j.Caption(), j.InFlight))
	}
	for _, h := range hosts.Rows {
		p := fmt.Sprintf("%s %d", h.Host, h.InFlight)
		if h.Waiting > 0 {
			p += fmt.Sprintf("+%d waiting", h.Waiting)
		}
		if h.TooMany > 0 {
			p += fmt.Sprintf(" · %s×429", human.Count(h.TooMany))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "   ")
}
