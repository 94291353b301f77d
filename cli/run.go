package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redact"
	"github.com/throttle-dev/throttle/tui"
)

func newRunCmd(env *Env) *cobra.Command {
	rf := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run ADAPTER [flags]",
		Short: "Run a job: every input item through an adapter, under live limits",
		Long: `Run a job: every item of --input goes through the adapter, under a parallelism cap,
per-worker pacing and a global rate cap. Each item ends as exactly one JSON line in
--out (ok, or failed with status, error and attempts).

The three limits are ceilings: under them the engine finds the target's limit
and holds the run just under it (--adapt, on by default): 429s and spent quotas
lower an effective rate (or, for 429s without Retry-After, an effective
parallelism) that climbs back while the target accepts. --auto also raises the
ceilings themselves, from a low start.

Retryable outcomes (429, 408, 5xx, network errors, timeouts) are retried with
exponential backoff and full jitter; a server's Retry-After is honoured (capped by
--max-backoff) and also holds back every worker's next call for that long
(--hold probe: until a test call succeeds).

A file given as --input is read as it was when the run started: up to the size it
had then (a line cut there is completed, never run in part); lines appended later
are left, with a warning. --follow reads on as the file grows, taking each line
once its newline has arrived, until the run is drained. Stdin, a FIFO or <(…) is
read once as it comes, with no total. A line over 16 MiB is a failed row.

Results, --log and --record files are created 0600: they hold what the target
answered. A file that already exists keeps its mode (with a note if others may
read it).

Progress lines and the screen go to stderr; the end summary goes to stdout (a
terminal or not): failures by cause with a sample message each, and the command
that retries only them. --summary-json FILE also writes it as JSON.

On ctrl+c (SIGINT), SIGTERM or SIGHUP the run drains: no new call starts, calls in
flight finish and their rows are written; a second ctrl+c cancels them too.

Before the first call a run checks that every ${NAME} its templates read is set,
that the directories of --out, --log, --record and --save-dir take files, and the
names of --limit and --job: a mistake exits 2, naming the flag. A --url host that
does not resolve is only a warning.

Exit status: 0 every item ok, 1 some items failed (all recorded), 2 usage error
(nothing was called), 130 interrupted.`,
		Example: `  throttle run http --input ids.txt \
      --url 'https://api.example.com/v1/users/{item}' \
      --header 'Authorization: Bearer ${API_TOKEN}' \
      --parallelism 8 --rate 50 --pace 1s
  throttle run sim --input ids.txt --sim-rate 100 --parallelism 16`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("run needs an adapter: one of %s (e.g. 'throttle run http --help')", adapterNames(cmd))
			}
			return usageError("unknown adapter %q: want one of %s", args[0], adapterNames(cmd))
		},
	}
	rf.register(cmd.PersistentFlags(), true)
	// A job file (--config) fills in the flags the command line left unset, and
	// --print-config answers before anything is called: see config.go.
	cmd.PersistentPreRunE = func(c *cobra.Command, args []string) error { return applyJobFile(env, rf, cmd, c, args) }
	run := func(cmd *cobra.Command, j job) error { return runJob(cmd.Context(), env, rf, j) }
	addAdapters(cmd, env, run)
	// Before an adapter is built (the http adapter creates --save-dir, postgres connects),
	// the run's own flags are checked: see preflight.go.
	for _, c := range cmd.Commands() {
		build := c.RunE
		if build == nil {
			continue
		}
		c.RunE = func(c *cobra.Command, args []string) error {
			if err := preflightRun(rf, c); err != nil {
				return err
			}
			return build(c, args)
		}
	}
	return cmd
}

func adapterNames(cmd *cobra.Command) string {
	var names []string
	for _, c := range cmd.Commands() {
		names = append(names, c.Name())
	}
	return strings.Join(names, ", ")
}

// httpFlags are the flags of the http adapter.
type httpFlags struct {
	url         string
	method      string
	headers     []string
	body        string
	maxBody     string
	maxHeader   string
	okStatus    string
	retryStatus string
	split       bool
	hostRate    string
	hostBurst   int
	hostPar     int
	noFollow    bool
	cacert      string
	insecure    bool
}

