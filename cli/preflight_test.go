package cli_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPreflightUnsetVariable: a ${NAME} that a template reads and the environment lacks exits 2
// before anything is called or created, naming the variable and the flag that reads it;
// whether the template came from the command line or a job file.
func TestPreflightUnsetVariable(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
	in := writeItems(t, 5)
	url := srv.URL + "/items/{item}"
	job := writeFile(t, "job.toml", fmt.Sprintf(`adapter = "http"
input = %q
url = %q
header = ["Accept: application/json", "Authorization: Bearer ${API_TOKEN}"]
`, in, url))
	for _, tc := range []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"http header", []string{"run", "http", "--input", in, "--url", url, "--header", "Authorization: Bearer ${API_TOKEN}"},
			[]string{`--header "Authorization: Bearer ${API_TOKEN}": API_TOKEN is not set in the environment; export it`}},
		{"http body", []string{"run", "http", "--input", in, "--url", url, "--body", `{"id": "{item}", "key": "${BODY_KEY}"}`},
			[]string{`--body "{\"id\": \"{item}\", \"key\": \"${BODY_KEY}\"}": BODY_KEY is not set`}},
		{"two unset, one set", []string{"run", "http", "--input", in, "--url", url, "--header", "X-Set: ${SET_ONE}",
			"--header", "Authorization: Bearer ${API_TOKEN}", "--body", "${BODY_KEY}"},
			[]string{"API_TOKEN is not set", "BODY_KEY is not set"}},
		{"with --save-dir", []string{"run", "http", "--input", in, "--url", url, "--header", "Authorization: Bearer ${API_TOKEN}",
			"--save-dir", filepath.Join(t.TempDir(), "bodies")}, []string{"API_TOKEN is not set"}},
		{"llm header", []string{"run", "llm", "--input", in, "--url", srv.URL + "/v1/chat/completions", "--model", "m",
			"--header", "Authorization: Bearer ${OPENAI_API_KEY}"},
			[]string{`--header "Authorization: Bearer ${OPENAI_API_KEY}": OPENAI_API_KEY is not set`}},
		{"job file", []string{"run", "--config", job}, []string{`--header "Authorization: Bearer ${API_TOKEN}": API_TOKEN is not set`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := outPath(t)
			res := run(t, invocation{args: append(tc.args, "--out", out), env: map[string]string{"SET_ONE": "one"}})
			if res.code != 2 {
				t.Errorf("exit status %d, want 2; stderr:\n%s", res.code, res.stderr)
			}
			for _, want := range append(tc.want, "nothing was called") {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr:\n%s\nwant it to say %q", res.stderr, want)
				}
			}
			if strings.Contains(res.stderr, "SET_ONE") {
				t.Errorf("stderr names SET_ONE, which is set:\n%s", res.stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the results file was created (%v): the run must stop before it", err)
			}
			for i, a := range tc.args {
				if a == "--save-dir" {
					if _, err := os.Stat(tc.args[i+1]); !os.IsNotExist(err) {
						t.Errorf("--save-dir was created (%v): the run must stop before the adapter is built", err)
					}
				}
			}
		})
	}
	if n := srv.count(); n != 0 {
		t.Errorf("the server saw %d calls, want 0: an unset variable must stop the run before any call", n)
	}
}

// TestPreflightSetVariableRuns: the same run with the variable set calls every item with its
// value; set but empty, it runs too, with a warning that names the variable and its flag.
func TestPreflightSetVariableRuns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, value string
		warn        bool
	}{
		{"set", "tok-preflight-1234", false},
		{"empty", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 4
			srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
			out := outPath(t)
			res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, n), "--out", out,
				"--url", srv.URL + "/items/{item}", "--header", "X-Key: ${API_TOKEN}"}, env: map[string]string{"API_TOKEN": tc.value}})
			if res.code != 0 {
				t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
			}
			if got := srv.count(); got != n {
				t.Errorf("the server saw %d calls, want %d", got, n)
			}
			for _, a := range srv.seen() {
				if got := a.header.Get("X-Key"); got != tc.value {
					t.Errorf("%s: X-Key %q, want %q", a.path, got, tc.value)
				}
			}
			warned := strings.Contains(res.stderr, `warning: --header "X-Key: ${API_TOKEN}": API_TOKEN is set but empty`)
			if warned != tc.warn {
				t.Errorf("warned of an empty variable: %v, want %v; stderr:\n%s", warned, tc.warn, res.stderr)
			}
			if len(readRows(t, out)) != n {
				t.Errorf("want %d rows", n)
			}
		})
	}
}

// TestPreflightNeedsNoVariableForHelp: --help and --print-config read no variable, so they
// work where the job's secrets are not exported.
func TestPreflightNeedsNoVariableForHelp(t *testing.T) {
	t.Parallel()
	base := []string{"run", "http", "--input", writeItems(t, 2), "--url", "http://127.0.0.1:1/{item}",
		"--header", "Authorization: Bearer ${API_TOKEN}"}
	for _, extra := range []string{"--help", "--print-config"} {
		res := run(t, invocation{args: append(append([]string{}, base...), extra)})
		if res.code != 0 || strings.Contains(res.stderr, "not set") {
			t.Errorf("%s: exit status %d, want 0 without a word of API_TOKEN; stderr:\n%s", extra, res.code, res.stderr)
		}
	}
}

