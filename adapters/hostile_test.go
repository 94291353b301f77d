package adapters

// The http adapter against hostile servers (issue 5): loopback servers (127.0.0.1 only) that
// refuse, reset, stall, trickle, speak something else, never stop sending, redirect in a
// loop or ask for odd Retry-After waits, and items far larger than any URL should be. Every
// call must end by its deadline with an outcome or a retryable, redacted error.

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// hostileDeadline is the deadline of each call in these tests.
const hostileDeadline = 300 * time.Millisecond

// hostileSlack is how long past its deadline a call may take to return: the time to notice
// the deadline and close the connection, on a loaded machine under the race detector.
const hostileSlack = 2 * time.Second

// rawListener starts a loopback TCP listener running serve on each connection (nil: it never
// accepts, and connections wait in the kernel's backlog) and returns its address. The
// listener and every connection are closed at the end of the test.
func rawListener(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	if serve != nil {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go serve(c)
			}
		}()
	}
	return ln.Addr().String()
}

// readOneRequest reads a request from c and reports whether there was one.
func readOneRequest(c net.Conn) (*bufio.Reader, bool) {
	r := bufio.NewReader(c)
	_, err := http.ReadRequest(r)
	return r, err == nil
}

// TestHTTPHostileServers: each call against a misbehaving server returns within its deadline
// (and a little slack) with an error that is retryable, says what happened and carries no
// secret of the URL; a call that ran out of time wraps context.DeadlineExceeded.
func TestHTTPHostileServers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		start    func(t *testing.T) string // returns host:port
		contains string                    // a part of the error
		deadline bool                      // the error wraps context.DeadlineExceeded
		timeout  time.Duration             // the call's deadline; 0: hostileDeadline
		final    bool                      // the error is permanent: the same server would do it again
	}{
		{
			name: "connection refused",
			start: func(t *testing.T) string {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				ln.Close()
				return ln.Addr().String()
			},
			contains: "connection refused",
		},
		{
			name: "reset before the answer",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					readOneRequest(c)
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				})
			},
			contains: "connection reset by peer",
		},
		{
			name: "reset mid-body",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					readOneRequest(c)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"partial\":")
					time.Sleep(20 * time.Millisecond)
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				})
			},
			contains: "reading the body of a 200 answer",
		},
		{
			name: "closed mid-body",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					readOneRequest(c)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"partial\":")
					c.Close()
				})
			},
			contains: "reading the body of a 200 answer: unexpected EOF",
		},
		{
			name: "closed without an answer",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					readOneRequest(c)
					c.Close()
				})
			},
			contains: "EOF",
		},
		{
			name: "accepts and never answers",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					if r, ok := readOneRequest(c); ok {
						io.Copy(io.Discard, r)
					}
				})
			},
			contains: "context deadline exceeded", deadline: true,
		},
		{
			name:     "never accepts",
			start:    func(t *testing.T) string { return rawListener(t, nil) },
			contains: "context deadline exceeded", deadline: true,
		},
		{
			name: "header trickles forever",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					readOneRequest(c)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Slow: ")
					for {
						time.Sleep(50 * time.Millisecond)
						if _, err := c.Write([]byte("z")); err != nil {
							return
						}
					}
				})
			},
			contains: "context deadline exceeded", deadline: true,
		},
		{
			name: "body trickles forever",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					readOneRequest(c)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
					for {
						time.Sleep(50 * time.Millisecond)
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
					}
				})
			},
			contains: "reading the body of a 200 answer: context deadline exceeded", deadline: true,
		},
		{
			name: "headers never end",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					readOneRequest(c)
					w := bufio.NewWriter(c)
					w.WriteString("HTTP/1.1 200 OK\r\n")
					for i := 0; ; i++ {
						if _, err := fmt.Fprintf(w, "X-H%d: %s\r\n", i, strings.Repeat("h", 1000)); err != nil {
							return
						}
					}
				})
			},
			// The adapter gives up after --max-header (256 KiB by default, not Go's 10 MB), and
			// does not retry: the same server would send them again.
			contains: "response headers over --max-header 256KiB",
			final:    true,
		},
		{
			name: "not HTTP",
			start: func(t *testing.T) string {
				return rawListener(t, func(c net.Conn) {
					readOneRequest(c)
					io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n\r\n")
					c.Close()
				})
			},
			contains: "malformed HTTP response",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := tc.start(t)
			h := newTestHTTP(t, HTTPConfig{URL: "http://" + addr + "/items/{item}?api_key=s3cret"})
			timeout := tc.timeout
			if timeout == 0 {
				timeout = hostileDeadline
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			out, err := h.Do(ctx, engine.Item{Line: "7"})
			took := time.Since(start)
			if took > timeout+hostileSlack {
				t.Errorf("Do() took %v, want it to return by its deadline %v (+%v)", took, timeout, hostileSlack)
			}
			if err == nil {
				t.Fatalf("Do() = %+v, nil, want an error", out)
			}
			msg := err.Error()
			if engine.IsPermanent(err) != tc.final {
				t.Errorf("Do() error %q: permanent %v, want %v", msg, engine.IsPermanent(err), tc.final)
			}
			if !strings.Contains(msg, tc.contains) || !strings.HasPrefix(msg, "adapters: GET http://"+addr+"/items/7?api_key=REDACTED: ") {
				t.Errorf("Do() error %q, want \"adapters: GET <redacted URL>: …%s…\"", msg, tc.contains)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("Do() error %q holds the secret", msg)
			}
			if got := errors.Is(err, context.DeadlineExceeded); got != tc.deadline {
				t.Errorf("errors.Is(%q, context.DeadlineExceeded) = %t, want %t", msg, got, tc.deadline)
			}
		})
	}
}

