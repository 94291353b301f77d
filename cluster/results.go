package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// The results stream is Key("results"): one entry per row, with fields "index" (the item's),
// "row" (the JSON line, newline included) and "ok" ("1" or "0", so that the collector counts
// without parsing rows whose item may itself hold an "ok").

// Sink is the engine's results writer on a host of a shared job (Config.Results): it adds each
// row to the job's results stream and acknowledges the work entries whose items all have rows.
// It implements [engine.RowWriter]; Write is refused.
type Sink struct{ s *Source }

// Sink returns the Sink that acknowledges this Source's entries.
func (s *Source) Sink() *Sink { return &Sink{s} }

// Write refuses: rows need their item's index, which only WriteRows carries.
func (k *Sink) Write([]byte) (int, error) {
	return 0, errors.New("cluster: the results sink takes rows through WriteRows")
}

// WriteRows adds the rows to the results stream and acknowledges each entry of this host
// whose last row this was, in one round trip: the rows go in before the acknowledgements, in
// one script, so that no entry is acknowledged without its rows. A row for an item this host
// does not hold (an entry another host took over) is added all the same: the collector keeps
// the first row of each item. While Redis is unreachable it waits, so that the run pauses
// rather than count rows as lost; it returns an error only when the Source's ctx ended first,
// or when Redis refuses a command.
func (k *Sink) WriteRows(rows []engine.EncodedRow) (int, error) {
	k.s.rowsIn(len(rows)) // their workers are free: Next may take more work
	if err := k.s.abandonedErr(); err != nil {
		return 0, fmt.Errorf("cluster: writing results: %w", err)
	}
	done := k.s.completes(rows)
	n, err := k.s.addRowsAck(rows, done)
	if n < len(rows) {
		return n, fmt.Errorf("cluster: writing results: %w", err)
	}
	k.s.finished(rows)
	k.s.forget(done) // held until acknowledged, so that a recovering Next does not take them again
	if err != nil && !errors.Is(err, ErrRedis) {
		// The rows are in; a refused XACK is a bug worth stopping for. An ack that ctx cut
		// short only means other hosts redo those entries after the lease.
		return n, fmt.Errorf("cluster: acknowledging work: %w", err)
	}
	return n, nil
}

// rowsAckScript adds rows to the results stream, then acknowledges work entries if the job
// is still of the generation given. A row Redis refuses stops it before the acknowledgements.
// KEYS: results, work list, meta. ARGV: group, generation ("": any), the number of rows, then
// per row its index, line and ok, then the IDs to acknowledge. It answers {rows added, entries
// acknowledged (-1: another generation), the error that stopped it or ""}.
var rowsAckScript = redis.NewScript(`
local group, gen, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
for r = 0, n - 1 do
  local a = 4 + r * 3
  local res
  if gen == '' then
    res = redis.pcall('XADD', KEYS[1], '*', 'index', ARGV[a], 'row', ARGV[a + 1], 'ok', ARGV[a + 2])
  else
    res = redis.pcall('XADD', KEYS[1], '*', 'index', ARGV[a], 'row', ARGV[a + 1], 'ok', ARGV[a + 2], 'gen', gen)
  end
  if type(res) == 'table' and res.err then return {r, 0, res.err} end
end
local first = 4 + n * 3
if first > #ARGV then return {n, 0, ''} end
if gen ~= '' and redis.call('HGET', KEYS[3], 'gen') ~= gen then return {n, -1, ''} end
return {n, redis.call('XACK', KEYS[2], group, unpack(ARGV, first)), ''}
`)

// scriptError is an error a script caught from a command and returned, as Redis would have
// answered it: transient says whether it is worth trying again (OOM, LOADING, …).
type scriptError string

func (e scriptError) Error() string { return string(e) }
func (e scriptError) RedisError()   {}

// addRowsAck adds rows to the results stream, then acknowledges the entries ids, in one round
// trip a try, and returns how many rows, from the first, are in. A try that failed halfway
// resends only the rows not in, and the acknowledgements. The commands themselves do not end
// with ctx, so that the rows of calls that ended as the run stopped get their try; a wait for
// Redis does. ErrJobGone when the job is of another generation now: the rows are in (the
// collector skips them), nothing is acknowledged.
func (s *Source) addRowsAck(rows []engine.EncodedRow, ids []string) (int, error) {
	keys, ctx := []string{s.j.Key("results"), s.j.Key("items"), s.j.Key("meta")}, context.WithoutCancel(s.ctx)
	written, acked := 0, int64(0)
	err := retry(s.ctx, s.opt.Outage, func() error {
		rest := rows[written:]
		args := make([]any, 0, 3+3*len(rest)+len(ids))
		args = append(args, workGroup, s.j.gen, len(rest))
		for _, r := range rest {
			ok := "0"
			if r.OK {
				ok = "1"
			}
			args = append(args, r.Index, r.Line, ok)
		}
		for _, id := range ids {
			args = append(args, id)
		}
		res, err := rowsAckScript.Run(ctx, s.j.rdb, keys, args...).Slice()
		if err != nil {
			return err
		}
		if len(res) != 3 {
			return fmt.Errorf("cluster: unexpected answer %v writing results", res)
		}
		n, _ := res[0].(int64)
		written += int(n)
		acked, _ = res[1].(int64)
		if msg, _ := res[2].(string); msg != "" {
			return scriptError(msg)
		}
		return nil
	})
	if err == nil && acked < 0 {
		return written, ErrJobGone
	}
	return written, err
}

