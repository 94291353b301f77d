package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"
)

// Row is one result row read back from a results file.
type Row struct {
	// Item is the item as the row holds it: a JSON string for a text item, an object for a
	// JSON Lines item.
	Item       json.RawMessage `json:"item"`
	OK         bool            `json:"ok"`
	Status     int             `json:"status"`
	Attempts   int             `json:"attempts"`
	Error      string          `json:"error"`
	RetryAfter int64           `json:"retry_after_ms"`
	// Invalid marks the row of an item the reader refused (see [Item].Invalid).
	Invalid bool `json:"invalid"`
	// File is where the item's body was saved (an absolute path, http --save-dir), Bytes its
	// size: a row with a file is done only while that file is there with that size.
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	// Line is the row's line number in the file, from 1.
	Line int64 `json:"-"`
}

// AsItem returns the row's item as an input item: the string of a text item, or the object
// of a JSON Lines item.
func (r Row) AsItem() (Item, error) {
	if r.Invalid {
		var s string
		if err := json.Unmarshal(r.Item, &s); err != nil {
			s = string(r.Item)
		}
		return Item{Line: s, Invalid: r.Error}, nil
	}
	if len(r.Item) > 0 && r.Item[0] == '{' {
		fields, invalid := decodeObject(r.Item, r.Line)
		if invalid != "" {
			return Item{}, errors.New(invalid)
		}
		return Item{Line: string(r.Item), JSON: true, Fields: fields}, nil
	}
	var s string
	if err := json.Unmarshal(r.Item, &s); err != nil {
		return Item{}, fmt.Errorf("engine: results line %d: item is neither a string nor an object", r.Line)
	}
	return Item{Line: s}, nil
}

// ItemKey is the content key of an item: results are matched to input by what the item says,
// not by its line number, so an edited input never resumes the wrong items. It is a 64-bit
// FNV-1a hash of the item's text (collisions: about one in 3·10⁵ runs of 10M items).
func ItemKey(line string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(line))
	return h.Sum64()
}

// ErrNotResults says a file read as results holds a line that is not a result row.
var ErrNotResults = errors.New("engine: not a results file")

// ReadRows reads a results file, calling fn for each complete row in order. A last line
// without its newline is a torn write (a kill during a write): it is not passed to fn, and
// validEnd — the offset just past the last complete line — tells the caller where to cut.
func ReadRows(r io.Reader, fn func(Row) error) (validEnd int64, torn bool, err error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var line int64
	for {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// b is the reader's buffer, which the next ReadSlice overwrites: copy it first.
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = br.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if errors.Is(err, io.EOF) {
			return validEnd, len(b) > 0, nil
		}
		if err != nil {
			return validEnd, false, fmt.Errorf("engine: reading results: %w", err)
		}
		line++
		if text := bytes.TrimSpace(b); len(text) > 0 {
			var row Row
			if err := json.Unmarshal(text, &row); err != nil || len(row.Item) == 0 {
				return validEnd, false, fmt.Errorf("%w: line %d is not a result row", ErrNotResults, line)
			}
			row.Line = line
			if err := fn(row); err != nil {
				return validEnd, false, err
			}
		}
		validEnd += int64(len(b))
	}
}

// rowItemText returns the item's text as the input had it.
func rowItemText(r Row) (string, error) {
	it, err := r.AsItem()
	return it.Line, err
}

// Finished is the set of items a results file already holds as ok, for --resume: each ok row
// skips one occurrence of its item in the input. It is a sorted slice of content keys with a
// bit per key, about 8 bytes per ok row.
type Finished struct {
	keys []uint64
	used []bool
	// Dropped counts the ok rows that ReadFinishedFunc's keep turned down.
	Dropped int64
}

// ReadFinished reads a results file and returns its ok items, with where the file's complete
// rows end (see [ReadRows]).
func ReadFinished(r io.Reader) (*Finished, int64, bool, error) {
	return ReadFinishedFunc(r, nil)
}

// ReadFinishedFunc is [ReadFinished] with a say on each ok row: an ok row for which keep
// returns false does not count as done (its item runs again), e.g. one whose saved file is
// gone. A nil keep keeps every ok row.
func ReadFinishedFunc(r io.Reader, keep func(Row) bool) (*Finished, int64, bool, error) {
	d := &Finished{}
	end, torn, err := ReadRows(r, func(row Row) error {
		if !row.OK {
			return nil
		}
		if keep != nil && !keep(row) {
			d.Dropped++
			return nil
		}
		text, err := rowItemText(row)
		if err != nil {
			return err
		}
		d.keys = append(d.keys, ItemKey(text))
		return nil
	})
	slices.Sort(d.keys)
	d.used = make([]bool, len(d.keys))
	return d, end, torn, err
}

// Len is the number of ok rows.
func (d *Finished) Len() int { return len(d.keys) }

// Take reports whether it has an ok row not yet matched, and matches it.
func (d *Finished) Take(it Item) bool {
	line := it.Line
	if it.JSON && it.Invalid == "" {
		line = strings.Trim(line, " \t\r") // a row holds the object without the white space around it
	}
	k := ItemKey(line)
	i, found := slices.BinarySearch(d.keys, k)
	for ; found && i < len(d.keys) && d.keys[i] == k; i++ {
		if !d.used[i] {
			d.used[i] = true
			return true
		}
	}
	return false
}

// Clone returns a copy with the same rows matched, for a counting pass.
func (d *Finished) Clone() *Finished { return &Finished{keys: d.keys, used: slices.Clone(d.used)} }

// Skipping is a [Source] that passes over the items skip takes, counting them.
type Skipping struct {
	Src     Source
	Skip    func(Item) bool
	Skipped int64
}

// Next returns the next item not skipped. It keeps the item's Index, its place in the input:
// what is derived from it (a file name's {n}) stays the same across a --resume.
func (s *Skipping) Next() (Item, error) {
	for {
		it, err := s.Src.Next()
		if err != nil {
			return it, err
		}
		if it.Invalid == "" && s.Skip(it) {
			s.Skipped++
			continue
		}
		return it, nil
	}
}

// EndWarning passes on what the source it wraps has to say at its end (see [EndWarner]).
func (s *Skipping) EndWarning() string {
	if w, ok := s.Src.(EndWarner); ok {
		return w.EndWarning()
	}
	return ""
}

// Failed returns, from a results file, the items whose last row failed, in the order of those
// rows: the input of a run that retries only the failures. An item that failed and later
// succeeded is not in it; an item that appears several times is in it once.
func Failed(open func() (io.ReadCloser, error)) ([]Item, error) {
	last := make(map[uint64]int64)
	pass := func(fn func(Row, uint64) error) error {
		f, err := open()
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }() // read-only
		_, _, err = ReadRows(f, func(row Row) error {
			text, err := rowItemText(row)
			if err != nil {
				return err
			}
			return fn(row, ItemKey(text))
		})
		return err
	}
	if err := pass(func(row Row, k uint64) error { last[k] = row.Line; return nil }); err != nil {
		return nil, err
	}
	var items []Item
	err := pass(func(row Row, k uint64) error {
		if last[k] == row.Line && !row.OK {
			it, err := row.AsItem()
			if err != nil {
				return err
			}
			it.Index = int64(len(items))
			items = append(items, it)
		}
		return nil
	})
	return items, err
}

// Items is a [Source] over items held in memory.
type Items struct {
	List []Item
	next int
}

// Next returns the next item, or io.EOF.
func (s *Items) Next() (Item, error) {
	if s.next >= len(s.List) {
		return Item{}, io.EOF
	}
	s.next++
	return s.List[s.next-1], nil
}
