package cli

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/throttle-dev/throttle/engine"
)

// runFlags are the flags every adapter shares (CONTRACT.md, "throttle run flags").
type runFlags struct {
	input          string
	follow         bool
	out            string
	parallelism    int
	maxParallelism int
	pace           time.Duration
	rate           string
	burst          int
	retries        int
	maxBackoff     time.Duration
	timeout        time.Duration
	chunk          int
	headless       bool
	fps            int
	auto           bool
	adapt          bool
	hold           string
	resume         bool
	reset          bool // with --redis: delete a job's state even while its hosts run
	scratchOut     bool // --out is the demo's own, removed as it ends: the summary says so
	onlyFailed     bool
	dedupe         bool
	fsyncEvery     time.Duration
	control        string
	detach         bool
	progressEvery  time.Duration
	record         string
	redis          string
	job            string
	joined         bool // a host that joined a job: its items come from redis
	lease          time.Duration
	hostPar        int
	metrics        string
	logFile        string
	notify         bool
	config         string
	printConfig    bool
	limits         []string // --limit NAME[:WEIGHT]
	summaryJSON    string
}

// register adds the flags to fs; the demo makes its own input, so it leaves --input out.
func (f *runFlags) register(fs *pflag.FlagSet, withInput bool) {
	if withInput {
		fs.StringVar(&f.input, "input", "", "work items: one per line; - is stdin; a .jsonl file gives one JSON object per line (required)")
	}
	if withInput {
		fs.BoolVar(&f.follow, "follow", false, "read --input on as it grows, like tail -f: a line is taken once its newline arrives; no total; the run ends when drained (ctrl+c, SIGTERM, throttle ctl drain). Without it a file is read up to the size it had at the start")
	}
	fs.StringVar(&f.out, "out", "results.jsonl", "results file, JSON Lines, appended: one row per item")
	fs.IntVar(&f.parallelism, "parallelism", 4, "starting max_parallelism: calls in flight at once (start low)")
	fs.IntVar(&f.maxParallelism, "max-parallelism", 0, "ceiling that parallelism may never pass, even when raised live (ctl, keys, --auto); 0: the default, the smaller of the open-file hard limit less 64 and a quarter of memory at 1 MiB per call, at least 256 (the start line shows it)")
	fs.DurationVar(&f.pace, "pace", 0, "per worker: minimum interval between the starts of two consecutive calls (e.g. 1s)")
	fs.StringVar(&f.rate, "rate", "", "global cap on calls: 50 or 50/s, 3000/m, 1000/h (default unlimited)")
	fs.IntVar(&f.burst, "burst", 1, "token-bucket burst for --rate")
	fs.IntVar(&f.retries, "retries", 3, "retries of a retryable outcome (429, 408, 5xx, network error, timeout)")
	fs.DurationVar(&f.maxBackoff, "max-backoff", 60*time.Second, "cap on one backoff wait, also on a server's Retry-After")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "per call (0: none)")
	fs.IntVar(&f.chunk, "chunk", 1, "items handed to a worker at once (adapters that batch get them in one call)")
	fs.BoolVar(&f.headless, "headless", false, "no TUI: progress lines on stderr (automatic when stdout is not a terminal)")
	fs.BoolVar(&f.resume, "resume", false, "skip items that already have an ok row in --out (matched by content); a torn last line is cut first")
	fs.BoolVar(&f.onlyFailed, "only-failed", false, "with a results file as --input: run only the items whose last row failed")
	fs.BoolVar(&f.dedupe, "dedupe", false, "run each distinct item once (by default duplicates run once per occurrence)")
	fs.DurationVar(&f.fsyncEvery, "fsync-every", 5*time.Second, "fsync the results at least this often while rows are written (0: only at the end)")
	fs.BoolVar(&f.detach, "detach", false, "run in the background from the start (progress to <out>.log) and print how to attach")
	fs.StringVar(&f.control, "control", "", "control socket for ctl (default: a private one in /tmp/throttle-UID)")
	fs.StringVar(&f.redis, "redis", "", "run across hosts: the Redis that holds the shared work list, limits and settings (redis://HOST:6379/0)")
	fs.StringVar(&f.job, "job", "", "with --redis: the shared job's name; other hosts join it with throttle join --redis URL --job NAME")
	fs.BoolVar(&f.joined, "joined", false, "set by throttle join")
	_ = fs.MarkHidden("joined")
	fs.IntVar(&f.hostPar, "host-parallelism", 0, "with --redis: the most calls this host makes at once, under the job's --parallelism across hosts (default: no limit of its own)")
	fs.BoolVar(&f.reset, "reset", false, "with --redis: start the job anew even while hosts of it still run (its state in redis and the rows not yet collected are deleted)")
	fs.DurationVar(&f.lease, "lease", 0, "with --redis: how long a host may hold items without a result before other hosts take them over (default 2 × --timeout, at least 10s)")
	fs.StringArrayVar(&f.limits, "limit", nil, "also take slots and tokens from the named shared limit NAME (repeatable; NAME:WEIGHT for a larger share; needs --redis; see throttle limit)")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9464); off by default")
	fs.StringVar(&f.logFile, "log", "", "write the run's events to FILE as JSON lines (slog): settings, changes and who made them, advice, pauses, errors, summary")
	fs.BoolVar(&f.notify, "notify", false, "when the run ends, also a desktop notification through the terminal (OSC 9 / OSC 777)")
	fs.StringVar(&f.config, "config", "", "a job file (TOML, or YAML by its .yaml/.yml name) holding any of these flags; the command line overrides it")
	fs.BoolVar(&f.printConfig, "print-config", false, "print the effective settings as a job file (TOML) and exit; nothing is called")
	fs.StringVar(&f.record, "record", "", "record the run to FILE for throttle replay (no secrets, no bodies; about 20 bytes per call)")
	fs.BoolVar(&f.auto, "auto", false, "let the tuner find the limit: slow start doubles parallelism until the target pushes back, then a gentle climb (your own changes pause it for a minute)")
	fs.BoolVar(&f.adapt, "adapt", true, "keep an effective rate and parallelism under --rate and --parallelism (then ceilings) that fall at 429s and climb back; --adapt=false holds the settings as given")
	fs.StringVar(&f.hold, "hold", "strict", "how a Retry-After hold of the whole pool ends: strict (at its time) or probe (one test call at a time; the first success ends it: for token buckets whose whole-second Retry-After overstates the wait)")
	fs.StringVar(&f.summaryJSON, "summary-json", "", "also write the end summary to FILE as JSON (0600): counts by status and class, failures by cause, latency percentiles, settings and their changes, wall time; written after an interrupt too")
	fs.IntVar(&f.fps, "fps", 4, "TUI refreshes per second (1-30; keep it low over slow ssh links)")
	fs.DurationVar(&f.progressEvery, "progress-every", 2*time.Second, "interval of headless progress lines")
	_ = fs.MarkHidden("progress-every")
}

