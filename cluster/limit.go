package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// Named limits: one API quota shared by different jobs ("one quota, many backfills").
//
// A named limit lives in Redis under keys of its own, throttle:limit:{NAME}:PART (the braces
// keep a limit's keys in one Redis Cluster slot):
//
//	conf     hash: gen, parallelism, rate, burst, tpm, lease (ms), updated_by, updated_at
//	leases   sorted set: one member JOB|SEQ per call in flight, scored by its expiry (ms)
//	hold     string with a TTL: a Retry-After seen by one job holds every job
//	gcra     hash: the GCRA state of generation gen: all (the limit's rate), tpm (its tokens),
//	         r:JOB and t:JOB (each job's share of them)
//	state    hash: h:JOB (a job's leases), c:JOB (its calls), W (the weights of the jobs alive),
//	         sec, n, prev (calls in the current and in the previous second)
//	want     sorted set: JOB (refused a slot lately), ~JOB (refused a token lately) and !JOB
//	         (refused while under its share), scored by when
//	jobs     hash: JOB → {"weight","host","label","at"}, each job's heartbeat
//	changes  the channel that announces `limit set` and `limit rm`, and free slots ("free")
//
// (SEQ is the gate's own id and a count: the hosts of one job, one JOB, never share a lease.)
//
// A job across hosts has a limit of the same shape, its own (see [Job.Gate]): its conf is the
// job's settings hash, its channel the job's changes channel, its other parts
// throttle:{JOB}:gate:PART, and its sharers — JOB above — are the job's hosts.
//
// Every call takes, in one Lua script and one round trip, from every limit it uses: the
// hold, a lease under the limit's parallelism, a token of its rate and its call's tokens of
// its tokens per minute (GCRA, in the script, on Redis's clock). The script checks every
// limit before it changes any, so a call refused by one limit takes nothing from the others.
// The several limits of one call are named in one script: that needs one Redis (this
// package's client), not a Redis Cluster, where they would be in different slots.
//
// Fair sharing. Each job alive (a heartbeat within limitAlive) has a share of each limit,
// its weight over the weights of the jobs alive: of the parallelism (share × cap leases) and
// of the rate and the tokens (a GCRA of its own at share × rate next to the limit's). The
// shares are work-conserving: a job may go past its share while no other job is starved,
// that is refused within its share in the last limitStarveWindow and not served since with
// nothing more to ask (see limitAcquireScript). So one job alone gets the
// whole limit, a job that wants little leaves the rest to the others, and two jobs that both
// want more than the limit each get their share. A job that went past its share carries no
// debt: its own GCRA is clamped to an empty bucket, so that once another starves it falls
// back to its share at once rather than paying for the past.

// ErrNoLimit says a named limit does not exist in Redis (never set, or removed). The error
// returned is a [*NoLimitError], which names the limit; errors.Is(err, ErrNoLimit) holds for it.
var ErrNoLimit = errors.New("cluster: no such shared limit")

// NoLimitError says which limit does not exist in Redis, for a caller that tells the operator
// how to create it: take it with errors.As rather than reading the name out of the text.
type NoLimitError struct {
	// Name is the limit's name.
	Name string
}

// Error says "cluster: no such shared limit: NAME".
func (e *NoLimitError) Error() string { return ErrNoLimit.Error() + ": " + e.Name }

// Unwrap returns [ErrNoLimit], so that errors.Is(err, ErrNoLimit) holds.
func (e *NoLimitError) Unwrap() error { return ErrNoLimit }

// ErrLimitInUse says a limit that jobs use now cannot be removed without force.
var ErrLimitInUse = errors.New("cluster: the shared limit is in use")

const (
	// DefaultLimitLease is how long a call's lease on a named limit lives without renewal
	// unless the limit says otherwise: how long the slots of a job that died stay taken.
	DefaultLimitLease = 10 * time.Second
	// limitAlive is how recent a job's heartbeat must be for it to count in the shares.
	limitAlive = 3 * time.Second
	// limitBeat is the interval of a job's heartbeat on each limit it uses.
	limitBeat = time.Second
	// limitForget is how long a job that stopped beating stays in the jobs hash.
	limitForget = time.Minute
	// limitStarveWindow is how long a refusal within a job's share makes the other jobs keep
	// to theirs. Longer than the longest wait before a refused call asks again (MaxWait),
	// so that a job that keeps asking stays starved between its asks.
	limitStarveWindow = 500 * time.Millisecond
)

