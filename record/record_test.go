package record_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/recordtest"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/record"
)

// recordRun runs n items against a simulated API under virtual time, recording the run; it
// doubles parallelism at 2 s so that the recording holds a change.
func recordRun(t *testing.T, n int, sim adapters.SimConfig, set engine.Settings) (*bytes.Buffer, engine.Summary) {
	t.Helper()
	b, sum := recordtest.Record(t, recordtest.Run{Items: n, Sim: sim, Settings: set, Retries: 3,
		Changes: []recordtest.Change{{At: 2 * time.Second, Parallelism: set.Parallelism * 2}}})
	return bytes.NewBuffer(b), sum
}

func TestRoundTripCountsEveryCall(t *testing.T) {
	const n = 3000
	buf, sum := recordRun(t, n, adapters.SimConfig{Rate: 400, Latency: 20 * time.Millisecond, Sigma: 0.3, ErrorRate: 0.02, Seed: 7},
		engine.Settings{Parallelism: 8, Burst: 1})
	size := buf.Len()
	rec, err := record.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Cut || rec.End == nil {
		t.Fatalf("complete recording read as cut: cut=%v end=%v", rec.Cut, rec.End)
	}
	if int64(len(rec.Calls)) != sum.Calls {
		t.Fatalf("recording holds %d calls, the run made %d", len(rec.Calls), sum.Calls)
	}
	var final, ok, retries, tooMany int64
	for i, c := range rec.Calls {
		if i > 0 && c.End() < rec.Calls[i-1].End() {
			t.Fatalf("calls not ordered by end at %d", i)
		}
		if c.Final {
			final++
			if c.Verdict == engine.OK {
				ok++
			}
		} else {
			retries++
		}
		if c.Status == 429 {
			tooMany++
		}
	}
	if final != sum.OK+sum.Failed || ok != sum.OK || retries != sum.Retries || tooMany != sum.TooMany {
		t.Fatalf("from calls: final %d ok %d retries %d 429s %d; summary %+v", final, ok, retries, tooMany, sum)
	}
	if sum.TooMany == 0 || sum.Retries == 0 {
		t.Fatalf("the run should have met the hidden limit: %+v", sum)
	}
	if rec.End.OK != sum.OK || rec.End.Calls != sum.Calls || time.Duration(rec.End.Elapsed) != sum.Elapsed {
		t.Fatalf("end record %+v, summary %+v", rec.End, sum)
	}
	var raised bool
	for _, c := range rec.Changes {
		raised = raised || (c.Knob == "parallelism" && c.Origin == "tui" && c.From == "8" && c.To == "16")
	}
	if !raised {
		t.Fatalf("the raise to 16 is not in the changes: %+v", rec.Changes)
	}
	if got := rec.SettingsAt(rec.Elapsed()).Parallelism; got != 16 {
		t.Fatalf("settings at the end: parallelism %d, want 16", got)
	}
	if len(rec.Snapshots) < 2 || len(rec.Holds) == 0 {
		t.Fatalf("%d snapshots, %d holds", len(rec.Snapshots), len(rec.Holds))
	}
	perCall := float64(size) / float64(sum.Calls)
	t.Logf("%d calls in %d bytes: %.1f bytes per call", sum.Calls, size, perCall)
	if perCall >= 40 {
		t.Fatalf("%.1f bytes per call; the goal is under 40", perCall)
	}
}

func TestEventsReplayAsTheyWereObserved(t *testing.T) {
	// A replayed call must classify as the live event did: a recording keeps the class, not the
	// message, and Classify looks at both.
	for _, ev := range []engine.Event{
		{Kind: engine.CallEnd, Status: 200, Verdict: engine.OK},
		{Kind: engine.CallEnd, Status: 429, Verdict: engine.Retry, RetryAfter: time.Second},
		{Kind: engine.CallEnd, Err: true, Verdict: engine.Retry, Message: "timeout after 30s"},
		{Kind: engine.CallEnd, Err: true, Verdict: engine.Retry, Message: "dial tcp: connection refused"},
		{Kind: engine.CallEnd, Status: 503, Verdict: engine.Retry, Message: "HTTP 503"},
		{Kind: engine.CallEnd, Status: 404, Verdict: engine.Fail, Message: "HTTP 404"},
		{Kind: engine.CallEnd, Status: 302, Verdict: engine.Fail, Message: "redirect"},
	} {
		c := record.Call{Status: int16(ev.Status), Class: probes.Classify(ev), Verdict: ev.Verdict, RetryAfter: ev.RetryAfter}
		if got := probes.Classify(c.Event(time.Now())); got != probes.Classify(ev) {
			t.Errorf("%+v replays as %v, was %v", ev, got, probes.Classify(ev))
		}
	}
}

