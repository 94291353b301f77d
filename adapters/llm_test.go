package adapters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redacttest"
)

// memTransport is an http.RoundTripper that serves each request with a handler in memory:
// inside a testing/synctest bubble a loopback socket cannot be used, and this can.
type memTransport struct {
	h http.Handler
	// seen, if set, is told of each answer: when its request arrived, and the answer.
	seen func(at time.Time, rec *httptest.ResponseRecorder)
	// withholdUsage removes "usage" from the answers after seen has read them, as some
	// servers do: the client cannot correct its estimates.
	withholdUsage bool
}

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	at := time.Now()
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, r)
	if r.Body != nil {
		r.Body.Close()
	}
	if err := r.Context().Err(); err != nil {
		return nil, err // the handler saw the client go: no answer
	}
	if m.seen != nil {
		m.seen(at, rec)
	}
	if m.withholdUsage {
		var ans map[string]json.RawMessage
		if json.Unmarshal(rec.Body.Bytes(), &ans) == nil {
			delete(ans, "usage")
			b, _ := json.Marshal(ans)
			rec.Body.Reset()
			rec.Body.Write(b)
		}
	}
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// llmEnv is a LookupEnv over a map.
func llmEnv(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// newTestLLM returns an adapter for cfg whose requests go to h in memory.
func newTestLLM(t *testing.T, cfg LLMConfig, h http.Handler) *LLM {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = "http://llm.test/v1/chat/completions"
	}
	if cfg.Model == "" {
		cfg.Model = "m"
	}
	if cfg.Transport == nil {
		cfg.Transport = memTransport{h: h}
	}
	a, err := NewLLM(cfg)
	if err != nil {
		t.Fatalf("NewLLM(%+v) error %v", cfg, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// llmSeen is what a test handler saw of a request.
type llmSeen struct {
	header http.Header
	body   llmRequest
}

// answering returns a handler that records each request on seen and answers with status,
// headers and body.
func answering(seen chan<- llmSeen, status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req llmRequest
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &req)
		if seen != nil {
			seen <- llmSeen{r.Header.Clone(), req}
		}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// completion is a chat completion answer with content and usage.
func completion(content string, prompt, completion int) string {
	b, _ := json.Marshal(map[string]any{
		"id": "x", "object": "chat.completion", "model": "m-2026",
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
	})
	return string(b)
}

func TestEstimateTokens(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"abcd", 1},
		{"abcde", 2},
		{strings.Repeat("x", 400), 100},
		{"héllo", 1 + 1}, // 4 ASCII bytes and one other character
		{"日本語のテキスト", 8},  // a token a character
		{"🙂🙂", 2},
	} {
		if got := EstimateTokens(tc.text); got != tc.want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
	// Never below the simulated provider's count (characters/4), so that a sim that counts
	// its own way never sees more than was taken.
	for _, s := range []string{"héllo wörld", "日本語", "abc", "Ünïcödé and ASCII mixed 🙂"} {
		if e, p := EstimateTokens(s), simPromptTokens([]string{s}); e < p {
			t.Errorf("EstimateTokens(%q) = %d, below the sim's prompt tokens %d", s, e, p)
		}
	}
}

func TestLLMRequest(t *testing.T) {
	seen := make(chan llmSeen, 1)
	h := answering(seen, 200, nil, completion("ok", 1, 1))
	env := llmEnv(map[string]string{"OPENAI_API_KEY": "sk-test-123"})
	for _, tc := range []struct {
		name   string
		cfg    LLMConfig
		it     engine.Item
		msgs   []llmMessage
		max    int
		header map[string]string
	}{
		{
			name: "the line is the prompt by default",
			cfg:  LLMConfig{Model: "gpt-x"},
			it:   engine.Item{Line: "what is 2+2?"},
			msgs: []llmMessage{{"user", "what is 2+2?"}}, max: DefaultLLMMaxTokens,
			header: map[string]string{"Content-Type": "application/json", "User-Agent": DefaultUserAgent},
		},
		{
			name: "a JSONL field in the prompt, a system message, max tokens",
			cfg:  LLMConfig{Model: "gpt-x", Prompt: "Summarise: {.text}", System: "Be brief about {.id}.", MaxTokens: 64},
			it:   engine.Item{Line: `{"id":7,"text":"a \"long\" <story>"}`, JSON: true, Fields: map[string]any{"id": json.Number("7"), "text": `a "long" <story>`}},
			msgs: []llmMessage{{"system", "Be brief about 7."}, {"user", `Summarise: a "long" <story>`}}, max: 64,
		},
		{
			name: "a header reads the key at call time; a header may set the content type",
			cfg: LLMConfig{Model: "gpt-x", LookupEnv: env, UserAgent: "throttle/1",
				Headers: []string{"Authorization: Bearer ${OPENAI_API_KEY}", "content-type: application/json; charset=utf-8"}},
			it:   engine.Item{Line: "q"},
			msgs: []llmMessage{{"user", "q"}}, max: DefaultLLMMaxTokens,
			header: map[string]string{"Authorization": "Bearer sk-test-123", "Content-Type": "application/json; charset=utf-8", "User-Agent": "throttle/1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestLLM(t, tc.cfg, h)
			out, err := a.Do(context.Background(), tc.it)
			if err != nil || out.Verdict != engine.OK {
				t.Fatalf("Do() = %+v, %v; want ok", out, err)
			}
			got := <-seen
			if got.body.Model != tc.cfg.Model || !slices.Equal(got.body.Messages, tc.msgs) || got.body.MaxTokens != tc.max {
				t.Errorf("request = %+v, want model %q, messages %q, max_tokens %d", got.body, tc.cfg.Model, tc.msgs, tc.max)
			}
			for k, v := range tc.header {
				if g := got.header.Values(k); len(g) != 1 || g[0] != v {
					t.Errorf("header %s = %q, want [%q]", k, g, v)
				}
			}
		})
	}
}

func TestLLMTemplateErrors(t *testing.T) {
	h := answering(nil, 200, nil, completion("ok", 1, 1))
	a := newTestLLM(t, LLMConfig{Prompt: "{.text}", TPM: 6000, MaxTokens: 50, Headers: []string{"Authorization: Bearer ${KEY}"}, LookupEnv: llmEnv(nil)}, h)
	for _, it := range []engine.Item{
		{Line: "not json"},
		{Line: `{"id":1}`, JSON: true, Fields: map[string]any{"id": 1.0}},
		{Line: `{"text":"x"}`, JSON: true, Fields: map[string]any{"text": "x"}}, // KEY is not set
	} {
		_, err := a.Do(context.Background(), it)
		if err == nil || !engine.IsPermanent(err) {
			t.Errorf("Do(%q) error %v, want a permanent error", it.Line, err)
		}
	}
	if st := a.Stats(); st.Requests != 0 || st.Estimated != 0 {
		t.Errorf("Stats() = %+v after items that cannot be sent, want no request and no tokens taken", st)
	}
	if got := a.tpm.TokensAt(time.Now()); got != 100 {
		t.Errorf("TPM bucket holds %v after items that cannot be sent, want it full (100)", got)
	}
}

func TestNewLLMErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  LLMConfig
		want string
	}{
		{LLMConfig{Model: "m"}, "no url"},
		{LLMConfig{URL: "ftp://x/v1", Model: "m"}, "scheme"},
		{LLMConfig{URL: "http://x/v1"}, "no model"},
		{LLMConfig{URL: "http://x/v1", Model: "m", Prompt: "Hi ${USER}"}, "not allowed in a prompt"},
		{LLMConfig{URL: "http://x/v1", Model: "m", System: "${KEY}"}, "not allowed in a system message"},
		{LLMConfig{URL: "http://x/v1", Model: "m", Prompt: "{.}"}, "empty field name"},
		{LLMConfig{URL: "http://x/v1", Model: "m", Headers: []string{"Authorization Bearer x"}}, "header 1 of 1"},
		{LLMConfig{URL: "http://x/v1", Model: "m", TPM: -1}, "tpm -1"},
		{LLMConfig{URL: "http://x/v1", Model: "m", RPM: math.Inf(1)}, "rpm +Inf"},
		{LLMConfig{URL: "http://x/v1", Model: "m", MaxTokens: -5}, "max tokens -5"},
		{LLMConfig{URL: "http://x/v1", Model: "m", MaxTokens: 4096, TPM: 1000}, "more than the tpm"},
	} {
		_, err := NewLLM(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewLLM(%+v) error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
	_, err := NewLLM(LLMConfig{URL: "https://u:pw@x/v1?key=k1", Model: "m", Prompt: "${A}"})
	if err == nil || strings.Contains(err.Error(), "pw") {
		t.Errorf("NewLLM error %v: want an error without the URL's secrets", err)
	}
}

// TestLLMOutcomes: how answers become outcomes, and what each does to the TPM bucket.
func TestLLMOutcomes(t *testing.T) {
	const est = llmTokensPerRequest + llmTokensPerMessage + 1 + 50 // "abcd" and max tokens 50
	for _, tc := range []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		verdict engine.Verdict
		message string
		retry   time.Duration
		output  string  // "" for none
		tokens  float64 // in the bucket (burst 100) after the call
	}{
		{"ok, usage below the estimate: given back", 200, nil, completion("four", 2, 18),
			engine.OK, "", 0, `{"content":"four","finish_reason":"stop","model":"m-2026","usage":{"prompt_tokens":2,"completion_tokens":18,"total_tokens":20}}`, 100 - 20},
		{"ok, usage above the estimate: charged", 200, nil, completion("many", 40, 50),
			engine.OK, "", 0, `{"content":"many","finish_reason":"stop","model":"m-2026","usage":{"prompt_tokens":40,"completion_tokens":50,"total_tokens":90}}`, 100 - 90},
		{"ok without usage: the estimate stays", 200, nil, `{"choices":[{"message":{"content":null,"refusal":"no"},"finish_reason":"stop"}]}`,
			engine.OK, "", 0, `{"content":null,"refusal":"no","finish_reason":"stop"}`, 100 - est},
		{"ok but not a completion", 200, nil, `<html>portal</html>`,
			engine.Fail, "200 OK: the answer is not a chat completion (no choices)", 0, "", 100 - est},
		{"429 with retry-after-ms", 429, map[string]string{"Retry-After": "1", "Retry-After-Ms": "250"},
			`{"error":{"message":"Rate limit reached","type":"tokens","code":"rate_limit_exceeded"}}`,
			engine.Retry, "429 Too Many Requests (tokens)", 250 * time.Millisecond, "", 100 - est},
		{"429 with reset headers only", 429, map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "1.5s"},
			`{"error":{"message":"Rate limit reached","type":"requests"}}`,
			engine.Retry, "429 Too Many Requests (requests)", 1500 * time.Millisecond, "", 100 - est},
		{"429 for quota: fails, tokens back", 429, nil,
			`{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","code":"insufficient_quota"}}`,
			engine.Fail, "429 Too Many Requests: insufficient_quota: You exceeded your current quota.", 0, "", 100},
		{"503 retries", 503, map[string]string{"Retry-After": "2"}, `overloaded`,
			engine.Retry, "503 Service Unavailable", 2 * time.Second, "", 100 - est},
		{"400 fails with the provider's message, tokens back", 400, nil,
			`{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error"}}`,
			engine.Fail, "400 Bad Request: This model's maximum context length is 8192 tokens.", 0, "", 100},
		{"404 from a vLLM-style server", 404, nil, `{"object":"error","message":"The model m does not exist."}`,
			engine.Fail, "404 Not Found: The model m does not exist.", 0, "", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { // a still clock: the bucket does not refill
				a := newTestLLM(t, LLMConfig{TPM: 6000, MaxTokens: 50}, answering(nil, tc.status, tc.header, tc.body))
				out, err := a.Do(context.Background(), engine.Item{Line: "abcd"})
				if err != nil {
					t.Fatalf("Do() error %v", err)
				}
				if out.Verdict != tc.verdict || out.Status != tc.status || out.Message != tc.message || out.RetryAfter != tc.retry {
					t.Errorf("Do() = %v %d %q retry after %v, want %v %d %q %v", out.Verdict, out.Status, out.Message, out.RetryAfter,
						tc.verdict, tc.status, tc.message, tc.retry)
				}
				if string(out.Output) != tc.output {
					t.Errorf("output = %s, want %s", out.Output, tc.output)
				}
				if got := a.tpm.TokensAt(time.Now()); got != tc.tokens {
					t.Errorf("TPM bucket holds %v after the call, want %v", got, tc.tokens)
				}
			})
		})
	}
}

func TestLLMRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header map[string]string
		need   int
		want   time.Duration
		ok     bool
	}{
		{"none", nil, 100, 0, false},
		{"retry-after-ms", map[string]string{"retry-after-ms": "20"}, 100, 20 * time.Millisecond, true},
		{"retry-after-ms with a fraction", map[string]string{"retry-after-ms": "1500.5"}, 100, 1500500 * time.Microsecond, true},
		{"retry-after-ms wins over retry-after", map[string]string{"retry-after-ms": "300", "retry-after": "1"}, 100, 300 * time.Millisecond, true},
		{"bad retry-after-ms falls back", map[string]string{"retry-after-ms": "soon", "retry-after": "3"}, 100, 3 * time.Second, true},
		{"retry-after seconds", map[string]string{"retry-after": "2"}, 100, 2 * time.Second, true},
		{"retry-after date", map[string]string{"retry-after": "Mon, 23 Nov 2026 10:00:05 GMT"}, 100, 5 * time.Second, true},
		{"retry-after wins over resets", map[string]string{"retry-after": "1", "x-ratelimit-reset-tokens": "6m0s"}, 100, time.Second, true},
		{"requests exhausted, no limit known: the whole reset",
			map[string]string{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "1s"},
			100, 6 * time.Minute, true},
		{"requests exhausted, limit known: one request's share",
			map[string]string{"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2m0s"},
			100, 240 * time.Millisecond, true},
		{"tokens short of the need: the missing share of the refill",
			map[string]string{"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "1.5s"},
			400, 500 * time.Millisecond, true},
		{"both short: the longer",
			map[string]string{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20ms",
				"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "1.5s"},
			400, 500 * time.Millisecond, true},
		{"neither known short: the sooner reset",
			map[string]string{"x-ratelimit-remaining-tokens": "5000", "x-ratelimit-reset-tokens": "20ms", "x-ratelimit-reset-requests": "1s"},
			400, 20 * time.Millisecond, true},
		{"reset in plain seconds", map[string]string{"x-ratelimit-reset-tokens": "0.5"}, 10, 500 * time.Millisecond, true},
		{"reset as an RFC 3339 instant", map[string]string{"x-ratelimit-reset-tokens": "2026-11-23T10:00:02Z"}, 10, 2 * time.Second, true},
		{"reset instant in the past", map[string]string{"x-ratelimit-reset-tokens": "2026-11-23T09:00:00Z"}, 10, 0, true},
		{"garbage", map[string]string{"retry-after": "later", "x-ratelimit-reset-tokens": "-1s"}, 10, 0, false},
		{"need above the limit: the whole reset",
			map[string]string{"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m0s"},
			5000, time.Minute, true},
	} {
		h := http.Header{}
		for k, v := range tc.header {
			h.Set(k, v)
		}
		got, ok := LLMRetryAfter(h, tc.need, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: LLMRetryAfter(%v, %d) = %v, %v; want %v, %v", tc.name, tc.header, tc.need, got, ok, tc.want, tc.ok)
		}
	}
}

// TestTokenBucketTakeAt: the bucket's decisions at fixed instants, one step per row.
func TestTokenBucketTakeAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewTokenBucket(10, 20) // 10 a second, burst 20, full
	for i, step := range []struct {
		at     time.Duration // from t0
		op     string        // "take" or "adjust"
		n      float64
		ok     bool          // of a take
		wait   time.Duration // of a take that cannot go
		tokens float64       // after the step
	}{
		{0, "take", 15, true, 0, 5},                          // a full bucket serves at once
		{0, "take", 10, false, 500 * time.Millisecond, 5},    // 5 short: half a second at 10/s
		{500 * time.Millisecond, "take", 10, true, 0, 0},     // refilled
		{500 * time.Millisecond, "adjust", -8, false, 0, 8},  // a call used 8 fewer: given back
		{500 * time.Millisecond, "adjust", 12, false, 0, -4}, // a call used 12 more: a debt
		{500 * time.Millisecond, "take", 1, false, 500 * time.Millisecond, -4},
		{time.Second, "take", 1, true, 0, 0},                       // the debt paid, the take served
		{10 * time.Second, "take", 0, true, 0, 20},                 // idle: full, never past the burst
		{10 * time.Second, "adjust", -50, false, 0, 20},            // giving back never passes the burst
		{10 * time.Second, "take", 50, false, 3 * time.Second, 20}, // larger than the burst: it grows
		{13 * time.Second, "take", 50, true, 0, 0},
	} {
		now := t0.Add(step.at)
		var (
			ok   bool
			wait time.Duration
		)
		if step.op == "take" {
			ok, wait = b.TakeAt(now, step.n)
		} else {
			b.AdjustAt(now, step.n)
		}
		if got := b.TokensAt(now); ok != step.ok || wait != step.wait || math.Abs(got-step.tokens) > 1e-9 {
			t.Errorf("step %d: %s %v at +%v: ok %v, wait %v, tokens %v; want %v, %v, %v", i, step.op, step.n, step.at,
				ok, wait, got, step.ok, step.wait, step.tokens)
		}
	}
}

