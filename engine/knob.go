package engine

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Knob names one field of [Settings]. Every origin — a key, the screen's ":" prompt, `ctl set`,
// the tuner, the advisor, a cluster's settings, a what-if — names knobs with these, reads
// their values with [ParseSetting] and changes them with [Engine.Set], so that a knob is
// spelled, parsed, checked and applied in one place: adding one touches this file, its key
// binding and its flag.
type Knob uint8

// The knobs, in the order they are listed to an operator.
const (
	// KnobParallelism is Settings.Parallelism: the most calls in flight.
	KnobParallelism Knob = iota + 1
	// KnobPace is Settings.Pace: each worker's minimum interval between call starts.
	KnobPace
	// KnobRate is Settings.Rate: calls per second across the run, 0 for none.
	KnobRate
	// KnobBurst is Settings.Burst: the rate's token bucket size.
	KnobBurst
	// KnobMaxParallelism is Settings.MaxParallelism: the ceiling on parallelism. It is fixed
	// for a run (--max-parallelism): no live change turns it.
	KnobMaxParallelism
)

// knobSpec is what the package knows of a knob: its names, how its value reads and renders,
// and where it lives in Settings.
type knobSpec struct {
	name    string
	aliases []string
	live    bool
	parse   func(v string, s *Settings) error
	format  func(s Settings) string
	exact   func(s Settings) string // a lossless format, when format rounds
	same    func(a, b Settings) bool
	copyTo  func(dst *Settings, src Settings)
}

// knobSpecs is indexed by Knob; the zero Knob is no knob.
var knobSpecs = [...]knobSpec{
	KnobParallelism: {
		name: "parallelism", aliases: []string{"p", "par"}, live: true,
		parse: func(v string, s *Settings) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("parallelism %q: want a whole number ≥ 1", v)
			}
			s.Parallelism = n
			return nil
		},
		format: func(s Settings) string { return strconv.Itoa(s.Parallelism) },
		same:   func(a, b Settings) bool { return a.Parallelism == b.Parallelism },
		copyTo: func(d *Settings, s Settings) { d.Parallelism = s.Parallelism },
	},
	KnobPace: {
		name: "pace", live: true,
		parse: func(v string, s *Settings) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("pace %q: want a duration such as 250ms or 0", v)
			}
			s.Pace = d
			return nil
		},
		format: func(s Settings) string { return s.Pace.String() },
		same:   func(a, b Settings) bool { return a.Pace == b.Pace },
		copyTo: func(d *Settings, s Settings) { d.Pace = s.Pace },
	},
	KnobRate: {
		name: "rate", aliases: []string{"r"}, live: true,
		parse: func(v string, s *Settings) error {
			r, err := ParseRate(v)
			if err != nil {
				return err
			}
			s.Rate = r
			return nil
		},
		format: func(s Settings) string { return FormatRate(s.Rate) },
		exact:  func(s Settings) string { return strconv.FormatFloat(s.Rate, 'f', -1, 64) },
		same:   func(a, b Settings) bool { return a.Rate == b.Rate },
		copyTo: func(d *Settings, s Settings) { d.Rate = s.Rate },
	},
	KnobBurst: {
		name: "burst", aliases: []string{"b"}, live: true,
		parse: func(v string, s *Settings) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("burst %q: want a whole number ≥ 1", v)
			}
			s.Burst = n
			return nil
		},
		format: func(s Settings) string { return strconv.Itoa(s.Burst) },
		same:   func(a, b Settings) bool { return a.Burst == b.Burst },
		copyTo: func(d *Settings, s Settings) { d.Burst = s.Burst },
	},
	KnobMaxParallelism: {
		name: "max-parallelism", aliases: []string{"max_parallelism"},
		parse: func(v string, s *Settings) error { // fixed for a run: read from settings stored whole
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("max-parallelism %q: want a whole number ≥ 0 (0: the default)", v)
			}
			s.MaxParallelism = n
			return nil
		},
		format: func(s Settings) string { return strconv.Itoa(s.MaxParallelism) },
		same:   func(a, b Settings) bool { return a.MaxParallelism == b.MaxParallelism },
		copyTo: func(d *Settings, s Settings) { d.MaxParallelism = s.MaxParallelism },
	},
}

// Knobs returns every knob, in the order they are listed to an operator.
func Knobs() []Knob {
	return []Knob{KnobParallelism, KnobPace, KnobRate, KnobBurst, KnobMaxParallelism}
}

// liveKnobs are the knobs a change may turn while a run goes on.
func liveKnobs() []Knob {
	var out []Knob
	for _, k := range Knobs() {
		if knobSpecs[k].live {
			out = append(out, k)
		}
	}
	return out
}

func (k Knob) valid() bool { return k > 0 && int(k) < len(knobSpecs) }

// String returns the knob's name as every origin writes it: "parallelism", "max-parallelism";
// "" for no knob (the zero Knob).
func (k Knob) String() string {
	if k == 0 {
		return ""
	}
	if !k.valid() {
		return "knob(" + strconv.Itoa(int(k)) + ")"
	}
	return knobSpecs[k].name
}

