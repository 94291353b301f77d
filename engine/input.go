package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MaxLineBytes is the longest input line taken as an item; a longer line becomes a failed row.
const MaxLineBytes = 16 << 20

// Source yields the items of a run in order. Next returns [io.EOF] after the last item. A
// Source is used by one goroutine at a time.
type Source interface {
	Next() (Item, error)
}

// LineReader is a [Source] over a stream of lines, read incrementally so that an input of any
// length runs in constant memory.
//
// Rules, the same as [CountItems]: a UTF-8 byte order mark at the start is dropped; "\r\n" and
// "\n" both end a line; a line that is empty or only white space is not an item. A line with a
// NUL byte, invalid UTF-8, more than [MaxLineBytes], or (for JSON Lines) text that is not a
// JSON object still becomes an item, marked Invalid, so that it ends as a failed row with the
// reason rather than vanishing.
//
// A line longer than [MaxLineBytes] is ended at the limit, without waiting for its newline: its
// item is made at once and the rest of the line is skipped when the next item is asked for, so
// that an endless line (/dev/zero) gives its failed row and the run stays stoppable.
type LineReader struct {
	src   io.Reader
	r     *bufio.Reader
	jsonl bool
	index int64
	line  int64
	first bool
	skip  bool // the rest of a too-long line is still to be skipped, up to its newline
	buf   []byte
}

// NewLineReader returns a LineReader over r; jsonl selects JSON Lines items.
func NewLineReader(r io.Reader, jsonl bool) *LineReader {
	return &LineReader{src: r, r: bufio.NewReaderSize(r, 256<<10), jsonl: jsonl, first: true}
}

// EndWarning says, once the reader has returned io.EOF, whether its input changed under it:
// a [FileReader] that stopped at the size counted at the start of the run while the file had
// grown past it. "" when there is nothing to say.
func (l *LineReader) EndWarning() string {
	fr, ok := l.src.(*FileReader)
	if !ok {
		return ""
	}
	if grew := fr.Grew(); grew > 0 {
		return fmt.Sprintf("input grew by %d bytes while the run read it; stopped at the %d items counted at the start; use --follow to take appended lines", grew, l.index)
	}
	return ""
}

// EndWarner is a [Source] that may have something to say when it has ended (see
// [LineReader.EndWarning]); the engine makes it a warning of the run.
type EndWarner interface {
	EndWarning() string
}

// Next returns the next item, or io.EOF.
func (l *LineReader) Next() (Item, error) {
	raw, tooLong, err := l.nextLine()
	if err != nil {
		return Item{}, err
	}
	it := Item{Index: l.index, JSON: l.jsonl}
	l.index++
	switch {
	case tooLong:
		it.Line = string(raw[:min(len(raw), 256)])
		it.Invalid = fmt.Sprintf("input line %d is longer than %d bytes", l.line, MaxLineBytes)
	case bytes.IndexByte(raw, 0) >= 0:
		it.Line = string(raw)
		it.Invalid = fmt.Sprintf("input line %d contains a NUL byte", l.line)
	case !utf8.Valid(raw):
		it.Line = string(raw)
		it.Invalid = fmt.Sprintf("input line %d is not valid UTF-8", l.line)
	default:
		it.Line = string(raw)
		if l.jsonl {
			it.Fields, it.Invalid = decodeObject(raw, l.line)
		}
	}
	return it, nil
}

// ItemFrom rebuilds an item that a [LineReader] read elsewhere (another host of a shared job):
// for a JSON Lines item that was valid, its fields are decoded again.
func ItemFrom(index int64, line string, jsonl bool, invalid string) Item {
	it := Item{Index: index, Line: line, JSON: jsonl, Invalid: invalid}
	if jsonl && invalid == "" {
		it.Fields, it.Invalid = decodeObject([]byte(line), index+1)
	}
	return it
}

// nextLine returns the next line that is an item: the byte order mark dropped, blank lines
// skipped. Next and CountItems share it, so that they always agree.
func (l *LineReader) nextLine() (raw []byte, tooLong bool, err error) {
	for {
		raw, tooLong, err = l.readLine()
		if err != nil {
			return nil, false, err
		}
		l.line++
		if l.first {
			raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
			l.first = false
		}
		if tooLong || len(bytes.TrimSpace(raw)) > 0 {
			return raw, tooLong, nil
		}
	}
}

// readLine returns the next line without its ending. A line longer than MaxLineBytes is
// reported tooLong as soon as that many bytes are in, with its start; the rest of it is
// skipped by the next call, so that a line whose newline never comes cannot hold the reader.
func (l *LineReader) readLine() (line []byte, tooLong bool, err error) {
	for l.skip {
		_, err := l.r.ReadSlice('\n')
		switch {
		case err == nil:
			l.skip = false
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			l.skip = false
			return nil, false, io.EOF
		default:
			return nil, false, fmt.Errorf("engine: reading input: %w", err)
		}
	}
	if cap(l.buf) > 1<<20 {
		l.buf = nil // a long line's buffer goes with it: an input of one long line among short ones keeps no 16 MiB
	}
	l.buf = l.buf[:0]
	for {
		chunk, err := l.r.ReadSlice('\n')
		l.buf = append(l.buf, chunk...)
		switch {
		case err == nil:
			line := trimEOL(l.buf)
			return line, len(line) > MaxLineBytes, nil
		case errors.Is(err, bufio.ErrBufferFull):
			// Without its newline, a line of more than MaxLineBytes+1 bytes (one may be the
			// "\r" of a "\r\n") is too long whatever follows.
			if len(l.buf) > MaxLineBytes+1 {
				l.skip = true
				return l.buf, true, nil
			}
		case errors.Is(err, io.EOF):
			if len(l.buf) == 0 {
				return nil, false, io.EOF
			}
			line := trimEOL(l.buf)
			return line, len(line) > MaxLineBytes, nil
		default:
			return nil, false, fmt.Errorf("engine: reading input: %w", err)
		}
	}
}

// ctxReader is a reader that fails with its context's error once the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

func decodeObject(raw []byte, line int64) (map[string]any, string) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Sprintf("input line %d is not valid JSON: %v", line, err)
	}
	if len(bytes.TrimSpace(raw[dec.InputOffset():])) > 0 {
		return nil, fmt.Sprintf("input line %d holds more than one JSON value", line)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Sprintf("input line %d is not a JSON object", line)
	}
	return obj, ""
}

// CountItems counts the items r holds under the rules of [LineReader] without keeping them:
// the fast first pass that gives progress its total.
func CountItems(r io.Reader) (int64, error) {
	return CountItemsContext(context.Background(), r)
}

// CountItemsContext is [CountItems] that gives up, with ctx's error, once ctx is done: a
// count of a huge input must answer SIGINT and SIGTERM like the rest of a run. ctx is looked
// at before every read, each at most the reader's 256 KiB buffer.
func CountItemsContext(ctx context.Context, r io.Reader) (int64, error) {
	l := NewLineReader(ctxReader{ctx, r}, false)
	var n int64
	for {
		_, _, err := l.nextLine()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("engine: counting input: %w", err)
		}
		n++
	}
}
