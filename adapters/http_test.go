package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redact"
)

// httpTestServer starts a loopback server running handler and returns its URL.
func httpTestServer(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv.URL
}

// newTestHTTP returns an adapter for cfg, closed at the end of the test.
func newTestHTTP(t *testing.T, cfg HTTPConfig) *HTTP {
	t.Helper()
	h, err := NewHTTP(cfg)
	if err != nil {
		t.Fatalf("NewHTTP(%+v) error %v", cfg, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// httpSeen is what a test server saw of a request.
type httpSeen struct {
	method, uri, host, body string
	header                  http.Header
}

func TestHTTPRequest(t *testing.T) {
	seen := make(chan httpSeen, 1)
	srvURL := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- httpSeen{r.Method, r.RequestURI, r.Host, string(b), r.Header}
	})
	env := fakeEnv(map[string]string{"TOKEN": "t0k3n"})
	tests := []struct {
		name   string
		cfg    HTTPConfig
		it     engine.Item
		method string
		uri    string
		header map[string][]string // checked keys only
		body   string
		host   string // "" means the server's
	}{
		{
			name: "GET with the item in the path",
			cfg:  HTTPConfig{URL: srvURL + "/items/{item}"},
			it:   engine.Item{Line: "a b/c"}, method: "GET", uri: "/items/a%20b%2Fc",
			header: map[string][]string{"User-Agent": {"throttle/dev"}},
		},
		{
			name: "item in the query cannot add a parameter",
			cfg:  HTTPConfig{URL: srvURL + "/s?q={item}&page=1"},
			it:   engine.Item{Line: "a&admin=1"}, method: "GET", uri: "/s?q=a%26admin%3D1&page=1",
		},
		{
			name: "whole URLs as items",
			cfg:  HTTPConfig{URL: "{item}"},
			it:   engine.Item{Line: srvURL + "/p/x%20y?a=1&b=2"}, method: "GET", uri: "/p/x%20y?a=1&b=2",
		},
		{
			name: "body makes it a POST, with fields and headers",
			cfg: HTTPConfig{
				URL:     srvURL + "/users/{.id}",
				Headers: []string{"Content-Type: application/json", "Authorization: Bearer ${TOKEN}", "X-Name:{.name}"},
				Body:    `{"id":{.id},"name":"{.name}","tags":{.tags}}`, LookupEnv: env,
			},
			it: tmplObj, method: "POST", uri: "/users/7",
			header: map[string][]string{
				"Content-Type": {"application/json"}, "Authorization": {"Bearer t0k3n"}, "X-Name": {"x y"},
			},
			body: `{"id":7,"name":"x y","tags":["a","b"]}`,
		},
		{
			name:   "method in any case",
			cfg:    HTTPConfig{URL: srvURL + "/r", Method: "put", Body: "{item}"},
			it:     engine.Item{Line: "payload"},
			method: "PUT", uri: "/r", body: "payload",
		},
		{
			name: "repeated keys, lower-case keys, user agent override",
			cfg: HTTPConfig{URL: srvURL + "/", Headers: []string{
				"x-a: 1", "X-A: 2", "user-agent: mine/1.0",
			}, UserAgent: "ignored/0"},
			it: engine.Item{Line: "1"}, method: "GET", uri: "/",
			header: map[string][]string{"X-A": {"1", "2"}, "User-Agent": {"mine/1.0"}},
		},
		{
			name: "configured user agent",
			cfg:  HTTPConfig{URL: srvURL + "/", UserAgent: "bot/2"},
			it:   engine.Item{Line: "1"}, method: "GET", uri: "/",
			header: map[string][]string{"User-Agent": {"bot/2"}},
		},
		{
			name: "Host header sets the request's host",
			cfg:  HTTPConfig{URL: srvURL + "/", Headers: []string{"Host: api.example.test"}},
			it:   engine.Item{Line: "1"}, method: "GET", uri: "/", host: "api.example.test",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHTTP(t, tt.cfg)
			out, err := h.Do(context.Background(), tt.it)
			if err != nil || out.Verdict != engine.OK {
				t.Fatalf("Do() = %+v, %v, want an ok outcome", out, err)
			}
			got := <-seen
			if got.method != tt.method {
				t.Errorf("method = %q, want %q", got.method, tt.method)
			}
			if got.uri != tt.uri {
				t.Errorf("request URI = %q, want %q", got.uri, tt.uri)
			}
			for k, want := range tt.header {
				if v := got.header.Values(k); !reflect.DeepEqual(v, want) {
					t.Errorf("header %s = %q, want %q", k, v, want)
				}
			}
			if got.body != tt.body {
				t.Errorf("body = %q, want %q", got.body, tt.body)
			}
			if tt.host != "" && got.host != tt.host {
				t.Errorf("host = %q, want %q", got.host, tt.host)
			}
		})
	}
}

