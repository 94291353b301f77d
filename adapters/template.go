package adapters

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/throttle-dev/throttle/engine"
)

// Template is a compiled template: a URL, a header value or a request body whose placeholders
// are filled in for each item. It is compiled once by [ParseTemplate] or [ParseURLTemplate]
// and expanded per call by [Template.Expand], which walks a slice of literal and placeholder
// parts (no regular expression runs per call).
//
// The placeholders are:
//
//   - {item} is the item's line; for a JSON Lines item, the object's text.
//
//   - {.name} is the field "name" of a JSON Lines item: a string value is inserted as it is
//     (not quoted, not JSON-escaped), any other value as its JSON text (7, true, null,
//     {"a":1}). The name is a top-level key taken literally: {.a.b} is the key "a.b".
//
//   - ${NAME} is the environment variable NAME (letters, digits and _, not starting with a
//     digit), read at each expansion, so a rotated token is picked up without a restart. It is
//     allowed in headers and bodies only: a secret in a URL would leak into errors and logs.
//
//   - {items} is a whole chunk (run --chunk N) as a JSON array: JSON Lines items as their
//     objects, lines of text as JSON strings; {items_jsonl} is the chunk as JSON Lines. They
//     are allowed in bodies only, for batch endpoints, and exclude {item} and {.name}.
//
// There is no escape syntax and none is needed: a "{" that does not start "{item}" or "{." is
// literal, and so is a "$" that is not followed by "{". So a JSON body such as
// {"id": {.id}, "q": "{item}"} means what it looks like.
//
// In a URL template, the values of {item} and {.name} are escaped: with [url.PathEscape]
// before the URL's "?", with [url.QueryEscape] after it (so a value cannot add a query
// parameter with "&" or "="). A placeholder that starts the template is inserted raw, so that
// '{item}' runs a list of whole URLs.
//
// A Template is immutable and safe for concurrent use.
type Template struct {
	parts []tmplPart
	url   bool // a URL template: escape values, no ${NAME}
	size  int  // bytes of literal text, to size the output
}

type tmplPartKind uint8

const (
	tmplLiteral tmplPartKind = iota
	tmplItem
	tmplField
	tmplEnv
	tmplItems      // {items}: the chunk as a JSON array
	tmplItemsJSONL // {items_jsonl}: the chunk as JSON Lines
)

// tmplPart is one piece of a template: literal text, {item}, {.name}, ${NAME}, {items} or
// {items_jsonl}.
type tmplPart struct {
	kind tmplPartKind
	text string // the literal text, the field name or the variable name
}

// ParseTemplate compiles a header value or body template. Its error says what is wrong and at
// which byte: an unclosed "{." or "${", an empty field name, a bad variable name.
func ParseTemplate(src string) (*Template, error) {
	t, err := parseTemplate(src, false)
	if err != nil {
		return nil, fmt.Errorf("adapters: template: %w", err)
	}
	return t, nil
}

// ParseURLTemplate compiles a URL template: like [ParseTemplate], but values are escaped (see
// [Template]) and ${NAME} is rejected.
func ParseURLTemplate(src string) (*Template, error) {
	t, err := parseTemplate(src, true)
	if err != nil {
		return nil, fmt.Errorf("adapters: url template: %w", err)
	}
	return t, nil
}

// parseTemplate compiles src. Its errors carry no package prefix; the callers add the context.
func parseTemplate(src string, isURL bool) (*Template, error) {
	t := &Template{url: isURL}
	lit := 0 // start of the literal text not yet appended
	i := 0
	for i < len(src) {
		j := strings.IndexAny(src[i:], "{$")
		if j < 0 {
			break
		}
		i += j
		rest := src[i:]
		switch {
		case strings.HasPrefix(rest, "{item}"):
			t.addLiteral(src[lit:i])
			t.parts = append(t.parts, tmplPart{kind: tmplItem})
			i += len("{item}")
			lit = i
		case strings.HasPrefix(rest, "{items}"), strings.HasPrefix(rest, "{items_jsonl}"):
			kind, word := tmplItems, "{items}"
			if strings.HasPrefix(rest, "{items_jsonl}") {
				kind, word = tmplItemsJSONL, "{items_jsonl}"
			}
			if isURL {
				return nil, fmt.Errorf("%s at byte %d: a chunk's items go in the body, not the url", word, i)
			}
			t.addLiteral(src[lit:i])
			t.parts = append(t.parts, tmplPart{kind: kind})
			i += len(word)
			lit = i
		case strings.HasPrefix(rest, "{."):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("unclosed \"{.\" at byte %d", i)
			}
			name := rest[2:end]
			if name == "" {
				return nil, fmt.Errorf("empty field name \"{.}\" at byte %d", i)
			}
			t.addLiteral(src[lit:i])
			t.parts = append(t.parts, tmplPart{kind: tmplField, text: name})
			i += end + 1
			lit = i
		case strings.HasPrefix(rest, "${"):
			end := strings.IndexByte(rest, '}')
			if isURL {
				shown := "${"
				if end >= 0 {
					shown = rest[:end+1]
				}
				return nil, fmt.Errorf("%s at byte %d: environment variables are not allowed in a url, "+
					"where a secret would leak into errors and logs; put it in a header or the body", shown, i)
			}
			if end < 0 {
				return nil, fmt.Errorf("unclosed \"${\" at byte %d", i)
			}
			name := rest[2:end]
			if !validEnvName(name) {
				return nil, fmt.Errorf("bad variable name %q at byte %d; want letters, digits and _, not starting with a digit", name, i)
			}
			t.addLiteral(src[lit:i])
			t.parts = append(t.parts, tmplPart{kind: tmplEnv, text: name})
			i += end + 1
			lit = i
		default:
			i++ // a literal "{" or "$"
		}
	}
	t.addLiteral(src[lit:])
	return t, nil
}

