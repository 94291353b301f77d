package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// The work list is the stream Key("items") read by the consumer group "workers". Each entry
// holds up to a chunk of items in one field, "items": a JSON array of wireItem.
const workGroup = "workers"

// produceAhead is how many entries the coordinator lets sit undelivered or pending at most:
// enough to keep every host busy, few enough that a 10-million-line input is never all in
// Redis at once.
const produceAhead = 10_000

// produceBatch is how many entries one round trip adds.
const produceBatch = 64

// wireItem is an item as the work list carries it: what [engine.ItemFrom] needs to rebuild it.
type wireItem struct {
	Index   int64  `json:"i"`
	Line    string `json:"l"`
	JSON    bool   `json:"j,omitempty"`
	Invalid string `json:"v,omitempty"`
}

// Produce feeds the job's work list from src, in entries of up to chunk items, and returns
// how many items it added. It stays at most about 10,000 entries ahead of the hosts, so that
// a huge input waits in its file rather than in Redis, and trims the entries all hosts are
// done with. When src ends it records the total (field "total" of Key("meta")): only then
// may the hosts' Sources end. Redis outages are waited out until ctx ends. A job that
// already holds work is refused: Reset it for a new run.
func (j *Job) Produce(ctx context.Context, src engine.Source, chunk int) (total int64, err error) {
	return j.produce(ctx, src, chunk, produceAhead)
}

