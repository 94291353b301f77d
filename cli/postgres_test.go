package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// pgTest is a test's view of THROTTLE_TEST_PG: a schema of its own (dropped at the end) and
// a DSN with a password and an application_name of its own (trust auth takes any password).
type pgTest struct {
	conn     *pgx.Conn
	schema   string // quoted
	app      string
	password string
	dsn      string // with password and application_name
}

// newPGTest connects to THROTTLE_TEST_PG, or skips the test without it (fails under CI=true).
func newPGTest(t *testing.T) *pgTest {
	t.Helper()
	base := os.Getenv("THROTTLE_TEST_PG")
	if base == "" {
		msg := "THROTTLE_TEST_PG is not set: the postgres tests need a real database, e.g. " +
			"THROTTLE_TEST_PG='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'"
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	u, err := url.Parse(base)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Fatalf("THROTTLE_TEST_PG %q: these tests need a postgres:// URL", base)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to THROTTLE_TEST_PG: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	p := &pgTest{conn: conn, schema: pgx.Identifier{"throttle_cli_" + id}.Sanitize(), app: "throttle_cli_" + id, password: "pw-" + id + "-secret"}
	u.User = url.UserPassword(u.User.Username(), p.password)
	q := u.Query()
	q.Set("application_name", p.app)
	u.RawQuery = q.Encode()
	p.dsn = u.String()
	p.exec(t, "CREATE SCHEMA "+p.schema)
	t.Cleanup(func() {
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+p.schema+" CASCADE"); err != nil {
			t.Errorf("dropping the test schema: %v", err)
		}
		conn.Close(ctx)
	})
	return p
}

// in replaces "S." with the test's schema.
func (p *pgTest) in(sql string) string { return strings.ReplaceAll(sql, "S.", p.schema+".") }

func (p *pgTest) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := p.conn.Exec(context.Background(), p.in(sql)); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (p *pgTest) count(t *testing.T, sql string) int64 {
	t.Helper()
	var n int64
	if err := p.conn.QueryRow(context.Background(), p.in(sql)).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// noPassword fails the test if the password shows in any of texts.
func (p *pgTest) noPassword(t *testing.T, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, p.password) {
			t.Errorf("%s shows the password: %s", what, s)
		}
	}
}

// TestRunPostgres runs the command line: JSONL events loaded in chunks with the DSN
// from ${DATABASE_URL}; every item gets an ok row with rows_affected, the table holds each
// once, and a second run inserts nothing (ON CONFLICT DO NOTHING) yet succeeds.
func TestRunPostgres(t *testing.T) {
	db := newPGTest(t)
	db.exec(t, "CREATE TABLE S.events(id bigint PRIMARY KEY, payload jsonb NOT NULL)")
	var in strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&in, `{"id":%d,"payload":{"kind":"click","n":%d}}`+"\n", i, i)
	}
	input := writeFile(t, "events.jsonl", in.String())
	env := map[string]string{"DATABASE_URL": db.dsn}
	for pass, affected := range []string{`{"rows_affected":1}`, `{"rows_affected":0}`} {
		out := outPath(t)
		res := run(t, invocation{args: []string{"run", "postgres", "--dsn", "${DATABASE_URL}",
			"--sql", db.in("INSERT INTO S.events(id, payload) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
			"--args", "id,payload", "--chunk", "100", "--parallelism", "4", "--input", input, "--out", out}, env: env})
		if res.code != 0 {
			t.Fatalf("pass %d: exit %d, stderr:\n%s", pass+1, res.code, res.stderr)
		}
		rows := readRows(t, out)
		if len(rows) != 3000 {
			t.Fatalf("pass %d: %d rows, want 3000", pass+1, len(rows))
		}
		for _, r := range rows {
			if !*r.OK || string(r.Output) != affected {
				t.Fatalf("pass %d: row %+v, want ok with output %s", pass+1, r, affected)
			}
		}
		raw, _ := os.ReadFile(out)
		db.noPassword(t, "a run", res.stdout, res.stderr, string(raw))
		if strings.Contains(res.stderr, "warning") {
			t.Errorf("pass %d: a warning for a DSN read from the environment:\n%s", pass+1, res.stderr)
		}
	}
	if n, distinct := db.count(t, "SELECT count(*) FROM S.events"), db.count(t, "SELECT count(DISTINCT id) FROM S.events"); n != 3000 || distinct != 3000 {
		t.Errorf("table holds %d rows, %d distinct ids; want 3000", n, distinct)
	}
	var left int64
	if !waitFor(2e9, func() bool {
		left = db.count(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+db.app+"'")
		return left == 0
	}) {
		t.Errorf("%d connections left open after the run", left)
	}
}

