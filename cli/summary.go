package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/internal/redact"
	"github.com/throttle-dev/throttle/probes"
)

// summaryWidth is the width the end summary is laid out for: 80 columns is the design width,
// and a summary is read in a terminal, a CI log or a mail, none of which re-wraps it well.
const summaryWidth = 80

// shownCauses is how many failure groups the text summary lists; --summary-json has them all.
const shownCauses = 5

// rowTally sits between the engine and the results file and counts the rows as they are
// written: by status, by class, and the failures grouped by cause with one sample message
// each. It counts what reached the file, so its counts are the rows' (the engine's row
// writer hands whole rows to WriteRows and is told how many were written).
type rowTally struct {
	w       io.Writer
	regular bool // w is a regular file: Sync makes the rows durable; a pipe cannot be synced
	buf     []byte

	mu       sync.Mutex
	byStatus map[int]int64
	byClass  map[string]int64
	groups   map[causeKey]*failureGroup
}

// causeKey is what one failure group shares.
type causeKey struct {
	status int
	class  string
}

// failureGroup is the failed rows of one status and class, with the first one's message.
type failureGroup struct {
	Status int    `json:"status"` // 0: no answer (a network error, a timeout, an invalid item)
	Class  string `json:"class"`
	Count  int64  `json:"count"`
	Sample string `json:"sample"` // as the row holds it: the engine redacted it already
}

// newRowTally wraps the results file w.
func newRowTally(w io.Writer) *rowTally {
	t := &rowTally{w: w, byStatus: map[int]int64{}, byClass: map[string]int64{}, groups: map[causeKey]*failureGroup{}}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			t.regular = true
		}
	}
	return t
}

// Write passes p through uncounted; the engine writes rows through WriteRows, which counts.
func (t *rowTally) Write(p []byte) (int, error) { return t.w.Write(p) }

// Sync makes the rows durable when the results are a regular file, as the engine would.
func (t *rowTally) Sync() error {
	if f, ok := t.w.(*os.File); ok && t.regular {
		return f.Sync()
	}
	return nil
}

// WriteRows writes a batch of rows in one write and counts the rows that were written whole.
// A sink that takes rows itself (a shared job's results stream, which acknowledges each
// row's item) gets the batch as it is.
func (t *rowTally) WriteRows(rows []engine.EncodedRow) (int, error) {
	if rw, ok := t.w.(engine.RowWriter); ok {
		n, err := rw.WriteRows(rows)
		for _, r := range rows[:n] {
			t.count(r.Line)
		}
		return n, err
	}
	t.buf = t.buf[:0]
	for _, r := range rows {
		t.buf = append(t.buf, r.Line...)
	}
	n, err := t.w.Write(t.buf)
	written, end := 0, 0
	for _, r := range rows {
		if end+len(r.Line) > n {
			break
		}
		end += len(r.Line)
		t.count(r.Line)
		written++
	}
	if cap(t.buf) > 1<<20 {
		t.buf = nil // a burst of large rows must not keep its buffer
	}
	return written, err
}

// count adds one written row. An ok row, nearly every row of a run, is read by its head
// alone (engine.AppendRow's fixed order: item, ok, status): decoding a whole row, output
// included, for its status would cost a third of a fast run's time.
func (t *rowTally) count(line []byte) {
	if status, ok := okRowStatus(line); ok {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.byStatus[status]++
		t.byClass[probes.ClassOK.String()]++
		return
	}
	var r struct {
		OK      bool   `json:"ok"`
		Status  int    `json:"status"`
		Error   string `json:"error"`
		Invalid bool   `json:"invalid"`
	}
	if json.Unmarshal(line, &r) != nil {
		r.Error = "row not readable as JSON" // the engine wrote it: not expected
	}
	class := rowClass(r.OK, r.Status, r.Error, r.Invalid)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byStatus[r.Status]++
	t.byClass[class]++
	if r.OK {
		return
	}
	k := causeKey{r.Status, class}
	g := t.groups[k]
	if g == nil {
		g = &failureGroup{Status: r.Status, Class: class, Sample: r.Error}
		t.groups[k] = g
	}
	g.Count++
}

