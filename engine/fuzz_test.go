package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The fuzz targets of the input reader and the results-file reader. Their seeds are added here
// and committed under testdata/fuzz/FuzzXxx; both run as regular tests, and `make fuzz` runs
// each target for a bounded time.

// fuzzLine is one item the rules of LineReader make of an input: its text and its physical
// line number, from 1.
type fuzzLine struct {
	text []byte
	line int64
}

// fuzzLines is a model of the LineReader rules written independently of it: a byte order mark
// at the start is dropped, "\n" ends a line and one "\r" before it (or before the end of the
// input) is not part of the line, and a line that is empty or only white space is not an item.
func fuzzLines(data []byte) []fuzzLine {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if len(data) == 0 {
		return nil
	}
	parts := bytes.Split(data, []byte("\n"))
	if len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1] // the input ends with "\n"
	}
	var lines []fuzzLine
	for i, p := range parts {
		p = bytes.TrimSuffix(p, []byte("\r"))
		if len(bytes.TrimSpace(p)) == 0 {
			continue
		}
		lines = append(lines, fuzzLine{text: p, line: int64(i + 1)})
	}
	return lines
}

// isJSONObject reports whether b is exactly one JSON object, white space around it allowed.
func isJSONObject(b []byte) bool {
	t := bytes.TrimSpace(b)
	return json.Valid(b) && len(t) > 0 && t[0] == '{'
}

// clip returns b quoted, shortened to its first and last 100 bytes when it is longer, so that a
// failure on a large input stays readable.
func clip[T ~string | ~[]byte](b T) string {
	if len(b) <= 240 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q…(%d bytes)…%q", b[:100], len(b)-200, b[len(b)-100:])
}

// FuzzLineReader: for any input, LineReader never panics, CountItems agrees with it on the
// number of items, and every item is the model's line with Invalid set exactly when the rules
// say so (a NUL byte, invalid UTF-8, a JSON Lines line that is not one object), with the
// physical line number in the reason. Lines longer than MaxLineBytes (16 MiB) are out of reach
// of fuzzed inputs; input_test.go covers them.
func FuzzLineReader(f *testing.F) {
	for _, s := range []string{
		"",
		"a\nb\n",
		"\xef\xbb\xbfa\r\nb\r\n\r\n",
		"\xef\xbb\xbf\n \t\n\r\n",
		"a\x00b\nok\n",
		"\xff\xfe\nok\xc3\n\xe2\x82\xac\n",
		"last\r",
		"a\r\r\nb",
		"\u00a0\u2028\n x \n",
		`{"id":1}` + "\n" + `[1,2]` + "\n" + `{"id":` + "\n" + `{} {}` + "\n" + `{"id":2}}` + "\n",
		"  {\"a\":\"\\u0000\"}  \r\n\t{}\n",
		strings.Repeat("x", 5000) + "\n" + strings.Repeat("y", 300<<10) + "\nz", // past the 256 KiB buffer
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, jsonl bool) {
		n, err := CountItems(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("CountItems(%s) error = %v", clip(data), err)
		}
		var items []Item
		r := NewLineReader(bytes.NewReader(data), jsonl)
		for {
			it, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Next() error = %v", err)
			}
			items = append(items, it)
		}
		if int64(len(items)) != n {
			t.Fatalf("CountItems(%s) = %d, but LineReader(jsonl=%v) gave %d items", clip(data), n, jsonl, len(items))
		}
		want := fuzzLines(data)
		if len(items) != len(want) {
			t.Fatalf("LineReader(%s, jsonl=%v) gave %d items, want %d", clip(data), jsonl, len(items), len(want))
		}
		for i, it := range items {
			w := want[i]
			if it.Index != int64(i) || it.JSON != jsonl || it.Line != string(w.text) {
				t.Errorf("item %d = {Index: %d, JSON: %v, Line: %s}, want {%d, %v, %s}", i, it.Index, it.JSON, clip(it.Line), i, jsonl, clip(w.text))
			}
			var reasons []string // what Invalid must say, one of
			switch {
			case bytes.IndexByte(w.text, 0) >= 0:
				reasons = []string{"contains a NUL byte"}
			case !utf8.Valid(w.text):
				reasons = []string{"is not valid UTF-8"}
			case jsonl && !isJSONObject(w.text):
				reasons = []string{"is not valid JSON", "holds more than one JSON value", "is not a JSON object"}
			}
			says := func() bool {
				for _, r := range reasons {
					if strings.HasPrefix(it.Invalid, fmt.Sprintf("input line %d %s", w.line, r)) {
						return true
					}
				}
				return false
			}
			switch {
			case it.Invalid == "" && reasons != nil:
				t.Errorf("item %d (%s, jsonl=%v) is valid, want Invalid (%s)", i, clip(w.text), jsonl, strings.Join(reasons, " or "))
			case it.Invalid != "" && reasons == nil:
				t.Errorf("item %d (%s, jsonl=%v) Invalid = %q, want valid", i, clip(w.text), jsonl, it.Invalid)
			case it.Invalid != "" && !says():
				t.Errorf("item %d (%s) Invalid = %q, want \"input line %d\" and %s", i, clip(w.text), it.Invalid, w.line, strings.Join(reasons, " or "))
			case it.Invalid == "" && jsonl && it.Fields == nil:
				t.Errorf("item %d (%s) is a valid JSON Lines item with nil Fields", i, clip(w.text))
			case !jsonl && it.Fields != nil:
				t.Errorf("item %d (%s) of a text input has Fields %v", i, clip(w.text), it.Fields)
			}
		}
	})
}