func TestTokenBucketNil(t *testing.T) {
	var b *TokenBucket
	if ok, d := b.TakeAt(time.Now(), 1e9); !ok || d != 0 {
		t.Errorf("nil bucket: TakeAt = %v, %v; want true, 0", ok, d)
	}
	b.AdjustAt(time.Now(), 5) // must not panic
	if err := b.Take(context.Background(), 1e9); err != nil {
		t.Errorf("nil bucket: Take error %v", err)
	}
	if !math.IsInf(b.TokensAt(time.Now()), 1) {
		t.Errorf("nil bucket: TokensAt = %v, want +Inf", b.TokensAt(time.Now()))
	}
}

func TestNewTokenBucketPanics(t *testing.T) {
	for _, v := range [][2]float64{{0, 1}, {1, 0}, {-1, 1}, {math.NaN(), 1}, {1, math.Inf(1)}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewTokenBucket(%v, %v) did not panic", v[0], v[1])
				}
			}()
			NewTokenBucket(v[0], v[1])
		}()
	}
}

// TestTokenBucketTake: Take waits its turn on the virtual clock, gives back on cancel, and
// Adjust moves the next take's wait both ways.
func TestTokenBucketTake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewTokenBucket(100, 100)
		take := func(n float64) time.Duration {
			t.Helper()
			start := time.Now()
			if err := b.Take(context.Background(), n); err != nil {
				t.Fatalf("Take(%v) error %v", n, err)
			}
			return time.Since(start)
		}
		if d := take(100); d != 0 {
			t.Errorf("Take(100) on a full bucket waited %v, want 0", d)
		}
		if d := take(50); d != 500*time.Millisecond {
			t.Errorf("Take(50) on an empty bucket waited %v, want 500ms", d)
		}
		b.Adjust(-30) // the last call used 30 fewer than it took
		if d := take(50); d != 200*time.Millisecond {
			t.Errorf("Take(50) after giving back 30 waited %v, want 200ms", d)
		}
		b.Adjust(40) // the last call used 40 more
		if d := take(10); d != 500*time.Millisecond {
			t.Errorf("Take(10) after charging 40 waited %v, want 500ms", d)
		}

		// A take that gives up takes nothing.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := b.Take(ctx, 90); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Take(90) with a 100ms deadline: error %v, want the deadline", err)
		}
		if got := b.TokensAt(time.Now()); math.Abs(got-10) > 1e-9 {
			t.Errorf("after a canceled take the bucket holds %v, want 10 (100ms of refill, nothing taken)", got)
		}
		canceled, stop := context.WithCancel(context.Background())
		stop()
		if err := b.Take(canceled, 1); !errors.Is(err, context.Canceled) {
			t.Errorf("Take on a canceled ctx: error %v, want context.Canceled", err)
		}
	})
}

