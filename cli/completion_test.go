package cli_test

// Tests of `throttle completion`: each script is what cobra generates for the real command
// tree, parses in its shell, and the candidates it asks the program for are the commands,
// adapters and flags. bash is always there; zsh is required under CI=true (.ci/run installs
// it) and skipped elsewhere when missing; fish is optional everywhere.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// shellOrSkip returns the path of shell, or skips the test when it is not installed; under
// CI=true a missing required shell fails the test instead, so that CI cannot pass by skipping.
func shellOrSkip(t *testing.T, shell string, required bool) string {
	t.Helper()
	p, err := exec.LookPath(shell)
	if err == nil {
		return p
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci && required {
		t.Fatalf("CI=true but %s is not installed (%v): .ci/run installs it", shell, err)
	}
	t.Skipf("%s is not installed (%v)", shell, err)
	return ""
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		shell    string
		required bool
		marker   string   // a line only the real script has
		check    []string // the shell's syntax check, with the script's path appended
	}{
		{"bash", true, "complete -o default -F __start_throttle throttle", []string{"-n"}},
		{"zsh", true, "#compdef throttle", []string{"-n"}},
		{"fish", false, "complete -c throttle", []string{"--no-execute"}},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			t.Parallel()
			res := run(t, invocation{args: []string{"completion", tc.shell}})
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit status %d, stderr %q", res.code, res.stderr)
			}
			if !strings.Contains(res.stdout, tc.marker) {
				t.Fatalf("the %s script lacks %q:\n%.400s", tc.shell, tc.marker, res.stdout)
			}
			// With descriptions: the line of help that each candidate carries.
			if !strings.Contains(res.stdout, "__complete") {
				t.Errorf("the %s script does not ask throttle __complete for its candidates", tc.shell)
			}
			sh := shellOrSkip(t, tc.shell, tc.required)
			script := filepath.Join(t.TempDir(), "throttle."+tc.shell)
			if err := os.WriteFile(script, []byte(res.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(sh, append(tc.check, script)...).CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s", tc.shell, strings.Join(tc.check, " "), err, out)
			}
		})
	}
}

// TestCompletionCandidates asks the program what the scripts ask it, in process: the commands,
// the adapters of run, the flags of run http (with their help), the shells of completion.
func TestCompletionCandidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"__complete", ""}, []string{"run\t", "demo\t", "completion\t", "version\t"}, []string{"__complete"}},
		{[]string{"__complete", "run", ""}, []string{"http\t", "sim\t", "exec\t", "postgres\t", "llm\t"}, nil},
		{[]string{"__complete", "run", "http", "--par"}, []string{"--parallelism\tstarting max_parallelism"}, nil},
		{[]string{"__complete", "run", "http", "--lo"}, []string{"--log\t"}, nil},
		{[]string{"__complete", "completion", ""}, []string{"bash", "zsh", "fish"}, []string{"powershell"}},
	} {
		res := run(t, invocation{args: tc.args})
		if res.code != 0 {
			t.Errorf("%q: exit status %d, stderr %q", tc.args, res.code, res.stderr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(res.stdout, w) {
				t.Errorf("%q: no candidate %q in:\n%s", tc.args, w, res.stdout)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(res.stdout, n) {
				t.Errorf("%q: candidate %q should not be offered:\n%s", tc.args, n, res.stdout)
			}
		}
	}
}

// TestCompletionInFish runs the fish script against the built program, as a user's shell
// would: the one end-to-end check of the script and the program's answers together. bash's
// script needs the bash-completion package to run, so bash gets the syntax check only.
func TestCompletionInFish(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the program; skipped with -short")
	}
	t.Parallel()
	fish := shellOrSkip(t, "fish", false)
	dir := t.TempDir()
	bin := bintest.Build(t) // named throttle: the script calls it by that name, found on PATH
	cmd := exec.Command(fish, "--no-config", "-c", `throttle completion fish | source; complete -C "throttle run ht"; complete -C "throttle run http --notif"`)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fish: %v\n%s", err, out)
	}
	for _, want := range []string{"http\tCall an HTTP API once per item", "--notify\twhen the run ends"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("fish completes without %q:\n%s", want, out)
		}
	}
}

func TestCompletionUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"completion"},
		{"completion", "powershell"},
		{"completion", "bash", "zsh"},
	} {
		res := run(t, invocation{args: args})
		if res.code != 2 || res.stdout != "" || !strings.Contains(res.stderr, "see 'throttle completion --help'") {
			t.Errorf("%q: exit status %d, stdout %q, stderr %q; want 2, nothing on stdout and a usage error",
				args, res.code, res.stdout, res.stderr)
		}
	}
	res := run(t, invocation{args: []string{"completion", "--help"}})
	for _, want := range []string{"source <(throttle completion bash)", "_throttle", "throttle.fish", "bash-completion"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("completion --help does not say %q:\n%s", want, res.stdout)
		}
	}
}
