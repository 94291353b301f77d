package adapters

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redact"
)

// The fuzz targets of the template expander and the Retry-After parser. Their seeds are added
// here and committed under testdata/fuzz/FuzzXxx; both run as regular tests, and `make fuzz`
// runs each target for a bounded time.

// tmplSource writes a compiled template back as template text.
func tmplSource(t *Template) string {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.kind {
		case tmplLiteral:
			b.WriteString(p.text)
		case tmplItem:
			b.WriteString("{item}")
		case tmplField:
			b.WriteString("{." + p.text + "}")
		case tmplEnv:
			b.WriteString("${" + p.text + "}")
		}
	}
	return b.String()
}

// fuzzEnv is the environment of the fuzzed expansions: every variable is set except UNSET.
func fuzzEnv(name string) (string, bool) {
	if name == "UNSET" {
		return "", false
	}
	return "<" + name + ">", true
}

// fuzzItems returns the items the fuzzed line stands for: a text item, and when the line is a
// JSON object, a JSON Lines item as the engine decodes it (numbers as json.Number) and one with
// numbers as float64 (as a caller building items by hand might).
func fuzzItems(line string) []engine.Item {
	items := []engine.Item{{Line: line}}
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var obj map[string]any
	if dec.Decode(&obj) == nil && obj != nil {
		items = append(items, engine.Item{Line: line, JSON: true, Fields: obj})
	}
	var fobj map[string]any
	if json.Unmarshal([]byte(line), &fobj) == nil && fobj != nil {
		items = append(items, engine.Item{Line: line, JSON: true, Fields: fobj})
	}
	return items
}

// neutral returns it with its line and every field replaced by "x": a value with nothing to
// escape, to compare an expansion with.
func neutral(it engine.Item) engine.Item {
	n := engine.Item{Line: "x", JSON: it.JSON}
	if it.Fields != nil {
		n.Fields = make(map[string]any, len(it.Fields))
		for k := range it.Fields {
			n.Fields[k] = "x"
		}
	}
	return n
}

// urlShape counts the characters that give a URL its structure: '/', '?' and '#' anywhere, '&'
// and '=' in the query (after the first '?').
func urlShape(s string) string {
	q := ""
	if i := strings.IndexByte(s, '?'); i >= 0 {
		q = s[i:]
	}
	return fmt.Sprintf("/%d ?%d #%d &%d =%d", strings.Count(s, "/"), strings.Count(s, "?"), strings.Count(s, "#"),
		strings.Count(q, "&"), strings.Count(q, "="))
}

