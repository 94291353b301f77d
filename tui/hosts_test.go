package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

func TestHostsPanelListsTheBusiestHosts(t *testing.T) {
	loads := Hosts{Rows: []HostLoad{
		{Host: "shop.example:443", InFlight: 2, Waiting: 5, Calls: 120, TooMany: 3},
		{Host: "blog.example:443", InFlight: 1, Calls: 80},
	}}
	asked := 0
	for _, size := range [][2]int{{80, 24}, {160, 48}} {
		fe := &fakeEngine{snap: busySnapshot()}
		m := New(fe, busySeries(), Options{Title: "http · urls.txt", Plain: true, Now: func() time.Time { return fixedNow },
			Hosts: func(n int) Hosts { asked = n; return loads }})
		m.width, m.height = size[0], size[1]
		frame := m.Render()
		checkFrame(t, frame, size[0], size[1])
		if !strings.Contains(frame, "hosts · errors") || !strings.Contains(frame, "shop.example:443 2+5 waiting · 3×429   blog.example:443 1") {
			t.Fatalf("%dx%d: the busiest hosts are not shown:\n%s", size[0], size[1], frame)
		}
	}
	if asked == 0 {
		t.Fatal("the screen never asked for the hosts")
	}
	m, _ := newFixtureModel(80, 24, true) // without per-host limits: no hosts line
	if strings.Contains(m.Render(), "hosts") {
		t.Fatal("a run without per-host limits shows hosts")
	}
}

// A job across hosts leads its panel with the whole job: its hosts, calls in flight against its
// cap, and calls/s against its rate; then its busiest hosts.
func TestHostsPanelLeadsWithTheWholeJob(t *testing.T) {
	loads := Hosts{Job: &JobLoad{Hosts: 3, InFlight: 5, Cap: 64, PerSecond: 49.6, Rate: 100, Over: 5 * time.Second},
		Rows: []HostLoad{{Host: "box-a", InFlight: 3, Calls: 900}, {Host: "box-b", InFlight: 2, Calls: 700}}}
	for _, size := range [][2]int{{80, 24}, {160, 48}} {
		fe := &fakeEngine{snap: busySnapshot()}
		m := New(fe, busySeries(), Options{Title: "http · urls.txt", Plain: true, Now: func() time.Time { return fixedNow },
			Hosts: func(int) Hosts { return loads }})
		m.width, m.height = size[0], size[1]
		frame := m.Render()
		checkFrame(t, frame, size[0], size[1])
		want := "all 3 hosts (cap 64, 50 calls/s of 100/s · last 5s): 5   box-a 3   box-b 2"
		if !strings.Contains(frame, "hosts · errors") || !strings.Contains(frame, want) {
			t.Fatalf("%dx%d: no %q:\n%s", size[0], size[1], want, frame)
		}
	}
	// A job whose hosts have not reported yet still shows the job.
	if got := hostLoads(Hosts{Job: &JobLoad{Hosts: 0, Cap: 8}}); got != "all 0 hosts (cap 8, – calls/s of unlimited · measuring): 0" {
		t.Errorf("job alone: %q", got)
	}
	if got := (JobLoad{Hosts: 1, Cap: 8}).Caption(); got != "1 host (cap 8, – calls/s of unlimited · measuring)" {
		t.Errorf("a job of one host: %q", got)
	}
}

func TestConnectionsShownForAnAdapterWithOnePerWorker(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {160, 48}} {
		fe := &fakeEngine{snap: busySnapshot()}
		m := New(fe, busySeries(), Options{Title: "postgres · events.jsonl", Plain: true, Now: func() time.Time { return fixedNow },
			Connections: func() int { return 16 }})
		m.width, m.height = size[0], size[1]
		frame := m.Render()
		checkFrame(t, frame, size[0], size[1])
		if !strings.Contains(frame, "connections 16 open · one per worker") {
			t.Fatalf("%dx%d: the open connections are not shown:\n%s", size[0], size[1], frame)
		}
	}
	m, _ := newFixtureModel(80, 24, true)
	if strings.Contains(m.Render(), "connections") {
		t.Fatal("an adapter without connections shows some")
	}
}