// FuzzResultsReader has two halves.
//
// Any bytes as a results file: ReadRows never panics; validEnd is within the input and at the
// end of a line; without an error, validEnd is just past the last "\n", torn is true exactly
// when bytes follow it (the input does not end with "\n"), and fn saw one row per non-blank
// line before validEnd; with an error, it is ErrNotResults and torn is false. ReadFinished and
// Failed never panic either, and agree with the rows: Finished takes each ok row's item once,
// Failed lists the items whose last row failed, once each, in the order of those rows.
//
// A round trip: the items LineReader makes of the fuzzed item text (and the text itself as one
// text item), written by AppendRow with the fuzzed error, status, attempts and Retry-After and
// read back by ReadRows, give the same ok, status, attempts, error and retry_after_ms, and
// AsItem gives the same item: the same text for a text item (after invalid UTF-8 becomes U+FFFD
// byte by byte, as the row format documents), the same fields and the object's text for a JSON
// Lines item (a row cannot hold the white space around an object). A torn copy of the last row
// appended to the file is reported torn and cut. And --resume matches by content: when the rows
// are ok, ReadFinished takes every valid input item they were written for.
func FuzzResultsReader(f *testing.F) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	row := func(item string, ok bool, errText string) string {
		return string(AppendRow(nil, &Result{Item: Item{Line: item}, OK: ok, Attempts: 1, At: at, Error: errText}))
	}
	jrow := func(obj string, ok bool) string {
		return string(AppendRow(nil, &Result{Item: Item{Line: obj, JSON: true}, OK: ok, Attempts: 2, Status: 200, At: at}))
	}
	type seed struct {
		file     string
		item     string
		jsonl    bool
		errText  string
		status   int
		attempts int
		retryMs  int64
		ok       bool
	}
	for _, s := range []seed{
		{file: "", item: "a", attempts: 1, ok: true},
		{file: row("a", false, "503") + row("a", true, "") + row("b", false, "x"), item: "b", errText: "429 Too Many Requests after 4 attempts", status: 429, attempts: 4, retryMs: 2000},
		{file: row("a", true, "") + `{"item":"b","ok":fal`, item: "a\r", attempts: 1, ok: true},
		{file: row("a", true, "") + "\n  \n" + jrow(`{"id":1}`, false) + `{"item":`, item: `{"id":1,"q":"a b"}`, jsonl: true, status: 500, attempts: 3},
		{file: "{\"item\":\"\\u0000\\ud800\\\"\\n\",\"ok\":false}\r\n{\"item\":\"\\u2028\",\"ok\":true}\n", item: "nul\x00 \xff\xfe quote\" back\\ \u2028 \t", errText: "bad \xc3 utf8 \x00", status: -1, attempts: 0},
		{file: `{"item":5,"ok":true}` + "\n", item: " {\"id\": 2} ", jsonl: true, attempts: 1, ok: true},
		{file: `{"ok":true}` + "\n" + `not json` + "\n", item: `{"id":2}}`, jsonl: true, attempts: 1},
		{file: "\xef\xbb\xbf" + row("a", true, ""), item: "{}\n[]\n{\"a\":{\"b\":[1,2.5e300,null,true]}}", jsonl: true, attempts: 1, ok: true},
		// A row longer than the reader's 256 KiB buffer (a large --max-body output, a long error).
		{file: row("big", false, strings.Repeat("e", 300<<10)) + row("c", true, ""), item: "big", errText: strings.Repeat("e", 300<<10), status: 502, attempts: 1},
	} {
		f.Add([]byte(s.file), s.item, s.jsonl, s.errText, s.status, s.attempts, s.retryMs, s.ok)
	}
	f.Fuzz(func(t *testing.T, file []byte, item string, jsonl bool, errText string, status, attempts int, retryMs int64, ok bool) {
		checkResultsFile(t, file)
		checkRowRoundTrip(t, item, jsonl, errText, status, attempts, retryMs, ok)
	})
}