// FuzzTemplate: ParseTemplate and ParseURLTemplate never panic, a compiled template writes
// back as its source (nothing dropped or doubled), a URL template compiles exactly when the
// same text compiles as a plain template without ${NAME}, and their errors name the kind of
// template. Expand never panics; it fails exactly when a {.name} has no value in the item or a
// ${NAME} is unset, and its errors are Permanent. A plain template with a text item expands to
// its literal text with {item} and ${NAME} replaced. For a URL template that starts with the
// literal "http://host/", the values of {item} and {.name} are escaped: whatever the item
// holds, the expansion has the same '/', '?' and '#' and the same '&' and '=' in the query as
// the expansion of an item whose values are "x", and the escaping loses nothing (the value
// unescapes back to the item). A template that starts with {item} inserts it as it is.
// RedactURL never panics on an expansion, gives the same text when applied again, and hides a
// query value and a fragment whatever they hold.
func FuzzTemplate(f *testing.F) {
	for _, s := range [][2]string{
		{"{item}", "https://api.example.com/v1/items/7?x=1#f"},
		{"users/{item}?q={item}&page=2", "a b/c?d#e&f=g%zz+"},
		{"{.id}/{.name}?tag={.tags}&n={.n}", `{"id":7,"name":"x/y?z#w","tags":["a","b"],"n":null,"ok":true}`},
		{`{"id": {.id}, "q": "{item}", "key": "${API_KEY}", "u": "${UNSET}"}`, `{"id":1e400,"q":"\u2028"}`},
		{"Bearer ${TOKEN}", "plain"},
		{"unclosed {.name and ${NAME", "x"},
		{"{.} ${} ${1BAD} ${ok_1} $item {item {it} {{item}} }{", "{}"},
		{"{.a.b}{.a b}{.}}", `{"a.b":"\u0000","a b":{"c":[1,2]}}`},
		{"?{item}#{item}", "&=?#/"},
		{"\xff{item}\x00", "\xfe\x00/\r\n"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, src, line string) {
		plain, perr := ParseTemplate(src)
		urlT, uerr := ParseURLTemplate(src)
		if perr != nil && !strings.HasPrefix(perr.Error(), "adapters: template: ") {
			t.Errorf("ParseTemplate(%q) error = %q, want the prefix \"adapters: template: \"", src, perr)
		}
		if uerr != nil && !strings.HasPrefix(uerr.Error(), "adapters: url template: ") {
			t.Errorf("ParseURLTemplate(%q) error = %q, want the prefix \"adapters: url template: \"", src, uerr)
		}
		if perr == nil {
			if got := tmplSource(plain); got != src {
				t.Errorf("ParseTemplate(%q) writes back as %q", src, got)
			}
			if wantURL := !plain.UsesEnv(); (uerr == nil) != wantURL {
				t.Errorf("ParseURLTemplate(%q) error = %v; ParseTemplate compiles it, UsesEnv() = %v", src, uerr, plain.UsesEnv())
			}
		} else if uerr == nil {
			t.Errorf("ParseURLTemplate(%q) compiles what ParseTemplate rejects: %v", src, perr)
		}
		items := fuzzItems(line)
		for _, tmpl := range []*Template{plain, urlT} {
			if tmpl == nil {
				continue
			}
			for _, it := range items {
				checkExpand(t, tmpl, it)
			}
		}

		// Escaping, for URL templates that start with a literal.
		if u, err := ParseURLTemplate("http://host/" + src); err == nil {
			for _, it := range items {
				checkEscaped(t, u, it)
			}
		}
		for _, c := range []struct{ src, field string }{
			{"http://host/{item}", ""},
			{"http://host/a?q={item}", ""},
			{"http://host/{.k}?v={.k}", "k"},
		} {
			u, err := ParseURLTemplate(c.src)
			if err != nil {
				t.Fatal(err)
			}
			it := engine.Item{Line: line}
			if c.field != "" {
				it = engine.Item{Line: `{"k":…}`, JSON: true, Fields: map[string]any{"k": line}}
			}
			s, err := u.Expand(it, nil)
			if err != nil {
				t.Fatalf("%s.Expand(%q) error = %v", c.src, line, err)
			}
			rest := strings.TrimPrefix(s, "http://host/")
			var path, query string
			switch {
			case c.field != "":
				path, query, _ = strings.Cut(rest, "?v=")
			case strings.HasPrefix(rest, "a?q="):
				query = strings.TrimPrefix(rest, "a?q=")
			default:
				path = rest
			}
			if p, err := url.PathUnescape(path); path != "" && (err != nil || p != line) {
				t.Errorf("%s.Expand(%q) = %q: the path unescapes to %q, %v", c.src, line, s, p, err)
			}
			if q, err := url.QueryUnescape(query); query != "" && (err != nil || q != line) {
				t.Errorf("%s.Expand(%q) = %q: the query value unescapes to %q, %v", c.src, line, s, q, err)
			}
		}
		raw, err := ParseURLTemplate("{item}/x?y={item}")
		if err != nil {
			t.Fatal(err)
		}
		if s, err := raw.Expand(engine.Item{Line: line}, nil); err != nil || !strings.HasPrefix(s, line+"/x?y=") {
			t.Errorf("{item}/x?y={item}.Expand(%q) = %q, %v; want it to start with the item as it is", line, s, err)
		}

		// RedactURL.
		for _, s := range []string{src, line, "http://host/" + src} {
			r := redact.URL(s)
			if again := redact.URL(r); again != r {
				t.Errorf("redact.URL(%q) = %q, but redact.URL(%q) = %q", s, r, r, again)
			}
		}
		s := "https://u:p@host/p?k=" + url.QueryEscape(line) + "&" + url.QueryEscape(line) + "#" + line
		want := "https://REDACTED@host/p?k=REDACTED&REDACTED#REDACTED"
		if line == "" {
			want = "https://REDACTED@host/p?k=REDACTED&#REDACTED"
		}
		if got := redact.URL(s); got != want {
			t.Errorf("redact.URL(%q) = %q, want %q", s, got, want)
		}
	})
}