func TestHTTPEnvHeaderReadAtCallTime(t *testing.T) {
	seen := make(chan string, 1)
	srvURL := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization")
	})
	t.Setenv("THROTTLE_HTTP_TEST_TOKEN", "old-token")
	h := newTestHTTP(t, HTTPConfig{URL: srvURL, Headers: []string{"Authorization: Bearer ${THROTTLE_HTTP_TEST_TOKEN}"}})
	for _, want := range []string{"old-token", "new-token"} {
		t.Setenv("THROTTLE_HTTP_TEST_TOKEN", want)
		if _, err := h.Do(context.Background(), engine.Item{Line: "1"}); err != nil {
			t.Fatalf("Do() error %v", err)
		}
		if got := <-seen; got != "Bearer "+want {
			t.Errorf("Authorization = %q, want %q", got, "Bearer "+want)
		}
	}
}

func TestHTTPOutcome(t *testing.T) {
	type answer struct {
		status int
		header map[string]string
		body   string
	}
	tests := []struct {
		name    string
		cfg     HTTPConfig
		answer  answer
		want    engine.Outcome
		wantNil bool // Output must be nil
	}{
		{
			name:   "200 JSON kept, compacted",
			answer: answer{200, map[string]string{"Content-Type": "application/json"}, "{\n  \"a\": [1, \"<b>\"]\n}\n"},
			want:   engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`{"a":[1,"<b>"]}`)},
		},
		{
			name:   "200 text kept as a JSON string",
			answer: answer{200, nil, "hello <b>world</b>\n"},
			want:   engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`"hello <b>world</b>\n"`)},
		},
		{
			name:    "204 has no output",
			answer:  answer{204, nil, ""},
			want:    engine.Outcome{Verdict: engine.OK, Status: 204},
			wantNil: true,
		},
		{
			name:   "invalid UTF-8 becomes U+FFFD",
			answer: answer{200, nil, "a\xffb"},
			want:   engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`"a\ufffdb"`)},
		},
		{
			name:   "404 fails",
			answer: answer{404, nil, `{"error":"no such user"}`},
			want: engine.Outcome{Verdict: engine.Fail, Status: 404, Message: "404 Not Found",
				Output: json.RawMessage(`{"error":"no such user"}`)},
		},
		{
			name:   "503 retries",
			answer: answer{503, nil, "busy"},
			want: engine.Outcome{Verdict: engine.Retry, Status: 503, Message: "503 Service Unavailable",
				Output: json.RawMessage(`"busy"`)},
		},
		{
			name:   "408 retries",
			answer: answer{408, nil, ""},
			want:   engine.Outcome{Verdict: engine.Retry, Status: 408, Message: "408 Request Timeout"},
		},
		{
			name:   "429 with Retry-After seconds",
			answer: answer{429, map[string]string{"Retry-After": "7"}, ""},
			want: engine.Outcome{Verdict: engine.Retry, Status: 429, Message: "429 Too Many Requests",
				RetryAfter: 7 * time.Second},
		},
		{
			name:   "503 with Retry-After date",
			answer: answer{503, map[string]string{"Retry-After": "Mon, 23 Nov 2026 10:00:30 GMT"}, ""},
			want: engine.Outcome{Verdict: engine.Retry, Status: 503, Message: "503 Service Unavailable",
				RetryAfter: 30 * time.Second},
		},
		{
			name:   "garbage Retry-After ignored",
			answer: answer{429, map[string]string{"Retry-After": "soon"}, ""},
			want:   engine.Outcome{Verdict: engine.Retry, Status: 429, Message: "429 Too Many Requests"},
		},
		{
			name:   "unknown status",
			answer: answer{599, nil, ""},
			want:   engine.Outcome{Verdict: engine.Retry, Status: 599, Message: "599"},
		},
		{
			name:   "301 is not followed without Location and fails",
			answer: answer{301, nil, ""},
			want:   engine.Outcome{Verdict: engine.Fail, Status: 301, Message: "301 Moved Permanently"},
		},
		{
			name:   "truncated at MaxBody",
			cfg:    HTTPConfig{MaxBody: 10},
			answer: answer{200, nil, strings.Repeat("a", 100)},
			want: engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`"aaaaaaaaaa"`),
				Extra: map[string]any{"truncated": true}},
		},
		{
			name:   "truncated JSON is a string of the prefix",
			cfg:    HTTPConfig{MaxBody: 6},
			answer: answer{200, nil, `{"a":"bcdefgh"}`},
			want: engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`"{\"a\":\""`),
				Extra: map[string]any{"truncated": true}},
		},
		{
			name:   "truncation does not split a rune",
			cfg:    HTTPConfig{MaxBody: 3},
			answer: answer{200, nil, "ééé"},
			want: engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`"é"`),
				Extra: map[string]any{"truncated": true}},
		},
		{
			name:   "exactly MaxBody is not truncated",
			cfg:    HTTPConfig{MaxBody: 7},
			answer: answer{200, nil, "[1,2,3]"},
			want:   engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`[1,2,3]`)},
		},
		{
			name:   "OKStatus makes 404 ok",
			cfg:    HTTPConfig{OKStatus: []int{200, 404}},
			answer: answer{404, nil, ""},
			want:   engine.Outcome{Verdict: engine.OK, Status: 404},
		},
		{
			name:   "RetryStatus replaces the default",
			cfg:    HTTPConfig{RetryStatus: []int{409}},
			answer: answer{409, nil, ""},
			want:   engine.Outcome{Verdict: engine.Retry, Status: 409, Message: "409 Conflict"},
		},
		{
			name:   "503 fails when RetryStatus omits it",
			cfg:    HTTPConfig{RetryStatus: []int{409}},
			answer: answer{503, nil, ""},
			want:   engine.Outcome{Verdict: engine.Fail, Status: 503, Message: "503 Service Unavailable"},
		},
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srvURL := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.answer.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.answer.status)
				io.WriteString(w, tt.answer.body)
			})
			cfg := tt.cfg
			cfg.URL = srvURL + "/x"
			h := newTestHTTP(t, cfg)
			h.now = func() time.Time { return now }
			got, err := h.Do(context.Background(), engine.Item{Line: "1"})
			if err != nil {
				t.Fatalf("Do() error %v", err)
			}
			if tt.wantNil && got.Output != nil {
				t.Errorf("Do().Output = %s, want nil", got.Output)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Do() = %+v (output %s), want %+v (output %s)", got, got.Output, tt.want, tt.want.Output)
			}
		})
	}
}

