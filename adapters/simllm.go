package adapters

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// SimLLMChatPath is the path of a [SimLLM]'s chat completions endpoint.
const SimLLMChatPath = "/v1/chat/completions"

// Defaults of [SimLLMConfig].
const (
	// DefaultSimLLMLatency is the median latency used when SimLLMConfig.Latency is 0.
	DefaultSimLLMLatency = 500 * time.Millisecond
	// DefaultSimLLMMaxTokens is the max_tokens a SimLLM assumes for a request that sets none.
	DefaultSimLLMMaxTokens = 1024
)

// simLLMMaxRequest bounds the body of a request a SimLLM reads.
const simLLMMaxRequest = 4 << 20

// simLLMSlack is the shortfall in tokens or requests a SimLLM overlooks, so that float
// rounding of the refill cannot refuse a client that waited exactly the retry-after-ms it
// was told.
const simLLMSlack = 1e-6

// SimLLMConfig describes a simulated OpenAI-compatible chat completions API: its hidden
// limits and how fast it answers. The zero value is an API without limits that answers
// after a fixed [DefaultSimLLMLatency].
type SimLLMConfig struct {
	// TPM is the tokens per minute the API accepts; 0 means no limit. Like the real ones, it
	// counts a request's estimated prompt tokens plus its max_tokens when the request arrives
	// (a token bucket holding one minute's tokens, refilled continuously), and settles to the
	// usage it reports when it answers. A request past it gets 429.
	TPM float64
	// RPM is the requests per minute the API accepts (a bucket of one minute's requests); 0
	// means no limit.
	RPM float64
	// Latency is the median time to an answer, before PerToken; 0 means
	// [DefaultSimLLMLatency].
	Latency time.Duration
	// Sigma is the spread of the lognormal latency around its median; 0 means fixed.
	Sigma float64
	// PerToken is added to the latency for each completion token, as generation takes.
	PerToken time.Duration
	// APIKey, when set, must come as "Authorization: Bearer APIKey"; other requests get 401
	// with a message that echoes the key they sent, as careless servers do, so that tests can
	// check that such an echo never reaches a result row.
	APIKey string
	// Seed seeds the random latencies and completion lengths.
	Seed int64
}

// Validate reports the first invalid field of c, or nil.
func (c SimLLMConfig) Validate() error {
	switch {
	case c.TPM < 0 || math.IsNaN(c.TPM) || math.IsInf(c.TPM, 0):
		return fmt.Errorf("adapters: sim llm tpm %v is not a finite number >= 0", c.TPM)
	case c.RPM < 0 || math.IsNaN(c.RPM) || math.IsInf(c.RPM, 0):
		return fmt.Errorf("adapters: sim llm rpm %v is not a finite number >= 0", c.RPM)
	case c.Latency < 0:
		return fmt.Errorf("adapters: sim llm latency %v is negative", c.Latency)
	case c.Sigma < 0 || math.IsNaN(c.Sigma) || math.IsInf(c.Sigma, 0):
		return fmt.Errorf("adapters: sim llm sigma %v is not a finite number >= 0", c.Sigma)
	case c.PerToken < 0:
		return fmt.Errorf("adapters: sim llm per-token latency %v is negative", c.PerToken)
	}
	return nil
}

// SimLLMStats counts what a [SimLLM] received and answered.
type SimLLMStats struct {
	// Requests counts every request to the chat endpoint.
	Requests int64 `json:"requests"`
	// OK counts chat completions answered.
	OK int64 `json:"ok"`
	// TooMany counts 429 answers.
	TooMany int64 `json:"too_many"`
	// Rejected counts other 4xx answers (a bad request, a wrong key).
	Rejected int64 `json:"rejected"`
	// Canceled counts admitted requests whose client went away before the answer.
	Canceled int64 `json:"canceled"`
	// PromptTokens and CompletionTokens sum the usage of the answered completions.
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// InFlight is the number of requests being served now.
	InFlight int64 `json:"in_flight"`
}

