package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/record"
)

// WhatIf is the settings a what-if asks about: the knobs it turns, and whether the tuner is
// on (nil keeps the recording's).
type WhatIf struct {
	Knobs engine.Update
	Auto  *bool
}

// ParseWhatIf reads "parallelism=64,rate=300/s,pace=100ms,burst=5,auto=on": each part a knob
// as [engine.ParseSetting] reads it, or auto.
func ParseWhatIf(s string) (WhatIf, error) {
	var w WhatIf
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if k, v = strings.TrimSpace(k), strings.TrimSpace(v); ok && k == "auto" {
			b, err := parseOnOff(v)
			if err != nil {
				return w, fmt.Errorf("auto %q: want on or off", v)
			}
			w.Auto = &b
			continue
		}
		u, err := engine.ParseSetting(part)
		if unknown, ok := errors.AsType[*engine.UnknownKnobError](err); ok {
			unknown.Also = []string{"auto"}
		}
		if err != nil {
			return w, err
		}
		w.Knobs = w.Knobs.Merge(u)
	}
	if w.Knobs.Empty() && w.Auto == nil {
		return w, fmt.Errorf("%q asks nothing: e.g. parallelism=64,rate=300", s)
	}
	return w, nil
}

func parseOnOff(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("not on/off")
}

// apply returns s with the asked knobs changed. A parallelism asked above the recording's
// ceiling raises the ceiling: a what-if asks about the parallelism, not the ceiling.
func (w WhatIf) apply(s engine.Settings) engine.Settings {
	next := w.Knobs.Apply(s)
	if next.MaxParallelism > 0 && next.Parallelism > next.MaxParallelism {
		next.MaxParallelism = next.Parallelism
	}
	return next
}

// Outcome is what a run did, or is predicted to do.
type Outcome struct {
	Elapsed                    time.Duration
	Calls, TooMany, OK, Failed int64
	Retries                    int64
}

// PerSecond is the run's calls per second.
func (o Outcome) PerSecond() float64 {
	if o.Elapsed <= 0 {
		return 0
	}
	return float64(o.Calls) / o.Elapsed.Seconds()
}

// Prediction is a what-if's answer: the run predicted with the asked settings, next to the
// recorded one, and what the prediction rests on.
type Prediction struct {
	Settings  engine.Settings
	Auto      bool
	Recorded  Outcome
	Predicted Outcome
	Model     *Model
	// Notes say where the model extrapolates past the recording's data.
	Notes []string
	// Items is how many items were run: the recording's.
	Items int64
}

// Predict fits a model of the target from rec and runs the real engine against it in virtual
// time, with the recording's settings changed as asked.
func Predict(ctx context.Context, rec *record.Recording, ask WhatIf) (*Prediction, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	m, err := Fit(rec)
	if err != nil {
		return nil, err
	}
	sum := Summarize(rec)
	p := &Prediction{Settings: ask.apply(rec.Header.Settings.Engine()), Model: m, Auto: rec.Header.Auto,
		Recorded: Outcome{Elapsed: sum.Elapsed, Calls: sum.Calls, TooMany: sum.TooMany, OK: sum.OK, Failed: sum.Failed, Retries: sum.Retries}}
	if ask.Auto != nil {
		p.Auto = *ask.Auto
	}
	p.Items = rec.Header.Total
	if p.Items < 0 {
		p.Items = sum.OK + sum.Failed
	}
	h := rec.Header
	hold, _ := engine.ParseHoldMode(h.Hold)
	resp := response{adapt: h.Adapt || p.Auto, hold: hold} // --auto works through the response
	out, peak, err := simulate(ctx, m, p.Settings, p.Auto, resp, p.Items, h.Retries, time.Duration(h.MaxBackoff), time.Duration(h.Timeout), h.Started)
	if err != nil {
		return nil, err
	}
	p.Predicted = out
	p.Notes = m.extrapolation(p.Settings, peak, out)
	return p, nil
}

// extrapolation says where the predicted run took the model past what the recording saw:
// more calls in flight (peak, the most the simulated run had), or a faster pace than the
// recording ever asked for without meeting a limit.
func (m *Model) extrapolation(s engine.Settings, peak int, out Outcome) []string {
	var notes []string
	if peak > m.MaxInFlight*5/4 {
		how := "assumes the latency stays as it was"
		if m.queues {
			how = "extrapolates the latency's growth"
		}
		notes = append(notes, fmt.Sprintf("the recording never had more than %s in flight; the predicted run reached %d, where the model %s", human.Counted(int64(m.MaxInFlight), "call", "calls"), peak, how))
	}
	if m.Rate == 0 && m.Concurrency == 0 && out.PerSecond() > m.MaxRate*1.25 {
		notes = append(notes, fmt.Sprintf("the recording saw no 429s and never went past %s calls/s; the predicted run made %s: any limit in between is unknown to the model, which assumes none", perSecond(m.MaxRate), perSecond(out.PerSecond())))
	}
	return notes
}

// Report renders the prediction next to the recording.
func (p *Prediction) Report() string {
	var b strings.Builder
	auto := ""
	if p.Auto {
		auto = ", auto on"
	}
	fmt.Fprintf(&b, "what if: parallelism %d, rate %s, burst %d, pace %v%s · %s\n", p.Settings.Parallelism,
		engine.FormatRate(p.Settings.Rate), p.Settings.Burst, p.Settings.Pace, auto, human.Counted(p.Items, "item", "items"))
	fmt.Fprintln(&b, p.Model)
	fmt.Fprintf(&b, "\n%-16s %12s %12s\n", "", "recorded", "predicted")
	row := func(name, rec, pred string) { fmt.Fprintf(&b, "%-16s %12s %12s\n", name, rec, pred) }
	row("finish", human.Clock(p.Recorded.Elapsed), human.Clock(p.Predicted.Elapsed))
	row("calls/s", fmt.Sprintf("%.1f", p.Recorded.PerSecond()), fmt.Sprintf("%.1f", p.Predicted.PerSecond()))
	row("calls", human.Count(p.Recorded.Calls), human.Count(p.Predicted.Calls))
	row("429s", human.Count(p.Recorded.TooMany), human.Count(p.Predicted.TooMany))
	row("retries", human.Count(p.Recorded.Retries), human.Count(p.Predicted.Retries))
	row("items ok", human.Count(p.Recorded.OK), human.Count(p.Predicted.OK))
	row("items failed", human.Count(p.Recorded.Failed), human.Count(p.Predicted.Failed))
	if len(p.Notes) > 0 {
		fmt.Fprintln(&b)
		for _, n := range p.Notes {
			fmt.Fprintln(&b, "note: "+n)
		}
	}
	return b.String()
}
