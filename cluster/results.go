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

// WriteRows adds the rows to the results stream in one round trip, then acknowledges each
// entry of this host whose last row this was. A row for an item this host does not hold (an
// entry another host took over) is added all the same: the collector keeps the first row of
// each item. While Redis is unreachable it waits, so that the run pauses rather than count
// rows as lost; it returns an error only when the Source's ctx ended first, or when Redis
// refuses a command.
func (k *Sink) WriteRows(rows []engine.EncodedRow) (int, error) {
	k.s.rowsIn(len(rows)) // their workers are free: Next may take more work
	if err := k.s.abandonedErr(); err != nil {
		return 0, fmt.Errorf("cluster: writing results: %w", err)
	}
	n, err := k.s.addRows(rows)
	if err != nil {
		return n, fmt.Errorf("cluster: writing results: %w", err)
	}
	done := k.s.finished(rows)
	if len(done) == 0 {
		return n, nil
	}
	err = k.s.ack(done)
	k.s.forget(done) // held until acknowledged, so that a recovering Next does not take them again
	if err != nil && !errors.Is(err, ErrRedis) {
		// The rows are in; a refused XACK is a bug worth stopping for. An ack that ctx cut
		// short only means other hosts redo those entries after the lease.
		return n, fmt.Errorf("cluster: acknowledging work: %w", err)
	}
	return n, nil
}

// addRows adds rows to the results stream and returns how many, from the first, are in. A
// try that failed halfway resends only the rest. The commands themselves do not end with ctx,
// so that the rows of calls that ended as the run stopped get their try.
func (s *Source) addRows(rows []engine.EncodedRow) (int, error) {
	key, ctx := s.j.Key("results"), context.WithoutCancel(s.ctx)
	written := 0
	err := retry(s.ctx, &s.down, func() error {
		if written == len(rows) {
			return nil
		}
		cmds, _ := s.j.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range rows[written:] {
				ok := "0"
				if r.OK {
					ok = "1"
				}
				p.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: s.j.withGen("index", r.Index, "row", r.Line, "ok", ok)})
			}
			return nil
		})
		for _, c := range cmds {
			if err := c.Err(); err != nil {
				return err
			}
			written++
		}
		return nil
	})
	return written, err
}

// finished counts the rows against the entries their items came from and returns the entries
// now complete.
func (s *Source) finished(rows []engine.EncodedRow) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var done []string
	for _, r := range rows {
		id, ok := s.owner[r.Index]
		if !ok {
			continue
		}
		delete(s.owner, r.Index)
		e := s.held[id]
		if e == nil {
			continue
		}
		if e.left--; e.left == 0 {
			done = append(done, id)
		}
	}
	return done
}

// CollectOptions tune the coordinator's collector.
type CollectOptions struct {
	// Block is how long one read waits for new rows (default 1 s).
	Block time.Duration
	// KeepRows keeps the rows in Redis once written to w. By default each batch is deleted
	// (XTRIM MINID) as soon as w took it, so that Redis's memory stays bounded however long
	// the job: a row is then only in w.
	KeepRows bool
	// OnRedisError, when set, is called with the error when Redis stops answering and with nil
	// when it answers again: once each per outage. It must not block.
	OnRedisError func(error)
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
		down = outage{report: opts.OnRedisError}
		last = "0-0"
		buf  []byte
		key  = j.Key("results")
	)
	if total > 0 {
		seen = make(bitset, (total+63)/64)
	}
	for total < 0 || st.Rows < total {
		var msgs []redis.XMessage
		err := retry(ctx, &down, func() error {
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
