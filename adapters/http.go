package adapters

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redact"
)

// DefaultMaxBody is the number of body bytes an [HTTP] adapter keeps in a result row unless
// [HTTPConfig.MaxBody] says otherwise.
const DefaultMaxBody = 64 << 10

// DefaultMaxHeader caps the response headers of one answer unless [HTTPConfig.MaxHeader] says
// otherwise. Go's own default (10 MB) held for each of hundreds of calls in flight takes
// gigabytes; real answers' headers are a few KiB (cookies, links, policies: tens at most).
const DefaultMaxHeader = 256 << 10

// DefaultUserAgent is the User-Agent an [HTTP] adapter sends unless [HTTPConfig.UserAgent] or a
// header says otherwise.
const DefaultUserAgent = "throttle/dev"

// httpDrainLimit bounds how much of a body beyond MaxBody is read and discarded so that the
// connection can go back to the keep-alive pool; a longer body costs a new connection instead.
const httpDrainLimit = 256 << 10

// httpMethods are the methods [NewHTTP] accepts.
var httpMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// HTTPConfig configures an [HTTP] adapter. Its zero value is not usable: URL is required.
type HTTPConfig struct {
	// URL is a URL template (see [Template]): the values of {item} and {.name} are escaped,
	// except a placeholder that starts it; ${NAME} is not allowed.
	URL string
	// Method is the request method, in any case; "" means GET, or POST when Body is set.
	Method string
	// Headers are request headers, each "Key: Value"; the value is a template and may read a
	// secret with ${NAME}. A key may repeat. "Host: name" sets the request's host.
	Headers []string
	// Body is the request body template; "" sends no body. Set Content-Type with a header:
	// none is guessed.
	Body string
	// MaxBody is the number of body bytes kept in the result row; 0 means [DefaultMaxBody].
	MaxBody int64
	// MaxHeader caps the response headers of one answer; 0 means [DefaultMaxHeader]. An answer
	// whose headers are larger fails its item, without a retry.
	MaxHeader int64
	// OKStatus lists the statuses that are a success; nil means 200–299.
	OKStatus []int
	// RetryStatus lists the statuses that ask to try again later; nil means 408, 429 and
	// 500–599. OKStatus is consulted first; a status in neither list fails.
	RetryStatus []int
	// LookupEnv reads ${NAME} at call time; nil means [os.LookupEnv].
	LookupEnv func(string) (string, bool)
	// UserAgent is sent unless a header sets User-Agent; "" means [DefaultUserAgent].
	UserAgent string
	// PerHost limits each host (host:port) of the URLs on its own; see [HTTP.Hosts].
	PerHost HostLimits
	// NoFollow keeps a 3xx as the answer; otherwise up to 10 redirects are followed and counted
	// in the row ("redirects").
	NoFollow bool
	// CACert is a PEM file of certificates to trust besides the system's.
	CACert string
	// Insecure skips the verification of TLS certificates (the CLI warns).
	Insecure bool
	// SaveConfig, when its SaveDir is set, streams each ok body to a file instead of the row.
	SaveConfig
}

// EnvUses lists every ${NAME} that the headers and the body read at call time (the URL may
// hold none), so that a caller can check them all before the first call.
func (c HTTPConfig) EnvUses() []EnvUse {
	return append(headerEnvUses(c.Headers), envUses("body", c.Body, c.Body)...)
}

// TargetHost is the host name that the URL template spells out, for a check before the run
// that it resolves; "" when the items supply it or it is an address (see [HTTPConfig.URL]).
func (c HTTPConfig) TargetHost() string { return literalHost(c.URL) }

// maxRedirects is how many redirects a call follows before it fails.
const maxRedirects = 10

// HTTP is the http adapter: one request per item, built from the templates of an
// [HTTPConfig], over one shared keep-alive connection pool. It has no time limit of its own:
// the engine bounds each call with ctx. It is safe for concurrent use.
//
// Like [net/http.RoundTripper], Do returns an [engine.Outcome] for every answer, whatever its
// status, and an error only when no answer was obtained. Such errors never contain the query
// or userinfo of the URL (see [redact.URL]), and the values of ${NAME} used in a call (of 4
// bytes or more) are replaced by "REDACTED", in every spelling [redact] knows, in the body it
// keeps (before it is cut at MaxBody, so that no piece of one survives the cut) and in its
// messages and errors, so that a server that echoes the request (as many error pages do,
// and as Go's HTTP client does when it quotes a malformed answer) cannot put a secret into a
// result row.
type HTTP struct {
	method    string
	url       *Template
	headers   []httpHeader
	body      *Template // nil: no body
	maxBody   int64
	maxHeader int64
	userAgent string
	lookupEnv func(string) (string, bool)
	ok, retry map[int]bool // nil: the default policy
	transport *http.Transport
	client    *http.Client
	now       func() time.Time // for Retry-After dates
	gate      *hostGate        // nil: no per-host limits
	save      *saver           // nil: bodies go into rows
}

