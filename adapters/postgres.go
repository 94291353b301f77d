package adapters

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/redact"
)

// DefaultApplicationName is the application_name a [Postgres] adapter's connections carry
// unless [PostgresConfig.ApplicationName] or the DSN says otherwise, so that a DBA can count
// them in pg_stat_activity.
const DefaultApplicationName = "throttle"

// pgCloseTimeout bounds the goodbye of a connection being closed: a dead link must not hold
// up a resize or the end of a run.
const pgCloseTimeout = 2 * time.Second

// pgRetireGrace is how long the idle connection of a worker above a lowered parallelism
// stays open: the engine may have started that worker's call just before the change, and
// the call must find its connection rather than open one more.
const pgRetireGrace = 200 * time.Millisecond

// pgCheckTimeout bounds [Postgres.Check] when the DSN sets no connect_timeout.
const pgCheckTimeout = 10 * time.Second

// pgMaxReruns is how many times one call runs a chunk again without the items whose
// statement failed. Each rerun costs a round trip, so a chunk of a thousand bad rows must not
// take a thousand; the items still pending after that are retried by the engine instead.
const pgMaxReruns = 3

// PostgresConfig configures a [Postgres] adapter. DSN and SQL are required.
type PostgresConfig struct {
	// DSN is the connection string, a URL (postgres://user:pass@host:5432/db?sslmode=…) or
	// keyword/value pairs (host=… dbname=…). ${NAME} in it is the environment variable NAME,
	// read each time a connection is opened, so --dsn '${DATABASE_URL}' keeps the password out
	// of argv and a rotated password is picked up by the next connection.
	DSN string
	// SQL is the statement run once per item, with the item's arguments as $1, $2, ….
	SQL string
	// Args names the JSON Lines fields passed as $1, $2, … in order; empty means one
	// argument, the item's line.
	Args []string
	// ApplicationName overrides the DSN's application_name; when both are empty the
	// connections carry [DefaultApplicationName].
	ApplicationName string
	// LookupEnv reads ${NAME} in DSN; nil means [os.LookupEnv].
	LookupEnv func(string) (string, bool)
}

// EnvUses lists every ${NAME} that the DSN reads when a connection is opened, so that a
// caller can check them all before connecting. They are never quoted with the DSN, which may
// hold a literal password.
func (c PostgresConfig) EnvUses() []EnvUse { return envUses("dsn", c.DSN, "") }

// Postgres is the postgres adapter: it runs one SQL statement per item over one connection
// per engine worker, so that the run's parallelism is the number of connections the database
// sees. It implements [engine.Resizer]: Resize(n) closes the connections of workers n and
// above (an idle one within [pgRetireGrace], a busy one as soon as its call returns), and a
// worker opens its connection on its first call. It is safe for concurrent use.
//
// With [engine.Config.Chunk] above 1 the engine hands it whole chunks ([engine.Batcher]): a
// chunk is sent as one [pgx.Batch], one round trip, whose statements run in the one implicit
// transaction of the pipeline, so that it commits whole or not at all. When the statement
// of one item fails with a data error (a constraint violation, a bad value), that item fails
// with its SQLSTATE, and the rest of the chunk, rolled back with it, runs again at once
// without it, up to [pgMaxReruns] times a call; the items still pending after that are
// retried by the engine as a chunk. An item whose arguments cannot be built (a missing
// field) fails on its own, before anything is sent, and the rest of its chunk runs.
//
// Serialization failures, deadlocks, lock timeouts, too many connections, shutdowns and lost
// connections are retried: an [engine.Outcome] with [engine.Retry] when the server answered,
// an error otherwise. Other SQL errors fail the item with "SQLSTATE code: message" and add
// sqlstate and, when the server sent them, detail and hint to the row. The adapter never
// lowers the parallelism by itself, even at "too many connections": that is the operator's
// call, and the error says so on the screen.
//
// No text it returns (messages, row fields, errors) holds the DSN's password or the value
// of a ${NAME} in it, in any spelling a DSN or an error may use: they are replaced by
// "REDACTED", however short the password is.
type Postgres struct {
	dsn       *Template
	sql       string
	args      []string
	appName   string
	lookupEnv func(string) (string, bool)
	secrets   redact.Set // every secret the DSN held, as it was read each time
	target    string

	mu     sync.Mutex // guards everything below and the conn and busy of every slot
	slots  []*pgSlot  // by worker number
	limit  int        // the last Resize; -1 before the first
	open   int        // connections open, temporary ones included
	closed bool
	closes sync.WaitGroup // connections being closed in the background
}