// completes returns the entries whose last rows these are, without counting the rows off:
// [Source.finished] does, once the rows are in.
func (s *Source) completes(rows []engine.EncodedRow) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var done []string
	var seen map[string]int
	for _, r := range rows {
		id, ok := s.owner[r.Index]
		if !ok {
			continue
		}
		e := s.held[id]
		if e == nil {
			continue
		}
		if seen == nil {
			seen = map[string]int{}
		}
		if seen[id]++; e.left == seen[id] {
			done = append(done, id)
		}
	}
	return done
}

// finished counts the rows, now in the results, against the entries their items came from.
func (s *Source) finished(rows []engine.EncodedRow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		id, ok := s.owner[r.Index]
		if !ok {
			continue
		}
		delete(s.owner, r.Index)
		if e := s.held[id]; e != nil {
			e.left--
		}
	}
}

// CollectOptions tune the coordinator's collector.
type CollectOptions struct {
	// Block is how long one read waits for new rows (default 1 s).
	Block time.Duration
	// KeepRows keeps the rows in Redis once written to w. By default each batch is deleted
	// (XTRIM MINID) as soon as w took it, so that Redis's memory stays bounded however long
	// the job: a row is then only in w.
	KeepRows bool
	// Outage, when set, is told when Redis stops answering and when it answers again. Shared
	// with the job's gate and Sources, an outage they all see is told once.
	Outage *Outage
	// OnRows, when set, is called with the counts so far after each batch is written to w, and
	// with the job's total (-1 while unknown): the job's progress. It must not block.
	OnRows func(st CollectStats, total int64)
	// AnyIndex accepts rows whose item index is total or more: a resumed job runs only the
	// items without an ok row, and they keep their places in the input.
	AnyIndex bool
}

// CollectStats counts what Collect wrote.
type CollectStats struct {
	Rows       int64 // rows written: one per item
	OK         int64
	Failed     int64
	Duplicates int64 // later rows for an item that already had one (two hosts did it), not written
}

// Collect writes the job's rows to w (the results file) as they arrive, the first row of each
// item only, one Write per batch read, and returns once every item has its row or ctx ends. total is the job's number
// of items, or -1 when unknown: it is then read from the coordinator's mark when the input
// ends. Redis outages are waited out; an error writing w is returned at once.
func (j *Job) Collect(ctx context.Context, w io.Writer, total int64, opts CollectOptions) (CollectStats, error) {
	if opts.Block <= 0 {
		opts.Block = time.Second
	}
	var (
		st   CollectStats
		seen bitset
		last = "0-0"
		buf  []byte
		key  = j.Key("results")
	)
	if total > 0 {
		seen = make(bitset, (total+63)/64)
	}
	for total < 0 || st.Rows < total {
		var msgs []redis.XMessage
		err := retry(ctx, opts.Outage, func() error {
			if total < 0 {
				n, err := j.rdb.HGet(ctx, j.Key("meta"), "total").Int64()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				if err == nil {
					total = n
				}
			}
			res, err := j.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Count: 1000, Block: opts.Block}).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if len(res) > 0 {
				msgs = res[0].Messages
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("cluster: collecting results: %w", err)
		}
		if len(msgs) == 0 {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			continue
		}
		var add CollectStats
		buf = buf[:0]
		for _, m := range msgs {
			if !j.sameGen(m) {
				continue // a host of the job's previous generation, not yet stopped: its items run again here
			}
			index, row, ok, err := resultOf(m)
			if err == nil && !opts.AnyIndex && total >= 0 && index >= total {
				err = fmt.Errorf("cluster: results entry %s is for item %d of a job of %d items", m.ID, index, total)
			}
			if err != nil {
				return st, err
			}
			if !seen.add(index) {
				add.Duplicates++
				continue
			}
			buf = append(buf, row...)
			if row[len(row)-1] != '\n' {
				buf = append(buf, '\n')
			}
			add.Rows++
			if ok {
				add.OK++
			} else {
				add.Failed++
			}
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return st, fmt.Errorf("cluster: writing results: %w", err)
			}
		}
		st.Rows, st.OK, st.Failed, st.Duplicates = st.Rows+add.Rows, st.OK+add.OK, st.Failed+add.Failed, st.Duplicates+add.Duplicates
		if opts.OnRows != nil {
			opts.OnRows(st, total)
		}
		last = msgs[len(msgs)-1].ID
		if !opts.KeepRows {
			// Best effort: a trim that fails leaves rows for the next one.
			j.rdb.XTrimMinID(ctx, key, nextID(last))
		}
	}
	return st, nil
}

// resultOf reads a results entry.
func resultOf(m redis.XMessage) (index int64, row string, ok bool, err error) {
	row, _ = m.Values["row"].(string)
	s, _ := m.Values["index"].(string)
	index, err = strconv.ParseInt(s, 10, 64)
	if err != nil || index < 0 || row == "" {
		return 0, "", false, fmt.Errorf("cluster: results entry %s is not a row with its item's index", m.ID)
	}
	return index, row, m.Values["ok"] == "1", nil
}

// bitset records which items have their row.
type bitset []uint64

// add marks i and reports whether it was new.
func (b *bitset) add(i int64) bool {
	w, bit := int(i/64), uint64(1)<<(i%64)
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w+1-len(*b))...)
	}
	if (*b)[w]&bit != 0 {
		return false
	}
	(*b)[w] |= bit
	return true
}