// httpHeader is one compiled header of an [HTTP] adapter.
type httpHeader struct {
	key   string // canonical
	value *Template
}

var _ engine.Adapter = (*HTTP)(nil)
var _ io.Closer = (*HTTP)(nil)

// NewHTTP checks cfg and returns an adapter for it. It fails on a URL template that cannot
// be compiled or does not start with http:// or https://, a header that is not "Key: Value"
// (the error numbers the headers from 1), a body template that cannot be compiled, an unknown
// method, a negative MaxBody or a status outside 100–999.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	h := &HTTP{
		maxBody:   cfg.MaxBody,
		maxHeader: cfg.MaxHeader,
		userAgent: cfg.UserAgent,
		lookupEnv: cfg.LookupEnv,
		now:       time.Now,
	}
	if h.maxBody < 0 {
		return nil, fmt.Errorf("adapters: max body %d is negative", cfg.MaxBody)
	}
	if h.maxHeader < 0 {
		return nil, fmt.Errorf("adapters: max header %d is negative", cfg.MaxHeader)
	}
	if h.maxHeader == 0 {
		h.maxHeader = DefaultMaxHeader
	}
	if l := cfg.PerHost; l.Rate < 0 || l.Burst < 0 || l.Parallelism < 0 {
		return nil, fmt.Errorf("adapters: per-host limits %+v: none may be negative", l)
	}
	if cfg.PerHost.active() {
		h.gate = newHostGate(cfg.PerHost, time.Now)
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBody
	}
	if h.userAgent == "" {
		h.userAgent = DefaultUserAgent
	}
	if h.lookupEnv == nil {
		h.lookupEnv = os.LookupEnv
	}

	if cfg.URL == "" {
		return nil, errors.New("adapters: url template is empty")
	}
	u, err := parseTemplate(cfg.URL, true)
	if err != nil {
		return nil, fmt.Errorf("adapters: url template: %w", err)
	}
	if u.startsWithLiteral() {
		// Fill the placeholders with a sample to check the scheme and host now rather than
		// on every item.
		var b strings.Builder
		for _, p := range u.parts {
			if p.kind == tmplLiteral {
				b.WriteString(p.text)
			} else {
				b.WriteString("x")
			}
		}
		if err := checkURL(b.String()); err != nil {
			return nil, fmt.Errorf("adapters: url template %s: %w", redact.URL(cfg.URL), err)
		}
	}
	h.url = u

	if h.headers, err = parseHeaders("adapters: ", cfg.Headers); err != nil {
		return nil, err
	}

	if cfg.Body != "" {
		t, err := parseTemplate(cfg.Body, false)
		if err != nil {
			return nil, fmt.Errorf("adapters: body template: %w", err)
		}
		h.body = t
	}

	h.method = strings.ToUpper(strings.TrimSpace(cfg.Method))
	switch {
	case h.method == "" && h.body != nil:
		h.method = http.MethodPost
	case h.method == "":
		h.method = http.MethodGet
	default:
		known := false
		for _, m := range httpMethods {
			known = known || m == h.method
		}
		if !known {
			return nil, fmt.Errorf("adapters: unknown method %q; want one of %s", cfg.Method, strings.Join(httpMethods, ", "))
		}
	}

	if h.ok, err = statusSet("ok", cfg.OKStatus); err != nil {
		return nil, err
	}
	if h.retry, err = statusSet("retry", cfg.RetryStatus); err != nil {
		return nil, err
	}

	h.transport = newTransport(h.maxHeader)
	if cfg.CACert != "" || cfg.Insecure {
		tc, err := tlsConfig(cfg.CACert, cfg.Insecure)
		if err != nil {
			return nil, err
		}
		h.transport.TLSClientConfig = tc
	}
	// No Timeout and no retrying layer: one Do is one request (plus redirects).
	h.client = &http.Client{Transport: h.transport, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if cfg.NoFollow {
			return http.ErrUseLastResponse
		}
		if len(via) > maxRedirects {
			return errTooManyRedirects
		}
		if n, ok := req.Context().Value(redirectsKey{}).(*int); ok {
			*n = len(via)
		}
		return nil
	}}
	if err := h.setupSave(cfg.SaveConfig); err != nil {
		return nil, err
	}
	return h, nil
}

