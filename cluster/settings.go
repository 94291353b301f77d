package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
)

// The fields of the settings hash. The hash is also the conf of the job's own limit (see
// Job.Gate), read by the gate's script as a named limit's conf is: gen names the generation
// of the rate limit, new at each start and at each change of rate or burst, so that a changed
// limit starts from a fresh bucket on every host at once.
// The knobs' fields are named after the knobs; these are the ones read by name here and in
// the gate's script.
var (
	fieldParallelism = engine.KnobParallelism.String()
	fieldRate        = engine.KnobRate.String()
)

const fieldRateGen = "gen"

// ErrNoSettings says the job has no settings in Redis: its coordinator has not started it
// yet, or it was reset.
var ErrNoSettings = errors.New("cluster: the job has no settings in redis (not started yet, or reset)")

// redisFailure marks err, an error of a Redis command, as [ErrRedis] so that callers can tell
// an outage from a refusal; the context's own end is passed through unmarked.
func redisFailure(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return ctx.Err()
	}
	if errors.Is(err, ErrRedis) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrRedis, err)
}

func formatRateField(r float64) string { return strconv.FormatFloat(r, 'g', -1, 64) }

// settingsFields renders s as the hash stores it, one field per knob by the knob's name (the
// engine's formats: values an operator can read in redis-cli, a rate unrounded): a new knob
// is stored with no change here.
func settingsFields(s engine.Settings) map[string]any {
	f := map[string]any{}
	for k, v := range engine.Whole(s).Fields() {
		f[k] = v
	}
	return f
}

// parseSettings reads the hash back; a hash without parallelism is no settings at all. Fields
// that are not knobs (the rate's generation) are left to their readers.
func parseSettings(h map[string]string) (engine.Settings, error) {
	if h[fieldParallelism] == "" {
		return engine.Settings{}, ErrNoSettings
	}
	s, err := engine.ParseWhole(h, engine.Settings{Burst: 1})
	if err != nil {
		return engine.Settings{}, fmt.Errorf("cluster: settings: %w", err)
	}
	return s, nil
}

// describeSettings is the "to" of a start change: every knob in one line.
func describeSettings(s engine.Settings) string {
	d := fmt.Sprintf("parallelism %d, rate %s, burst %d, pace %v", s.Parallelism, engine.FormatRate(s.Rate), s.Burst, s.Pace)
	if s.MaxParallelism > 0 {
		d += fmt.Sprintf(", max parallelism %d", s.MaxParallelism)
	}
	return d
}

// changeMessage is what the changes channel carries: which host changed which knob, for the
// change log of every host. From and To are the hash's raw values.
type changeMessage struct {
	Host   string `json:"host"`
	Origin string `json:"origin"`
	Knob   string `json:"knob"`
	From   string `json:"from"`
	To     string `json:"to"`
	At     string `json:"at"`
}

// change renders m the way the engine's change log does ("rate 50/s → 100/s"), with the origin
// naming the host: "web-2/1234/ctl".
func (m changeMessage) change() engine.Change {
	at, err := time.Parse(time.RFC3339Nano, m.At)
	if err != nil {
		at = time.Now()
	}
	parts := (engine.Change{At: at, Origin: m.Host + "/" + m.Origin, Knob: m.Knob, From: m.From, To: m.To}).Parts()
	for i, p := range parts {
		if p.Knob == fieldRate {
			parts[i].From, parts[i].To = displayRate(p.From), displayRate(p.To)
		}
	}
	return engine.Combine(parts...)
}

func displayRate(raw string) string {
	if raw == "" {
		return ""
	}
	r, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return raw
	}
	return engine.FormatRate(r)
}

// InitSettings writes the job's settings as the coordinator starts it and tells every host,
// with a "start" change. A zero Burst counts as 1, as in [engine.New]. It also starts the rate
// limit from a full bucket.
func (j *Job) InitSettings(ctx context.Context, s engine.Settings, origin string) error {
	if s.Burst == 0 {
		s.Burst = 1
	}
	if err := s.Validate(); err != nil {
		return err
	}
	msg, err := json.Marshal(changeMessage{Host: j.host, Origin: origin, Knob: "start", To: describeSettings(s), At: time.Now().UTC().Format(time.RFC3339Nano)})
	if err != nil {
		return err
	}
	// One transaction, so that no host reads half of the new settings.
	_, err = j.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		f := settingsFields(s)
		// A generation of its own for each start: a job run again under the same name starts
		// from a fresh rate state whatever is left of its previous run.
		f[fieldRateGen] = strconv.FormatInt(time.Now().UnixNano(), 10)
		p.HSet(ctx, j.Key("settings"), f)
		p.Publish(ctx, j.Key("changes"), msg)
		return nil
	})
	return redisFailure(ctx, err)
}