// TestTokenBucketQueue: takes are served in order, a give-back goes to the first waiter at
// once, and a waiter that gives up lets the next one go.
func TestTokenBucketQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewTokenBucket(100, 100)
		b.Adjust(100) // empty
		start := time.Now()
		type done struct {
			who string
			at  time.Duration
			err error
		}
		ends := make(chan done, 3)
		take := func(ctx context.Context, who string, n float64) {
			err := b.Take(ctx, n)
			ends <- done{who, time.Since(start), err}
		}
		go take(context.Background(), "large", 80)
		synctest.Wait()
		go take(context.Background(), "small", 10) // the bucket will hold 10 first: it must not pass
		synctest.Wait()
		time.Sleep(100 * time.Millisecond)
		b.Adjust(-40) // 10 refilled + 40 given back: the large take needs 30 more
		for _, want := range []done{{"large", 400 * time.Millisecond, nil}, {"small", 500 * time.Millisecond, nil}} {
			if got := <-ends; got != want {
				t.Errorf("%s take ended at +%v (%v), want %s at +%v", got.who, got.at, got.err, want.who, want.at)
			}
		}

		// The first waiter gives up at +100ms; the one behind it goes when its own 10 are there.
		start = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		go take(ctx, "gives up", 80)
		synctest.Wait()
		go take(context.Background(), "next", 10)
		for _, want := range []done{{"gives up", 100 * time.Millisecond, context.DeadlineExceeded}, {"next", 100 * time.Millisecond, nil}} {
			if got := <-ends; got.who != want.who || got.at != want.at || !errors.Is(got.err, want.err) {
				t.Errorf("%s take ended at +%v (%v), want %s at +%v (%v)", got.who, got.at, got.err, want.who, want.at, want.err)
			}
		}
	})
}

