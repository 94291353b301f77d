// Package redacttest is a test kit: it finds what of a secret a text gives away, for the tests
// that feed a secret to a hostile server and read every output of the run. Tests only.
package redacttest

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Leaks returns the spellings of secret that text holds (raw, JSON-escaped, \u-escaped,
// URL-encoded in query and path forms, base64 in both alphabets, hex; any letter case) and the
// 8-byte pieces of it that text holds in any case, each REDACTED cut out first so that the
// word itself is not taken for a piece. None is what a clean output gives.
func Leaks(text, secret string) []string {
	text = strings.ReplaceAll(text, "REDACTED", "\x00")
	jsonS, _ := json.Marshal(secret)
	var u strings.Builder
	for _, r := range secret {
		fmt.Fprintf(&u, `\u%04x`, r)
	}
	forms := []string{
		secret, string(jsonS[1 : len(jsonS)-1]), u.String(), url.QueryEscape(secret), url.PathEscape(secret),
		base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret)),
		hex.EncodeToString([]byte(secret)),
	}
	var found []string
	low := strings.ToLower(text)
	for _, f := range forms {
		if strings.Contains(low, strings.ToLower(f)) {
			found = append(found, "spelling "+f)
		}
	}
	for i := 0; i+8 <= len(secret); i++ {
		if p := strings.ToLower(secret[i : i+8]); strings.Contains(low, p) {
			found = append(found, "piece "+p)
		}
	}
	return found
}

// Token is the secret of the echo tests: it starts with a letter and has only the characters
// of a URL scheme, so that a server can send it back as one.
const Token = "sekret-xyz-0123456789abcdef"

// Echo returns the raw HTTP answers of a hostile server by path (no leading slash), each
// sending auth (the request's Authorization header, "Bearer <token>") or the token back
// through one route: the seven errors of Go's HTTP client, the reason phrase, and a body
// holding the token across a --max-body cut of 40 bytes and in each encoding. Bodies come
// with bodyStatus ("200 OK", or "500 Internal Server Error" to keep them whatever the verdict).
func Echo(bodyStatus string) map[string]func(auth, token string) string {
	body := func(b string) string {
		return fmt.Sprintf("HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s", bodyStatus, len(b), b)
	}
	return map[string]func(auth, token string) string{
		// Go's client quotes each of these in its error.
		"status":          func(auth, token string) string { return token + "\r\n\r\n" },
		"colon":           func(auth, token string) string { return "HTTP/1.1 200 OK\r\n" + auth + "\r\n\r\n" },
		"length":          func(auth, token string) string { return "HTTP/1.1 200 OK\r\nContent-Length: " + token + "\r\n\r\n" },
		"te":              func(auth, token string) string { return "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + token + "\r\n\r\n" },
		"location-parse":  func(auth, token string) string { return redirect(":" + token) },
		"location-dns":    func(auth, token string) string { return redirect("http://" + token + ".invalid/") },
		"location-scheme": func(auth, token string) string { return redirect(strings.ToUpper(token) + "://x/") },
		// The reason phrase becomes the message of a failed call.
		"reason": func(auth, token string) string { return "HTTP/1.1 499 " + auth + "\r\nContent-Length: 0\r\n\r\n" },
		// The kept body: the token straddling the cut at 40 bytes, then in each encoding.
		"cut": func(auth, token string) string {
			return body(strings.Repeat("x", 30) + auth + strings.Repeat("y", 100))
		},
		"json-u": func(auth, token string) string { return body(`{"a":"` + JSONU(token) + `"}`) },
		"urlenc": func(auth, token string) string { return body("t=" + url.QueryEscape("p@ss/"+token)) },
		"base64": func(auth, token string) string { return body(base64.StdEncoding.EncodeToString([]byte(token))) },
		"basic": func(auth, token string) string {
			return body("Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+token)))
		},
		"base64url": func(auth, token string) string {
			return body(base64.RawURLEncoding.EncodeToString([]byte("ab" + token)))
		},
		"hex":   func(auth, token string) string { return body(strings.ToUpper(hex.EncodeToString([]byte(token)))) },
		"mixed": func(auth, token string) string { return body(`"` + JSONU(token[:9]) + url.PathEscape(token[9:]) + `"`) },
	}
}

// redirect is a 302 to loc.
func redirect(loc string) string {
	return "HTTP/1.1 302 Found\r\nLocation: " + loc + "\r\nContent-Length: 0\r\n\r\n"
}

// JSONU spells every rune of s as a JSON \u escape, in upper-case hex.
func JSONU(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, `\u%04X`, r)
	}
	return b.String()
}