// Settings reads the job's settings; [ErrNoSettings] when it has none.
func (j *Job) Settings(ctx context.Context) (engine.Settings, error) {
	h, err := j.rdb.HGetAll(ctx, j.Key("settings")).Result()
	if err != nil {
		return engine.Settings{}, redisFailure(ctx, err)
	}
	return parseSettings(h)
}

// setKnobs writes knob/value pairs and publishes them as one change, naming the knobs that
// changed.
func (j *Job) setKnobs(ctx context.Context, origin string, pairs ...string) error {
	at := time.Now().UTC().Format(time.RFC3339Nano)
	args := []any{j.Key("changes"), j.host, origin, at}
	for _, p := range pairs {
		args = append(args, p)
	}
	err := setKnobsScript.Run(ctx, j.rdb, []string{j.Key("settings")}, args...).Err()
	if err != nil && strings.Contains(err.Error(), "NOSETTINGS") {
		return ErrNoSettings
	}
	return redisFailure(ctx, err)
}

// setKnobsScript changes knobs of the settings hash and announces the change in one message,
// its knobs, old and new values each listed in the same order, separated by ", " as
// [engine.Combine] does. Reading the old values, writing the new and publishing happen in one
// step, so that the change log's "from" is exact even when two hosts turn the same knob at
// once, and a host re-reading the hash on the message sees every knob of the change. A
// change of rate or burst bumps gen: the gates then start from a fresh GCRA state.
//
// KEYS[1] settings hash. ARGV: channel, host, origin, at, then knob/value pairs.
var setKnobsScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'parallelism') == 0 then
  return redis.error_reply('NOSETTINGS')
end
local knobs, froms, tos, gen = {}, {}, {}, false
for i = 5, #ARGV, 2 do
  local knob, value = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], knob)
  if old ~= value then
    redis.call('HSET', KEYS[1], knob, value)
    if knob == 'rate' or knob == 'burst' then gen = true end
    knobs[#knobs + 1], froms[#froms + 1], tos[#tos + 1] = knob, old or '', value
  end
end
if gen then redis.call('HINCRBY', KEYS[1], 'gen', 1) end
if #knobs > 0 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({host = ARGV[2], origin = ARGV[3], at = ARGV[4],
    knob = table.concat(knobs, ', '), from = table.concat(froms, ', '), to = table.concat(tos, ', ')}))
