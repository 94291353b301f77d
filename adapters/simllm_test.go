package adapters

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// simLLMPost sends one chat request to h in memory.
func simLLMPost(ctx context.Context, h http.Handler, body string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, SimLLMChatPath, strings.NewReader(body))
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// chatBody is a request body with one user message and max_tokens.
func chatBody(content string, maxTokens int) string {
	b, _ := json.Marshal(map[string]any{"model": "sim-1", "max_tokens": maxTokens,
		"messages": []any{map[string]any{"role": "user", "content": content}}})
	return string(b)
}

// simCompletion is what the tests read of a SimLLM's chat completion.
type simCompletion struct {
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage llmUsage `json:"usage"`
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    any    `json:"code"`
	} `json:"error"`
}

func decodeCompletion(t *testing.T, w *httptest.ResponseRecorder) simCompletion {
	t.Helper()
	var c simCompletion
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
		t.Fatalf("answer %d is not JSON (%v): %s", w.Code, err, w.Body)
	}
	return c
}

func TestSimLLMChat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := NewSimLLM(SimLLMConfig{TPM: 60_000, RPM: 600, Latency: 500 * time.Millisecond, PerToken: time.Millisecond, Seed: 3})
		h := sim.Handler()
		prompt := strings.Repeat("abc ", 25) // 100 characters: 25 tokens
		for range 20 {
			start := time.Now()
			w := simLLMPost(context.Background(), h, chatBody(prompt, 64), nil)
			took := time.Since(start)
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			c := decodeCompletion(t, w)
			u := c.Usage
			if c.Object != "chat.completion" || c.Model != "sim-1" || len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" {
				t.Fatalf("answer = %+v, want one assistant choice of a chat.completion of sim-1", c)
			}
			if u.PromptTokens != 25 || u.CompletionTokens < 1 || u.CompletionTokens > 64 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Errorf("usage = %+v, want 25 prompt tokens and 1 to 64 completion tokens", u)
			}
			if n := len(c.Choices[0].Message.Content); int64(n) < 4*u.CompletionTokens || int64(n) > 4*u.CompletionTokens+16 {
				t.Errorf("content has %d characters for %d completion tokens, want about 4 a token", n, u.CompletionTokens)
			}
			if want := map[bool]string{true: "length", false: "stop"}[u.CompletionTokens == 64]; c.Choices[0].FinishReason != want {
				t.Errorf("finish_reason %q for %d of 64 tokens, want %q", c.Choices[0].FinishReason, u.CompletionTokens, want)
			}
			if want := 500*time.Millisecond + time.Duration(u.CompletionTokens)*time.Millisecond; took != want {
				t.Errorf("the answer took %v, want the latency 500ms + 1ms a completion token = %v", took, want)
			}
			for _, k := range []string{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Requests",
				"X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Requests", "X-Ratelimit-Reset-Tokens"} {
				if w.Header().Get(k) == "" {
					t.Errorf("answer lacks %s", k)
				}
			}
		}
		if st := sim.Stats(); st.Requests != 20 || st.OK != 20 || st.PromptTokens != 20*25 {
			t.Errorf("Stats() = %+v, want 20 requests, 20 ok, 500 prompt tokens", st)
		}
	})
}

// TestSimLLMTokenLimit: the TPM counts prompt + max_tokens when a request arrives, answers
// 429 with the provider's headers past it, and settles to the usage when it answers.
func TestSimLLMTokenLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := NewSimLLM(SimLLMConfig{TPM: 1200, Latency: time.Second, Seed: 1}) // 20 tokens a second
		h := sim.Handler()
		body := chatBody(strings.Repeat("x", 400), 300) // 100 + 300 = 400 tokens counted on arrival

		// Three arrive at once and take the whole minute's 1200; the fourth is refused.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var used int64
		for range 3 {
			wg.Go(func() {
				w := simLLMPost(context.Background(), h, body, nil)
				c := decodeCompletion(t, w)
				mu.Lock()
				used += c.Usage.TotalTokens
				mu.Unlock()
			})
		}
		synctest.Wait()
		w := simLLMPost(context.Background(), h, body, nil)
		if w.Code != 429 {
			t.Fatalf("fourth request: status %d, want 429", w.Code)
		}
		c := decodeCompletion(t, w)
		hd := w.Header()
		checks := map[string]string{
			"Retry-After": "20", "Retry-After-Ms": "20000", // 400 tokens at 20 a second
			"X-Ratelimit-Limit-Tokens": "1200", "X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "1m0s",
		}
		for k, v := range checks {
			if got := hd.Get(k); got != v {
				t.Errorf("429: %s = %q, want %q", k, got, v)
			}
		}
		if hd.Get("X-Ratelimit-Limit-Requests") != "" {
			t.Errorf("429 names a request limit %q, but there is none", hd.Get("X-Ratelimit-Limit-Requests"))
		}
		if c.Error.Type != "tokens" || c.Error.Code != "rate_limit_exceeded" || !strings.Contains(c.Error.Message, "tokens per min") {
			t.Errorf("429 error = %+v, want type tokens, code rate_limit_exceeded", c.Error)
		}
		if d, ok := LLMRetryAfter(hd, 400, time.Now()); !ok || d != 20*time.Second {
			t.Errorf("LLMRetryAfter(the sim's 429) = %v, %v; want 20s", d, ok)
		}
		wg.Wait() // the answers settle: each gives back 400 - its usage

		// The answers came at +1s; a request at +2s is answered at +3s, when the bucket holds
		// 3s of refill and what was given back (this request's 2 tokens are used as counted).
		time.Sleep(time.Second)
		w = simLLMPost(context.Background(), h, chatBody("x", 1), nil)
		got, _ := strconv.Atoi(w.Header().Get("X-Ratelimit-Remaining-Tokens"))
		if want := int(3*20 + (1200 - used) - 2); w.Code != 200 || got != want {
			t.Errorf("after the answers: status %d, %d tokens remaining, want 200 and %d (3s of refill + %d given back - 2)",
				w.Code, got, want, 1200-used)
		}
		if st := sim.Stats(); st.TooMany != 1 || st.OK != 4 {
			t.Errorf("Stats() = %+v, want 4 ok and one 429", st)
		}
	})
}

func TestSimLLMRequestLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := NewSimLLM(SimLLMConfig{RPM: 3, Latency: time.Millisecond})
		h := sim.Handler()
		for i := range 3 {
			if w := simLLMPost(context.Background(), h, chatBody("hi", 5), nil); w.Code != 200 {
				t.Fatalf("request %d: status %d, want 200", i+1, w.Code)
			}
		}
		w := simLLMPost(context.Background(), h, chatBody("hi", 5), nil)
		c := decodeCompletion(t, w)
		if w.Code != 429 || c.Error.Type != "requests" || w.Header().Get("X-Ratelimit-Remaining-Requests") != "0" {
			t.Fatalf("fourth request: %d %+v remaining %q, want a 429 for requests with none remaining", w.Code, c.Error, w.Header().Get("X-Ratelimit-Remaining-Requests"))
		}
		ms, _ := strconv.Atoi(w.Header().Get("Retry-After-Ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		if w := simLLMPost(context.Background(), h, chatBody("hi", 5), nil); w.Code != 200 {
			t.Errorf("after retry-after-ms %d: status %d, want 200", ms, w.Code)
		}
	})
}

func TestSimLLMBadRequests(t *testing.T) {
	sim := NewSimLLM(SimLLMConfig{TPM: 1000, Latency: time.Millisecond, APIKey: "sk-right"})
	h := sim.Handler()
	auth := map[string]string{"Authorization": "Bearer sk-right"}
	for _, tc := range []struct {
		name   string
		body   string
		header map[string]string
		status int
		want   string
	}{
		{"wrong key, echoed", chatBody("hi", 5), map[string]string{"Authorization": "Bearer sk-wrong"}, 401, "Incorrect API key provided: sk-wrong."},
		{"no key", chatBody("hi", 5), nil, 401, "Incorrect API key provided: ."},
		{"not JSON", "{", auth, 400, "could not parse the JSON body"},
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, auth, 400, "you must provide a model parameter"},
		{"no messages", `{"model":"m","messages":[]}`, auth, 400, "at least one message"},
		{"no role", `{"model":"m","messages":[{"content":"hi"}]}`, auth, 400, "missing 'role'"},
		{"content parts", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, auth, 400, "takes a string"},
		{"max_tokens 0", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, auth, 400, "max_tokens 0"},
		{"larger than the TPM", chatBody("hi", 2000), auth, 400, "Request too large"},
		{"max_tokens missing: the default counts", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, auth, 400, "requested 1025"},
	} {
		w := simLLMPost(context.Background(), h, tc.body, tc.header)
		var c simCompletion
		_ = json.Unmarshal(w.Body.Bytes(), &c)
		if w.Code != tc.status || !strings.Contains(c.Error.Message, tc.want) {
			t.Errorf("%s: %d %q, want %d and a message containing %q", tc.name, w.Code, c.Error.Message, tc.status, tc.want)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, SimLLMChatPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: status %d, want 405", SimLLMChatPath, w.Code)
	}
	if st := sim.Stats(); st.Rejected != 10 || st.OK != 0 {
		t.Errorf("Stats() = %+v, want 10 rejected", st)
	}
}