// pgSlot is one worker's connection. Only the worker that marked it busy uses conn.
type pgSlot struct {
	id   int // -1: a temporary slot for a call without a worker number
	conn *pgx.Conn
	busy bool
}

var (
	_ engine.Adapter = (*Postgres)(nil)
	_ engine.Batcher = (*Postgres)(nil)
	_ engine.Resizer = (*Postgres)(nil)
	_ io.Closer      = (*Postgres)(nil)
)

// NewPostgres checks cfg and returns an adapter for it; it opens no connection (see
// [Postgres.Check]). It fails on an empty SQL, an empty or repeated Args name, a DSN that
// cannot be expanded (an unset variable, {item} in it) or parsed. Its errors never hold the
// password.
func NewPostgres(cfg PostgresConfig) (*Postgres, error) {
	p := &Postgres{sql: strings.TrimSpace(cfg.SQL), args: cfg.Args, appName: cfg.ApplicationName, lookupEnv: cfg.LookupEnv, limit: -1}
	if p.sql == "" {
		return nil, errors.New("adapters: postgres: the SQL statement is empty")
	}
	for i, name := range p.args {
		if name == "" {
			return nil, fmt.Errorf("adapters: postgres: argument $%d has an empty field name", i+1)
		}
		if slices.Index(p.args, name) != i {
			// Probably a typo; a statement that needs a field twice can say $1 twice.
			return nil, fmt.Errorf("adapters: postgres: field %q is named twice in the arguments", name)
		}
	}
	if strings.TrimSpace(cfg.DSN) == "" {
		return nil, errors.New("adapters: postgres: the DSN is empty")
	}
	t, err := parseTemplate(cfg.DSN, false)
	if err != nil {
		// The template's errors quote positions, never the text.
		return nil, fmt.Errorf("adapters: postgres: dsn: %w", err)
	}
	if t.PerItem() || t.Batch() {
		return nil, errors.New("adapters: postgres: dsn: {item}, {.field} and {items} have no meaning in a DSN; only ${NAME} is expanded")
	}
	p.dsn = t
	cc, err := p.config()
	if err != nil {
		return nil, err
	}
	p.target = pgTarget(cc)
	return p, nil
}

// config expands the DSN and parses it into a connection's configuration, remembering the
// secrets it held for scrubbing.
func (p *Postgres) config() (*pgx.ConnConfig, error) {
	var b strings.Builder
	var vals []string
	if err := p.dsn.expand(&b, engine.Item{}, p.lookupEnv, &vals); err != nil {
		// An unset variable: the error names it, never a value.
		return nil, engine.Permanent(errors.New("adapters: postgres: dsn: " + strings.TrimPrefix(err.Error(), "adapters: ")))
	}
	dsn := b.String()
	cc, err := pgx.ParseConfig(dsn)
	secrets := vals
	if err == nil {
		secrets = append(secrets, cc.Password)
		if pw, ok := cc.RuntimeParams["sslpassword"]; ok {
			secrets = append(secrets, pw)
		}
	} else if pw := pgGuessPassword(dsn); pw != "" {
		// The DSN did not parse, so it is unclear where its password ends; pgconn redacts
		// its own text, and this covers the rest of ours.
		secrets = append(secrets, pw)
	}
	p.secrets.Add(secrets...)
	if err != nil {
		return nil, engine.Permanent(fmt.Errorf("adapters: postgres: dsn: %s", p.scrub(err.Error())))
	}
	if p.appName != "" {
		cc.RuntimeParams["application_name"] = p.appName
	} else if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = DefaultApplicationName
	}
	return cc, nil
}

