package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// queueRedisURL returns the Redis the tests run against. Without one the test is skipped,
// except under CI, where skipping would hide that nothing ran.
func queueRedisURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("THROTTLE_TEST_REDIS")
	if url == "" {
		msg := "THROTTLE_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0): this test needs a real Redis"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + ", and CI must run it")
		}
		t.Skip(msg)
	}
	return url
}

// queueJob connects the coordinator of a job whose name no other test uses, reset before and
// after the test.
func queueJob(t *testing.T) *Job {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	name = fmt.Sprintf("%.40s-%d-%d", name, os.Getpid(), rand.IntN(1e6))
	j := queueConnect(t, queueRedisURL(t), name, "coordinator")
	if err := j.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := j.Reset(context.Background()); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	return j
}

// queueHost connects another host to j's job.
func queueHost(t *testing.T, j *Job, host string) *Job {
	t.Helper()
	return queueConnect(t, queueRedisURL(t), j.Name(), host)
}

func queueConnect(t *testing.T, url, name, host string) *Job {
	t.Helper()
	j, err := Connect(context.Background(), url, name, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// numbered is an input of n items "item-0" … "item-(n-1)".
func numbered(n int) engine.Source {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "item-%d\n", i)
	}
	return engine.NewLineReader(strings.NewReader(b.String()), false)
}

// hostAdapter answers ok at once, naming the host in the output.
func hostAdapter(host string, delay time.Duration) engine.Adapter {
	out := json.RawMessage(fmt.Sprintf(`{"host":%q}`, host))
	return engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) {
		if delay > 0 {
			time.Sleep(delay)
		}
		return engine.Outcome{Verdict: engine.OK, Status: 200, Output: out}, nil
	})
}

// runHost runs an engine on j's share of the job; wait returns its summary.
func runHost(t *testing.T, ctx context.Context, j *Job, opts SourceOptions, delay time.Duration) (wait func() engine.Summary) {
	t.Helper()
	src := j.Source(ctx, opts)
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 8, Burst: 1}, Adapter: hostAdapter(j.Host(), delay),
		Source: src, Total: -1, Results: src.Sink(),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan engine.Summary, 1)
	go func() {
		sum, err := e.Run(ctx)
		if err != nil {
			t.Errorf("%s: run: %v", j.Host(), err)
		}
		done <- sum
	}()
	return func() engine.Summary { return <-done }
}

// resultRow is what the tests read back from a row.
type resultRow struct {
	Item   any  `json:"item"`
	OK     bool `json:"ok"`
	Error  string
	Output struct{ Host string }
}

// rowsByItem parses the collected rows, failing the test unless each of the n numbered items
// has exactly one.
func rowsByItem(t *testing.T, out string, n int) map[string]resultRow {
	t.Helper()
	rows := map[string]resultRow{}
	for line := range strings.Lines(out) {
		var r resultRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("row %q: %v", line, err)
		}
		item := fmt.Sprint(r.Item)
		if _, dup := rows[item]; dup {
			t.Fatalf("two rows for %s", item)
		}
		rows[item] = r
	}
	for i := range n {
		if _, ok := rows[fmt.Sprintf("item-%d", i)]; !ok {
			t.Fatalf("no row for item-%d (%d rows)", i, len(rows))
		}
	}
	if len(rows) != n {
		t.Fatalf("%d rows for %d items", len(rows), n)
	}
	return rows
}