// okRowStatus reads the status of an ok row from its head: {"item":ITEM,"ok":true then
// ,"status":N when there is one (0 otherwise). ok is false for a failed row, or a row this
// reading does not follow: those are decoded whole.
func okRowStatus(line []byte) (status int, ok bool) {
	const head, okTrue, st = `{"item":`, `,"ok":true`, `,"status":`
	if !bytes.HasPrefix(line, []byte(head)) {
		return 0, false
	}
	i := skipValue(line, len(head))
	if i < 0 || !bytes.HasPrefix(line[i:], []byte(okTrue)) {
		return 0, false
	}
	i += len(okTrue)
	if !bytes.HasPrefix(line[i:], []byte(st)) {
		return 0, true
	}
	i += len(st)
	for ; i < len(line) && line[i] >= '0' && line[i] <= '9'; i++ {
		status = status*10 + int(line[i]-'0')
	}
	return status, true
}

// skipValue returns the index just past the JSON string or object that starts at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) || (b[i] != '"' && b[i] != '{') {
		return -1
	}
	depth, inString := 0, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case inString && c == '"':
			inString = false
			if depth == 0 {
				return i + 1
			}
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// rowClass names the kind of a row's outcome with the classes of probes.Class, plus
// "invalid" (an item the reader refused) and "canceled" (a call the run's stop cut off).
func rowClass(ok bool, status int, msg string, invalid bool) string {
	switch {
	case invalid:
		return "invalid" // never called: no outcome to classify
	case !ok && status == 0 && strings.HasPrefix(msg, "canceled"):
		return "canceled"
	}
	// A row is its last call's end: the classes are the monitor's, by its one rule.
	verdict := engine.Fail
	if ok {
		verdict = engine.OK
	}
	return probes.Classify(engine.Event{Status: status, Err: !ok && status == 0, Message: msg, Verdict: verdict}).String()
}

// tallied is what a rowTally counted, for the summary.
type tallied struct {
	byStatus map[int]int64
	byClass  map[string]int64
	failures []failureGroup // the most common first
}