// TestRunPostgresRefusedAtStartup: what would fail every item exits 2 before any item is
// called, without a results file and without the password.
func TestRunPostgresRefusedAtStartup(t *testing.T) {
	db := newPGTest(t)
	db.exec(t, "CREATE TABLE S.t(id bigint)")
	input := writeItems(t, 3)
	closedPort := strings.Replace(db.dsn, "@"+mustHost(t, db.dsn), "@127.0.0.1:1", 1)
	for _, tc := range []struct {
		name, dsn, sql string
		extra          []string
		want           string
	}{
		{"no dsn", "", "INSERT INTO S.t VALUES ($1)", nil, "postgres needs --dsn"},
		{"no sql", "${DATABASE_URL}", "", nil, "postgres needs --sql"},
		{"unset variable", "${NOT_SET_HERE}", "INSERT INTO S.t VALUES ($1)", nil, "--dsn: NOT_SET_HERE is not set in the environment"},
		{"unreachable", closedPort, "INSERT INTO S.t VALUES ($1)", nil, "cannot connect to postgres://"},
		{"syntax error", "${DATABASE_URL}", "INSRT INTO S.t VALUES ($1)", nil, "SQLSTATE 42601"},
		{"missing table", "${DATABASE_URL}", "INSERT INTO S.nope VALUES ($1)", nil, "SQLSTATE 42P01"},
		{"parameters", "${DATABASE_URL}", "INSERT INTO S.t VALUES ($1)", []string{"--args", "id,payload"}, "takes 1 parameter but each item gives 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := outPath(t)
			args := append([]string{"run", "postgres", "--input", input, "--out", out}, tc.extra...)
			if tc.dsn != "" {
				args = append(args, "--dsn", tc.dsn)
			}
			if tc.sql != "" {
				args = append(args, "--sql", db.in(tc.sql))
			}
			res := run(t, invocation{args: args, env: map[string]string{"DATABASE_URL": db.dsn}})
			if res.code != 2 || !strings.Contains(res.stderr, tc.want) || !strings.Contains(res.stderr, "nothing was called") {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", res.code, res.stderr, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a results file was made (%v), want none: nothing was called", err)
			}
			db.noPassword(t, "a refused start", res.stdout, res.stderr)
		})
	}
	if n := db.count(t, "SELECT count(*) FROM S.t"); n != 0 {
		t.Errorf("%d rows inserted by refused runs", n)
	}
}

// TestRunPostgresWarnsOfLiteralPassword: a password typed into --dsn works, is never shown,
// and the run says it is readable in ps.
func TestRunPostgresWarnsOfLiteralPassword(t *testing.T) {
	db := newPGTest(t)
	db.exec(t, "CREATE TABLE S.t(id bigint)")
	out := outPath(t)
	res := run(t, invocation{args: []string{"run", "postgres", "--dsn", db.dsn, "--sql", db.in("INSERT INTO S.t VALUES ($1)"),
		"--input", writeItems(t, 5), "--out", out}})
	if res.code != 0 || !strings.Contains(res.stderr, "warning: the password in --dsn can be read") {
		t.Errorf("exit %d, stderr:\n%s\nwant 0 and a warning about the password in argv", res.code, res.stderr)
	}
	raw, _ := os.ReadFile(out)
	db.noPassword(t, "a run with a literal DSN", res.stdout, res.stderr, string(raw))
	if n := db.count(t, "SELECT count(*) FROM S.t"); n != 5 {
		t.Errorf("table holds %d rows, want 5", n)
	}
}

// mustHost returns the host:port of a DSN URL.
func mustHost(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
