package record

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/throttle-dev/throttle/engine"
)

// Recording is a recording read back, in the order it was written.
type Recording struct {
	Header Header
	// Calls are ordered by their end.
	Calls     []Call
	Changes   []Change
	Holds     []Hold
	Snapshots []Snap
	Warnings  []Warning
	// Dropped counts events the recorder missed (its buffer was full).
	Dropped int64
	// End is nil when the recording was cut off before the run ended (a crash).
	End *End
	// Cut says the stream itself ended mid-way: the rest of the run was never written.
	Cut bool
}

// Open reads the recording in path.
func Open(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only
	rec, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rec, nil
}

// ErrNotRecording is returned for a file that is not a throttle recording.
var ErrNotRecording = errors.New("not a throttle recording")

// Read reads a recording. A stream cut off mid-way (a crash) reads up to its last complete
// line and sets Cut; a stream that is not a recording, or a line that does not parse, is an
// error.
func Read(r io.Reader) (*Recording, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(r, 256<<10))
	if err != nil {
		return nil, ErrNotRecording
	}
	zr.Multistream(false)
	lines := newLines(zr)
	head, err := lines.next()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrNotRecording
		}
		return nil, err
	}
	rec := &Recording{}
	if json.Unmarshal(head, &rec.Header) != nil || rec.Header.Format != formatName {
		return nil, ErrNotRecording
	}
	if rec.Header.Version != Version {
		return nil, fmt.Errorf("recording version %d: this throttle reads version %d", rec.Header.Version, Version)
	}
	if t := rec.Header.Total; t > 0 { // a corrupt header must not force a huge allocation
		rec.Calls = make([]Call, 0, min(t, 1<<20))
	}
	for n := 2; ; n++ {
		line, err := lines.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil { // a cut: what came before stands
			rec.Cut = true
			break
		}
		if err := rec.add(line); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if rec.End == nil {
		rec.Cut = true
	}
	// Calls are written as they end, and a busy engine may publish two ends out of order.
	slices.SortStableFunc(rec.Calls, func(a, b Call) int { return cmp.Compare(a.End(), b.End()) })
	return rec, nil
}

// lines splits a stream into complete lines; a last line without its newline is a cut.
type lines struct {
	r *bufio.Reader
}

func newLines(r io.Reader) *lines { return &lines{r: bufio.NewReaderSize(r, 64<<10)} }

func (l *lines) next() ([]byte, error) {
	line, err := l.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) { // a long line (a long warning): gather it
		var all []byte
		all = append(all, line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = l.r.ReadSlice('\n')
			all = append(all, line...)
		}
		line = all
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil, io.EOF
		}
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return line[:len(line)-1], nil
}

// dropped is a count of events the recorder missed.
type dropped struct {
	At time.Duration
	N  int64
}

// parseLine parses one record line into a Call, Change, Hold, Snap, Warning, dropped or
// *End; a kind from a later version parses as nil.
func parseLine(line []byte) (any, error) {
	p := parser{b: line}
	if !p.open() {
		return nil, errors.New("not a record")
	}
	kind, at := p.int(), p.dur()
	var v any
	switch kind {
	case kindCall:
		c, err := p.call(at)
		if err != nil {
			return nil, err
		}
		return c, nil
	case kindChange:
		v = Change{At: at, Origin: p.str(), Knob: p.str(), From: p.str(), To: p.str()}
	case kindHold:
		v = Hold{At: at, Until: p.dur()}
	case kindSnapshot:
		v = Snap{At: at, State: decode(&p, stateCodes), Read: p.int(), OK: p.int(), Failed: p.int(), Calls: p.int(),
			Retries: p.int(), TooMany: p.int(), Errors: p.int(), InFlight: int(p.int()), BackingOff: int(p.int())}
	case kindWarning:
		v = Warning{At: at, Message: p.str()}
	case kindDropped:
		v = dropped{At: at, N: p.int()}
	case kindEnd:
		p.expectComma()
		if p.err != nil {
			return nil, p.err
		}
		end := &End{At: at}
		if err := json.Unmarshal(bytes.TrimSuffix(p.b[p.i:], []byte("]")), end); err != nil {
			return nil, err
		}
		return end, nil
	default:
		return nil, p.err
	}
	return v, p.done()
}

