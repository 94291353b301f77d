package control

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/throttle-dev/throttle/engine"
)

// fakeEngine records the controls it receives.
type fakeEngine struct {
	mu    sync.Mutex
	set   engine.Settings
	calls []string
}

func (f *fakeEngine) Snapshot() engine.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return engine.Snapshot{Settings: f.set, Total: 10}
}
func (f *fakeEngine) rec(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }

// Set records one line per change, as the tests read it: "ctl parallelism", "ctl pace 250ms",
// "ctl rate 200/s", "tui rate 50/s burst 5".
func (f *fakeEngine) Set(u engine.Update, o string) error {
	f.mu.Lock()
	next := u.Apply(f.set)
	f.set = next
	f.mu.Unlock()
	var parts []string
	for _, k := range u.Knobs() {
		switch k {
		case engine.KnobParallelism:
			parts = append(parts, "parallelism")
		case engine.KnobPace:
			parts = append(parts, "pace "+next.Pace.String())
		case engine.KnobRate:
			parts = append(parts, "rate "+engine.FormatRate(next.Rate))
		case engine.KnobBurst:
			parts = append(parts, "burst "+strconv.Itoa(next.Burst))
		}
	}
	f.rec(o + " " + strings.Join(parts, " "))
	return nil
}
func (f *fakeEngine) Pause(o string)  { f.rec(o + " pause") }
func (f *fakeEngine) Resume(o string) { f.rec(o + " resume") }
func (f *fakeEngine) Drain(o string)  { f.rec(o + " drain") }
func (f *fakeEngine) Stop(o string)   { f.rec(o + " stop") }

func serve(t *testing.T) (*fakeEngine, string) {
	t.Helper()
	fe := &fakeEngine{set: engine.Settings{Parallelism: 2, Burst: 1}}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "run.sock")
	srv, err := Listen(path, fe, "sim · ids.txt")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return fe, path
}

func TestRequests(t *testing.T) {
	fe, path := serve(t)
	for _, tc := range []struct {
		req    Request
		ok     bool
		record string
	}{
		{Request{Cmd: "get"}, true, ""},
		{Request{Cmd: "set", Key: "parallelism", Value: "16"}, true, "ctl parallelism"},
		{Request{Cmd: "set", Key: "pace", Value: "250ms"}, true, "ctl pace 250ms"},
		{Request{Cmd: "set", Key: "rate", Value: "200/s"}, true, "ctl rate 200/s"},
		{Request{Cmd: "pause"}, true, "ctl pause"},
		{Request{Cmd: "set", Key: "parallelism", Value: "0"}, false, ""},
		{Request{Cmd: "set", Key: "speed", Value: "11"}, false, ""},
		{Request{Cmd: "set", Key: "rate", Value: "fast"}, false, ""},
		{Request{Cmd: "explode"}, false, ""},
	} {
		before := len(fe.calls)
		resp, err := Do(path, tc.req)
		if err != nil {
			t.Fatalf("Do(%+v): %v", tc.req, err)
		}
		if resp.OK != tc.ok || (!tc.ok && resp.Error == "") || (tc.ok && resp.Status == nil) {
			t.Errorf("Do(%+v) = %+v, want ok %v (and an error or a status)", tc.req, resp, tc.ok)
		}
		var got string
		if len(fe.calls) > before {
			got = fe.calls[len(fe.calls)-1]
		}
		if got != tc.record {
			t.Errorf("Do(%+v) made the change %q, want %q (a refused request changes nothing)", tc.req, got, tc.record)
		}
	}
}

func TestSocketIsPrivate(t *testing.T) {
	_, path := serve(t)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	loose := t.TempDir()
	if err := os.Chmod(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(loose, "x.sock"), &fakeEngine{}, "t"); err == nil || !strings.Contains(err.Error(), "want 0700") {
		t.Errorf("Listen in a 0755 directory: %v, want a refusal", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(link, "x.sock"), &fakeEngine{}, "t"); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("Listen through a symlinked directory: %v, want a refusal", err)
	}
	long := filepath.Join(filepath.Dir(path), strings.Repeat("x", 120)+".sock")
	if _, err := Listen(long, &fakeEngine{}, "t"); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("Listen at a 120+ byte path: %v, want a refusal naming the limit", err)
	}
}

// TestOtherUserRefused: even through loosened permissions, a connection from another uid is
// closed unanswered (SO_PEERCRED). It needs root, to run a client as another user: a copy of
// this test binary, run as uid 65534, acting as TestClientHelper.
func TestOtherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	fe, path := serve(t)
	// Loosen what the file system would otherwise refuse, so that the peer check is what refuses.
	_ = os.Chmod(filepath.Dir(filepath.Dir(path)), 0o755) // the testing package's own 0700 directory
	_ = os.Chmod(filepath.Dir(path), 0o755)
	_ = os.Chmod(path, 0o666)
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(path), "client.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestClientHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "THROTTLE_CONTROL_CLIENT="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "client: refused") {
		t.Errorf("the client of uid 65534 was not refused (%v):\n%s", err, out)
	}
	if fe.Snapshot().Settings.Parallelism == 99 {
		t.Error("the other user's request changed parallelism")
	}
	// The same request from this user is answered, so the refusal above was the uid's.
	if resp, err := Do(path, Request{Cmd: "get"}); err != nil || !resp.OK {
		t.Errorf("Do as this user: %+v, %v", resp, err)
	}
}