// parseHeaders compiles "Key: Value" lines; prefix starts its errors, which number the
// headers from 1.
func parseHeaders(prefix string, lines []string) ([]httpHeader, error) {
	var hs []httpHeader
	for i, line := range lines {
		key, value, ok := strings.Cut(line, ":")
		key = strings.TrimSpace(key)
		if !ok {
			return nil, fmt.Errorf("%sheader %d of %d has no \":\"; want \"Key: Value\"", prefix, i+1, len(lines))
		}
		if !validHeaderName(key) {
			return nil, fmt.Errorf("%sheader %d of %d: name is not a valid HTTP header name; want \"Key: Value\"", prefix, i+1, len(lines))
		}
		t, err := parseTemplate(strings.TrimSpace(value), false)
		if err != nil {
			return nil, fmt.Errorf("%sheader %d of %d (%s): %w", prefix, i+1, len(lines), key, err)
		}
		hs = append(hs, httpHeader{key: http.CanonicalHeaderKey(key), value: t})
	}
	return hs, nil
}

// setHeaders expands the headers for items into req ("Host" sets req.Host), adding the values
// of ${NAME} to secrets; prefix starts its errors.
func setHeaders(req *http.Request, prefix string, headers []httpHeader, items []engine.Item, lookupEnv func(string) (string, bool), secrets *[]string) error {
	req.Header = make(http.Header, len(headers)+3)
	var b strings.Builder
	for _, hd := range headers {
		b.Reset()
		if err := hd.value.expandItems(&b, items, lookupEnv, secrets); err != nil {
			return err
		}
		v := b.String()
		if !validHeaderValue(v) {
			return engine.Permanent(fmt.Errorf("%sheader %s: the value has a control character", prefix, hd.key))
		}
		if hd.key == "Host" {
			req.Host = v
			continue
		}
		req.Header[hd.key] = append(req.Header[hd.key], v)
	}
	return nil
}

// errTooManyRedirects ends a call that a target keeps redirecting: retrying cannot help.
var errTooManyRedirects = fmt.Errorf("stopped after %d redirects", maxRedirects)

// redirectsKey carries a call's redirect counter through its request's context.
type redirectsKey struct{}

// tlsConfig trusts the system's certificates and those of caFile, or none at all (insecure).
func tlsConfig(caFile string, insecure bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		tc.InsecureSkipVerify = true // asked for with --insecure; the CLI warns
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("adapters: cacert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("adapters: cacert %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// decompress decodes a body the transport left compressed: Go decodes gzip by itself only when
// it asked for it, not when a --header asked (Accept-Encoding).
func decompress(resp *http.Response) error {
	if resp.Uncompressed {
		return nil
	}
	var r io.ReadCloser
	var err error
	switch strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))) {
	case "gzip", "x-gzip":
		r, err = gzip.NewReader(resp.Body)
	case "deflate":
		r, err = zlib.NewReader(resp.Body)
	default:
		return nil
	}
	if err != nil {
		if errors.Is(err, io.EOF) { // an empty body
			return nil
		}
		return fmt.Errorf("decoding a %s body: %w", resp.Header.Get("Content-Encoding"), err)
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{r, resp.Body}
	resp.Header.Del("Content-Encoding")
	resp.ContentLength = -1
	return nil
}

// headersTooLong reports whether err is the transport refusing an answer whose headers passed
// MaxResponseHeaderBytes. net/http has no error value for it, only this text (HTTP/1); an
// HTTP/2 server that does it gets a protocol error instead.
func headersTooLong(err error) bool {
	return err != nil && strings.Contains(err.Error(), "server response headers exceeded")
}

// formatSize renders a size as the size flags take it: "256KiB", "1MiB", or bytes.
func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// newTransport is the keep-alive pool of the HTTP adapters, reading at most maxHeader bytes of
// an answer's headers. It has no dial, TLS or header timeouts: the engine's per-call deadline
// bounds every phase.
func newTransport(maxHeader int64) *http.Transport {
	return &http.Transport{
		MaxResponseHeaderBytes: maxHeader,
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           0, // no limit across hosts
		MaxIdleConnsPerHost:    1024,
		IdleConnTimeout:        90 * time.Second,
	}
}