// TestSimLLMCanceled: a client that goes away mid-answer is counted, and only its prompt is
// charged.
func TestSimLLMCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := NewSimLLM(SimLLMConfig{TPM: 6000, Latency: time.Second})
		h := sim.Handler()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		simLLMPost(ctx, h, chatBody(strings.Repeat("x", 40), 500), nil) // 10 + 500 counted
		w := simLLMPost(context.Background(), h, chatBody("", 1), nil)
		// 6000 - 10 (the prompt) + 10 refilled in 100ms, then this one: 0 + 1 counted on arrival, 1 used.
		if got := w.Header().Get("X-Ratelimit-Remaining-Tokens"); w.Code != 200 || got != "6000" {
			t.Errorf("after a canceled request: status %d, remaining %s tokens; want 200 and 6000", w.Code, got)
		}
		if st := sim.Stats(); st.Canceled != 1 || st.OK != 1 || st.InFlight != 0 {
			t.Errorf("Stats() = %+v, want one canceled, one ok, none in flight", st)
		}
	})
}

// TestSimLLMHammer: concurrent requests keep the counters consistent. Run it with -race.
func TestSimLLMHammer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := NewSimLLM(SimLLMConfig{TPM: 20_000, RPM: 600, Latency: 200 * time.Millisecond, Sigma: 0.5, Seed: 9})
		h := sim.Handler()
		var wg sync.WaitGroup
		for g := range 40 {
			wg.Go(func() {
				for i := range 25 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(150+g*7+i)*time.Millisecond)
					simLLMPost(ctx, h, chatBody(strings.Repeat("y", g*10+i), 50), nil)
					cancel()
				}
			})
		}
		wg.Wait()
		st := sim.Stats()
		if st.Requests != 1000 || st.OK+st.TooMany+st.Rejected+st.Canceled != st.Requests || st.InFlight != 0 {
			t.Errorf("Stats() = %+v: want 1000 requests = ok + 429 + rejected + canceled, none in flight", st)
		}
		if st.OK == 0 || st.TooMany == 0 || st.Canceled == 0 {
			t.Errorf("Stats() = %+v: want some of each outcome", st)
		}
	})
}

func TestSimLLMConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  SimLLMConfig
		want string // "" for valid
	}{
		{SimLLMConfig{}, ""},
		{SimLLMConfig{TPM: 1e6, RPM: 500, Latency: time.Second, Sigma: 0.3, PerToken: time.Millisecond}, ""},
		{SimLLMConfig{TPM: -1}, "tpm"},
		{SimLLMConfig{RPM: -1}, "rpm"},
		{SimLLMConfig{Latency: -1}, "latency"},
		{SimLLMConfig{Sigma: -1}, "sigma"},
		{SimLLMConfig{PerToken: -1}, "per-token"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v.Validate() = %v, want an error about %q", tc.cfg, err, tc.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewSimLLM with a negative TPM did not panic")
		}
	}()
	NewSimLLM(SimLLMConfig{TPM: -1})
}

// TestStartSimLLMServer: the sim over a real loopback socket, with the llm adapter.
func TestStartSimLLMServer(t *testing.T) {
	sim := NewSimLLM(SimLLMConfig{Latency: time.Millisecond, APIKey: "sk-loop"})
	url, shutdown, err := StartSimLLMServer(sim, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }() // the test is over
	a, err := NewLLM(LLMConfig{URL: url + SimLLMChatPath, Model: "sim-1", MaxTokens: 16, TPM: 6000, RPM: 600,
		Headers: []string{"Authorization: Bearer ${KEY}"}, LookupEnv: llmEnv(map[string]string{"KEY": "sk-loop"})})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	out, err := a.Do(context.Background(), engine.Item{Line: "hello"})
	if err != nil || out.Verdict != engine.OK || !strings.Contains(string(out.Output), `"content":"the`) {
		t.Fatalf("Do() = %+v (%s), %v; want an ok answer", out, out.Output, err)
	}
	resp, err := http.Get(url + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"ok":1`) {
		t.Errorf("GET /stats = %s, want one ok", b)
	}
}

func ExampleNewLLM() {
	// A simulated provider on 127.0.0.1 that allows 60,000 tokens and 500 requests a minute.
	sim := NewSimLLM(SimLLMConfig{TPM: 60_000, RPM: 500, Latency: time.Millisecond, Seed: 1})
	url, shutdown, _ := StartSimLLMServer(sim, "")
	defer func() { _ = shutdown(context.Background()) }() // the test is over

	a, _ := NewLLM(LLMConfig{
		URL: url + SimLLMChatPath, Model: "sim-1", TPM: 60_000, RPM: 500, MaxTokens: 8,
		Prompt: "Summarise: {.text}",
	})
	defer a.Close()
	it := engine.Item{Line: `{"text":"A long story."}`, JSON: true, Fields: map[string]any{"text": "A long story."}}
	out, err := a.Do(context.Background(), it)
	fmt.Println(out.Verdict, err)
	fmt.Println(string(out.Output))
	st := a.Stats()
	fmt.Println("estimated", st.Estimated, "used", st.Used, "given back", st.GivenBack)
	// Output:
	// ok <nil>
	// {"content":"the quick brown fox jumps","finish_reason":"stop","model":"sim-1","usage":{"prompt_tokens":6,"completion_tokens":5,"total_tokens":11}}
	// estimated 21 used 11 given back 10
}