// call reads the rest of a call record.
func (p *parser) call(at time.Duration) (Call, error) {
	c := Call{Start: at, Latency: p.dur(), Worker: int32(p.int()), Index: p.int(), Items: int32(p.int()),
		Attempt: int16(p.int()), InFlight: int32(p.int()), Status: int16(p.int()), Class: decode(p, classCodes),
		Verdict: decode(p, verdictCodes), Final: p.int() == 1, RetryAfter: p.dur()}
	return c, p.done()
}

// done checks that the record ended where its kind does.
func (p *parser) done() error {
	if p.err == nil && p.i != len(p.b)-1 {
		p.err = errors.New("record has more fields than its kind")
	}
	return p.err
}

// add parses one record line and keeps it.
func (rec *Recording) add(line []byte) error {
	if bytes.HasPrefix(line, []byte("[0,")) { // a call: the bulk of a recording, kept unboxed
		p := parser{b: line}
		p.open()
		p.int()
		c, err := p.call(p.dur())
		if err != nil {
			return err
		}
		rec.Calls = append(rec.Calls, c)
		return nil
	}
	v, err := parseLine(line)
	if err != nil {
		return err
	}
	switch v := v.(type) {
	case Call:
		rec.Calls = append(rec.Calls, v)
	case Change:
		rec.Changes = append(rec.Changes, v)
	case Hold:
		rec.Holds = append(rec.Holds, v)
	case Snap:
		rec.Snapshots = append(rec.Snapshots, v)
	case Warning:
		rec.Warnings = append(rec.Warnings, v)
	case dropped:
		rec.Dropped += v.N
	case *End:
		rec.End = v
	}
	return nil
}

// parser reads the numbers and strings of one record array without reflection: a
// million-call recording must replay in well under three seconds.
type parser struct {
	b   []byte
	i   int
	err error
}

func (p *parser) open() bool {
	if len(p.b) < 2 || p.b[0] != '[' || p.b[len(p.b)-1] != ']' {
		return false
	}
	p.i = 1
	return true
}

func (p *parser) expectComma() {
	if p.err != nil {
		return
	}
	if p.i >= len(p.b) || p.b[p.i] != ',' {
		p.err = fmt.Errorf("bad record at byte %d", p.i)
		return
	}
	p.i++
}

// int reads the next integer; the first one follows '[' directly.
func (p *parser) int() int64 {
	if p.err != nil {
		return 0
	}
	if p.i > 1 {
		p.expectComma()
	}
	start := p.i
	for p.i < len(p.b) && p.b[p.i] != ',' && p.b[p.i] != ']' {
		p.i++
	}
	v, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
	if err != nil {
		p.err = fmt.Errorf("bad number %q", p.b[start:p.i])
	}
	return v
}

// decode reads a code of table t; an unknown one fails the record.
func decode[T ~uint8](p *parser, t *codes[T]) T {
	n := p.int()
	if p.err != nil {
		return 0
	}
	v, err := t.decode(n)
	if err != nil {
		p.err = err
	}
	return v
}

func (p *parser) dur() time.Duration { return time.Duration(p.int()) * time.Microsecond }

// str reads the next JSON string.
func (p *parser) str() string {
	p.expectComma()
	if p.err != nil {
		return ""
	}
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		p.err = fmt.Errorf("want a string at byte %d", p.i)
		return ""
	}
	end := p.i + 1
	for end < len(p.b) && p.b[end] != '"' {
		if p.b[end] == '\\' {
			end++
		}
		end++
	}
	if end >= len(p.b) {
		p.err = errors.New("unterminated string")
		return ""
	}
	var s string
	if err := json.Unmarshal(p.b[p.i:end+1], &s); err != nil {
		p.err = err
	}
	p.i = end + 1
	return s
}

