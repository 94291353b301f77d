// Package redact keeps secrets out of what a run writes: it finds a secret in every spelling
// a server, a library or an input may send it back in and replaces it with [Mask], and it
// blanks the userinfo, query values and fragment of URLs. It is the one implementation of
// both: the adapters scrub what they keep of an answer and the texts of their errors with it,
// and the CLI gives the engine a hook that runs it on every outcome it takes in.
//
// A secret is matched rune by rune, each rune in any of its spellings, so that mixtures (a
// JSON string that escapes some characters, a URL that encodes some) are caught as well as
// the pure forms: as itself (letters in any case), JSON/JavaScript/Python/Go escapes (\uXXXX,
// \UXXXXXXXX, \xHH, \", \\, \/, \n…, nested up to [maxBackslashes] backslashes), percent
// encoding (%XX in any case, doubly encoded %25XX, + for a space) and HTML character
// references. Its hex encoding (any case) and its base64 encodings (standard and URL
// alphabets, at each of the three byte alignments, so inside a longer string such as a Basic
// credential too) are matched the same way. The whole span matched becomes [Mask].
package redact

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Mask replaces every secret found.
const Mask = "REDACTED"

// MinLen is the length in bytes of the shortest secret scrubbed: shorter values are not
// credentials, and replacing them would mangle ordinary text.
const MinLen = 4

// maxBackslashes bounds the run of backslashes taken as one escape: 1 for a JSON string, 2 or
// 3 for a JSON string inside a JSON string (a log line quoting a body), 4 for one more level.
// A bound keeps [Reach] finite.
const maxBackslashes = 4

// maxSpanPerByte bounds the bytes that one byte of a secret may take in any spelling matched:
// a hex digit (2 per byte) spelled as \\\\U00000036 (14 each) is the longest.
const maxSpanPerByte = 2 * (maxBackslashes + 10)

// Reach returns how many bytes past its start a spelling of one of secrets may end: a text
// cut at n bytes is safe to scrub when n+Reach bytes of it were read, since no spelling that
// starts before the cut can run past what was read.
func Reach(secrets []string) int {
	n := 0
	for _, s := range secrets {
		if len(s) >= MinLen {
			n = max(n, len(s)*maxSpanPerByte)
		}
	}
	return n
}

// String returns t with every spelling of each secret of [MinLen] bytes or more replaced by
// [Mask].
func String(t string, secrets []string) string {
	ms := compileAll(secrets)
	if len(ms) == 0 {
		return t
	}
	return scrub(t, ms)
}

// Bytes is [String] on a byte slice. It returns b itself when nothing was found.
func Bytes(b []byte, secrets []string) []byte {
	ms := compileAll(secrets)
	if len(ms) == 0 {
		return b
	}
	t := string(b)
	if r := scrub(t, ms); r != t {
		return []byte(r)
	}
	return b
}

// Cut scrubs b and then cuts it to at most n bytes, so that no piece of a secret survives a
// cut through it: the caller reads n+[Reach] bytes before it calls Cut. The result may be
// shorter than n when spellings were replaced.
func Cut(b []byte, n int, secrets []string) []byte {
	b = Bytes(b, secrets)
	if len(b) > n {
		b = b[:n]
	}
	return b
}

// Set is a growing set of secrets, safe for concurrent use: a long run adds the values it
// reads as it reads them (a rotated token stays scrubbed after it changes).
type Set struct {
	mu  sync.RWMutex
	raw map[string]bool
	ms  []*matcher
}

// Add adds the secrets of [MinLen] bytes or more to s and reports whether any was new.
func (s *Set) Add(secrets ...string) bool {
	added := false
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if len(v) < MinLen || s.raw[v] {
			continue
		}
		if s.raw == nil {
			s.raw = map[string]bool{}
		}
		s.raw[v] = true
		s.ms = append(s.ms, compile(v)...)
		added = true
	}
	return added
}

// Len returns how many secrets s holds.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.raw)
}

// String returns t with every spelling of every secret of s replaced by [Mask].
func (s *Set) String(t string) string {
	s.mu.RLock()
	ms := s.ms
	s.mu.RUnlock()
	if len(ms) == 0 {
		return t
	}
	return scrub(t, ms)
}

