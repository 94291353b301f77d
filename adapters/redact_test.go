package adapters

// Nothing leaked (issue 18): a server that echoes the Authorization header back, through every
// route Go's HTTP client or the kept body gives it, cannot put the token into an outcome or an
// error, in any spelling, nor any 8-byte piece of it.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redacttest"
)

// echoToken is the secret of these tests; echoAnswers the hostile server's answers by path.
const echoToken = redacttest.Token

var echoAnswers = func() map[string]func(auth, token string) string {
	m := map[string]func(auth, token string) string{}
	for path, answer := range redacttest.Echo("500 Internal Server Error") { // kept whatever the verdict
		m["/"+path] = answer
	}
	return m
}()

// echoServer starts a loopback server that answers each request as echoAnswers says for its
// path, echoing the request's Authorization header.
func echoServer(t *testing.T) string {
	return rawListener(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			auth := req.Header.Get("Authorization")
			answer, ok := echoAnswers[req.URL.Path]
			if !ok {
				io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			io.WriteString(c, answer(auth, strings.TrimPrefix(auth, "Bearer ")))
		}
	})
}

// TestHTTPEchoedTokenNeverKept: through every route, the outcome (message, output, extra) or
// the error holds nothing of the token; the client errors still say what went wrong.
func TestHTTPEchoedTokenNeverKept(t *testing.T) {
	t.Parallel()
	addr := echoServer(t)
	h, err := NewHTTP(HTTPConfig{
		URL:       "http://" + addr + "/{item}",
		Headers:   []string{"Authorization: Bearer ${API_TOKEN}"},
		MaxBody:   40,
		LookupEnv: func(k string) (string, bool) { return echoToken, k == "API_TOKEN" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// What each client error must still say, so that redaction is seen not to eat the cause.
	says := map[string]string{
		"/status": "malformed HTTP response", "/colon": "missing colon", "/length": "bad Content-Length",
		"/te": "unsupported transfer encoding", "/location-parse": "failed to parse Location header",
		"/location-dns": "no such host", "/location-scheme": "unsupported protocol scheme",
	}
	for path := range echoAnswers {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			out, err := h.Do(ctx, engine.Item{Line: path[1:]})
			var text string
			if err != nil {
				text = err.Error()
			} else {
				extra, _ := json.Marshal(out.Extra)
				text = out.Message + " " + string(out.Output) + " " + string(extra)
			}
			if l := redacttest.Leaks(text, echoToken); len(l) > 0 {
				t.Errorf("%s leaks %v: %s", path, l, text)
			}
			if want, ok := says[path]; ok {
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "REDACTED") {
					t.Errorf("%s: error %v, want one saying %q with the token REDACTED", path, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if path != "/cut" && !strings.Contains(text, "REDACTED") { // the cut goes through it
				t.Errorf("%s: %s, want the token REDACTED", path, text)
			}
			if path == "/cut" && (out.Extra["truncated"] != true || len(out.Output) > 40+2) {
				t.Errorf("/cut: output %s, extra %v: want at most 40 bytes, truncated", out.Output, out.Extra)
			}
		})
	}
}

// TestHTTPScrubsBeforeTheCut: whatever --max-body, a token that the cut goes through leaves
// no piece of itself, in the raw body or an encoded one.
func TestHTTPScrubsBeforeTheCut(t *testing.T) {
	t.Parallel()
	addr := echoServer(t)
	for maxBody := int64(31); maxBody <= 30+int64(len(redacttest.JSONU(echoToken)))+8; maxBody += 3 {
		h, err := NewHTTP(HTTPConfig{
			URL:       "http://" + addr + "/{item}",
			Headers:   []string{"Authorization: Bearer ${API_TOKEN}"},
			MaxBody:   maxBody,
			LookupEnv: func(k string) (string, bool) { return echoToken, k == "API_TOKEN" },
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"cut", "json-u"} {
			out, err := h.Do(context.Background(), engine.Item{Line: path})
			if err != nil {
				t.Fatal(err)
			}
			if l := redacttest.Leaks(string(out.Output), echoToken); len(l) > 0 {
				t.Errorf("max body %d, /%s: %s leaks %v", maxBody, path, out.Output, l)
			}
		}
		h.Close()
	}
}
