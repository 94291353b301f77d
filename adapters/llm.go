package adapters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redact"
)

// DefaultLLMMaxTokens is the max_tokens an [LLM] adapter asks for unless
// [LLMConfig.MaxTokens] says otherwise.
const DefaultLLMMaxTokens = 256

// llmMaxAnswer bounds the bytes of an answer that are read: a chat completion of any sane
// max_tokens is far smaller, and a runaway proxy must not exhaust memory.
const llmMaxAnswer = 16 << 20

// Overheads of a chat request in tokens, after OpenAI's own counting: each message is
// wrapped in a few tokens of role and separators, and the reply is primed with a few more.
// Overcounting them costs nothing, since usage corrects the estimate after the call.
const (
	llmTokensPerMessage = 4
	llmTokensPerRequest = 3
)

// LLMConfig configures an [LLM] adapter. URL and Model are required.
type LLMConfig struct {
	// URL is the chat completions endpoint, e.g.
	// "https://api.openai.com/v1/chat/completions". It is used as it is: not a template.
	URL string
	// Model is sent as the request's "model".
	Model string
	// Prompt is the user message, a template over the item (see [Template]): {item} is the
	// input line, {.name} a field of a JSON Lines item. "" means "{item}". ${NAME} is refused:
	// a secret in a prompt would be sent to the model, which may repeat it.
	Prompt string
	// System is an optional system message, a template like Prompt; "" sends none.
	System string
	// MaxTokens is sent as "max_tokens" and counted in each call's estimate; 0 means
	// [DefaultLLMMaxTokens].
	MaxTokens int
	// TPM is the provider's limit in tokens per minute; 0 means none.
	TPM float64
	// RPM is the provider's limit in requests per minute; 0 means none.
	RPM float64
	// Headers are request headers, each "Key: Value"; the value is a template and may read a
	// secret with ${NAME} at call time, e.g. "Authorization: Bearer ${OPENAI_API_KEY}".
	// Content-Type is application/json unless a header sets it.
	Headers []string
	// LookupEnv reads ${NAME} at call time; nil means [os.LookupEnv].
	LookupEnv func(string) (string, bool)
	// UserAgent is sent unless a header sets User-Agent; "" means [DefaultUserAgent].
	UserAgent string
	// Transport makes the requests; nil means the adapter's own keep-alive transport. Tests
	// pass one that calls a handler in memory.
	Transport http.RoundTripper
}

// EnvUses lists every ${NAME} that the headers read at call time (the prompt and the system
// message may hold none), so that a caller can check them all before the first call.
func (c LLMConfig) EnvUses() []EnvUse { return headerEnvUses(c.Headers) }

// TargetHost is the host name of URL, for a check before the run that it resolves; "" when
// it is an address.
func (c LLMConfig) TargetHost() string {
	if strings.Contains(c.URL, "{") {
		return "" // not a template: such a URL fails in NewLLM
	}
	return literalHost(c.URL)
}

// LLM is the llm adapter: one OpenAI-compatible chat completion per item, under the
// provider's tokens-per-minute and requests-per-minute limits, which it holds itself.
//
// Before a call it estimates the call's tokens ([EstimateTokens] of the messages, plus their
// overheads, plus max_tokens: what providers count against the limit when a request arrives)
// and takes them from a TPM [TokenBucket], and one request from an RPM bucket, waiting while
// either is empty. After the answer it corrects the TPM bucket by usage.total_tokens minus
// the estimate: it gives back what the call did not use and charges what it used beyond the
// estimate, so the long-run rate of tokens really used approaches the TPM instead of
// TPM × usage/estimate. Each bucket's burst is one second of its limit: providers refill
// continuously and may enforce a per-minute limit over shorter windows, so a minute's worth
// at once could draw 429s that a second's worth does not, and over a long run the burst is a
// rounding error. The RPM burst is at least one request, and the TPM burst at least one call
// (it grows to the largest estimate seen), so that no call waits for more than the bucket
// holds.
//
// The wait for tokens happens inside Do, so it counts within the engine's per-call timeout;
// it is not latency (engine.CallStarts): rows carry it as "wait_ms". A row's output holds the answer
// (choices[0].message.content), finish_reason, model and usage.
//
// Answers are classified as [HTTP] does: 2xx ok; 429, 408 and 5xx retry, with the wait taken
// from retry-after-ms, retry-after or the x-ratelimit-reset-* headers; other 4xx fail, and so
// does a 429 for insufficient_quota, which no wait cures. Errors and outputs never hold the
// values of ${NAME} (see [HTTP]) nor the URL's query or userinfo. It is safe for concurrent
// use.
type LLM struct {
	url       string
	model     string
	prompt    *Template
	system    *Template // nil: no system message
	maxTokens int
	tpm, rpm  *TokenBucket // nil: no limit
	tpmLimit  float64
	headers   []httpHeader
	userAgent string
	lookupEnv func(string) (string, bool)
	client    *http.Client
	transport *http.Transport // nil when the config brought its own

	requests, estimated, used, givenBack, charged, waitedNS atomic.Int64
}

