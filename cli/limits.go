package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/throttle-dev/throttle/cluster"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/internal/redact"
)

// wrapLimits puts the named shared limits of --limit in front of the adapter: every call
// then takes a slot and tokens from each of them, in Redis, besides the job's own knobs. The
// returned function leaves the limits (this job no longer counts in their shares) and closes
// the connection; call it once the run is over.
//
// A limit that does not exist, a weight that does not parse or a Redis that does not answer
// is a usage error: nothing is called. Once the run is under way an unavailable Redis (or a
// limit removed under it) makes calls wait, said once on stderr; the job never goes on
// without its limits.
func wrapLimits(ctx context.Context, env *Env, rf *runFlags, a engine.Adapter) (engine.Adapter, func(), error) {
	uses, err := parseLimitUses(rf.limits)
	if err != nil {
		return nil, nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	lim, err := cluster.ConnectLimits(ctx, rf.redis)
	if err != nil {
		return nil, nil, usageError("--limit: %v", err)
	}
	if rf.detach {
		// The run goes on in a process of its own, which takes the limits: here, only check.
		defer func() { _ = lim.Close() }() // the limit was released by the run; this drops the connection
		for _, u := range uses {
			if _, err := lim.Get(ctx, u.Name); err != nil {
				return nil, nil, limitError(rf.redis, err)
			}
		}
		return a, func() {}, nil
	}

	var mu sync.Mutex
	say := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(env.Stderr, line)
	}
	names := make([]string, len(uses))
	for i, u := range uses {
		names[i] = u.Name
	}
	which := "the shared limit " + strings.Join(names, ", ")
	if len(names) > 1 {
		which = "the shared limits " + strings.Join(names, ", ")
	}
	// The Outage tells each outage once, and its end, in order: here, only the words.
	outage := cluster.NewOutage(func(err error) {
		gone, isGone := errors.AsType[*cluster.NoLimitError](err)
		switch {
		case isGone:
			name := gone.Name
			say(fmt.Sprintf("shared limit %s is gone from redis (throttle limit rm --force?): calls wait for it; nothing is lost; throttle limit set %s … brings it back", name, name))
		case err != nil:
			say(fmt.Sprintf("redis unavailable: calls wait for %s; nothing is lost (%v)", which, err))
		default:
			say("redis is back: calls take from " + which + " again")
		}
	})
	onChange := func(name, by string, changes []cluster.LimitChange) {
		parts := make([]string, len(changes))
		for i, c := range changes {
			parts[i] = c.String()
		}
		say(fmt.Sprintf("limit %s: %s (by %s)", name, strings.Join(parts, ", "), by))
	}
	opts := cluster.GateOptions{Label: limitLabel(rf), Outage: outage, OnChange: onChange}
	if rf.job != "" {
		// The hosts of one job across hosts are one job of the limit: one share between them.
		opts.Job = "job:" + rf.job
	}
	g, err := lim.Use(ctx, a, uses, opts)
	if err != nil {
		_ = lim.Close() // Use failed: that error is the one to tell
		return nil, nil, limitError(rf.redis, err)
	}
	for i, u := range uses {
		c := g.Config(i)
		// In lines of 80 columns, as the progress lines under them.
		for _, l := range wrapLine(fmt.Sprintf("shared limit %s: %s", u.Name, c), progressWidth) {
			say(l)
		}
		for _, l := range wrapLine(fmt.Sprintf("  weight %s (throttle limit get %s --redis … shows who else uses it)", formatWeight(u.Weight), u.Name), progressWidth) {
			say(l)
		}
		if c.TPM > 0 && !g.CountsTokens() {
			for _, l := range wrapLine(fmt.Sprintf("warning: limit %s counts tokens per minute, but this adapter does not estimate a call's tokens: its tpm does not hold this job's calls (its rate and parallelism do)", u.Name), progressWidth) {
				say(l)
			}
		}
	}
	stop := func() {}
	if !wantScreen(env, rf) {
		stop = limitLines(say, g, lim, 5*rf.progressEvery)
	}
	return g.Adapter(), func() {
		stop()
		g.Close()
		outage.Close()  // the run is over: an outage's end is no news under its summary
		_ = lim.Close() // the run is over: a failure to drop the connection changes nothing
	}, nil
}