// pgGuessPassword returns what follows "user:" in the userinfo of a DSN URL that did not parse.
func pgGuessPassword(dsn string) string {
	_, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return ""
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// scrub replaces every secret seen in s, in every spelling (a DSN URL percent-encodes a
// password, a keyword/value DSN backslash-escapes it), with "REDACTED".
func (p *Postgres) scrub(s string) string { return p.secrets.String(s) }

// pgTarget names the database without the password: postgres://user@host:port/db.
func pgTarget(cc *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", User: url.User(cc.User), Host: net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), Path: "/" + cc.Database}
	if strings.HasPrefix(cc.Host, "/") {
		u.Host = "" // a Unix socket directory
		u.RawQuery = "host=" + url.QueryEscape(cc.Host)
	}
	return u.String()
}

// Target names the database for logs and recordings: postgres://user@host:port/db, without
// the password.
func (p *Postgres) Target() string { return p.target }

// ErrParamCount is wrapped by [Postgres.Check]'s error when the statement takes more or fewer
// parameters than each item gives.
var ErrParamCount = errors.New("wrong number of arguments")

// Check connects once, prepares the statement and compares the parameters it takes with the
// arguments each item will give, so that a wrong DSN, an unreachable database, a syntax
// error or a missing table fail the run before any item is called. ctx bounds it; without a
// deadline, the DSN's connect_timeout or 10 s does. Its errors never hold the password.
func (p *Postgres) Check(ctx context.Context) error {
	cc, err := p.config()
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		d := cmp.Or(cc.ConnectTimeout, pgCheckTimeout)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("adapters: postgres: cannot connect to %s: %s", p.target, p.connectText(ctx, err))
	}
	defer p.closeNow(conn)
	sd, err := conn.PgConn().Prepare(ctx, "", p.sql, nil)
	if err != nil {
		return fmt.Errorf("adapters: postgres: the statement does not prepare: %s", p.errText(err))
	}
	if want := p.argCount(); len(sd.ParamOIDs) != want {
		given := "the input line as $1"
		if len(p.args) > 0 {
			given = "fields " + strings.Join(p.args, ", ")
		}
		return fmt.Errorf("adapters: postgres: %w: the statement takes %s but each item gives %d (%s)",
			ErrParamCount, pgPlural(len(sd.ParamOIDs), "parameter"), want, given)
	}
	return nil
}

// connectText is the scrubbed text of a failed connection attempt: "SQLSTATE code: message"
// when the server refused it, the deadline when it passed first, else pgconn's account
// (which names the address it tried).
func (p *Postgres) connectText(ctx context.Context, err error) string {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		return p.pgText(pe)
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return shorten(p.scrub(pgOneLine(fmt.Sprintf("%v (%v)", ctx.Err(), err))))
	}
	return shorten(p.scrub(pgOneLine(err.Error())))
}

// pgOneLine joins the lines of pgconn's account of a connection attempt, one per address and
// TLS mode tried, into one line for a row or a progress line, dropping repeated lines.
func pgOneLine(s string) string {
	if !strings.Contains(s, "\n") {
		return s
	}
	var parts []string
	for l := range strings.Lines(s) {
		l = strings.TrimSpace(l)
		if l != "" && !slices.Contains(parts, l) {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

// pgPlural is "1 parameter", "2 parameters".
func pgPlural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func (p *Postgres) argCount() int { return max(len(p.args), 1) }

// Connections returns the number of connections open now: those of the workers, and the
// one of a call without a worker number while it runs.
func (p *Postgres) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// Resize closes the connections of workers n and above: the idle ones after
// [pgRetireGrace], a busy one when its call returns. Raising n opens nothing: each worker
// connects on its first call.
func (p *Postgres) Resize(n int) {
	p.mu.Lock()
	p.limit = n
	p.mu.Unlock()
	time.AfterFunc(pgRetireGrace, p.closeRetired)
}

// closeRetired closes the idle connections of the workers at or above the limit.
func (p *Postgres) closeRetired() {
	p.mu.Lock()
	var idle []*pgx.Conn
	if p.limit >= 0 {
		idle = p.takeIdleLocked(p.limit)
	}
	p.mu.Unlock()
	for _, c := range idle {
		p.closeLater(c)
	}
}

// takeIdleLocked takes the idle connections of the workers from on, for the caller to close.
// It requires p.mu.
func (p *Postgres) takeIdleLocked(from int) []*pgx.Conn {
	var idle []*pgx.Conn
	for _, s := range p.slots[min(from, len(p.slots)):] {
		if !s.busy && s.conn != nil {
			idle = append(idle, s.conn)
			s.conn = nil
			p.open--
		}
	}
	return idle
}

// Close closes every connection and waits until they are closed. A call still running keeps
// its connection until it returns; a later call fails.
func (p *Postgres) Close() error {
	p.mu.Lock()
	p.closed = true
	idle := p.takeIdleLocked(0)
	p.mu.Unlock()
	for _, c := range idle {
		p.closeLater(c)
	}
	p.closes.Wait()
	return nil
}

// closeLater closes c in the background: a slow goodbye must not hold up the engine's
// Resize or a worker.
func (p *Postgres) closeLater(c *pgx.Conn) {
	p.closes.Add(1)
	go func() {
		defer p.closes.Done()
		p.closeNow(c)
	}()
}

func (p *Postgres) closeNow(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), pgCloseTimeout)
	defer cancel()
	_ = c.Close(ctx) // the server drops the session either way
}

// acquire returns the slot of the calling worker with its connection open, marked busy.
func (p *Postgres) acquire(ctx context.Context) (*pgSlot, error) {
	id, ok := engine.WorkerOf(ctx)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, engine.Permanent(errors.New("adapters: postgres: the adapter is closed"))
	}
	s := &pgSlot{id: -1}
	if ok && id >= 0 {
		for len(p.slots) <= id {
			p.slots = append(p.slots, &pgSlot{id: len(p.slots)})
		}
		if !p.slots[id].busy { // busy: two calls claim one worker; the second gets its own
			s = p.slots[id]
		}
	}
	s.busy = true
	p.mu.Unlock()
	if s.conn != nil {
		return s, nil
	}
	conn, err := p.connect(ctx)
	if err != nil {
		p.release(s, false)
		return nil, err
	}
	p.mu.Lock()
	s.conn = conn
	p.open++
	p.mu.Unlock()
	return s, nil
}

