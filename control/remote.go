package control

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// Remote is a running job seen through its control socket: the screen's engine and
// statistics, from the view it fetches on each Snapshot. When the job is gone (it ended and
// removed its socket) the last view stands, marked ended.
type Remote struct {
	path string
	id   string // this screen's name in its view requests (Request.Viewer)
	mu   sync.Mutex
	view View
	gone bool
	lost bool // the job went away before a view of its end came
	// failures counts the view requests in a row that failed.
	failures int
}

// socketThere reports whether the socket file at path still exists.
func socketThere(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// viewerSeq numbers the Remotes of this process, for their Request.Viewer.
var viewerSeq atomic.Int64

// Dial fetches a first view of the job at path.
func Dial(path string) (*Remote, error) {
	r := &Remote{path: path, id: fmt.Sprintf("%d.%d", os.Getpid(), viewerSeq.Add(1))}
	resp, err := Do(path, Request{Cmd: "view", Viewer: r.id})
	if err != nil {
		return nil, err
	}
	if !resp.OK || resp.View == nil {
		return nil, errorf("control: %s: %s", path, resp.Error)
	}
	r.view = *resp.View
	return r, nil
}

// View returns the last view fetched.
func (r *Remote) View() View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view
}

// Snapshot fetches a fresh view and returns its snapshot.
func (r *Remote) Snapshot() engine.Snapshot {
	resp, err := Do(r.path, Request{Cmd: "view", Viewer: r.id})
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.gone: // the job's end (or the last view seen) stands
	case err == nil && resp.OK && resp.View != nil:
		r.view, r.failures = *resp.View, 0
	default:
		// The job is gone when its socket is (a job removes it as it ends), or after a few
		// failures in a row; one slow answer is not the end.
		if r.failures++; r.failures < 3 && socketThere(r.path) {
			break
		}
		r.gone = true
		if r.view.Snapshot.Ended.IsZero() {
			r.lost = true
			r.view.Snapshot.Ended = time.Now()
		}
	}
	return r.view.Snapshot
}

// Lost reports whether the job went away before a view of its end came (killed, or its
// socket closed early): the last view's numbers are then not the job's final ones.
func (r *Remote) Lost() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

func (r *Remote) send(req Request) error {
	resp, err := Do(r.path, req)
	if err != nil {
		return err
	}
	if !resp.OK {
		return errorf("%s", resp.Error)
	}
	return nil
}

// Set asks the job to apply u, in one request: the job's engine applies it as one change.
func (r *Remote) Set(u engine.Update, origin string) error {
	if u.Empty() {
		return nil
	}
	return r.send(Request{Cmd: "set", Set: u.Fields(), Origin: origin})
}

// Pause asks the job to pause.
func (r *Remote) Pause(origin string) { _ = r.send(Request{Cmd: "pause", Origin: origin}) }

// Resume asks the job to resume.
func (r *Remote) Resume(origin string) { _ = r.send(Request{Cmd: "resume", Origin: origin}) }

// Drain asks the job to drain.
func (r *Remote) Drain(origin string) { _ = r.send(Request{Cmd: "drain", Origin: origin}) }

// Stop asks the job to stop.
func (r *Remote) Stop(origin string) { _ = r.send(Request{Cmd: "stop", Origin: origin}) }

// Points returns the last span of the view's per-second points.
func (r *Remote) Points(now time.Time, span time.Duration) []probes.Point {
	p := r.View().Points
	if n := int(span / time.Second); len(p) > n {
		p = p[len(p)-n:]
	}
	return p
}

// Latency returns the view's latency now.
func (r *Remote) Latency(now time.Time) probes.Stats { return r.View().Latency }

// Overall returns the view's latency over the whole run.
func (r *Remote) Overall() probes.Stats { return r.View().Overall }

// Errors returns the view's error groups.
func (r *Remote) Errors(n int) []probes.ErrorGroup {
	e := r.View().Errors
	return e[:min(n, len(e))]
}

// Advice returns the view's advice.
func (r *Remote) Advice(time.Time, engine.Settings, engine.Effective) probes.Advice {
	return r.View().Advice
}