var _ engine.Adapter = (*LLM)(nil)
var _ io.Closer = (*LLM)(nil)

// NewLLM checks cfg and returns an adapter for it. It fails on a URL that is not http(s) with
// a host, an empty model, a template that cannot be compiled, a prompt or system message with
// ${NAME}, a header that is not "Key: Value", a negative or non-finite limit, or a
// MaxTokens that is negative or larger than the TPM (no call could ever fit).
func NewLLM(cfg LLMConfig) (*LLM, error) {
	a := &LLM{
		url: cfg.URL, model: cfg.Model, maxTokens: cfg.MaxTokens, tpmLimit: cfg.TPM,
		userAgent: cfg.UserAgent, lookupEnv: cfg.LookupEnv,
	}
	if cfg.URL == "" {
		return nil, errors.New("adapters: llm: no url; want the chat completions endpoint, e.g. https://api.openai.com/v1/chat/completions")
	}
	if err := checkURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("adapters: llm: url %s: %w", shownURL(cfg.URL), err)
	}
	if strings.TrimSpace(cfg.Model) == "" {
		return nil, errors.New("adapters: llm: no model")
	}
	for _, l := range []struct {
		name string
		v    float64
	}{{"tpm", cfg.TPM}, {"rpm", cfg.RPM}} {
		if l.v < 0 || math.IsNaN(l.v) || math.IsInf(l.v, 0) {
			return nil, fmt.Errorf("adapters: llm: %s %v is not a finite number >= 0 (0: no limit)", l.name, l.v)
		}
	}
	switch {
	case a.maxTokens < 0:
		return nil, fmt.Errorf("adapters: llm: max tokens %d is negative", cfg.MaxTokens)
	case a.maxTokens == 0:
		a.maxTokens = DefaultLLMMaxTokens
	}
	if cfg.TPM > 0 && float64(a.maxTokens) > cfg.TPM {
		return nil, fmt.Errorf("adapters: llm: max tokens %d is more than the tpm %v: no call could ever fit in a minute's tokens", a.maxTokens, cfg.TPM)
	}
	if a.userAgent == "" {
		a.userAgent = DefaultUserAgent
	}
	var err error
	prompt := cfg.Prompt
	if prompt == "" {
		prompt = "{item}"
	}
	if a.prompt, err = llmTemplate("prompt", prompt); err != nil {
		return nil, err
	}
	if cfg.System != "" {
		if a.system, err = llmTemplate("system message", cfg.System); err != nil {
			return nil, err
		}
	}
	if a.headers, err = parseHeaders("adapters: llm: ", cfg.Headers); err != nil {
		return nil, err
	}
	if cfg.TPM > 0 {
		// A second of the limit, but room for one call with a short prompt at least: the
		// bucket grows to larger calls as they come.
		a.tpm = NewTokenBucket(cfg.TPM/60, max(cfg.TPM/60, float64(a.estimate([]llmMessage{{}}))))
	}
	if cfg.RPM > 0 {
		a.rpm = NewTokenBucket(cfg.RPM/60, max(cfg.RPM/60, 1))
	}
	rt := cfg.Transport
	if rt == nil {
		a.transport = newTransport(DefaultMaxHeader)
		rt = a.transport
	}
	a.client = &http.Client{Transport: rt}
	return a, nil
}

// llmTemplate compiles a prompt or system message template.
func llmTemplate(what, src string) (*Template, error) {
	t, err := parseTemplate(src, false)
	if err != nil {
		return nil, fmt.Errorf("adapters: llm: %s template: %w", what, err)
	}
	if t.UsesEnv() {
		return nil, fmt.Errorf("adapters: llm: %s template: ${NAME} is not allowed in a %s: the model would see the secret and may repeat it; use {item} or {.field}", what, what)
	}
	return t, nil
}

