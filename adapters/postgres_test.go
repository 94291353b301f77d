package adapters

// Tests of the postgres adapter against a real PostgreSQL: THROTTLE_TEST_PG is its DSN, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. Each test works in a schema of its
// own, dropped at its end, and names its connections (application_name) so that it counts
// only its own in pg_stat_activity.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/throttle-dev/throttle/engine"
)

// testPGDSN returns THROTTLE_TEST_PG. Without it the test is skipped, except under CI=true,
// where a missing database must not pass as a green run.
func testPGDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("THROTTLE_TEST_PG")
	if dsn == "" {
		msg := "THROTTLE_TEST_PG is not set: the postgres tests need a real database, e.g. " +
			"THROTTLE_TEST_PG='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'"
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dsn
}

// pgRandomHex returns n random bytes as hex.
func pgRandomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// pgTestDB is a direct connection for a test's setup and checks, with a schema of its own.
type pgTestDB struct {
	dsn    string
	conn   *pgx.Conn
	schema string // quoted, ready for SQL
	app    string // a unique application_name for the adapter's connections
}

// newPGTestDB connects to THROTTLE_TEST_PG and creates a schema for the test, dropped (with
// all it holds) at its end.
func newPGTestDB(t testing.TB) *pgTestDB {
	t.Helper()
	dsn := testPGDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to THROTTLE_TEST_PG: %v", err)
	}
	id := pgRandomHex(t, 6)
	db := &pgTestDB{dsn: dsn, conn: conn, schema: pgx.Identifier{"throttle_test_" + id}.Sanitize(), app: "throttle_test_" + id}
	db.exec(t, "CREATE SCHEMA "+db.schema)
	t.Cleanup(func() {
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+db.schema+" CASCADE"); err != nil {
			t.Errorf("dropping the test schema: %v", err)
		}
		conn.Close(ctx)
	})
	return db
}

