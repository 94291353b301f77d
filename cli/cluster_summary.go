package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	"github.com/throttle-dev/throttle/cluster"
)

// collectTally counts the rows that the coordinator of a shared job writes to the results
// file, for the summary and --summary-json: cluster.Collect writes them as lines (one Write a batch), not
// through the engine's WriteRows, so the lines are counted as they pass, the same way.
type collectTally struct {
	*rowTally
	mu      sync.Mutex
	partial []byte // a line whose end has not been written yet
}

func newCollectTally(w io.Writer) *collectTally { return &collectTally{rowTally: newRowTally(w)} }

// Write writes p and counts each whole line written.
func (t *collectTally) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	b := append(t.partial, p[:n]...)
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		if i > 0 {
			t.count(b[:i+1])
		}
		b = b[i+1:]
	}
	t.partial = append(t.partial[:0], b...)
	return n, err
}

// jobSummaryJSON is --summary-json for the coordinator of a shared job: the one-host document,
// whose items, by_status, by_class and failures count the whole job's rows (the results file
// this host wrote), while calls, retries, 429s and latency_ms are this host's own (no host
// sees another's calls), and "job" lists what every host said of itself last.
type jobSummaryJSON struct {
	summaryJSON
	Job jobJSON `json:"job"`
}

type jobJSON struct {
	Name string `json:"name"`
	// HostScope names the fields of the document that are this host's alone.
	HostScope []string      `json:"host_scope"`
	Host      string        `json:"host"` // this host, the coordinator
	Hosts     []jobHostJSON `json:"hosts"`
	Rows      int64         `json:"rows"`
	Dropped   int64         `json:"duplicate_rows_dropped"`
}

type jobHostJSON struct {
	Host   string `json:"host"`
	Calls  int64  `json:"calls"`
	OK     int64  `json:"ok"`
	Failed int64  `json:"failed"`
	Alive  bool   `json:"alive"` // at its last report; this host's entry is written as it ends (false)
}

// clusterSummaryJSON writes the coordinator's --summary-json to f and closes it: this host's
// report with the rows, items and wall time of the whole job.
func clusterSummaryJSON(f *os.File, self string, hosts []cluster.HostStatus, job string, total int64, r endReport,
	stats cluster.CollectStats, tally *collectTally, elapsed time.Duration) error {
	hostSum := r.sum
	if total >= 0 { // as the coordinator's settle made them: the job's items, not this host's
		r.sum.Total, r.sum.OK, r.sum.Failed = total, stats.OK, stats.Failed
	}
	r.sum.Elapsed = elapsed
	r.rows = tally.snapshot()
	r.retry = nil // --only-failed runs on one host
	doc := jobSummaryJSON{summaryJSON: r.toJSON(), Job: jobJSON{Name: job, Host: self,
		HostScope: []string{"calls", "retries", "429s", "latency_ms"}, Hosts: []jobHostJSON{},
		Rows: stats.Rows, Dropped: stats.Duplicates}}
	// This host's own figures are exact; the others' are their last heartbeat (a second old at most).
	// (its rows are counted in its last heartbeat: the settled summary holds the job's)
	me := jobHostJSON{Host: self, Calls: hostSum.Calls}
	for _, h := range hosts {
		if h.Host == self {
			me.OK, me.Failed = h.OK, h.Failed
			doc.Job.Hosts = append(doc.Job.Hosts, me)
			self = ""
			continue
		}
		doc.Job.Hosts = append(doc.Job.Hosts, jobHostJSON{Host: h.Host, Calls: h.Calls, OK: h.OK, Failed: h.Failed, Alive: h.Alive})
	}
	if self != "" {
		doc.Job.Hosts = append([]jobHostJSON{me}, doc.Job.Hosts...)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// watchHosts reads the job's hosts every so often and keeps each one's latest report: a host
// takes its entry away when it leaves, so the end of a job cannot be read from Redis after it.
// seen returns the hosts in the order first seen; stop ends the watch.
func watchHosts(cj *cluster.Job, every time.Duration) (seen func() []cluster.HostStatus, stop func()) {
	var (
		mu    sync.Mutex
		order []string
		last  = map[string]cluster.HostStatus{}
	)
	read := func(ctx context.Context) {
		hosts, err := cj.Hosts(ctx)
		if err != nil {
			return // Redis away: the last reports stand
		}
		mu.Lock()
		defer mu.Unlock()
		for _, h := range hosts {
			if _, ok := last[h.Host]; !ok {
				order = append(order, h.Host)
			}
			last[h.Host] = h
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			read(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	stopped := sync.OnceFunc(func() { cancel(); <-done })
	return func() []cluster.HostStatus {
		stopped()
		mu.Lock()
		defer mu.Unlock()
		out := make([]cluster.HostStatus, 0, len(order))
		for _, h := range order {
			out = append(out, last[h])
		}
		return out
	}, stopped
}
