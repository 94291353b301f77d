package engine

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestAppendRowFields: rows have a fixed field order, omit what is empty, and parse as JSON.
func TestAppendRowFields(t *testing.T) {
	at := time.Date(2026, 11, 23, 11, 0, 0, 123456789, time.FixedZone("CET", 3600))
	check := func(r *Result, want string) {
		t.Helper()
		got := string(AppendRow([]byte("prefix|"), r))
		if got != "prefix|"+want {
			t.Errorf("AppendRow(%+v) =\n%s\nwant\n%s", r, strings.TrimPrefix(got, "prefix|"), want)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(strings.TrimPrefix(got, "prefix|")), &v); err != nil {
			t.Errorf("AppendRow(%+v) does not parse as JSON: %v", r, err)
		}
	}
	// An ok row, as in the contract; the time in UTC with milliseconds.
	check(&Result{Item: Item{Line: "123"}, OK: true, Status: 200, Attempts: 1, Latency: 52300 * time.Microsecond, At: at, Output: json.RawMessage(`{"id":123}`)},
		`{"item":"123","ok":true,"status":200,"attempts":1,"latency_ms":52.3,"at":"2026-11-23T10:00:00.123Z","output":{"id":123}}`+"\n")
	// A failed row with every field; adapter fields last, in name order.
	check(&Result{Item: Item{Line: "124"}, Status: 429, Attempts: 4, Latency: time.Second, At: at, Error: "429 Too Many Requests after 4 attempts",
		RetryAfter: 2 * time.Second, Extra: map[string]any{"sha256": "ab", "bytes": 12, "file": "out/124.json"}},
		`{"item":"124","ok":false,"status":429,"attempts":4,"latency_ms":1000,"at":"2026-11-23T10:00:00.123Z","error":"429 Too Many Requests after 4 attempts","retry_after_ms":2000,"bytes":12,"file":"out/124.json","sha256":"ab"}`+"\n")
	// No answer: no status; sub-millisecond latency kept to the microsecond.
	check(&Result{Item: Item{Line: "x"}, Attempts: 2, Latency: 1500 * time.Nanosecond, At: at, Error: "dial tcp: connection refused after 2 attempts"},
		`{"item":"x","ok":false,"attempts":2,"latency_ms":0.001,"at":"2026-11-23T10:00:00.123Z","error":"dial tcp: connection refused after 2 attempts"}`+"\n")
	// An invalid item: never called.
	check(&Result{Item: Item{Line: "a\x00b", Invalid: "input line 1 contains a NUL byte"}, At: at, Error: "input line 1 contains a NUL byte"},
		`{"item":"a\u0000b","ok":false,"attempts":0,"latency_ms":0,"at":"2026-11-23T10:00:00.123Z","error":"input line 1 contains a NUL byte","invalid":true}`+"\n")
	// A JSONL item is the object itself.
	check(&Result{Item: Item{Line: `{"id": 7, "tags": ["a"]}`, JSON: true}, OK: true, Attempts: 1, At: at},
		`{"item":{"id": 7, "tags": ["a"]},"ok":true,"attempts":1,"latency_ms":0,"at":"2026-11-23T10:00:00.123Z"}`+"\n")
	// An invalid JSONL line is a string: it is not JSON.
	check(&Result{Item: Item{Line: `{"id": `, JSON: true, Invalid: "input line 1 is not valid JSON"}, At: at, Error: "input line 1 is not valid JSON"},
		`{"item":"{\"id\": ","ok":false,"attempts":0,"latency_ms":0,"at":"2026-11-23T10:00:00.123Z","error":"input line 1 is not valid JSON","invalid":true}`+"\n")
	// Adapter fields: a key that needs escaping, a value that cannot be marshalled (written as
	// its text, so that the row still parses).
	line := AppendRow(nil, &Result{Item: Item{Line: "k"}, OK: true, Attempts: 1, At: at, Extra: map[string]any{`we"ird`: 1, "ch": make(chan int)}})
	var v map[string]any
	if err := json.Unmarshal(line, &v); err != nil || v[`we"ird`] != 1.0 || v["ch"] == nil {
		t.Errorf("AppendRow(odd extra fields) = %s, %v; want a row with both fields", line, err)
	}
}

// TestAppendRowEscaping: every string AppendRow writes reads back as encoding/json would have
// written it (invalid UTF-8 becomes U+FFFD), with the escapes a JSON Lines consumer needs.
func TestAppendRowEscaping(t *testing.T) {
	check := func(s, wantRaw string) {
		t.Helper()
		line := AppendRow(nil, &Result{Item: Item{Line: s}, Error: s})
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Errorf("AppendRow(item %q) = %q: want exactly one newline, at the end", s, line)
		}
		var r row
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("AppendRow(item %q) = %s: %v", s, line, err)
		}
		want, _ := json.Marshal(s)
		var wantStr string
		_ = json.Unmarshal(want, &wantStr)
		if r.key() != wantStr || r.Error != wantStr {
			t.Errorf("AppendRow(item %q) reads back %q, error %q; want %q", s, r.key(), r.Error, wantStr)
		}
		if wantRaw != "" && !bytes.Contains(line, []byte(`"item":`+wantRaw+`,`)) {
			t.Errorf("AppendRow(item %q) = %s, want the item written %s", s, line, wantRaw)
		}
	}
	check(`say "hi"`, `"say \"hi\""`)
	check(`back\slash`, `"back\\slash"`)
	check("tab\tnew\nline\rcr", `"tab\tnew\nline\rcr"`)
	check("\x00\x01\x1f", `"\u0000\u0001\u001f"`)
	check("\x7f", "\"\x7f\"")                                 // DEL is valid in a JSON string
	check("bad\xffutf8", `"bad\ufffdutf8"`)                   // an invalid byte becomes U+FFFD
	check("cut \xe6\x97", `"cut \ufffd\ufffd"`)               // a truncated rune: one U+FFFD per byte, as encoding/json
	check("ls\u2028ps\u2029", `"ls\u2028ps\u2029"`)           // line separators escaped for JavaScript readers
	check("<a href='x'>&amp;</a>", `"<a href='x'>&amp;</a>"`) // rows are not HTML
	check("日本語 ✓ 😀", `"日本語 ✓ 😀"`)
	check("", `""`)
	check(strings.Repeat("ab\"", 1000), "")
}