// Elapsed is how long the recorded run lasted: to its end, or to the last thing recorded
// when it was cut off.
func (rec *Recording) Elapsed() time.Duration {
	if rec.End != nil {
		return time.Duration(rec.End.Elapsed)
	}
	var last time.Duration
	if n := len(rec.Calls); n > 0 {
		last = rec.Calls[n-1].End()
	}
	if n := len(rec.Snapshots); n > 0 {
		last = max(last, rec.Snapshots[n-1].At)
	}
	return last
}

// SettingsAt returns the settings in force at offset at: the header's, with every change
// logged up to then applied.
func (rec *Recording) SettingsAt(at time.Duration) engine.Settings {
	s, _ := rec.LimitsAt(at)
	return s
}

// LimitsAt returns the settings (with the congestion response on, the ceilings) in force at
// offset at, and the response's effective values then, rebuilt from the change log as the
// engine's snapshot had them. A recording without the response's changes has none.
func (rec *Recording) LimitsAt(at time.Duration) (engine.Settings, engine.Effective) {
	s := rec.Header.Settings.Engine()
	e := engine.Effective{QuotaLeft: -1}
	for _, c := range rec.Changes {
		if c.At > at {
			break
		}
		applyChange(&s, &e, c)
	}
	return s, e
}

// applyChange applies a logged change of knobs to s, or of an effective value to e (the
// engine's "adapt" entries); other entries leave them alone. A change of several knobs at
// once (rate and burst) applies each.
func applyChange(s *engine.Settings, e *engine.Effective, c Change) {
	for _, p := range (engine.Change{Knob: c.Knob, From: c.From, To: c.To}).Parts() {
		applyPart(s, e, p)
	}
}

// applyPart applies the change of one knob or effective value.
func applyPart(s *engine.Settings, e *engine.Effective, c engine.Change) {
	if u, err := engine.ParseKnobValue(c.Knob, c.To); err == nil {
		*s = u.Apply(*s)
		// As the engine does: a ceiling at or under the effective value applies.
		if u.Turns(engine.KnobParallelism) && e.Parallelism >= s.Parallelism {
			e.Parallelism = 0
		}
		if u.Turns(engine.KnobRate) && s.Rate > 0 && e.Rate >= s.Rate {
			e.Rate = 0
		}
		return
	}
	switch c.Knob {
	case "effective rate":
		// "188/s (target accepted 198/s)" or "188/s (blind)" at a cut, "205/s" on the climb,
		// "ceiling 250/s" when the ceiling applies again.
		value, why := splitWhy(c.To)
		if strings.HasPrefix(value, "ceiling") {
			e.Rate = 0
			return
		}
		if r, err := engine.ParseRate(value); err == nil {
			e.Rate = r
		}
		if why != "" {
			e.Signals++
		}
		// The engine's Limit is the flow it measured at the cut, accepted or refused.
		for _, prefix := range []string{"target accepted ", "target refused "} {
			if at, ok := strings.CutPrefix(why, prefix); ok {
				if r, err := engine.ParseRate(at); err == nil {
					e.Limit = r
				}
			}
		}
	case "effective parallelism":
		// "6 (429 at 7 in flight)" at a cut, "7" on the climb, "ceiling 16".
		value, why := splitWhy(c.To)
		if strings.HasPrefix(value, "ceiling") {
			e.Parallelism = 0
			return
		}
		if n, err := strconv.Atoi(value); err == nil {
			e.Parallelism = n
		}
		if why != "" {
			e.Signals++
		}
		var n int
		if _, err := fmt.Sscanf(why, "429 at %d in flight", &n); err == nil {
			e.Concurrency = n
		}
	}
}

// splitWhy splits "188/s (blind)" into "188/s" and "blind".
func splitWhy(s string) (value, why string) {
	value, why, _ = strings.Cut(s, " (")
	return value, strings.TrimSuffix(why, ")")
}
