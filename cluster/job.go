// Package cluster lets several hosts share one job through Redis: one work list (a stream
// with a consumer group), one results stream that the coordinator writes to the results file,
// one global rate (GCRA), one global cap on calls in flight (a lease semaphore), one
// Retry-After gate, and live settings that any host may change. Without --redis none of it
// runs, and the engine does not know it exists: it sees a Source, a RowWriter, an Adapter
// and its own settings.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/throttle-dev/throttle/internal/redact"
)

func init() {
	// go-redis logs every failed dial to stderr, over the screen; an outage is reported once,
	// by the parts of this package, instead.
	redis.SetLogger(quietLogger{})
}

// quietLogger drops go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// Job is one host's handle on a shared job.
type Job struct {
	rdb  *redis.Client
	name string
	host string // this host's name in the job: hostname/pid
	gen  string // the job's generation as this host knows it (Define, Generation)
}

// Connect connects to the Redis at url (redis://HOST:PORT/DB) for the job name and checks
// that it answers. host names this process in the job; "" means hostname/pid.
func Connect(ctx context.Context, url, name, host string) (*Job, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("cluster: job name %q: want letters, digits, '-', '_' or '.' (1 to 64)", name)
	}
	rdb, err := dial(ctx, url)
	if err != nil {
		return nil, err
	}
	if host == "" {
		h, _ := os.Hostname()
		host = h + "/" + strconv.Itoa(os.Getpid())
	}
	return &Job{rdb: rdb, name: name, host: host}, nil
}

// dial connects to the Redis at url and checks, within 3 s, that it answers.
func dial(ctx context.Context, url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("cluster: --redis %s: %w (want a URL: redis://HOST:PORT/DB, or rediss:// for TLS)", redact.URL(url), err)
	}
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close() // the ping failed: that error is the one to tell
		if redisRefused(err) {
			// It answered, with a refusal (a database it does not have, a wrong password).
			return nil, fmt.Errorf("cluster: redis at %s refuses: %w", redact.URL(url), err)
		}
		return nil, fmt.Errorf("cluster: redis at %s does not answer: %w", redact.URL(url), err)
	}
	return rdb, nil
}

// redisRefused says whether err is Redis's own answer (an ERR, WRONGPASS, NOAUTH … reply),
// not a failure to reach it.
func redisRefused(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// Close closes the connection.
func (j *Job) Close() error { return j.rdb.Close() }

// Name is the job's name; Host this process's name in it.
func (j *Job) Name() string { return j.name }

// Host is this process's name in the job.
func (j *Job) Host() string { return j.host }

// Client is the Redis client, for the parts of this package and their tests.
func (j *Job) Client() *redis.Client { return j.rdb }

// Key names one of the job's keys: throttle:{NAME}:part. The braces keep a job's keys in one
// Redis Cluster slot, so that its Lua scripts may touch several.
func (j *Job) Key(part string) string { return "throttle:{" + j.name + "}:" + part }

// Reset deletes every key of the job, for a new run under the same name.
func (j *Job) Reset(ctx context.Context) error {
	var keys []string
	iter := j.rdb.Scan(ctx, 0, j.Key("*"), 512).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	return j.rdb.Del(ctx, keys...).Err()
}

// ValidName reports whether s may name a job or a shared limit: letters, digits, '-', '_'
// or '.', 1 to 64 of them (a name goes into Redis keys and hash tags).
func ValidName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)) {
			return false
		}
	}
	return true
}

// ErrRedis marks an error of Redis itself (it went away, it timed out): the job waits for it
// rather than failing items.
var ErrRedis = errors.New("redis unavailable")

// Define stores the job's definition for `throttle join`: the command line that hosts run —
// the adapter and its flags, never a secret (secrets are ${NAME} templates, read on each
// host) — and the coordinator's name.
func (j *Job) Define(ctx context.Context, args []string) error {
	b, err := json.Marshal(args)
	if err != nil {
		return err
	}
	gen := strconv.FormatUint(rand.Uint64(), 36)
	err = j.rdb.HSet(ctx, j.Key("meta"), "args", b, "coordinator", j.host, "defined", time.Now().UTC().Format(time.RFC3339), "gen", gen).Err()
	if err == nil {
		j.gen = gen
	}
	return err
}