// TestTokenBucketHammer: many goroutines taking and giving back at once never spend more
// than the rate allows, and spend about that much. Run it with -race.
func TestTokenBucketHammer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate, burst = 1000.0, 100.0
		b := NewTokenBucket(rate, burst)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var (
			mu    sync.Mutex
			spent float64 // tokens taken minus tokens given back, at the instants of the takes
		)
		start := time.Now()
		var wg sync.WaitGroup
		for g := range 50 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for {
					n := float64(1 + rng.IntN(20))
					if err := b.Take(ctx, n); err != nil {
						return
					}
					mu.Lock()
					spent += n
					mu.Unlock()
					time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
					back := float64(rng.IntN(int(n) + 1))
					b.Adjust(-back)
					mu.Lock()
					spent -= back
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start).Seconds()
		if max := rate*elapsed + burst; spent > max {
			t.Errorf("spent %v tokens in %.1fs, more than rate·t + burst = %v", spent, elapsed, max)
		}
		if min := 0.95 * rate * elapsed; spent < min {
			t.Errorf("spent %v tokens in %.1fs, want at least %v: the bucket wastes its refill", spent, elapsed, min)
		}
	})
}

// secretsInRows is the text of every row and error of a run, for a search for secrets.
func runRows(t *testing.T, a engine.Adapter, items ...string) string {
	t.Helper()
	var rows bytes.Buffer
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 2}, Retries: 1, MaxBackoff: time.Millisecond,
		Adapter: a, Source: engine.NewLineReader(strings.NewReader(strings.Join(items, "\n")+"\n"), false),
		Total: int64(len(items)), Results: &rows,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rows.String()
}