func TestHTTPUnknownStatusReason(t *testing.T) {
	srvURL := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 499 Client Closed Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		buf.Flush()
	})
	h := newTestHTTP(t, HTTPConfig{URL: srvURL})
	out, err := h.Do(context.Background(), engine.Item{Line: "1"})
	want := engine.Outcome{Verdict: engine.Fail, Status: 499, Message: "499 Client Closed Request"}
	if err != nil || !reflect.DeepEqual(out, want) {
		t.Errorf("Do() = %+v, %v, want %+v, nil", out, err, want)
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	h := newTestHTTP(t, HTTPConfig{
		URL:       "http://user:pw-s3cret@" + addr + "/v1/{item}?api_key=s3cret&page=2",
		Headers:   []string{"X-Key: ${KEY}"},
		LookupEnv: fakeEnv(map[string]string{"KEY": "hdr-s3cret"}),
	})
	out, err := h.Do(context.Background(), engine.Item{Line: "42"})
	if err == nil {
		t.Fatalf("Do() = %+v, nil, want an error", out)
	}
	if engine.IsPermanent(err) {
		t.Errorf("Do() error %q is permanent, want retryable", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "s3cret") {
		t.Errorf("Do() error %q, want it without the secret", msg)
	}
	for _, want := range []string{"adapters: GET", addr + "/v1/42?api_key=REDACTED&page=REDACTED", "refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Do() error %q, want it to contain %q", msg, want)
		}
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("Do() error %q does not wrap a *net.OpError", msg)
	}
}