// release ends a call on s; broken says its connection can no longer be used.
func (p *Postgres) release(s *pgSlot, broken bool) {
	p.mu.Lock()
	s.busy = false
	var c *pgx.Conn
	if s.conn != nil && (broken || s.conn.IsClosed() || s.id < 0 || p.closed || p.limit >= 0 && s.id >= p.limit) {
		c = s.conn
		s.conn = nil
		p.open--
	}
	p.mu.Unlock()
	if c != nil {
		p.closeLater(c)
	}
}

// connect opens a connection for a worker. No answer (the server down, a timeout) and the
// answers worth retrying (too many connections, starting up) may pass; any other answer (a
// refused login, a missing database, a bad setting in the DSN) is permanent.
func (p *Postgres) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := p.config()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		return conn, nil
	}
	msg := "adapters: postgres: connect: " + p.connectText(ctx, err)
	if ctx.Err() != nil {
		return nil, &redactedError{msg: msg, cause: ctx.Err()}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !pgRetrySQLStates[pe.Code] && pgClass(pe.Code) != "08" {
		return nil, engine.Permanent(errors.New(msg))
	}
	return nil, errors.New(msg)
}

// Do runs the statement for one item. See [Postgres] for what it returns.
func (p *Postgres) Do(ctx context.Context, it engine.Item) (engine.Outcome, error) {
	args, err := p.argsOf(it)
	if err != nil {
		return engine.Outcome{}, engine.Permanent(err)
	}
	outs, err := p.run(ctx, []engine.Item{it}, [][]any{args})
	if err != nil {
		return engine.Outcome{}, err
	}
	return outs[0], nil
}

// DoBatch runs the statement for each item of a chunk in one transaction. See [Postgres].
func (p *Postgres) DoBatch(ctx context.Context, items []engine.Item) ([]engine.Outcome, error) {
	outs := make([]engine.Outcome, len(items))
	var sendItems []engine.Item
	var sendArgs [][]any
	var where []int // index in items of each item sent
	for i, it := range items {
		a, err := p.argsOf(it)
		if err != nil {
			outs[i] = engine.Outcome{Verdict: engine.Fail, Message: err.Error()}
			continue
		}
		sendItems = append(sendItems, it)
		sendArgs = append(sendArgs, a)
		where = append(where, i)
	}
	if len(sendItems) == 0 {
		return outs, nil
	}
	sent, err := p.run(ctx, sendItems, sendArgs)
	switch {
	case err == nil:
		for k, i := range where {
			outs[i] = sent[k]
		}
	case len(where) == len(items):
		return nil, err
	default:
		// Some items failed on their own, and their rows must stay: the others get the
		// error as their outcome.
		v := engine.Retry
		if engine.IsPermanent(err) {
			v = engine.Fail
		}
		for _, i := range where {
			outs[i] = engine.Outcome{Verdict: v, Message: err.Error()}
		}
	}
	return outs, nil
}