// Live reports whether a change may turn k while a run goes on.
func (k Knob) Live() bool { return k.valid() && knobSpecs[k].live }

// Format renders k's value in s the way the parser reads it back and the change log shows it.
func (k Knob) Format(s Settings) string {
	if !k.valid() {
		return ""
	}
	return knobSpecs[k].format(s)
}

// MarshalText writes the knob's name, so that a knob in JSON reads as one.
func (k Knob) MarshalText() ([]byte, error) {
	if k == 0 {
		return []byte{}, nil
	}
	if !k.valid() {
		return nil, fmt.Errorf("engine: no knob %d", k)
	}
	return []byte(k.String()), nil
}

// UnmarshalText reads a knob's name or alias; an empty text is no knob.
func (k *Knob) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*k = 0
		return nil
	}
	v, err := ParseKnob(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// UnknownKnobError refuses a name that is no knob. Also lists names the caller accepts besides
// the knobs (the screen's "window", a what-if's "auto"), so that its message offers them too.
type UnknownKnobError struct {
	Name string
	Also []string
}

// Error names the unknown knob and lists what is accepted.
func (e *UnknownKnobError) Error() string {
	var names []string
	for _, k := range liveKnobs() {
		names = append(names, k.String())
	}
	names = append(names, e.Also...)
	list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	return fmt.Sprintf("unknown knob %q: %s", e.Name, list)
}

// FixedKnobError refuses a live change of a knob that is fixed for the run.
type FixedKnobError struct{ Knob Knob }

// Error says the knob is fixed and where it is set.
func (e *FixedKnobError) Error() string {
	return fmt.Sprintf("%s is fixed for the run: set it with --%s at the start", e.Knob, e.Knob)
}

// ParseKnob reads a knob's name or alias ("parallelism", "p", "par", "rate", "r", "burst",
// "b", "pace", "max-parallelism"); anything else is an [*UnknownKnobError].
func ParseKnob(name string) (Knob, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	for _, k := range Knobs() {
		if sp := knobSpecs[k]; name == sp.name || slices.Contains(sp.aliases, name) {
			return k, nil
		}
	}
	return 0, &UnknownKnobError{Name: name}
}

// ParseKnobValue reads value as knob name's new value: a one-knob [Update]. A knob fixed for
// the run is a [*FixedKnobError].
func ParseKnobValue(name, value string) (Update, error) {
	k, err := ParseKnob(name)
	if err != nil {
		return Update{}, err
	}
	if !k.Live() {
		return Update{}, &FixedKnobError{Knob: k}
	}
	var u Update
	if err := knobSpecs[k].parse(strings.TrimSpace(value), &u.to); err != nil {
		return Update{}, err
	}
	u.knobs = 1 << k
	return u, nil
}

// ParseSetting reads one knob and its value in any of the spellings in use: "parallelism 64"
// (the screen's ":" prompt), "set parallelism 64" (the control socket's words) and
// "parallelism=64" (a what-if).
func ParseSetting(text string) (Update, error) {
	f := strings.Fields(strings.TrimSpace(text))
	if len(f) > 0 && f[0] == "set" {
		f = f[1:]
	}
	if len(f) == 1 {
		if k, v, ok := strings.Cut(f[0], "="); ok {
			f = []string{k, v}
		}
	} else if len(f) == 3 && f[1] == "=" {
		f = []string{f[0], f[2]}
	} else if len(f) == 2 && strings.HasSuffix(f[0], "=") {
		f[0] = strings.TrimSuffix(f[0], "=")
	}
	if len(f) != 2 || f[0] == "" || f[1] == "" {
		return Update{}, fmt.Errorf("%q: want a knob and a value, e.g. parallelism 64 or parallelism=64", strings.TrimSpace(text))
	}
	return ParseKnobValue(f[0], f[1])
}

// Update is one change of settings as its origin asked for it: the knobs it turns and their new
// values. A knob it does not turn keeps the value it has when the change is applied, so that
// two origins turning different knobs at once do not undo each other. The zero Update turns
// nothing.
type Update struct {
	knobs uint16 // bit k set: knob k is turned
	to    Settings
}

// Diff is the Update that turns each knob whose value differs between from and to, to its
// value in to: the tuner's and the advisor's next settings, a key's step, a cluster's
// settings handed to a host.
func Diff(from, to Settings) Update {
	var u Update
	for _, k := range Knobs() {
		if !knobSpecs[k].same(from, to) {
			u.knobs |= 1 << k
		}
	}
	u.to = to
	return u
}

// Whole is the Update that turns every knob to its value in s: settings stored or sent whole
// (a shared job's settings in Redis), written by [Update.Fields] and read by [ParseFields].
func Whole(s Settings) Update {
	var u Update
	for _, k := range Knobs() {
		u.knobs |= 1 << k
	}
	u.to = s
	return u
}

// ParseWhole reads settings stored whole ([Whole]'s [Update.Fields]) onto base: every knob's
// field, fixed knobs included; a field that names no knob is not its business and is skipped.
func ParseWhole(fields map[string]string, base Settings) (Settings, error) {
	for _, k := range Knobs() {
		v, ok := fields[k.String()]
		if !ok || v == "" {
			continue
		}
		if err := knobSpecs[k].parse(strings.TrimSpace(v), &base); err != nil {
			return base, err
		}
	}
	return base, nil
}

// Turns reports whether u turns k.
func (u Update) Turns(k Knob) bool { return k.valid() && u.knobs&(1<<k) != 0 }

// Knobs returns the knobs u turns, in their usual order.
func (u Update) Knobs() []Knob {
	var out []Knob
	for _, k := range Knobs() {
		if u.Turns(k) {
			out = append(out, k)
		}
	}
	return out
}

// Empty reports whether u turns no knob.
func (u Update) Empty() bool { return u.knobs == 0 }

// Apply returns s with the knobs u turns set to their new values.
func (u Update) Apply(s Settings) Settings {
	for _, k := range u.Knobs() {
		knobSpecs[k].copyTo(&s, u.to)
	}
	return s
}

// Merge returns u with v's knobs turned too; where both turn a knob, v's value wins.
func (u Update) Merge(v Update) Update {
	u.to = v.Apply(u.to)
	u.knobs |= v.knobs
	return u
}

// Fields renders u as knob name → value text, as [ParseFields] reads it back exactly (a rate
// in calls per second, unrounded): the control socket carries a change this way, in one
// request.
func (u Update) Fields() map[string]string {
	m := make(map[string]string, len(u.Knobs()))
	for _, k := range u.Knobs() {
		f := knobSpecs[k].format
		if knobSpecs[k].exact != nil {
			f = knobSpecs[k].exact
		}
		m[k.String()] = f(u.to)
	}
	return m
}

// ParseFields reads knob name → value text into one Update; the first bad pair, in sorted
// name order, is the error.
func ParseFields(fields map[string]string) (Update, error) {
	var u Update
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		v, err := ParseKnobValue(name, fields[name])
		if err != nil {
			return Update{}, err
		}
		u = u.Merge(v)
	}
	return u, nil
}