// TestLLMKeyNeverInRows: a key read with ${NAME} never reaches a row, whether the provider
// echoes it in an answer, an error message or an error page, nor does a key in the URL's
// query when no answer comes.
func TestLLMKeyNeverInRows(t *testing.T) {
	const key = `sk-proj-S3cr3t/K3y+<&>"`
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		var req llmRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		quoted, _ := json.Marshal(got)
		switch req.Messages[0].Content {
		case "echo":
			io.WriteString(w, completion("your key is "+got, 5, 5))
		case "401":
			w.WriteHeader(401)
			fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s.","type":"invalid_request_error"}}`, quoted[1:len(quoted)-1])
		default:
			w.WriteHeader(500)
			io.WriteString(w, "upstream failed for key "+got)
		}
	})
	a := newTestLLM(t, LLMConfig{
		Headers: []string{"Authorization: Bearer ${OPENAI_API_KEY}"}, LookupEnv: llmEnv(map[string]string{"OPENAI_API_KEY": key}),
	}, h)
	rows := runRows(t, a, "echo", "401", "500")
	if strings.Count(rows, "\n") != 3 || !strings.Contains(rows, "REDACTED") || !strings.Contains(rows, "401 Unauthorized: Incorrect API key provided: REDACTED.") {
		t.Errorf("rows = %s\nwant 3 rows, the echoes redacted", rows)
	}
	if l := redacttest.Leaks(rows, key); len(l) > 0 {
		t.Errorf("rows hold the key: %v\n%s", l, rows)
	}

	// No answer: the transport's error quotes the URL, query and all.
	failing := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, fmt.Errorf("dial tcp: cannot reach %s", r.URL)
	})
	b := newTestLLM(t, LLMConfig{URL: "https://llm.test/v1/chat/completions?api-key=QueryS3cret", Transport: failing}, nil)
	rows = runRows(t, b, "x")
	if strings.Contains(rows, "QueryS3cret") || !strings.Contains(rows, "api-key=REDACTED") {
		t.Errorf("row = %s\nwant the URL's query redacted", rows)
	}
}

// roundTripFunc lets a function serve as an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestLLMWaitCanceled: a call that is canceled while it waits for tokens sends nothing and
// gives its tokens back.
func TestLLMWaitCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newTestLLM(t, LLMConfig{TPM: 6000, RPM: 60, MaxTokens: 10}, answering(nil, 200, nil, completion("x", 1, 1)))
		if _, err := a.Do(context.Background(), engine.Item{Line: "a"}); err != nil { // drains the RPM bucket (burst 1)
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		before := a.tpm.TokensAt(time.Now())
		_, err := a.Do(ctx, engine.Item{Line: "a"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Do() waiting for a request past its deadline: error %v, want the deadline", err)
		}
		if st := a.Stats(); st.Requests != 1 {
			t.Errorf("Stats().Requests = %d, want 1: the canceled call must not be sent", st.Requests)
		}
		if got, want := a.tpm.TokensAt(time.Now()), min(100, before+10); math.Abs(got-want) > 1e-9 {
			t.Errorf("TPM bucket holds %v after the canceled wait, want %v (its tokens back, 100ms of refill)", got, want)
		}
	})
}

// limitRun is what a run against the LLM sim measured at the sim.
type limitRun struct {
	perMinute  [2]struct{ tokens, requests int }
	maxTokens  int // the most tokens in any minute starting at a request, within the first two
	maxReqs    int
	tooMany    int64
	stats      LLMStats
	sim        SimLLMStats
	ok, failed int64
	span       time.Duration // first to last request
}