// checkResultsFile checks ReadRows, ReadFinished and Failed on file.
func checkResultsFile(t *testing.T, file []byte) {
	var rows []Row
	end, torn, err := ReadRows(bytes.NewReader(file), func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if end < 0 || end > int64(len(file)) {
		t.Fatalf("ReadRows(%s) validEnd = %d, want within [0, %d]", clip(file), end, len(file))
	}
	if end > 0 && file[end-1] != '\n' {
		t.Fatalf("ReadRows(%s) validEnd = %d, not at the end of a line", clip(file), end)
	}
	if err != nil {
		if !errors.Is(err, ErrNotResults) || torn {
			t.Fatalf("ReadRows(%s) = %d, %v, %v; want an ErrNotResults and torn false", clip(file), end, torn, err)
		}
	} else {
		if want := int64(bytes.LastIndexByte(file, '\n') + 1); end != want {
			t.Fatalf("ReadRows(%s) validEnd = %d, want %d (just past the last newline)", clip(file), end, want)
		}
		if wantTorn := len(file) > 0 && file[len(file)-1] != '\n'; torn != wantTorn {
			t.Fatalf("ReadRows(%s) torn = %v, want %v", clip(file), torn, wantTorn)
		}
		var nonBlank int
		for _, l := range bytes.Split(file[:end], []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				nonBlank++
			}
		}
		if len(rows) != nonBlank {
			t.Fatalf("ReadRows(%s) passed %d rows, want %d (the non-blank complete lines)", clip(file), len(rows), nonBlank)
		}
	}
	for i, r := range rows {
		if len(r.Item) == 0 || r.Line < 1 || i > 0 && r.Line <= rows[i-1].Line {
			t.Fatalf("ReadRows(%s) row %d = %+v: empty item or line numbers not increasing", clip(file), i, r)
		}
	}

	// The items of the rows as --resume and --only-failed see them.
	texts := make([]string, len(rows))
	asItemErr := false
	for i, r := range rows {
		it, err := r.AsItem()
		if err != nil {
			asItemErr = true
		}
		texts[i] = it.Line
	}

	fin, fend, ftorn, ferr := ReadFinished(bytes.NewReader(file))
	if ferr == nil {
		if err != nil || fend != end || ftorn != torn {
			t.Fatalf("ReadFinished(%s) = %d, %v, <nil>; ReadRows = %d, %v, %v", clip(file), fend, ftorn, end, torn, err)
		}
		okRows := 0
		for i, r := range rows {
			if r.OK {
				okRows++
				if !fin.Take(Item{Line: texts[i]}) {
					t.Errorf("ReadFinished(%s).Take(%s) = false for ok row %d", clip(file), clip(texts[i]), r.Line)
				}
			}
		}
		if fin.Len() != okRows {
			t.Errorf("ReadFinished(%s).Len() = %d, want %d ok rows", clip(file), fin.Len(), okRows)
		}
		for i, r := range rows {
			if r.OK && fin.Take(Item{Line: texts[i]}) {
				t.Errorf("ReadFinished(%s).Take(%s) = true after every ok row was taken", clip(file), clip(texts[i]))
			}
		}
	} else if err == nil && !asItemErr {
		t.Fatalf("ReadFinished(%s) error = %v, but every row reads", clip(file), ferr)
	}

	failed, err2 := Failed(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(file)), nil })
	if err2 != nil {
		if err == nil && !asItemErr {
			t.Fatalf("Failed(%s) error = %v, but every row reads", clip(file), err2)
		}
		return
	}
	last := map[string]int{}
	for i := range rows {
		last[texts[i]] = i
	}
	var want []string
	for i, r := range rows {
		if last[texts[i]] == i && !r.OK {
			want = append(want, texts[i])
		}
	}
	var got []string
	for i, it := range failed {
		if it.Index != int64(i) {
			t.Errorf("Failed(%s) item %d has Index %d", clip(file), i, it.Index)
		}
		got = append(got, it.Line)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Failed(%s) = %q, want %q", clip(file), got, want)
	}
}