func TestQuotaAndSharedLimitShown(t *testing.T) {
	snap := busySnapshot()
	snap.Quota = engine.QuotaState{Quota: engine.Quota{Limit: 100, Remaining: 0, Reset: 30 * time.Second},
		At: snap.At, ResetAt: snap.At.Add(30 * time.Second)}
	fe := &fakeEngine{snap: snap}
	m := New(fe, busySeries(), Options{Title: "http · ids.txt", Plain: true, Now: func() time.Time { return fixedNow },
		Binding: func() string { return "shared limit tmdb: rate 50/s" }})
	m.width, m.height = 160, 48
	frame := m.Render()
	checkFrame(t, frame, 160, 48)
	for _, want := range []string{"quota 0/100 · resets in 30s", "the target's quota is spent: calls wait 30s", "binding: shared limit tmdb: rate 50/s"} {
		if !strings.Contains(frame, want) {
			t.Errorf("no %q on the screen:\n%s", want, frame)
		}
	}
}

// TestHostsPanelWrapsHosts: hosts that do not fit one line go on the next, each whole, rather
// than the line be cut.
func TestHostsPanelWrapsHosts(t *testing.T) {
	loads := Hosts{Job: &JobLoad{Hosts: 3, InFlight: 5, Cap: 64, PerSecond: 49.6, Rate: 100, Over: 5 * time.Second}, Rows: []HostLoad{
		{Host: "shop.example:443", InFlight: 2, Waiting: 5, Calls: 120, TooMany: 3},
		{Host: "blog.example:443", InFlight: 1, Calls: 80},
		{Host: "api.payments.example:443", InFlight: 4, Waiting: 12, Calls: 800, TooMany: 1_203},
	}}
	for _, size := range [][2]int{{80, 24}, {100, 30}} {
		fe := &fakeEngine{snap: busySnapshot()}
		m := New(fe, busySeries(), Options{Title: "http · urls.txt", Plain: true, Now: func() time.Time { return fixedNow },
			Hosts: func(int) Hosts { return loads }})
		m.width, m.height = size[0], size[1]
		frame := m.Render()
		checkFrame(t, frame, size[0], size[1])
		if strings.Contains(frame, "…") {
			t.Errorf("%dx%d: a line is cut:\n%s", size[0], size[1], frame)
		}
		for _, want := range []string{"all 3 hosts (cap 64, 50 calls/s of 100/s · last 5s): 5", "shop.example:443 2+5 waiting · 3×429",
			"blog.example:443 1", "api.payments.example:443 4+12 waiting · 1,203×429"} {
			if !strings.Contains(frame, want) {
				t.Errorf("%dx%d: no %q:\n%s", size[0], size[1], want, frame)
			}
		}
	}
}

// TestHeaderCountsTheJobsRows: on a shared job's coordinator the bar, the count and the ETA
// are the whole job's rows against the input's total (this host's engine knows neither: its
// items come from the job's work list), at 80x24 as at 120x40.
func TestHeaderCountsTheJobsRows(t *testing.T) {
	snap := busySnapshot()
	snap.Total = -1
	loads := Hosts{Job: &JobLoad{Hosts: 3, InFlight: 5, Cap: 48, PerSecond: 300, Rate: 300, Over: 5 * time.Second,
		Rows: 1_191, Total: 3_000, ETA: 6 * time.Second}}
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		m := New(&fakeEngine{snap: snap}, busySeries(), Options{Title: "http · job users", Plain: true, Now: func() time.Time { return fixedNow },
			Hosts: func(int) Hosts { return loads }})
		m.width, m.height = size[0], size[1]
		frame := m.Render()
		checkFrame(t, frame, size[0], size[1])
		head := strings.Join(strings.Split(frame, "\n")[:2], "\n")
		for _, want := range []string{"3,000 job rows", "ETA 0:06", "39.7%  1,191 / 3,000"} {
			if !strings.Contains(head, want) {
				t.Errorf("%dx%d: no %q in the header:\n%s", size[0], size[1], want, head)
			}
		}
		if strings.Contains(head, "unknown total") {
			t.Errorf("%dx%d: the header says the total is unknown:\n%s", size[0], size[1], head)
		}
	}
}