func TestCutRecordingReadsUpToTheCut(t *testing.T) {
	buf, sum := recordRun(t, 2000, adapters.SimConfig{Latency: 10 * time.Millisecond}, engine.Settings{Parallelism: 4, Burst: 1})
	full, err := record.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	// A crash leaves a prefix of the stream: every cut point must read without an error and
	// give a prefix of the calls.
	prev := -1
	for _, cut := range []int{buf.Len() / 4, buf.Len() / 2, buf.Len() - 10} {
		rec, err := record.Read(bytes.NewReader(buf.Bytes()[:cut]))
		if err != nil {
			t.Fatalf("cut at %d of %d: %v", cut, buf.Len(), err)
		}
		if !rec.Cut || (rec.End != nil && cut < buf.Len()/2+1) {
			t.Fatalf("cut at %d: Cut=%v End=%v", cut, rec.Cut, rec.End)
		}
		if len(rec.Calls) < prev || len(rec.Calls) > len(full.Calls) {
			t.Fatalf("cut at %d: %d calls (previous cut %d, full %d)", cut, len(rec.Calls), prev, len(full.Calls))
		}
		prev = len(rec.Calls)
	}
	if prev == 0 || int64(len(full.Calls)) != sum.Calls {
		t.Fatalf("the last cut kept %d calls; the full recording %d of %d", prev, len(full.Calls), sum.Calls)
	}
}

func TestReadRejectsWhatIsNotARecording(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":      nil,
		"plain text": []byte("item-1\nitem-2\n"),
		"gzip json":  gz(`{"format":"something else"}` + "\n"),
	} {
		if _, err := record.Read(bytes.NewReader(in)); !errors.Is(err, record.ErrNotRecording) {
			t.Errorf("%s: %v, want record.ErrNotRecording", name, err)
		}
	}
	if _, err := record.Read(bytes.NewReader(gz(`{"format":"throttle-recording","version":99}` + "\n"))); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("a later version: %v", err)
	}
	if _, err := record.Read(bytes.NewReader(gz(`{"format":"throttle-recording","version":1}` + "\n[0,1,x]\n"))); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad line: %v", err)
	}
}

func TestExportWritesNamedFields(t *testing.T) {
	buf, sum := recordRun(t, 500, adapters.SimConfig{Rate: 300, Latency: 10 * time.Millisecond}, engine.Settings{Parallelism: 8, Burst: 1})
	var out bytes.Buffer
	if err := record.Export(bytes.NewReader(buf.Bytes()), &out); err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, line := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %d is not JSON: %v", i+1, err)
		}
		if i == 0 {
			if obj["format"] != "throttle-recording" {
				t.Fatalf("first line is not the header: %s", line)
			}
			continue
		}
		typ, _ := obj["type"].(string)
		types[typ]++
		if typ == "call" {
			for _, k := range []string{"start_ms", "latency_ms", "worker", "index", "attempt", "in_flight", "status", "outcome", "verdict", "final"} {
				if _, ok := obj[k]; !ok {
					t.Fatalf("call without %q: %s", k, line)
				}
			}
		}
	}
	if int64(types["call"]) != sum.Calls || types["end"] != 1 || types["change"] == 0 || types["snapshot"] == 0 {
		t.Fatalf("exported %v; the run made %d calls", types, sum.Calls)
	}
}

