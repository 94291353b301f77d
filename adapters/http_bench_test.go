package adapters_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
)

// benchItems is an engine.Source of n items "0", "1", … made on demand.
type benchItems struct{ n, next int64 }

func (s *benchItems) Next() (engine.Item, error) {
	if s.next == s.n {
		return engine.Item{}, io.EOF
	}
	it := engine.Item{Index: s.next, Line: strconv.FormatInt(s.next, 10)}
	s.next++
	return it, nil
}

// BenchmarkHTTPLoopback measures the http adapter under the engine against an httptest server
// on 127.0.0.1 that answers a small JSON object at once: one run of b.N calls at each
// parallelism, rows to io.Discard. Client and server share the machine's cores, so this is a
// floor for what a real target at zero latency could see. It reports calls/s.
//
//	go test -run '^$' -bench HTTPLoopback -count 5 ./adapters/
func BenchmarkHTTPLoopback(b *testing.B) {
	var served atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"`+r.PathValue("id")+`","ok":true}`)
	})
	srv := httptest.NewServer(mux) // on 127.0.0.1
	defer srv.Close()

	for _, p := range []int{16, 64} {
		b.Run("p"+strconv.Itoa(p), func(b *testing.B) {
			h, err := adapters.NewHTTP(adapters.HTTPConfig{URL: srv.URL + "/items/{item}"})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			e, err := engine.New(engine.Config{
				Settings: engine.Settings{Parallelism: p},
				Adapter:  h,
				Source:   &benchItems{n: int64(b.N)},
				Total:    int64(b.N),
				Results:  io.Discard,
			})
			if err != nil {
				b.Fatal(err)
			}
			served.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			sum, err := e.Run(context.Background())
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if sum.OK != int64(b.N) || served.Load() != int64(b.N) {
				b.Fatalf("Run over %d items: ok %d, failed %d, served %d; want %d ok and served", b.N, sum.OK, sum.Failed, served.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