// LimitConfig is a named limit's settings. A zero Rate, Parallelism or TPM means none.
type LimitConfig struct {
	// Rate is calls per second across the jobs that use the limit; Burst the calls it allows
	// at once (GCRA: never more than Rate·t + Burst in any window t).
	Rate  float64
	Burst int
	// Parallelism caps the calls in flight across the jobs.
	Parallelism int
	// TPM caps the tokens per minute of the calls (an LLM provider's limit); a call costs its
	// estimate (see [Tokener]). The burst is a second's tokens, or one call when it is larger.
	TPM float64
	// Lease is how long a call's place lives without renewal: the slots of a job that
	// crashed come back after it. Calls that run longer renew their leases.
	Lease time.Duration
}

// Check holds c to the rules a limit's settings follow.
func (c LimitConfig) Check() error {
	switch {
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("cluster: rate %v/s: must be 0 (none) or more", c.Rate)
	case c.Burst < 1:
		return fmt.Errorf("cluster: burst %d: must be at least 1", c.Burst)
	case c.Parallelism < 0:
		return fmt.Errorf("cluster: parallelism %d: must be 0 (none) or more", c.Parallelism)
	case c.TPM < 0 || math.IsNaN(c.TPM) || math.IsInf(c.TPM, 0):
		return fmt.Errorf("cluster: tpm %v: must be 0 (none) or more", c.TPM)
	case c.Lease < 100*time.Millisecond || c.Lease > time.Hour:
		// Leases renew at half their life: below this a round trip could let one lapse.
		return fmt.Errorf("cluster: lease %v: want 100ms to 1h", c.Lease)
	case c.Rate == 0 && c.Parallelism == 0 && c.TPM == 0:
		return errors.New("cluster: a shared limit needs a rate, a parallelism or a tpm: it would limit nothing")
	}
	return nil
}

// String is the limit in one line: "rate 50/s, burst 5, parallelism 128, tpm none, lease 10s".
func (c LimitConfig) String() string {
	par, tpm := "none", "none"
	if c.Parallelism > 0 {
		par = strconv.Itoa(c.Parallelism)
	}
	if c.TPM > 0 {
		tpm = strconv.FormatFloat(c.TPM, 'f', -1, 64)
	}
	return fmt.Sprintf("rate %s, burst %d, parallelism %s, tpm %s, lease %v", engine.FormatRate(c.Rate), c.Burst, par, tpm, c.Lease)
}

// LimitSet is a change of a named limit: nil fields stay as they are (for a new limit: no
// rate, parallelism or tpm, burst 1, lease DefaultLimitLease).
type LimitSet struct {
	Rate        *float64
	Burst       *int
	Parallelism *int
	TPM         *float64
	Lease       *time.Duration
}

// LimitChange is one knob of a limit changed by `limit set`, as the hash stores it ("50",
// "10000" ms); Knob "removed" says `limit rm` removed it.
type LimitChange struct {
	Knob string `json:"knob"`
	From string `json:"from"`
	To   string `json:"to"`
}

// String renders the change for people: "rate 50/s → 200/s".
func (c LimitChange) String() string {
	if c.Knob == "removed" {
		return "removed"
	}
	show := func(v string) string {
		switch c.Knob {
		case "rate":
			r, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return engine.FormatRate(r)
			}
		case "lease":
			ms, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return (time.Duration(ms) * time.Millisecond).String()
			}
		case "parallelism", "tpm":
			if v == "0" {
				return "none"
			}
		}
		if v == "" {
			return "none"
		}
		return v
	}
	return fmt.Sprintf("%s %s → %s", c.Knob, show(c.From), show(c.To))
}

// LimitInfo is a named limit as `limit get` and `limit ls` show it.
type LimitInfo struct {
	Name string
	LimitConfig
	// InFlight is the calls holding a lease now: at their target. Waiting is the calls of
	// the jobs alive waiting for this limit (refused by it, not started), as of their last
	// heartbeats. CallsPerSecond is the calls admitted in the last whole second.
	InFlight       int
	Waiting        int
	CallsPerSecond float64
	// Hold is what is left of a Retry-After hold; 0 when none.
	Hold time.Duration
	// Jobs are the jobs that use the limit: alive, and those that stopped beating within
	// limitForget.
	Jobs []LimitJob
	// UpdatedBy and UpdatedAt say who last set the limit, and when.
	UpdatedBy string
	UpdatedAt time.Time
}

