package record

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Export writes a recording as plain JSON lines, for jq: the header, then one object per
// record with named fields, in the order they were recorded. Times are milliseconds since
// the header's "started". A recording cut off by a crash exports up to the cut.
func Export(r io.Reader, w io.Writer) error {
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return ErrNotRecording
	}
	zr.Multistream(false)
	lines := newLines(zr)
	out := bufio.NewWriter(w)
	enc := json.NewEncoder(out)
	head, err := lines.next()
	if err != nil {
		return ErrNotRecording
	}
	var h Header
	if json.Unmarshal(head, &h) != nil || h.Format != formatName {
		return ErrNotRecording
	}
	if err := enc.Encode(h); err != nil {
		return err
	}
	for n := 2; ; n++ {
		line, err := lines.next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			break // a cut: what came before stands
		}
		v, err := parseLine(line)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if o := exported(v); o != nil {
			if err := enc.Encode(o); err != nil {
				return err
			}
		}
	}
	return out.Flush()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// exported names a record's fields.
func exported(v any) any {
	switch v := v.(type) {
	case Call:
		return struct {
			Type         string  `json:"type"`
			StartMS      float64 `json:"start_ms"`
			EndMS        float64 `json:"end_ms"`
			LatencyMS    float64 `json:"latency_ms"`
			Worker       int32   `json:"worker"`
			Index        int64   `json:"index"`
			Items        int32   `json:"items"`
			Attempt      int16   `json:"attempt"`
			InFlight     int32   `json:"in_flight"`
			Status       int16   `json:"status"`
			Outcome      string  `json:"outcome"`
			Verdict      string  `json:"verdict"`
			Final        bool    `json:"final"`
			RetryAfterMS float64 `json:"retry_after_ms,omitempty"`
		}{"call", ms(v.Start), ms(v.End()), ms(v.Latency), v.Worker, v.Index, v.Items, v.Attempt, v.InFlight, v.Status,
			v.Class.String(), v.Verdict.String(), v.Final, ms(v.RetryAfter)}
	case Change:
		return struct {
			Type   string  `json:"type"`
			AtMS   float64 `json:"at_ms"`
			Origin string  `json:"origin"`
			Knob   string  `json:"knob"`
			From   string  `json:"from"`
			To     string  `json:"to"`
		}{"change", ms(v.At), v.Origin, v.Knob, v.From, v.To}
	case Hold:
		return struct {
			Type    string  `json:"type"`
			AtMS    float64 `json:"at_ms"`
			UntilMS float64 `json:"until_ms"`
		}{"hold", ms(v.At), ms(v.Until)}
	case Snap:
		return struct {
			Type       string  `json:"type"`
			AtMS       float64 `json:"at_ms"`
			State      string  `json:"state"`
			Read       int64   `json:"read"`
			OK         int64   `json:"ok"`
			Failed     int64   `json:"failed"`
			Calls      int64   `json:"calls"`
			Retries    int64   `json:"retries"`
			TooMany    int64   `json:"too_many"`
			Errors     int64   `json:"errors"`
			InFlight   int     `json:"in_flight"`
			BackingOff int     `json:"backing_off"`
		}{"snapshot", ms(v.At), v.State.String(), v.Read, v.OK, v.Failed, v.Calls, v.Retries, v.TooMany, v.Errors, v.InFlight, v.BackingOff}
	case Warning:
		return struct {
			Type    string  `json:"type"`
			AtMS    float64 `json:"at_ms"`
			Message string  `json:"message"`
		}{"warning", ms(v.At), v.Message}
	case dropped:
		return struct {
			Type string  `json:"type"`
			AtMS float64 `json:"at_ms"`
			N    int64   `json:"events"`
		}{"dropped", ms(v.At), v.N}
	case *End:
		return struct {
			Type string  `json:"type"`
			AtMS float64 `json:"at_ms"`
			*End
		}{"end", ms(v.At), v}
	}
	return nil
}