func gz(s string) []byte {
	var b bytes.Buffer
	zw := gzipWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

func gzipWriter(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }

// TestLimitsAtFollowTheResponse: the congestion response's changes ("adapt") are recorded like
// any change, and the effective values at a moment are rebuilt from them as the engine's
// snapshot had them: a replayed screen shows "effective · ceiling".
func TestLimitsAtFollowTheResponse(t *testing.T) {
	b, _ := recordtest.Record(t, recordtest.Run{Items: 3000, Adapt: true, Retries: 5,
		Sim:      adapters.SimConfig{Rate: 200, Burst: 5, Latency: 20 * time.Millisecond, RetryAfter: time.Second, Seed: 3},
		Settings: engine.Settings{Parallelism: 16, Rate: 300, Burst: 1}})
	rec, err := record.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var cut *record.Change
	for i, c := range rec.Changes {
		if c.Origin == "adapt" && c.Knob == "effective rate" && strings.Contains(c.To, "(") {
			cut = &rec.Changes[i]
			break
		}
	}
	if cut == nil {
		t.Fatalf("no cut of the effective rate in the recorded changes: %+v", rec.Changes)
	}
	set, eff := rec.LimitsAt(cut.At)
	want, _, _ := strings.Cut(cut.To, " ")
	if set.Rate != 300 || eff.Rate <= 0 || eff.Rate >= 300 || engine.FormatRate(eff.Rate) != want || eff.Signals != 1 {
		t.Errorf("at the cut %q: settings %+v, effective %+v; want the ceiling 300/s and the effective rate %s, one signal", cut.To, set, eff, want)
	}
	if _, eff := rec.LimitsAt(cut.At - time.Microsecond); eff.Rate != 0 || eff.Signals != 0 {
		t.Errorf("before the first cut the effective values are %+v, want none", eff)
	}
}

// TestApplyAdaptChanges: every form of the engine's adapt entries, and the operator's
// ceiling under an effective value (the engine then drops it), rebuild as the engine had it.
func TestApplyAdaptChanges(t *testing.T) {
	rec := &record.Recording{Header: record.Header{Settings: record.Settings{Parallelism: 16, Rate: 250, Burst: 1}}}
	for i, c := range []struct{ origin, knob, from, to string }{
		{"adapt", "effective rate", "250/s", "188/s (blind)"},                 // 1
		{"adapt", "effective rate", "188/s", "180/s (target accepted 190/s)"}, // 2
		{"adapt", "effective rate", "180/s", "199/s"},                         // 3: the climb
		{"adapt", "effective parallelism", "16", "6 (429 at 8 in flight)"},    // 4
		{"adapt", "effective parallelism", "6", "7"},                          // 5
		{"tui", "rate", "250/s", "190/s"},                                     // 6: the ceiling under it
		{"adapt", "effective parallelism", "7", "ceiling 16"},                 // 7
		{"adapt", "effective rate", "190/s", "171/s (target refused 200/s)"},  // 8: a cut from a flow refused
	} {
		rec.Changes = append(rec.Changes, record.Change{At: time.Duration(i+1) * time.Second, Origin: c.origin, Knob: c.knob, From: c.from, To: c.to})
	}
	for _, tc := range []struct {
		at   int
		set  engine.Settings
		want engine.Effective
	}{
		{0, engine.Settings{Parallelism: 16, Rate: 250, Burst: 1}, engine.Effective{QuotaLeft: -1}},
		{1, engine.Settings{Parallelism: 16, Rate: 250, Burst: 1}, engine.Effective{Rate: 188, Signals: 1, QuotaLeft: -1}},
		{2, engine.Settings{Parallelism: 16, Rate: 250, Burst: 1}, engine.Effective{Rate: 180, Limit: 190, Signals: 2, QuotaLeft: -1}},
		{3, engine.Settings{Parallelism: 16, Rate: 250, Burst: 1}, engine.Effective{Rate: 199, Limit: 190, Signals: 2, QuotaLeft: -1}},
		{4, engine.Settings{Parallelism: 16, Rate: 250, Burst: 1}, engine.Effective{Rate: 199, Limit: 190, Parallelism: 6, Concurrency: 8, Signals: 3, QuotaLeft: -1}},
		{5, engine.Settings{Parallelism: 16, Rate: 250, Burst: 1}, engine.Effective{Rate: 199, Limit: 190, Parallelism: 7, Concurrency: 8, Signals: 3, QuotaLeft: -1}},
		{6, engine.Settings{Parallelism: 16, Rate: 190, Burst: 1}, engine.Effective{Limit: 190, Parallelism: 7, Concurrency: 8, Signals: 3, QuotaLeft: -1}},
		{7, engine.Settings{Parallelism: 16, Rate: 190, Burst: 1}, engine.Effective{Limit: 190, Concurrency: 8, Signals: 3, QuotaLeft: -1}},
		{8, engine.Settings{Parallelism: 16, Rate: 190, Burst: 1}, engine.Effective{Rate: 171, Limit: 200, Concurrency: 8, Signals: 4, QuotaLeft: -1}},
	} {
		set, eff := rec.LimitsAt(time.Duration(tc.at) * time.Second)
		if set != tc.set || eff != tc.want {
			t.Errorf("after change %d: %+v, %+v; want %+v, %+v", tc.at, set, eff, tc.set, tc.want)
		}
	}
}

// TestOldRecordingReads: a recording made before the congestion response reads as before,
// with no effective values at any moment.
func TestOldRecordingReads(t *testing.T) {
	rec, err := record.Open("../testdata/recordings/sim-429.rec")
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Duration{0, rec.Elapsed() / 2, rec.Elapsed()} {
		set, eff := rec.LimitsAt(at)
		if set != rec.SettingsAt(at) || eff != (engine.Effective{QuotaLeft: -1}) {
			t.Errorf("at %v: %+v, %+v; want the settings and no effective values", at, set, eff)
		}
	}
}