// TestHTTPHostileEndlessBodies: a body that never ends, plain or as a gzip stream of zeros
// (a decompression bomb), is read up to MaxBody, a little more is drained, and the call
// returns at once with a truncated ok outcome instead of reading until its deadline.
func TestHTTPHostileEndlessBodies(t *testing.T) {
	t.Parallel()
	zeros := make([]byte, 64<<10)
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"plain", func(w http.ResponseWriter, r *http.Request) {
			for {
				if _, err := w.Write(zeros); err != nil {
					return
				}
			}
		}},
		{"gzip bomb", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			// Zeros compress about 1000:1: flush each chunk, so that the client gets it at
			// once rather than after megabytes, and stop as soon as the client is gone.
			for r.Context().Err() == nil {
				if _, err := zw.Write(zeros); err != nil || zw.Flush() != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srvURL := httpTestServer(t, tc.handler)
			const maxBody = 1000
			h := newTestHTTP(t, HTTPConfig{URL: srvURL + "/{item}", MaxBody: maxBody})
			// Reading until the deadline is the failure; stopping well before it is the pass.
			const deadline = 20 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			out, err := h.Do(ctx, engine.Item{Line: "1"})
			took := time.Since(start)
			if err != nil || out.Verdict != engine.OK || out.Extra["truncated"] != true {
				t.Fatalf("Do() = %+v, %v, want a truncated ok outcome", out, err)
			}
			// The kept text is a JSON string of maxBody NUL bytes, each written \u0000.
			if want := 2 + maxBody*len(`\u0000`); len(out.Output) != want {
				t.Errorf("Do() kept %d bytes of output, want %d", len(out.Output), want)
			}
			if took > deadline/2 {
				t.Errorf("Do() took %v on an endless body with a deadline of %v, want it to stop reading once it has MaxBody", took, deadline)
			}
		})
	}
}

// TestHTTPHostileRedirectLoop: a server that redirects to itself forever ends the call after
// net/http's 10 redirects, with an error and at most 11 requests.
func TestHTTPHostileRedirectLoop(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	var srvURL string
	srvURL = httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Redirect(w, r, srvURL+r.URL.Path, http.StatusFound)
	})
	h := newTestHTTP(t, HTTPConfig{URL: srvURL + "/{item}"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Do(ctx, engine.Item{Line: "1"})
	if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Fatalf("Do() = %+v, %v, want an error \"stopped after 10 redirects\"", out, err)
	}
	if n := requests.Load(); n > 11 {
		t.Errorf("the server saw %d requests for one call, want at most 11", n)
	}
	// Retryable today, like every call that obtained no answer; a retry will loop again.
	t.Logf("Do() error %q, permanent %t", err, engine.IsPermanent(err))
}