// exec runs SQL on the test's connection; "S." in it is the test's schema.
func (db *pgTestDB) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := db.conn.Exec(context.Background(), db.in(sql), args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// in replaces "S." in sql with the test's schema.
func (db *pgTestDB) in(sql string) string { return strings.ReplaceAll(sql, "S.", db.schema+".") }

// count returns a count(*) query's result.
func (db *pgTestDB) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.conn.QueryRow(context.Background(), db.in(sql), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// connections counts the sessions of the test's application_name, as a DBA would.
func (db *pgTestDB) connections(t testing.TB) int {
	return int(db.count(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", db.app))
}

// waitConnections waits up to a second for the test's sessions to number want: a backend
// leaves pg_stat_activity a moment after its client said goodbye. It returns the last count.
func (db *pgTestDB) waitConnections(t testing.TB, want int) int {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		n := db.connections(t)
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// adapter returns a Postgres adapter over the test database, its connections named db.app,
// closed at the end of the test.
func (db *pgTestDB) adapter(t testing.TB, cfg PostgresConfig) *Postgres {
	t.Helper()
	if cfg.DSN == "" {
		cfg.DSN = db.dsn
	}
	if cfg.ApplicationName == "" {
		cfg.ApplicationName = db.app
	}
	cfg.SQL = db.in(cfg.SQL)
	p, err := NewPostgres(cfg)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// pgRow is one decoded result row.
type pgRow struct {
	Item     json.RawMessage `json:"item"`
	OK       bool            `json:"ok"`
	Attempts int             `json:"attempts"`
	Output   json.RawMessage `json:"output"`
	Error    string          `json:"error"`
	SQLState string          `json:"sqlstate"`
	Detail   string          `json:"detail"`
}

// key is the row's item: the line, or a JSONL item's "id" field.
func (r pgRow) key() string {
	var s string
	if json.Unmarshal(r.Item, &s) == nil {
		return s
	}
	var obj struct{ ID json.RawMessage }
	_ = json.Unmarshal(r.Item, &obj)
	return strings.Trim(string(obj.ID), `"`)
}

// runPGEngine runs a job over input through a, and returns its summary, its rows by item (each
// item must have exactly one) and the results file's text.
func runPGEngine(t testing.TB, a engine.Adapter, cfg engine.Config, input string, jsonl bool) (engine.Summary, map[string]pgRow, string) {
	t.Helper()
	var out bytes.Buffer
	cfg.Adapter, cfg.Results, cfg.Total = a, &out, -1
	cfg.Source = engine.NewLineReader(strings.NewReader(input), jsonl)
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 20 * time.Millisecond
	}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := e.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return sum, decodePGRows(t, out.Bytes()), out.String()
}

func decodePGRows(t testing.TB, b []byte) map[string]pgRow {
	t.Helper()
	rows := map[string]pgRow{}
	for line := range bytes.Lines(b) {
		var r pgRow
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("row %s: %v", line, err)
		}
		if _, dup := rows[r.key()]; dup {
			t.Errorf("item %s has two rows", r.key())
		}
		rows[r.key()] = r
	}
	return rows
}

// pgLines returns "from\n" … "to-1\n".
func pgLines(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

// pgEvents returns JSONL items {"id":i,"payload":{…}} for i in [from, to).
func pgEvents(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, `{"id":%d,"payload":{"n":%d,"tags":["a","b"]}}`+"\n", i, i)
	}
	return b.String()
}

// TestPostgresLoadFollowsParallelism loads 100,000 rows while parallelism goes 4 → 16 → 2,
// and watches pg_stat_activity as a DBA would: the test's connections reach each new
// parallelism and never pass it, a lowered one is reached within a second or so, and every
// item is in the table exactly once (a plain INSERT: a chunk committed twice would fail).
func TestPostgresLoadFollowsParallelism(t *testing.T) {
	db := newPGTestDB(t)
	db.exec(t, "CREATE TABLE S.events(id bigint PRIMARY KEY, payload jsonb NOT NULL)")
	a := db.adapter(t, PostgresConfig{SQL: "INSERT INTO S.events(id, payload) VALUES ($1, $2)", Args: []string{"id", "payload"}})

	pr, pw := io.Pipe()
	var out bytes.Buffer
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 4}, Chunk: 100, Retries: 3, Timeout: 30 * time.Second,
		Adapter: a, Source: engine.NewLineReader(pr, true), Total: 100_000, Results: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		sum engine.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := e.Run(context.Background())
		done <- result{s, err}
	}()
	feed := func(from, to int) {
		go func() { _, _ = io.WriteString(pw, pgEvents(from, to)) }()
	}

	// A sampler counts the connections all along on a connection of its own, noting when
	// each count began, so that each phase is judged by the counts taken wholly within it.
	type sample struct {
		at time.Time
		n  int
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	sconn, err := pgx.Connect(context.Background(), db.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sconn.Close(context.Background())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			at := time.Now()
			var n int
			if err := sconn.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", db.app).Scan(&n); err != nil {
				return
			}
			mu.Lock()
			samples = append(samples, sample{at, n})
			mu.Unlock()
		}
	}()
	stopSampler := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopSampler()
	most := func(from, to time.Time) (m, count int) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range samples {
			if !s.at.Before(from) && s.at.Before(to) {
				m, count = max(m, s.n), count+1
			}
		}
		return m, count
	}
	open := func() int { return db.connections(t) }
	waitConns := func(want int, within time.Duration) time.Duration {
		t.Helper()
		t0 := time.Now()
		for open() != want || a.Connections() != want {
			if time.Since(t0) > within {
				t.Fatalf("connections: pg_stat_activity %d, Connections() %d; want %d within %v", open(), a.Connections(), want, within)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(t0)
	}

	begin := time.Now()
	feed(0, 20_000)
	waitConns(4, 10*time.Second)

	raised := time.Now()
	_ = e.SetParallelism(16, "test")
	feed(20_000, 60_000)
	up := waitConns(16, 10*time.Second)

	lowered := time.Now()
	_ = e.SetParallelism(2, "test")
	down := waitConns(2, 2*time.Second)
	settled := time.Now()
	go func() {
		_, _ = io.WriteString(pw, pgEvents(60_000, 100_000))
		pw.Close()
	}()
	r := <-done
	stopSampler()
	t.Logf("run took %v", r.sum.Elapsed.Round(time.Millisecond))
	if r.err != nil || r.sum.OK != 100_000 || r.sum.Failed != 0 {
		t.Fatalf("Run() = ok %d, failed %d, %v; want 100000 ok", r.sum.OK, r.sum.Failed, r.err)
	}
	for _, phase := range []struct {
		name     string
		from, to time.Time
		limit    int
	}{
		{"at parallelism 4", begin, raised, 4},
		{"at parallelism 16", raised, lowered, 16},
		{"once down to 2", settled, time.Now(), 2},
	} {
		if m, n := most(phase.from, phase.to); m > phase.limit || n == 0 {
			t.Errorf("%s: up to %d connections in %d counts, want at most %d", phase.name, m, n, phase.limit)
		}
	}
	t.Logf("raised 4 → 16: 16 connections after %v; lowered to 2: 2 connections after %v", up.Round(time.Millisecond), down.Round(time.Millisecond))

	if n, distinct := db.count(t, "SELECT count(*) FROM S.events"), db.count(t, "SELECT count(DISTINCT id) FROM S.events"); n != 100_000 || distinct != 100_000 {
		t.Errorf("table holds %d rows, %d distinct ids; want 100000 each", n, distinct)
	}
	// Decoding 100,000 rows under the race detector takes seconds: count them, read the last.
	if n, failed := bytes.Count(out.Bytes(), []byte("\n")), bytes.Count(out.Bytes(), []byte(`"ok":false`)); n != 100_000 || failed != 0 {
		t.Errorf("%d rows, %d failed; want 100000 ok", n, failed)
	}
	last := out.Bytes()[bytes.LastIndexByte(out.Bytes()[:out.Len()-1], '\n')+1:]
	if r := decodePGRows(t, last); len(r) != 1 || !bytes.Contains(last, []byte(`"output":{"rows_affected":1}`)) {
		t.Errorf("last row %s, want ok with output {\"rows_affected\":1}", last)
	}

	a.Close()
	if a.Connections() != 0 {
		t.Errorf("after Close: Connections() %d, want 0", a.Connections())
	}
	waitConns(0, 2*time.Second) // a backend leaves pg_stat_activity a moment after the goodbye
}

// TestPostgresRetriesRetryableErrors: a statement that fails with a serialization failure
// (40001) the first time it runs for some items is retried until it succeeds, one item at a
// time and as whole chunks, and each item ends in the table once.
func TestPostgresRetriesRetryableErrors(t *testing.T) {
	for _, chunk := range []int{1, 10} {
		t.Run("chunk"+strconv.Itoa(chunk), func(t *testing.T) {
			db := newPGTestDB(t)
			db.exec(t, "CREATE TABLE S.t(id bigint PRIMARY KEY)")
			// A sequence is not rolled back with the failed statement, so it counts the tries.
			for id := 3; id < 60; id += 10 {
				db.exec(t, fmt.Sprintf("CREATE SEQUENCE S.tries_%d", id))
			}
			db.exec(t, `CREATE FUNCTION S.ins(id bigint) RETURNS void LANGUAGE plpgsql AS $$
				BEGIN
					IF id % 10 = 3 AND nextval(format('%I.tries_%s', `+"'"+strings.Trim(db.schema, `"`)+"'"+`, id)::regclass) = 1 THEN
						RAISE EXCEPTION 'first try of %', id USING ERRCODE = '40001';
					END IF;
					INSERT INTO S.t VALUES (id);
				END $$`)
			a := db.adapter(t, PostgresConfig{SQL: "SELECT S.ins($1)"})
			sum, rows, _ := runPGEngine(t, a, engine.Config{Settings: engine.Settings{Parallelism: 3}, Chunk: chunk, Retries: 5}, pgLines(0, 60), false)
			if sum.OK != 60 || sum.Retries < 6 {
				t.Fatalf("Run() = ok %d, failed %d, retries %d; want 60 ok after at least 6 retries", sum.OK, sum.Failed, sum.Retries)
			}
			for id := 3; id < 60; id += 10 {
				r := rows[strconv.Itoa(id)]
				if !r.OK || r.Attempts < 2 || chunk == 1 && r.Attempts != 2 {
					t.Errorf("item %d row %+v, want ok after a second attempt", id, r)
				}
			}
			if n, distinct := db.count(t, "SELECT count(*) FROM S.t"), db.count(t, "SELECT count(DISTINCT id) FROM S.t"); n != 60 || distinct != 60 {
				t.Errorf("table holds %d rows, %d distinct; want 60", n, distinct)
			}
		})
	}
}

// TestPostgresTerminatedConnectionsRetried: an administrator terminates every connection of
// the run halfway (pg_terminate_backend, 57P01 to the calls in flight, a dead socket to the
// idle ones); the calls are retried on new connections and every item lands once.
func TestPostgresTerminatedConnectionsRetried(t *testing.T) {
	db := newPGTestDB(t)
	db.exec(t, "CREATE TABLE S.t(id bigint PRIMARY KEY)")
	a := db.adapter(t, PostgresConfig{SQL: "INSERT INTO S.t SELECT $1::bigint FROM pg_sleep(0.02) ON CONFLICT DO NOTHING"})
	admin, err := pgx.Connect(context.Background(), db.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	killed := make(chan int64, 1)
	go func() {
		defer close(killed)
		for deadline := time.Now().Add(10 * time.Second); a.Connections() < 4 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		var n int64
		if admin.QueryRow(context.Background(), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", db.app).Scan(&n) == nil {
			killed <- n
		}
	}()
	sum, rows, _ := runPGEngine(t, a, engine.Config{Settings: engine.Settings{Parallelism: 4}, Retries: 5}, pgLines(0, 60), false)
	if n := <-killed; n != 4 {
		t.Fatalf("terminated %d connections, want 4", n)
	}
	if sum.OK != 60 || sum.Retries == 0 {
		t.Errorf("Run() = ok %d, failed %d, retries %d; want 60 ok after retries", sum.OK, sum.Failed, sum.Retries)
	}
	for key, r := range rows {
		if !r.OK {
			t.Errorf("item %s row %+v, want ok", key, r)
		}
	}
	if n, distinct := db.count(t, "SELECT count(*) FROM S.t"), db.count(t, "SELECT count(DISTINCT id) FROM S.t"); n != 60 || distinct != 60 {
		t.Errorf("table holds %d rows, %d distinct; want 60", n, distinct)
	}
}

// TestPostgresSQLStates: each SQLSTATE gets the verdict the adapter documents, with
// "SQLSTATE code: message" and the code in the row. Calls without a worker number (outside
// the engine) work on a connection of their own, closed after the call.
func TestPostgresSQLStates(t *testing.T) {
	db := newPGTestDB(t)
	db.exec(t, `CREATE FUNCTION S.throw(code text) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = code, DETAIL = 'code ' || code; END $$`)
	a := db.adapter(t, PostgresConfig{SQL: "SELECT S.throw($1)"})
	for code, want := range map[string]engine.Verdict{
		"40001": engine.Retry, // serialization_failure
		"40P01": engine.Retry, // deadlock_detected
		"53300": engine.Retry, // too_many_connections
		"55P03": engine.Retry, // lock_not_available
		"57P01": engine.Retry, // admin_shutdown
		"57P03": engine.Retry, // cannot_connect_now
		"08006": engine.Retry, // connection_failure
		"23505": engine.Fail,  // unique_violation
		"23503": engine.Fail,  // foreign_key_violation
		"22P02": engine.Fail,  // invalid_text_representation
		"P0001": engine.Fail,  // raise_exception
		"42501": engine.Fail,  // insufficient_privilege
	} {
		out, err := a.Do(context.Background(), engine.Item{Line: code})
		if err != nil {
			t.Errorf("%s: Do error %v, want an outcome", code, err)
			continue
		}
		if out.Verdict != want || out.Message != "SQLSTATE "+code+": boom" || out.Extra["sqlstate"] != code || out.Extra["detail"] != "code "+code {
			t.Errorf("%s: outcome %+v, want %v, message %q, sqlstate and detail", code, out, want, "SQLSTATE "+code+": boom")
		}
	}
	if n := a.Connections(); n != 0 {
		t.Errorf("Connections() = %d after calls without a worker number, want 0", n)
	}
	out, err := db.adapter(t, PostgresConfig{SQL: "SELECT $1::text"}).Do(context.Background(), engine.Item{Line: "x"})
	if err != nil || out.Verdict != engine.OK || string(out.Output) != `{"rows_affected":1}` {
		t.Errorf("SELECT of one row: %+v, %v; want ok, rows_affected 1", out, err)
	}
}

// TestPostgresPermanentErrors: a duplicate key, a bad value, a NULL where none may be and a
// missing field fail their own items at once, with their SQLSTATE and detail; every other
// item is inserted exactly once, whether alone or in chunks whose transaction those items
// rolled back.
func TestPostgresPermanentErrors(t *testing.T) {
	for _, chunk := range []int{1, 10} {
		t.Run("chunk"+strconv.Itoa(chunk), func(t *testing.T) {
			db := newPGTestDB(t)
			db.exec(t, "CREATE TABLE S.t(id bigint PRIMARY KEY, payload jsonb NOT NULL)")
			db.exec(t, `INSERT INTO S.t VALUES (7, '{}')`)
			var in strings.Builder
			for i := range 30 {
				switch i {
				case 15:
					fmt.Fprintf(&in, `{"id":%d}`+"\n", i)
				case 22:
					in.WriteString(`{"id":"x22","payload":{}}` + "\n")
				case 25:
					fmt.Fprintf(&in, `{"id":%d,"payload":null}`+"\n", i)
				default:
					fmt.Fprintf(&in, `{"id":%d,"payload":{"n":%d}}`+"\n", i, i)
				}
			}
			a := db.adapter(t, PostgresConfig{SQL: "INSERT INTO S.t(id, payload) VALUES ($1, $2)", Args: []string{"id", "payload"}})
			sum, rows, _ := runPGEngine(t, a, engine.Config{Settings: engine.Settings{Parallelism: 2}, Chunk: chunk, Retries: 3}, in.String(), true)
			if sum.OK != 26 || sum.Failed != 4 {
				t.Fatalf("Run() = ok %d, failed %d; want 26, 4", sum.OK, sum.Failed)
			}
			for key, want := range map[string]struct{ state, text string }{
				"7":   {"23505", `SQLSTATE 23505: duplicate key value violates unique constraint "t_pkey"`},
				"15":  {"", `adapters: postgres: the item has no field "payload" (for $2)`},
				"x22": {"22P02", `SQLSTATE 22P02: invalid input syntax for type bigint: "x22"`},
				"25":  {"23502", `SQLSTATE 23502: null value in column "payload"`},
			} {
				r := rows[key]
				if r.OK || r.Attempts != 1 || r.SQLState != want.state || !strings.HasPrefix(r.Error, want.text) {
					t.Errorf("item %s row %+v, want failed at once with sqlstate %q, error %q…", key, r, want.state, want.text)
				}
			}
			if r := rows["7"]; !strings.Contains(r.Detail, "(id)=(7)") {
				t.Errorf("item 7 detail %q, want the key", r.Detail)
			}
			if n, distinct := db.count(t, "SELECT count(*) FROM S.t"), db.count(t, "SELECT count(DISTINCT id) FROM S.t"); n != 27 || distinct != 27 {
				t.Errorf("table holds %d rows, %d distinct; want 27 (26 and the one before)", n, distinct)
			}
		})
	}
}

// TestPostgresChunkRerunsWithoutFailedItems: a chunk of 20 with 6 duplicate keys runs again
// without each failed item up to 3 times in a call; the engine retries the rest, and all 14
// good items commit, once.
func TestPostgresChunkRerunsWithoutFailedItems(t *testing.T) {
	db := newPGTestDB(t)
	db.exec(t, "CREATE TABLE S.t(id bigint PRIMARY KEY)")
	db.exec(t, "INSERT INTO S.t SELECT generate_series(0, 5)")
	a := db.adapter(t, PostgresConfig{SQL: "INSERT INTO S.t VALUES ($1)"})
	sum, rows, _ := runPGEngine(t, a, engine.Config{Settings: engine.Settings{Parallelism: 1}, Chunk: 20, Retries: 3}, pgLines(0, 20), false)
	if sum.OK != 14 || sum.Failed != 6 || sum.Calls != 2 {
		t.Fatalf("Run() = ok %d, failed %d, calls %d; want 14, 6, 2 (a retry for the rest)", sum.OK, sum.Failed, sum.Calls)
	}
	for i := range 20 {
		r := rows[strconv.Itoa(i)]
		switch {
		case i < 4 && (r.OK || r.SQLState != "23505" || r.Attempts != 1):
			t.Errorf("item %d row %+v, want failed at the first attempt with 23505", i, r)
		case (i == 4 || i == 5) && (r.OK || r.SQLState != "23505" || r.Attempts != 2):
			t.Errorf("item %d row %+v, want failed at the second attempt with 23505", i, r)
		case i > 5 && (!r.OK || r.Attempts != 2):
			t.Errorf("item %d row %+v, want ok at the second attempt", i, r)
		}
	}
	if n := db.count(t, "SELECT count(*) FROM S.t"); n != 20 {
		t.Errorf("table holds %d rows, want 20", n)
	}
}

// TestPostgresTimeoutReplacesConnection: a call past the engine's timeout fails with the
// engine's timeout message, and the worker's next call gets a fresh connection.
func TestPostgresTimeoutReplacesConnection(t *testing.T) {
	db := newPGTestDB(t)
	a := db.adapter(t, PostgresConfig{SQL: "SELECT pg_sleep(CASE WHEN $1 = 'slow' THEN 5 ELSE 0 END)"})
	sum, rows, _ := runPGEngine(t, a, engine.Config{Settings: engine.Settings{Parallelism: 1}, Timeout: 300 * time.Millisecond}, "slow\nfast\nfast2\n", false)
	if sum.OK != 2 || sum.Failed != 1 {
		t.Fatalf("Run() = ok %d, failed %d; want 2, 1", sum.OK, sum.Failed)
	}
	if r := rows["slow"]; r.OK || r.Error != "timeout after 300ms" {
		t.Errorf("slow row %+v, want the engine's timeout", r)
	}
}

// TestPostgresPasswordNeverShown makes errors happen on every path that could quote the DSN
// (a DSN that does not parse, a refused connection, a server that echoes a setting's value,
// a ${NAME} DSN) and checks that the password, in any spelling, is in none of them.
func TestPostgresPasswordNeverShown(t *testing.T) {
	db := newPGTestDB(t)
	token := pgRandomHex(t, 6) // in every spelling of the password, and nowhere else
	pw := "hunter2/" + token + "@x"
	spellings := []string{token, pw, url.QueryEscape(pw), url.PathEscape(pw), url.UserPassword("u", pw).String()[2:]}
	leaks := func(what, text string) {
		t.Helper()
		for _, s := range spellings {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the password (%q): %s", what, s, text)
			}
		}
	}
	base, err := url.Parse(db.dsn)
	if err != nil || !strings.HasPrefix(base.Scheme, "postgres") {
		t.Fatalf("THROTTLE_TEST_PG %q: this test needs a postgres:// URL", db.dsn)
	}
	withPW := func(host string, query url.Values) string {
		u := *base
		u.User = url.UserPassword(u.User.Username(), pw)
		if host != "" {
			u.Host = host
		}
		q := u.Query()
		for k, v := range query {
			q[k] = v
		}
		u.RawQuery = q.Encode()
		return u.String()
	}

	// A DSN that does not parse.
	_, err = NewPostgres(PostgresConfig{DSN: "postgres://postgres:" + url.PathEscape(pw) + "@127.0.0.1:notaport/test", SQL: "SELECT 1"})
	if err == nil {
		t.Fatal("NewPostgres took a DSN with port notaport")
	}
	leaks("a DSN that does not parse", err.Error())

	// Nothing listens on port 1: the startup check and the calls fail.
	refused := db.adapter(t, PostgresConfig{DSN: withPW("127.0.0.1:1", nil), SQL: "SELECT $1"})
	err = refused.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot connect") {
		t.Fatalf("Check on a closed port: %v, want cannot connect", err)
	}
	leaks("Check on a closed port", err.Error())
	_, _, text := runPGEngine(t, refused, engine.Config{Settings: engine.Settings{Parallelism: 2}, Chunk: 2, Retries: 1}, pgLines(0, 4), false)
	if !strings.Contains(text, "connect") {
		t.Errorf("rows %s, want connection errors", text)
	}
	leaks("rows of a closed port", text)

	// The server quotes a bad setting's value: here it is the password.
	echo := db.adapter(t, PostgresConfig{DSN: withPW("", url.Values{"statement_timeout": {pw}}), SQL: "SELECT $1"})
	err = echo.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "REDACTED") {
		t.Fatalf("Check with the password as statement_timeout: %v, want the echoed value redacted", err)
	}
	leaks("Check of an echoed setting", err.Error())
	sum, _, text := runPGEngine(t, echo, engine.Config{Settings: engine.Settings{Parallelism: 1}, Retries: 2}, pgLines(0, 3), false)
	if sum.Failed != 3 || sum.Calls != 3 || !strings.Contains(text, "SQLSTATE 22023") || !strings.Contains(text, "REDACTED") {
		t.Errorf("rows %s (%d calls), want 3 failed at once with SQLSTATE 22023 and the value redacted", text, sum.Calls)
	}
	leaks("rows of an echoed setting", text)

	// The same through ${NAME}: the variable's value is the whole DSN.
	env := func(name string) (string, bool) {
		if name == "PGURL" {
			return withPW("127.0.0.1:1", nil), true
		}
		return "", false
	}
	viaEnv := db.adapter(t, PostgresConfig{DSN: "${PGURL}", SQL: "SELECT $1", LookupEnv: env})
	err = viaEnv.Check(context.Background())
	if err == nil {
		t.Fatal("Check of ${PGURL} on a closed port succeeded")
	}
	leaks("Check of ${PGURL}", err.Error())
	if got := viaEnv.Target(); strings.Contains(got, pw) || !strings.HasPrefix(got, "postgres://") {
		t.Errorf("Target() = %q, want the database without the password", got)
	}
}