func TestHTTPDeadline(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"waiting for the answer", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
		{"reading the body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			io.WriteString(w, `{"partial":`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srvURL := httpTestServer(t, tt.handler)
			h := newTestHTTP(t, HTTPConfig{URL: srvURL + "/slow?api_key=s3cret"})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			out, err := h.Do(ctx, engine.Item{Line: "1"})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Do() = %+v, %v, want an error wrapping context.DeadlineExceeded", out, err)
			}
			if engine.IsPermanent(err) {
				t.Errorf("Do() error %q is permanent, want retryable", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Do() error %q, want it without the secret", err)
			}
		})
	}
}

func TestHTTPPermanentErrors(t *testing.T) {
	var calls atomic.Int64
	srvURL := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	env := fakeEnv(map[string]string{"SET": "set-s3cret"})
	tests := []struct {
		name string
		cfg  HTTPConfig
		it   engine.Item
		want string
	}{
		{"field of a plain item", HTTPConfig{URL: srvURL + "/{.id}"}, engine.Item{Line: "1"}, "{.id}"},
		{"missing field in body", HTTPConfig{URL: srvURL, Body: "{.nope}"}, tmplObj, "{.nope}"},
		{"unset variable in header", HTTPConfig{URL: srvURL, Headers: []string{"A: ${SET}", "B: ${UNSET_VAR}"}}, engine.Item{Line: "1"}, "UNSET_VAR"},
		{"unset variable in body", HTTPConfig{URL: srvURL, Body: "${UNSET_VAR}"}, engine.Item{Line: "1"}, "UNSET_VAR"},
		{"item that is not a URL", HTTPConfig{URL: "{item}"}, engine.Item{Line: "ftp://h/x?k=s3cret"}, `scheme "ftp"`},
		{"item without host", HTTPConfig{URL: "{item}"}, engine.Item{Line: "just-a-word"}, "scheme"},
		{"control character in a header", HTTPConfig{URL: srvURL, Headers: []string{"X-Name: {.name}"}},
			engine.Item{Line: "{}", JSON: true, Fields: map[string]any{"name": "a\r\nX-Evil: 1"}}, "X-Name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.LookupEnv = env
			h := newTestHTTP(t, cfg)
			before := calls.Load()
			out, err := h.Do(context.Background(), tt.it)
			if err == nil {
				t.Fatalf("Do() = %+v, nil, want an error", out)
			}
			if !engine.IsPermanent(err) {
				t.Errorf("Do() error %q is retryable, want permanent", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Do() error %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Do() error %q, want it without the secret", err)
			}
			if n := calls.Load() - before; n != 0 {
				t.Errorf("the server saw %d requests, want 0", n)
			}
		})
	}
}