// pendingCount is how many work entries are delivered and not acknowledged.
func pendingCount(t *testing.T, j *Job) int64 {
	t.Helper()
	p, err := j.Client().XPending(context.Background(), j.Key("items"), workGroup).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func TestThreeHostsShareAJob(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	// The hosts and the collector start before the coordinator has added anything.
	var waits []func() engine.Summary
	for _, h := range []string{"a", "b", "c"} {
		waits = append(waits, runHost(t, ctx, queueHost(t, c, h), SourceOptions{Block: 200 * time.Millisecond}, 0))
	}
	var out strings.Builder
	collected := make(chan CollectStats, 1)
	go func() {
		st, err := c.Collect(ctx, &out, -1, CollectOptions{Block: 200 * time.Millisecond})
		if err != nil {
			t.Errorf("collect: %v", err)
		}
		collected <- st
	}()
	total, err := c.Produce(ctx, numbered(10_000), 100)
	if err != nil || total != 10_000 {
		t.Fatalf("produce: %d items, %v", total, err)
	}
	var ok int64
	for _, wait := range waits {
		sum := wait()
		if sum.Lost != 0 || sum.Failed != 0 || sum.Interrupted() {
			t.Fatalf("summary %+v", sum)
		}
		ok += sum.OK
	}
	st := <-collected
	if st != (CollectStats{Rows: 10_000, OK: 10_000}) {
		t.Fatalf("collect %+v", st)
	}
	if ok != 10_000 {
		t.Fatalf("the hosts wrote %d ok rows for 10000 items", ok)
	}
	rows := rowsByItem(t, out.String(), 10_000)
	perHost := map[string]int{}
	for _, r := range rows {
		perHost[r.Output.Host]++
	}
	if n := pendingCount(t, c); n != 0 {
		t.Fatalf("%d entries still pending after the end", n)
	}
	t.Logf("10000 items on 3 hosts in %v, rows per host %v", time.Since(start).Round(time.Millisecond), perHost)
}

func TestDeadHostsEntriesAreTakenOver(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.Produce(ctx, numbered(2000), 100); err != nil {
		t.Fatal(err)
	}
	opts := SourceOptions{Lease: 300 * time.Millisecond, Block: 200 * time.Millisecond}

	// The dead host takes 250 items, writes rows for the first 150, and dies: entry 0 is done,
	// entry 1 half done, and what else it took is pending with nobody working on it.
	deadCtx, die := context.WithCancel(ctx)
	dead := queueHost(t, c, "dead").Source(deadCtx, opts)
	var rows []engine.EncodedRow
	for range 250 {
		it, err := dead.Next()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) < 150 {
			r := &engine.Result{Item: it, OK: true, Output: json.RawMessage(`{"host":"dead"}`)}
			rows = append(rows, engine.EncodedRow{Index: it.Index, Line: engine.AppendRow(nil, r), OK: true})
		}
	}
	if n, err := dead.Sink().WriteRows(rows); n != 150 || err != nil {
		t.Fatalf("WriteRows: %d, %v", n, err)
	}
	died := time.Now()
	die()
	if held := pendingCount(t, c); held < 2 {
		t.Fatalf("the dead host holds %d entries; want at least entries 1 and 2", held)
	}

	a := runHost(t, ctx, queueHost(t, c, "a"), opts, 0)
	b := runHost(t, ctx, queueHost(t, c, "b"), opts, 0)
	sa, sb := a(), b()
	if sa.Lost+sb.Lost != 0 || sa.OK+sb.OK < 2000-150 {
		t.Fatalf("summaries %+v %+v", sa, sb)
	}
	if since := time.Since(died); since < opts.Lease {
		t.Fatalf("the hosts ended %v after the death, before the lease ran out", since)
	}

	var out strings.Builder
	st, err := c.Collect(ctx, &out, 2000, CollectOptions{KeepRows: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Client().XLen(ctx, c.Key("results")).Val(); n < st.Rows+st.Duplicates {
		t.Fatalf("%d rows kept in redis; want %d", n, st.Rows+st.Duplicates)
	}
	// Items 100 to 149 were done twice: by the dead host, and by the host that took entry 1
	// over. The first row is kept.
	if st.Rows != 2000 || st.OK != 2000 || st.Duplicates < 50 {
		t.Fatalf("collect %+v: want 2000 rows and at least 50 duplicates", st)
	}
	got := rowsByItem(t, out.String(), 2000)
	for i := range 250 {
		host := got[fmt.Sprintf("item-%d", i)].Output.Host
		if (i < 150) != (host == "dead") {
			t.Fatalf("item-%d done by %q", i, host)
		}
	}
}

func TestSlowHostKeepsItsLease(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Produce(ctx, numbered(5), 5); err != nil {
		t.Fatal(err)
	}
	opts := SourceOptions{Lease: 200 * time.Millisecond, Block: 100 * time.Millisecond}
	slow := queueHost(t, c, "slow").Source(ctx, opts)
	var rows []engine.EncodedRow
	for range 5 {
		it, err := slow.Next()
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, engine.EncodedRow{Index: it.Index, Line: engine.AppendRow(nil, &engine.Result{Item: it, OK: true}), OK: true})
	}
	// Another host waits through five leases without taking the entry over: the slow host
	// is alive, and renews it.
	other := make(chan error, 1)
	go func() {
		it, err := queueHost(t, c, "other").Source(ctx, opts).Next()
		if err == nil {
			err = fmt.Errorf("took %q", it.Line)
		}
		other <- err
	}()
	time.Sleep(5 * opts.Lease)
	if _, err := slow.Sink().WriteRows(rows); err != nil {
		t.Fatal(err)
	}
	if err := <-other; !errors.Is(err, io.EOF) {
		t.Fatalf("the other host: %v; want io.EOF", err)
	}
	var out strings.Builder
	if st, err := c.Collect(ctx, &out, 5, CollectOptions{}); err != nil || st != (CollectStats{Rows: 5, OK: 5}) {
		t.Fatalf("collect %+v, %v", st, err)
	}
}

func TestEntryDeliveredTooOftenBecomesFailedRows(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Produce(ctx, numbered(10), 10); err != nil {
		t.Fatal(err)
	}
	opts := SourceOptions{Lease: 200 * time.Millisecond, MaxDeliveries: 2, Block: 100 * time.Millisecond}
	// Two hosts in turn take the entry and die with it.
	for _, h := range []string{"first", "second"} {
		hctx, die := context.WithCancel(ctx)
		it, err := queueHost(t, c, h).Source(hctx, opts).Next()
		die()
		if err != nil || it.Line != "item-0" {
			t.Fatalf("%s: %+v, %v", h, it, err)
		}
	}
	// The third sees it delivered twice already: it writes failed rows instead of taking it.
	third := queueHost(t, c, "third").Source(ctx, opts)
	if it, err := third.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("third host: %+v, %v; want io.EOF", it, err)
	}
	var out strings.Builder
	st, err := c.Collect(ctx, &out, 10, CollectOptions{})
	if err != nil || st != (CollectStats{Rows: 10, Failed: 10}) {
		t.Fatalf("collect %+v, %v", st, err)
	}
	for _, r := range rowsByItem(t, out.String(), 10) {
		if r.OK || r.Error != "delivered 2 times without a result: the hosts that took it died or stalled" {
			t.Fatalf("row %+v", r)
		}
	}
	if n := pendingCount(t, c); n != 0 {
		t.Fatalf("%d entries pending", n)
	}
}

