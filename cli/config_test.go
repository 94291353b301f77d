package cli_test

// Tests of job files (--config) and --print-config through cli.Main: a job file runs like the
// same flags, the command line overrides it, bad keys and values stop the run with exit 2 and
// the file's line, and --print-config's output, given back as --config, is the same job.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// outcome is what a comparison of two runs looks at: a row without its timings.
type outcome struct {
	item   string
	ok     bool
	status int
}

// outcomes reads a results file as the sorted set of its rows' items, ok and status.
func outcomes(t *testing.T, path string) []outcome {
	t.Helper()
	var out []outcome
	for _, r := range readRows(t, path) {
		out = append(out, outcome{r.item(), *r.OK, r.Status})
	}
	slices.SortFunc(out, func(a, b outcome) int { return strings.Compare(a.item, b.item) })
	return out
}

// jobServer answers 404 for items divisible by 5 and {"path": …} for the others, once it has
// seen the headers X-Token: s3cret and X-Team: data; without them it answers 401. So a run
// whose rows match is a run that got the URL, both repeatable headers and the secret right.
func jobServer(t *testing.T) *recServer {
	t.Helper()
	return newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if a.header.Get("X-Token") != "s3cret" || a.header.Get("X-Team") != "data" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if id := itemID(a.path); id%5 == 0 {
			http.NotFound(w, r)
			return
		}
		okJSON(w, r)
	})
}

// secretEnv is the environment of the runs: the header templates read API_TOKEN.
var secretEnv = map[string]string{"API_TOKEN": "s3cret"}