// runAgainstSim runs items through the llm adapter (cfg) against a SimLLM (sc) in a
// testing/synctest bubble, with the engine at parallelism 32, and counts at the sim the
// tokens used (by the minute their request arrived, as providers charge) and the requests.
func runAgainstSim(t *testing.T, cfg LLMConfig, sc SimLLMConfig, items []string, withholdUsage bool) limitRun {
	t.Helper()
	type arrival struct {
		at     time.Time
		tokens int
	}
	var (
		mu       sync.Mutex
		arrivals []arrival
	)
	sim := NewSimLLM(sc)
	cfg.Transport = memTransport{h: sim.Handler(), seen: func(at time.Time, rec *httptest.ResponseRecorder) {
		var ans struct{ Usage llmUsage }
		_ = json.Unmarshal(rec.Body.Bytes(), &ans)
		mu.Lock()
		arrivals = append(arrivals, arrival{at, int(ans.Usage.TotalTokens)})
		mu.Unlock()
	}, withholdUsage: withholdUsage}
	a := newTestLLM(t, cfg, nil)
	var rows bytes.Buffer
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 32}, Retries: 3, Timeout: 30 * time.Second,
		Adapter: a, Source: engine.NewLineReader(strings.NewReader(strings.Join(items, "\n")+"\n"), true),
		Total: int64(len(items)), Results: &rows,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(arrivals, func(x, y arrival) int { return x.at.Compare(y.at) })
	r := limitRun{stats: a.Stats(), sim: sim.Stats(), ok: s.OK, failed: s.Failed, tooMany: sim.Stats().TooMany}
	if len(arrivals) == 0 {
		t.Fatal("the sim saw no request")
	}
	t0 := arrivals[0].at
	r.span = arrivals[len(arrivals)-1].at.Sub(t0)
	for i, x := range arrivals {
		if k := int(x.at.Sub(t0) / time.Minute); k < 2 {
			r.perMinute[k].tokens += x.tokens
			r.perMinute[k].requests++
		}
		if x.at.Sub(t0) >= time.Minute { // windows starting in the first minute end within two
			continue
		}
		tokens, reqs := 0, 0
		for _, y := range arrivals[i:] {
			if y.at.Sub(x.at) >= time.Minute {
				break
			}
			tokens += y.tokens
			reqs++
		}
		r.maxTokens, r.maxReqs = max(r.maxTokens, tokens), max(r.maxReqs, reqs)
	}
	return r
}

// llmItems returns n JSONL items {"id":i,"text":…} whose texts are from lo to hi characters.
func llmItems(n, lo, hi int) []string {
	rng := rand.New(rand.NewPCG(7, 7))
	items := make([]string, n)
	for i := range items {
		b, _ := json.Marshal(map[string]any{"id": i, "text": simLLMText(lo/4 + rng.IntN((hi-lo)/4+1))})
		items[i] = string(b)
	}
	return items
}

