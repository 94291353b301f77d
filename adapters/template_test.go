package adapters

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/throttle-dev/throttle/engine"
)

// tmplObj is a JSON Lines item as the engine decodes it.
var tmplObj = engine.Item{
	Line: `{"id":7,"name":"x y","tags":["a","b"],"ok":true,"n":null,"h":"<&>","m":{"k":"<v>"}}`,
	JSON: true,
	Fields: map[string]any{
		"id": float64(7), "name": "x y", "tags": []any{"a", "b"}, "ok": true, "n": nil,
		"h": "<&>", "m": map[string]any{"k": "<v>"},
	},
}

// fakeEnv is a fake environment for templates.
func fakeEnv(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func TestTemplateExpand(t *testing.T) {
	plain := engine.Item{Line: "a b/c?d&e=f"}
	urlItem := engine.Item{
		Line: "https://h/p?a=1", JSON: true,
		Fields: map[string]any{"base": "https://h/v1", "name": "x y", "q": "a&b=c"},
	}
	env := fakeEnv(map[string]string{"TOKEN": "t0k3n", "EMPTY": ""})
	tests := []struct {
		name string
		src  string
		url  bool
		it   engine.Item
		want string
	}{
		{"no placeholder", "https://h/", true, plain, "https://h/"},
		{"item in url path is path-escaped", "https://h/x/{item}", true, plain, "https://h/x/a%20b%2Fc%3Fd&e=f"},
		{"item in url query is query-escaped", "https://h/s?q={item}", true, plain, "https://h/s?q=a+b%2Fc%3Fd%26e%3Df"},
		{"item starting url is raw", "{item}", true, urlItem, "https://h/p?a=1"},
		{"after a raw start with ?, query-escaped", "{item}&q={.q}", true, urlItem, "https://h/p?a=1&q=a%26b%3Dc"},
		{"field starting url is raw, then path-escaped", "{.base}/u/{.name}", true, urlItem, "https://h/v1/u/x%20y"},
		{"field in url path is path-escaped", "https://h/u/{.name}", true, tmplObj, "https://h/u/x%20y"},
		{"item in body is raw", "q={item}", false, plain, "q=a b/c?d&e=f"},
		{"jsonl item is the object's text", "{item}", false, tmplObj, tmplObj.Line},
		{"string field raw", `{"n":"{.name}"}`, false, tmplObj, `{"n":"x y"}`},
		{"number field as json", `{"id":{.id}}`, false, tmplObj, `{"id":7}`},
		{"array field as json", "{.tags}", false, tmplObj, `["a","b"]`},
		{"numbers as json writes them", "{.a} {.b} {.c} {.d} {.e}", false, engine.Item{JSON: true, Fields: map[string]any{
			"a": -1.5, "b": 1e21, "c": 1e-7, "d": 0.0, "e": json.Number("12345678901234567890"),
		}}, "-1.5 1e+21 1e-7 0 12345678901234567890"},
		{"bool and null fields", "{.ok} {.n}", false, tmplObj, "true null"},
		{"string field not html-escaped", "{.h}", false, tmplObj, "<&>"},
		{"object field not html-escaped", "{.m}", false, tmplObj, `{"k":"<v>"}`},
		{"env", "Bearer ${TOKEN}", false, plain, "Bearer t0k3n"},
		{"env set but empty", "[${EMPTY}]", false, plain, "[]"},
		{"stray braces and dollars are literal", "{x} {itemz} {ite $x $ { } $}", false, plain, "{x} {itemz} {ite $x $ { } $}"},
		{"json body is literal", `{"a": {"b": [1, {}]}}`, false, plain, `{"a": {"b": [1, {}]}}`},
		{"adjacent placeholders", "{item}{item}", false, engine.Item{Line: "ab"}, "abab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := ParseTemplate
			if tt.url {
				parse = ParseURLTemplate
			}
			tm, err := parse(tt.src)
			if err != nil {
				t.Fatalf("parse(%q) error %v", tt.src, err)
			}
			got, err := tm.Expand(tt.it, env)
			if err != nil {
				t.Fatalf("Expand(%q) error %v", tt.src, err)
			}
			if got != tt.want {
				t.Errorf("Expand(%q) = %q, want %q", tt.src, got, tt.want)
			}
		})
	}
}