// TestClientHelper is the other user's client of TestOtherUserRefused; it does nothing in a
// normal run.
func TestClientHelper(t *testing.T) {
	path := os.Getenv("THROTTLE_CONTROL_CLIENT")
	if path == "" {
		t.Skip("only run by TestOtherUserRefused")
	}
	resp, err := Do(path, Request{Cmd: "set", Key: "parallelism", Value: "99"})
	if err != nil || !resp.OK {
		t.Logf("client: refused (%v)", err)
		return
	}
	t.Logf("client: answered %+v", resp)
}

// TestStatusShowsEffective: with the congestion response holding values under the ceilings,
// the status (ctl get, and its JSON) gives both; with the ceilings in force, no effective one.
func TestStatusShowsEffective(t *testing.T) {
	s := engine.Snapshot{Settings: engine.Settings{Parallelism: 16, Rate: 250, Burst: 1},
		Effective: engine.Effective{Rate: 187.6, Parallelism: 6, Limit: 197.4, Signals: 3, QuotaLeft: -1}}
	st := statusOf("t", 1, s, nil, false)
	if st.Parallelism != 16 || st.Rate != "250/s" || st.EffectiveParallelism != 6 || st.EffectiveRate != "188/s" ||
		st.TargetLimit != "197/s" || st.Signals != 3 {
		t.Errorf("status with effective values = %+v, want ceilings 16 and 250/s, effective 6 and 188/s, limit 197/s, 3 signals", st)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"parallelism":16`, `"rate":"250/s"`, `"effective_parallelism":6`, `"effective_rate":"188/s"`, `"target_limit":"197/s"`, `"signals":3`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status JSON lacks %s: %s", want, b)
		}
	}
	// An effective value at or over its ceiling does not bind.
	s.Effective = engine.Effective{Rate: 300, Parallelism: 16, QuotaLeft: -1}
	if st := statusOf("t", 1, s, nil, false); st.EffectiveParallelism != 0 || st.EffectiveRate != "" || st.TargetLimit != "" {
		t.Errorf("status with the ceilings in force = %+v, want no effective values", st)
	}
}

// TestRemoteSetIsOneRequest: a change of rate and burst through the socket (an attached
// screen) is one request, applied as one change; the knobs it does not turn are not sent.
func TestRemoteSetIsOneRequest(t *testing.T) {
	fe, path := serve(t)
	r, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	cur := r.Snapshot().Settings
	next := cur
	next.Rate, next.Burst = 50, 5
	before := len(fe.calls)
	if err := r.Set(engine.Diff(cur, next), "tui"); err != nil {
		t.Fatal(err)
	}
	if got := fe.calls[before:]; len(got) != 1 || got[0] != "tui rate 50/s burst 5" {
		t.Fatalf("Set(rate 50/s, burst 5) made the changes %q, want one: tui rate 50/s burst 5", got)
	}
	if s := r.Snapshot().Settings; s.Rate != 50 || s.Burst != 5 || s.Parallelism != cur.Parallelism {
		t.Fatalf("settings after the change: %+v", s)
	}
	// An exact rate crosses the socket unrounded.
	next.Rate = 1.23456
	if err := r.Set(engine.Diff(r.Snapshot().Settings, next), "tui"); err != nil {
		t.Fatal(err)
	}
	if s := r.Snapshot().Settings; s.Rate != 1.23456 {
		t.Fatalf("rate after the change: %v, want 1.23456", s.Rate)
	}
}

// TestSetRefusals: the socket's refusals are the engine parser's, with the control prefix.
func TestSetRefusals(t *testing.T) {
	_, path := serve(t)
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Cmd: "set", Key: "speed", Value: "11"}, `control: unknown knob "speed": parallelism, pace, rate or burst`},
		{Request{Cmd: "set", Key: "burst", Value: "0"}, `control: burst "0": want a whole number ≥ 1`},
		{Request{Cmd: "set", Set: map[string]string{"pace": "-1s"}}, `control: pace "-1s": want a duration such as 250ms or 0`},
		{Request{Cmd: "set", Key: "max-parallelism", Value: "9"}, "control: max-parallelism is fixed for the run: set it with --max-parallelism at the start"},
		{Request{Cmd: "set"}, "control: set names no knob, e.g. set parallelism 16"},
	} {
		resp, err := Do(path, tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.OK || resp.Error != tc.want {
			t.Errorf("Do(%+v) = ok %v, %q; want the refusal %q", tc.req, resp.OK, resp.Error, tc.want)
		}
	}
}
