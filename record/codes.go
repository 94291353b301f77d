package record

import (
	"fmt"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// The numbers a recording writes for a call's outcome class, its verdict and the run's state
// are the format's own, written out below as literals. They were the values of probes.Class,
// engine.Verdict and engine.State when version 1 was written, but those enums belong to other
// packages, which may reorder or extend them: a recording made a year ago must still mean what
// it meant. So these numbers NEVER change; a new class, verdict or state gets a new number after
// the last one, and testdata/v1-*.rec.gz (read by TestOldRecordingReadsTheSame) proves that old
// recordings still decode the same.

// classByCode is the outcome class of each code.
var classByCode = [...]probes.Class{
	0: probes.ClassOK,
	1: probes.ClassTooMany,
	2: probes.ClassTimeout,
	3: probes.ClassConnection,
	4: probes.Class5xx,
	5: probes.Class4xx,
	6: probes.ClassOther,
}

// verdictByCode is the verdict of each code.
var verdictByCode = [...]engine.Verdict{
	0: engine.OK,
	1: engine.Retry,
	2: engine.Fail,
}

// stateByCode is the run's state of each code.
var stateByCode = [...]engine.State{
	0: engine.Running,
	1: engine.Paused,
	2: engine.Draining,
	3: engine.Stopping,
	4: engine.Done,
}

// Codes for the values a table lacks, written rather than a number that would mean something
// else: a class probes added without a code here is recorded as "other", and a verdict as a
// failure. TestCodesCoverEveryValue fails before that can happen.
const (
	classFallback   = 6 // probes.ClassOther
	verdictFallback = 2 // engine.Fail
	stateFallback   = 0 // engine.Running
)

// codes is the two-way mapping of one of those tables. The values are small unsigned
// integers, so the way back is an array: the recorder encodes every call with it.
type codes[T ~uint8] struct {
	what     string
	byCode   []T
	code     [256]int16 // -1: no code
	fallback int64
}

// newCodes inverts byCode, whose index is the code.
func newCodes[T ~uint8](what string, byCode []T, fallback int64) *codes[T] {
	c := &codes[T]{what: what, byCode: byCode, fallback: fallback}
	for i := range c.code {
		c.code[i] = -1
	}
	for code, v := range byCode {
		if c.code[v] != -1 {
			panic(fmt.Sprintf("record: two codes for the %s %d", what, v))
		}
		c.code[v] = int16(code)
	}
	return c
}

// encode returns v's code, or the fallback when v has none.
func (c *codes[T]) encode(v T) int64 {
	if n := c.code[v]; n >= 0 {
		return int64(n)
	}
	return c.fallback
}

// decode returns the value of code; a code the table lacks is an error, since guessing would
// misread the recording.
func (c *codes[T]) decode(code int64) (T, error) {
	if code < 0 || code >= int64(len(c.byCode)) {
		return 0, fmt.Errorf("unknown %s code %d", c.what, code)
	}
	return c.byCode[code], nil
}

var (
	classCodes   = newCodes("outcome class", classByCode[:], classFallback)
	verdictCodes = newCodes("verdict", verdictByCode[:], verdictFallback)
	stateCodes   = newCodes("state", stateByCode[:], stateFallback)
)