// TestPostgresDSNReadAtConnect: ${NAME} is read when a connection opens, not once at start:
// a worker connecting after the variable changed uses the new value. The DSN's own
// application_name is kept when the config sets none.
func TestPostgresDSNReadAtConnect(t *testing.T) {
	db := newPGTestDB(t)
	var mu sync.Mutex
	dsn := db.dsn
	env := func(name string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		return dsn, name == "PGURL"
	}
	p, err := NewPostgres(PostgresConfig{DSN: "${PGURL}", SQL: "SELECT $1", LookupEnv: env})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := NewPostgres(PostgresConfig{DSN: "${NOT_SET_ANYWHERE}", SQL: "SELECT $1", LookupEnv: env}); err == nil || !strings.Contains(err.Error(), "NOT_SET_ANYWHERE is not set") {
		t.Errorf("NewPostgres with an unset variable: %v, want an error naming it", err)
	}
	u, _ := url.Parse(db.dsn)
	q := u.Query()
	q.Set("application_name", db.app)
	u.RawQuery = q.Encode()
	mu.Lock()
	dsn = u.String() // as if the secret were rotated after the start
	mu.Unlock()
	sum, _, _ := runPGEngine(t, p, engine.Config{Settings: engine.Settings{Parallelism: 1}}, "x\n", false)
	if sum.OK != 1 {
		t.Fatalf("Run() ok %d, want 1", sum.OK)
	}
	if n := db.connections(t); n != 1 {
		t.Errorf("%d connections named %s after the variable changed, want 1", n, db.app)
	}
}

