package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonPlain is s in a JSON string as JavaScript or Python write it: only what JSON requires.
func jsonPlain(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	out := strings.TrimSuffix(b.String(), "\n")
	return out[1 : len(out)-1]
}

// uEscapes is every rune of s as \uXXXX (a surrogate pair beyond the BMP), hex in the case given.
func uEscapes(s string, upper bool) string {
	var b strings.Builder
	for _, r := range s {
		rs := []rune{r}
		if r >= 0x10000 {
			r -= 0x10000
			rs = []rune{0xD800 + r>>10, 0xDC00 + r&0x3FF}
		}
		for _, x := range rs {
			h := fmt.Sprintf(`\u%04x`, x)
			if upper {
				h = `\u` + strings.ToUpper(h[2:])
			}
			b.WriteString(h)
		}
	}
	return b.String()
}

// percentAll is every byte of s as %XX.
func percentAll(s string, upper bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		f := "%%%02x"
		if upper {
			f = "%%%02X"
		}
		fmt.Fprintf(&b, f, s[i])
	}
	return b.String()
}

// asciiCase changes the case of the ASCII letters of s: upper, lower or alternating.
func asciiCase(s string, mode int) string {
	b := []byte(s)
	for i, c := range b {
		up := mode == 0 || mode == 2 && i%2 == 0
		switch {
		case up && 'a' <= c && c <= 'z':
			b[i] = c - 32
		case !up && 'A' <= c && c <= 'Z':
			b[i] = c + 32
		}
	}
	return string(b)
}

// spelling is one way a server may write a secret back.
type spelling struct {
	name string
	f    func(s string) string
}

// spellings are the spellings the package must catch; every test and the fuzz target use them.
var spellings = []spelling{
	{"raw", func(s string) string { return s }},
	{"upper", func(s string) string { return asciiCase(s, 0) }},
	{"lower", func(s string) string { return asciiCase(s, 1) }},
	{"mixed case", func(s string) string { return asciiCase(s, 2) }},
	{"json", jsonPlain},
	{"json html", func(s string) string { b, _ := json.Marshal(s); return string(b[1 : len(b)-1]) }},
	{"json slash", func(s string) string { return strings.ReplaceAll(jsonPlain(s), "/", `\/`) }},
	{"json in json", func(s string) string { return jsonPlain(`"` + jsonPlain(s) + `"`) }},
	{`\u lower`, func(s string) string { return uEscapes(s, false) }},
	{`\u upper`, func(s string) string { return uEscapes(s, true) }},
	{`\u every other`, func(s string) string {
		var b strings.Builder
		i := 0
		for _, r := range s {
			if i%2 == 0 {
				b.WriteString(uEscapes(string(r), false))
			} else {
				b.WriteString(jsonPlain(string(r)))
			}
			i++
		}
		return b.String()
	}},
	{"go %q", func(s string) string { q := strconv.Quote(s); return q[1 : len(q)-1] }},
	{"go %+q", func(s string) string { q := strconv.QuoteToASCII(s); return q[1 : len(q)-1] }},
	{"query escape", url.QueryEscape},
	{"path escape", url.PathEscape},
	{"percent upper", func(s string) string { return percentAll(s, true) }},
	{"percent lower", func(s string) string { return percentAll(s, false) }},
	{"percent twice", func(s string) string { return url.QueryEscape(url.QueryEscape(s)) }},
	{"userinfo", func(s string) string { return url.UserPassword("u", s).String()[2:] }},
	{"hex", func(s string) string { return hex.EncodeToString([]byte(s)) }},
	{"HEX", func(s string) string { return strings.ToUpper(hex.EncodeToString([]byte(s))) }},
	{"python bytes", func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		}
		return b.String()
	}},
	{"html", html.EscapeString},
	{"html numeric", func(s string) string {
		var b strings.Builder
		for _, r := range s {
			fmt.Fprintf(&b, "&#%d;", r)
		}
		return b.String()
	}},
	{"base64", func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }},
	{"base64 raw", func(s string) string { return base64.RawStdEncoding.EncodeToString([]byte(s)) }},
	{"base64 url", func(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }},
	{"base64 url raw", func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }},
	{"basic 0", func(s string) string { return basic("", s) }},
	{"basic 1", func(s string) string { return basic("a", s) }},
	{"basic 2", func(s string) string { return basic("ab", s) }},
	{"basic before", func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s + ":trailing part")) }},
	{"base64 in json", func(s string) string {
		return jsonPlain(base64.StdEncoding.EncodeToString([]byte("x" + s)))
	}},
	{"base64 query-escaped", func(s string) string {
		return url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("xy" + s)))
	}},
}

