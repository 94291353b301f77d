package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// HostStatus is one host's last heartbeat.
type HostStatus struct {
	Host     string
	InFlight int
	Calls    int64
	// PerSecond is the host's calls per second over the last Over (at most
	// probes.RateWindow), as it measured them between its own beats; 0 and 0 until it
	// measured a second.
	PerSecond float64
	Over      time.Duration
	OK        int64
	Failed    int64
	// At is when the heartbeat arrived, by Redis's clock (the hosts' clocks may differ).
	At time.Time
	// Alive says the host beat within three of its intervals; a host that died stays listed,
	// not alive, for HostsForget.
	Alive bool
}

// HostsForget is how long a host that stopped beating without leaving (it died, or lost
// Redis) is still listed by [Job.Hosts], as not alive.
const HostsForget = time.Minute

// hostBeat is a heartbeat as the hosts hash stores it. At is set by Redis.
type hostBeat struct {
	InFlight  int     `json:"in_flight"`
	Calls     int64   `json:"calls"`
	PerSecond float64 `json:"per_second"`
	OverMS    int64   `json:"per_second_over_ms"`
	OK        int64   `json:"ok"`
	Failed    int64   `json:"failed"`
	EveryMS   int64   `json:"every_ms"`
	AtMS      int64   `json:"at_ms"`
}

// hostsBeatScript stores a heartbeat stamped with Redis's time, so that Hosts compares
// times of one clock. KEYS[1] hosts hash. ARGV: host, beat JSON without at_ms.
var hostsBeatScript = redis.NewScript(`
local t = redis.call('TIME')
local beat = cjson.decode(ARGV[2])
beat['at_ms'] = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(beat))
return 0
`)

// hostsReadScript answers Redis's time in ms and the hosts hash.
var hostsReadScript = redis.NewScript(`
local t = redis.call('TIME')
return {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), redis.call('HGETALL', KEYS[1])}
`)

// Heartbeat publishes this host's state from snap (in flight, calls, ok and failed rows)
// every interval (default 1 s), the first at once, until ctx ends; then it removes the host
// from the list, as a host that leaves is no longer part of the job. A beat that fails is
// skipped: the next one tries again.
func (j *Job) Heartbeat(ctx context.Context, every time.Duration, snap func() engine.Snapshot) {
	if every <= 0 {
		every = time.Second
	}
	// The host's calls per second, each count read with its time: the job's rate is the sum
	// of its hosts', whatever their beats' phases (the sum of counts beaten up to a second
	// apart read 206/s under a rate of 200/s).
	var rate probes.CounterRate
	tick(ctx, every, max(every, time.Second), true, func(bctx context.Context) bool {
		s := snap()
		ps, over := rate.Look(time.Now(), s.Calls)
		b, _ := json.Marshal(hostBeat{InFlight: s.InFlight, Calls: s.Calls, PerSecond: ps, OverMS: over.Milliseconds(),
			OK: s.OK, Failed: s.Failed, EveryMS: every.Milliseconds()})
		_ = hostsBeatScript.Run(bctx, j.rdb, []string{j.Key("hosts")}, j.host, string(b)).Err()
		return true
	})
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_ = j.rdb.HDel(lctx, j.Key("hosts"), j.host).Err()
	cancel()
}

// Hosts returns the job's hosts sorted by name: those alive, and those that stopped beating
// less than HostsForget ago, marked not alive.
func (j *Job) Hosts(ctx context.Context) ([]HostStatus, error) {
	res, err := hostsReadScript.Run(ctx, j.rdb, []string{j.Key("hosts")}).Slice()
	if err != nil {
		return nil, redisFailure(ctx, err)
	}
	now, _ := res[0].(int64)
	flat, _ := res[1].([]any)
	var hosts []HostStatus
	for i := 0; i+1 < len(flat); i += 2 {
		name, _ := flat[i].(string)
		raw, _ := flat[i+1].(string)
		var b hostBeat
		if json.Unmarshal([]byte(raw), &b) != nil {
			continue
		}
		age := time.Duration(now-b.AtMS) * time.Millisecond
		if age > HostsForget {
			continue
		}
		every := max(time.Duration(b.EveryMS)*time.Millisecond, 100*time.Millisecond)
		hosts = append(hosts, HostStatus{
			Host: name, InFlight: b.InFlight, Calls: b.Calls, PerSecond: b.PerSecond, Over: time.Duration(b.OverMS) * time.Millisecond, OK: b.OK, Failed: b.Failed,
			At: time.UnixMilli(b.AtMS), Alive: age <= 3*every,
		})
	}
	sort.Slice(hosts, func(a, b int) bool { return hosts[a].Host < hosts[b].Host })
	return hosts, nil
}

// collectorTTL is how long the collector's mark outlives its last beat: a coordinator gone
// for longer is taken for gone by the hosts, which then say that nobody collects their rows.
const collectorTTL = 5 * time.Second

// CollectorBeat marks, every second until ctx ends, that this host collects the job's rows
// (the coordinator, while Collect runs). A beat that fails is skipped.
func (j *Job) CollectorBeat(ctx context.Context) {
	tick(ctx, time.Second, time.Second, true, func(bctx context.Context) bool {
		_ = j.rdb.Set(bctx, j.Key("collector"), j.host, collectorTTL).Err()
		return true
	})
}

// Collected marks that every row of the job is in the coordinator's file: the hosts that
// end after the coordinator need no collector then.
func (j *Job) Collected(ctx context.Context) error {
	return redisFailure(ctx, j.rdb.HSet(ctx, j.Key("meta"), "collected", "1").Err())
}

// Collector returns the host that collects the job's rows ("" when none has beaten within
// collectorTTL), and whether the job's rows were all collected.
func (j *Job) Collector(ctx context.Context) (host string, done bool, err error) {
	host, err = j.rdb.Get(ctx, j.Key("collector")).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", false, redisFailure(ctx, err)
	}
	d, err := j.rdb.HGet(ctx, j.Key("meta"), "collected").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", false, redisFailure(ctx, err)
	}
	return host, d == "1", nil
}

// collectorGrace is how long no collector must have beaten before a host is told: a
// coordinator starts collecting a moment after the hosts may join, and a beat may be late.
const collectorGrace = 5 * time.Second

// WatchCollector looks every second, until ctx ends, for the host that collects the job's
// rows: once none has beaten for collectorGrace (and the job is not all collected) it calls
// told(true, ""), and told(false, host) when one is back. An outage is told elsewhere: a look
// that fails changes nothing.
func (j *Job) WatchCollector(ctx context.Context, told func(missing bool, host string)) {
	seen, missing := time.Now(), false // the start counts as a look that found one
	tick(ctx, time.Second, time.Second, false, func(lctx context.Context) bool {
		host, done, err := j.Collector(lctx)
		if host != "" {
			seen = time.Now()
		}
		switch {
		case err != nil || done:
		case host == "" && !missing && time.Since(seen) >= collectorGrace:
			missing = true
			told(true, "")
		case host != "" && missing:
			missing = false
			told(false, host)
		}
		return true
	})
}

// Uncollected reports whether nobody collects the job's rows and they were not all collected:
// a host that ends then leaves its rows in Redis. An unreachable Redis says no.
func (j *Job) Uncollected(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	host, done, err := j.Collector(ctx)
	return err == nil && host == "" && !done
}