// checkURL reports why s cannot be requested: it does not parse, its scheme is not http or
// https, or it has no host. Its errors never contain s.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, query and all
		}
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// statusSet returns the set of the statuses in list, or nil for an empty list.
func statusSet(what string, list []int) (map[int]bool, error) {
	if len(list) == 0 {
		return nil, nil
	}
	set := make(map[int]bool, len(list))
	for _, s := range list {
		if s < 100 || s > 999 {
			return nil, fmt.Errorf("adapters: %s status %d is outside 100-999", what, s)
		}
		set[s] = true
	}
	return set, nil
}

// validHeaderName reports whether s is an HTTP token (RFC 9110, section 5.6.2).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s has no control character other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// verdict classifies an answer's status.
func (h *HTTP) verdict(status int) engine.Verdict {
	if h.ok != nil {
		if h.ok[status] {
			return engine.OK
		}
	} else if 200 <= status && status <= 299 {
		return engine.OK
	}
	if h.retry != nil {
		if h.retry[status] {
			return engine.Retry
		}
	} else if status == http.StatusRequestTimeout || status == http.StatusTooManyRequests ||
		500 <= status && status <= 599 {
		return engine.Retry
	}
	return engine.Fail
}

// Do sends the request for it and classifies the answer. See [HTTP] for what it returns.
func (h *HTTP) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	return h.call(ctx, []engine.Item{it})
}

// call sends one request for items: one item, or a chunk whose templates have no per-item
// placeholder (see [HTTPBatch]).
func (h *HTTP) call(ctx context.Context, items []engine.Item) (engine.Outcome, error) {
	var b strings.Builder
	if err := h.url.expandItems(&b, items, nil, nil); err != nil {
		return engine.Outcome{}, err
	}
	rawURL := b.String()
	if err := checkURL(rawURL); err != nil {
		return engine.Outcome{}, engine.Permanent(fmt.Errorf("adapters: url %s: %w", shownURL(rawURL), err))
	}

	var secrets []string
	var body io.Reader
	if h.body != nil {
		b.Reset()
		if err := h.body.expandItems(&b, items, h.lookupEnv, &secrets); err != nil {
			return engine.Outcome{}, err
		}
		body = strings.NewReader(b.String())
	}
	req, err := http.NewRequestWithContext(ctx, h.method, rawURL, body)
	if err != nil { // checkURL has parsed it, so this is unexpected
		return engine.Outcome{}, engine.Permanent(fmt.Errorf("adapters: %s %s: cannot build the request", h.method, shownURL(rawURL)))
	}
	if err := setHeaders(req, "adapters: ", h.headers, items, h.lookupEnv, &secrets); err != nil {
		return engine.Outcome{}, err
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{h.userAgent}
	}

	done := func(int, time.Duration) {}
	if h.gate != nil {
		if done, err = h.gate.enter(ctx, req.URL.Host); err != nil {
			return engine.Outcome{}, noAnswer(ctx, h.method, rawURL, err, secrets)
		}
	}
	redirects := 0
	req = req.WithContext(context.WithValue(req.Context(), redirectsKey{}, &redirects))
	resp, err := h.client.Do(req)
	if err != nil {
		done(0, 0)
		if headersTooLong(err) {
			// The same server would send them again: a retry only costs another read.
			return engine.Outcome{}, engine.Permanent(noAnswer(ctx, h.method, rawURL,
				fmt.Errorf("response headers over --max-header %s", formatSize(h.maxHeader)), secrets))
		}
		if errors.Is(err, errTooManyRedirects) {
			return engine.Outcome{}, engine.Permanent(noAnswer(ctx, h.method, rawURL, err, secrets))
		}
		return engine.Outcome{}, noAnswer(ctx, h.method, rawURL, err, secrets)
	}
	defer func() { _ = resp.Body.Close() }() // the body was read; closing it says nothing about the call
	if err := decompress(resp); err != nil {
		done(0, 0)
		return engine.Outcome{}, noAnswer(ctx, h.method, rawURL, err, secrets)
	}
	var retryAfter time.Duration
	if v := resp.Header.Get("Retry-After"); v != "" {
		if d, ok := ParseRetryAfter(v, h.now()); ok {
			retryAfter = d
		}
	}
	done(resp.StatusCode, retryAfter) // the host's turn ends with its answer, body or not
	var (
		kept      []byte
		truncated bool
		saved     *savedBody // an ok body streamed to its file (SaveDir) instead of the row
	)
	if h.save != nil && h.verdict(resp.StatusCode) == engine.OK {
		saved, err = h.save.write(items, resp)
	} else {
		// Scrubbed before it is cut, over a secret's reach past the cut, so that a secret the cut
		// goes through is found whole and leaves no piece of itself.
		kept, truncated, err = readBody(resp.Body, resp.ContentLength, h.maxBody, redact.Reach(secrets))
		if truncated {
			kept = redact.Cut(kept, int(h.maxBody), secrets)
		} else {
			kept = redact.Bytes(kept, secrets) // may outgrow maxBody by a few bytes: REDACTED is long
		}
	}
	if err != nil {
		return engine.Outcome{}, noAnswer(ctx, h.method, rawURL, fmt.Errorf("reading the body of a %d answer: %w", resp.StatusCode, err), secrets)
	}

	out := engine.Outcome{Status: resp.StatusCode, Verdict: h.verdict(resp.StatusCode)}
	if out.Verdict != engine.OK {
		out.Message = redact.String(statusMessage(resp), secrets) // a reason phrase may echo a header
	}
	out.RetryAfter = retryAfter
	out.Quota = ParseQuota(resp.Header, h.now())
	if redirects > 0 {
		if out.Extra == nil {
			out.Extra = map[string]any{}
		}
		out.Extra["redirects"] = redirects
	}
	// With per-host limits, a host's Retry-After holds that host (the gate did it), not the run.
	out.LocalRetryAfter = h.gate != nil
	switch {
	case saved != nil:
		saved.fill(&out)
	case truncated:
		out.Output = jsonString(trimPartialRune(kept))
		if out.Extra == nil {
			out.Extra = map[string]any{}
		}
		out.Extra["truncated"] = true
	case len(kept) == 0:
		// No output: an empty body is not a JSON value.
	case utf8.Valid(kept):
		var buf bytes.Buffer
		buf.Grow(len(kept))
		if json.Compact(&buf, kept) == nil {
			out.Output = buf.Bytes()
		} else {
			out.Output = jsonString(kept)
		}
	default:
		out.Output = jsonString(kept)
	}
	return out, nil
}