func TestTemplateExpandErrors(t *testing.T) {
	plain := engine.Item{Line: "42"}
	env := fakeEnv(map[string]string{"SET": "value-of-set"})
	tests := []struct {
		name string
		src  string
		it   engine.Item
		want []string // substrings of the error
		not  string   // must not be in the error
	}{
		{"field of a plain item", "{.id}", plain, []string{"{.id}", "not a JSON object"}, ""},
		{"missing field", "{.missing}", tmplObj, []string{"{.missing}", "no such field"}, ""},
		{"unset variable", "x ${SET} ${API_KEY}", plain, []string{"API_KEY", "not set"}, "value-of-set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, err := ParseTemplate(tt.src)
			if err != nil {
				t.Fatalf("ParseTemplate(%q) error %v", tt.src, err)
			}
			got, err := tm.Expand(tt.it, env)
			if err == nil {
				t.Fatalf("Expand(%q) = %q, want an error", tt.src, got)
			}
			if !engine.IsPermanent(err) {
				t.Errorf("Expand(%q) error %v is not permanent, want permanent", tt.src, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Expand(%q) error %q, want it to contain %q", tt.src, err, w)
				}
			}
			if tt.not != "" && strings.Contains(err.Error(), tt.not) {
				t.Errorf("Expand(%q) error %q, want it without %q", tt.src, err, tt.not)
			}
		})
	}
}

func TestTemplateFieldErrorsAreDistinct(t *testing.T) {
	tm, err := ParseTemplate("{.id}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tm.Expand(engine.Item{Line: "1"}, nil); !errors.Is(err, errNotObject) {
		t.Errorf("Expand(plain item) error %v, want errNotObject", err)
	}
	obj := engine.Item{Line: "{}", JSON: true, Fields: map[string]any{}}
	if _, err := tm.Expand(obj, nil); !errors.Is(err, errNoField) {
		t.Errorf("Expand({}) error %v, want errNoField", err)
	}
}

func TestTemplateParseErrors(t *testing.T) {
	tests := []struct {
		src  string
		url  bool
		want []string
	}{
		{"x {.name", false, []string{`unclosed "{."`, "byte 2", "adapters: template:"}},
		{"x ${NAME", false, []string{`unclosed "${"`, "byte 2"}},
		{"{.}", false, []string{"empty field name", "byte 0"}},
		{"${1X}", false, []string{`bad variable name "1X"`, "byte 0"}},
		{"a${A-B}", false, []string{`bad variable name "A-B"`, "byte 1"}},
		{"${}", false, []string{`bad variable name ""`}},
		{"https://h/{.id", true, []string{`unclosed "{."`, "byte 10", "adapters: url template:"}},
		{"https://h/?k=${API_KEY}", true, []string{"${API_KEY}", "byte 13", "not allowed in a url", "header or the body"}},
		{"https://h/${API_KEY", true, []string{"${", "not allowed in a url"}},
	}
	for _, tt := range tests {
		parse, fn := ParseTemplate, "ParseTemplate"
		if tt.url {
			parse, fn = ParseURLTemplate, "ParseURLTemplate"
		}
		tm, err := parse(tt.src)
		if err == nil {
			t.Errorf("%s(%q) = %v, want an error", fn, tt.src, tm)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s(%q) error %q, want it to contain %q", fn, tt.src, err, w)
			}
		}
	}
}

func TestTemplateEnvReadAtCallTime(t *testing.T) {
	env := map[string]string{"TOKEN": "first"}
	tm, err := ParseTemplate("Bearer ${TOKEN}")
	if err != nil {
		t.Fatal(err)
	}
	it := engine.Item{Line: "1"}
	if got, _ := tm.Expand(it, fakeEnv(env)); got != "Bearer first" {
		t.Errorf("Expand() = %q, want %q", got, "Bearer first")
	}
	env["TOKEN"] = "second"
	if got, _ := tm.Expand(it, fakeEnv(env)); got != "Bearer second" {
		t.Errorf("Expand() after the change = %q, want %q", got, "Bearer second")
	}
	if !tm.UsesEnv() {
		t.Errorf("UsesEnv() = false, want true")
	}
}