// AliveJobs counts the jobs alive among Jobs.
func (i LimitInfo) AliveJobs() int {
	n := 0
	for _, j := range i.Jobs {
		if j.Alive {
			n++
		}
	}
	return n
}

// LimitJob is one job's use of a limit.
type LimitJob struct {
	ID, Host, Label string
	Weight          float64
	InFlight        int
	Waiting         int // as of its last heartbeat
	Calls           int64
	Seen            time.Time
	Alive           bool
}

// Limits is a connection to the named limits of one Redis.
type Limits struct {
	rdb *redis.Client
}

// ConnectLimits connects to the Redis at url (redis://HOST:PORT/DB) that holds the named
// limits, and checks that it answers.
func ConnectLimits(ctx context.Context, url string) (*Limits, error) {
	rdb, err := dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return &Limits{rdb: rdb}, nil
}

// Close closes the connection.
func (l *Limits) Close() error { return l.rdb.Close() }

// Client is the Redis client, for tests.
func (l *Limits) Client() *redis.Client { return l.rdb }

// LimitKey names one of a limit's keys: throttle:limit:{NAME}:part.
func LimitKey(name, part string) string { return "throttle:limit:{" + name + "}:" + part }

// limitParts are every key of a limit, for rm.
var limitParts = []string{"conf", "leases", "hold", "gcra", "state", "want", "jobs"}

func checkLimitName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("cluster: limit name %q: %s", name, limitNameRule)
	}
	return nil
}

// limitSetScript creates or changes a limit and announces it. Reading the old values,
// writing the new and publishing happen in one step, so that the "from" of each change is
// exact when two operators set one limit at once. A change of rate, burst or tpm bumps gen:
// the acquire script then starts from a fresh GCRA state, so a raise counts at once.
//
// KEYS[1] conf. ARGV: channel, by, at, default lease ms, then field/value pairs.
// Answer: {created, changes as JSON}.
var limitSetScript = redis.NewScript(`
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  created = 1
  redis.call('HSET', KEYS[1], 'gen', 1, 'parallelism', 0, 'rate', 0, 'burst', 1, 'tpm', 0, 'lease', ARGV[4])
end
local changes, gen = {}, false
for i = 5, #ARGV, 2 do
  local k, v = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], k)
  if old ~= v or created == 1 then
    redis.call('HSET', KEYS[1], k, v)
    if k == 'rate' or k == 'burst' or k == 'tpm' then gen = true end
    if created == 1 then old = '' end
    changes[#changes + 1] = {knob = k, from = old or '', to = v}
  end
end
if gen and created == 0 then redis.call('HINCRBY', KEYS[1], 'gen', 1) end
if #changes > 0 then
  redis.call('HSET', KEYS[1], 'updated_by', ARGV[2], 'updated_at', ARGV[3])
  redis.call('PUBLISH', ARGV[1], cjson.encode({kind = 'set', by = ARGV[2], at = ARGV[3], changes = changes}))
end
return {created, cjson.encode(changes)}
`)

// Set creates the limit name or changes it; by names who did it (host/pid) for ls and the
// jobs' logs. The jobs that use the limit follow at their next call, and hear of it on the
// limit's channel at once: a raised limit wakes their waiting calls. It returns whether the
// limit was created and what changed.
func (l *Limits) Set(ctx context.Context, name, by string, s LimitSet) (created bool, changes []LimitChange, err error) {
	if err := checkLimitName(name); err != nil {
		return false, nil, err
	}
	cur, err := l.config(ctx, name)
	exists := err == nil
	switch {
	case errors.Is(err, ErrNoLimit):
		cur = LimitConfig{Burst: 1, Lease: DefaultLimitLease}
	case err != nil:
		return false, nil, err
	}
	var pairs []any
	if s.Rate != nil {
		cur.Rate = *s.Rate
		pairs = append(pairs, "rate", formatRateField(*s.Rate))
	}
	if s.Burst != nil {
		cur.Burst = *s.Burst
		pairs = append(pairs, "burst", strconv.Itoa(*s.Burst))
	}
	if s.Parallelism != nil {
		cur.Parallelism = *s.Parallelism
		pairs = append(pairs, "parallelism", strconv.Itoa(*s.Parallelism))
	}
	if s.TPM != nil {
		cur.TPM = *s.TPM
		pairs = append(pairs, "tpm", formatRateField(*s.TPM))
	}
	if s.Lease != nil {
		cur.Lease = *s.Lease
		pairs = append(pairs, "lease", strconv.FormatInt(s.Lease.Milliseconds(), 10))
	}
	if err := cur.Check(); err != nil {
		return false, nil, err
	}
	if !exists && len(pairs) == 0 {
		return false, nil, fmt.Errorf("cluster: limit %s does not exist: give it a rate, a parallelism or a tpm", name)
	}
	args := append([]any{LimitKey(name, "changes"), by, time.Now().UTC().Format(time.RFC3339Nano), DefaultLimitLease.Milliseconds()}, pairs...)
	res, err := limitSetScript.Run(ctx, l.rdb, []string{LimitKey(name, "conf")}, args...).Slice()
	if err != nil {
		return false, nil, redisFailure(ctx, err)
	}
	return gateInt(res, 0) == 1, decodeChanges(gateString(res, 1)), nil
}