func (j *Job) produce(ctx context.Context, src engine.Source, chunk int, ahead int64) (int64, error) {
	if chunk < 1 {
		return 0, fmt.Errorf("cluster: chunk %d: must be at least 1", chunk)
	}
	stream := j.Key("items")
	err := retry(ctx, nil, func() error {
		err := j.rdb.XGroupCreateMkStream(ctx, stream, workGroup, "0").Err()
		if redis.HasErrorPrefix(err, "BUSYGROUP") {
			return nil // a host that started first made it
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cluster: creating the work list: %w", err)
	}
	p := producer{j: j, ctx: ctx, ahead: ahead, checkEvery: max(1, ahead/10)}
	items := make([]wireItem, 0, chunk)
	var total int64
	for {
		it, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return total, fmt.Errorf("cluster: reading input: %w", err)
		}
		items = append(items, wireItem{Index: it.Index, Line: it.Line, JSON: it.JSON, Invalid: it.Invalid})
		total++
		if len(items) == chunk {
			if err := p.add(items); err != nil {
				return total, err
			}
			items = items[:0]
		}
	}
	if len(items) > 0 {
		if err := p.add(items); err != nil {
			return total, err
		}
	}
	if err := p.flush(); err != nil {
		return total, err
	}
	err = retry(ctx, nil, func() error { return j.rdb.HSet(ctx, j.Key("meta"), "total", total).Err() })
	if err != nil {
		return total, fmt.Errorf("cluster: marking the work list complete: %w", err)
	}
	return total, nil
}

// producer batches the coordinator's entries into round trips and holds it back when the
// hosts fall behind.
type producer struct {
	j          *Job
	ctx        context.Context
	ahead      int64 // entries allowed undelivered or pending
	checkEvery int64 // entries added between two looks at how far ahead we are
	sinceCheck int64
	seq        int64    // the last entry's number: its ID is 0-seq
	batch      [][]byte // entries not yet sent
}

func (p *producer) add(items []wireItem) error {
	b, err := json.Marshal(items)
	if err != nil {
		return fmt.Errorf("cluster: encoding items: %w", err)
	}
	p.batch = append(p.batch, b)
	if len(p.batch) < produceBatch {
		return nil
	}
	return p.flush()
}

// flush sends the batch. Entries carry explicit IDs (0-1, 0-2, …) so that a batch resent
// after a lost reply does not add its entries twice: Redis refuses an ID it already has. The
// same refusal on a first try means the job was produced before.
func (p *producer) flush() error {
	if len(p.batch) == 0 {
		return nil
	}
	stream := p.j.Key("items")
	first := p.seq + 1
	tries := 0
	err := retry(p.ctx, nil, func() error {
		tries++
		cmds, _ := p.j.rdb.Pipelined(p.ctx, func(pipe redis.Pipeliner) error {
			for i, b := range p.batch {
				pipe.XAdd(p.ctx, &redis.XAddArgs{Stream: stream, ID: "0-" + strconv.FormatInt(first+int64(i), 10), Values: p.j.withGen("items", b)})
			}
			return nil
		})
		for _, c := range cmds {
			err := c.Err()
			if err != nil && tries > 1 && redis.HasErrorPrefix(err, "The ID specified in XADD is equal or smaller") {
				continue // added by the try whose reply was lost
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if redis.HasErrorPrefix(err, "The ID specified in XADD is equal or smaller") {
		return fmt.Errorf("cluster: job %s already holds work: reset it for a new run", p.j.name)
	}
	if err != nil {
		return fmt.Errorf("cluster: adding work: %w", err)
	}
	p.seq += int64(len(p.batch))
	p.sinceCheck += int64(len(p.batch))
	p.batch = p.batch[:0]
	if p.sinceCheck < p.checkEvery {
		return nil
	}
	p.sinceCheck = 0
	return p.wait()
}

// wait returns once at most p.ahead entries are undelivered or pending, trimming the entries
// every host is done with on the way.
func (p *producer) wait() error {
	for {
		var st workState
		err := retry(p.ctx, nil, func() (err error) {
			st, err = p.j.workState(p.ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("cluster: watching the work list: %w", err)
		}
		if st.trimTo != "" {
			// Best effort: a failed trim only keeps done entries a little longer.
			p.j.rdb.XTrimMinID(p.ctx, p.j.Key("items"), st.trimTo)
		}
		if st.pending+st.undelivered <= p.ahead {
			return nil
		}
		if err := sleep(p.ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("cluster: adding work: %w", err)
		}
	}
}

// workState is where the work list stands.
type workState struct {
	produced    bool  // the coordinator added every entry
	pending     int64 // entries delivered to a host and not acknowledged
	undelivered int64 // entries no host has taken yet (at least 1 when the exact count is unknown)
	trimTo      string
}

// workState reads the work list's state in one round trip (two in the rare case where Redis
// cannot tell the group's lag).
func (j *Job) workState(ctx context.Context) (workState, error) {
	stream := j.Key("items")
	var (
		total  *redis.StringCmd
		groups *redis.XInfoGroupsCmd
		pend   *redis.XPendingCmd
	)
	// The pipeline's own error is its first command's: HGET's redis.Nil before the marker.
	_, _ = j.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		total = p.HGet(ctx, j.Key("meta"), "total")
		groups = p.XInfoGroups(ctx, stream)
		pend = p.XPending(ctx, stream, workGroup)
		return nil
	})
	for _, err := range []error{total.Err(), groups.Err(), pend.Err()} {
		if err != nil && !errors.Is(err, redis.Nil) {
			return workState{}, err
		}
	}
	st := workState{produced: total.Err() == nil}
	var g *redis.XInfoGroup
	for i := range groups.Val() {
		if groups.Val()[i].Name == workGroup {
			g = &groups.Val()[i]
		}
	}
	if g == nil {
		return workState{}, errNoWork
	}
	st.pending, st.undelivered = g.Pending, g.Lag
	if g.Lag < 0 {
		// Redis cannot count (entries were deleted): is there any entry after the last delivered?
		after, err := j.rdb.XRangeN(ctx, stream, "("+g.LastDeliveredID, "+", 1).Result()
		if err != nil {
			return workState{}, err
		}
		st.undelivered = int64(len(after))
	}
	// Every entry before the oldest pending one, or up to the last delivered, is done.
	st.trimTo = nextID(g.LastDeliveredID)
	if pend.Val() != nil && pend.Val().Count > 0 {
		st.trimTo = pend.Val().Lower
	}
	return st, nil
}

// nextID returns the stream ID just after id ("5-3" → "5-4"), "" if id does not parse.
func nextID(id string) string {
	ms, seq, ok := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return ""
	}
	return ms + "-" + strconv.FormatUint(n+1, 10)
}

// SourceOptions tune how a host takes work from the job.
type SourceOptions struct {
	// Lease is how long an entry may stay with a host that does not finish it (a host that
	// died or stalled) before other hosts take it over; default 1 min. A live host renews the
	// lease of what it holds every Lease/3, however slowly its items go.
	Lease time.Duration
	// MaxDeliveries is how many hosts may take an entry (default 5); an entry taken over once
	// more becomes failed rows instead.
	MaxDeliveries int
	// Block is how long one read waits for new entries (default 1 s); it also bounds how soon
	// Next sees that the job is complete.
	Block time.Duration
	// Outage, when set, is told when Redis stops answering and when it answers again. Shared
	// with the job's gate and collector, an outage they all see is told once.
	Outage *Outage
	// Slots, when set, says how many items this host can have started at once (its engine's
	// workers, plus items waiting for a retry): the host then holds no more than that plus
	// ReadAhead of its own throughput, so that the work it cannot start soon stays in the list
	// for the hosts that can. Nil: no bound (an entry at a time, for tests and tools).
	Slots func() int
	// ReadAhead is how much work a host holds beyond its free slots, in time at its own pace
	// (default 250 ms): enough that a worker that frees finds its next item at hand (a read is
	// one round trip), little enough that the job's last items are not queued on one host
	// while the others have nothing left: the hosts of a job end together within about it.
	ReadAhead time.Duration
}

// Source is this host's share of the job's work list: an [engine.Source] whose [Source.Sink]
// takes the rows and acknowledges the entries they complete. Next is called by one goroutine
// at a time; the Sink may be used from another.
type Source struct {
	j   *Job
	ctx context.Context
	opt SourceOptions

	renewing sync.Once
	ended    chan struct{} // closed when Next returns io.EOF: nothing is held any more
	eof      bool

	// Next's own.
	queue       []engine.Item // items of taken entries not yet handed out
	perEntry    int           // items in the last entry taken: sizes the next read
	pace        pace          // this host's rows per second, for the read-ahead
	lastReclaim time.Time
	cursor      string // where the next XAUTOCLAIM scan starts
	tail        bool   // all entries were produced and delivered: only take-overs bring work
	idle        bool   // the last look found nothing new: take-overs are looked for every second
	waited      bool   // a read found nothing and the work list said more may come: reads block
	recovering  bool   // a read failed: its reply may have been lost after Redis gave us entries

	mu    sync.Mutex
	held  map[string]*heldEntry // entries taken and not acknowledged, by ID
	owner map[int64]string      // the entry each item of a held entry came from, by index

	// Between Next and the Sink: items handed to the engine without a row yet, and a wake-up
	// for a Next that waits for room.
	handed atomic.Int64
	rows   atomic.Int64 // rows written by the Sink, for the pace
	room   chan struct{}

	abandoned atomic.Pointer[error] // why the job cannot go on (Abandon)
}

// Abandon ends this host's part in a job that cannot go on (its state is gone from Redis):
// Next returns err from now on, and the Sink refuses rows with it rather than write them
// where no collector reads them. The items of those rows have no row in the results file.
func (s *Source) Abandon(err error) {
	s.abandoned.CompareAndSwap(nil, &err)
	select {
	case s.room <- struct{}{}: // a Next waiting for room sees it
	default:
	}
}

// abandonedErr is the error Abandon gave, or nil.
func (s *Source) abandonedErr() error {
	if p := s.abandoned.Load(); p != nil {
		return *p
	}
	return nil
}

// heldEntry is an entry this host took.
type heldEntry struct {
	left   int  // items without a row
	handed int  // items Next handed to the engine
	lost   bool // another host took it over: renewing the lease would take it back
}

// Source returns this host's Source on the job. ctx bounds its life: when ctx ends, Next
// returns an error, the Sink stops waiting for Redis, and the leases of what this host holds
// are no longer renewed, so that the other hosts take it over after Lease. A row the engine
// writes after ctx ended still gets one try, so that ending ctx with the run loses no row
// while Redis answers.
func (j *Job) Source(ctx context.Context, opts SourceOptions) *Source {
	if opts.Lease <= 0 {
		opts.Lease = time.Minute
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 5
	}
	if opts.Block <= 0 {
		opts.Block = time.Second
	}
	if opts.ReadAhead <= 0 {
		opts.ReadAhead = 250 * time.Millisecond
	}
	return &Source{
		j: j, ctx: ctx, opt: opts,
		ended: make(chan struct{}), held: map[string]*heldEntry{}, owner: map[int64]string{},
		room: make(chan struct{}, 1),
	}
}

// wantItems is how many more items this host may hold: its slots plus its read-ahead, less
// what it holds (handed to the engine without a row, or queued). Without Slots, 1.
func (s *Source) wantItems() int {
	if s.opt.Slots == nil {
		return 1
	}
	ahead := int(math.Ceil(s.pace.perSecond(time.Now(), s.rows.Load()) * s.opt.ReadAhead.Seconds()))
	return max(1, s.opt.Slots()) + ahead - int(s.handed.Load()) - len(s.queue)
}

// waitRoom returns once a worker of this host is free for one more item: a row came, or its
// slots grew (it checks every 100 ms as well, for a change of the engine's parallelism). The
// engine gets no more than its slots: the read-ahead stays here, in the queue, where what a
// slowing host cannot start soon can still be given back to the job.
func (s *Source) waitRoom() error {
	for s.opt.Slots != nil && s.handed.Load() >= int64(max(1, s.opt.Slots())+s.handAhead()) {
		if err := s.abandonedErr(); err != nil {
			return err
		}
		if over := -s.wantItems(); over > 0 && len(s.queue) > 0 {
			// This host holds more than its pace can start soon (it slowed or stalled): the
			// entries it has not started are better off with a host that has room.
			s.giveBack(over)
		}
		select {
		case <-s.room:
		case <-time.After(100 * time.Millisecond):
		case <-s.ctx.Done():
			return fmt.Errorf("cluster: taking work: %w", s.ctx.Err())
		}
	}
	return nil
}

// giveBackScript makes entries this host holds ready for another host to take at once: idle
// for a whole lease, as an entry of a dead host is, and with the delivery this host counted
// taken back (an entry given back is not one that killed its host). KEYS[1] work list. ARGV:
// group, host, lease in ms, IDs. It returns the IDs given back (those still this host's).
var giveBackScript = redis.NewScript(`
local back = {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'RETRYCOUNT', math.max(0, p[1][4] - 1), 'JUSTID')
    back[#back + 1] = ARGV[i]
  end
end
return back
`)

// release gives back, at once, entries this host took and will not run because the job it
// knows is gone (they are a new run's): the new run's hosts need not wait a lease for them.
func (s *Source) release(msgs []redis.XMessage, err error) {
	if !errors.Is(err, ErrJobGone) || len(msgs) == 0 {
		return
	}
	args := []any{workGroup, s.j.host, s.opt.Lease.Milliseconds()}
	for _, m := range msgs {
		args = append(args, m.ID)
	}
	// Best effort: an entry not given back returns to the job after the lease.
	_ = giveBackScript.Run(context.WithoutCancel(s.ctx), s.j.rdb, []string{s.j.Key("items")}, args...).Err()
}

// giveBack returns entries of the queue none of whose items was handed out, the last queued
// first, about n items' worth: other hosts take them over at their next look (a host with
// room looks every second once the work list has nothing new). Best effort: an entry not
// given back is run here.
func (s *Source) giveBack(n int) {
	args := []any{workGroup, s.j.host, s.opt.Lease.Milliseconds()}
	s.mu.Lock()
	for i := len(s.queue) - 1; i >= 0 && n > 0; i-- {
		id := s.owner[s.queue[i].Index]
		if e := s.held[id]; e != nil && e.handed == 0 && !e.lost && !slices.Contains(args[3:], any(id)) {
			args = append(args, id)
			n -= e.left
		}
	}
	s.mu.Unlock()
	if len(args) == 3 {
		return
	}
	back, err := giveBackScript.Run(s.ctx, s.j.rdb, []string{s.j.Key("items")}, args...).StringSlice()
	if err != nil || len(back) == 0 {
		return
	}
	s.mu.Lock()
	keep := s.queue[:0]
	for _, it := range s.queue {
		if id := s.owner[it.Index]; slices.Contains(back, id) {
			delete(s.owner, it.Index)
			continue
		}
		keep = append(keep, it)
	}
	for _, id := range back {
		delete(s.held, id)
	}
	s.mu.Unlock()
	clear(s.queue[len(keep):])
	s.queue = keep
}

// handAhead is how many items the engine may hold beyond its slots: 100 ms of this host's
// pace, so that a worker that frees while the Sink is in a round trip to Redis (a row counts
// once the Sink takes it) finds its next item at hand against a target that answers at once.
func (s *Source) handAhead() int {
	return int(math.Ceil(s.pace.perSecond(time.Now(), s.rows.Load()) / 10))
}

// rowsIn counts rows of items this Source handed out: their workers are free again.
func (s *Source) rowsIn(n int) {
	s.handed.Add(-int64(n))
	s.rows.Add(int64(n))
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// pace is a host's rows per second, smoothed over the last seconds; Next alone uses it.
type pace struct {
	at    time.Time
	rows  int64
	rate  float64
	valid bool
}

// perSecond updates the pace with rows, the Sink's count so far, at most every 250 ms.
func (p *pace) perSecond(now time.Time, rows int64) float64 {
	if p.at.IsZero() {
		p.at, p.rows = now, rows
		return 0
	}
	el := now.Sub(p.at)
	if el < 250*time.Millisecond {
		return p.rate
	}
	r := float64(rows-p.rows) / el.Seconds()
	if !p.valid {
		p.rate, p.valid = r, true
	} else {
		w := min(1, el.Seconds()/2) // about a 2 s memory
		p.rate += w * (r - p.rate)
	}
	p.at, p.rows = now, rows
	return p.rate
}

// Next returns this host's next item. It returns io.EOF only once the coordinator has added
// the whole input and every entry was acknowledged by some host: until then an entry that a
// dead host holds may still need taking over. While Redis is unreachable it waits and tries
// again; it returns an error when ctx ends or Redis refuses a command.
func (s *Source) Next() (engine.Item, error) {
	if s.eof {
		return engine.Item{}, io.EOF
	}
	if err := s.abandonedErr(); err != nil {
		return engine.Item{}, err
	}
	s.renewing.Do(func() { go s.renew() })
	if err := s.waitRoom(); err != nil {
		return engine.Item{}, err
	}
	for len(s.queue) == 0 {
		var eof bool
		err := retry(s.ctx, s.opt.Outage, func() (err error) {
			eof, err = s.fill()
			s.recovering = s.recovering || err != nil
			return err
		})
		if err != nil {
			return engine.Item{}, fmt.Errorf("cluster: taking work: %w", err)
		}
		if eof {
			s.eof = true
			close(s.ended)
			return engine.Item{}, io.EOF
		}
	}
	it := s.queue[0]
	s.queue = s.queue[1:]
	s.handed.Add(1)
	s.mu.Lock()
	if e := s.held[s.owner[it.Index]]; e != nil {
		e.handed++
	}
	s.mu.Unlock()
	return it, nil
}

// fill takes entries into the queue: entries idle past the lease first, then new ones. When
// there are none it reports whether the job is complete.
func (s *Source) fill() (eof bool, err error) {
	if s.recovering {
		if err := s.recoverOwn(); err != nil {
			return false, err
		}
		s.recovering = false
	}
	// Entries of dead hosts, and those slow hosts gave back: every half lease, and every second
	// while nothing new comes (the tail of the job, when the last entries are with slow hosts).
	if since := time.Since(s.lastReclaim); since >= s.opt.Lease/2 || s.idle && since >= time.Second {
		if err := s.reclaim(); err != nil {
			return false, err
		}
		s.lastReclaim = time.Now()
		if len(s.queue) > 0 {
			return false, nil
		}
	}
	s.idle = s.tail
	if s.tail {
		// Nothing new can come; poll quicker than Block so that the end is seen soon: the
		// job's last calls end at once on every host, and each host's run ends with it.
		if err := sleep(s.ctx, min(s.opt.Block, tailPoll)); err != nil {
			return false, err
		}
	} else {
		// A read that finds nothing waits for new entries only once the work list said more
		// may come: when the coordinator has added everything, a read that waited Block
		// would hold this host's end back by as much.
		block := time.Duration(-1) // no BLOCK
		if s.waited {
			block = s.opt.Block
		}
		res, err := s.j.rdb.XReadGroup(s.ctx, &redis.XReadGroupArgs{
			Group: workGroup, Consumer: s.j.host, Streams: []string{s.j.Key("items"), ">"},
			Count: s.perRead(), Block: block,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case notYet(err):
			// No work list yet: the coordinator makes it as its feed starts, which may be a
			// moment after its own host's first read. Its first entries are there soon.
			return false, sleep(s.ctx, min(s.opt.Block, tailPoll))
		case err != nil:
			return false, err
		}
		for _, str := range res {
			for i, m := range str.Messages {
				if err := s.take(m); err != nil {
					s.release(str.Messages[i:], err)
					return false, err
				}
			}
		}
		if len(s.queue) > 0 {
			s.waited = false
			return false, nil
		}
		s.idle = s.waited // a whole Block without a new entry
		s.waited = true
	}
	st, err := s.j.workState(s.ctx)
	if notYet(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.tail = st.produced && st.undelivered == 0
	return s.tail && st.pending == 0, nil
}

// perRead is how many entries to take at once: as many as this host has room for (entries
// are taken whole, so it may hold up to an entry's worth more), at least 1 and at most 64.
func (s *Source) perRead() int64 {
	want := max(1, s.wantItems())
	if s.perEntry == 0 {
		return 1
	}
	return int64(min(64, max(1, want/s.perEntry)))
}

// reclaim takes over entries that stayed with a host longer than the lease without being
// acknowledged, and turns those taken over too often into failed rows.
func (s *Source) reclaim() error {
	if s.cursor == "" {
		s.cursor = "0-0"
	}
	stream := s.j.Key("items")
	msgs, next, err := s.j.rdb.XAutoClaim(s.ctx, &redis.XAutoClaimArgs{
		Stream: stream, Group: workGroup, Consumer: s.j.host, MinIdle: s.opt.Lease, Start: s.cursor, Count: s.perRead(),
	}).Result()
	if notYet(err) {
		return nil
	}
	if err != nil {
		return err
	}
	s.cursor = next
	if len(msgs) == 0 {
		return nil
	}
	// The claim counted one more delivery; XAUTOCLAIM does not say how many there were.
	counts := make([]*redis.XPendingExtCmd, len(msgs))
	_, err = s.j.rdb.Pipelined(s.ctx, func(p redis.Pipeliner) error {
		for i, m := range msgs {
			counts[i] = p.XPendingExt(s.ctx, &redis.XPendingExtArgs{Stream: stream, Group: workGroup, Start: m.ID, End: m.ID, Count: 1})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, m := range msgs {
		if s.holds(m.ID) {
			continue // ours already, its items handed out or queued
		}
		var delivered int64
		if p := counts[i].Val(); len(p) == 1 {
			delivered = p[0].RetryCount
		}
		if delivered > int64(s.opt.MaxDeliveries) {
			if err := s.giveUp(m, delivered-1); err != nil {
				return err
			}
			continue
		}
		if err := s.take(m); err != nil {
			s.release(msgs[i:], err)
			return err
		}
	}
	return nil
}

// recoverOwn takes the entries Redis gave this host in a reply that never arrived: without
// it they would wait for the lease to run out.
func (s *Source) recoverOwn() error {
	s.mu.Lock()
	n := int64(len(s.held)) + 128 // one lost reply holds at most 64
	s.mu.Unlock()
	stream := s.j.Key("items")
	pend, err := s.j.rdb.XPendingExt(s.ctx, &redis.XPendingExtArgs{Stream: stream, Group: workGroup, Start: "-", End: "+", Count: n, Consumer: s.j.host}).Result()
	if notYet(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var ranges []*redis.XMessageSliceCmd
	_, err = s.j.rdb.Pipelined(s.ctx, func(p redis.Pipeliner) error {
		for _, e := range pend {
			if !s.holds(e.ID) {
				ranges = append(ranges, p.XRangeN(s.ctx, stream, e.ID, e.ID, 1))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range ranges {
		for _, m := range r.Val() {
			if err := s.take(m); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Source) holds(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[id] != nil
}

// take queues an entry's items and remembers which entry each came from, for the Sink. An
// entry of another generation of the job (it was started anew under this host) is not this
// host's to run: ErrJobGone.
func (s *Source) take(m redis.XMessage) error {
	if !s.j.sameGen(m) {
		return ErrJobGone
	}
	items, err := decodeEntry(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.held[m.ID] = &heldEntry{left: len(items)}
	for _, it := range items {
		s.owner[it.Index] = m.ID
	}
	s.mu.Unlock()
	s.queue = append(s.queue, items...)
	s.perEntry = len(items)
	return nil
}

// giveUp writes failed rows for the items of an entry that hosts took and never finished,
// then acknowledges it: an item that kills its host must not kill every host in turn.
func (s *Source) giveUp(m redis.XMessage, delivered int64) error {
	items, err := decodeEntry(m)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("delivered %d times without a result: the hosts that took it died or stalled", delivered)
	now := time.Now()
	rows := make([]engine.EncodedRow, len(items))
	for i, it := range items {
		rows[i] = engine.EncodedRow{Index: it.Index, Line: engine.AppendRow(nil, &engine.Result{Item: it, At: now, Error: msg})}
	}
	_, err = s.addRowsAck(rows, []string{m.ID})
	return err
}

func decodeEntry(m redis.XMessage) ([]engine.Item, error) {
	raw, _ := m.Values["items"].(string)
	var wire []wireItem
	if err := json.Unmarshal([]byte(raw), &wire); err != nil || len(wire) == 0 {
		// %v, not %w: err is nil for an empty list, which %v prints as <nil>; the cause is text for the operator.
		return nil, fmt.Errorf("cluster: work entry %s does not hold items (%v)", m.ID, err) //nolint:errorlint // see above
	}
	items := make([]engine.Item, len(wire))
	for i, w := range wire {
		items[i] = engine.ItemFrom(w.Index, w.Line, w.JSON, w.Invalid)
	}
	return items, nil
}

// renewScript resets the idle time of the entries this host still owns, leaving alone those
// another host took over meanwhile, and returns the latter. JUSTID keeps the delivery count.
var renewScript = redis.NewScript(`
local lost = {}
if ARGV[3] ~= '' and redis.call('HGET', KEYS[2], 'gen') ~= ARGV[3] then
  return lost -- another run of the job: its entries of the same IDs are not ours
end
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
`)

// renew keeps the leases of the entries this host holds, so that a slow host keeps its work;
// it stops when ctx ends (a host that stops renewing is dead to the others) or at the end.
func (s *Source) renew() {
	t := time.NewTicker(s.opt.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.ended:
			return
		case <-t.C:
		}
		args := []any{workGroup, s.j.host, s.j.gen}
		s.mu.Lock()
		for id, e := range s.held {
			if !e.lost {
				args = append(args, id)
			}
		}
		s.mu.Unlock()
		if len(args) == 3 {
			continue
		}
		// An error (Redis away) is reported by Next or the Sink; the next tick tries again.
		lost, err := renewScript.Run(s.ctx, s.j.rdb, []string{s.j.Key("items"), s.j.Key("meta")}, args...).StringSlice()
		if err != nil {
			continue
		}
		s.mu.Lock()
		for _, id := range lost {
			if e := s.held[id]; e != nil {
				e.lost = true
			}
		}
		s.mu.Unlock()
	}
}

// forget drops entries this host is done with, acknowledged or not.
func (s *Source) forget(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.held, id)
	}
}

// tailPoll is how often a host that holds the last entries of a job (nothing new can come)
// looks whether every entry is done, and how often a host that found no work list yet looks
// again: a look is one round trip.
const tailPoll = 50 * time.Millisecond

// notYet reports whether err says the work list does not exist yet: a host started before
// the coordinator.
func notYet(err error) bool {
	return errors.Is(err, errNoWork) || redis.HasErrorPrefix(err, "NOGROUP") || redis.HasErrorPrefix(err, "no such key")
}

var errNoWork = errors.New("cluster: the work list does not exist yet")

// retry runs op until it succeeds, fails for another reason than Redis being unreachable, or
// ctx ends; it waits between tries, from 100 ms doubling to 3 s, and reports each try to o
// (nil: to nobody).
func retry(ctx context.Context, o *Outage, op func() error) error {
	wait := 50 * time.Millisecond
	for {
		start := time.Now()
		err := op()
		switch {
		case err == nil:
			o.Report(nil, start)
			return nil
		case !transient(err):
			return err
		case ctx.Err() != nil:
			// The Redis failure is told as text, not wrapped: callers match ErrRedis and the
			// reason the wait ended, never the client's own error types.
			return fmt.Errorf("%w: %w (%v)", ErrRedis, ctx.Err(), err) //nolint:errorlint // see above
		}
		o.Report(err, start)
		wait = min(2*wait, 3*time.Second)
		// Jitter, so that hosts that lost Redis together do not all come back in one instant.
		if serr := sleep(ctx, wait/2+rand.N(wait/2)); serr != nil {
			return fmt.Errorf("%w: %w (%v)", ErrRedis, serr, err) //nolint:errorlint // as above: the cause is text
		}
	}
}

// transient reports whether err says Redis could not be reached or cannot serve for now, as
// opposed to a refusal that trying again would repeat.
func transient(err error) bool {
	if err == nil || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		for _, p := range []string{"LOADING ", "BUSY ", "TRYAGAIN ", "MASTERDOWN ", "READONLY ", "CLUSTERDOWN ", "OOM ", "NOREPLICAS ", "ERR max number of clients"} {
			if strings.HasPrefix(re.Error(), p) {
				return true
			}
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
