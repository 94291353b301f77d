package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/cuttest"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// row encodes a row for item-i.
func row(i int64, ok bool, note string) engine.EncodedRow {
	r := &engine.Result{Item: engine.Item{Index: i, Line: fmt.Sprintf("item-%d", i)}, OK: ok, Error: note}
	return engine.EncodedRow{Index: i, Line: engine.AppendRow(nil, r), OK: ok}
}

func TestCollectKeepsTheFirstRowOfEachItem(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sink := c.Source(ctx, SourceOptions{}).Sink()
	// Rows for items this host never took are added all the same; item 2 comes twice.
	rows := []engine.EncodedRow{row(0, true, ""), row(2, false, "first"), row(1, true, ""), row(2, true, "second")}
	if n, err := sink.WriteRows(rows); n != 4 || err != nil {
		t.Fatalf("WriteRows: %d, %v", n, err)
	}
	// The total is unknown when the collector starts: it ends only once the coordinator
	// marks it and every item has its row.
	var out strings.Builder
	type result struct {
		st  CollectStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := c.Collect(ctx, &out, -1, CollectOptions{Block: 100 * time.Millisecond})
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Collect ended before the total was known: %+v, %v", r.st, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := c.Client().HSet(ctx, c.Key("meta"), "total", 4).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("Collect ended with a row missing: %+v, %v", r.st, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := sink.WriteRows([]engine.EncodedRow{row(3, true, "")}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.st != (CollectStats{Rows: 4, OK: 3, Failed: 1, Duplicates: 1}) {
		t.Fatalf("collect %+v, %v", r.st, r.err)
	}
	want := string(rows[0].Line) + string(rows[1].Line) + string(rows[2].Line) + string(row(3, true, "").Line)
	if out.String() != want {
		t.Fatalf("results:\n%s\nwant:\n%s", out.String(), want)
	}
	if n := c.Client().XLen(ctx, c.Key("results")).Val(); n != 0 {
		t.Fatalf("%d rows left in redis after they were written", n)
	}
}

func TestCollectReturnsTheWriteError(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Source(ctx, SourceOptions{}).Sink().WriteRows([]engine.EncodedRow{row(0, true, "")}); err != nil {
		t.Fatal(err)
	}
	full := errors.New("disk full")
	_, err := c.Collect(ctx, failingWriter{full}, 1, CollectOptions{})
	if !errors.Is(err, full) {
		t.Fatalf("Collect: %v; want the write error", err)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestSinkRefusesWrite(t *testing.T) {
	var j Job
	if _, err := j.Source(context.Background(), SourceOptions{}).Sink().Write([]byte("{}\n")); err == nil {
		t.Fatal("Write was accepted")
	}
}

// outages records what an Outage told.
type outages struct {
	mu     sync.Mutex
	events []error
}

func (o *outages) report(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, err)
}

// check fails the test unless the reports alternate outage, recovery, … starting with an
// outage, and there were at least min outages.
func (o *outages) check(t *testing.T, min int, endUp bool) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, err := range o.events {
		if (err != nil) != (i%2 == 0) {
			t.Fatalf("reports %v: want an outage, its end, and so on", o.events)
		}
	}
	if len(o.events) < 2*min-1 || endUp && len(o.events)%2 != 0 {
		t.Fatalf("reports %v: want %d outage(s), ended=%v", o.events, min, endUp)
	}
}

func TestSinkWaitsWhileRedisIsAway(t *testing.T) {
	// A job whose Redis is not there: nothing listens on port 1.
	j := &Job{rdb: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}), name: "away", host: "a"}
	defer j.Close()
	const wait = 1200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var o outages
	src := j.Source(ctx, SourceOptions{Outage: NewOutage(o.report)})
	start := time.Now()
	n, err := src.Sink().WriteRows([]engine.EncodedRow{row(0, true, ""), row(1, true, "")})
	if took := time.Since(start); took < wait {
		t.Fatalf("WriteRows returned after %v, before ctx ended: %d, %v", took, n, err)
	}
	if n != 0 || !errors.Is(err, ErrRedis) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WriteRows: %d, %v; want 0 rows and ErrRedis with the ctx's end", n, err)
	}
	o.check(t, 1, false)
	if len(o.events) != 1 {
		t.Fatalf("reports %v: want one outage", o.events)
	}
	if _, err := src.Next(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next after ctx ended: %v", err)
	}
}

func TestJobPausesThroughRedisOutage(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p := cuttest.Start(t, c.Client().Options().Addr)
	u, err := url.Parse(queueRedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	host := queueConnect(t, u.String(), c.Name(), "behind-proxy")

	const items = 3000
	if _, err := c.Produce(ctx, numbered(items), 50); err != nil {
		t.Fatal(err)
	}
	var out syncBuilder
	collected := make(chan CollectStats, 1)
	go func() {
		st, err := c.Collect(ctx, &out, items, CollectOptions{Block: 100 * time.Millisecond})
		if err != nil {
			t.Errorf("collect: %v", err)
		}
		collected <- st
	}()
	var o outages
	wait := runHost(t, ctx, host, SourceOptions{Block: 100 * time.Millisecond, Outage: NewOutage(o.report)}, 2*time.Millisecond)

	for out.lines() < 500 {
		time.Sleep(5 * time.Millisecond)
	}
	// Long enough for the client's own retries to give up, so that the Source sees the outage.
	p.Cut()
	time.Sleep(300 * time.Millisecond)
	before := c.Client().XLen(ctx, c.Key("results")).Val()
	time.Sleep(2700 * time.Millisecond)
	if after := c.Client().XLen(ctx, c.Key("results")).Val(); after != before {
		t.Fatalf("%d rows reached redis while the host could not reach it", after-before)
	}
	if before >= items {
		t.Fatal("the job ended before the outage")
	}
	p.Restore(t)

	sum := wait()
	if sum.Lost != 0 || sum.OK != items || sum.Interrupted() {
		t.Fatalf("summary %+v", sum)
	}
	if st := <-collected; st.Rows != items || st.OK != items {
		t.Fatalf("collect %+v", st)
	}
	rowsByItem(t, out.String(), items)
	o.check(t, 1, true)
	t.Logf("outage reports %v", o.events)
}

// syncBuilder is a strings.Builder that the test reads while Collect writes.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuilder) lines() int { return strings.Count(s.String(), "\n") }
