package record

// Tests of the format's own codes for outcome classes, verdicts and states: a recording made
// before they existed (testdata, written by the binary of the time) still reads the same, every
// value has exactly one code, the codes are the version-1 numbers, and an unknown code is an
// error rather than a guess.

import (
	"bytes"
	"compress/gzip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// v1Recording is an http run recorded by throttle before the format had codes of its own: 24
// items against a server that answered by item%8 200, 429, 503, 404, too late (--timeout
// 300ms), a dropped connection, 302, 200, with one retry. Its export was written by the same
// binary.
const (
	v1Recording = "testdata/v1-http-classes.rec.gz"
	v1Export    = "testdata/v1-http-classes.export.jsonl"
)

// TestOldRecordingReadsTheSame reads the old recording: each call's class is what its status
// says, the classes, verdicts and finals add up to what the server answered, the snapshots'
// states and the summary are the run's, and its export is byte for byte what the recording's
// own binary exported.
func TestOldRecordingReadsTheSame(t *testing.T) {
	rec, err := Open(v1Recording)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Cut || rec.End == nil || rec.Header.Version != 1 || rec.Header.Adapter != "http" || rec.Header.Total != 24 {
		t.Fatalf("header %+v, cut %v, end %v", rec.Header, rec.Cut, rec.End)
	}
	want := End{State: "done", Total: 24, OK: 6, Failed: 18, Calls: 36, Retries: 12, TooMany: 6,
		Elapsed: Duration(2543064566 * time.Nanosecond)}
	if e := *rec.End; e.State != want.State || e.Total != want.Total || e.OK != want.OK || e.Failed != want.Failed ||
		e.NotStarted != 0 || e.Lost != 0 || e.Calls != want.Calls || e.Retries != want.Retries ||
		e.TooMany != want.TooMany || e.Elapsed != want.Elapsed {
		t.Errorf("end %+v, want %+v", e, want)
	}
	if len(rec.Calls) != 36 {
		t.Fatalf("%d calls, want 36", len(rec.Calls))
	}

	classes := map[probes.Class]int{}
	verdicts := map[engine.Verdict]int{}
	finals := map[probes.Class]int{}
	for i, c := range rec.Calls {
		// What the server did to item index decides the class, whatever the enum's numbers.
		var want probes.Class
		switch c.Index % 8 {
		case 0, 7:
			want = probes.ClassOK
		case 1:
			want = probes.ClassTooMany
		case 2:
			want = probes.Class5xx
		case 3:
			want = probes.Class4xx
		case 4:
			want = probes.ClassTimeout
		case 5:
			want = probes.ClassConnection
		case 6:
			want = probes.ClassOther
		}
		if c.Class != want {
			t.Errorf("call %d (item %d, status %d): class %v, want %v", i, c.Index, c.Status, c.Class, want)
		}
		classes[c.Class]++
		verdicts[c.Verdict]++
		if c.Final {
			finals[c.Class]++
		}
	}
	wantClasses := map[probes.Class]int{probes.ClassOK: 6, probes.ClassTooMany: 6, probes.Class5xx: 6, probes.ClassTimeout: 6,
		probes.ClassConnection: 6, probes.Class4xx: 3, probes.ClassOther: 3}
	wantFinals := map[probes.Class]int{probes.ClassOK: 6, probes.ClassTooMany: 3, probes.Class5xx: 3, probes.ClassTimeout: 3,
		probes.ClassConnection: 3, probes.Class4xx: 3, probes.ClassOther: 3}
	for c := range probes.ClassOther + 1 {
		if classes[c] != wantClasses[c] || finals[c] != wantFinals[c] {
			t.Errorf("class %v: %d calls (%d final), want %d (%d final)", c, classes[c], finals[c], wantClasses[c], wantFinals[c])
		}
	}
	if verdicts[engine.OK] != 6 || verdicts[engine.Retry] != 24 || verdicts[engine.Fail] != 6 {
		t.Errorf("verdicts %v, want 6 ok, 24 retry, 6 fail", verdicts)
	}
	var states []engine.State
	for _, s := range rec.Snapshots {
		states = append(states, s.State)
	}
	if len(states) != 3 || states[0] != engine.Running || states[1] != engine.Running || states[2] != engine.Done {
		t.Errorf("snapshot states %v, want running, running, done", states)
	}

	f, err := os.Open(v1Recording)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got bytes.Buffer
	if err := Export(f, &got); err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(v1Export)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), golden) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(golden), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("export line %d:\n got %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("export has %d lines, the old binary's %d", len(gl), len(wl))
	}
}

