package redact

import (
	"strings"
	"unicode"
)

// URL returns s with its userinfo, the value of each query parameter, and its fragment
// replaced by [Mask]: "https://u:p@host/path?api_key=k&q" becomes
// "https://REDACTED@host/path?api_key=REDACTED&REDACTED". A query part with no "=" is redacted
// whole, since some APIs take a bare token. The scheme, host and path are kept as they are. It
// does not need s to parse as a URL, so it is safe on any text meant to be one.
func URL(s string) string {
	rest := s
	var b strings.Builder
	b.Grow(len(s) + 16)
	// Authority: after "//", up to the first "/", "?" or "#".
	if i := strings.Index(rest, "//"); i >= 0 && !strings.ContainsAny(rest[:i], "/?#") {
		b.WriteString(rest[:i+2])
		rest = rest[i+2:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			b.WriteString(Mask)
			rest = rest[at:]
		}
	}
	q := strings.IndexAny(rest, "?#")
	if q < 0 {
		b.WriteString(rest)
		return b.String()
	}
	b.WriteString(rest[:q])
	rest = rest[q:]
	if rest[0] == '?' {
		b.WriteByte('?')
		query := rest[1:]
		frag := ""
		if h := strings.IndexByte(query, '#'); h >= 0 {
			query, frag = query[:h], query[h:]
		}
		for i, kv := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			if kv == "" {
				continue
			}
			if k, _, ok := strings.Cut(kv, "="); ok {
				b.WriteString(k)
				b.WriteString("=" + Mask)
			} else {
				b.WriteString(Mask)
			}
		}
		rest = frag
	}
	if rest != "" { // the fragment
		b.WriteString("#" + Mask)
	}
	return b.String()
}

// URLs passes every URL in t through [URL]: any scheme://, so that a postgres:// or redis://
// DSN's password goes too, the scheme in any case. A URL ends at white space, a quote or an
// angle bracket.
func URLs(t string) string {
	i := strings.Index(t, "://")
	if i < 0 {
		return t
	}
	var b strings.Builder
	for i >= 0 {
		start := i
		for start > 0 && isSchemeByte(t[start-1]) {
			start--
		}
		end := i + 3
		if k := strings.IndexFunc(t[end:], func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune("\"'`<>", r) }); k >= 0 {
			end += k
		} else {
			end = len(t)
		}
		b.WriteString(t[:start])
		if start == i { // "://" with no scheme before it: not a URL
			b.WriteString(t[start:end])
		} else {
			b.WriteString(URL(t[start:end]))
		}
		t = t[end:]
		i = strings.Index(t, "://")
	}
	b.WriteString(t)
	return b.String()
}

func isSchemeByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}
