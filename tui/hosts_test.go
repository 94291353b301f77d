package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
)

func TestHostsPanelListsTheBusiestHosts(t *testing.T) {
	loads := []adapters.HostLoad{
		{Host: "shop.example:443", InFlight: 2, Waiting: 5, Calls: 120, TooMany: 3},
		{Host: "blog.example:443", InFlight: 1, Calls: 80},
	}
	asked := 0
	for _, size := range [][2]int{{80, 24}, {160, 48}} {
		fe := &fakeEngine{snap: busySnapshot()}
		m := New(fe, busySeries(), Options{Title: "http · urls.txt", Plain: true, Now: func() time.Time { return fixedNow },
			Hosts: func(n int) []adapters.HostLoad { asked = n; return loads }})
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