// Text is [Set.String] after [URLs]: for a message, where a URL's credentials and query
// values must go even when they are not a known secret.
func (s *Set) Text(t string) string { return s.String(URLs(t)) }

// matcher finds one spelling family of a secret: the secret itself, or its hex or one of its
// base64 encodings, each rune of it in any of the spellings that [matcher.spell] knows.
type matcher struct {
	units         []unit
	first, second [256]bool // the bytes a spelling of units[0], units[1] can start with
}

// unit is one rune of a secret with its UTF-8 bytes; r is -1 for a byte that is not valid
// UTF-8, which only its byte spellings match.
type unit struct {
	r     rune
	bytes string
}

func compileAll(secrets []string) []*matcher {
	var ms []*matcher
	for _, s := range secrets {
		if len(s) >= MinLen {
			ms = append(ms, compile(s)...)
		}
	}
	return ms
}

// compile returns the matchers of secret: itself, its hex, and its base64 cores. A core is
// the part of the encoding that depends on the secret's bytes alone, whatever precedes and
// follows them in the encoded string, for the secret starting at each of the three offsets
// modulo 3.
func compile(secret string) []*matcher {
	forms := []string{secret, hex.EncodeToString([]byte(secret))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for a := range 3 {
			buf := make([]byte, a+len(secret)+2)
			copy(buf[a:], secret)
			e := enc.EncodeToString(buf)
			from := (8*a + 5) / 6
			to := 8 * (a + len(secret)) / 6
			if core := e[from:to]; core != "" && !contains(forms, core) {
				forms = append(forms, core)
			}
		}
	}
	ms := make([]*matcher, 0, len(forms))
	for _, f := range forms {
		ms = append(ms, newMatcher(f))
	}
	return ms
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func newMatcher(s string) *matcher {
	m := &matcher{}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			r = -1
		}
		m.units = append(m.units, unit{r: r, bytes: s[i : i+n]})
		i += n
	}
	startBytes(&m.first, m.units[0])
	if len(m.units) > 1 {
		startBytes(&m.second, m.units[1])
	}
	return m
}

// startBytes marks in set the bytes that a spelling of u can start with.
func startBytes(set *[256]bool, u unit) {
	for _, c := range []byte(`\%&+`) {
		set[c] = true
	}
	set[u.bytes[0]] = true
	if u.bytes[0] < utf8.RuneSelf {
		set[u.bytes[0]|0x20], set[u.bytes[0]&^0x20] = true, true // harmless for a non-letter
	}
	if u.r >= 0 {
		variants := []rune{unicode.ToUpper(u.r), unicode.ToLower(u.r), unicode.ToTitle(u.r)}
		for f := unicode.SimpleFold(u.r); f != u.r; f = unicode.SimpleFold(f) {
			variants = append(variants, f)
		}
		for _, f := range variants {
			var b [utf8.UTFMax]byte
			utf8.EncodeRune(b[:], f)
			set[b[0]] = true
		}
	}
}

// unlikely reports cheaply that no match of m starts at t[i]: its first rune is there as
// itself, but what follows cannot start a spelling of the second. Most texts are mostly
// letters, and this spares them the full match.
func (m *matcher) unlikely(t string, i int) bool {
	c := t[i]
	if c == '\\' || c == '%' || c == '&' || c == '+' || c >= utf8.RuneSelf || len(m.units) < 2 {
		return false
	}
	return i+1 < len(t) && !m.second[t[i+1]] && m.units[0].r < utf8.RuneSelf
}

// scrub replaces every span of t that some matcher of ms matches, overlapping and adjacent
// spans merged into one Mask.
func scrub(t string, ms []*matcher) string {
	var spans [][2]int
	var cur, next endSet
	for _, m := range ms {
		for i := 0; i < len(t); i++ {
			if !m.first[t[i]] || m.unlikely(t, i) {
				continue
			}
			if end := m.matchAt(t, i, &cur, &next); end > i {
				spans = append(spans, [2]int{i, end})
			}
		}
	}
	if len(spans) == 0 {
		return t
	}
	// Merge: sort by start (few spans, insertion sort), then join overlapping ones.
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && spans[j][0] < spans[j-1][0]; j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
	var b strings.Builder
	b.Grow(len(t))
	pos := 0
	for i := 0; i < len(spans); {
		start, end := spans[i][0], spans[i][1]
		for i++; i < len(spans) && spans[i][0] <= end; i++ {
			end = max(end, spans[i][1])
		}
		b.WriteString(t[pos:start])
		b.WriteString(Mask)
		pos = end
	}
	b.WriteString(t[pos:])
	return b.String()
}