// parseLimitUses reads the --limit values: NAME or NAME:WEIGHT, each name once, by the
// cluster's one rule for limit names and weights.
func parseLimitUses(vals []string) ([]cluster.LimitUse, error) {
	uses, err := cluster.ParseLimitUses(vals)
	if bad, ok := errors.AsType[*cluster.LimitUseError](err); ok {
		sep := " "
		if bad.Value == "" {
			sep = ""
		}
		return nil, usageError("--limit%s%s: %s", sep, bad.Value, bad.Reason)
	}
	if err != nil {
		return nil, usageError("--limit: %v", err)
	}
	return uses, nil
}

// limitError is the usage error for a limit that cannot be used: it does not exist (with
// how to make it), or Redis failed.
func limitError(url string, err error) error {
	url = redact.URL(url) // a password in it goes to no terminal
	if gone, ok := errors.AsType[*cluster.NoLimitError](err); ok {
		name := gone.Name
		return usageError("--limit %s: no such shared limit in the redis at %s; create it first: throttle limit set %s --rate 50/s --parallelism 16 --redis %s", name, url, name, url)
	}
	return usageError("--limit: %v", err)
}

// limitLabel names this job in `limit ls`: its input, or its job across hosts.
func limitLabel(rf *runFlags) string {
	switch {
	case rf.job != "":
		return "job " + rf.job
	case rf.input == "-":
		return "stdin"
	case rf.input != "":
		return filepath.Base(rf.input)
	}
	return ""
}

func formatWeight(w float64) string { return strconv.FormatFloat(w, 'g', -1, 64) }

// limitLines says every so often, under the progress lines, how each shared limit goes and
// whether it is what holds this job back; the returned function stops it.
func limitLines(say func(string), g *cluster.Gate, lim *cluster.Limits, every time.Duration) func() {
	return periodically(every, func() {
		for _, line := range limitStatusLines(g, lim) {
			say(line)
		}
	})
}

// limitStatusLines says of each shared limit whether it binds this job, then its use across
// jobs, each figure with its window, in lines that fit progressWidth. E.g.
//
//	limit tmdb binds this job: share of rate
//	  now 6 of 6 in flight (3 of this job), 12 waiting · last whole second 98 calls/s
//	  of 100/s · 2 jobs
func limitStatusLines(g *cluster.Gate, lim *cluster.Limits) []string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var lines []string
	for _, s := range g.Status() {
		head := fmt.Sprintf("limit %s does not bind this job (its own knobs or the target do)", s.Name)
		if s.Binds != "" {
			head = fmt.Sprintf("limit %s binds this job: %s", s.Name, s.Binds)
		}
		lines = append(lines, wrapLine(head, progressWidth)...)
		info, err := lim.Get(ctx, s.Name)
		if err != nil {
			lines = append(lines, wrapLine(fmt.Sprintf("  now %d of this job in flight, %d waiting (redis: %v)", s.InFlight, s.Waiting, err), progressWidth)...)
			continue
		}
		inFlight := strconv.Itoa(info.InFlight)
		if info.Parallelism > 0 {
			inFlight += " of " + strconv.Itoa(info.Parallelism)
		}
		use := fmt.Sprintf("  now %s in flight (%d of this job), %d waiting · last whole second %.0f calls/s of %s · %s",
			inFlight, s.InFlight, info.Waiting, info.CallsPerSecond, engine.FormatRate(info.Rate), human.Counted(int64(info.AliveJobs()), "job", "jobs"))
		lines = append(lines, wrapLine(use, progressWidth)...)
	}
	return lines
}