// SimLLM is a simulated OpenAI-compatible chat completions API with hidden tokens-per-minute
// and requests-per-minute limits, served by [SimLLM.Handler]. A request's usage is its
// prompt tokens (a token per 4 characters of its messages, rounded up) and a completion
// length drawn uniformly from 1 to its max_tokens; the answer's text has about 4 characters
// per completion token. Every answer carries the provider's headers
// (x-ratelimit-limit-, -remaining- and -reset-requests and -tokens), and a 429 also
// retry-after (whole seconds) and retry-after-ms. Its clock is time.Now, so under
// testing/synctest it runs on virtual time. A SimLLM is safe for concurrent use.
type SimLLM struct {
	requests, ok, tooMany, rejected, canceled atomic.Int64
	promptTokens, completionTokens, inFlight  atomic.Int64
	seq                                       atomic.Int64

	cfg SimLLMConfig // with defaults applied; never changes

	mu       sync.Mutex
	tpm, rpm simBucket  // guarded by mu
	rng      *rand.Rand // guarded by mu
}

// NewSimLLM returns a SimLLM configured by cfg, with full buckets. It panics if cfg is not
// valid: a caller holding user input checks it first with [SimLLMConfig.Validate].
func NewSimLLM(cfg SimLLMConfig) *SimLLM {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.Latency == 0 {
		cfg.Latency = DefaultSimLLMLatency
	}
	return &SimLLM{
		cfg: cfg,
		tpm: simBucket{limit: cfg.TPM, level: cfg.TPM},
		rpm: simBucket{limit: cfg.RPM, level: cfg.RPM},
		rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6c6c6d73696d)),
	}
}

// Stats returns the SimLLM's counters.
func (s *SimLLM) Stats() SimLLMStats {
	return SimLLMStats{
		Requests: s.requests.Load(), OK: s.ok.Load(), TooMany: s.tooMany.Load(),
		Rejected: s.rejected.Load(), Canceled: s.canceled.Load(),
		PromptTokens: s.promptTokens.Load(), CompletionTokens: s.completionTokens.Load(),
		InFlight: s.inFlight.Load(),
	}
}

// simBucket is one per-minute limit of a SimLLM: a bucket holding a minute of it, refilled
// continuously. A limit of 0 is none.
type simBucket struct {
	limit float64 // per minute; also the capacity
	level float64
	last  time.Time
}

// advance refills the bucket up to now.
func (b *simBucket) advance(now time.Time) {
	if b.last.IsZero() {
		b.last = now
		return
	}
	if now.After(b.last) {
		b.level = min(b.limit, b.level+now.Sub(b.last).Minutes()*b.limit)
		b.last = now
	}
}

// until returns how long the bucket takes to hold n.
func (b *simBucket) until(n float64) time.Duration {
	if b.level >= n {
		return 0
	}
	return durationOf((n - b.level) / b.limit * 60)
}

// simLLMRequest is what a SimLLM reads of a chat completions request.
type simLLMRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
}

// simLLMDecision is what a SimLLM does with one request.
type simLLMDecision struct {
	status     int           // 200 or 429
	kind       string        // the limit a 429 hit: "requests" or "tokens"
	retryAfter time.Duration // for a 429
	completion int           // completion tokens of an admitted request
	latency    time.Duration // of an admitted request
}

// decideLocked decides the fate of a request of est tokens (its prompt and max_tokens)
// arriving at instant now: it takes one request and est tokens when both limits allow it,
// and draws the completion length and latency. It requires that s.mu is held.
func (s *SimLLM) decideLocked(now time.Time, est, maxTokens int) simLLMDecision {
	s.rpm.advance(now)
	s.tpm.advance(now)
	if s.rpm.limit > 0 && s.rpm.level < 1-simLLMSlack {
		return simLLMDecision{status: http.StatusTooManyRequests, kind: "requests", retryAfter: s.rpm.until(1)}
	}
	if s.tpm.limit > 0 && s.tpm.level < float64(est)-simLLMSlack {
		return simLLMDecision{status: http.StatusTooManyRequests, kind: "tokens", retryAfter: s.tpm.until(float64(est))}
	}
	if s.rpm.limit > 0 {
		s.rpm.level--
	}
	if s.tpm.limit > 0 {
		s.tpm.level -= float64(est)
	}
	d := simLLMDecision{status: http.StatusOK, completion: 1 + s.rng.IntN(maxTokens)}
	d.latency = s.cfg.Latency
	if s.cfg.Sigma > 0 {
		d.latency = time.Duration(float64(s.cfg.Latency) * math.Exp(s.cfg.Sigma*s.rng.NormFloat64()))
	}
	d.latency += time.Duration(d.completion) * s.cfg.PerToken
	return d
}

