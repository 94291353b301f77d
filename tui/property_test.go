package tui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/enginetest"
	"github.com/throttle-dev/throttle/probes"
)

// The screen's arithmetic, as a property: random runs of a real engine in virtual time
// (testing/synctest), turned at random — rate and parallelism changes, pauses, Retry-After
// holds from the target, drains, a second screen attached through the control view's JSON —
// and after each step the numbers of the rendered screen are read back and checked against the
// engine's truth (the call ends it published, the summary Run returned).
//
// THROTTLE_PROPERTY_SEED=N replays one seed; a failure names its seed.

var (
	// " last 5s: 14 calls/s of 14/s cap · 429s 3.7%", " last 2s since the change: …", " measuring: – calls/s …"
	// The 429s' own window follows when a cut of the effective rate made it the longer:
	// "· 429s 3.7% (last 5s)"; at 80 columns "calls/s" may read "/s".
	ratesRe = regexp.MustCompile(`^ (?:last (\d+)s(?: since the change)?|measuring): (–|\d+)(?: calls)?/s(?: of ([\d.]+)/s(?: effective)? cap)? · 429s ([\d.]+)%(?: \(last (\d+)s\))?`)
	// " whole run: 15.0 calls/s · 21 × 429 (3.5%)"
	wholeRe   = regexp.MustCompile(`^ whole run: ([\d.]+) calls/s · ([\d,]+) × 429 \(([\d.]+)%\)`)
	progRe    = regexp.MustCompile(`([\d.]+)%  ([\d,]+) / ([\d,]+)\s*$`)
	etaRe     = regexp.MustCompile(`ETA (\d+(?::\d\d){1,2})`)
	summaryRe = regexp.MustCompile(`^ ([\d,]+) ok, ([\d,]+) failed(?: · ([\d,]+) not run)? · ([\d,]+) calls, ([\d,]+) × 429`)
	endRe     = regexp.MustCompile(`─ summary · (\w+) in (\S+) `)
	errRuleRe = regexp.MustCompile(`whole run ([\d,]+) × 429 · ([\d,]+) errors`)
)

// num reads "1,234" as 1234.
func num(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("%q is no count: %v", s, err)
	}
	return n
}

// clock reads "1:02" or "1:02:03" as a duration.
func clock(t *testing.T, s string) time.Duration {
	t.Helper()
	var d time.Duration
	for _, p := range strings.Split(s, ":") {
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("%q is no clock: %v", s, err)
		}
		d = d*60 + time.Duration(n)
	}
	return d * time.Second
}

// truth is what the engine published: every call end, as the screen's statistics got it.
type truth struct {
	mu   sync.Mutex
	ends []engine.Event
}

func (tr *truth) observe(ev engine.Event) {
	if ev.Kind != engine.CallEnd {
		return
	}
	tr.mu.Lock()
	tr.ends = append(tr.ends, ev)
	tr.mu.Unlock()
}

// in counts the calls, and the 429s, that ended in [from, to).
func (tr *truth) in(from, to time.Time) (calls, tooMany int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, ev := range tr.ends {
		if !ev.At.Before(from) && ev.At.Before(to) {
			calls++
			if ev.Status == 429 {
				tooMany++
			}
		}
	}
	return calls, tooMany
}

// lockedRand is a seeded source safe for the workers to share.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

// attached is a screen attached through the control socket: what it draws went through the
// view's JSON, as control.View carries it.
type attached struct {
	fakeEngine
	points  []probes.Point
	latency probes.Stats
	errs    []probes.ErrorGroup
}

func (a *attached) Points(time.Time, time.Duration) []probes.Point { return a.points }
func (a *attached) Latency(time.Time) probes.Stats                 { return a.latency }
func (a *attached) Errors(n int) []probes.ErrorGroup               { return a.errs[:min(n, len(a.errs))] }
func (a *attached) Advice(time.Time, engine.Settings, engine.Effective) probes.Advice {
	return probes.Advice{Action: probes.Hold, Reason: "attached"}
}