// endSet is a set of positions in a text, each added once: a list, and a mark per position
// (relative to base) stamped with the generation of the set, so that adding is O(1) and a
// new set costs no clearing.
type endSet struct {
	list []int
	mark []uint32
	gen  uint32
	base int
}

// reset empties s for positions from base on.
func (s *endSet) reset(base int) {
	s.list, s.base = s.list[:0], base
	s.gen++
	if s.gen == 0 { // wrapped: old stamps could pass for new ones
		clear(s.mark)
		s.gen = 1
	}
}

// add adds p to s unless it is there.
func (s *endSet) add(p int) {
	k := p - s.base
	if k >= len(s.mark) {
		s.mark = append(s.mark, make([]uint32, k+1-len(s.mark)+64)...)
	}
	if s.mark[k] == s.gen {
		return
	}
	s.mark[k] = s.gen
	s.list = append(s.list, p)
}

// matchAt returns the end of the longest match of m that starts at i, or -1. It follows every
// way the text may spell each unit at once (a set of positions), so that no choice of
// spelling needs undoing; cur and next are reused buffers.
func (m *matcher) matchAt(t string, i int, cur, next *endSet) int {
	cur.reset(i)
	cur.add(i)
	for _, u := range m.units {
		next.reset(i)
		for _, p := range cur.list {
			spell(t, p, u, next)
		}
		if len(next.list) == 0 {
			return -1
		}
		cur, next = next, cur
	}
	end := -1
	for _, p := range cur.list {
		end = max(end, p)
	}
	return end
}

// spell adds to ends the end of each spelling of u that starts at t[p].
func spell(t string, p int, u unit, ends *endSet) {
	if p >= len(t) {
		return
	}
	if u.r >= 0 {
		// As itself, in any case.
		if r, n := utf8.DecodeRuneInString(t[p:]); foldEq(r, u.r) && (r != utf8.RuneError || n > 1) {
			ends.add(p + n)
		}
		if u.r == ' ' { // a form's space: +, which may be encoded in turn
			byteSpell(t, p, "+", ends)
		}
		escapes(t, p, u.r, ends)
		entity(t, p, u.r, ends)
	}
	// Byte by byte: each byte as itself, %XX (%25XX…) or \xHH.
	byteSpell(t, p, u.bytes, ends)
}

// byteSpell adds the ends of the spellings of the bytes bs starting at t[p], each byte
// spelled on its own.
func byteSpell(t string, p int, bs string, ends *endSet) {
	var cur, next [8]int
	c := append(cur[:0], p)
	for k := 0; k < len(bs); k++ {
		b := bs[k]
		n := next[:0]
		for _, q := range c {
			if q >= len(t) {
				continue
			}
			if t[q] == b || b < utf8.RuneSelf && foldEq(rune(t[q]), rune(b)) {
				n = addSmall(n, q+1)
			}
			if t[q] == '%' {
				r := q + 1
				for k := 0; k < 2 && strings.HasPrefix(t[r:], "25"); k++ {
					if v, ok := hexAt(t, r+2, 2); ok && v == int(b) {
						n = addSmall(n, r+4)
					}
					r += 2
				}
				if v, ok := hexAt(t, q+1, 2); ok && v == int(b) {
					n = addSmall(n, q+3)
				}
			}
			if e := backslashes(t, q); e > q && e < len(t) && t[e] == 'x' {
				if v, ok := hexAt(t, e+1, 2); ok && v == int(b) {
					n = addSmall(n, e+3)
				}
			}
		}
		if len(n) == 0 {
			return
		}
		c = append(cur[:0], n...)
	}
	for _, q := range c {
		ends.add(q)
	}
}

