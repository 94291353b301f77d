package cli_test

import (
	"strings"
	"testing"
)

// TestUsageErrorsSayNothingWasCalledOnlyWhereTrue: "nothing was called" is the promise of exit
// status 2 from the commands that call targets; attach, ctl, limit, replay and the rest call
// nothing, so they say where to read more instead — their own --help, not the root's.
func TestUsageErrorsSayNothingWasCalledOnlyWhereTrue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args   []string
		called bool   // whether "nothing was called" belongs in the message
		help   string // the --help it points to
	}{
		{[]string{"attach"}, false, "throttle attach --help"},
		{[]string{"ctl", "bogus"}, false, "throttle ctl --help"},
		{[]string{"limit", "ls"}, false, "throttle limit ls --help"},
		{[]string{"version", "x"}, false, "throttle version --help"},
		{[]string{"run", "http", "--bogus"}, true, "throttle run http --help"},
		{[]string{"run", "http", "--input", "/nonexistent/ids.txt", "--url", "http://127.0.0.1:1/{item}"}, true, "throttle run http --help"},
		{[]string{"demo", "--items", "0"}, true, "throttle demo --help"},
		{[]string{"runn", "http"}, true, "throttle --help"}, // perhaps meant as run
	} {
		res := run(t, invocation{args: tc.args})
		if res.code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr %q", tc.args, res.code, res.stderr)
			continue
		}
		if got := strings.Contains(res.stderr, "nothing was called"); got != tc.called {
			t.Errorf("%q: says nothing was called: %v, want %v; stderr:\n%s", tc.args, got, tc.called, res.stderr)
		}
		if !strings.Contains(res.stderr, "'"+tc.help+"'") {
			t.Errorf("%q: stderr does not point to '%s':\n%s", tc.args, tc.help, res.stderr)
		}
		if tc.help != "throttle --help" && strings.Contains(res.stderr, "'throttle --help'") {
			t.Errorf("%q: points to the root's help, not the command's:\n%s", tc.args, res.stderr)
		}
	}
}

// TestPrintedErrorsCarryNoPackagePrefix: the CLI prints an error from cluster or adapters
// without the Go package's name before it.
func TestPrintedErrorsCarryNoPackagePrefix(t *testing.T) {
	t.Parallel()
	res := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 1), "--out", outPath(t),
		"--url", "http://127.0.0.1:1/{item}", "--limit", "x", "--redis", "redis://127.0.0.1:1"}})
	if res.code != 2 || !strings.Contains(res.stderr, "--limit: ") {
		t.Fatalf("exit %d, stderr %q; want 2 and a --limit error", res.code, res.stderr)
	}
	for _, p := range []string{"cluster: ", "adapters: ", "engine: ", "control: "} {
		if strings.Contains(res.stderr, p) {
			t.Errorf("stderr carries the package prefix %q:\n%s", p, res.stderr)
		}
	}
}