// snapshot copies the counts; nil gives an empty tally (a run whose rows were not counted).
func (t *rowTally) snapshot() tallied {
	if t == nil {
		return tallied{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := tallied{byStatus: map[int]int64{}, byClass: map[string]int64{}}
	for k, v := range t.byStatus {
		out.byStatus[k] = v
	}
	for k, v := range t.byClass {
		out.byClass[k] = v
	}
	for _, g := range t.groups {
		out.failures = append(out.failures, *g)
	}
	sort.Slice(out.failures, func(i, j int) bool {
		a, b := out.failures[i], out.failures[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Status != b.Status {
			return a.Status < b.Status
		}
		return a.Class < b.Class
	})
	return out
}

// endReport is everything the end of a run says: the text summary on stdout and the JSON of
// --summary-json are both made from it.
type endReport struct {
	sum engine.Summary
	lat probes.Stats
	out string // where the rows are; "" for a replay
	// sink, when set, is where this host's rows went instead of a file of its own (a host
	// that joined a shared job sends them to the job's coordinator).
	sink string
	// jobRows says the rows are a shared job's, every host's, while the calls and the latency
	// are this host's (a coordinator's summary): the lines say which is which.
	jobRows  bool
	scratch  bool // out is removed as the command ends (the demo's own directory)
	rows     tallied
	retry    []string // the command that retries only the failures; nil: none to give
	settings engine.Settings
	changes  []engine.Change
}

// printSummary writes the run's summary lines without a breakdown of the rows (a replay, a
// host of a shared job).
func printSummary(w io.Writer, s engine.Summary, lat probes.Stats, out string) {
	printEnd(w, endReport{sum: s, lat: lat, out: out})
}

// printEnd writes the run's summary lines, each within summaryWidth: totals, latency over the
// whole run, what was not run, the failures by cause with a sample message each, warnings,
// where the rows are and how to retry only the failures. `throttle replay --headless` prints
// the same lines from a recording. The summary is the output of a run: it goes to stdout.
func printEnd(w io.Writer, r endReport) {
	s := r.sum
	rows := s.OK + s.Failed
	verb := s.Ended()
	perSec := 0.0
	if s.Elapsed > 0 {
		perSec = float64(rows) / s.Elapsed.Seconds()
	}
	fmt.Fprintf(w, "%s in %s: %s, %s ok, %s failed\n", verb, s.Elapsed.Round(time.Millisecond),
		human.Counted(rows, "item", "items"), human.Count(s.OK), human.Count(s.Failed))
	calls, latency := "", "latency"
	if r.jobRows {
		calls, latency = fmt.Sprintf("the job %.1f items/s · this host ", perSec), "this host's latency"
	}
	calls += fmt.Sprintf("%s, %s, %s × 429", human.Counted(s.Calls, "call", "calls"), human.Counted(s.Retries, "retry", "retries"), human.Count(s.TooMany))
	if !r.jobRows {
		calls += fmt.Sprintf(" · %.1f items/s", perSec)
	}
	fmt.Fprintln(w, calls)
	if r.lat.Calls > 0 {
		fmt.Fprintf(w, "%s p50 %s · p95 %s · p99 %s · max %s over %s\n", latency, human.Latency(r.lat.P50),
			human.Latency(r.lat.P95), human.Latency(r.lat.P99), human.Latency(r.lat.Max), human.Counted(r.lat.Calls, "call", "calls"))
	}
	if left := s.NotRun(); left > 0 {
		if left == 1 {
			fmt.Fprintln(w, "1 item was not run and has no row")
		} else {
			fmt.Fprintf(w, "%s items were not run and have no row\n", human.Count(left))
		}
	}
	if len(r.rows.failures) > 0 {
		fmt.Fprintln(w, "failed, by cause (most first):")
		for i, g := range r.rows.failures {
			if i == shownCauses {
				rest := int64(0)
				for _, g := range r.rows.failures[i:] {
					rest += g.Count
				}
				fmt.Fprintf(w, "  and %s more in %d other causes\n", human.Count(rest), len(r.rows.failures)-i)
				break
			}
			for _, line := range causeLines(g) {
				fmt.Fprintln(w, line)
			}
		}
	}
	switch {
	case r.sink != "" && s.Lost > 0:
		fmt.Fprintf(w, "%s finished items could not be sent to %s\n", human.Count(s.Lost), r.sink)
	case r.out != "" && s.Lost > 0:
		fmt.Fprintf(w, "%s finished items could not be written to %s\n", human.Count(s.Lost), r.out)
	}
	for _, warning := range s.Warnings {
		fmt.Fprintln(w, "warning: "+warning)
	}
	if r.out == "" { // a replay: the rows are not ours to report
		return
	}
	if r.scratch {
		fmt.Fprintln(w, "results removed with the demo's temporary directory; --out FILE keeps them")
		return
	}
	if rows > 0 || s.Lost == 0 {
		what, where := "results appended to", r.out
		if r.sink != "" {
			what, where = "rows sent to", r.sink
		}
		if line := what + " " + where; utf8.RuneCountInString(line) <= summaryWidth {
			fmt.Fprintln(w, line)
		} else {
			fmt.Fprintln(w, what+"\n  "+where)
		}
	}
	if len(r.retry) > 0 {
		fmt.Fprintf(w, "retry only the %s failed:\n", human.Count(s.Failed))
		for _, line := range wrapCommand(r.retry, summaryWidth) {
			fmt.Fprintln(w, line)
		}
	}
}

// causeLines renders one failure group: "  7 × 503 (5xx): <sample>" on one line when it fits
// summaryWidth, else the sample on a second line, cut with … at the width.
func causeLines(g failureGroup) []string {
	label := g.Class
	if g.Status != 0 && strconv.Itoa(g.Status) != g.Class {
		label = fmt.Sprintf("%d (%s)", g.Status, g.Class)
	}
	head := fmt.Sprintf("  %s × %s", human.Count(g.Count), label)
	msg := oneLine(g.Sample)
	if msg == "" {
		return []string{head}
	}
	if one := head + ": " + msg; utf8.RuneCountInString(one) <= summaryWidth {
		return []string{one}
	}
	return []string{head + ":", cut("      "+msg, summaryWidth)}
}

// spaces matches runs of white space, newlines included: a sample message is shown on one line.
var spaces = regexp.MustCompile(`\s+`)

func oneLine(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }

// cut shortens s to width columns, ending it with … when it was longer.
func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// retryArgs builds the command that runs only the failed items of this run: the run's own
// arguments as given (templates keep their ${NAME}: a secret's value was never in them),
// with --input replaced by the results file and --only-failed added; --resume and --follow,
// which do not go with it, are left out, and so is a job across hosts (--job, --reset,
// --host-parallelism, --lease; --redis too unless a --limit needs it, its password
// redacted): the failures are retried on one host. nil when the run was not started by
// `throttle run` (the demo makes its own input; a joined host takes its items from the
// shared job).
func retryArgs(args []string, out string) []string {
	first := -1
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			first = i
			break
		}
	}
	if first < 0 || args[first] != "run" {
		return nil
	}
	drop := map[string]bool{"--only-failed": true, "--resume": true, "--follow": true, "--reset": true}
	dropValued := map[string]bool{"--input": true, "--job": true, "--host-parallelism": true, "--lease": true, "--redis": true}
	for _, a := range args {
		if a == "--" { // the exec adapter's command: not throttle's flags
			break
		}
		if name, _, _ := strings.Cut(a, "="); name == "--limit" {
			dropValued["--redis"] = false // the shared limits are in it
		}
	}
	cmd := []string{"throttle"}
	var tail []string // after "--": the exec adapter's command, kept as it is
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			tail = args[i:]
			break
		}
		name, _, hasValue := strings.Cut(a, "=")
		switch {
		case dropValued[name]:
			if !hasValue {
				i++ // its value
			}
			continue
		case drop[name]:
			continue
		case name == "--redis" && hasValue:
			a = "--redis=" + redact.URL(strings.TrimPrefix(a, "--redis="))
		case name == "--redis" && i+1 < len(args):
			cmd = append(cmd, a, redact.URL(args[i+1]))
			i++
			continue
		}
		cmd = append(cmd, a)
	}
	cmd = append(cmd, "--input", out, "--only-failed")
	return append(cmd, tail...)
}