// TestHTTPHostileRetryAfter: every form of Retry-After, sane or not, gives a retryable
// outcome; one that cannot be used (negative, not a number, a date in the past) gives no
// wait, and a huge one is passed on as it is, for the engine to cap at --max-backoff.
func TestHTTPHostileRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		status int
		header []string // Retry-After values, in order
		want   time.Duration
	}{
		{429, []string{"0"}, 0},
		{429, []string{"-5"}, 0},
		{429, []string{"soon"}, 0},
		{429, []string{"Sun, 22 Nov 2026 09:00:00 GMT"}, 0}, // the past
		{429, []string{"315360000"}, 315360000 * time.Second},
		{429, []string{"99999999999999999999"}, time.Duration(1<<63 - 1)},
		{429, []string{"Mon, 23 Nov 2026 10:00:30 GMT"}, 30 * time.Second},
		{429, []string{"1.5"}, 0},
		{429, []string{""}, 0},
		{429, []string{strings.Repeat("9", 10000)}, time.Duration(1<<63 - 1)},
		{429, []string{"5", "600"}, 5 * time.Second}, // the first one counts
		{503, []string{"7"}, 7 * time.Second},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d %.40q", tc.status, tc.header), func(t *testing.T) {
			t.Parallel()
			srvURL := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Retry-After"] = tc.header
				w.WriteHeader(tc.status)
			})
			h := newTestHTTP(t, HTTPConfig{URL: srvURL + "/{item}"})
			h.now = func() time.Time { return now }
			out, err := h.Do(context.Background(), engine.Item{Line: "1"})
			if err != nil || out.Verdict != engine.Retry || out.Status != tc.status || out.RetryAfter != tc.want {
				t.Errorf("Do() = %+v, %v; want status %d, verdict retry, RetryAfter %v", out, err, tc.status, tc.want)
			}
		})
	}
}

// TestHTTPHostileHugeItem: a 10 MiB item (under engine.MaxLineBytes, so a valid item) goes
// whole into the URL or the body, and the server gets all of it.
func TestHTTPHostileHugeItem(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10<<20)
	var gotPath, gotBody atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotPath.Store(int64(len(r.URL.Path)))
		gotBody.Store(int64(len(b)))
		io.WriteString(w, `{"ok":true}`)
	}))
	srv.Config.MaxHeaderBytes = 32 << 20 // Go's default is 1 MB
	srv.Start()
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name           string
		cfg            HTTPConfig
		wantPath, body int
	}{
		{"in the URL", HTTPConfig{URL: srv.URL + "/{item}"}, 1 + len(long), 0},
		{"in the body", HTTPConfig{URL: srv.URL + "/p", Body: "{item}"}, 2, len(long)},
	} {
		h := newTestHTTP(t, tc.cfg)
		out, err := h.Do(context.Background(), engine.Item{Line: long})
		if err != nil || out.Verdict != engine.OK {
			t.Errorf("%s: Do() = %+v, %v, want ok", tc.name, out, err)
		}
		if p, b := gotPath.Load(), gotBody.Load(); p != int64(tc.wantPath) || b != int64(tc.body) {
			t.Errorf("%s: the server got a path of %d bytes and a body of %d, want %d and %d", tc.name, p, b, tc.wantPath, tc.body)
		}
	}
}

// TestHTTPHostileHugeItemErrorIsBounded: when a call with a 10 MiB item in its URL obtains
// no answer, the error names the URL but does not repeat the item: the error goes into the
// item's row next to the item itself, and a row of twice the item passes
// engine.MaxLineBytes, so that the results file could no longer be read back as input
// (--only-failed) — the one item that most needs a retry would become an invalid line.
func TestHTTPHostileHugeItemErrorIsBounded(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	long := strings.Repeat("x", 10<<20)
	h := newTestHTTP(t, HTTPConfig{URL: "http://" + ln.Addr().String() + "/items/{item}"})
	_, err = h.Do(context.Background(), engine.Item{Line: long})
	if err == nil {
		t.Fatal("Do() = nil error against a closed port")
	}
	const maxErr = 4 << 10
	if n := len(err.Error()); n > maxErr {
		t.Errorf("Do() error of %d bytes for a %d-byte item, want at most %d: %.200q…", n, len(long), maxErr, err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Do() error %.300q, want it to say the connection was refused", err)
	}
}