// settle gives back at instant now what an admitted request of est tokens did not use.
func (s *SimLLM) settle(now time.Time, est, used int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm.limit > 0 {
		s.tpm.advance(now)
		s.tpm.level = min(s.tpm.limit, s.tpm.level+float64(est-used))
	}
}

// rateHeaders sets the provider's x-ratelimit-* headers as of instant now.
func (s *SimLLM) rateHeaders(h http.Header, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range []struct {
		kind string
		b    *simBucket
	}{{"requests", &s.rpm}, {"tokens", &s.tpm}} {
		if l.b.limit == 0 {
			continue
		}
		l.b.advance(now)
		h.Set("X-Ratelimit-Limit-"+l.kind, strconv.FormatFloat(math.Floor(l.b.limit), 'f', -1, 64))
		h.Set("X-Ratelimit-Remaining-"+l.kind, strconv.FormatFloat(math.Floor(max(l.b.level, 0)), 'f', -1, 64))
		h.Set("X-Ratelimit-Reset-"+l.kind, l.b.until(l.b.limit).Round(time.Millisecond).String())
	}
}

// simPromptTokens counts a request's prompt as the SimLLM does: a token per 4 characters of
// its messages, rounded up.
func simPromptTokens(contents []string) int {
	n := 0
	for _, c := range contents {
		n += utf8.RuneCountInString(c)
	}
	return (n + 3) / 4
}

// Handler returns the SimLLM's HTTP API:
//
//	POST /v1/chat/completions  a chat completion, 429 past the limits, 400 for a bad request
//	GET  /stats                Stats as JSON
func (s *SimLLM) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+SimLLMChatPath, s.serveChat)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeSimJSON(w, http.StatusOK, s.Stats())
	})
	return mux
}

// serveChat answers POST /v1/chat/completions.
func (s *SimLLM) serveChat(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)

	if s.cfg.APIKey != "" {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got != s.cfg.APIKey {
			s.rejected.Add(1)
			writeLLMError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: "+got+".")
			return
		}
	}
	var req simLLMRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, simLLMMaxRequest))
	if err := dec.Decode(&req); err != nil {
		s.rejected.Add(1)
		writeLLMError(w, http.StatusBadRequest, "invalid_request_error", nil, "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	contents, maxTokens, problem := req.check()
	if problem != "" {
		s.rejected.Add(1)
		writeLLMError(w, http.StatusBadRequest, "invalid_request_error", nil, problem)
		return
	}
	prompt := simPromptTokens(contents)
	est := prompt + maxTokens
	if s.cfg.TPM > 0 && float64(est) > s.cfg.TPM {
		s.rejected.Add(1)
		writeLLMError(w, http.StatusBadRequest, "invalid_request_error", nil,
			fmt.Sprintf("Request too large for %s: limit %v tokens per min, requested %d.", req.Model, s.cfg.TPM, est))
		return
	}

	s.mu.Lock()
	d := s.decideLocked(time.Now(), est, maxTokens)
	s.mu.Unlock()
	if d.status == http.StatusTooManyRequests {
		s.tooMany.Add(1)
		s.rateHeaders(w.Header(), time.Now())
		w.Header().Set("Retry-After", retryAfterSeconds(d.retryAfter))
		w.Header().Set("Retry-After-Ms", strconv.FormatInt(max(int64((d.retryAfter+time.Millisecond-1)/time.Millisecond), 1), 10))
		name := map[string]string{"requests": "requests per min (RPM)", "tokens": "tokens per min (TPM)"}[d.kind]
		writeLLMError(w, http.StatusTooManyRequests, d.kind, "rate_limit_exceeded",
			fmt.Sprintf("Rate limit reached for %s on %s. Please try again in %v.", req.Model, name, d.retryAfter.Round(time.Millisecond)))
		return
	}

	t := time.NewTimer(d.latency)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		// Generation stops with the client: only the prompt was spent.
		s.settle(time.Now(), est, prompt)
		s.canceled.Add(1)
		return
	case <-t.C:
	}
	s.settle(time.Now(), est, prompt+d.completion)
	s.ok.Add(1)
	s.promptTokens.Add(int64(prompt))
	s.completionTokens.Add(int64(d.completion))
	s.rateHeaders(w.Header(), time.Now())

	finish := "stop"
	if d.completion == maxTokens {
		finish = "length"
	}
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Message      message `json:"message"`
		FinishReason string  `json:"finish_reason"`
	}
	writeSimJSON(w, http.StatusOK, struct {
		ID      string   `json:"id"`
		Object  string   `json:"object"`
		Created int64    `json:"created"`
		Model   string   `json:"model"`
		Choices []choice `json:"choices"`
		Usage   llmUsage `json:"usage"`
	}{
		ID: "chatcmpl-sim-" + strconv.FormatInt(s.seq.Add(1), 10), Object: "chat.completion",
		Created: time.Now().Unix(), Model: req.Model,
		Choices: []choice{{Message: message{Role: "assistant", Content: simLLMText(d.completion)}, FinishReason: finish}},
		Usage:   llmUsage{PromptTokens: int64(prompt), CompletionTokens: int64(d.completion), TotalTokens: int64(prompt + d.completion)},
	})
}

