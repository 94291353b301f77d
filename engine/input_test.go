package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"testing/synctest"
)

// readAll returns every item of r, failing the test on an error other than io.EOF.
func readAll(t *testing.T, r Source) []Item {
	t.Helper()
	var items []Item
	for {
		it, err := r.Next()
		if errors.Is(err, io.EOF) {
			return items
		}
		if err != nil {
			t.Fatalf("Next() error = %v", err)
		}
		items = append(items, it)
	}
}

// wantItem is what a test expects of one item: its line, and a part of its Invalid reason
// ("" for a valid item).
type wantItem struct {
	line    string
	invalid string
}

// inputCases are tricky inputs for LineReader and CountItems.
var inputCases = []struct {
	name  string
	in    string
	jsonl bool
	want  []wantItem
}{
	{"empty", "", false, nil},
	{"only blank lines", "\n\n \n\t\r\n", false, nil},
	{"plain", "a\nb\n", false, []wantItem{{"a", ""}, {"b", ""}}},
	{"no final newline", "a\nb", false, []wantItem{{"a", ""}, {"b", ""}}},
	{"CRLF", "a\r\nb\r\n", false, []wantItem{{"a", ""}, {"b", ""}}},
	{"BOM", "\xef\xbb\xbfa\nb\n", false, []wantItem{{"a", ""}, {"b", ""}}},
	{"BOM on a blank first line", "\xef\xbb\xbf\na\n", false, []wantItem{{"a", ""}}},
	{"BOM later is content", "a\n\xef\xbb\xbfb\n", false, []wantItem{{"a", ""}, {"\ufeffb", ""}}},
	{"blank and white space lines skipped", "a\n\n   \n\t\nb\n", false, []wantItem{{"a", ""}, {"b", ""}}},
	{"unicode white space line skipped", "a\n\u3000\u00a0\nb\n", false, []wantItem{{"a", ""}, {"b", ""}}},
	{"spaces kept inside an item", "  a b  \n", false, []wantItem{{"  a b  ", ""}}},
	{"NUL", "a\x00b\n", false, []wantItem{{"a\x00b", "input line 1 contains a NUL byte"}}},
	{"invalid UTF-8", "ok\n\xff\xfe\n", false, []wantItem{{"ok", ""}, {"\xff\xfe", "input line 2 is not valid UTF-8"}}},
	{"line numbers count blank lines", "\n\nx\x00\n", false, []wantItem{{"x\x00", "input line 3 contains a NUL byte"}}},
	{"JSONL object", `{"id":1,"name":"x"}` + "\n", true, []wantItem{{`{"id":1,"name":"x"}`, ""}}},
	{"JSONL object with spaces", "  {\"id\": 1}  \r\n", true, []wantItem{{"  {\"id\": 1}  ", ""}}},
	{"JSONL array", "[1,2]\n", true, []wantItem{{"[1,2]", "input line 1 is not a JSON object"}}},
	{"JSONL string", `"s"` + "\n", true, []wantItem{{`"s"`, "is not a JSON object"}}},
	{"JSONL null", "null\n", true, []wantItem{{"null", "is not a JSON object"}}},
	{"JSONL invalid", "{bad\n", true, []wantItem{{"{bad", "input line 1 is not valid JSON"}}},
	{"JSONL two values", `{"a":1} {"b":2}` + "\n", true, []wantItem{{`{"a":1} {"b":2}`, "input line 1 holds more than one JSON value"}}},
	{"JSONL trailing garbage", `{"a":1}x` + "\n", true, []wantItem{{`{"a":1}x`, "input line 1"}}},
	{"JSONL NUL", "{\"a\":\"\x00\"}\n", true, []wantItem{{"{\"a\":\"\x00\"}", "NUL"}}},
}