// TestLLMHoldsTPMAndRPM is the acceptance test of the llm adapter: over 2 minutes of virtual
// time at parallelism 32, the tokens per minute and the requests per minute that the
// simulated provider sees stay within 5% of their limits, once where the TPM binds and once
// where the RPM binds; each minute also reaches at least 95% of the binding limit, so the
// limiter does not waste the quota; the provider answers no 429; and the corrections by
// usage are what makes the TPM reachable: the estimates are far above the usage, so without
// giving back the difference the tokens used would stay near TPM × usage/estimate.
func TestLLMHoldsTPMAndRPM(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tpm, rpm float64
		items    []string
		binds    string
	}{
		{"tpm binds", 60_000, 10_000, llmItems(650, 200, 1200), "tpm"},
		{"rpm binds", 2_000_000, 300, llmItems(750, 20, 100), "rpm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := runAgainstSim(t,
					LLMConfig{TPM: tc.tpm, RPM: tc.rpm, MaxTokens: 256, Prompt: "Summarise: {.text}"},
					SimLLMConfig{TPM: tc.tpm, RPM: tc.rpm, Latency: 800 * time.Millisecond, Sigma: 0.3, PerToken: time.Millisecond, Seed: 1},
					tc.items, false)
				for k, m := range r.perMinute {
					t.Logf("minute %d: %d tokens (%.1f%% of tpm %v), %d requests (%.1f%% of rpm %v)", k+1,
						m.tokens, 100*float64(m.tokens)/tc.tpm, tc.tpm, m.requests, 100*float64(m.requests)/tc.rpm, tc.rpm)
				}
				t.Logf("busiest minute: %d tokens (%.1f%%), %d requests (%.1f%%); %d × 429; estimated %d, used %d (%.2f×), given back %d, charged %d",
					r.maxTokens, 100*float64(r.maxTokens)/tc.tpm, r.maxReqs, 100*float64(r.maxReqs)/tc.rpm, r.tooMany,
					r.stats.Estimated, r.stats.Used, float64(r.stats.Estimated)/float64(r.stats.Used), r.stats.GivenBack, r.stats.Charged)

				if r.ok != int64(len(tc.items)) || r.failed != 0 {
					t.Fatalf("ok %d, failed %d; want all %d ok", r.ok, r.failed, len(tc.items))
				}
				if r.span < 2*time.Minute {
					t.Fatalf("the requests spanned %v, want more than 2 minutes so that both are limited", r.span)
				}
				if r.tooMany != 0 {
					t.Errorf("the sim answered %d × 429, want none", r.tooMany)
				}
				for _, l := range []struct {
					name       string
					limit      float64
					got        []int
					busiest    int
					mustFillIt bool
				}{
					{"tokens", tc.tpm, []int{r.perMinute[0].tokens, r.perMinute[1].tokens}, r.maxTokens, tc.binds == "tpm"},
					{"requests", tc.rpm, []int{r.perMinute[0].requests, r.perMinute[1].requests}, r.maxReqs, tc.binds == "rpm"},
				} {
					for k, n := range l.got {
						if float64(n) > 1.05*l.limit {
							t.Errorf("minute %d: %d %s, more than 105%% of the limit %v", k+1, n, l.name, l.limit)
						}
						if l.mustFillIt && float64(n) < 0.95*l.limit {
							t.Errorf("minute %d: %d %s, less than 95%% of the binding limit %v: the limiter wastes the quota", k+1, n, l.name, l.limit)
						}
					}
					if float64(l.busiest) > 1.05*l.limit {
						t.Errorf("busiest minute: %d %s, more than 105%% of the limit %v", l.busiest, l.name, l.limit)
					}
				}
				if r.stats.Used != r.sim.PromptTokens+r.sim.CompletionTokens {
					t.Errorf("the adapter counted %d tokens used, the sim %d", r.stats.Used, r.sim.PromptTokens+r.sim.CompletionTokens)
				}
				if tc.binds == "tpm" {
					// Without the corrections the bucket would pass estimates, not usage, at the
					// TPM: the usage would be at most TPM × used/estimated, under 95% of it.
					if ratio := float64(r.stats.Used) / float64(r.stats.Estimated); ratio > 0.8 {
						t.Errorf("usage/estimate = %.2f; the test needs estimates well above the usage (≤ 0.8) to show the corrections", ratio)
					}
					if r.stats.GivenBack < r.stats.Estimated-r.stats.Used {
						t.Errorf("given back %d tokens, want at least estimated − used = %d", r.stats.GivenBack, r.stats.Estimated-r.stats.Used)
					}
				}
			})
		})
	}
}

// TestLLMWithoutCorrections is the control of TestLLMHoldsTPMAndRPM: the same run where the
// TPM binds, but with usage withheld from the adapter, so that its estimates are never
// corrected. Then the bucket passes estimates at the TPM and the tokens really used stay
// near TPM × used/estimated — what the corrections win back.
func TestLLMWithoutCorrections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const tpm = 60_000
		r := runAgainstSim(t,
			LLMConfig{TPM: tpm, RPM: 10_000, MaxTokens: 256, Prompt: "Summarise: {.text}"},
			SimLLMConfig{TPM: tpm, RPM: 10_000, Latency: 800 * time.Millisecond, Sigma: 0.3, PerToken: time.Millisecond, Seed: 1},
			llmItems(500, 200, 1200), true)
		used := r.sim.PromptTokens + r.sim.CompletionTokens
		ratio := float64(used) / float64(r.stats.Estimated)
		for k, m := range r.perMinute {
			t.Logf("minute %d without corrections: %d tokens (%.1f%% of tpm; used/estimated %.2f)", k+1, m.tokens, 100*float64(m.tokens)/tpm, ratio)
		}
		if r.stats.GivenBack != 0 || r.stats.Used != 0 {
			t.Fatalf("Stats() = %+v: with usage withheld nothing can be given back", r.stats)
		}
		m := r.perMinute[1].tokens // the first minute has the start's burst in it
		if want := tpm * ratio; math.Abs(float64(m)-want) > 0.05*want {
			t.Errorf("minute 2: %d tokens, want about TPM × used/estimated = %.0f", m, want)
		}
		if float64(m) > 0.8*tpm {
			t.Errorf("minute 2: %d tokens without corrections, want well under the TPM (≤ 80%%) for the control to show anything", m)
		}
	})
}