// check returns the contents of a request's messages and its max_tokens, or what is wrong
// with it, in the words of the real API where it has them.
func (req *simLLMRequest) check() (contents []string, maxTokens int, problem string) {
	if req.Model == "" {
		return nil, 0, "you must provide a model parameter"
	}
	if len(req.Messages) == 0 {
		return nil, 0, "'messages' must contain at least one message"
	}
	for i, m := range req.Messages {
		var c string
		if m.Role == "" {
			return nil, 0, fmt.Sprintf("'messages.%d': missing 'role'", i)
		}
		if err := json.Unmarshal(m.Content, &c); err != nil {
			return nil, 0, fmt.Sprintf("'messages.%d.content': this simulator takes a string", i)
		}
		contents = append(contents, c)
	}
	maxTokens = DefaultSimLLMMaxTokens
	for _, p := range []*int{req.MaxTokens, req.MaxCompletionTokens} { // the newer name wins
		if p != nil {
			maxTokens = *p
		}
	}
	if maxTokens < 1 {
		return nil, 0, fmt.Sprintf("max_tokens %d: must be at least 1", maxTokens)
	}
	return contents, maxTokens, ""
}

// simLLMWords make up a SimLLM's answers.
var simLLMWords = strings.Fields("the quick brown fox jumps over lazy dogs while seven wizards quietly box")

// simLLMText returns about 4 characters of text per token, as English runs.
func simLLMText(tokens int) string {
	var b strings.Builder
	b.Grow(tokens*4 + 8)
	for i := 0; b.Len() < tokens*4; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(simLLMWords[i%len(simLLMWords)])
	}
	return b.String()
}

// writeLLMError writes an error answer in OpenAI's shape: {"error":{message, type, param,
// code}}.
func writeLLMError(w http.ResponseWriter, status int, typ string, code any, msg string) {
	type body struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Param   any    `json:"param"`
		Code    any    `json:"code"`
	}
	writeSimJSON(w, status, struct {
		Error body `json:"error"`
	}{body{msg, typ, nil, code}})
}

// StartSimLLMServer serves s.Handler over HTTP on addr ("127.0.0.1:0", a free loopback port,
// when empty) until shutdown is called. It returns the server's base URL, e.g.
// "http://127.0.0.1:41234"; the chat endpoint is url+[SimLLMChatPath]. shutdown is
// [net/http.Server.Shutdown]: it waits for the requests in flight.
func StartSimLLMServer(s *SimLLM, addr string) (url string, shutdown func(context.Context) error, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("adapters: sim llm server: %w", err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ErrServerClosed once shut down
	return "http://" + ln.Addr().String(), srv.Shutdown, nil
}