// TestCodesAreVersionOne pins every code to the number version 1 wrote: changing one is
// changing what every recording already made means.
func TestCodesAreVersionOne(t *testing.T) {
	for v, code := range map[probes.Class]int64{probes.ClassOK: 0, probes.ClassTooMany: 1, probes.ClassTimeout: 2,
		probes.ClassConnection: 3, probes.Class5xx: 4, probes.Class4xx: 5, probes.ClassOther: 6} {
		if got := classCodes.encode(v); got != code {
			t.Errorf("class %v is written %d, version 1 wrote %d", v, got, code)
		}
	}
	for v, code := range map[engine.Verdict]int64{engine.OK: 0, engine.Retry: 1, engine.Fail: 2} {
		if got := verdictCodes.encode(v); got != code {
			t.Errorf("verdict %v is written %d, version 1 wrote %d", v, got, code)
		}
	}
	for v, code := range map[engine.State]int64{engine.Running: 0, engine.Paused: 1, engine.Draining: 2, engine.Stopping: 3, engine.Done: 4} {
		if got := stateCodes.encode(v); got != code {
			t.Errorf("state %v is written %d, version 1 wrote %d", v, got, code)
		}
	}
}

// TestCodesCoverEveryValue: every class probes names, every verdict and every state has a code
// that reads back as itself, so that no value falls back to another's code.
func TestCodesCoverEveryValue(t *testing.T) {
	// probes names its classes; a class added there without a code here fails this loop.
	for c := probes.Class(0); !strings.HasPrefix(c.String(), "class "); c++ {
		checkRoundTrip(t, classCodes, c)
	}
	for _, v := range []engine.Verdict{engine.OK, engine.Retry, engine.Fail} {
		checkRoundTrip(t, verdictCodes, v)
	}
	for _, s := range []engine.State{engine.Running, engine.Paused, engine.Draining, engine.Stopping, engine.Done} {
		checkRoundTrip(t, stateCodes, s)
	}
}

func checkRoundTrip[T ~uint8](t *testing.T, c *codes[T], v T) {
	t.Helper()
	if c.code[v] < 0 {
		t.Errorf("%s %v has no code", c.what, v)
		return
	}
	back, err := c.decode(c.encode(v))
	if err != nil || back != v {
		t.Errorf("%s %v: written %d, read back %v (%v)", c.what, v, c.encode(v), back, err)
	}
}

// TestUnknownCodeIsAnError: a call with a class code no version wrote, or a snapshot with an
// unknown state, makes the recording unreadable with a message that says so, rather than a
// class read as whatever the enum holds at that number.
func TestUnknownCodeIsAnError(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`[0,10,5,0,1,1,1,1,200,7,0,1,0]`, "unknown outcome class code 7"},
		{`[0,10,5,0,1,1,1,1,200,0,3,1,0]`, "unknown verdict code 3"},
		{`[3,10,9,1,0,0,0,0,0,0,0,0]`, "unknown state code 9"},
	} {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(`{"format":"throttle-recording","version":1,"started":"2026-01-01T00:00:00Z","adapter":"sim","total":1}` + "\n" +
			tc.line + "\n"))
		zw.Close()
		_, err := Read(&b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.line, err, tc.want)
		}
	}
}
