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