// roundTrip passes v through JSON, as the control socket does.
func roundTrip[T any](t *testing.T, v T) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestScreenArithmetic(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	runs := 10
	if s := os.Getenv("THROTTLE_PROPERTY_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("THROTTLE_PROPERTY_SEED=%q: %v", s, err)
		}
		seed, runs = n, 1
	}
	checked.Lock()
	checked.rates, checked.capped, checked.paused, checked.attached, checked.final = 0, 0, 0, 0, 0 // -count=N runs it again
	checked.Unlock()
	for i := range runs {
		s := seed + uint64(i)
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("replay with THROTTLE_PROPERTY_SEED=%d go test -run TestScreenArithmetic ./tui", s)
				}
			}()
			synctest.Test(t, func(t *testing.T) { screenProperty(t, s) })
		})
	}
	t.Logf("checked %d rates (%d against a cap), %d steps paused, %d attached screens, %d final screens",
		checked.rates, checked.capped, checked.paused, checked.attached, checked.final)
	if runs > 1 && (checked.capped == 0 || checked.final != runs) {
		t.Errorf("the runs checked %d rates against a cap and %d final screens of %d runs: the property was hardly tried", checked.capped, checked.final, runs)
	}
}

// screenProperty is one random run, checked step by step.
func screenProperty(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	total := 100 + rnd.IntN(500)
	latency := time.Duration(10+rnd.IntN(200)) * time.Millisecond
	p429 := []float64{0, 0, 0.02, 0.1}[rnd.IntN(4)]
	set := engine.Settings{Parallelism: 1 + rnd.IntN(8), Burst: 1 + rnd.IntN(4)}
	if rnd.IntN(4) > 0 {
		set.Rate = float64(3 + rnd.IntN(40))
	}
	// About half a minute of virtual time at most: every step renders a screen.
	total = min(total, int(30*time.Second/latency)*set.Parallelism)
	if set.Rate > 0 {
		total = min(total, int(set.Rate*30))
	}
	adapt := rnd.IntN(3) == 0
	width, height := []int{80, 100, 160}[rnd.IntN(3)], []int{24, 30, 48}[rnd.IntN(3)]
	t.Logf("seed %d: %d items, %v a call, %.0f%% 429s, %+v, adapt %v, %dx%d", seed, total, latency, 100*p429, set, adapt, width, height)

	calls := &lockedRand{r: rand.New(rand.NewPCG(seed+1, 7))}
	adapter := engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) {
		timer := time.NewTimer(latency)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return engine.Outcome{}, ctx.Err()
		case <-timer.C:
		}
		if calls.Float64() < p429 {
			ra := []time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second}[int(calls.Float64()*4)]
			return engine.Outcome{Verdict: engine.Retry, Status: 429, Message: "429 Too Many Requests", RetryAfter: ra}, nil
		}
		return engine.Outcome{Verdict: engine.OK, Status: 200}, nil
	})
	var rows bytes.Buffer
	e, err := engine.New(engine.Config{Settings: set, Retries: 2, MaxBackoff: 2 * time.Second, Adapter: adapter,
		Source: engine.NewLineReader(enginetest.Lines(total), false), Total: int64(total), Results: &rows, Adapt: adapt,
		Jitter: (&lockedRand{r: rand.New(rand.NewPCG(seed+2, 9))}).Float64})
	if err != nil {
		t.Fatal(err)
	}
	mon := probes.NewMonitor(probes.AdvisorConfig{}, false)
	tr := &truth{}
	sub := e.Subscribe(1<<16, engine.CallEnd)
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		probes.Feed(sub, stop, mon.Observe, tr.observe)
	}()
	type result struct {
		sum engine.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := e.Run(context.Background())
		done <- result{sum, err}
	}()

	m := New(e, mon, Options{Title: "property", Plain: true, Now: time.Now})
	m.width, m.height = width, height
	var screen *Model // the attached one, while attached
	if rnd.IntN(2) == 0 {
		screen = &m
	}
	var prevETA time.Duration
	prevPaused := false
	var res result
	ended := false
	for step := 0; !ended; step++ {
		if step > 400 {
			t.Fatalf("the run has not ended after %d steps", step)
		}
		time.Sleep(time.Duration(100+rnd.IntN(1200)) * time.Millisecond)
		synctest.Wait()
		select {
		case res = <-done:
			ended = true
			close(stop)
			<-fed
			sub.Close()
		default:
		}
		m.refresh()
		frame := ansi.Strip(m.Render())
		lines := strings.Split(frame, "\n")
		what := fmt.Sprintf("step %d (%v into the run)", step, m.snap.At.Sub(m.snap.Started))
		fail := func(format string, args ...any) {
			t.Helper()
			t.Errorf("%s: %s\n%s", what, fmt.Sprintf(format, args...), frame)
		}
		if ended {
			checkFinal(t, res.sum, res.err, lines, fail, tr)
			t.Logf("%d steps", step)
			break
		}
		checkRunning(t, m, lines, tr, latency, fail)

		// The ETA stands still while paused; it may fall as the calls in flight finish.
		paused := m.snap.State == engine.Paused
		eta := time.Duration(-1)
		if g := etaRe.FindStringSubmatch(lines[0]); g != nil {
			eta = clock(t, g[1])
		}
		if paused && prevPaused && prevETA >= 0 {
			checked.Lock()
			checked.paused++
			checked.Unlock()
		}
		if paused && prevPaused && eta > prevETA && prevETA >= 0 {
			fail("the ETA grew from %v to %v while paused", prevETA, eta)
		}
		prevETA, prevPaused = eta, paused

		// An attached screen draws the same numbers from the view's JSON (of which the last
		// minute of points is all the header reads).
		if screen != nil {
			a := &attached{fakeEngine: fakeEngine{snap: roundTrip(t, m.snap)}, points: roundTrip(t, m.points[max(0, len(m.points)-60):]), latency: roundTrip(t, m.latency), errs: roundTrip(t, m.errs)}
			remote := New(a, a, Options{Title: "property", Plain: true, Attached: true, Now: time.Now})
			remote.width, remote.height = width, height
			theirs := ansi.Strip(strings.Join(remote.header(width), "\n"))
			ours := ansi.Strip(strings.Join(m.header(width), "\n"))
			checked.Lock()
			checked.attached++
			checked.Unlock()
			if theirs != ours {
				fail("the attached screen's header:\n%s\nthe job's:\n%s", theirs, ours)
			}
		}

		// Turn something, as an operator would; a pause lasts a few steps.
		if paused && rnd.IntN(3) == 0 {
			m = press(t, m, "p")
			continue
		}
		switch k := rnd.IntN(36); {
		case k < 3:
			m = press(t, m, "-")
		case k < 5:
			m = press(t, m, "+")
		case k < 7:
			m = press(t, m, []string{"up", "down", "pgup", "pgdown"}[rnd.IntN(4)])
		case k < 9:
			r := []string{"rate 5/s", "rate 14/s", "rate 40/s", "rate 0", "burst 3", "parallelism 4"}[rnd.IntN(6)]
			if u, err := engine.ParseSetting(r); err == nil {
				if err := e.Set(u, "ctl"); err != nil {
					t.Logf("%s: set %s: %v", what, r, err)
				}
			}
		case k < 11:
			m = press(t, m, "p") // pause, or resume
		case k == 11 && step > 6:
			m = press(t, m, "d", "y")
		case k == 12 || k == 13:
			if screen == nil {
				screen = &m // attach
			} else {
				screen = nil // detach
			}
		}
	}
	if res.sum.OK+res.sum.Failed+res.sum.NotRun() != int64(total) {
		t.Errorf("summary: %d ok + %d failed + %d not run ≠ %d items", res.sum.OK, res.sum.Failed, res.sum.NotRun(), total)
	}
}