// TestJobFileRunsLikeFlags runs the same http job from flags, from a TOML file (adapter named
// on the command line, and taken from the file) and from a YAML file: every run gives the
// same rows (items, ok, status), 404s included, and none of them was refused (401) for want
// of a header from the file.
func TestJobFileRunsLikeFlags(t *testing.T) {
	t.Parallel()
	srv := jobServer(t)
	items := writeItems(t, 30)
	url := srv.URL + "/items/{item}"

	flagsOut := outPath(t)
	res := run(t, invocation{env: secretEnv, args: []string{"run", "http", "--input", items, "--out", flagsOut,
		"--url", url, "--header", "X-Token: ${API_TOKEN}", "--header", "X-Team: data", "--parallelism", "4", "--retries", "0"}})
	if res.code != 1 {
		t.Fatalf("flags: exit status %d, want 1 (the 404s); stderr:\n%s", res.code, res.stderr)
	}
	want := outcomes(t, flagsOut)
	if len(want) != 30 {
		t.Fatalf("flags: %d rows, want 30", len(want))
	}
	for _, o := range want {
		n, _ := strconv.Atoi(o.item)
		if o.ok != (n%5 != 0) || (o.status != 200 && o.status != 404) {
			t.Fatalf("flags: row %+v: the server's answers were not what the test expects", o)
		}
	}

	toml := fmt.Sprintf(`# an http job
input = %q
parallelism = 4
retries = 0
url = %q
header = ["X-Token: ${API_TOKEN}", "X-Team: data"]
`, items, url)
	yaml := fmt.Sprintf(`adapter: http
input: %s
parallelism: 4
retries: 0
url: "%s"
header:
  - "X-Token: ${API_TOKEN}"
  - "X-Team: data"
`, items, url)
	for _, tc := range []struct {
		name, file, content string
		adapter             []string // on the command line
	}{
		{"toml, adapter on the command line", "job.toml", toml, []string{"http"}},
		{"toml, adapter from the file", "job.toml", "adapter = \"http\"\n" + toml, nil},
		{"yaml, adapter from the file", "job.yaml", yaml, nil},
		{"yml, adapter on both", "job.yml", yaml, []string{"http"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := outPath(t)
			args := append(append([]string{"run"}, tc.adapter...), "--config", writeFile(t, tc.file, tc.content), "--out", out)
			res := run(t, invocation{env: secretEnv, args: args})
			if res.code != 1 {
				t.Fatalf("exit status %d, want 1 as with flags; stderr:\n%s", res.code, res.stderr)
			}
			if got := outcomes(t, out); !slices.Equal(got, want) {
				t.Errorf("rows differ from the run with flags:\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestJobFileCommandLineOverrides: a flag on the command line wins over the file, and a
// repeatable one replaces the file's list instead of adding to it. The file's URL leads to
// 404s and its second header is wrong, so only a run that took both from the command line
// ends with every row ok; the file's other settings (the input, retries) still apply.
func TestJobFileCommandLineOverrides(t *testing.T) {
	t.Parallel()
	srv := jobServer(t)
	items := writeFile(t, "items.txt", "1\n2\n3\n4\n")
	job := writeFile(t, "job.toml", fmt.Sprintf(`adapter = "http"
input = %q
retries = 0
url = "%s/nowhere/{item}"
header = ["X-Token: ${API_TOKEN}", "X-Team: wrong"]
`, items, srv.URL))
	out := outPath(t)
	// The adapter is named: its flags are known to the command line only under its name.
	res := run(t, invocation{env: secretEnv, args: []string{"run", "http", "--config", job, "--out", out,
		"--url", srv.URL + "/items/{item}", "--header", "X-Token: ${API_TOKEN}", "--header", "X-Team: data"}})
	if res.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	got := outcomes(t, out)
	want := []outcome{{"1", true, 200}, {"2", true, 200}, {"3", true, 200}, {"4", true, 200}}
	if !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	for _, a := range srv.seen() {
		if vs := a.header.Values("X-Team"); len(vs) != 1 || !strings.HasPrefix(a.path, "/items/") {
			t.Errorf("the server saw %s with X-Team %q: want /items/… with the command line's one header", a.path, vs)
		}
	}

	// The same through --print-config: the overridden keys show the command line's values.
	res = run(t, invocation{args: []string{"run", "http", "--config", job, "--print-config", "--retries", "5", "--header", "X-Other: 1"}})
	if res.code != 0 {
		t.Fatalf("--print-config: exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	for _, line := range []string{"retries = 5", `header = ["X-Other: 1"]`, fmt.Sprintf("input = %q", items), `adapter = "http"`} {
		if !strings.Contains(res.stdout, "\n"+line+"\n") {
			t.Errorf("--print-config lacks the line %s:\n%s", line, res.stdout)
		}
	}
}

// TestJobFileErrors: each bad file stops the run with exit 2, before any call and before the
// results file exists, with the file, the line and the key in the message.
func TestJobFileErrors(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) { okJSON(w, r) })
	items := writeItems(t, 3)
	head := fmt.Sprintf("input = %q\nurl = \"%s/{item}\"\n", items, srv.URL) // lines 1 and 2
	for _, tc := range []struct {
		name, file, content string
		adapter             []string
		want                []string // each in stderr
	}{
		{"misspelt key", "job.toml", head + "# the knobs\nparalelism = 8\n", []string{"http"},
			[]string{`job.toml:4: unknown key "paralelism" (did you mean parallelism?)`}},
		{"underscore for dash", "job.toml", head + "max_parallelism = 8\n", []string{"http"},
			[]string{`job.toml:3: unknown key "max_parallelism" (did you mean max-parallelism?)`}},
		{"nothing near", "job.toml", head + "colour = \"blue\"\n", []string{"http"},
			[]string{`job.toml:3: unknown key "colour": the keys are the flags of 'throttle run http --help'`}},
		{"every bad key at once", "job.toml", "paralelism = 8\n" + head + "retires = 2\n", []string{"http"},
			[]string{`job.toml:1: unknown key "paralelism"`, `job.toml:4: unknown key "retires" (did you mean retries?)`}},
		{"another adapter's flag", "job.toml", head + "sim-rate = \"100/s\"\n", []string{"http"},
			[]string{`job.toml:3: sim-rate is a flag of sim, not of http`}},
		{"bad value", "job.toml", head + "parallelism = \"many\"\n", []string{"http"},
			[]string{`job.toml:3: invalid argument "many" for "--parallelism" flag`}},
		{"bad duration", "job.toml", head + "pace = 1\n", []string{"http"},
			[]string{`job.toml:3: invalid argument "1" for "--pace" flag`, "missing unit"}},
		{"list for one value", "job.toml", head + "rate = [\"50/s\", \"60/s\"]\n", []string{"http"},
			[]string{`job.toml:3: rate takes one value, not a list`}},
		{"table", "job.toml", head + "[http]\nmethod = \"POST\"\n", []string{"http"},
			[]string{`job.toml:3: a job file has no tables`}},
		{"dotted key", "job.toml", head + "max.parallelism = 3\n", []string{"http"},
			[]string{`job.toml:3: dotted key max.parallelism`}},
		{"toml syntax", "job.toml", head + "parallelism = \n", []string{"http"},
			[]string{`job.toml:3: `}},
		{"key twice", "job.toml", head + "retries = 1\nretries = 2\n", []string{"http"},
			[]string{`job.toml:4: `, "retries"}},
		{"detach", "job.toml", head + "detach = true\n", []string{"http"},
			[]string{`job.toml:3: detach is not a job setting: give --detach on the command line`}},
		{"adapter mismatch", "job.toml", "adapter = \"sim\"\n" + head, []string{"http"},
			[]string{`job.toml:1: adapter "sim", but the command line runs http`}},
		{"unknown adapter", "job.toml", head + "adapter = \"ftp\"\n", nil,
			[]string{`job.toml:3: unknown adapter "ftp": want one of http`}},
		{"no adapter", "job.toml", head, nil,
			[]string{`job.toml names no adapter: add adapter = "http"`}},
		{"command for http", "job.toml", head + "command = [\"curl\"]\n", []string{"http"},
			[]string{`job.toml:3: command is for exec only; http takes no command`}},
		{"exec command as one string", "job.toml", fmt.Sprintf("input = %q\ncommand = \"curl -sf {item}\"\n", items), []string{"exec"},
			[]string{`job.toml:2: command: want a list of the program and its arguments`}},
		{"yaml misspelt key", "job.yaml", fmt.Sprintf("adapter: http\ninput: %s\nurl: \"%s/{item}\"\n\nparalelism: 8\n", items, srv.URL), nil,
			[]string{`job.yaml:5: unknown key "paralelism" (did you mean parallelism?)`}},
		{"yaml bad value", "job.yaml", fmt.Sprintf("input: %s\nurl: \"%s/{item}\"\nresume: yes\n", items, srv.URL), []string{"http"},
			[]string{`job.yaml:3: invalid argument "yes" for "--resume" flag`}},
		{"yaml key twice", "job.yml", fmt.Sprintf("input: %s\nurl: \"%s/{item}\"\nretries: 1\nretries: 2\n", items, srv.URL), []string{"http"},
			[]string{`job.yml:4: retries is given twice (also at line 3)`}},
		{"yaml nested", "job.yaml", fmt.Sprintf("input: %s\nurl: \"%s/{item}\"\nhttp:\n  method: POST\n", items, srv.URL), []string{"http"},
			[]string{`job.yaml:3: http: want a value or a list of values`}},
		{"yaml syntax", "job.yaml", "input: [a\nurl: b\n", []string{"http"},
			[]string{`job.yaml:`}},
		{"missing file", "", "", []string{"http"},
			[]string{`--config: open`}},
		{"a knob the flags refuse", "job.toml", head + "parallelism = 0\n", []string{"http"},
			[]string{`--parallelism 0: must be at least 1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "missing.toml")
			if tc.file != "" {
				path = filepath.Join(dir, tc.file)
				if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out := filepath.Join(dir, "results.jsonl")
			args := append(append([]string{"run"}, tc.adapter...), "--config", path, "--out", out)
			res := run(t, invocation{args: args})
			if res.code != 2 {
				t.Fatalf("exit status %d, want 2; stderr:\n%s", res.code, res.stderr)
			}
			msg := strings.ReplaceAll(res.stderr, dir+string(filepath.Separator), "")
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr lacks %q:\n%s", w, msg)
				}
			}
			if !strings.Contains(res.stderr, "nothing was called") {
				t.Errorf("stderr does not say that nothing was called:\n%s", res.stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the results file exists (%v): the run started", err)
			}
		})
	}
	t.Cleanup(func() {
		if n := srv.count(); n != 0 {
			t.Errorf("the server saw %d calls; a bad job file must call nothing", n)
		}
	})
}

// TestPrintConfigRoundTrip: --print-config writes the flags that were set as TOML, with ${NAME}
// templates as given and nothing called; that output given back as --config prints itself
// again, and runs the same job as the flags did.
func TestPrintConfigRoundTrip(t *testing.T) {
	t.Parallel()
	srv := jobServer(t)
	items := writeItems(t, 20)
	dir := t.TempDir()
	flags := []string{"--input", items, "--url", srv.URL + "/items/{item}", "--parallelism", "3", "--rate", "1000/s",
		"--burst", "20", "--pace", "1ms", "--retries", "0", "--timeout", "5s", "--header", "X-Token: ${API_TOKEN}",
		"--header", "X-Team: data", "--body", "id={item} say \"hi\" \\ and\ttab", "--method", "POST",
		"--max-body", "1KiB", "--headless"}

	printed := run(t, invocation{env: secretEnv, args: append([]string{"run", "http", "--print-config", "--out", filepath.Join(dir, "never.jsonl")}, flags...)})
	if printed.code != 0 {
		t.Fatalf("--print-config: exit status %d; stderr:\n%s", printed.code, printed.stderr)
	}
	if n := srv.count(); n != 0 {
		t.Errorf("--print-config made %d calls", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "never.jsonl")); !os.IsNotExist(err) {
		t.Errorf("--print-config created the results file (%v)", err)
	}
	for _, line := range []string{`adapter = "http"`, "parallelism = 3", `rate = "1000/s"`, `pace = "1ms"`, "headless = true",
		`header = ["X-Token: ${API_TOKEN}", "X-Team: data"]`, `body = "id={item} say \"hi\" \\ and\ttab"`} {
		if !strings.Contains(printed.stdout, "\n"+line+"\n") {
			t.Errorf("--print-config lacks the line %s:\n%s", line, printed.stdout)
		}
	}
	for _, never := range []string{"s3cret", "print-config", "help", "detach", "config =", "max-backoff", "retry-status"} {
		if strings.Contains(printed.stdout, never) {
			t.Errorf("--print-config prints %q (a secret, a per-invocation flag or an unset default):\n%s", never, printed.stdout)
		}
	}

	job := filepath.Join(dir, "saved.toml")
	if err := os.WriteFile(job, []byte(printed.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	again := run(t, invocation{args: []string{"run", "--config", job, "--print-config", "--out", filepath.Join(dir, "never.jsonl")}})
	if again.code != 0 || again.stdout != printed.stdout {
		t.Errorf("--print-config of the saved file (exit %d) differs:\n%s\nwant:\n%s\nstderr:\n%s", again.code, again.stdout, printed.stdout, again.stderr)
	}

	flagsOut, fileOut := filepath.Join(dir, "flags.jsonl"), filepath.Join(dir, "file.jsonl")
	if res := run(t, invocation{env: secretEnv, args: append([]string{"run", "http", "--out", flagsOut}, flags...)}); res.code != 1 {
		t.Fatalf("flags: exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
	}
	if res := run(t, invocation{env: secretEnv, args: []string{"run", "--config", job, "--out", fileOut}}); res.code != 1 {
		t.Fatalf("saved file: exit status %d, want 1; stderr:\n%s", res.code, res.stderr)
	}
	if got, want := outcomes(t, fileOut), outcomes(t, flagsOut); len(want) != 20 || !slices.Equal(got, want) {
		t.Errorf("the saved job's rows differ from the flags' (%d rows):\n got %v\nwant %v", len(want), got, want)
	}
}

// TestJobFileExecCommand: exec's command can come from the file, with the adapter named or
// not; a command after -- on the command line replaces it; --print-config prints it.
func TestJobFileExecCommand(t *testing.T) {
	t.Parallel()
	items := writeItems(t, 4)
	job := writeFile(t, "exec.yaml", fmt.Sprintf(`adapter: exec
input: %s
parallelism: 2
command: [sh, -c, 'printf "{\"file\": %%s}\n" "$1"', sh, "{item}"]
`, items))
	for _, tc := range []struct {
		name   string
		args   []string
		output string // item 2's
	}{
		{"adapter from the file", []string{"run", "--config", job}, `{"file":2}`},
		{"adapter named", []string{"run", "exec", "--config", job}, `{"file":2}`},
		{"command line's command", []string{"run", "exec", "--config", job, "--", "sh", "-c", `printf '{"cli": %s}\n' "$1"`, "sh", "{item}"}, `{"cli":2}`},
		{"command line's command, adapter from the file", []string{"run", "--config", job, "--", "sh", "-c", `printf '{"cli": %s}\n' "$1"`, "sh", "{item}"}, `{"cli":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := outPath(t)
			args := append([]string{tc.args[0], "--out", out}, tc.args[1:]...)
			res := run(t, invocation{args: args})
			if res.code != 0 {
				t.Fatalf("exit status %d, want 0; stderr:\n%s", res.code, res.stderr)
			}
			byItem := rowsByItem(t, readRows(t, out))
			if len(byItem) != 4 || string(byItem["2"].Output) != tc.output {
				t.Errorf("%d items with rows, item 2's output %s; want 4 and %s", len(byItem), byItem["2"].Output, tc.output)
			}
		})
	}

	printed := run(t, invocation{args: []string{"run", "--config", job, "--print-config"}})
	want := `command = ["sh", "-c", "printf \"{\\\"file\\\": %s}\\n\" \"$1\"", "sh", "{item}"]`
	if printed.code != 0 || !strings.Contains(printed.stdout, "\n"+want+"\n") || !strings.Contains(printed.stdout, `adapter = "exec"`) {
		t.Errorf("--print-config (exit %d) lacks the line %s:\n%s%s", printed.code, want, printed.stdout, printed.stderr)
	}
	saved := writeFile(t, "saved.toml", printed.stdout)
	out := outPath(t)
	if res := run(t, invocation{args: []string{"run", "--config", saved, "--out", out}}); res.code != 0 {
		t.Fatalf("the printed exec job: exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	if got := string(rowsByItem(t, readRows(t, out))["3"].Output); got != `{"file":3}` {
		t.Errorf("the printed exec job: item 3's output %s, want {\"file\":3}", got)
	}
}

// TestExampleJobFiles: the examples in testdata/jobs parse, hold only known keys, and print
// their settings with the secrets as templates.
func TestExampleJobFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"users-backfill.toml", []string{`adapter = "http"`, "parallelism = 8", `rate = "50/s"`, "resume = true",
			`header = ["Authorization: Bearer ${API_TOKEN}", "Content-Type: application/json"]`, `body = "{\"id\": \"{item}\", \"plan\": \"v2\"}"`}},
		{"warm-cache.yaml", []string{`adapter = "exec"`, `rate = "20/s"`, `retry-exit = "6,7,28"`, `timeout = "10s"`,
			`command = ["curl", "-sSf", "-o", "/dev/null", "-w", "{\"code\":%{http_code},\"s\":%{time_total}}", "https://cdn.example.com/{item}"]`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			res := run(t, invocation{args: []string{"run", "--config", filepath.Join("..", "testdata", "jobs", tc.file), "--print-config"}})
			if res.code != 0 {
				t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
			}
			for _, line := range tc.want {
				if !strings.Contains(res.stdout, "\n"+line+"\n") {
					t.Errorf("--print-config lacks the line %s:\n%s", line, res.stdout)
				}
			}
		})
	}
}