// String renders u as "rate 200/s, burst 5"; "" when it turns nothing.
func (u Update) String() string {
	var parts []string
	for _, k := range u.Knobs() {
		parts = append(parts, k.String()+" "+k.Format(u.to))
	}
	return strings.Join(parts, ", ")
}

// Describe renders what u changes in from, knob by knob: "parallelism 16 → 24, rate 50/s →
// 55/s"; a knob whose value stays is left out, and "" is no change at all.
func (u Update) Describe(from Settings) string {
	to := u.Apply(from)
	var parts []string
	for _, k := range u.Knobs() {
		if !knobSpecs[k].same(from, to) {
			parts = append(parts, k.String()+" "+k.Format(from)+" → "+k.Format(to))
		}
	}
	return strings.Join(parts, changeSep)
}

// Next returns cur with u applied and checked as a live change is: a knob fixed for the run
// may not move, and the result must pass [Settings.Validate]. A cluster's settings, which
// no one engine holds, change by it.
func (u Update) Next(cur Settings) (Settings, error) { return u.next(cur, "") }

// next is Next with why, how a default ceiling was derived, for the ceiling's refusal.
func (u Update) next(cur Settings, why string) (Settings, error) {
	next := u.Apply(cur)
	for _, k := range u.Knobs() {
		if !k.Live() && !knobSpecs[k].same(cur, next) {
			return cur, &FixedKnobError{Knob: k}
		}
	}
	if err := next.check(why); err != nil {
		return cur, err
	}
	return next, nil
}

// Combine makes one change-log entry of changes of single knobs made at once: "rate, burst"
// from "50/s, 1" to "100/s, 5". [Change.Parts] splits it back. At and Origin are the first's.
func Combine(parts ...Change) Change {
	if len(parts) == 0 {
		return Change{}
	}
	c := parts[0]
	for _, p := range parts[1:] {
		c.Knob += changeSep + p.Knob
		c.From += changeSep + p.From
		c.To += changeSep + p.To
	}
	return c
}

// Validate reports the first setting out of range, without a default ceiling: a
// MaxParallelism of 0 means none. [Engine.Set], [New] and a cluster's settings all refuse
// by it.
func (s Settings) Validate() error { return s.check("") }

// Fit returns s with Parallelism brought within [1, MaxParallelism]: what a key held down or
// the tuner asks for is the most the ceiling allows, where a value typed above it is refused.
func (s Settings) Fit() Settings {
	s.Parallelism = max(s.Parallelism, 1)
	if s.MaxParallelism > 0 && s.Parallelism > s.MaxParallelism {
		s.Parallelism = s.MaxParallelism
	}
	return s
}