func (f *httpFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.url, "url", "", "URL template: {item} is the input line (URL-escaped, raw when it starts the URL), {.field} a field of a JSONL item")
	fs.StringVar(&f.method, "method", "", "request method (default GET, or POST with --body)")
	fs.StringArrayVar(&f.headers, "header", nil, "request header 'Key: Value' (repeatable); ${NAME} reads environment variable NAME at call time")
	fs.StringVar(&f.body, "body", "", "request body template ({item}, {.field}, ${NAME})")
	fs.StringVar(&f.maxBody, "max-body", "64KiB", "response bytes kept in a row's output (e.g. 4KiB, 1MiB)")
	fs.StringVar(&f.maxHeader, "max-header", "256KiB", "largest response headers read from one answer; larger ones fail the item, not retried (Go's own 10 MB, held per call in flight, takes gigabytes)")
	fs.StringVar(&f.okStatus, "ok-status", "", "statuses that count as success, e.g. 200-299,404 (default 200-299)")
	fs.StringVar(&f.retryStatus, "retry-status", "", "statuses to retry, e.g. 429,503 (default 408,429,500-599)")
	fs.BoolVar(&f.split, "split-response", false, "batch (--body with {items}): an ok answer that is a JSON array of one result per item gives each item its own")
	fs.StringVar(&f.hostRate, "per-host-rate", "", "politeness: cap on calls to each host (host:port), e.g. 2/s or 60/m (default none)")
	fs.IntVar(&f.hostBurst, "per-host-burst", 1, "token-bucket burst for --per-host-rate")
	fs.IntVar(&f.hostPar, "per-host-parallelism", 0, "politeness: most calls in flight to each host (0: none)")
	fs.BoolVar(&f.noFollow, "no-follow", false, "keep a redirect (3xx) as the answer instead of following it (up to 10 are followed and counted in the row)")
	fs.StringVar(&f.cacert, "cacert", "", "PEM file of CA certificates to trust besides the system's")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify TLS certificates (a warning says so)")
}

func (f *httpFlags) config(env *Env) (adapters.HTTPConfig, error) {
	if f.url == "" {
		return adapters.HTTPConfig{}, usageError("http needs --url, e.g. --url 'https://api.example.com/v1/users/{item}'")
	}
	maxBody, err := parseSize(f.maxBody)
	if err != nil {
		return adapters.HTTPConfig{}, usageError("--max-body: %v", err)
	}
	maxHeader, err := parseSize(f.maxHeader)
	if err != nil || maxHeader == 0 {
		return adapters.HTTPConfig{}, usageError("--max-header %q: want a size such as 64KiB or 1MiB", f.maxHeader)
	}
	ok, err := parseStatusList(f.okStatus)
	if err != nil {
		return adapters.HTTPConfig{}, usageError("--ok-status: %v", err)
	}
	retry, err := parseStatusList(f.retryStatus)
	if err != nil {
		return adapters.HTTPConfig{}, usageError("--retry-status: %v", err)
	}
	hostRate, err := engine.ParseRate(f.hostRate)
	if err != nil {
		return adapters.HTTPConfig{}, usageError("--per-host-rate: %v", err)
	}
	if f.hostBurst < 1 || f.hostPar < 0 {
		return adapters.HTTPConfig{}, usageError("--per-host-burst must be at least 1 and --per-host-parallelism at least 0")
	}
	return adapters.HTTPConfig{
		URL: f.url, Method: f.method, Headers: f.headers, Body: f.body, MaxBody: maxBody, MaxHeader: maxHeader,
		OKStatus: ok, RetryStatus: retry, LookupEnv: env.LookupEnv, UserAgent: "throttle/" + strings.TrimPrefix(versionWord(), "v"),
		PerHost:  adapters.HostLimits{Rate: hostRate, Burst: f.hostBurst, Parallelism: f.hostPar},
		NoFollow: f.noFollow, CACert: f.cacert, Insecure: f.insecure,
	}, nil
}

// adapter builds the http adapter: a batch one when the body sends the chunk ({items}).
func (f *httpFlags) adapter(cfg adapters.HTTPConfig) (engine.Adapter, func() error, error) {
	batch := strings.Contains(f.body, "{items}") || strings.Contains(f.body, "{items_jsonl}")
	if f.split && !batch {
		return nil, nil, usageError("--split-response is for batch requests: a --body with {items} or {items_jsonl}")
	}
	if batch {
		a, err := adapters.NewHTTPBatch(cfg, f.split)
		if err != nil {
			return nil, nil, usageError("%v", err)
		}
		return a, a.Close, nil
	}
	a, err := adapters.NewHTTP(cfg)
	if err != nil {
		return nil, nil, usageError("%v", err)
	}
	return a, a.Close, nil
}