func TestNextEndsOnlyWhenEveryEntryIsAcknowledged(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := SourceOptions{Block: 100 * time.Millisecond}
	src := queueHost(t, c, "a").Source(ctx, opts)
	other := queueHost(t, c, "b").Source(ctx, opts)

	type next struct {
		it  engine.Item
		err error
	}
	nextOf := func(s *Source) chan next {
		ch := make(chan next, 1)
		go func() { it, err := s.Next(); ch <- next{it, err} }()
		return ch
	}
	// Before the coordinator adds anything, a host waits.
	first := nextOf(src)
	select {
	case n := <-first:
		t.Fatalf("Next before any work: %+v, %v", n.it, n.err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := c.Produce(ctx, numbered(5), 5); err != nil {
		t.Fatal(err)
	}
	items := []engine.Item{(<-first).it}
	for range 4 {
		it, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	// Both hosts wait while the one entry is pending, even with 4 of its 5 rows written.
	ends := []chan next{nextOf(src), nextOf(other)}
	row := func(it engine.Item) engine.EncodedRow {
		return engine.EncodedRow{Index: it.Index, Line: engine.AppendRow(nil, &engine.Result{Item: it, OK: true}), OK: true}
	}
	var rows []engine.EncodedRow
	for _, it := range items[:4] {
		rows = append(rows, row(it))
	}
	if _, err := src.Sink().WriteRows(rows); err != nil {
		t.Fatal(err)
	}
	for _, ch := range ends {
		select {
		case n := <-ch:
			t.Fatalf("Next with an entry pending: %+v, %v", n.it, n.err)
		case <-time.After(400 * time.Millisecond):
		}
	}
	if n := pendingCount(t, c); n != 1 {
		t.Fatalf("%d entries pending after 4 of 5 rows; want 1", n)
	}
	if _, err := src.Sink().WriteRows([]engine.EncodedRow{row(items[4])}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range ends {
		select {
		case n := <-ch:
			if !errors.Is(n.err, io.EOF) {
				t.Fatalf("Next after the last row: %+v, %v", n.it, n.err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Next did not end after every entry was acknowledged")
		}
	}
	if _, err := src.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after io.EOF: %v", err)
	}
}

func TestProduceStaysAheadOnlySoFar(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const ahead, items = 50, 600
	produced := make(chan error, 1)
	go func() {
		n, err := c.produce(ctx, numbered(items), 1, ahead)
		if err == nil && n != items {
			err = fmt.Errorf("%d items", n)
		}
		produced <- err
	}()
	// With no host taking work, the coordinator stops about `ahead` entries in.
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-produced:
		t.Fatalf("Produce returned with no host working: %v", err)
	default:
	}
	length := func() int64 { return c.Client().XLen(ctx, c.Key("items")).Val() }
	if n := length(); n < ahead || n > ahead+produceBatch {
		t.Fatalf("%d entries in the work list; want %d to %d", n, ahead, ahead+produceBatch)
	}
	// A host works; the coordinator feeds it and trims what is done, so the list stays short.
	wait := runHost(t, ctx, queueHost(t, c, "a"), SourceOptions{Block: 100 * time.Millisecond}, 0)
	longest := int64(0)
	for done := false; !done; {
		select {
		case err := <-produced:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		case <-time.After(5 * time.Millisecond):
			longest = max(longest, length())
		}
	}
	if sum := wait(); sum.OK != items {
		t.Fatalf("summary %+v", sum)
	}
	if longest > 2*ahead+produceBatch {
		t.Fatalf("the work list grew to %d entries; want at most about %d", longest, ahead+produceBatch)
	}
	if _, err := c.produce(ctx, numbered(3), 1, ahead); err == nil || !strings.Contains(err.Error(), "already holds work") {
		t.Fatalf("a second Produce on the job: %v", err)
	}
}

func TestJSONLItemsRoundTrip(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	input := "{\"id\": 7, \"name\": \"a \\\"b\\\" <c>\", \"tags\": [1, 2.5, null], \"deep\": {\"ok\": false}}\n" +
		"[1, 2]\n" +
		"\n" +
		"{\"id\": \"é\\u2028\"}\n"
	want := readAll(t, engine.NewLineReader(strings.NewReader(input), true))
	if _, err := c.Produce(ctx, engine.NewLineReader(strings.NewReader(input), true), 2); err != nil {
		t.Fatal(err)
	}
	src := queueHost(t, c, "a").Source(ctx, SourceOptions{Block: 100 * time.Millisecond})
	got := readAll(t, src)
	if len(got) != 3 || len(got) != len(want) {
		t.Fatalf("%d items, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := fmt.Sprintf("%#v", want[i]), fmt.Sprintf("%#v", got[i])
		if w != g {
			t.Fatalf("item %d:\n got %s\nwant %s", i, g, w)
		}
	}
	if got[0].Fields["id"] != json.Number("7") || got[1].Invalid == "" || got[0].Invalid != "" {
		t.Fatalf("items %+v", got)
	}
}

// readAll takes a Source's items to its end. A cluster Source ends only once its rows are in,
// so each item's row is written as it comes.
func readAll(t *testing.T, src engine.Source) []engine.Item {
	t.Helper()
	var items []engine.Item
	for {
		it, err := src.Next()
		if errors.Is(err, io.EOF) {
			return items
		}
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
		if s, ok := src.(*Source); ok {
			r := engine.EncodedRow{Index: it.Index, Line: engine.AppendRow(nil, &engine.Result{Item: it, OK: true}), OK: true}
			if _, err := s.Sink().WriteRows([]engine.EncodedRow{r}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), true},
		{redis.ErrPoolTimeout, true},
		{redisError("LOADING Redis is loading the dataset in memory"), true},
		{redisError("OOM command not allowed when used memory > 'maxmemory'"), true},
		{redisError("BUSYGROUP Consumer Group name already exists"), false},
		{redisError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{redis.ErrClosed, false},
		{errors.New("cluster: work entry 0-1 does not hold items"), false},
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// redisError is an error as Redis replies it.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

// TestSourceHoldsOnlyWhatItCanStart: a host whose workers are all busy takes no more work than
// its slots (the read-ahead is 0 before its first row), so that a host joining later finds
// the rest; each row it writes lets it take one more item.
func TestSourceHoldsOnlyWhatItCanStart(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Produce(ctx, numbered(40), 2); err != nil {
		t.Fatal(err)
	}
	busy := queueHost(t, c, "busy").Source(ctx, SourceOptions{Slots: func() int { return 4 }})
	var got []engine.Item
	for range 4 {
		it, err := busy.Next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, it)
	}
	// A fifth item would exceed the slots: Next waits, and the busy host holds 2 entries.
	next := make(chan engine.Item, 1)
	go func() {
		it, err := busy.Next()
		if err != nil {
			t.Error(err)
		}
		next <- it
	}()
	pend, err := c.Client().XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.Key("items"), Group: workGroup, Start: "-", End: "+", Count: 100, Consumer: "busy"}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 2 {
		t.Errorf("the busy host holds %d entries of 2 items, want 2 (its 4 slots)", len(pend))
	}
	// A host that joins now gets the items the busy one did not take.
	late := queueHost(t, c, "late").Source(ctx, SourceOptions{Slots: func() int { return 4 }})
	it, err := late.Next()
	if err != nil {
		t.Fatal(err)
	}
	if it.Index != 4 {
		t.Errorf("the late host's first item is %d, want 4 (the first the busy host left)", it.Index)
	}
	select {
	case it := <-next:
		t.Fatalf("the busy host took item %d with every slot busy", it.Index)
	case <-time.After(300 * time.Millisecond):
	}
	// One row frees one slot.
	if _, err := busy.Sink().WriteRows([]engine.EncodedRow{{Index: got[0].Index, Line: []byte(`{"ok":true}` + "\n"), OK: true}}); err != nil {
		t.Fatal(err)
	}
	select {
	case it := <-next:
		if it.Index != 6 { // 4 and 5 are the late host's entry
			t.Errorf("after a row the busy host got item %d, want 6", it.Index)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a row freed a slot, and the busy host still took nothing in 5 s")
	}
}

// TestPaceReadAhead: a host's read-ahead follows its own rows per second.
func TestPaceReadAhead(t *testing.T) {
	var p pace
	t0 := time.Unix(0, 0)
	if r := p.perSecond(t0, 0); r != 0 {
		t.Fatalf("first look: %v rows/s, want 0", r)
	}
	if r := p.perSecond(t0.Add(time.Second), 100); r != 100 {
		t.Fatalf("100 rows in 1 s: %v rows/s", r)
	}
	if r := p.perSecond(t0.Add(1100*time.Millisecond), 150); r != 100 {
		t.Fatalf("a look within 250 ms changed the pace: %v", r)
	}
	// A host that stalls: its pace falls towards 0, and so does its read-ahead.
	if r := p.perSecond(t0.Add(3*time.Second), 100); r > 10 {
		t.Fatalf("after 4 s without a row the pace is still %v rows/s", r)
	}
}

// TestGenerationTellsAJobGone: a host that joined a job's generation is told when Redis
// answers without it (the job's keys are gone), and not while they are there.
func TestGenerationTellsAJobGone(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Define(ctx, []string{"http"}); err != nil {
		t.Fatal(err)
	}
	h := queueHost(t, c, "h")
	if _, err := h.Generation(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.CheckGeneration(ctx); err != nil {
		t.Fatalf("the job is there: %v", err)
	}
	gone := make(chan struct{})
	go h.WatchGeneration(ctx, 50*time.Millisecond, func(error) { close(gone) })
	select {
	case <-gone:
		t.Fatal("gone while the job's keys are there")
	case <-time.After(200 * time.Millisecond):
	}
	if err := c.Reset(ctx); err != nil { // what a Redis restarted empty looks like
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the job's keys are gone and the watcher did not say so in 5 s")
	}
	if err := h.CheckGeneration(ctx); !errors.Is(err, ErrJobGone) || errors.Is(err, ErrJobRestarted) {
		t.Errorf("check after the reset: %v, want ErrJobGone (no new run)", err)
	}
	// A job defined again under the same name is another generation.
	if err := c.Define(ctx, []string{"http"}); err != nil {
		t.Fatal(err)
	}
	if err := h.CheckGeneration(ctx); !errors.Is(err, ErrJobGone) || !errors.Is(err, ErrJobRestarted) {
		t.Errorf("check against a new definition: %v, want ErrJobRestarted (an ErrJobGone)", err)
	}
}

// TestSlowHostGivesBackWhatItCannotStart: a host that stalls holds its read-ahead in its
// queue, not in its engine; once its pace says it cannot start those items soon, it gives
// their entries back, and a host with room takes them at its first look, without a lease's
// wait and without the give-back counting as a failed delivery.
func TestSlowHostGivesBackWhatItCannotStart(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Produce(ctx, numbered(400), 2); err != nil {
		t.Fatal(err)
	}
	opts := SourceOptions{Slots: func() int { return 2 }, ReadAhead: time.Second, Lease: 30 * time.Second}
	slow := queueHost(t, c, "slow").Source(ctx, opts)
	// What the slow host holds: its entries that are not idle for a lease (those given back
	// stay listed under it until another host claims them, idle as a dead host's).
	pending := func() int {
		p, err := c.Client().XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.Key("items"), Group: workGroup, Start: "-", End: "+", Count: 1000, Consumer: "slow"}).Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range p {
			if e.Idle < opts.Lease {
				n++
			}
		}
		return n
	}
	// Up to 100 rows a second until its read-ahead (a second of its pace) holds 20 entries.
	for end := time.Now().Add(5 * time.Second); pending() < 20; {
		if time.Now().After(end) {
			t.Fatalf("the slow host holds %d entries after 5 s at up to 100 rows/s; want its read-ahead, 20 or more", pending())
		}
		it, err := slow.Next()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if _, err := slow.Sink().WriteRows([]engine.EncodedRow{{Index: it.Index, Line: []byte(`{"ok":true}` + "\n"), OK: true}}); err != nil {
			t.Fatal(err)
		}
	}
	// Then it stalls with both slots busy.
	var stuck []int64
	for range 2 {
		it, err := slow.Next()
		if err != nil {
			t.Fatal(err)
		}
		stuck = append(stuck, it.Index)
	}
	held := pending()
	// Its engine takes its slots and 100 ms of its pace, then waits for a free slot; meanwhile
	// its pace falls, and it gives back what it cannot start.
	go func() {
		for {
			if _, err := slow.Next(); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for pending() > held/4 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := pending(); n > held/4 {
		t.Fatalf("the stalled host still holds %d entries (had %d) 10 s on; want only those of the items its engine took", n, held)
	}
	// A host with room takes a given-back entry at its first look.
	other := queueHost(t, c, "other").Source(ctx, SourceOptions{Lease: 30 * time.Second})
	start := time.Now()
	it, err := other.Next()
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second || slices.Contains(stuck, it.Index) {
		t.Fatalf("the other host got item %d after %v; want one the slow host gave back, at once", it.Index, took)
	}
	p, err := c.Client().XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.Key("items"), Group: workGroup, Start: "-", End: "+", Count: 1000, Consumer: "other"}).Result()
	if err != nil || len(p) != 1 || p[0].RetryCount != 1 {
		t.Fatalf("the other host's entry: %+v (%v); want one, delivered once (a give-back is no failed delivery)", p, err)
	}
}

// TestOlderGenerationIsKeptOut: a host of the job's previous run (started anew under it with
// --reset) neither takes the new run's work nor has its rows collected as the new run's.
func TestOlderGenerationIsKeptOut(t *testing.T) {
	c := queueJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Define(ctx, []string{"http"}); err != nil {
		t.Fatal(err)
	}
	old := queueHost(t, c, "old")
	if _, err := old.Generation(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Define(ctx, []string{"http"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Produce(ctx, numbered(4), 2); err != nil {
		t.Fatal(err)
	}
	oldSrc := old.Source(ctx, SourceOptions{})
	if _, err := oldSrc.Next(); !errors.Is(err, ErrJobGone) {
		t.Fatalf("the old host took the new run's work: %v, want ErrJobGone", err)
	}
	// Its row of item 0 (from the old run) lands in the results stream first.
	if _, err := oldSrc.Sink().WriteRows([]engine.EncodedRow{{Index: 0, Line: []byte(`{"from":"old"}` + "\n"), OK: true}}); err != nil {
		t.Fatal(err)
	}
	h := queueHost(t, c, "new")
	if _, err := h.Generation(ctx); err != nil {
		t.Fatal(err)
	}
	src := h.Source(ctx, SourceOptions{})
	for range 4 {
		it, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Sink().WriteRows([]engine.EncodedRow{{Index: it.Index, Line: []byte(`{"from":"new"}` + "\n"), OK: true}}); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	st, err := c.Collect(ctx, &out, -1, CollectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 4 || st.Duplicates != 0 || strings.Contains(out.String(), "old") {
		t.Errorf("collected %+v:\n%s\nwant the new run's 4 rows only", st, out.String())
	}
}

// TestSourceBeforeTheWorkList: a host whose first read comes before the coordinator made the
// work list (the coordinator's own host starts beside its feed) takes the first entries
// within a short poll of their coming, not a whole Block later.
func TestSourceBeforeTheWorkList(t *testing.T) {
	t.Parallel()
	j := queueJob(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := j.Source(ctx, SourceOptions{Block: 2 * time.Second})
	first := make(chan time.Time, 1)
	go func() {
		if _, err := src.Next(); err != nil {
			t.Error(err)
		}
		first <- time.Now()
	}()
	time.Sleep(100 * time.Millisecond) // the host has read, and found no work list
	fed := time.Now()
	if _, err := j.Produce(ctx, numbered(3), 1); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-first:
		if d := at.Sub(fed); d > 500*time.Millisecond {
			t.Fatalf("the first entry taken %v after the feed began: want within a short poll, not Block (2 s)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no entry taken 5 s after the feed")
	}
}