func TestHTTPSecretsScrubbed(t *testing.T) {
	// An echo server, as many error pages are: it returns the request's headers and body.
	srvURL := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(500)
		json.NewEncoder(w).Encode(map[string]any{"headers": r.Header, "body": string(body), "url": r.URL.String()})
	})
	const token = `tok"en-s3cret` // has a character that JSON escapes
	h := newTestHTTP(t, HTTPConfig{
		URL:       srvURL + "/x",
		Headers:   []string{"Authorization: Bearer ${TOKEN}", "X-Short: ${SHORT}"},
		Body:      "password=${PASSWORD}",
		LookupEnv: fakeEnv(map[string]string{"TOKEN": token, "PASSWORD": "pw-s3cret", "SHORT": "ab"}),
	})
	out, err := h.Do(context.Background(), engine.Item{Line: "1"})
	if err != nil {
		t.Fatalf("Do() error %v", err)
	}
	if out.Verdict != engine.Retry {
		t.Errorf("Do().Verdict = %v, want retry", out.Verdict)
	}
	if all := fmt.Sprintf("%+v %s", out, out.Output); strings.Contains(all, "s3cret") {
		t.Errorf("Do() = output %s, message %q, extra %v, want them without the secrets", out.Output, out.Message, out.Extra)
	}
	if !strings.Contains(string(out.Output), "Bearer REDACTED") || !strings.Contains(string(out.Output), "password=REDACTED") {
		t.Errorf("Do().Output = %s, want the secrets replaced by REDACTED", out.Output)
	}
	if !json.Valid(out.Output) {
		t.Errorf("Do().Output = %s, not valid JSON", out.Output)
	}
	if !strings.Contains(string(out.Output), `"X-Short":["ab"]`) {
		t.Errorf("Do().Output = %s, want the 2-byte value kept", out.Output)
	}
}

func TestHTTPConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  HTTPConfig
		want []string
		not  string
	}{
		{"empty url", HTTPConfig{}, []string{"url template is empty"}, ""},
		{"ftp url", HTTPConfig{URL: "ftp://h/{item}"}, []string{`scheme "ftp" is not http or https`}, ""},
		{"no scheme", HTTPConfig{URL: "example.com/{item}"}, []string{`scheme "" is not http or https`}, ""},
		{"no host", HTTPConfig{URL: "https:///x/{item}"}, []string{"no host"}, ""},
		{"bad url keeps the query secret", HTTPConfig{URL: "https://h:port/x?api_key=s3cret"}, []string{"adapters: url template https://h:port/x?api_key=REDACTED"}, "s3cret"},
		{"env in url", HTTPConfig{URL: "https://h/x?k=${API_KEY}"}, []string{"${API_KEY}", "not allowed in a url"}, ""},
		{"unclosed field in url", HTTPConfig{URL: "https://h/{.id"}, []string{`url template: unclosed "{."`}, ""},
		{"header without colon", HTTPConfig{URL: "https://h/", Headers: []string{"A: 1", "Bearer s3cret"}}, []string{"header 2 of 2", `want "Key: Value"`}, "s3cret"},
		{"header with a bad name", HTTPConfig{URL: "https://h/", Headers: []string{"Bad Name: 1"}}, []string{"header 1 of 1", "not a valid HTTP header name"}, ""},
		{"header with an empty name", HTTPConfig{URL: "https://h/", Headers: []string{": 1"}}, []string{"header 1 of 1"}, ""},
		{"header template", HTTPConfig{URL: "https://h/", Headers: []string{"A: 1", "X-Key: ${KEY"}}, []string{`header 2 of 2 (X-Key): unclosed "${"`}, ""},
		{"body template", HTTPConfig{URL: "https://h/", Body: `{"a": {.b`}, []string{`body template: unclosed "{." at byte 6`}, ""},
		{"unknown method", HTTPConfig{URL: "https://h/", Method: "FETCH"}, []string{`unknown method "FETCH"`, "GET"}, ""},
		{"negative max body", HTTPConfig{URL: "https://h/", MaxBody: -1}, []string{"max body -1 is negative"}, ""},
		{"bad ok status", HTTPConfig{URL: "https://h/", OKStatus: []int{200, 42}}, []string{"ok status 42"}, ""},
		{"bad retry status", HTTPConfig{URL: "https://h/", RetryStatus: []int{1000}}, []string{"retry status 1000"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHTTP(tt.cfg)
			if err == nil {
				h.Close()
				t.Fatalf("NewHTTP(%+v) = %v, nil, want an error", tt.cfg, h)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewHTTP(%+v) error %q, want it to contain %q", tt.cfg, err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "adapters: ") {
				t.Errorf("NewHTTP(%+v) error %q, want the prefix %q", tt.cfg, err, "adapters: ")
			}
			if tt.not != "" && strings.Contains(err.Error(), tt.not) {
				t.Errorf("NewHTTP(%+v) error %q, want it without %q", tt.cfg, err, tt.not)
			}
		})
	}
}