// TestLineReader checks the items and their Index, JSON, Fields and Invalid reasons.
func TestLineReader(t *testing.T) {
	for _, tc := range inputCases {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, NewLineReader(strings.NewReader(tc.in), tc.jsonl))
			if len(got) != len(tc.want) {
				t.Fatalf("NewLineReader(%q).Next() gave %d items %+v, want %d", tc.in, len(got), got, len(tc.want))
			}
			for i, it := range got {
				w := tc.want[i]
				if it.Line != w.line || it.Index != int64(i) || it.JSON != tc.jsonl {
					t.Errorf("item %d = line %q, index %d, json %v; want %q, %d, %v", i, it.Line, it.Index, it.JSON, w.line, i, tc.jsonl)
				}
				if w.invalid == "" && it.Invalid != "" || !strings.Contains(it.Invalid, w.invalid) {
					t.Errorf("item %d Invalid = %q, want %q", i, it.Invalid, w.invalid)
				}
				if tc.jsonl && it.Invalid == "" && it.Fields == nil {
					t.Errorf("item %d: Fields = nil, want the decoded object", i)
				}
				if (!tc.jsonl || it.Invalid != "") && it.Fields != nil {
					t.Errorf("item %d: Fields = %v, want nil", i, it.Fields)
				}
			}
		})
	}
	it := readAll(t, NewLineReader(strings.NewReader(`{"id":12345678901234567890,"tags":["a"]}`), true))[0]
	if n, ok := it.Fields["id"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("Fields[id] = %#v, want json.Number 12345678901234567890 (no float rounding)", it.Fields["id"])
	}
}

// TestCountItemsAgrees: CountItems counts what LineReader yields, whatever the input and however
// the reader splits it.
func TestCountItemsAgrees(t *testing.T) {
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"half reads", iotest.HalfReader},
	}
	for _, tc := range inputCases {
		want := int64(len(readAll(t, NewLineReader(strings.NewReader(tc.in), tc.jsonl))))
		for _, rd := range readers {
			if got, err := CountItems(rd.wrap(strings.NewReader(tc.in))); got != want || err != nil {
				t.Errorf("CountItems(%s, %s) = %d, %v, want %d, nil (LineReader's count)", tc.name, rd.name, got, err, want)
			}
		}
	}
	_, err := CountItems(iotest.ErrReader(errors.New("disk on fire")))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("CountItems(failing reader) error = %v, want it to carry the read error", err)
	}
}

// TestCountItemsAtReadBoundaries: CountItems agrees with LineReader when a read ends inside a
// BOM or inside a multi-byte white space character (short reads from a pipe, or the edge of
// its 1 MiB block).
func TestCountItemsAtReadBoundaries(t *testing.T) {
	for _, tc := range inputCases {
		want := int64(len(readAll(t, NewLineReader(strings.NewReader(tc.in), tc.jsonl))))
		if got, err := CountItems(iotest.OneByteReader(strings.NewReader(tc.in))); got != want || err != nil {
			t.Errorf("CountItems(%s, one byte reads) = %d, %v, want %d, nil (LineReader's count)", tc.name, got, err, want)
		}
	}
	// A line of only a multi-byte space that straddles CountItems' 1 MiB read.
	straddle := strings.Repeat("x", 1<<20-2) + "\n\u00a0\nz\n"
	want := int64(len(readAll(t, NewLineReader(strings.NewReader(straddle), false))))
	if got, _ := CountItems(strings.NewReader(straddle)); got != want {
		t.Errorf("CountItems(a space line across the 1 MiB read) = %d, want %d", got, want)
	}
}

// checkLongLine reads in and checks its first item: invalid as too long, or a whole line of
// MaxLineBytes; the line after it read as usual; CountItems agreeing.
func checkLongLine(t *testing.T, in string, invalid bool) {
	t.Helper()
	items := readAll(t, NewLineReader(strings.NewReader(in), false))
	count, err := CountItems(strings.NewReader(in))
	if err != nil || count != int64(len(items)) {
		t.Errorf("CountItems = %d, %v; LineReader gave %d items", count, err, len(items))
	}
	if len(items) == 0 {
		t.Fatal("no items")
	}
	first := items[0]
	if got := first.Invalid != ""; got != invalid {
		t.Errorf("first item: %d bytes, Invalid %q; want invalid %v", len(first.Line), first.Invalid, invalid)
	}
	if invalid {
		if want := fmt.Sprintf("input line 1 is longer than %d bytes", MaxLineBytes); first.Invalid != want || len(first.Line) != 256 {
			t.Errorf("first item: Invalid %q, %d bytes kept; want %q and 256", first.Invalid, len(first.Line), want)
		}
	} else if len(first.Line) != MaxLineBytes {
		t.Errorf("first item: %d bytes, want %d", len(first.Line), MaxLineBytes)
	}
	if strings.HasSuffix(in, "next\n") {
		if len(items) != 2 || items[1].Line != "next" || items[1].Index != 1 {
			t.Errorf("after the long line: %d items, want 2 with the second \"next\" at index 1", len(items))
		}
	}
}