// checkExpand expands tmpl for it and checks when it fails and, for a plain template and a
// text item, what it gives.
func checkExpand(t *testing.T, tmpl *Template, it engine.Item) {
	t.Helper()
	wantErr := false
	var want strings.Builder
	for _, p := range tmpl.parts {
		switch p.kind {
		case tmplLiteral:
			want.WriteString(p.text)
		case tmplItem:
			want.WriteString(it.Line)
		case tmplField:
			if _, ok := it.Fields[p.text]; !ok {
				wantErr = true
			}
		case tmplEnv:
			v, ok := fuzzEnv(p.text)
			wantErr = wantErr || !ok
			want.WriteString(v)
		}
	}
	s, err := tmpl.Expand(it, fuzzEnv)
	if (err != nil) != wantErr {
		t.Fatalf("%q.Expand(%q, JSON: %v) = %q, %v; want an error: %v", tmplSource(tmpl), it.Line, it.JSON, s, err, wantErr)
	}
	if err != nil {
		if !engine.IsPermanent(err) {
			t.Errorf("%q.Expand(%q) error %v is not Permanent", tmplSource(tmpl), it.Line, err)
		}
		return
	}
	if !tmpl.url && !it.JSON && s != want.String() {
		t.Errorf("%q.Expand(%q) = %q, want %q", tmplSource(tmpl), it.Line, s, want.String())
	}
}

// checkEscaped checks that the values u expands it with are escaped.
func checkEscaped(t *testing.T, u *Template, it engine.Item) {
	t.Helper()
	s1, err1 := u.Expand(it, nil)
	s0, err0 := u.Expand(neutral(it), nil)
	if err1 != nil || err0 != nil {
		return // a {.name} the item does not have
	}
	if got, want := urlShape(s1), urlShape(s0); got != want {
		t.Errorf("%q.Expand(%q) = %q: shape %s, want %s as in %q (a value was not escaped)", tmplSource(u), it.Line, s1, got, want, s0)
	}
	if u0, err := url.Parse(s0); err == nil {
		u1, err := url.Parse(s1)
		if err != nil || u1.Host != u0.Host {
			t.Errorf("%q.Expand(%q) = %q: url.Parse = %v, %v; with values \"x\", host %q", tmplSource(u), it.Line, s1, u1, err, u0.Host)
		}
	}
}

// FuzzRetryAfter: ParseRetryAfter never panics and never returns a negative wait; when it does
// not parse it returns (0, false). Delta-seconds (digits only, white space around them allowed)
// are that many seconds, or the largest Duration when that does not fit; a negative number is
// (0, false); otherwise an HTTP-date in one of the three formats of http.ParseTime is the wait
// from now to it, 0 for a date in the past; anything else is (0, false).
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).Unix()
	for _, v := range []string{
		"0", "-1", "120", " 7 ", "\t30\r\n", "+5", "1.5", "1e3", "0x10", "٣", "",
		"Mon, 23 Nov 2026 10:00:30 GMT", "Sunday, 22-Nov-26 10:00:00 GMT", "Mon Nov 23 10:02:00 2026",
		"Thu, 01 Jan 1970 00:00:00 GMT", "Mon, 23 Nov 2026 10:00:30 UTC",
		"315360000", "9223372036", "9223372037", "99999999999999999999999", "-9223372036854775808",
		"soon", "Mon, 32 Nov 2026 10:00:30 GMT",
	} {
		f.Add(v, now)
	}
	f.Add("Fri, 31 Dec 9999 23:59:59 GMT", int64(math.MinInt64))
	f.Add("Mon, 01 Jan 0001 00:00:00 GMT", int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, v string, nowUnix int64) {
		now := time.Unix(nowUnix, 0)
		d, ok := ParseRetryAfter(v, now)
		if d < 0 || !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q, %v) = %v, %v; want a wait ≥ 0, and 0 when false", v, now, d, ok)
		}
		tv := strings.TrimSpace(v)
		var want time.Duration
		var wantOK bool
		switch {
		case tv == "":
		case allDigits(tv):
			wantOK = true
			n, err := strconv.ParseInt(tv, 10, 64)
			if err == nil && n <= math.MaxInt64/int64(time.Second) {
				want = time.Duration(n) * time.Second
			} else {
				want = math.MaxInt64
			}
		case tv[0] == '-' && allDigits(tv[1:]):
		default:
			if at, err := http.ParseTime(tv); err == nil {
				want, wantOK = max(at.Sub(now), 0), true
			}
		}
		if d != want || ok != wantOK {
			t.Errorf("ParseRetryAfter(%q, %v) = %v, %v; want %v, %v", v, now, d, ok, want, wantOK)
		}
	})
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
