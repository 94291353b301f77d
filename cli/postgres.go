package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/adapters"
)

func init() { registerAdapter(30, newPostgresCmd) }

// postgresFlags are the flags of the postgres adapter.
type postgresFlags struct {
	dsn  string
	sql  string
	args []string
}

func (f *postgresFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.dsn, "dsn", "", "connection string (URL or key=value); ${NAME} reads environment variable NAME when connecting, e.g. '${DATABASE_URL}' (required)")
	fs.StringVar(&f.sql, "sql", "", "the statement run for each item, with $1, $2, … (required)")
	fs.StringSliceVar(&f.args, "args", nil, "JSONL fields passed as $1, $2, … in order, e.g. id,payload (default: $1 is the input line)")
}

func (f *postgresFlags) config(env *Env) (adapters.PostgresConfig, error) {
	if strings.TrimSpace(f.dsn) == "" {
		return adapters.PostgresConfig{}, usageError("postgres needs --dsn, e.g. --dsn '${DATABASE_URL}' (read when connecting, so the password stays out of argv)")
	}
	if strings.TrimSpace(f.sql) == "" {
		return adapters.PostgresConfig{}, usageError("postgres needs --sql, e.g. --sql 'INSERT INTO events(id) VALUES ($1) ON CONFLICT DO NOTHING'")
	}
	args := make([]string, len(f.args))
	for i, a := range f.args {
		args[i] = strings.TrimSpace(a)
	}
	return adapters.PostgresConfig{DSN: f.dsn, SQL: f.sql, Args: args, LookupEnv: env.LookupEnv}, nil
}

// literalPassword reports whether a --dsn holds a password as it is, not through ${NAME}:
// anyone on the machine can read it in ps.
func literalPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		pw, ok := u.User.Password()
		return ok && pw != "" && !strings.Contains(pw, "${")
	}
	_, rest, ok := strings.Cut(dsn, "password=")
	return ok && !strings.HasPrefix(rest, "${") && !strings.HasPrefix(rest, "'${")
}

func newPostgresCmd(env *Env, act action) *cobra.Command {
	pf := &postgresFlags{}
	cmd := &cobra.Command{
		Use:   "postgres",
		Short: "Run one SQL statement per item against PostgreSQL, one connection per worker",
		Long: `Run one SQL statement per item against PostgreSQL. Each worker holds one
connection, so --parallelism is the number of connections the database sees:
raising it opens connections as workers start, lowering it closes them (a busy
one right after its statement). Count connections before CPUs: if Postgres takes
80 safe write connections and the application holds 20 of them, a backfill has
room for a few dozen at most; start well below that and raise after clean logs.
The connections carry application_name=throttle (unless the DSN sets one):
  SELECT count(*) FROM pg_stat_activity WHERE application_name = 'throttle'
counts them.

$1 is the input line; with JSONL input, --args id,payload passes those fields as
$1, $2 (each sent as text and parsed by PostgreSQL as the parameter's type; JSON
null is NULL, an object is its JSON text). An item without a field fails alone.

With --chunk N a worker sends N statements as one batch (one round trip) in one
transaction: it commits whole or not at all. When one item's statement fails
(a constraint violation, a bad value), that item fails and the rest of its
chunk runs again at once without it.

Serialization failures (40001), deadlocks (40P01), lock timeouts (55P03), too
many connections (53300), shutdowns (57P01, 57P03) and lost connections are
retried; other SQL errors fail the item with "SQLSTATE code: message", and the
row carries sqlstate and detail. An ok row's output is {"rows_affected": n}.
A statement that may run twice (a retry after a lost COMMIT) should be
idempotent: ON CONFLICT DO NOTHING, or an UPDATE that sets values.

Before any item, throttle connects once and prepares the statement: a DSN that
does not connect, a syntax error, a missing table or a wrong number of
parameters exits 2 with nothing run. The password never appears in rows,
messages or logs.`,
		Example: `  # A 100,000-row load. Postgres takes about 80 safe write connections and the app
  # holds 20 of them: start at 8 connections, never past 40, raise after clean logs.
  # The password stays off the command line:
  export DATABASE_URL='postgres://loader:…@db.internal:5432/app'
  throttle run postgres --dsn '${DATABASE_URL}' --input events.jsonl \
      --sql 'INSERT INTO events(id, payload) VALUES ($1, $2)
             ON CONFLICT DO NOTHING' \
      --args id,payload --chunk 1000 --parallelism 8 --max-parallelism 40

  # One id per line, gently, while the database serves traffic:
  throttle run postgres --dsn '${DATABASE_URL}' --input ids.txt \
      --sql "UPDATE accounts SET plan = 'v2' WHERE id = \$1 AND plan = 'v1'" \
      --parallelism 4 --rate 200/s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := pf.config(env)
			if err == nil {
				err = preflightAdapter(cmd.Context(), env, cfg.EnvUses(), "", "")
			}
			if err != nil {
				return err
			}
			a, err := adapters.NewPostgres(cfg)
			if err != nil {
				return usageError("%v", err)
			}
			defer func() { _ = a.Close() }() // each row was committed (checked) in its call; this closes the pool
			if literalPassword(pf.dsn) {
				fmt.Fprintln(env.Stderr, "throttle: warning: the password in --dsn can be read by anyone on this machine (ps); export it and pass --dsn '${DATABASE_URL}'")
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if err := a.Check(ctx); err != nil {
				if errors.Is(err, adapters.ErrParamCount) {
					return usageError("%v: --args names the JSONL fields passed as $1, $2, …", err)
				}
				return usageError("%v", err)
			}
			return act(cmd, job{adapter: a, name: "postgres", target: a.Target(), connections: a.Connections})
		},
	}
	pf.register(cmd)
	return cmd
}