func (t *Template) addLiteral(s string) {
	if s == "" {
		return
	}
	t.parts = append(t.parts, tmplPart{kind: tmplLiteral, text: s})
	t.size += len(s)
}

// validEnvName reports whether s is a portable environment variable name.
func validEnvName(s string) bool {
	if s == "" || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// startsWithLiteral reports whether the template begins with literal text (so its scheme and
// host can be checked before any item is seen).
func (t *Template) startsWithLiteral() bool {
	return len(t.parts) > 0 && t.parts[0].kind == tmplLiteral
}

// PerItem reports whether the template has {item} or {.name}: placeholders of one item,
// which a batch call over a whole chunk cannot fill.
func (t *Template) PerItem() bool {
	for _, p := range t.parts {
		if p.kind == tmplItem || p.kind == tmplField {
			return true
		}
	}
	return false
}

// Batch reports whether the template has {items} or {items_jsonl}: it sends a whole chunk.
func (t *Template) Batch() bool {
	for _, p := range t.parts {
		if p.kind == tmplItems || p.kind == tmplItemsJSONL {
			return true
		}
	}
	return false
}

// UsesEnv reports whether the template has a ${NAME} placeholder.
func (t *Template) UsesEnv() bool {
	for _, p := range t.parts {
		if p.kind == tmplEnv {
			return true
		}
	}
	return false
}

// EnvNames returns the variables that the template's ${NAME} placeholders read, each once, in
// the order of their first use: what must be set before the first call.
func (t *Template) EnvNames() []string {
	var names []string
	for _, p := range t.parts {
		if p.kind == tmplEnv && !slices.Contains(names, p.text) {
			names = append(names, p.text)
		}
	}
	return names
}

// EnvUse is one ${NAME} that an adapter's configuration reads at call time, and where. The
// configurations list theirs (HTTPConfig.EnvUses and the like) so that the CLI can check,
// before the first call, that each variable is set: an unset one would otherwise fail every
// item, one row at a time.
type EnvUse struct {
	// Name is the variable.
	Name string
	// Option is the setting whose template reads it, spelled as the CLI's flag without its
	// dashes: "header", "body", "dsn".
	Option string
	// Shown is the template as a message may quote it (it holds the placeholder, never a
	// value), or "" when it should not be quoted: a DSN may hold a literal password, and a
	// long body would bury the message.
	Shown string
}

// maxShownTemplate is the longest template an [EnvUse] quotes.
const maxShownTemplate = 80

// envUses lists the ${NAME} of src, a template of option; shown is how a message may quote
// it ("" for not at all). A template that does not compile lists none: the adapter's
// constructor reports it.
func envUses(option, src, shown string) []EnvUse {
	t, err := parseTemplate(src, false)
	if err != nil {
		return nil
	}
	if len(shown) > maxShownTemplate || strings.ContainsAny(shown, "\r\n") {
		shown = ""
	}
	var uses []EnvUse
	for _, name := range t.EnvNames() {
		uses = append(uses, EnvUse{Name: name, Option: option, Shown: shown})
	}
	return uses
}

// headerEnvUses lists the ${NAME} of headers ("Key: Value" lines, the value a template), as
// [parseHeaders] reads them.
func headerEnvUses(lines []string) []EnvUse {
	var uses []EnvUse
	for _, line := range lines {
		if _, value, ok := strings.Cut(line, ":"); ok {
			uses = append(uses, envUses("header", strings.TrimSpace(value), line)...)
		}
	}
	return uses
}

// literalHost returns the host name of a URL template when the template spells it out
// (https://api.example.com/{item}), for a check that it resolves before the run; "" when
// the host comes from the items ('{item}', 'https://{.host}/…'), is an IP address or
// localhost, or the template does not parse.
func literalHost(src string) string {
	t, err := parseTemplate(src, true)
	if err != nil || !t.startsWithLiteral() {
		return ""
	}
	prefix := t.parts[0].text
	_, rest, ok := strings.Cut(prefix, "://")
	if !ok {
		return ""
	}
	end := strings.IndexAny(rest, "/?#")
	switch {
	case end >= 0:
		prefix = prefix[:len(prefix)-len(rest)+end]
	case len(t.parts) > 1:
		return "" // a placeholder goes on with the host or its port
	}
	u, err := url.Parse(prefix)
	if err != nil {
		return ""
	}
	host := u.Hostname()
	if host == "" || host == "localhost" || net.ParseIP(host) != nil {
		return ""
	}
	return host
}

// Expand returns the template filled in for it, reading ${NAME} through lookupEnv
// ([os.LookupEnv] when nil). Every error it returns is wrapped with [engine.Permanent], since
// retrying the item cannot fix it: a {.name} on an item that is not a JSON object or has no
// such field, or an unset variable (the error names the variable, never a value).
func (t *Template) Expand(it engine.Item, lookupEnv func(string) (string, bool)) (string, error) {
	var b strings.Builder
	if err := t.expand(&b, it, lookupEnv, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

// expand writes the template filled in for it to b. When secrets is not nil, the value of
// every ${NAME} is appended to it, so that the caller can scrub them from what it keeps.
func (t *Template) expand(b *strings.Builder, it engine.Item, lookupEnv func(string) (string, bool), secrets *[]string) error {
	return t.expandItems(b, []engine.Item{it}, lookupEnv, secrets)
}

// expandItems is expand for a chunk: {items} and {items_jsonl} write all of items; {item} and
// {.name} need exactly one (a batch template has none: see PerItem).
func (t *Template) expandItems(b *strings.Builder, items []engine.Item, lookupEnv func(string) (string, bool), secrets *[]string) error {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	var it engine.Item
	if len(items) == 1 {
		it = items[0]
	}
	b.Grow(t.size + len(it.Line))
	inQuery := false // a URL template has written its "?"
	for i, p := range t.parts {
		var v string
		switch p.kind {
		case tmplLiteral:
			b.WriteString(p.text)
			if t.url && !inQuery && strings.IndexByte(p.text, '?') >= 0 {
				inQuery = true
			}
			continue
		case tmplItem:
			v = it.Line
		case tmplField:
			f, err := fieldText(it, p.text)
			if err != nil {
				return err
			}
			v = f
		case tmplEnv:
			e, ok := lookupEnv(p.text)
			if !ok {
				return engine.Permanent(fmt.Errorf("adapters: environment variable %s is not set", p.text))
			}
			if secrets != nil {
				*secrets = append(*secrets, e)
			}
			b.WriteString(e) // never in a URL template
			continue
		case tmplItems, tmplItemsJSONL:
			writeItems(b, items, p.kind == tmplItemsJSONL)
			continue
		}
		switch {
		case !t.url:
			b.WriteString(v)
		case i == 0:
			b.WriteString(v)
			inQuery = strings.IndexByte(v, '?') >= 0
		case inQuery:
			b.WriteString(url.QueryEscape(v))
		default:
			b.WriteString(url.PathEscape(v))
		}
	}
	return nil
}

// writeItems writes a chunk as a JSON array, or as JSON Lines: a JSON Lines item as its
// object, a line of text as a JSON string.
func writeItems(b *strings.Builder, items []engine.Item, lines bool) {
	if !lines {
		b.WriteByte('[')
	}
	for i, it := range items {
		if i > 0 && !lines {
			b.WriteByte(',')
		}
		if it.JSON {
			b.WriteString(it.Line)
		} else {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(it.Line) // a string always encodes
			b.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		}
		if lines {
			b.WriteByte('\n')
		}
	}
	if !lines {
		b.WriteByte(']')
	}
}

// errNotObject and errNoField are the causes of a failed {.name}.
var (
	errNotObject = errors.New("the item is not a JSON object (the input is not JSON Lines)")
	errNoField   = errors.New("the item has no such field")
)

// fieldText returns the text that {.name} stands for in it.
func fieldText(it engine.Item, name string) (string, error) {
	if it.Fields == nil {
		return "", engine.Permanent(fmt.Errorf("adapters: {.%s}: %w", name, errNotObject))
	}
	v, ok := it.Fields[name]
	if !ok {
		return "", engine.Permanent(fmt.Errorf("adapters: {.%s}: %w", name, errNoField))
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return string(v), nil
	case bool:
		if v {
			return "true", nil
		}
		return "false", nil
	case nil:
		return "null", nil
	case float64:
		// encoding/json's own format in this range; it switches to exponents outside it.
		if a := math.Abs(v); a == 0 || 1e-6 <= a && a < 1e21 {
			return strconv.FormatFloat(v, 'f', -1, 64), nil
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", engine.Permanent(fmt.Errorf("adapters: {.%s}: %w", name, err))
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}