// TestPostgresCheck: the startup check fails on what would fail every item.
func TestPostgresCheck(t *testing.T) {
	db := newPGTestDB(t)
	db.exec(t, "CREATE TABLE S.t(id bigint, payload text)")
	for _, tc := range []struct {
		sql  string
		args []string
		want string
	}{
		{"INSERT INTO S.t VALUES ($1, $2)", []string{"id", "payload"}, ""},
		{"INSERT INTO S.t VALUES ($1)", nil, ""},
		{"INSERT INTO S.t VALUES ($1, $2)", nil, "takes 2 parameters but each item gives 1 (the input line as $1)"},
		{"INSERT INTO S.t VALUES ($1)", []string{"id", "payload"}, "takes 1 parameter but each item gives 2 (fields id, payload)"},
		{"INSERT INTO S.nope VALUES ($1)", nil, "SQLSTATE 42P01"},
		{"INSRT INTO S.t VALUES ($1)", nil, "SQLSTATE 42601"},
	} {
		err := db.adapter(t, PostgresConfig{SQL: tc.sql, Args: tc.args}).Check(context.Background())
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%q, %v) = %v, want nil", tc.sql, tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Check(%q, %v) = %v, want an error with %q", tc.sql, tc.args, err, tc.want)
		case strings.Contains(tc.want, "takes") && !errors.Is(err, ErrParamCount):
			t.Errorf("Check(%q, %v) = %v, want ErrParamCount", tc.sql, tc.args, err)
		}
	}
	if n := db.waitConnections(t, 0); n != 0 {
		t.Errorf("%d connections left open by Check, want 0", n)
	}
}