// withGen returns the fields of a work or results entry with the job's generation, when
// this host knows it: a host of an older generation still running must not have its rows
// taken for the new one's, nor take its work.
func (j *Job) withGen(fields ...any) []any {
	if j.gen != "" {
		fields = append(fields, "gen", j.gen)
	}
	return fields
}

// sameGen reports whether an entry is of this host's generation of the job (or either does
// not say).
func (j *Job) sameGen(m redis.XMessage) bool {
	g, ok := m.Values["gen"].(string)
	return !ok || j.gen == "" || g == j.gen
}

// ErrJobGone says that Redis no longer holds the job's state: it restarted empty (without
// persistence), or someone deleted the job's keys. The work list, the leases and the rows
// not yet collected went with it; the coordinator's results file holds what was collected.
var ErrJobGone = errors.New("redis no longer holds the job's state (restarted empty, or its keys were deleted)")

// ErrJobRestarted says that the job was started anew under its name (a coordinator's
// --reset) while this host ran the run before: that run's state is gone as with
// [ErrJobGone], which it matches, but nothing went wrong with Redis.
var ErrJobRestarted error = jobRestarted{}

type jobRestarted struct{}

func (jobRestarted) Error() string {
	return "the job was started anew under its name (a coordinator's --reset): the run this host was part of is over"
}

// Is makes the restart one way for the job's state to be gone.
func (jobRestarted) Is(target error) bool { return target == ErrJobGone }

// Generation reads the generation of the job that Define stored and remembers it, for
// WatchGeneration: a host that joins calls it once, before it takes work.
func (j *Job) Generation(ctx context.Context) (string, error) {
	gen, err := j.rdb.HGet(ctx, j.Key("meta"), "gen").Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("cluster: job %q: %w", j.name, ErrJobGone)
	}
	if err != nil {
		return "", redisFailure(ctx, err)
	}
	j.gen = gen
	return gen, nil
}

// CheckGeneration returns ErrJobGone when Redis no longer holds the generation this host
// knows: the job's state is not the one it joined (ErrJobRestarted, which matches it, when
// Redis holds another: the job was started anew). A Redis that does not answer is its own
// error (an outage, waited out elsewhere), not a verdict.
func (j *Job) CheckGeneration(ctx context.Context) error {
	gen, err := j.rdb.HGet(ctx, j.Key("meta"), "gen").Result()
	switch {
	case errors.Is(err, redis.Nil):
		return ErrJobGone
	case err != nil:
		return err
	case gen != j.gen:
		return ErrJobRestarted
	}
	return nil
}

// WatchGeneration checks the job's generation every interval until ctx ends, and calls gone
// once, with ErrJobGone or ErrJobRestarted, then returns, when Redis answers without it:
// after an outage this is the check that tells a Redis that came back empty from one that
// kept the job. A host that has no generation (neither Define nor Generation was called)
// watches nothing.
func (j *Job) WatchGeneration(ctx context.Context, every time.Duration, gone func(why error)) {
	if j.gen == "" {
		return
	}
	tick(ctx, every, max(every, time.Second), false, func(ctx context.Context) bool {
		if err := j.CheckGeneration(ctx); errors.Is(err, ErrJobGone) {
			gone(err)
			return false
		}
		return true
	})
}

// Definition returns the command line stored by Define and the coordinator's name.
func (j *Job) Definition(ctx context.Context) (args []string, coordinator string, err error) {
	m, err := j.rdb.HGetAll(ctx, j.Key("meta")).Result()
	if err != nil {
		return nil, "", err
	}
	if m["args"] == "" {
		return nil, "", fmt.Errorf("cluster: no job %q in this redis: start it with throttle run … --redis URL --job %s --input FILE", j.name, j.name)
	}
	if err := json.Unmarshal([]byte(m["args"]), &args); err != nil {
		return nil, "", fmt.Errorf("cluster: job %q: its definition does not parse: %w", j.name, err)
	}
	return args, m["coordinator"], nil
}