// checkRowRoundTrip writes rows with AppendRow and reads them back.
func checkRowRoundTrip(t *testing.T, item string, jsonl bool, errText string, status, attempts int, retryMs int64, ok bool) {
	items := []Item{{Line: item}}
	r := NewLineReader(strings.NewReader(item), jsonl)
	for {
		it, err := r.Next()
		if err != nil {
			break
		}
		items = append(items, it)
	}
	retry := time.Duration(retryMs%1e12) * time.Millisecond
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var file []byte
	for _, it := range items {
		res := &Result{Item: it, OK: ok, Status: status, Attempts: attempts, At: at, Error: errText, RetryAfter: retry}
		if ok {
			res.Output = json.RawMessage(`{"n":1}`)
		}
		file = AppendRow(file, res)
	}
	last := AppendRow(nil, &Result{Item: items[len(items)-1], At: at})
	complete := len(file)
	file = append(file, last[:len(last)/2]...) // a torn write

	var rows []Row
	end, torn, err := ReadRows(bytes.NewReader(file), func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil || end != int64(complete) || !torn {
		t.Fatalf("ReadRows(AppendRow rows of %s, jsonl=%v) = %d, %v, %v; want %d, true, <nil>\n%s", clip(item), jsonl, end, torn, err, complete, clip(file))
	}
	if len(rows) != len(items) {
		t.Fatalf("ReadRows(AppendRow rows of %s) passed %d rows, want %d", clip(item), len(rows), len(items))
	}
	wantErr := string([]rune(errText))
	wantRetry := max(retry.Milliseconds(), 0)
	for i, row := range rows {
		it := items[i]
		if row.OK != ok || row.Status != status || row.Attempts != attempts || row.Error != wantErr || row.RetryAfter != wantRetry {
			t.Errorf("row %d of %s = ok %v, status %d, attempts %d, error %s, retry_after_ms %d; want %v, %d, %d, %s, %d",
				i, clip(item), row.OK, row.Status, row.Attempts, clip(row.Error), row.RetryAfter, ok, status, attempts, clip(wantErr), wantRetry)
		}
		got, err := row.AsItem()
		if err != nil {
			t.Errorf("row %d (%s).AsItem() error = %v", i, clip(row.Item), err)
			continue
		}
		if it.JSON && it.Invalid == "" {
			if want := strings.Trim(it.Line, " \t\r"); !got.JSON || got.Line != want || !reflect.DeepEqual(got.Fields, it.Fields) {
				t.Errorf("row %d: AsItem() = {JSON: %v, Line: %s, Fields: %v}, want the JSON Lines item {true, %s, %v}",
					i, got.JSON, clip(got.Line), got.Fields, clip(want), it.Fields)
			}
			continue
		}
		if want := string([]rune(it.Line)); got.JSON || got.Line != want {
			t.Errorf("row %d: AsItem() = {JSON: %v, Line: %s}, want the text item %s", i, got.JSON, clip(got.Line), clip(want))
		}
	}

	// --resume: ok rows skip the items they were written for (an Invalid item is never skipped).
	var okFile []byte
	for _, it := range items {
		okFile = AppendRow(okFile, &Result{Item: it, OK: true, Attempts: 1, At: at})
	}
	fin, _, _, err := ReadFinished(bytes.NewReader(okFile))
	if err != nil {
		t.Fatalf("ReadFinished(ok rows of %s, jsonl=%v) error = %v", clip(item), jsonl, err)
	}
	for i, it := range items {
		if it.Invalid == "" && utf8.ValidString(it.Line) && !fin.Take(it) {
			t.Errorf("item %d %s (JSON: %v) is not matched by the ok row written for it, %s: --resume would run it again",
				i, clip(it.Line), it.JSON, clip(okFile))
		}
	}
}