// settings checks the knobs and returns them as engine settings.
func (f *runFlags) settings() (engine.Settings, error) {
	r, err := engine.ParseRate(f.rate)
	if err != nil {
		return engine.Settings{}, usageError("--rate: %v", err)
	}
	s := engine.Settings{Parallelism: f.parallelism, MaxParallelism: f.maxParallelism, Pace: f.pace, Rate: r, Burst: f.burst}
	switch {
	case f.parallelism < 1:
		return s, usageError("--parallelism %d: must be at least 1", f.parallelism)
	case f.maxParallelism < 0:
		return s, usageError("--max-parallelism %d: must be 0 (the default) or more", f.maxParallelism)
	case f.maxParallelism > 0 && f.parallelism > f.maxParallelism:
		return s, usageError("--parallelism %d is above --max-parallelism %d", f.parallelism, f.maxParallelism)
	case f.pace < 0:
		return s, usageError("--pace %v: must not be negative", f.pace)
	case f.burst < 1:
		return s, usageError("--burst %d: must be at least 1", f.burst)
	case f.retries < 0:
		return s, usageError("--retries %d: must not be negative", f.retries)
	case f.maxBackoff <= 0:
		return s, usageError("--max-backoff %v: must be positive", f.maxBackoff)
	case f.timeout < 0:
		return s, usageError("--timeout %v: must not be negative (0: none)", f.timeout)
	case f.chunk < 1:
		return s, usageError("--chunk %d: must be at least 1", f.chunk)
	case f.fsyncEvery < 0:
		return s, usageError("--fsync-every %v: must not be negative", f.fsyncEvery)
	case f.fps < 1 || f.fps > 30:
		return s, usageError("--fps %d: want 1 to 30", f.fps)
	case f.auto && !f.adapt:
		return s, usageError("--auto works through the congestion response (--adapt): drop --adapt=false, or --auto")
	case f.hold != "strict" && f.hold != "probe":
		return s, usageError("--hold %q: want strict or probe", f.hold)
	case f.follow && f.onlyFailed:
		return s, usageError("--follow and --only-failed do not go together: --only-failed reads a results file as it is")
	case f.progressEvery <= 0:
		return s, usageError("--progress-every %v: must be positive", f.progressEvery)
	case f.reset && f.job == "":
		return s, usageError("--reset is for a job across hosts (--redis URL --job NAME): it starts the job anew")
	case f.job != "" && f.redis == "":
		return s, usageError("--job needs --redis: the Redis that the job's hosts share")
	case len(f.limits) > 0 && f.redis == "":
		return s, usageError("--limit needs --redis: the Redis that holds the shared limits (see throttle limit)")
	case f.redis != "" && f.job == "" && len(f.limits) == 0:
		return s, usageError("--redis needs --job NAME (a job across hosts) or --limit NAME (a limit shared by jobs)")
	}
	// The engine's own refusal, so that --parallelism meets the same default ceiling as ctl.
	// A job across hosts caps each host at the ceiling instead: its parallelism is the sum.
	if err := s.Check(); err != nil && f.job == "" {
		return s, usageError("--parallelism: %v", err)
	}
	return s, nil
}

// describe is the settings line of a run's first progress output.
func describeSettings(s engine.Settings) string {
	pace := "none"
	if s.Pace > 0 {
		pace = s.Pace.String()
	}
	ceiling := ""
	if s.MaxParallelism > 0 {
		ceiling = fmt.Sprintf(", max parallelism %d", s.MaxParallelism)
	}
	return fmt.Sprintf("parallelism %d, pace %s, rate %s (burst %d)%s", s.Parallelism, pace, engine.FormatRate(s.Rate), s.Burst, ceiling)
}

// holdMode is --hold as the engine takes it; settings has checked it.
func (f *runFlags) holdMode() engine.HoldMode {
	m, _ := engine.ParseHoldMode(f.hold)
	return m
}