// errPGNotJSONL is why a plain line cannot give named arguments.
var errPGNotJSONL = errors.New("is not a JSON object; naming fields as arguments needs JSON Lines input (a .jsonl file)")

// argsOf returns the statement's arguments for it: its line, or the named fields. Each is
// sent as text, which PostgreSQL parses as the parameter's type, as psql would: a string as
// it is, a number, true or false as its JSON text, an object or array as its JSON text (for
// json and jsonb), null as NULL.
func (p *Postgres) argsOf(it engine.Item) ([]any, error) {
	if len(p.args) == 0 {
		return []any{it.Line}, nil
	}
	if it.Fields == nil {
		return nil, fmt.Errorf("adapters: postgres: the item %w", errPGNotJSONL)
	}
	out := make([]any, len(p.args))
	for i, name := range p.args {
		v, ok := it.Fields[name]
		if !ok {
			return nil, fmt.Errorf("adapters: postgres: the item has no field %q (for $%d)", name, i+1)
		}
		switch v := v.(type) {
		case nil:
			out[i] = nil
		case string:
			out[i] = v
		case json.Number:
			out[i] = string(v)
		case bool:
			out[i] = strconv.FormatBool(v)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("adapters: postgres: field %q (for $%d): %w", name, i+1, err)
			}
			out[i] = string(b)
		}
	}
	return out, nil
}

// pgRowsAffected holds the outputs of the common counts, shared by every row that has them.
var pgRowsAffected = [...]json.RawMessage{
	json.RawMessage(`{"rows_affected":0}`),
	json.RawMessage(`{"rows_affected":1}`),
}

func pgOK(n int64) engine.Outcome {
	if n >= 0 && n < int64(len(pgRowsAffected)) {
		return engine.Outcome{Verdict: engine.OK, Output: pgRowsAffected[n]}
	}
	return engine.Outcome{Verdict: engine.OK, Output: json.RawMessage(`{"rows_affected":` + strconv.FormatInt(n, 10) + `}`)}
}

// run executes the statement for items on the calling worker's connection, in one
// transaction, running the chunk again without an item whose statement failed (see
// [Postgres]). It returns an error only when no answer was obtained for any item.
func (p *Postgres) run(ctx context.Context, items []engine.Item, args [][]any) ([]engine.Outcome, error) {
	s, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	broken := false
	defer func() { p.release(s, broken) }()

	outs := make([]engine.Outcome, len(items))
	pending := make([]int, len(items))
	for i := range pending {
		pending[i] = i
	}
	nfailed := 0       // items that failed on their own
	var codes []string // their SQLSTATEs
	for rerun := 0; ; rerun++ {
		at, tags, err := p.send(ctx, s.conn, pending, args)
		if err == nil {
			for k, i := range pending {
				outs[i] = pgOK(tags[k])
			}
			return outs, nil
		}
		var pe *pgconn.PgError
		var pre pgx.ErrPreprocessingBatch
		switch {
		case errors.As(err, &pe):
		case errors.As(err, &pre) && !s.conn.IsClosed() && ctx.Err() == nil:
			// pgx could not encode the arguments (their count, say): nothing was sent,
			// and sending again cannot help.
			for _, i := range pending {
				outs[i] = engine.Outcome{Verdict: engine.Fail, Message: "adapters: postgres: " + shorten(p.scrub(err.Error()))}
			}
			return outs, nil
		default:
			broken = true
			nerr := p.noAnswer(ctx, err)
			if nfailed == 0 {
				return nil, nerr
			}
			for _, i := range pending {
				outs[i] = engine.Outcome{Verdict: engine.Retry, Message: nerr.Error()}
			}
			return outs, nil
		}
		if class := pgClass(pe.Code); class == "08" || class == "57" && pe.Code != "57014" {
			broken = true // the server is closing the session
		}
		out := p.outcome(pe)
		if out.Verdict == engine.Retry || pgStatementLevel(pe.Code) || errors.As(err, &pre) || len(pending) == 1 {
			// Not the fault of one item: the chunk shares the outcome.
			for _, i := range pending {
				outs[i] = out
			}
			return outs, nil
		}
		culprit := pending[at]
		outs[culprit] = out
		nfailed++
		if !slices.Contains(codes, pe.Code) {
			codes = append(codes, pe.Code)
		}
		pending = slices.Delete(pending, at, at+1)
		if rerun == pgMaxReruns {
			for _, i := range pending {
				outs[i] = engine.Outcome{Verdict: engine.Retry, Message: fmt.Sprintf(
					"rolled back with its chunk: %d of its items failed (SQLSTATE %s)", nfailed, strings.Join(codes, ", "))}
			}
			return outs, nil
		}
	}
}