// TestLongLines: a line longer than MaxLineBytes becomes an invalid item holding its first 256
// bytes, and the lines after it are read as usual; a line of exactly MaxLineBytes is an item.
// CountItems agrees.
func TestLongLines(t *testing.T) {
	big := strings.Repeat("x", 2*MaxLineBytes)
	t.Run("exactly max, CRLF", func(t *testing.T) { checkLongLine(t, big[:MaxLineBytes]+"\r\nnext\n", false) })
	t.Run("max+1, CRLF", func(t *testing.T) { checkLongLine(t, big[:MaxLineBytes+1]+"\r\nnext\n", true) })
	t.Run("far over", func(t *testing.T) { checkLongLine(t, big+"\nnext\n", true) })
}

// TestLongLineLimitExact: "longer than MaxLineBytes" holds whatever ends the line (LF, CRLF,
// nothing at EOF), and a line of only white space over the limit is counted by CountItems as
// LineReader reads it.
func TestLongLineLimitExact(t *testing.T) {
	big := strings.Repeat("x", MaxLineBytes+2)
	t.Run("max+1, LF", func(t *testing.T) { checkLongLine(t, big[:MaxLineBytes+1]+"\nnext\n", true) })
	t.Run("max+2, at EOF", func(t *testing.T) { checkLongLine(t, big[:MaxLineBytes+2], true) })
	t.Run("white space over max", func(t *testing.T) {
		in := strings.Repeat(" ", MaxLineBytes+10) + "\nnext\n"
		items := readAll(t, NewLineReader(strings.NewReader(in), false))
		if count, err := CountItems(strings.NewReader(in)); err != nil || count != int64(len(items)) {
			t.Errorf("CountItems = %d, %v; LineReader gave %d items", count, err, len(items))
		}
	})
}

// TestInvalidItemsNotCalled: items the reader marked invalid get failed rows with the reason
// and 0 attempts, and the adapter never sees them; valid JSONL items appear in rows as objects.
func TestInvalidItemsNotCalled(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		jsonl   bool
		valid   []string          // rows' items of the valid lines
		invalid map[string]string // row item → part of its error
	}{
		{"text", "ok1\nbad\x00nul\n\xff\xfe\nok2\n", false, []string{"ok1", "ok2"},
			map[string]string{"bad\x00nul": "input line 2 contains a NUL byte", "\ufffd\ufffd": "input line 3 is not valid UTF-8"}},
		{"jsonl", `{"id":1}` + "\n[1,2]\n{bad\n" + `{"a":1} {"b":2}` + "\n" + `{"id":2}` + "\n", true, []string{`{"id":1}`, `{"id":2}`},
			map[string]string{"[1,2]": "input line 2 is not a JSON object", "{bad": "input line 3 is not valid JSON", `{"a":1} {"b":2}`: "input line 4 holds more than one JSON value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := newRecorder()
				a := rec.adapter(func(ctx context.Context, it Item, c call) (Outcome, error) {
					if it.Invalid != "" || tc.jsonl && it.Fields["id"] == nil {
						t.Errorf("adapter got item %q, Invalid %q, Fields %v", it.Line, it.Invalid, it.Fields)
					}
					return Outcome{Verdict: OK}, nil
				})
				e, out := newTestEngine(t, Config{
					Settings: Settings{Parallelism: 2},
					Retries:  3,
					Adapter:  a,
					Source:   NewLineReader(strings.NewReader(tc.in), tc.jsonl),
				}, "")
				s, err := e.Run(context.Background())
				if err != nil || s.OK != int64(len(tc.valid)) || s.Failed != int64(len(tc.invalid)) {
					t.Fatalf("Run() = ok %d, failed %d, %v; want %d, %d, nil", s.OK, s.Failed, err, len(tc.valid), len(tc.invalid))
				}
				if called := slices.Sorted(maps.Keys(rec.per)); len(called) != len(tc.valid) {
					t.Errorf("adapter called for %q, want only the %d valid items", called, len(tc.valid))
				}
				rows := rowsByItem(t, parseRows(t, out.Bytes()))
				for _, item := range tc.valid {
					if r, found := rows[item]; !found || !r.OK {
						t.Errorf("valid item %s: row %+v (found %v), want an ok row with the item as it was", item, r, found)
					} else if tc.jsonl && r.Item[0] != '{' {
						t.Errorf("JSONL item row item = %s, want the object itself", r.Item)
					}
				}
				for item, reason := range tc.invalid {
					r, found := rows[item]
					if !found || r.OK || r.Attempts != 0 || !strings.Contains(r.Error, reason) {
						t.Errorf("invalid item %q: row %+v (found %v), want failed, 0 attempts, error with %q", item, r, found, reason)
					}
				}
			})
		})
	}
}