func TestHTTPDefaults(t *testing.T) {
	tests := []struct {
		cfg     HTTPConfig
		method  string
		maxBody int64
	}{
		{HTTPConfig{URL: "https://h/{item}"}, "GET", DefaultMaxBody},
		{HTTPConfig{URL: "https://h/", Body: "{item}"}, "POST", DefaultMaxBody},
		{HTTPConfig{URL: "https://h/", Body: "{item}", Method: "patch", MaxBody: 5}, "PATCH", 5},
		{HTTPConfig{URL: "{item}", Method: "head"}, "HEAD", DefaultMaxBody},
	}
	for _, tt := range tests {
		h := newTestHTTP(t, tt.cfg)
		if h.method != tt.method || h.maxBody != tt.maxBody {
			t.Errorf("NewHTTP(%+v) method, maxBody = %s, %d, want %s, %d", tt.cfg, h.method, h.maxBody, tt.method, tt.maxBody)
		}
		if h.userAgent != DefaultUserAgent {
			t.Errorf("NewHTTP(%+v) user agent = %q, want %q", tt.cfg, h.userAgent, DefaultUserAgent)
		}
		tr := h.transport
		if tr.MaxIdleConnsPerHost != 1024 || tr.MaxIdleConns != 0 || tr.IdleConnTimeout != 90*time.Second ||
			tr.Proxy == nil || tr.MaxConnsPerHost != 0 {
			t.Errorf("NewHTTP(%+v) transport = %+v, want a large keep-alive pool and a proxy from the environment", tt.cfg, tr)
		}
		if h.client.Timeout != 0 || h.client.Transport != tr {
			t.Errorf("NewHTTP(%+v) client = %+v, want no timeout and the adapter's transport", tt.cfg, h.client)
		}
	}
}

// httpCountingServer starts a loopback server that counts the connections it accepts.
func httpCountingServer(t *testing.T, handler http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, &conns
}

func TestHTTPKeepAlive(t *testing.T) {
	srvURL, conns := httpCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	})
	h := newTestHTTP(t, HTTPConfig{URL: srvURL + "/{item}"})
	const workers, calls = 32, 20
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				out, err := h.Do(context.Background(), engine.Item{Line: fmt.Sprint(w*calls + i)})
				if err != nil || out.Verdict != engine.OK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d calls failed, want 0", n, workers*calls)
	}
	// At most one connection per worker, and a little slack for dials that lost a race to a
	// connection coming back to the pool; without the pool it would be near workers*calls.
	if n := conns.Load(); n > 2*workers {
		t.Errorf("%d calls by %d workers used %d connections, want at most %d", workers*calls, workers, n, 2*workers)
	}
}