// checked counts the rates held to a cap, over every run: a property test whose runs end
// before any such check would pass without checking.
var checked struct {
	sync.Mutex
	rates, capped, paused, attached, final int
}

// checkRunning reads a running screen's numbers back and holds them to the truth.
func checkRunning(t *testing.T, m Model, lines []string, tr *truth, latency time.Duration, fail func(string, ...any)) {
	t.Helper()
	s := m.snap
	g := ratesRe.FindStringSubmatch(lines[2])
	if g == nil {
		fail("the rates line %q does not read", lines[2])
		return
	}
	if p := progRe.FindStringSubmatch(lines[1]); p == nil || num(t, p[2]) != s.Done() || num(t, p[3]) != s.Total {
		fail("the progress line %q, want %d / %d", lines[1], s.Done(), s.Total)
	}
	if g[1] == "" { // measuring: no figure yet
		if g[2] != "–" {
			fail("measuring, and a rate of %s", g[2])
		}
		return
	}
	checked.Lock()
	checked.rates++
	if g[3] != "" {
		checked.capped++
	}
	checked.Unlock()
	secs, _ := strconv.Atoi(g[1])
	over := time.Duration(secs) * time.Second
	to := s.At.Truncate(time.Second)
	calls, tooMany := tr.in(to.Add(-over), to)
	shown, _ := strconv.ParseFloat(g[2], 64)
	if want := float64(calls) / over.Seconds(); math.Abs(shown-want) > 0.5 {
		fail("%s calls/s over the last %v; the engine ended %d calls in them: %.1f/s", g[2], over, calls, want)
	}
	share, _ := strconv.ParseFloat(g[4], 64)
	shareOver, shareCalls := over, calls
	if g[5] != "" { // the 429s over their own window, not the rate's: the cap check below keeps the rate's
		secs, _ := strconv.Atoi(g[5])
		shareOver = time.Duration(secs) * time.Second
		shareCalls, tooMany = tr.in(to.Add(-shareOver), to)
	}
	if shareCalls > 0 {
		if want := 100 * float64(tooMany) / float64(shareCalls); math.Abs(share-want) > 0.05+1e-9 {
			fail("429s %s%% over the last %v; the engine had %d of %d: %.2f%%", g[4], shareOver, tooMany, shareCalls, want)
		}
	}
	// The rate against its cap: the window holds no change (it starts after the last one, and
	// after the calls begun before it ended), so the cap shown held over all of it. A token
	// bucket lets at most cap × window + burst calls start in a window; one more may have
	// been waiting its turn for a token at the change.
	if g[3] != "" {
		capRate, _ := strconv.ParseFloat(g[3], 64)
		burst := s.Settings.Burst
		if limit := capRate*over.Seconds() + float64(burst) + 1; float64(calls) > limit+0.5*over.Seconds() {
			fail("%d calls ended in %v under a cap of %s/s and burst %d: more than %.0f", calls, over, g[3], burst, limit)
		}
	}
	if r := errRuleRe.FindStringSubmatch(strings.Join(lines, "\n")); r != nil {
		if num(t, r[1]) != s.TooMany || num(t, r[2]) != s.Errors {
			fail("the errors panel says %s × 429 · %s errors, the engine %d and %d", r[1], r[2], s.TooMany, s.Errors)
		}
	}
}