// basic is the credential of an Authorization: Basic header, as a server may echo it.
func basic(user, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))
}

// leaks returns what of secret out still holds: a spelling, or an 8-byte piece of the secret
// (in any ASCII case) that before and after (the text around it) did not hold already. Every
// Mask in out is first cut out, so that a secret that is a piece of the word "REDACTED" (or
// that a Mask and its neighbours happen to spell) is not taken for a leak.
func leaks(out, before, after, secret string) []string {
	out = strings.ReplaceAll(out, Mask, "\x00")
	var found []string
	for _, sp := range spellings {
		if f := sp.f(secret); strings.Contains(out, f) {
			found = append(found, sp.name+": "+strconv.Quote(f))
		}
	}
	lowOut := strings.ToLower(out)
	lowAround := strings.ToLower(before + "\x00" + after)
	for i := 0; i+8 <= len(secret); i++ {
		p := strings.ToLower(secret[i : i+8])
		if strings.Contains(lowOut, p) && !strings.Contains(lowAround, p) {
			found = append(found, "piece "+strconv.Quote(secret[i:i+8]))
		}
	}
	return found
}

// testSecrets are secrets of different shapes: a bearer token, one with every character that
// an encoding escapes, one with non-ASCII letters and an emoji, the shortest scrubbed.
var testSecrets = []string{
	"sekret-xyz-0123456789",
	`p@ss/w+rd "quoted" \ & <tag> 'x' ?=#%`,
	"Grüße-Ωmega-😀-ключ",
	"abcd",
	"ab cd+ef",
}

func TestEverySpelling(t *testing.T) {
	for _, secret := range testSecrets {
		for _, sp := range spellings {
			f := sp.f(secret)
			for _, ctx := range [][2]string{{"", ""}, {"error: ", " (echoed)"}, {`{"auth":"`, `","n":1}`}, {"Qm9v", "Zm9v"}} {
				in := ctx[0] + f + ctx[1]
				out := String(in, []string{secret})
				if l := leaks(out, ctx[0], ctx[1], secret); len(l) > 0 {
					t.Errorf("secret %q, %s: %q → %q leaks %v", secret, sp.name, in, out, l)
				}
				if !strings.Contains(out, Mask) {
					t.Errorf("secret %q, %s: %q → %q has no %s", secret, sp.name, in, out, Mask)
				}
			}
		}
	}
}

