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