// Hosts returns the n busiest hosts of a run with per-host limits (nil without them): by calls
// in flight and waiting for their host's turn, then by 429s.
func (h *HTTP) Hosts(n int) []HostLoad {
	if h.gate == nil {
		return nil
	}
	return h.gate.loads(n)
}

// HTTPBatch is the http adapter for batch endpoints: one request per chunk (run --chunk N),
// whose body template writes the whole chunk with {items} or {items_jsonl}. Every item of the
// chunk shares the answer's outcome; with split, an ok answer that is a JSON array of one
// element per item gives each item its own element as output, in order.
type HTTPBatch struct {
	*HTTP
	split bool
}

var _ engine.Batcher = (*HTTPBatch)(nil)

// NewHTTPBatch checks cfg for a batch endpoint and returns its adapter: the body must have
// {items} or {items_jsonl}, and neither the url, the headers nor the body may have {item} or
// {.name}, which name one item of the chunk.
func NewHTTPBatch(cfg HTTPConfig, split bool) (*HTTPBatch, error) {
	h, err := NewHTTP(cfg)
	if err != nil {
		return nil, err
	}
	switch {
	case h.body == nil || !h.body.Batch():
		err = errors.New("adapters: a batch needs {items} or {items_jsonl} in the body")
	case h.url.PerItem() || h.body.PerItem():
		err = errors.New("adapters: {item} and {.name} name one item; a batch request is for the whole chunk: use {items} in the body")
	}
	for _, hd := range h.headers {
		if err == nil && hd.value.PerItem() {
			err = fmt.Errorf("adapters: header %s: {item} and {.name} name one item; a batch request is for the whole chunk", hd.key)
		}
	}
	if err != nil {
		_ = h.Close() // the config error is what matters; nothing was sent yet
		return nil, err
	}
	return &HTTPBatch{HTTP: h, split: split}, nil
}