// decodeChanges reads the changes a script encoded; Lua's cjson writes an empty list as {}.
func decodeChanges(s string) []LimitChange {
	var c []LimitChange
	if s == "" || s == "{}" {
		return nil
	}
	_ = json.Unmarshal([]byte(s), &c)
	return c
}

// config reads a limit's settings; ErrNoLimit when it does not exist.
func (l *Limits) config(ctx context.Context, name string) (LimitConfig, error) {
	h, err := l.rdb.HGetAll(ctx, LimitKey(name, "conf")).Result()
	if err != nil {
		return LimitConfig{}, redisFailure(ctx, err)
	}
	if len(h) == 0 || h["gen"] == "" {
		return LimitConfig{}, &NoLimitError{Name: name}
	}
	return parseLimitConfig(h), nil
}

// parseLimitConfig reads the conf hash; fields that do not parse count as their zero value,
// which the scripts read the same way (Lua's tonumber).
func parseLimitConfig(h map[string]string) LimitConfig {
	c := LimitConfig{Burst: 1, Lease: DefaultLimitLease}
	c.Rate, _ = strconv.ParseFloat(h["rate"], 64)
	c.TPM, _ = strconv.ParseFloat(h["tpm"], 64)
	c.Parallelism, _ = strconv.Atoi(h["parallelism"])
	if b, err := strconv.Atoi(h["burst"]); err == nil {
		c.Burst = b
	}
	if ms, err := strconv.ParseInt(h["lease"], 10, 64); err == nil {
		c.Lease = time.Duration(ms) * time.Millisecond
	}
	return c
}

// limitInfoScript reads what ls shows of a limit, dropping expired leases first so that
// the counts are true. KEYS: conf, leases, hold, state, jobs.
// Answer: {conf, leases, hold pttl, state, jobs, now in s since limitEpoch, unix ms}.
var limitInfoScript = redis.NewScript(limitNow + `
local leases, state = KEYS[2], KEYS[4]
if redis.call('EXISTS', KEYS[1]) == 0 then return {false} end
` + limitDropExpired + `
return {redis.call('HGETALL', KEYS[1]), redis.call('ZCARD', leases), redis.call('PTTL', KEYS[3]),
  redis.call('HGETALL', state), redis.call('HGETALL', KEYS[5]), math.floor(now / 1000),
  tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
`)

