package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/metrics"
)

// startMetrics serves Prometheus metrics of the run on --metrics, at /metrics, and says where
// on stderr. The returned function folds the run's summary in; the server then goes on
// serving the final figures until the process exits, which for the CLI is right after, so
// nothing waits on a scraper.
//
// The metrics are fed by the run's monitor (the returned feed): one subscription serves both.
func startMetrics(ctx context.Context, env *Env, rf *runFlags, e *engine.Engine, j job, title string) (func(engine.Summary), func(engine.Event), error) {
	addr, err := metricsAddr(rf.metrics)
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, usageError("--metrics %s: %v", rf.metrics, err)
	}
	obs := metrics.New(e, metrics.Options{Job: title, StatusNotHTTP: j.name == "exec", Shared: true})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", obs.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second, // a client that never finishes its request holds no goroutine for long
		// The server's own complaints (a client hanging up) would land on the TUI's screen.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(l) }()
	fmt.Fprintf(env.Stderr, "metrics on http://%s/metrics\n", l.Addr())
	return func(sum engine.Summary) {
		obs.Finish(sum)
		if e.Snapshot().Started.IsZero() {
			// Another outlet failed to start and the run never will: nothing worth serving.
			_ = srv.Close()
		}
	}, obs.Observe, nil
}

// metricsAddr checks --metrics. A bare ":PORT" would listen on every interface, which the
// operator should choose knowingly, not by leaving the host out: it is refused.
func metricsAddr(flag string) (string, error) {
	host, port, err := net.SplitHostPort(flag)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		return "", usageError("--metrics %q: %v; want HOST:PORT, e.g. 127.0.0.1:9464", flag, err)
	}
	if port == "" {
		return "", usageError("--metrics %q: no port; want HOST:PORT, e.g. %s", flag, net.JoinHostPort(orLoopback(host), "9464"))
	}
	if host == "" {
		return "", usageError("--metrics %q names no address, and would serve on every interface: say which, "+
			"127.0.0.1:%s (this host only) or 0.0.0.0:%s (every interface)", flag, port, port)
	}
	return flag, nil
}

func orLoopback(host string) string {
	if host == "" {
		return "127.0.0.1"
	}
	return host
}