// TestPreflightOutputs: a file or directory the run would write to, in a directory that does
// not exist (or under a file), exits 2 naming the flag, before any call and any file.
func TestPreflightOutputs(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
	in := writeItems(t, 3)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	aFile := writeFile(t, "plain.txt", "x")
	for _, tc := range []struct {
		flag, value, want string
	}{
		{"--out", filepath.Join(missing, "results.jsonl"), "--out " + filepath.Join(missing, "results.jsonl") + ": directory " + missing + " does not exist"},
		{"--out", dir, "is a directory; want a file"},
		{"--log", filepath.Join(missing, "events.jsonl"), "--log " + filepath.Join(missing, "events.jsonl") + ": directory " + missing + " does not exist"},
		{"--record", filepath.Join(missing, "run.rec"), "--record " + filepath.Join(missing, "run.rec") + ": directory"},
		{"--save-dir", filepath.Join(aFile, "bodies"), "--save-dir " + filepath.Join(aFile, "bodies") + ": " + aFile + " is not a directory"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			args := []string{"run", "http", "--input", in, "--url", srv.URL + "/items/{item}", tc.flag, tc.value}
			out := outPath(t)
			if tc.flag != "--out" {
				args = append(args, "--out", out)
			}
			res := run(t, invocation{args: args})
			if res.code != 2 || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("%s %s: exit status %d, stderr:\n%s\nwant 2 and %q", tc.flag, tc.value, res.code, res.stderr, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the results file was created (%v)", err)
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("the missing directory was made (%v)", err)
	}
	if n := srv.count(); n != 0 {
		t.Errorf("the server saw %d calls, want 0", n)
	}

	// A --save-dir that does not exist yet, under one that does, is made by the run.
	save := filepath.Join(t.TempDir(), "a", "b")
	res := run(t, invocation{args: []string{"run", "http", "--input", in, "--url", srv.URL + "/items/{item}",
		"--save-dir", save, "--out", outPath(t)}})
	if res.code != 0 {
		t.Errorf("a missing --save-dir under an existing directory: exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	if entries, err := os.ReadDir(save); err != nil || len(entries) != 3 {
		t.Errorf("--save-dir %s holds %d files (%v), want 3", save, len(entries), err)
	}
}

// TestPreflightNames: a --limit or --job name that cluster refuses exits 2 before Redis is
// asked (none listens at the URL given) and before any call.
func TestPreflightNames(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) { okJSON(w, r) })
	base := []string{"run", "http", "--input", writeItems(t, 3), "--url", srv.URL + "/items/{item}", "--redis", "redis://127.0.0.1:1/0"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--limit", "tmdb api"}, "--limit tmdb api: a limit's name is letters, digits"},
		{[]string{"--limit", strings.Repeat("x", 65)}, "a limit's name is letters, digits, '-', '_' or '.' (1 to 64)"},
		{[]string{"--job", "nightly/backfill"}, `--job "nightly/backfill": a job's name is letters, digits`},
	} {
		out := outPath(t)
		res := run(t, invocation{args: append(append(append([]string{}, base...), tc.args...), "--out", out)})
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%q: exit status %d, stderr:\n%s\nwant 2 and %q", tc.args, res.code, res.stderr, tc.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%q: the results file was created (%v)", tc.args, err)
		}
	}
	if n := srv.count(); n != 0 {
		t.Errorf("the server saw %d calls, want 0", n)
	}
}

// TestPreflightUnresolvableHost: a --url whose host does not resolve (.invalid never does,
// RFC 6761) is a warning that names it, not a refusal: the run goes on and every item gets
// its row. A URL whose host comes from the items is not looked up.
func TestPreflightUnresolvableHost(t *testing.T) {
	t.Parallel()
	const n = 3
	out := outPath(t)
	res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, n), "--out", out,
		"--url", "http://throttle-preflight.invalid/items/{item}", "--retries", "0"}})
	if res.code != 1 {
		t.Errorf("exit status %d, want 1 (the run went on and its calls failed); stderr:\n%s", res.code, res.stderr)
	}
	if want := "warning: --url: host throttle-preflight.invalid does not resolve here"; !strings.Contains(res.stderr, want) {
		t.Errorf("stderr:\n%s\nwant %q", res.stderr, want)
	}
	rows := readRows(t, out)
	if len(rows) != n {
		t.Errorf("%d rows, want %d: the run must go on after the warning", len(rows), n)
	}

	res = run(t, invocation{args: []string{"run", "http", "--input", writeFile(t, "urls.txt", "http://throttle-preflight.invalid/a\n"),
		"--out", outPath(t), "--url", "{item}", "--retries", "0"}})
	if strings.Contains(res.stderr, "does not resolve here") {
		t.Errorf("a host taken from the items was looked up before the run; stderr:\n%s", res.stderr)
	}
}