// addSmall appends q to a small set unless it is there or the set is full (8 ends are more
// than any byte's spellings give).
func addSmall(set []int, q int) []int {
	for _, x := range set {
		if x == q {
			return set
		}
	}
	if len(set) == cap(set) {
		return set
	}
	return append(set, q)
}

// backslashes returns the end of a run of 1 to maxBackslashes backslashes at t[p], or p.
func backslashes(t string, p int) int {
	e := p
	for e < len(t) && e-p < maxBackslashes && t[e] == '\\' {
		e++
	}
	return e
}

// shortEscapes maps the character after a backslash to the rune it stands for.
var shortEscapes = map[byte]rune{'"': '"', '\\': '\\', '/': '/', '\'': '\'', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v', '0': 0, 'a': '\a'}

// escapes adds the ends of a backslash escape of r at t[p]: \uXXXX (a surrogate pair beyond the
// BMP), \UXXXXXXXX, or a short escape such as \" or \n, behind 1 to maxBackslashes
// backslashes each. Every run length is tried, so that a backslash of the secret spelled as
// several is matched whatever follows.
func escapes(t string, p int, r rune, ends *endSet) {
	if p >= len(t) || t[p] != '\\' {
		return
	}
	for e := p + 1; e <= p+maxBackslashes && e <= len(t); e++ {
		if e < len(t) {
			c := t[e]
			if sr, ok := shortEscapes[c]; ok && sr == r {
				ends.add(e + 1)
			}
			switch c {
			case 'u':
				if v, ok := hexAt(t, e+1, 4); ok {
					if foldEq(rune(v), r) {
						ends.add(e + 5)
					} else if 0xD800 <= v && v < 0xDC00 {
						// A surrogate pair: the low half behind its own backslashes.
						if f := backslashes(t, e+5); f > e+5 && f < len(t) && t[f] == 'u' {
							if lo, ok := hexAt(t, f+1, 4); ok && 0xDC00 <= lo && lo < 0xE000 {
								if foldEq(0x10000+rune(v-0xD800)<<10+rune(lo-0xDC00), r) {
									ends.add(f + 5)
								}
							}
						}
					}
				}
			case 'U':
				if v, ok := hexAt(t, e+1, 8); ok && foldEq(rune(v), r) {
					ends.add(e + 9)
				}
			}
		}
		if e >= len(t) || t[e] != '\\' {
			return
		}
	}
}

// htmlNamed are the named character references that HTML escaping writes.
var htmlNamed = map[string]rune{"&quot;": '"', "&amp;": '&', "&lt;": '<', "&gt;": '>', "&apos;": '\''}

// entity adds the end of an HTML character reference of r at t[p]: &#115;, &#x73; or a named
// one.
func entity(t string, p int, r rune, ends *endSet) {
	if t[p] != '&' {
		return
	}
	if p+1 < len(t) && t[p+1] == '#' {
		q, base := p+2, 10
		if q < len(t) && (t[q] == 'x' || t[q] == 'X') {
			q, base = q+1, 16
		}
		v, e := 0, q
		for e < len(t) && e-q < 8 {
			d := digit(t[e])
			if d < 0 || d >= base {
				break
			}
			v = v*base + d
			e++
		}
		if e > q && e < len(t) && t[e] == ';' && foldEq(rune(v), r) {
			ends.add(e + 1)
		}
		return
	}
	for name, nr := range htmlNamed {
		if nr == r && strings.HasPrefix(t[p:], name) {
			ends.add(p + len(name))
		}
	}
}

// hexAt parses n hex digits (any case) at t[p].
func hexAt(t string, p, n int) (int, bool) {
	if p+n > len(t) {
		return 0, false
	}
	v := 0
	for k := p; k < p+n; k++ {
		d := digit(t[k])
		if d < 0 || d >= 16 {
			return 0, false
		}
		v = v<<4 | d
	}
	return v, true
}

func digit(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// foldEq reports whether a and b are the same letter in some case (or the same rune).
func foldEq(a, b rune) bool {
	if a == b {
		return true
	}
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		a, b = a|0x20, b|0x20
		return a == b && 'a' <= a && a <= 'z'
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	// Case mappings outside the fold orbits: strings.ToUpper turns ı into I.
	return unicode.ToUpper(a) == unicode.ToUpper(b) || unicode.ToLower(a) == unicode.ToLower(b)
}
