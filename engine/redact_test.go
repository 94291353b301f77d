package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestRedactAtIntake: with Config.Redact, nothing an adapter hands back reaches a row, an
// event or the summary unscrubbed: an error's text, an answer's message, its output (kept
// valid JSON when the secret was a bare value) and its extra strings, and warnings.
func TestRedactAtIntake(t *testing.T) {
	const secret = "1234567890"
	a := AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
		switch it.Line {
		case "err":
			return Outcome{}, Permanent(errors.New("dial: token " + secret))
		case "msg":
			return Outcome{Verdict: Fail, Status: 400, Message: "400 echo " + secret,
				Extra: map[string]any{"detail": "key=" + secret, "n": 1}}, nil
		case "bare":
			return Outcome{Verdict: OK, Status: 200, Output: json.RawMessage(`{"n":` + secret + `}`)}, nil
		default:
			return Outcome{Verdict: OK, Status: 200, Output: json.RawMessage(`{"echo":"` + secret + `"}`)}, nil
		}
	})
	e, rows := newTestEngine(t, Config{
		Settings: Settings{Parallelism: 1}, Adapter: a,
		Redact: func(s string) string { return strings.ReplaceAll(s, secret, "REDACTED") },
	}, "err\nmsg\nbare\nok\n")
	sub := e.Subscribe(64, CallEnd, Warning)
	e.warn("warning about " + secret)
	sum, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	var seen []string
	for {
		select {
		case ev := <-sub.C:
			seen = append(seen, ev.Message)
			continue
		default:
		}
		break
	}
	all := rows.String() + strings.Join(seen, "\n") + strings.Join(sum.Warnings, "\n") + strings.Join(e.Snapshot().Warnings, "\n")
	if strings.Contains(all, secret) {
		t.Errorf("the secret got through:\nrows:\n%s\nevents: %q\nwarnings: %q", rows, seen, sum.Warnings)
	}
	for _, want := range []string{`"error":"dial: token REDACTED"`, `"error":"400 echo REDACTED"`, `"detail":"key=REDACTED"`,
		`"output":"{\"n\":REDACTED}"`, `"output":{"echo":"REDACTED"}`} {
		if !strings.Contains(rows.String(), want) {
			t.Errorf("rows lack %s:\n%s", want, rows)
		}
	}
	if len(seen) < 3 || !strings.Contains(strings.Join(seen, "\n"), "400 echo REDACTED") {
		t.Errorf("events: %q, want the warning and the failed calls, scrubbed", seen)
	}
	for line := range strings.Lines(rows.String()) {
		if !json.Valid([]byte(line)) {
			t.Errorf("row is not JSON: %s", line)
		}
	}
}