// send runs the statement for the pending items in one round trip and returns the rows each
// affected, or the error of the first statement that failed and its place in pending. One
// item goes as a batch of one too: it costs the same round trip as Exec, and its errors are
// told apart the same way.
func (p *Postgres) send(ctx context.Context, conn *pgx.Conn, pending []int, args [][]any) (at int, tags []int64, err error) {
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(pending))}
	for _, i := range pending {
		b.Queue(p.sql, args[i]...)
	}
	br := conn.SendBatch(ctx, b)
	tags = make([]int64, len(pending))
	for k := range pending {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close() // the same error, or a broken connection that release notices
			return k, nil, err
		}
		tags[k] = tag.RowsAffected()
	}
	return 0, tags, br.Close()
}

// noAnswer is the error of a call that got no answer from the server: retryable, its text
// scrubbed, wrapping ctx's error when ctx is done so that the engine reports a timeout.
func (p *Postgres) noAnswer(ctx context.Context, err error) error {
	cause := err
	if ctxErr := ctx.Err(); ctxErr != nil {
		cause = ctxErr
	}
	return &redactedError{msg: "adapters: postgres: " + shorten(p.scrub(err.Error())), cause: cause}
}

// pgRetrySQLStates are the SQLSTATEs worth retrying: the same statement may succeed later.
var pgRetrySQLStates = map[string]bool{
	"40001": true, // serialization_failure
	"40P01": true, // deadlock_detected
	"53300": true, // too_many_connections
	"55P03": true, // lock_not_available (lock_timeout)
	"57014": true, // query_canceled (statement_timeout)
	"57P01": true, // admin_shutdown
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now
}

// pgClass is the class of a SQLSTATE, its first two characters ("" for a malformed code, which
// a server does not send, but a panic would cost the run).
func pgClass(code string) string {
	if len(code) < 2 {
		return ""
	}
	return code[:2]
}

// pgStatementLevel reports whether an error with SQLSTATE code is the statement's fault rather
// than one item's, so that running the chunk again without that item cannot help: syntax
// errors and missing objects, privileges, unsupported features, authorization.
func pgStatementLevel(code string) bool {
	switch pgClass(code) {
	case "42", "0A", "28", "3D", "3F":
		return true
	}
	return false
}

// outcome classifies a server's error.
func (p *Postgres) outcome(pe *pgconn.PgError) engine.Outcome {
	out := engine.Outcome{Verdict: engine.Fail, Message: p.pgText(pe)}
	if pgRetrySQLStates[pe.Code] || pgClass(pe.Code) == "08" {
		out.Verdict = engine.Retry
	}
	out.Extra = map[string]any{"sqlstate": pe.Code}
	// Per-item particulars go to the row, not the message, so that the screen groups the
	// errors by cause.
	if pe.Detail != "" {
		out.Extra["detail"] = shorten(p.scrub(pe.Detail))
	}
	if pe.Hint != "" {
		out.Extra["hint"] = shorten(p.scrub(pe.Hint))
	}
	return out
}

// pgText is "SQLSTATE code: message".
func (p *Postgres) pgText(pe *pgconn.PgError) string {
	return "SQLSTATE " + pe.Code + ": " + shorten(p.scrub(pe.Message))
}

// errText is the scrubbed text of err: "SQLSTATE code: message" for a server's error.
func (p *Postgres) errText(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return p.pgText(pe)
	}
	return shorten(p.scrub(err.Error()))
}