end
return #knobs
`)

// Set applies u to the job's settings as one change, checked as the engine checks a live
// change ([engine.Update.Next]); every host follows it. The gates apply a new cap or rate on
// their next call (a rate or burst from a fresh bucket, so that a raise takes effect at once);
// each host's Watch hands the pace, a per-worker knob, to its own engine. The change log
// names this host; a change that changes no value sends nothing.
func (j *Job) Set(ctx context.Context, u engine.Update, origin string) error {
	cur, err := j.Settings(ctx)
	if err != nil {
		return err
	}
	next, err := u.Next(cur)
	if err != nil {
		return err
	}
	fields := settingsFields(next)
	var pairs []string
	for _, k := range u.Knobs() {
		pairs = append(pairs, k.String(), fields[k.String()].(string))
	}
	return j.setKnobs(ctx, origin, pairs...)
}

// SetParallelism is Set turning the job's global cap on calls in flight alone.
func (j *Job) SetParallelism(ctx context.Context, n int, origin string) error {
	return j.Set(ctx, engine.Turn(engine.KnobParallelism, engine.Settings{Parallelism: n}), origin)
}

// SetRate is Set turning the job's global rate (calls per second, 0 for none) and its burst,
// as one change.
func (j *Job) SetRate(ctx context.Context, perSecond float64, burst int, origin string) error {
	u := engine.Turn(engine.KnobRate, engine.Settings{Rate: perSecond}).Merge(engine.Turn(engine.KnobBurst, engine.Settings{Burst: burst}))
	return j.Set(ctx, u, origin)
}

// SetPace is Set turning each worker's minimum interval between call starts alone.
func (j *Job) SetPace(ctx context.Context, d time.Duration, origin string) error {
	return j.Set(ctx, engine.Turn(engine.KnobPace, engine.Settings{Pace: d}), origin)
}

// Watch follows the job's settings until ctx ends, then returns nil. It calls apply with the
// settings as they are after each change, and the change, its Origin naming the host that
// made it ("web-2/1234/ctl"). apply is also called each time Watch (re)subscribes — first
// at the start, then after Redis went away and came back — with a "sync" change, so that a
// change made while this host could not hear is not missed (for a job not started yet, the
// first call comes with its "start" change). Watch survives Redis outages: it
// resubscribes with a backoff (100 ms doubling to 3 s) and notices a silent link by pinging
// it. apply runs on Watch's goroutine, one call at a time.
//
// What a host does with the settings is its own: the gate reads the global cap and rate
// from Redis on every call, so apply typically hands only the pace (a per-worker knob) to
// the local engine.
func (j *Job) Watch(ctx context.Context, apply func(s engine.Settings, c engine.Change)) error {
	resubscribe(ctx, func(ctx context.Context) bool { return j.watchOnce(ctx, apply) }, nil)
	return nil
}

const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 3 * time.Second
	// watchIdle is how long a quiet subscription waits before it pings: a link that a
	// firewall cut without a reset is found dead within twice this.
	watchIdle = 2 * time.Second
)

// receive waits for the next message of a subscription. A quiet link is pinged once (nil
// message, ok) to find a dead one; ok is false when ctx ended or the link is dead, and the
// caller subscribes again.
func receive(ctx context.Context, ps *redis.PubSub, pinged *bool) (msg any, ok bool) {
	msg, err := ps.ReceiveTimeout(ctx, watchIdle)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !*pinged {
			*pinged = true
			return nil, ps.Ping(ctx) == nil
		}
		return nil, false
	}
	*pinged = false
	return msg, true
}

// follow subscribes to channels and hands each message (a *redis.Subscription or a
// *redis.Message) to handle until the link dies, ctx ends or handle returns false: the one
// subscription loop of [Job.Watch] and the gate's listener, which resubscribe runs again.
func follow(ctx context.Context, rdb *redis.Client, channels []string, handle func(msg any) bool) {
	ps := rdb.Subscribe(ctx, channels...)
	var closeOnce sync.Once
	closePS := func() { closeOnce.Do(func() { _ = ps.Close() }) } // closing a subscription: nothing is lost
	defer closePS()
	// A receive blocked on a quiet link does not see ctx: closing the subscription ends it.
	stop := context.AfterFunc(ctx, closePS)
	defer stop()
	pinged := false
	for {
		msg, ok := receive(ctx, ps, &pinged)
		if !ok {
			return
		}
		if msg != nil && !handle(msg) {
			return
		}
	}
}

// watchOnce runs one subscription until it fails or ctx ends; it reports whether it got
// subscribed, so that Watch restarts its backoff only after a real success.
func (j *Job) watchOnce(ctx context.Context, apply func(engine.Settings, engine.Change)) (subscribed bool) {
	follow(ctx, j.rdb, []string{j.Key("changes")}, func(msg any) bool {
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				return true
			}
			subscribed = true
			s, err := j.Settings(ctx)
			if errors.Is(err, ErrNoSettings) {
				return true // not started yet: its start message brings the settings
			}
			if err != nil {
				return false
			}
			apply(s, engine.Change{At: time.Now(), Origin: j.host + "/redis", Knob: "sync", To: describeSettings(s)})
		case *redis.Message:
			var cm changeMessage
			if json.Unmarshal([]byte(m.Payload), &cm) != nil {
				return true // not ours; the next real change re-reads everything anyway
			}
			s, err := j.Settings(ctx)
			if errors.Is(err, ErrNoSettings) {
				return true // reset under us: nothing to apply
			}
			if err != nil {
				return false // resubscribing re-reads the settings: the change is applied then
			}
			apply(s, cm.change())
		}
		return true
	})
	return subscribed
}

// Controls is the job's control surface as a screen or `throttle ctl` on one host sees it.
// The knobs are the job's: Set writes them to Redis, so that
// every host follows, and Snapshot shows them. Pause, Resume, Drain and Stop act on this
// host's engine only: the other hosts go on (drain each host, or its process, to end the job
// everywhere).
type Controls struct {
	j     *Job
	local engine.Controls

	mu         sync.Mutex
	global     engine.Settings
	have       bool
	fetched    time.Time
	refreshing bool
}

var _ engine.Controls = (*Controls)(nil)

// controlsRefresh is how old the cached global settings may grow before a Snapshot fetches
// them again (in the background: a snapshot never waits for Redis).
const controlsRefresh = 250 * time.Millisecond

// controlsTimeout bounds one write of a knob, which has no context of its own.
const controlsTimeout = 3 * time.Second

// Controls returns the job's controls over local, this host's engine.
func (j *Job) Controls(local engine.Controls) *Controls {
	return &Controls{j: j, local: local}
}

// Update hands the Controls the job's settings, e.g. from [Job.Watch], so that Snapshot shows
// a change at once.
func (c *Controls) Update(s engine.Settings) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.global, c.have, c.fetched = s, true, time.Now()
}

// Snapshot is the local engine's snapshot with the job's global settings in place of the
// engine's own. Until the global settings were read once it shows the engine's.
func (c *Controls) Snapshot() engine.Snapshot {
	s := c.local.Snapshot()
	c.mu.Lock()
	if c.have {
		s.Settings = c.global
	}
	if !c.refreshing && time.Since(c.fetched) >= controlsRefresh {
		c.refreshing = true
		go c.refresh()
	}
	c.mu.Unlock()
	return s
}

func (c *Controls) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), controlsTimeout)
	defer cancel()
	s, err := c.j.Settings(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshing = false
	c.fetched = time.Now() // after a failure too: retry at the same pace, not in a loop
	if err == nil {
		c.global, c.have = s, true
	}
}

// set runs one write of the job's settings and reads them back for the next Snapshot.
func (c *Controls) set(write func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), controlsTimeout)
	defer cancel()
	if err := write(ctx); err != nil {
		return err
	}
	if s, err := c.j.Settings(ctx); err == nil {
		c.Update(s)
	}
	return nil
}

// Set applies u to the job's settings as one change, for every host.
func (c *Controls) Set(u engine.Update, origin string) error {
	return c.set(func(ctx context.Context) error { return c.j.Set(ctx, u, origin) })
}

// Pause stops new calls on this host only.
func (c *Controls) Pause(origin string) { c.local.Pause(origin) }

// Resume lets this host's paused engine start calls again.
func (c *Controls) Resume(origin string) { c.local.Resume(origin) }

// Drain ends this host's dispatch; the other hosts go on with the job's items.
func (c *Controls) Drain(origin string) { c.local.Drain(origin) }

// Stop stops this host's engine, cancelling its calls in flight; the other hosts go on.
func (c *Controls) Stop(origin string) { c.local.Stop(origin) }

// Note puts a line in this host's change log (the tuner's reasons), if the local controls
// keep one, as an [*engine.Engine] does: a note changes no setting, so no other host needs it.
func (c *Controls) Note(origin, text string) {
	if n, ok := c.local.(interface{ Note(origin, text string) }); ok {
		n.Note(origin, text)
	}
}

// resubscribe runs once, one subscription, until ctx ends: again each time it fails, after a
// backoff (100 ms doubling to 3 s, jittered, so that the hosts of a job do not all come back
// in the same instant) that starts over after a subscription that succeeded. after, if not
// nil, runs each time a subscription ended. It is the one resubscribe loop of the package:
// the settings' Watch and the gate's channels both run under it.
func resubscribe(ctx context.Context, once func(context.Context) bool, after func()) {
	wait := watchBackoffMin
	for ctx.Err() == nil {
		if once(ctx) {
			wait = watchBackoffMin
		}
		if after != nil {
			after()
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(time.Duration(float64(wait) * (0.5 + rand.Float64()/2)))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, watchBackoffMax)
	}
}