// Get returns the limit name with its use now; ErrNoLimit when it does not exist.
func (l *Limits) Get(ctx context.Context, name string) (LimitInfo, error) {
	if err := checkLimitName(name); err != nil {
		return LimitInfo{}, err
	}
	keys := []string{LimitKey(name, "conf"), LimitKey(name, "leases"), LimitKey(name, "hold"), LimitKey(name, "state"), LimitKey(name, "jobs")}
	res, err := limitInfoScript.Run(ctx, l.rdb, keys).Slice()
	if err != nil {
		return LimitInfo{}, redisFailure(ctx, err)
	}
	if len(res) < 7 {
		return LimitInfo{}, &NoLimitError{Name: name}
	}
	conf, state, jobs := flatMap(res[0]), flatMap(res[3]), flatMap(res[4])
	info := LimitInfo{Name: name, LimitConfig: parseLimitConfig(conf), InFlight: int(gateInt(res, 1)), UpdatedBy: conf["updated_by"]}
	info.UpdatedAt, _ = time.Parse(time.RFC3339Nano, conf["updated_at"])
	if h := gateInt(res, 2); h > 0 {
		info.Hold = time.Duration(h) * time.Millisecond
	}
	sec, nowMS := gateInt(res, 5), gateInt(res, 6)
	last, _ := strconv.ParseInt(state["sec"], 10, 64)
	switch last {
	case sec: // the current second is under way: the last whole one is prev
		info.CallsPerSecond, _ = strconv.ParseFloat(state["prev"], 64)
	case sec - 1:
		info.CallsPerSecond, _ = strconv.ParseFloat(state["n"], 64)
	}
	for id, raw := range jobs {
		var b limitBeatInfo
		if json.Unmarshal([]byte(raw), &b) != nil {
			continue
		}
		j := LimitJob{ID: id, Host: b.Host, Label: b.Label, Weight: b.Weight, Seen: time.UnixMilli(b.At)}
		j.Alive = time.Duration(nowMS-b.At)*time.Millisecond <= limitAlive
		if j.Alive {
			j.Waiting = b.Waiting
			info.Waiting += b.Waiting
		}
		j.InFlight, _ = strconv.Atoi(state["h:"+id])
		j.Calls, _ = strconv.ParseInt(state["c:"+id], 10, 64)
		info.Jobs = append(info.Jobs, j)
	}
	sort.Slice(info.Jobs, func(a, b int) bool { return info.Jobs[a].ID < info.Jobs[b].ID })
	return info, nil
}

// List returns every limit of the Redis, sorted by name.
func (l *Limits) List(ctx context.Context) ([]LimitInfo, error) {
	var names []string
	iter := l.rdb.Scan(ctx, 0, "throttle:limit:{*}:conf", 512).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if i, j := strings.Index(k, "{"), strings.LastIndex(k, "}"); i >= 0 && j > i {
			names = append(names, k[i+1:j])
		}
	}
	if err := iter.Err(); err != nil {
		return nil, redisFailure(ctx, err)
	}
	sort.Strings(names)
	var out []LimitInfo
	for _, n := range names {
		info, err := l.Get(ctx, n)
		if errors.Is(err, ErrNoLimit) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// limitRemoveScript deletes a limit's keys unless jobs alive use it (ARGV[2] = "1" forces
// it) and announces it. KEYS: conf, then the other keys. ARGV: channel, force, alive ms, by.
// Answer: 1 removed, 0 no such limit, -N in use by N jobs.
var limitRemoveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] ~= '1' then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local alive, jobs = 0, redis.call('HGETALL', KEYS[#KEYS])
  for k = 2, #jobs, 2 do
    local ok, b = pcall(cjson.decode, jobs[k])
    if ok and ms - (tonumber(b['at']) or 0) <= tonumber(ARGV[3]) then alive = alive + 1 end
  end
  if alive > 0 then return -alive end
end
redis.call('DEL', unpack(KEYS))
redis.call('PUBLISH', ARGV[1], cjson.encode({kind = 'rm', by = ARGV[4]}))
return 1
`)

// Remove deletes the limit name. While jobs alive use it, it refuses with ErrLimitInUse
// unless force: their calls then wait (a job never goes on without its limit) until the
// limit is set again.
func (l *Limits) Remove(ctx context.Context, name, by string, force bool) error {
	if err := checkLimitName(name); err != nil {
		return err
	}
	keys := make([]string, len(limitParts))
	for i, p := range limitParts {
		keys[i] = LimitKey(name, p)
	}
	f := "0"
	if force {
		f = "1"
	}
	n, err := limitRemoveScript.Run(ctx, l.rdb, keys, LimitKey(name, "changes"), f, limitAlive.Milliseconds(), by).Int()
	switch {
	case err != nil:
		return redisFailure(ctx, err)
	case n == 0:
		return &NoLimitError{Name: name}
	case n < 0:
		if n == -1 {
			return fmt.Errorf("%w: 1 job uses %s now", ErrLimitInUse, name)
		}
		return fmt.Errorf("%w: %d jobs use %s now", ErrLimitInUse, -n, name)
	}
	return nil
}

func flatMap(v any) map[string]string {
	m := map[string]string{}
	flat, _ := v.([]any)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		s, _ := flat[i+1].(string)
		m[k] = s
	}
	return m
}
