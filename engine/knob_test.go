package engine

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestParseSettingSpellings: the screen's "parallelism 64", the socket's "set parallelism 64"
// and a what-if's "parallelism=64" read alike, aliases included, for every live knob.
func TestParseSettingSpellings(t *testing.T) {
	for _, tc := range []struct {
		text string
		want Settings
		knob Knob
	}{
		{"parallelism 64", Settings{Parallelism: 64}, KnobParallelism},
		{"set parallelism 64", Settings{Parallelism: 64}, KnobParallelism},
		{"parallelism=64", Settings{Parallelism: 64}, KnobParallelism},
		{" parallelism = 64 ", Settings{Parallelism: 64}, KnobParallelism},
		{"p 8", Settings{Parallelism: 8}, KnobParallelism},
		{"par=8", Settings{Parallelism: 8}, KnobParallelism},
		{"pace 250ms", Settings{Pace: 250 * time.Millisecond}, KnobPace},
		{"set pace 0", Settings{}, KnobPace},
		{"rate 200/s", Settings{Rate: 200}, KnobRate},
		{"r=3000/m", Settings{Rate: 50}, KnobRate},
		{"set rate unlimited", Settings{}, KnobRate},
		{"burst 5", Settings{Burst: 5}, KnobBurst},
		{"b=5", Settings{Burst: 5}, KnobBurst},
	} {
		u, err := ParseSetting(tc.text)
		if err != nil {
			t.Errorf("ParseSetting(%q): %v", tc.text, err)
			continue
		}
		if got := u.Knobs(); len(got) != 1 || got[0] != tc.knob {
			t.Errorf("ParseSetting(%q) turns %v, want %v alone", tc.text, got, tc.knob)
		}
		if got := u.Apply(Settings{}); got != tc.want {
			t.Errorf("ParseSetting(%q) gives %+v, want %+v", tc.text, got, tc.want)
		}
	}
}

// TestParseSettingErrors: one message for each mistake, whatever the spelling.
func TestParseSettingErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"parallelism", `"parallelism": want a knob and a value, e.g. parallelism 64 or parallelism=64`},
		{"parallelism=", `"parallelism=": want a knob and a value, e.g. parallelism 64 or parallelism=64`},
		{"parallelism 6 4", `"parallelism 6 4": want a knob and a value, e.g. parallelism 64 or parallelism=64`},
		{"parallelism 0", `parallelism "0": want a whole number ≥ 1`},
		{"set parallelism x", `parallelism "x": want a whole number ≥ 1`},
		{"pace=-1s", `pace "-1s": want a duration such as 250ms or 0`},
		{"pace soon", `pace "soon": want a duration such as 250ms or 0`},
		{"rate fast", `engine: rate "fast": want a number of calls such as 50, 50/s, 3000/m or 1000/h`},
		{"rate=5/d", `engine: rate "5/d": unit must be /s, /m or /h`},
		{"rate NaN", `engine: rate "NaN": want a number of calls such as 50, 50/s, 3000/m or 1000/h`},
		{"burst 0", `burst "0": want a whole number ≥ 1`},
		{"speed 11", `unknown knob "speed": parallelism, pace, rate or burst`},
		{"max-parallelism 512", "max-parallelism is fixed for the run: set it with --max-parallelism at the start"},
	} {
		_, err := ParseSetting(tc.text)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseSetting(%q) = %v, want %q", tc.text, err, tc.want)
		}
	}
	_, err := ParseSetting("speed=11")
	var unknown *UnknownKnobError
	if !errors.As(err, &unknown) || unknown.Name != "speed" {
		t.Fatalf("ParseSetting(speed=11) = %v, want an *UnknownKnobError naming speed", err)
	}
	unknown.Also = []string{"window"}
	if got := unknown.Error(); got != `unknown knob "speed": parallelism, pace, rate, burst or window` {
		t.Errorf("with a caller's own name: %q", got)
	}
}