// EstimateTokens is a cheap upper estimate of the tokens of text for the usual BPE
// tokenizers: a token per 4 bytes of ASCII, rounded up, and a token per other character
// (accented, Cyrillic, CJK, emoji), which tokenizers split far more finely than English.
// It needs no tokenizer; the usage an answer reports corrects it.
func EstimateTokens(text string) int {
	ascii, other := 0, 0
	for i := 0; i < len(text); {
		if text[i] < utf8.RuneSelf {
			ascii++
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(text[i:])
		other++
		i += size
	}
	return (ascii+3)/4 + other
}

// estimate is the tokens a provider counts against the limit when a request with these
// messages arrives: the messages with their overheads, and max_tokens.
func (a *LLM) estimate(msgs []llmMessage) int {
	n := llmTokensPerRequest + a.maxTokens
	for _, m := range msgs {
		n += llmTokensPerMessage + EstimateTokens(m.Content)
	}
	return n
}

// llmMessage is one message of a chat request.
type llmMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// llmRequest is the body of a chat completions request.
type llmRequest struct {
	Model     string       `json:"model"`
	Messages  []llmMessage `json:"messages"`
	MaxTokens int          `json:"max_tokens"`
}

// llmUsage is the usage of a chat completion.
type llmUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// llmAnswer is what is read of a chat completion, or of an error answer.
type llmAnswer struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
			Refusal string  `json:"refusal"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *llmUsage `json:"usage"`
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    any    `json:"code"` // a string at OpenAI, a number at some others
	} `json:"error"`
	Message string `json:"message"` // vLLM and others: {"object":"error","message":…}
}

// llmOutput is the output an ok row keeps.
type llmOutput struct {
	Content      *string   `json:"content"` // null when the model gave no text
	Refusal      string    `json:"refusal,omitempty"`
	FinishReason string    `json:"finish_reason,omitempty"`
	Model        string    `json:"model,omitempty"`
	Usage        *llmUsage `json:"usage,omitempty"`
}

// Do sends the chat completion request for it, after waiting for its tokens. See [LLM].
func (a *LLM) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	msgs := make([]llmMessage, 0, 2)
	if a.system != nil {
		s, err := a.system.Expand(it, a.lookupEnv)
		if err != nil {
			return engine.Outcome{}, err
		}
		msgs = append(msgs, llmMessage{"system", s})
	}
	p, err := a.prompt.Expand(it, a.lookupEnv)
	if err != nil {
		return engine.Outcome{}, err
	}
	msgs = append(msgs, llmMessage{"user", p})
	est := a.estimate(msgs)
	if a.tpm != nil && float64(est) > a.tpmLimit {
		return engine.Outcome{}, engine.Permanent(fmt.Errorf("adapters: llm: the call is estimated at %d tokens (max tokens %d and the prompt), more than the tpm %v: it could never be sent", est, a.maxTokens, a.tpmLimit))
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(llmRequest{Model: a.model, Messages: msgs, MaxTokens: a.maxTokens}); err != nil {
		return engine.Outcome{}, engine.Permanent(fmt.Errorf("adapters: llm: encoding the request: %w", err))
	}

	// The request is built before the tokens are taken, so that an unset variable or a bad
	// header fails the item without spending any of the limit.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body.Bytes()))
	if err != nil { // NewLLM has checked the URL, so this is unexpected
		return engine.Outcome{}, engine.Permanent(fmt.Errorf("adapters: llm: POST %s: cannot build the request", shownURL(a.url)))
	}
	var secrets []string
	if err := setHeaders(req, "adapters: llm: ", a.headers, []engine.Item{it}, a.lookupEnv, &secrets); err != nil {
		return engine.Outcome{}, err
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json", "User-Agent": a.userAgent} {
		if _, ok := req.Header[k]; !ok {
			req.Header[k] = []string{v}
		}
	}

	if _, err := a.take(ctx, est); err != nil {
		return engine.Outcome{}, err
	}
	a.requests.Add(1)
	a.estimated.Add(int64(est))
	resp, err := a.client.Do(req)
	if err != nil {
		// The provider may have counted the request: its tokens stay taken.
		return engine.Outcome{}, noAnswer(ctx, http.MethodPost, a.url, err, secrets)
	}
	defer func() { _ = resp.Body.Close() }() // the body was read; closing it says nothing about the call
	raw, err := io.ReadAll(io.LimitReader(resp.Body, llmMaxAnswer+1))
	if err == nil && len(raw) > llmMaxAnswer {
		err = fmt.Errorf("the answer is longer than %d bytes", llmMaxAnswer)
	}
	if err != nil {
		return engine.Outcome{}, noAnswer(ctx, http.MethodPost, a.url, fmt.Errorf("reading the body of a %d answer: %w", resp.StatusCode, err), secrets)
	}
	raw = redact.Bytes(raw, secrets)
	var ans llmAnswer
	parsed := json.Unmarshal(raw, &ans) == nil

	out := engine.Outcome{Status: resp.StatusCode}
	switch s := resp.StatusCode; {
	case 200 <= s && s <= 299:
		if !parsed || len(ans.Choices) == 0 {
			// Not a chat completion (a captive proxy, a wrong endpoint): retrying cannot help.
			out.Verdict, out.Message = engine.Fail, statusMessage(resp)+": the answer is not a chat completion (no choices)"
			return out, nil
		}
		if ans.Usage != nil {
			if ans.Usage.TotalTokens == 0 {
				ans.Usage.TotalTokens = ans.Usage.PromptTokens + ans.Usage.CompletionTokens
			}
			a.correct(est, ans.Usage.TotalTokens)
		}
		c := ans.Choices[0]
		o := llmOutput{Content: c.Message.Content, Refusal: c.Message.Refusal, FinishReason: c.FinishReason, Model: ans.Model, Usage: ans.Usage}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(o) // strings and numbers always encode
		out.Verdict, out.Output = engine.OK, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		return out, nil
	case s == http.StatusTooManyRequests && parsed && ans.Error != nil && (ans.Error.Type == "insufficient_quota" || ans.Error.Code == "insufficient_quota"):
		// Out of credit, not out of rate: no wait cures it. The provider refused it unseen.
		a.refund(est)
		out.Verdict, out.Message = engine.Fail, statusMessage(resp)+": insufficient_quota: "+shorten(redact.URLs(ans.Error.Message))
		return out, nil
	case s == http.StatusTooManyRequests || s == http.StatusRequestTimeout || 500 <= s && s <= 599:
		// The tokens stay taken: after a 429 the provider counts more than this bucket does
		// (another client on the same key, a stricter window), and spending them slows this
		// one down; after a 5xx it may have generated the answer.
		out.Verdict, out.Message = engine.Retry, statusMessage(resp)
		if s == http.StatusTooManyRequests && parsed && ans.Error != nil && (ans.Error.Type == "tokens" || ans.Error.Type == "requests") {
			out.Message += " (" + ans.Error.Type + ")"
		}
		if d, ok := LLMRetryAfter(resp.Header, est, time.Now()); ok {
			out.RetryAfter = d
		}
		return out, nil
	default:
		// Refused before any generation (a bad request, a wrong key): the tokens go back.
		a.refund(est)
		out.Verdict, out.Message = engine.Fail, statusMessage(resp)
		if msg := ans.errorMessage(parsed); msg != "" {
			out.Message += ": " + shorten(redact.URLs(msg))
		}
		return out, nil
	}
}

// errorMessage returns the provider's explanation of an error answer, or "".
func (ans *llmAnswer) errorMessage(parsed bool) string {
	switch {
	case !parsed:
		return ""
	case ans.Error != nil:
		return strings.TrimSpace(ans.Error.Message)
	default:
		return strings.TrimSpace(ans.Message)
	}
}

// take waits until the call's estimated tokens and then one request are there, and takes
// them; it returns how long that took. When ctx ends first, it takes nothing and returns
// ctx.Err(). The wait is told to the engine (engine.WaitingFor, engine.CallStarts): the row's wait_ms,
// not its latency.
func (a *LLM) take(ctx context.Context, est int) (time.Duration, error) {
	start := time.Now()
	engine.WaitingFor(ctx, "tpm")
	if err := a.tpm.Take(ctx, float64(est)); err != nil {
		return 0, err
	}
	engine.WaitingFor(ctx, "rpm")
	if err := a.rpm.Take(ctx, 1); err != nil {
		a.tpm.Adjust(-float64(est))
		return 0, err
	}
	engine.CallStarts(ctx)
	waited := time.Since(start)
	a.waitedNS.Add(int64(waited))
	return waited, nil
}

// correct settles the TPM bucket once the provider has said what a call used.
func (a *LLM) correct(est int, used int64) {
	a.used.Add(used)
	switch d := used - int64(est); {
	case d > 0:
		a.charged.Add(d)
	case d < 0:
		a.givenBack.Add(-d)
	}
	a.tpm.AdjustAt(time.Now(), float64(used)-float64(est))
}

// refund gives a call's estimate back: the provider refused it before generating anything.
func (a *LLM) refund(est int) {
	a.givenBack.Add(int64(est))
	a.tpm.AdjustAt(time.Now(), -float64(est))
}

// LLMStats says what an [LLM] adapter sent and how its estimates compared with the usage the
// provider reported.
type LLMStats struct {
	// Requests counts the requests sent.
	Requests int64
	// Estimated is the sum of the estimates taken from the TPM bucket before the requests.
	Estimated int64
	// Used is the sum of the total_tokens the answers reported.
	Used int64
	// GivenBack is the tokens returned to the TPM bucket: what calls used below their
	// estimate, and the estimates of calls refused before any generation.
	GivenBack int64
	// Charged is the tokens taken from the TPM bucket after answers that used more than
	// their estimate.
	Charged int64
	// Waited is the time calls spent waiting for tokens, summed over the calls.
	Waited time.Duration
}

// Stats returns the adapter's counters so far.
func (a *LLM) Stats() LLMStats {
	return LLMStats{
		Requests: a.requests.Load(), Estimated: a.estimated.Load(), Used: a.used.Load(),
		GivenBack: a.givenBack.Load(), Charged: a.charged.Load(), Waited: time.Duration(a.waitedNS.Load()),
	}
}

// Close closes the adapter's idle connections. Calls in flight are not affected.
func (a *LLM) Close() error {
	if a.transport != nil {
		a.transport.CloseIdleConnections()
	}
	return nil
}

// LLMRetryAfter returns the wait a rate-limited answer's headers ask for, for a call of need
// tokens: retry-after-ms (milliseconds, the most precise) if present, else retry-after
// (seconds or an HTTP date), else what the x-ratelimit-* headers imply. For those, a limit
// whose remaining is known to be short of the call (no request left; fewer tokens than need)
// gives the time until its refill covers the call, which with x-ratelimit-limit-* known is
// reset × missing / used rather than the whole reset (the time until the bucket is full);
// the longest of such limits wins. When no limit is known to be short, the sooner reset is
// taken. Resets are durations as OpenAI writes them ("6m0s", "1.5s", "20ms"), plain seconds
// ("0.5"), or RFC 3339 instants. ok is false when no header gives a wait.
func LLMRetryAfter(h http.Header, need int, now time.Time) (d time.Duration, ok bool) {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && !math.IsInf(ms, 0) {
			return durationOf(ms / 1e3), true
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if d, ok := ParseRetryAfter(v, now); ok {
			return d, true
		}
	}
	var short, all []time.Duration
	for _, kind := range []struct {
		name string
		need float64
	}{{"requests", 1}, {"tokens", float64(max(need, 1))}} {
		reset, ok := parseReset(h.Get("X-Ratelimit-Reset-"+kind.name), now)
		if !ok {
			continue
		}
		all = append(all, reset)
		remaining, okR := parseCount(h.Get("X-Ratelimit-Remaining-" + kind.name))
		if !okR || remaining >= kind.need {
			continue
		}
		wait := reset
		if limit, okL := parseCount(h.Get("X-Ratelimit-Limit-" + kind.name)); okL && limit > remaining && kind.need <= limit {
			// The bucket refills limit-remaining in reset: the call needs need-remaining of it.
			wait = time.Duration(float64(reset) * (kind.need - remaining) / (limit - remaining))
		}
		short = append(short, wait)
	}
	switch {
	case len(short) > 0:
		return maxOf(short), true
	case len(all) > 0:
		return minOf(all), true
	}
	return 0, false
}

// parseReset parses an x-ratelimit-reset-* value into a wait from now: a Go-style duration
// ("6m0s", "1.5s", "20ms"), plain seconds ("2", "0.5") or an RFC 3339 instant (a past one
// gives 0).
func parseReset(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d, true
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && !math.IsInf(s, 0) {
		return durationOf(s), true
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// parseCount parses an x-ratelimit-limit-* or -remaining-* value.
func parseCount(v string) (float64, bool) {
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || n < 0 || math.IsInf(n, 0) {
		return 0, false
	}
	return n, true
}

// durationOf converts seconds to a Duration, saturating instead of overflowing.
func durationOf(seconds float64) time.Duration {
	if seconds >= float64(math.MaxInt64)/1e9 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(math.Ceil(seconds * 1e9))
}

func maxOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds[1:] {
		m = max(m, d)
	}
	return m
}

func minOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds[1:] {
		m = min(m, d)
	}
	return m
}