func versionWord() string { return strings.Fields(versionString())[1] }

// action is what an adapter command does with its adapter: run a job, or probe the target.
type action func(cmd *cobra.Command, j job) error

func newHTTPCmd(env *Env, act action) *cobra.Command {
	hf := &httpFlags{}
	sf := &saveFlags{}
	cmd := &cobra.Command{
		Use:   "http",
		Short: "Call an HTTP API once per item",
		Long: `Call an HTTP API once per item. The URL, headers and body are templates:
{item} is the input line, {.field} a field of a JSONL item, and ${NAME} (headers and
body only) the environment variable NAME, read at call time so that a secret never
appears in argv, results or logs. Before the first call each one must be set: an
unset one exits 2 naming it and its flag (set but empty: a warning). A --url host
that does not resolve is a warning, not an error (a proxy may reach it).
2xx is ok; 429, 408 and 5xx are retried; other statuses fail at once. A JSON
response body is kept in the row's "output".

Batch endpoints: with --chunk N and {items} (a JSON array) or {items_jsonl} in --body,
one request carries N items; every item gets a row with the answer's outcome, or with
--split-response its own element of an answer that is a JSON array.

Politeness across many sites: --per-host-rate and --per-host-parallelism hold each
host (host:port) to its own limits while --rate and --parallelism cap the whole job;
a host's Retry-After holds that host only. A call waits at most 200 ms for its
host's turn, keeping its worker; then it goes back in the queue (no attempt is
counted), so that one slow host cannot take every worker. The screen lists the
busiest hosts.`,
		Example: `  export API_TOKEN=…   # never on the command line
  throttle run http --input ids.txt --out results.jsonl \
      --url 'https://api.example.com/v1/users/{item}' \
      --header 'Authorization: Bearer ${API_TOKEN}' \
      --parallelism 8 --rate 50 --pace 1s --retries 3

  # JSONL input, a POST body from its fields:
  throttle run http --input users.jsonl --method POST \
      --url 'https://api.example.com/v1/users' \
      --header 'Content-Type: application/json' --body '{"id": "{.id}"}'

  # A vector database's batch upsert: 100 items a request, 100 requests at once.
  throttle run http --input vectors.jsonl --chunk 100 --parallelism 100 \
      --method POST --url 'https://db.example.com/collections/docs/points' \
      --header 'api-key: ${QDRANT_KEY}' --body '{"points": {items}}'

  # Crawl many sites: 1 call/s and 2 at once per site, 64 calls in all.
  throttle run http --input urls.txt --url '{item}' --parallelism 64 \
      --per-host-rate 1/s --per-host-parallelism 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := hf.config(env)
			if err == nil {
				err = preflightAdapter(cmd.Context(), env, cfg.EnvUses(), "url", cfg.TargetHost())
			}
			if err == nil {
				err = sf.apply(&cfg)
			}
			if err != nil {
				return err
			}
			if cfg.Insecure {
				fmt.Fprintln(env.Stderr, "warning: --insecure: TLS certificates are not verified; anybody on the path can read and change the calls")
			}
			a, closeAdapter, err := hf.adapter(cfg)
			if err != nil {
				return err
			}
			defer func() { _ = closeAdapter() }() // the run's rows are written; the adapter holds no data
			j := job{adapter: a, name: "http", target: redact.URL(cfg.URL)}
			if h, ok := a.(interface{ Hosts(int) []adapters.HostLoad }); ok && (cfg.PerHost.Rate > 0 || cfg.PerHost.Parallelism > 0) {
				j.hosts = hostRows(h.Hosts)
			}
			return act(cmd, j)
		},
	}
	hf.register(cmd)
	sf.register(cmd)
	return cmd
}

// hostRows gives the http adapter's busiest hosts to the screen as its own rows: the screen
// draws them without knowing the adapter.
func hostRows(busiest func(int) []adapters.HostLoad) func(int) tui.Hosts {
	return func(n int) tui.Hosts {
		loads := busiest(n)
		rows := make([]tui.HostLoad, len(loads))
		for i, h := range loads {
			rows[i] = tui.HostLoad{Host: h.Host, InFlight: h.InFlight, Waiting: h.Waiting, Calls: h.Calls, TooMany: h.TooMany}
		}
		return tui.Hosts{Rows: rows}
	}
}

// simFlags describe a simulated API: its hidden limits and latency.
type simFlags struct {
	rate        string
	burst       int
	concurrency int
	overload    string
	latency     time.Duration
	sigma       float64
	errorRate   float64
	seed        int64
}

func (f *simFlags) register(cmd *cobra.Command, rate string, burst int) {
	fs := cmd.Flags()
	fs.StringVar(&f.rate, "sim-rate", rate, "the simulated API's hidden rate limit (e.g. 100/s; 0: none); past it, 429 with Retry-After")
	fs.IntVar(&f.burst, "sim-burst", burst, "the hidden rate limit's burst")
	fs.IntVar(&f.concurrency, "sim-concurrency", 0, "the simulated API's hidden concurrency capacity (0: none)")
	fs.StringVar(&f.overload, "sim-overload", adapters.OverloadLatency, "past the capacity: latency (it grows, like a queue) or 429")
	fs.DurationVar(&f.latency, "sim-latency", adapters.DefaultSimLatency, "median latency of a call (at least 1ns)")
	fs.Float64Var(&f.sigma, "sim-sigma", adapters.DefaultSimSigma, "spread of the lognormal latency (0: fixed)")
	fs.Float64Var(&f.errorRate, "sim-error-rate", 0, "share of calls, 0 to 1, that fail with 503")
	fs.Int64Var(&f.seed, "sim-seed", 1, "seed of the random latencies and errors")
}

// describe names the simulated target for a recording's header.
func (f *simFlags) describe() string {
	return fmt.Sprintf("sim rate %s burst %d concurrency %d (%s) latency %v sigma %v errors %v",
		f.rate, f.burst, f.concurrency, f.overload, f.latency, f.sigma, f.errorRate)
}

func (f *simFlags) config() (adapters.SimConfig, error) {
	r, err := engine.ParseRate(f.rate)
	if err != nil {
		return adapters.SimConfig{}, usageError("--sim-rate: %v", err)
	}
	if f.latency <= 0 {
		return adapters.SimConfig{}, usageError("--sim-latency %v: must be positive (1ns for almost none)", f.latency)
	}
	cfg := adapters.SimConfig{Rate: r, Burst: f.burst, Concurrency: f.concurrency, Overload: f.overload,
		Latency: f.latency, Sigma: f.sigma, ErrorRate: f.errorRate, Seed: f.seed}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError("%v", err)
	}
	return cfg, nil
}

func newSimCmd(env *Env, act action) *cobra.Command {
	sf := &simFlags{}
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Call a simulated API in process (for trying settings without a real target)",
		Long: `Call a simulated API in process: a target with a hidden rate limit and/or
concurrency capacity, a lognormal latency that grows when it is overloaded, and
429 + Retry-After past its rate limit. Use it to learn the knobs, or to rehearse
a run's settings before pointing them at a real system.`,
		Example: `  seq 1 5000 > ids.txt
  throttle run sim --input ids.txt --sim-rate 100/s --sim-latency 80ms \
      --parallelism 4

  # More workers than the target serves at once: watch latency climb.
  throttle run sim --input ids.txt --sim-concurrency 16 --parallelism 32`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := sf.config()
			if err != nil {
				return err
			}
			return act(cmd, job{adapter: adapters.NewSimAdapter(adapters.NewSim(cfg)), name: "sim", target: sf.describe()})
		},
	}
	sf.register(cmd, "0", 10)
	return cmd
}

// parseSize parses a byte count such as 65536, 64KiB, 64K, 1MiB or 1MB.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("size %q: want bytes such as 65536, 64KiB or 1MiB", s)
	}
	return n * mult, nil
}

// parseStatusList parses "200-299,404" into the statuses it names; "" gives nil (defaults).
func parseStatusList(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, errA := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var errB error
		if isRange {
			b, errB = strconv.Atoi(strings.TrimSpace(hi))
		}
		if errA != nil || errB != nil || a < 100 || b > 999 || a > b {
			return nil, fmt.Errorf("%q: want statuses or ranges from 100 to 999, e.g. 200-299,404", part)
		}
		for v := a; v <= b; v++ {
			out = append(out, v)
		}
	}
	return out, nil
}