func TestHTTPTruncatedBodyKeepsTheConnection(t *testing.T) {
	srvURL, conns := httpCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 100<<10))
	})
	h := newTestHTTP(t, HTTPConfig{URL: srvURL, MaxBody: 10})
	for range 5 {
		out, err := h.Do(context.Background(), engine.Item{Line: "1"})
		if err != nil || out.Extra["truncated"] != true {
			t.Fatalf("Do() = %+v, %v, want a truncated ok outcome", out, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 calls with truncated 100 KiB bodies used %d connections, want 1", n)
	}
}

func TestHTTPClose(t *testing.T) {
	srvURL, conns := httpCountingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	h := newTestHTTP(t, HTTPConfig{URL: srvURL})
	for range 2 {
		if _, err := h.Do(context.Background(), engine.Item{Line: "1"}); err != nil {
			t.Fatal(err)
		}
		if err := h.Close(); err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("2 calls with a Close between them used %d connections, want 2", n)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // a Monday
	tests := []struct {
		v      string
		want   time.Duration
		wantOK bool
	}{
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{" 5 ", 5 * time.Second, true},
		{"007", 7 * time.Second, true},
		{"86400000", 1000 * 24 * time.Hour, true}, // huge, returned as it is
		{"10000000000", time.Duration(1<<63 - 1), true},
		{"99999999999999999999", time.Duration(1<<63 - 1), true},
		{"Mon, 23 Nov 2026 10:00:30 GMT", 30 * time.Second, true}, // IMF-fixdate
		{"Monday, 23-Nov-26 10:01:00 GMT", time.Minute, true},     // RFC 850
		{"Mon Nov 23 10:00:45 2026", 45 * time.Second, true},      // ANSI C asctime
		{"Mon, 23 Nov 2026 10:00:00 GMT", 0, true},                // now
		{"Sun, 22 Nov 2026 09:00:00 GMT", 0, true},                // past
		{"Tue, 24 Nov 2026 10:00:00 GMT", 24 * time.Hour, true},   // tomorrow
		{"", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"Mon, 23 Nov 2026 10:00:30 CET", 0, false},
		{"2026-11-23T10:00:30Z", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.v, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q, %s) = %v, %t, want %v, %t", tt.v, now.Format(time.RFC3339), got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://h/p?api_key=s3cret", "https://h/p?api_key=REDACTED"},
		{"https://h/p", "https://h/p"},
		{"https://h", "https://h"},
		{"https://user:pw@h/p", "https://REDACTED@h/p"},
		{"https://user@h:8080", "https://REDACTED@h:8080"},
		{"http://h:8080/a@b", "http://h:8080/a@b"}, // an @ in the path is not userinfo
		{"https://h/p?a=1&b=&c", "https://h/p?a=REDACTED&b=REDACTED&REDACTED"},
		{"https://h/p?a=1&&b=2", "https://h/p?a=REDACTED&&b=REDACTED"},
		{"https://h/p?", "https://h/p?"},
		{"https://h/p#access_token=x", "https://h/p#REDACTED"},
		{"https://h/p?x=1#f", "https://h/p?x=REDACTED#REDACTED"},
		{"https://h?k=v", "https://h?k=REDACTED"},
		{"https://u:p@h?k=v", "https://REDACTED@h?k=REDACTED"},
		{"//u@h/x?k=v", "//REDACTED@h/x?k=REDACTED"},
		{"/path?k=v", "/path?k=REDACTED"},
		{"not a url %zz?k=v", "not a url %zz?k=REDACTED"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := redact.URL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactURLsIn(t *testing.T) {
	tests := []struct{ in, want string }{
		{"no urls here", "no urls here"},
		{`Get "https://h/?k=v": EOF`, `Get "https://h/?k=REDACTED": EOF`},
		{`redirect to HTTP://a/?t=1 then http://u:p@b/x`, `redirect to HTTP://a/?t=REDACTED then http://REDACTED@b/x`},
		{"ends with https://h/?k=v", "ends with https://h/?k=REDACTED"},
	}
	for _, tt := range tests {
		if got := redact.URLs(tt.in); got != tt.want {
			t.Errorf("redactURLsIn(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