func TestTemplateDefaultLookupIsOSEnv(t *testing.T) {
	t.Setenv("THROTTLE_TEMPLATE_TEST", "from-os")
	tm, err := ParseTemplate("${THROTTLE_TEMPLATE_TEST}")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tm.Expand(engine.Item{}, nil); got != "from-os" || err != nil {
		t.Errorf("Expand(nil lookup) = %q, %v, want %q, nil", got, err, "from-os")
	}
}

func BenchmarkTemplateExpand(b *testing.B) {
	tm, err := ParseURLTemplate("https://api.example.com/v1/users/{.id}/items?q={item}&page=2")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tm.Expand(tmplObj, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEnvUses: each configuration lists every ${NAME} that its templates read, with the option
// that reads it, each once per template, and quotes no template that may hold a secret or
// bury the message.
func TestEnvUses(t *testing.T) {
	long := `{"q": "{item}", "k": "${LONG_KEY}", "pad": "` + strings.Repeat("x", 100) + `"}`
	for _, tc := range []struct {
		name string
		got  []EnvUse
		want []EnvUse
	}{
		{"http", HTTPConfig{URL: "https://api.example.com/{item}",
			Headers: []string{"Accept: application/json", "Authorization: Bearer ${TOKEN}", "X-Pair: ${A}:${B}:${A}"},
			Body:    `{"id": "{item}", "key": "${BODY_KEY}"}`}.EnvUses(),
			[]EnvUse{
				{"TOKEN", "header", "Authorization: Bearer ${TOKEN}"},
				{"A", "header", "X-Pair: ${A}:${B}:${A}"},
				{"B", "header", "X-Pair: ${A}:${B}:${A}"},
				{"BODY_KEY", "body", `{"id": "{item}", "key": "${BODY_KEY}"}`},
			}},
		{"http, long body", HTTPConfig{Body: long}.EnvUses(), []EnvUse{{"LONG_KEY", "body", ""}}},
		{"http, none", HTTPConfig{URL: "https://x/{item}", Headers: []string{"A: b"}, Body: "{item} costs $5 {x}"}.EnvUses(), nil},
		{"http, templates that do not compile list nothing", HTTPConfig{Headers: []string{"no colon ${X}", "K: ${1BAD}"}, Body: "${UNCLOSED"}.EnvUses(), nil},
		{"llm", LLMConfig{Prompt: "{item}", Headers: []string{"Authorization: Bearer ${OPENAI_API_KEY}"}}.EnvUses(),
			[]EnvUse{{"OPENAI_API_KEY", "header", "Authorization: Bearer ${OPENAI_API_KEY}"}}},
		{"postgres: never quoted", PostgresConfig{DSN: "postgres://u:literal@h/db?password=${PW}&x=${PW}"}.EnvUses(),
			[]EnvUse{{"PW", "dsn", ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", tc.got, tc.want)
			}
			for i := range tc.got {
				if tc.got[i] != tc.want[i] {
					t.Errorf("use %d: got %+v, want %+v", i, tc.got[i], tc.want[i])
				}
			}
		})
	}
}

// TestTargetHost: the host every call goes to, when the URL spells it out; nothing when the
// items supply it, or it is an address that needs no lookup.
func TestTargetHost(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"https://api.example.com/v1/users/{item}", "api.example.com"},
		{"https://user@api.example.com:8443/v1?q={item}", "api.example.com"},
		{"http://api.example.com", "api.example.com"},
		{"http://api.example.com?id={item}", "api.example.com"},
		{"{item}", ""},
		{"https://{.host}/x", ""},
		{"https://api{.n}.example.com/x", ""},
		{"https://api.example.com{item}", ""},
		{"https://api.example.com:{.port}/x", ""},
		{"http://127.0.0.1:8080/{item}", ""},
		{"http://[::1]:8080/{item}", ""},
		{"http://localhost:8080/{item}", ""},
		{"not a url {item}", ""},
	} {
		if got := (HTTPConfig{URL: tc.url}).TargetHost(); got != tc.want {
			t.Errorf("http %q: got %q, want %q", tc.url, got, tc.want)
		}
	}
	if got := (LLMConfig{URL: "https://api.openai.com/v1/chat/completions"}).TargetHost(); got != "api.openai.com" {
		t.Errorf("llm: got %q, want api.openai.com", got)
	}
}
