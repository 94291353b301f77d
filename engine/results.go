package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// Result is the final state of one item: the content of its row in the results file.
type Result struct {
	Item     Item
	OK       bool
	Status   int
	Attempts int
	Latency  time.Duration // of the last attempt, from when its call really started
	// Wait is how long the last attempt waited, once the engine admitted it, before its call
	// really started: for a shared limit, its host's turn, tokens ([CallStarts]). Never part
	// of Latency.
	Wait       time.Duration
	At         time.Time // when the item ended
	Output     json.RawMessage
	Error      string
	RetryAfter time.Duration // the last Retry-After the server sent, if any
	Extra      map[string]any
}

// AppendRow appends r as one JSON line (with its newline) to dst. Field order is fixed:
// item, ok, status, attempts, latency_ms, wait_ms (when the call waited), at, then output or
// error, retry_after_ms, and any adapter fields in name order.
func AppendRow(dst []byte, r *Result) []byte {
	dst = append(dst, `{"item":`...)
	if r.Item.JSON && r.Item.Invalid == "" {
		dst = append(dst, r.Item.Line...)
	} else {
		dst = appendJSONString(dst, r.Item.Line)
	}
	dst = append(dst, `,"ok":`...)
	dst = strconv.AppendBool(dst, r.OK)
	if r.Status != 0 {
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendInt(dst, int64(r.Status), 10)
	}
	dst = append(dst, `,"attempts":`...)
	dst = strconv.AppendInt(dst, int64(r.Attempts), 10)
	dst = append(dst, `,"latency_ms":`...)
	dst = strconv.AppendFloat(dst, float64(r.Latency.Microseconds())/1000, 'f', -1, 64)
	if r.Wait >= time.Microsecond {
		dst = append(dst, `,"wait_ms":`...)
		dst = strconv.AppendFloat(dst, float64(r.Wait.Microseconds())/1000, 'f', -1, 64)
	}
	dst = append(dst, `,"at":"`...)
	dst = r.At.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	dst = append(dst, '"')
	if len(r.Output) > 0 {
		dst = append(dst, `,"output":`...)
		dst = append(dst, r.Output...)
	}
	if r.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = appendJSONString(dst, r.Error)
	}
	if r.Item.Invalid != "" {
		// The row cannot hold the line as the input had it (a NUL, invalid UTF-8, too long):
		// a retry from this row must fail it again, not call with an altered item.
		dst = append(dst, `,"invalid":true`...)
	}
	if r.RetryAfter > 0 {
		dst = append(dst, `,"retry_after_ms":`...)
		dst = strconv.AppendInt(dst, r.RetryAfter.Milliseconds(), 10)
	}
	if len(r.Extra) > 0 {
		keys := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			if k == "wait_ms" && r.Wait >= time.Microsecond {
				continue // the engine's own field: a row never holds a key twice
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, err := json.Marshal(r.Extra[k])
			if err != nil {
				v = appendJSONString(nil, fmt.Sprint(r.Extra[k]))
			}
			dst = append(dst, ',')
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = append(dst, v...)
		}
	}
	return append(dst, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as in
// encoding/json; '<', '>' and '&' are left as they are, since rows are not HTML.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// pendingRow is an encoded row on its way to the results file.
type pendingRow struct {
	line  []byte
	ok    bool
	index int64 // the item's
}

// EncodedRow is one encoded result row, with its item's index, as a [RowWriter] receives it.
type EncodedRow struct {
	Index int64
	Line  []byte // the JSON line, newline included
	OK    bool
}

// RowWriter is an optional interface of Config.Results for sinks that need to know which item
// each row is for (a shared results stream that acknowledges the items it has): the engine
// then calls WriteRows with each batch instead of Write. n is how many rows, from the first,
// were written; an error means the rest were not.
type RowWriter interface {
	WriteRows(rows []EncodedRow) (n int, err error)
}

// rowWriter is the single goroutine that owns the results file. It writes rows in batches,
// so that a burst of rows costs one write call, and reports each row as written only after
// the write returned without error.
type rowWriter struct {
	w         io.Writer
	syncEvery time.Duration // fsync at most this long after a write; 0: only at the end
	now       func() time.Time
	in        chan pendingRow
	pending   *byteBudget // the row text in in: reserved by emit, given back once written
	written   func(ok, failed int64)
	failed    func(err error, lost int)
	done      chan struct{}
}

const rowBatchBytes = 256 << 10

func newRowWriter(w io.Writer, syncEvery time.Duration, now func() time.Time, written func(ok, failed int64), failed func(error, int)) *rowWriter {
	return &rowWriter{w: w, syncEvery: syncEvery, now: now, in: make(chan pendingRow, 4096), pending: newByteBudget(pendingRowBytes), written: written, failed: failed, done: make(chan struct{})}
}

// syncer returns what can make the results durable: a regular file, or any other writer with
// a Sync method; nil for /dev/null, pipes and plain writers.
func (rw *rowWriter) syncer() interface{ Sync() error } {
	if f, ok := rw.w.(*os.File); ok {
		if isRegular(f) {
			return f
		}
		return nil
	}
	s, _ := rw.w.(interface{ Sync() error })
	return s
}

func (rw *rowWriter) run() {
	defer close(rw.done)
	var (
		buf      []byte
		okN      int64
		failedN  int64
		broken   bool
		syncer   = rw.syncer()
		lastSync = rw.now()
	)
	var marks []rowMark
	sink, _ := rw.w.(RowWriter)
	for row := range rw.in {
		if cap(buf) > 2*rowBatchBytes {
			buf = nil // do not keep the buffer that a burst of large rows grew
		}
		okN, failedN = 0, 0
		marks = append(marks[:0], rowMark{len(row.line), row.ok, row.index})
		count(row.ok, &okN, &failedN)
		out := row.line // a lone row is written as it is: a large one is not copied
	batch:
		for len(out) < rowBatchBytes {
			select {
			case more, open := <-rw.in:
				if !open {
					break batch
				}
				if len(marks) == 1 {
					buf = append(buf[:0], row.line...)
				}
				buf = append(buf, more.line...)
				out = buf
				marks = append(marks, rowMark{len(buf), more.ok, more.index})
				count(more.ok, &okN, &failedN)
			default:
				break batch
			}
		}
		if broken {
			rw.pending.give(int64(len(out)))
			rw.failed(nil, int(okN+failedN))
			continue
		}
		var n int
		var err error
		if sink != nil {
			n, err = writeRows(sink, out, marks)
		} else {
			n, err = rw.w.Write(out)
		}
		rw.pending.give(int64(len(out))) // written (or not): the queue has room again
		if err != nil {
			broken = true
			var wok, wfailed int64
			for _, m := range marks {
				if m.end > n {
					break
				}
				count(m.ok, &wok, &wfailed)
			}
			rw.written(wok, wfailed)
			rw.failed(err, int(okN+failedN-wok-wfailed))
			continue
		}
		rw.written(okN, failedN)
		if syncer != nil && rw.syncEvery > 0 && rw.now().Sub(lastSync) >= rw.syncEvery {
			if err := syncer.Sync(); err != nil {
				broken = true
				rw.failed(err, 0)
			}
			lastSync = rw.now()
		}
	}
	if syncer != nil && !broken {
		if err := syncer.Sync(); err != nil {
			rw.failed(err, 0)
		}
	}
}

// rowMark is where a row of a batch ends, and what it is.
type rowMark struct {
	end   int
	ok    bool
	index int64
}

// writeRows hands a batch to a RowWriter and returns how many of its bytes were written, as
// Write would: the rows it took, whole.
func writeRows(sink RowWriter, buf []byte, marks []rowMark) (int, error) {
	rows := make([]EncodedRow, len(marks))
	start := 0
	for i, m := range marks {
		rows[i] = EncodedRow{Index: m.index, Line: buf[start:m.end], OK: m.ok}
		start = m.end
	}
	n, err := sink.WriteRows(rows)
	if n <= 0 {
		return 0, err
	}
	return marks[min(n, len(marks))-1].end, err
}

// isRegular reports whether f is a regular file: fsync of /dev/null or a pipe fails with
// EINVAL, and there is nothing on disk to make durable.
func isRegular(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode().IsRegular()
}

func count(ok bool, okN, failedN *int64) {
	if ok {
		*okN++
	} else {
		*failedN++
	}
}