// TestValidate: NaN and infinite rates, negative values and a parallelism over its ceiling
// are refused, the ceiling as a *CeilingError.
func TestValidate(t *testing.T) {
	good := Settings{Parallelism: 4, MaxParallelism: 8, Pace: time.Millisecond, Rate: 10, Burst: 1}
	if err := good.Validate(); err != nil {
		t.Fatalf("%+v: %v", good, err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Settings)
		want string
	}{
		{"NaN rate", func(s *Settings) { s.Rate = math.NaN() }, "engine: rate NaN/s: must be a number, 0 (none) or more"},
		{"+Inf rate", func(s *Settings) { s.Rate = math.Inf(1) }, "engine: rate +Inf/s: must be a number, 0 (none) or more"},
		{"-Inf rate", func(s *Settings) { s.Rate = math.Inf(-1) }, "engine: rate -Inf/s: must be a number, 0 (none) or more"},
		{"negative rate", func(s *Settings) { s.Rate = -1 }, "engine: rate -1/s: must be a number, 0 (none) or more"},
		{"negative pace", func(s *Settings) { s.Pace = -time.Second }, "engine: pace -1s: must not be negative"},
		{"zero parallelism", func(s *Settings) { s.Parallelism = 0 }, "engine: parallelism 0: must be at least 1"},
		{"negative max", func(s *Settings) { s.MaxParallelism = -1 }, "engine: max parallelism -1: must be 0 (none) or more"},
		{"zero burst", func(s *Settings) { s.Burst = 0 }, "engine: burst 0: must be at least 1"},
		{"over the ceiling", func(s *Settings) { s.Parallelism = 9 }, "engine: parallelism 9 exceeds max parallelism 8 (--max-parallelism)"},
	} {
		s := good
		tc.edit(&s)
		err := s.Validate()
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
	over := good
	over.Parallelism = 9
	var ce *CeilingError
	if !errors.As(over.Validate(), &ce) || ce.Parallelism != 9 || ce.Max != 8 {
		t.Errorf("over the ceiling: %v, want a *CeilingError", over.Validate())
	}
	if s := (Settings{Parallelism: 100, MaxParallelism: 0, Burst: 1}); s.Validate() != nil {
		t.Errorf("no ceiling (0): %v", s.Validate())
	}
}

// TestFit: the ceiling's rule for a key held down or the tuner: within [1, max].
func TestFit(t *testing.T) {
	for _, tc := range []struct{ par, max, want int }{{12, 8, 8}, {0, 8, 1}, {-3, 0, 1}, {500, 0, 500}, {5, 8, 5}} {
		if got := (Settings{Parallelism: tc.par, MaxParallelism: tc.max}).Fit().Parallelism; got != tc.want {
			t.Errorf("Fit(parallelism %d, max %d) = %d, want %d", tc.par, tc.max, got, tc.want)
		}
	}
}

// TestUpdate: Diff turns what differs; Turn one knob; Merge keeps both, the later value
// winning; Fields and ParseFields round-trip exactly; Describe says what changes.
func TestUpdate(t *testing.T) {
	from := Settings{Parallelism: 4, Rate: 10, Burst: 1}
	to := Settings{Parallelism: 4, Rate: 1.23456, Burst: 5, Pace: time.Second}
	u := Diff(from, to)
	if got := u.Knobs(); len(got) != 3 || got[0] != KnobPace || got[1] != KnobRate || got[2] != KnobBurst {
		t.Fatalf("Diff turns %v, want pace, rate and burst", got)
	}
	if u.Apply(from) != to {
		t.Fatalf("Diff applied = %+v, want %+v", u.Apply(from), to)
	}
	back, err := ParseFields(u.Fields())
	if err != nil || back.Apply(from) != to || back.String() != u.String() {
		t.Fatalf("ParseFields(Fields()) = %v, %v; want %v", back, err, u)
	}
	if got := u.Describe(from); got != "pace 0s → 1s, rate 10/s → 1.235/s, burst 1 → 5" {
		t.Errorf("Describe = %q", got)
	}
	if !Diff(from, from).Empty() || Diff(from, from).Describe(from) != "" {
		t.Errorf("Diff of equal settings turns %v", Diff(from, from).Knobs())
	}
	m := Turn(KnobRate, Settings{Rate: 1}).Merge(Turn(KnobRate, Settings{Rate: 2})).Merge(Turn(KnobBurst, Settings{Burst: 3}))
	if got := m.Apply(from); got.Rate != 2 || got.Burst != 3 || got.Parallelism != 4 {
		t.Errorf("merged %+v", got)
	}
	if _, err := ParseFields(map[string]string{"rate": "5", "burst": "0"}); err == nil || !strings.Contains(err.Error(), `burst "0"`) {
		t.Errorf("ParseFields with a bad burst: %v", err)
	}
	if _, err := Turn(KnobMaxParallelism, Settings{MaxParallelism: 9}).Next(Settings{Parallelism: 1, MaxParallelism: 8, Burst: 1}); !errors.As(err, new(*FixedKnobError)) {
		t.Errorf("a live change of max-parallelism: %v, want a *FixedKnobError", err)
	}
}

// TestKnobNames: every knob reads back from its name, also as JSON text.
func TestKnobNames(t *testing.T) {
	for _, k := range Knobs() {
		got, err := ParseKnob(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKnob(%q) = %v, %v", k, got, err)
		}
		b, err := k.MarshalText()
		var back Knob
		if err != nil || back.UnmarshalText(b) != nil || back != k {
			t.Errorf("%v: text %q round-trips to %v", k, b, back)
		}
	}
	var none Knob
	if b, _ := none.MarshalText(); len(b) != 0 || none.String() != "" {
		t.Errorf("no knob renders %q", b)
	}
}

// TestSetIsOneChange: a change of rate and burst is one entry of the change log, applied
// together; a refused change changes and logs nothing; a change that changes no value logs
// nothing; the entry splits back into its knobs.
func TestSetIsOneChange(t *testing.T) {
	e, _ := newTestEngine(t, Config{Settings: Settings{Parallelism: 4, Rate: 50, Burst: 1}, Adapter: AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
		return Outcome{Status: 200}, nil
	})}, numbered(1))
	before := len(e.Changes())
	u, err := ParseSetting("rate 100/s")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ParseSetting("burst 5")
	if err := e.Set(u.Merge(b), "ctl"); err != nil {
		t.Fatal(err)
	}
	log := e.Changes()[before:]
	if len(log) != 1 {
		t.Fatalf("change log after rate+burst: %v, want one entry", log)
	}
	c := log[0]
	if c.String() != "rate 50/s → 100/s, burst 1 → 5 (ctl)" {
		t.Errorf("the entry reads %q", c.String())
	}
	if p := c.Parts(); len(p) != 2 || p[0].Knob != "rate" || p[0].To != "100/s" || p[1].Knob != "burst" || p[1].From != "1" || p[1].To != "5" || p[1].Origin != "ctl" {
		t.Errorf("Parts = %+v", p)
	}
	if s := e.Settings(); s.Rate != 100 || s.Burst != 5 {
		t.Errorf("settings after the change: %+v", s)
	}

	// Refused as a whole: a good rate with a parallelism over the ceiling changes nothing.
	bad := Diff(e.Settings(), Settings{Parallelism: e.Settings().MaxParallelism + 1, MaxParallelism: e.Settings().MaxParallelism, Rate: 7, Burst: 5})
	var ce *CeilingError
	if err := e.Set(bad, "ctl"); !errors.As(err, &ce) {
		t.Errorf("over the ceiling: %v, want a *CeilingError", err)
	}
	if nan := Turn(KnobRate, Settings{Rate: math.NaN()}); e.Set(nan, "ctl") == nil {
		t.Error("rate NaN accepted")
	}
	if s := e.Settings(); s.Rate != 100 || s.Parallelism != 4 || len(e.Changes()) != before+1 {
		t.Errorf("after refused changes: %+v, %d entries; want nothing changed", s, len(e.Changes())-before)
	}
	if err := e.Set(Turn(KnobParallelism, Settings{Parallelism: 4}), "ctl"); err != nil || len(e.Changes()) != before+1 {
		t.Errorf("a change to the same value: %v, %d entries; want none logged", err, len(e.Changes())-before)
	}
}

// Settings stored whole read back the same, every knob included (a fixed one too), and a field
// that names no knob is skipped: a shared job's settings hash in Redis.
func TestWholeSettingsRoundTrip(t *testing.T) {
	want := Settings{Parallelism: 8, MaxParallelism: 20, Pace: 1500 * time.Millisecond, Rate: 0.5, Burst: 3}
	fields := Whole(want).Fields()
	if len(fields) != len(Knobs()) {
		t.Errorf("Whole(s).Fields() = %v: want one field per knob (%d)", fields, len(Knobs()))
	}
	fields["gen"] = "12345" // the rate's generation, not a knob
	got, err := ParseWhole(fields, Settings{Burst: 1})
	if err != nil || got != want {
		t.Errorf("ParseWhole(%v) = %+v, %v; want %+v", fields, got, err, want)
	}
	fields["parallelism"] = "none"
	if _, err := ParseWhole(fields, Settings{}); err == nil {
		t.Errorf("ParseWhole read parallelism %q without an error", fields["parallelism"])
	}
}