// DoBatch sends one request for the chunk and gives its outcome to every item.
func (b *HTTPBatch) DoBatch(ctx context.Context, items []engine.Item) ([]engine.Outcome, error) {
	out, err := b.call(ctx, items)
	if err != nil {
		return nil, err
	}
	outs := make([]engine.Outcome, len(items))
	for i := range outs {
		outs[i] = out
	}
	if !b.split || out.Verdict != engine.OK {
		return outs, nil
	}
	var parts []json.RawMessage
	if json.Unmarshal(out.Output, &parts) != nil || len(parts) != len(items) {
		n := "not a JSON array"
		if parts != nil {
			n = fmt.Sprintf("%d results", len(parts))
		}
		for i := range outs {
			outs[i] = engine.Outcome{Verdict: engine.Fail, Status: out.Status, Output: out.Output,
				Message: fmt.Sprintf("cannot split the answer for %d items: %s", len(items), n)}
		}
		return outs, nil
	}
	for i := range outs {
		outs[i].Output = parts[i]
	}
	return outs, nil
}

// Close closes the adapter's idle connections. Calls in flight are not affected.
func (h *HTTP) Close() error {
	h.transport.CloseIdleConnections()
	return nil
}

// readBody reads the first maxBody bytes of r, and reach bytes more, and reports whether
// there were more than maxBody: the caller scrubs what it read, then cuts it at maxBody (see
// [redact.Cut]). What is left it drains up to [httpDrainLimit] so that the connection can be
// reused. length is the Content-Length, -1 when unknown.
func readBody(r io.Reader, length, maxBody int64, reach int) ([]byte, bool, error) {
	limit := maxBody + int64(reach)
	var buf bytes.Buffer
	if length > 0 {
		buf.Grow(int(min(length, limit) + 1))
	}
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, false, err
	}
	if int64(buf.Len()) <= maxBody {
		return buf.Bytes(), false, nil
	}
	_, _ = io.CopyN(io.Discard, r, httpDrainLimit) // best effort
	return buf.Bytes(), true, nil
}

// statusMessage returns e.g. "503 Service Unavailable".
func statusMessage(resp *http.Response) string {
	code := strconv.Itoa(resp.StatusCode)
	text := http.StatusText(resp.StatusCode)
	if text == "" {
		// The server's reason phrase, unless it is Go's filler for an unknown code.
		text = strings.TrimSpace(strings.TrimPrefix(resp.Status, code))
		if text == "status code "+code {
			text = ""
		}
	}
	if text == "" {
		return code
	}
	return code + " " + text
}

// jsonString returns b as a JSON string, with invalid UTF-8 replaced by U+FFFD and without
// escaping <, > and &.
func jsonString(b []byte) json.RawMessage {
	var buf bytes.Buffer
	buf.Grow(len(b) + 2)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(string(b)) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// trimPartialRune drops an incomplete UTF-8 sequence that a truncation left at the end of b.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return b // ASCII: nothing was cut
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}

// redactedError is an error of a call that obtained no answer, its text redacted.
type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.cause }

// noAnswer returns the error of a call to rawURL that obtained no answer: its text has the
// URLs redacted and the call's secrets scrubbed (Go's client quotes a malformed status line,
// header, Content-Length, Transfer-Encoding or Location, any of which may echo a header), it
// wraps ctx.Err() when ctx is done (so that errors.Is finds context.DeadlineExceeded), and it
// is retryable.
func noAnswer(ctx context.Context, method, rawURL string, err error, secrets []string) error {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err // its text would repeat the URL unredacted
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(cause, ctxErr) {
		cause = ctxErr
	}
	return &redactedError{
		msg:   "adapters: " + method + " " + shownURL(rawURL) + ": " + shorten(redact.String(redact.URLs(cause.Error()), secrets)),
		cause: cause,
	}
}

// maxShown bounds a URL or cause quoted in an error: a 10 MB item must not make a 10 MB row.
const maxShown = 256

// shownURL is the URL as errors quote it: redacted, and cut past maxShown bytes.
func shownURL(rawURL string) string { return shorten(redact.URL(rawURL)) }

// shorten cuts s past maxShown bytes (at a rune boundary) and says how long it was.
func shorten(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown - 56
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:cut], len(s))
}

// ParseRetryAfter parses the value of a Retry-After header, delta-seconds ("120") or an
// HTTP-date in any of the three formats [http.ParseTime] accepts, into a wait from now. A date
// in the past and "0" give (0, true); anything else that does not parse, a negative number
// among it, gives (0, false). A large value is returned as it is (the caller caps it), up to
// the largest Duration.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	digits := true
	for i := 0; i < len(v); i++ {
		digits = digits && '0' <= v[i] && v[i] <= '9'
	}
	if digits {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return time.Duration(math.MaxInt64), true // overflow: as large as it gets
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		return 0, true
	}
	return d, true
}