// checkFinal holds the final screen to the summary Run returned.
func checkFinal(t *testing.T, sum engine.Summary, err error, lines []string, fail func(string, ...any), tr *truth) {
	t.Helper()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	frame := strings.Join(lines, "\n")
	checked.Lock()
	checked.final++
	checked.Unlock()
	w := wholeRe.FindStringSubmatch(lines[2])
	if w == nil {
		fail("the final rates line %q does not read", lines[2])
	} else if num(t, w[2]) != sum.TooMany {
		fail("the final screen says %s × 429, the summary %d", w[2], sum.TooMany)
	} else if cps, _ := strconv.ParseFloat(w[1], 64); sum.Elapsed > 0 && math.Abs(cps-float64(sum.Calls)/sum.Elapsed.Seconds()) > 0.05 {
		fail("the final screen says %s calls/s, the summary %d calls in %v", w[1], sum.Calls, sum.Elapsed)
	}
	var line string
	for _, l := range lines {
		if summaryRe.MatchString(l) {
			line = l
		}
	}
	g := summaryRe.FindStringSubmatch(line)
	if g == nil {
		fail("no summary on the final screen")
		return
	}
	notRun := int64(0)
	if g[3] != "" {
		notRun = num(t, g[3])
	}
	ok, failed := num(t, g[1]), num(t, g[2])
	if ok != sum.OK || failed != sum.Failed || notRun != sum.NotRun() || num(t, g[4]) != sum.Calls || num(t, g[5]) != sum.TooMany {
		fail("the final screen's summary %q; Run's: %d ok, %d failed, %d not run, %d calls, %d × 429",
			line, sum.OK, sum.Failed, sum.NotRun(), sum.Calls, sum.TooMany)
	}
	if ok+failed+notRun != sum.Total {
		fail("%d ok + %d failed + %d not run ≠ %d items", ok, failed, notRun, sum.Total)
	}
	if e := endRe.FindStringSubmatch(frame); e == nil || e[1] != sum.Ended() || e[2] != sum.Elapsed.Round(time.Millisecond).String() {
		fail("the final screen's end %q, want %s in %v", e, sum.Ended(), sum.Elapsed.Round(time.Millisecond))
	}
	if all, _ := tr.in(time.Time{}, time.Now().Add(time.Hour)); all != sum.Calls {
		fail("the engine published %d call ends, its summary counts %d calls", all, sum.Calls)
	}
}
