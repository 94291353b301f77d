package cli

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/throttle-dev/throttle/engine"
)

// TestRetryArgs: the retry command is the run's own arguments with --input replaced by the
// results and --only-failed added; --resume and --follow dropped; an exec adapter's command
// after -- kept last; none for a command other than run.
func TestRetryArgs(t *testing.T) {
	for _, tc := range []struct {
		args, want []string
	}{
		{[]string{"run", "http", "--input", "ids.txt", "--url", "u/{item}", "--resume"},
			[]string{"throttle", "run", "http", "--url", "u/{item}", "--input", "r.jsonl", "--only-failed"}},
		{[]string{"run", "--input=ids.txt", "--only-failed", "--follow", "exec", "--", "sh", "-c", "--input x"},
			[]string{"throttle", "run", "exec", "--input", "r.jsonl", "--only-failed", "--", "sh", "-c", "--input x"}},
		{[]string{"demo", "--parallelism", "4"}, nil},
		// A job across hosts is retried on one host; a shared limit keeps its redis, without
		// the password.
		{[]string{"run", "http", "--input", "ids.txt", "--redis", "redis://:pw@r:6379/0", "--job", "j", "--reset", "--lease=20s", "--host-parallelism", "8"},
			[]string{"throttle", "run", "http", "--input", "r.jsonl", "--only-failed"}},
		{[]string{"run", "http", "--input", "ids.txt", "--redis", "redis://:pw@r:6379/0", "--job=j", "--limit", "tmdb"},
			[]string{"throttle", "run", "http", "--redis", "redis://REDACTED@r:6379/0", "--limit", "tmdb", "--input", "r.jsonl", "--only-failed"}},
		{[]string{"join", "--redis", "redis://r:6379/0", "--job", "j"}, nil},
		// A --limit in the exec adapter's command is not throttle's.
		{[]string{"run", "--input", "ids.txt", "--redis", "redis://r:6379/0", "--job", "j", "exec", "--", "tool", "--limit", "5"},
			[]string{"throttle", "run", "exec", "--input", "r.jsonl", "--only-failed", "--", "tool", "--limit", "5"}},
	} {
		if got := retryArgs(tc.args, "r.jsonl"); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("retryArgs(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestSummaryLinesFit: a cause with a long message and a long command wrap within 80 columns:
// the message cut with …, the command's lines ending in a backslash.
func TestSummaryLinesFit(t *testing.T) {
	long := strings.Repeat("the upstream said something long and unhelpful ", 4)
	lines := causeLines(failureGroup{Status: 502, Class: "5xx", Count: 12345, Sample: long + "\nsecond line"})
	if len(lines) != 2 || lines[0] != "  12,345 × 502 (5xx):" || !strings.HasSuffix(lines[1], "…") ||
		utf8.RuneCountInString(lines[1]) != 80 || strings.Contains(lines[1], "\n") {
		t.Errorf("cause lines %q: want the head, then the message cut with … at 80", lines)
	}
	if got := causeLines(failureGroup{Class: "timeout", Count: 2, Sample: "timeout after 30s after 4 attempts"}); !reflect.DeepEqual(got, []string{"  2 × timeout: timeout after 30s after 4 attempts"}) {
		t.Errorf("cause lines %q", got)
	}
	cmd := []string{"throttle", "run", "http", "--url", "https://api.example.com/v1/users/{item}/profile?expand=all",
		"--header", "Authorization: Bearer ${API_TOKEN}", "--header", "X-Who: it's me", "--parallelism", "8",
		"--rate", "50/s", "--input", "results.jsonl", "--only-failed"}
	wrapped := wrapCommand(cmd, 80)
	for i, l := range wrapped {
		if utf8.RuneCountInString(l) > 80 || (i < len(wrapped)-1) != strings.HasSuffix(l, " \\") {
			t.Errorf("line %d %q: want at most 80 columns, a backslash on every line but the last", i, l)
		}
	}
	text := strings.Join(wrapped, "\n")
	for _, want := range []string{"'Authorization: Bearer ${API_TOKEN}'", `'X-Who: it'\''s me'`, "--input results.jsonl"} {
		if !strings.Contains(text, want) {
			t.Errorf("the command does not hold %s:\n%s", want, text)
		}
	}
}

// TestOKRowStatus: the quick reading of an ok row's head agrees with decoding the row, for
// items whose text looks like the row's own fields; a failed row is left to the decoder.
func TestOKRowStatus(t *testing.T) {
	items := []engine.Item{
		{Line: `plain`},
		{Line: `a "quoted" \ item,"ok":false,"status":500 }{`},
		{Line: `{"id":"x}\"{","ok":false,"n":[1,{"status":503}]}`, JSON: true},
	}
	for _, it := range items {
		for _, r := range []engine.Result{{Item: it, OK: true, Status: 201, Output: json.RawMessage(`{"status":404}`)},
			{Item: it, OK: true}, {Item: it, Status: 503, Error: "503 Service Unavailable"}} {
			line := engine.AppendRow(nil, &r)
			var want struct {
				OK     bool `json:"ok"`
				Status int  `json:"status"`
			}
			if err := json.Unmarshal(line, &want); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			status, ok := okRowStatus(line)
			if ok != want.OK || (ok && status != want.Status) {
				t.Errorf("%s: okRowStatus %d, %v; the row says %d, %v", line, status, ok, want.Status, want.OK)
			}
		}
	}
}
