package adapters

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/throttle-dev/throttle/engine"
)

// pgBenchRows is the number of rows one operation of BenchmarkPostgresInsert loads: enough
// that connecting and the first prepare are a small part of it. At chunk 1 every row is a
// commit of its own, which waits for a WAL flush, so a quarter of them is enough there.
const pgBenchRows = 20_000

// BenchmarkPostgresInsert measures the postgres adapter under the engine, loading
// pgBenchRows JSONL pgEvents (a quarter at chunk 1) into a fresh table per operation with
// INSERT … VALUES ($1, $2) ON CONFLICT DO NOTHING, at parallelism 1, 4 and 16 and chunks of 1,
// 100 and 1000, rows to io.Discard. The database shares the machine's cores with the
// benchmark, so the figures compare settings more than they measure a server. It reports
// rows/s.
//
//	THROTTLE_TEST_PG=… go test -run '^$' -bench PostgresInsert -benchtime 1x -count 3 ./adapters/
func BenchmarkPostgresInsert(b *testing.B) {
	db := newPGTestDB(b)
	var input bytes.Buffer
	quarter := 0 // bytes of the first pgBenchRows/4 lines
	for i := range pgBenchRows {
		if i == pgBenchRows/4 {
			quarter = input.Len()
		}
		fmt.Fprintf(&input, `{"id":%d,"payload":{"kind":"click","user":%d,"tags":["a","b"]}}`+"\n", i, i%997)
	}
	for _, p := range []int{1, 4, 16} {
		for _, chunk := range []int{1, 100, 1000} {
			b.Run("p"+strconv.Itoa(p)+"/chunk"+strconv.Itoa(chunk), func(b *testing.B) {
				want, src := int64(pgBenchRows), input.Bytes()
				if chunk == 1 {
					want, src = pgBenchRows/4, src[:quarter]
				}
				var rows int64
				for n := range b.N {
					b.StopTimer()
					table := "events_" + strconv.Itoa(n)
					db.exec(b, "DROP TABLE IF EXISTS S."+table)
					db.exec(b, "CREATE TABLE S."+table+"(id bigint PRIMARY KEY, payload jsonb NOT NULL)")
					a := db.adapter(b, PostgresConfig{SQL: "INSERT INTO S." + table + "(id, payload) VALUES ($1, $2) ON CONFLICT DO NOTHING", Args: []string{"id", "payload"}})
					e, err := engine.New(engine.Config{
						Settings: engine.Settings{Parallelism: p}, Chunk: chunk, Retries: 3,
						Adapter: a, Source: engine.NewLineReader(bytes.NewReader(src), true), Total: want, Results: io.Discard,
					})
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					sum, err := e.Run(context.Background())
					b.StopTimer()
					if err != nil || sum.OK != want {
						b.Fatalf("Run() = ok %d, failed %d, %v; want %d ok", sum.OK, sum.Failed, err, want)
					}
					if got := db.count(b, "SELECT count(*) FROM S."+table); got != want {
						b.Fatalf("table holds %d rows, want %d", got, want)
					}
					a.Close()
					db.exec(b, "DROP TABLE S."+table)
					rows += want
				}
				b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