// safeWord matches a word the shell takes as it is.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

// shellQuote quotes a word for a POSIX shell: as it is when that is safe, else in single
// quotes (a ${NAME} stays unexpanded, as it was given).
func shellQuote(s string) string {
	if safeWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// wrapCommand lays out a command, its words shell-quoted, in lines of at most width columns
// (a word longer than that stands alone on its line): every line but the last ends with " \"
// and the lines after the first are indented, so that the whole can be pasted into a shell.
// A flag and its value are kept on one line where they fit on one.
func wrapCommand(args []string, width int) []string {
	const first, next = "  ", "      "
	var words []string
	for i := 0; i < len(args); i++ {
		w := shellQuote(args[i])
		if strings.HasPrefix(args[i], "--") && !strings.Contains(args[i], "=") && args[i] != "--" &&
			i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			if pair := w + " " + shellQuote(args[i+1]); len(next)+utf8.RuneCountInString(pair)+2 <= width {
				w = pair
				i++
			}
		}
		words = append(words, w)
	}
	var lines []string
	line := first
	for _, w := range words {
		empty := line == first || line == next
		if !empty && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w)+2 > width {
			lines = append(lines, line+" \\")
			line = next
			empty = true
		}
		if !empty {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// summaryJSON is the --summary-json document: the end of a run for a script.
type summaryJSON struct {
	State       string           `json:"state"` // done, drained or stopped
	WallSeconds float64          `json:"wall_seconds"`
	Items       itemsJSON        `json:"items"`
	Calls       int64            `json:"calls"`
	Retries     int64            `json:"retries"`
	TooMany     int64            `json:"429s"`
	ByStatus    map[string]int64 `json:"by_status"` // of the rows; "0" is no answer
	ByClass     map[string]int64 `json:"by_class"`
	Failures    []failureGroup   `json:"failures"` // the most common first
	Latency     latencyJSON      `json:"latency_ms"`
	Settings    settingsJSON     `json:"settings"` // at the end
	Changes     []changeJSON     `json:"changes"`
	Results     string           `json:"results,omitempty"`
	Retry       string           `json:"retry_command,omitempty"`
	Warnings    []string         `json:"warnings"`
}

type itemsJSON struct {
	Total  int64 `json:"total"` // -1: unknown (stdin)
	OK     int64 `json:"ok"`
	Failed int64 `json:"failed"`
	NotRun int64 `json:"not_run"`
	Lost   int64 `json:"lost"` // finished but not written
}

type latencyJSON struct {
	Calls int64   `json:"calls"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

type settingsJSON struct {
	Parallelism    int     `json:"parallelism"`
	MaxParallelism int     `json:"max_parallelism"`
	Pace           string  `json:"pace"`
	Rate           string  `json:"rate"`
	RatePerSecond  float64 `json:"rate_per_second"` // 0: unlimited
	Burst          int     `json:"burst"`
}

type changeJSON struct {
	At     time.Time `json:"at"`
	Origin string    `json:"origin"`
	Knob   string    `json:"knob"`
	From   string    `json:"from"`
	To     string    `json:"to"`
}

// toJSON is the report as --summary-json writes it.
func (r endReport) toJSON() summaryJSON {
	s := r.sum
	state := s.Ended()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	j := summaryJSON{
		State: state, WallSeconds: s.Elapsed.Seconds(),
		Items: itemsJSON{Total: s.Total, OK: s.OK, Failed: s.Failed, NotRun: s.NotRun(), Lost: s.Lost},
		Calls: s.Calls, Retries: s.Retries, TooMany: s.TooMany,
		ByStatus: map[string]int64{}, ByClass: map[string]int64{}, Failures: r.rows.failures,
		Latency: latencyJSON{Calls: r.lat.Calls, P50: ms(r.lat.P50), P95: ms(r.lat.P95), P99: ms(r.lat.P99), Max: ms(r.lat.Max)},
		Settings: settingsJSON{Parallelism: r.settings.Parallelism, MaxParallelism: r.settings.MaxParallelism,
			Pace: r.settings.Pace.String(), Rate: engine.FormatRate(r.settings.Rate), RatePerSecond: r.settings.Rate, Burst: r.settings.Burst},
		Changes: []changeJSON{}, Results: r.out, Warnings: s.Warnings,
	}
	if j.Failures == nil {
		j.Failures = []failureGroup{}
	}
	if j.Warnings == nil {
		j.Warnings = []string{}
	}
	for k, v := range r.rows.byStatus {
		j.ByStatus[strconv.Itoa(k)] = v
	}
	for k, v := range r.rows.byClass {
		j.ByClass[k] = v
	}
	for _, c := range r.changes {
		j.Changes = append(j.Changes, changeJSON{At: c.At.UTC(), Origin: c.Origin, Knob: c.Knob, From: c.From, To: c.To})
	}
	if len(r.retry) > 0 {
		words := make([]string, len(r.retry))
		for i, a := range r.retry {
			words[i] = shellQuote(a)
		}
		j.Retry = strings.Join(words, " ")
	}
	return j
}

// writeSummaryJSON writes the report to f (opened 0600 before the run, so that a path that
// cannot be written fails before any call) and closes it.
func writeSummaryJSON(f *os.File, r endReport) error {
	b, err := json.MarshalIndent(r.toJSON(), "", "  ")
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
