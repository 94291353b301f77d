package cli_test

import (
	"os"
	"strings"
	"testing"
)

// TestHostWaitHelpAgreesWithDocs: `run http --help` and the adapters page say the same of how
// a call waits for its host's turn (adapters/hosts.go: maxHostWait, then engine.Later),
// whatever the width the help is wrapped to.
func TestHostWaitHelpAgreesWithDocs(t *testing.T) {
	t.Parallel()
	res := run(t, invocation{args: []string{"run", "http", "--help"}})
	if res.code != 0 {
		t.Fatalf("run http --help: exit %d\n%s", res.code, res.stderr)
	}
	doc, err := os.ReadFile("../docs/adapters.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	help, page := flat(res.stdout), flat(string(doc))
	for _, claim := range []string{"at most 200 ms for its host's turn", "goes back in the queue", "one slow host cannot take every worker"} {
		if !strings.Contains(help, claim) {
			t.Errorf("run http --help does not say %q", claim)
		}
		if !strings.Contains(page, claim) {
			t.Errorf("docs/adapters.md does not say %q", claim)
		}
	}
}