func TestKeepsTheRest(t *testing.T) {
	secret := "sekret-xyz-0123456789"
	for _, c := range []struct{ in, want string }{
		{"no secret here", "no secret here"},
		{"Bearer sekret-xyz-0123456789!", "Bearer REDACTED!"},
		{`unsupported protocol scheme "sekret-xyz-0123456789"`, `unsupported protocol scheme "REDACTED"`},
		{`{"a":"SEKRET-XYZ-0123456789","b":2}`, `{"a":"REDACTED","b":2}`},
		{"x sekret-xyz-0123456789 y sekret-xyz-0123456789 z", "x REDACTED y REDACTED z"},
		// A secret twice, overlapping: nothing of either survives.
		{"sekret-xyz-0123456789sekret-xyz-0123456789", "REDACTED"},
		{"sekret-xyz-0123", "sekret-xyz-0123"}, // a prefix alone is not the secret
	} {
		if got := String(c.in, []string{secret}); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// A periodic secret found twice over, overlapping: no period of it is left over.
	if got := String("abcdefghabcdefghabcdefgh", []string{"abcdefghabcdefgh"}); got != Mask {
		t.Errorf("overlapping periodic secret: %q", got)
	}
}

func TestShortSecretsAreNotScrubbed(t *testing.T) {
	if got := String("abc abc", []string{"abc", ""}); got != "abc abc" {
		t.Errorf("a 3-byte secret was scrubbed: %q", got)
	}
	if Reach([]string{"abc"}) != 0 {
		t.Error("Reach counts a secret too short to scrub")
	}
}

// TestCutLeavesNoPiece: whatever the cut, a secret that straddles it leaves nothing of itself,
// in any spelling, when the text was read n+Reach bytes deep.
func TestCutLeavesNoPiece(t *testing.T) {
	secret := "sekret-xyz-0123456789"
	secrets := []string{secret}
	for _, sp := range spellings {
		body := strings.Repeat("a", 40) + sp.f(secret) + strings.Repeat("b", 40)
		for n := 1; n < len(body); n++ {
			read := body[:min(len(body), n+Reach(secrets))]
			kept := string(Cut([]byte(read), n, secrets))
			if len(kept) > n {
				t.Fatalf("%s: Cut to %d kept %d bytes", sp.name, n, len(kept))
			}
			if l := leaks(kept, "", "", secret); len(l) > 0 {
				t.Errorf("%s: cut at %d: %q leaks %v", sp.name, n, kept, l)
			}
		}
	}
}

// TestReachBoundsEverySpelling: no spelling is longer than Reach, or a cut after reading
// n+Reach bytes could leave a spelling's head unrecognised.
func TestReachBoundsEverySpelling(t *testing.T) {
	for _, secret := range testSecrets {
		for _, sp := range spellings {
			if n := len(sp.f(secret)); n > Reach([]string{secret}) {
				t.Errorf("%q as %s is %d bytes, past Reach %d", secret, sp.name, n, Reach([]string{secret}))
			}
		}
	}
}

func TestSet(t *testing.T) {
	var s Set
	if got := s.Text("https://u:p@h/x?k=v"); got != "https://REDACTED@h/x?k=REDACTED" {
		t.Errorf("empty Set Text = %q", got)
	}
	if !s.Add("abc", "old-token-1234") || s.Add("old-token-1234") || s.Len() != 1 {
		t.Fatalf("Add: len %d", s.Len())
	}
	s.Add("new-token-5678")
	if got := s.String("old-token-1234 new-token-5678 OLD-TOKEN-1234"); got != "REDACTED REDACTED REDACTED" {
		t.Errorf("Set.String = %q", got)
	}
}

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://u:p@host/path?api_key=k&q", "https://REDACTED@host/path?api_key=REDACTED&REDACTED"},
		{"http://host/p#frag", "http://host/p#REDACTED"},
		{"http://host/p", "http://host/p"},
		{"host/p?x=1&&y", "host/p?x=REDACTED&&REDACTED"},
	} {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	in := `Get "https://u:p@h/x?token=t": dial; see postgres://me:pw@db/x and HTTP://a/b?c=d not ://x?y=z`
	want := `Get "https://REDACTED@h/x?token=REDACTED": dial; see postgres://REDACTED@db/x and HTTP://a/b?c=REDACTED not ://x?y=z`
	if got := URLs(in); got != want {
		t.Errorf("URLs:\n got %q\nwant %q", got, want)
	}
}

// FuzzRedact hides a secret, in one of the spellings, in random text: nothing of it may
// survive, neither a spelling nor an 8-byte piece the random text did not hold already.
func FuzzRedact(f *testing.F) {
	for i, s := range testSecrets {
		f.Add("before ", " after", s, uint8(i))
	}
	f.Add(`{"x":"`, `"}`, "sekret-xyz-0123456789", uint8(8))
	f.Add("Basic ", "", "p@ss:w0rd!", uint8(28))
	f.Fuzz(func(t *testing.T, before, after, secret string, form uint8) {
		if len(secret) < MinLen || len(secret) > 64 || len(before)+len(after) > 4096 || strings.ContainsRune(secret, 0) || !utf8.ValidString(secret) {
			return
		}
		sp := spellings[int(form)%len(spellings)]
		in := before + sp.f(secret) + after
		out := String(in, []string{secret})
		if l := leaks(out, before, after, secret); len(l) > 0 {
			t.Fatalf("secret %q as %s in %q → %q leaks %v", secret, sp.name, in, out, l)
		}
	})
}

// BenchmarkString scrubs a 64 KiB JSON body (the default --max-body) holding one echoed token.
func BenchmarkString(b *testing.B) {
	secret := "sk-live-0123456789abcdefghijklmnop"
	var body strings.Builder
	for body.Len() < 64<<10 {
		body.WriteString(`{"id":12345,"name":"some ordinary text","url":"https://example.com/a?b=c%20d"},`)
	}
	body.WriteString(`{"echo":"Bearer ` + secret + `"}`)
	t := body.String()
	b.SetBytes(int64(len(t)))
	for b.Loop() {
		if !strings.Contains(String(t, []string{secret}), Mask) {
			b.Fatal("not scrubbed")
		}
	}
}