// TestPostgresArgs: how JSON values become the statement's arguments, without a database.
func TestPostgresArgs(t *testing.T) {
	p, err := NewPostgres(PostgresConfig{DSN: "postgres://u@127.0.0.1/db", SQL: "SELECT $1, $2, $3, $4, $5, $6", Args: []string{"s", "n", "b", "o", "a", "z"}})
	if err != nil {
		t.Fatal(err)
	}
	it := engine.Item{JSON: true, Fields: map[string]any{
		"s": "text", "n": json.Number("12345678901234567890.5"), "b": true,
		"o": map[string]any{"k": []any{1.0, "x"}}, "a": []any{}, "z": nil,
	}}
	got, err := p.argsOf(it)
	want := []any{"text", "12345678901234567890.5", "true", `{"k":[1,"x"]}`, `[]`, nil}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) || got[5] != nil {
		t.Errorf("argsOf = %#v, %v; want %#v", got, err, want)
	}
	if _, err := p.argsOf(engine.Item{Line: "plain"}); err == nil || !strings.Contains(err.Error(), "JSON Lines") {
		t.Errorf("argsOf(a plain line) error %v, want one about JSON Lines input", err)
	}
	if _, err := NewPostgres(PostgresConfig{DSN: "postgres://u@h/db", SQL: "SELECT $1", Args: []string{"id", "id"}}); err == nil {
		t.Error("NewPostgres took the field id twice")
	}
	if _, err := NewPostgres(PostgresConfig{DSN: "postgres://u@h/{item}", SQL: "SELECT $1"}); err == nil {
		t.Error("NewPostgres took {item} in a DSN")
	}
}
