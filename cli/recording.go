package cli

import (
	"fmt"
	"os"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/record"
)

// startRecording opens --record and starts recording e, before it runs; nil when not asked.
func startRecording(env *Env, rf *runFlags, j job, in *input, set engine.Settings, e *engine.Engine) (*record.Recorder, error) {
	if rf.record == "" {
		return nil, nil
	}
	f, err := openPrivate(env, "--record", rf.record, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return nil, usageError("--record: %v", err)
	}
	host, _ := os.Hostname()
	h := record.Header{Host: host, Throttle: versionWord(), Adapter: j.name, Target: j.target, Input: in.name,
		Total: in.total, Settings: record.SettingsOf(set), Retries: rf.retries, MaxBackoff: record.Duration(rf.maxBackoff),
		Timeout: record.Duration(rf.timeout), Chunk: rf.chunk, Auto: rf.auto,
		Adapt: rf.adapt, Hold: rf.hold}
	rec, err := record.Start(f, h, e)
	if err != nil {
		return nil, fmt.Errorf("--record %s: %w", rf.record, err)
	}
	return rec, nil
}

// stopRecording ends the recording with the run's summary; a recording that could not be
// written is worth a line, not a failed run: the results are what matter.
func stopRecording(env *Env, rec *record.Recorder, sum engine.Summary, path string) {
	if rec == nil {
		return
	}
	if err := rec.Close(sum); err != nil {
		fmt.Fprintf(env.Stderr, "warning: the recording %s is incomplete: %v\n", path, err)
		return
	}
	calls, size := rec.Size()
	perCall := ""
	if calls > 0 {
		perCall = fmt.Sprintf(", %.1f bytes a call", float64(size)/float64(calls))
	}
	fmt.Fprintf(env.Stderr, "recorded %s to %s (%s%s): throttle replay %s\n", human.Counted(calls, "call", "calls"), path, human.Bytes(size), perCall, path)
}
