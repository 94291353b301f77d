package cli_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/throttle-dev/throttle/cli"
	"github.com/throttle-dev/throttle/internal/wrap"
)

// helpCommands returns the argument lists that name every command of the tree, adapter
// subcommands included (["run", "http"], ["limit", "set"], …), the root as an empty one.
func helpCommands(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if sub.Name() != "help" {
				walk(sub, append(slices.Clone(path), sub.Name()))
			}
		}
	}
	walk(cli.CommandTree(), nil)
	for _, must := range []string{"run http", "run sim", "probe http", "limit set", "demo", "replay", "completion", "version"} {
		if !slices.ContainsFunc(paths, func(p []string) bool { return strings.Join(p, " ") == must }) {
			t.Fatalf("the walk of the command tree missed %q: %q", must, paths)
		}
	}
	return paths
}

// helpAt renders `throttle ARGS --help` with COLUMNS=cols, as a pipe sees it.
func helpAt(t *testing.T, args []string, cols string) string {
	t.Helper()
	res := run(t, invocation{args: append(slices.Clone(args), "--help"), env: map[string]string{"COLUMNS": cols}})
	if res.code != 0 || res.stdout == "" {
		t.Fatalf("throttle %s --help: exit %d, stdout %q, stderr %q", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// TestHelpFitsEightyColumns renders the help of every command at COLUMNS=80 and fails on any
// line wider than 80 columns (display columns: "×" and "…" take one), naming the command
// and the line.
func TestHelpFitsEightyColumns(t *testing.T) {
	for _, args := range helpCommands(t) {
		name := strings.TrimSpace("throttle " + strings.Join(args, " "))
		out := helpAt(t, args, "80")
		for i, line := range strings.Split(out, "\n") {
			if w := wrap.Width(line); w > 80 {
				t.Errorf("%s --help, line %d is %d columns wide:\n%s", name, i+1, w, line)
			}
			if strings.TrimRight(line, " ") != line {
				t.Errorf("%s --help, line %d ends in spaces: %q", name, i+1, line)
			}
		}
	}
}

// TestHelpNarrowLosesNothing renders every command's help at 60 columns and checks that the
// wrapping only moved words: the same words in the same order as at 100 columns, every
// visible flag's --name and every subcommand's name whole, and the prose and flag table
// within 60 columns (only the examples' command lines, which must paste as written, may be
// wider).
func TestHelpNarrowLosesNothing(t *testing.T) {
	tree := cli.CommandTree()
	for _, args := range helpCommands(t) {
		name := strings.TrimSpace("throttle " + strings.Join(args, " "))
		narrow, wide := helpAt(t, args, "60"), helpAt(t, args, "100")
		// A comment of an example continued on a line of its own gains a "#": layout, not text.
		words := func(s string) []string {
			return slices.DeleteFunc(strings.Fields(s), func(w string) bool { return w == "#" })
		}
		if n, w := words(narrow), words(wide); !slices.Equal(n, w) {
			i := 0
			for i < min(len(n), len(w)) && n[i] == w[i] {
				i++
			}
			t.Errorf("%s --help at 60 columns differs from 100 columns in its words from word %d: %q vs %q",
				name, i, n[i:min(i+5, len(n))], w[i:min(i+5, len(w))])
		}
		seen := strings.Fields(narrow)
		c, _, err := tree.Find(args)
		if err != nil {
			t.Fatal(err)
		}
		check := func(f *pflag.Flag) {
			if !f.Hidden && !slices.Contains(seen, "--"+f.Name) {
				t.Errorf("%s --help at 60 columns lost the flag --%s", name, f.Name)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() && !slices.Contains(seen, sub.Name()) {
				t.Errorf("%s --help at 60 columns lost the command %s", name, sub.Name())
			}
		}
		examples := false
		for i, line := range strings.Split(narrow, "\n") {
			switch {
			case strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " "):
				examples = line == "Examples:"
			case wrap.Width(line) > 60 && !(examples && !strings.HasPrefix(strings.TrimSpace(line), "#")):
				t.Errorf("%s --help at 60 columns, line %d is %d columns wide:\n%s", name, i+1, wrap.Width(line), line)
			}
		}
	}
}

// TestHelpWidth checks where the width comes from: COLUMNS when set (within 40 to 100
// columns), 80 when help goes to no terminal.
func TestHelpWidth(t *testing.T) {
	widest := func(out string) int {
		m := 0
		for _, l := range strings.Split(out, "\n") {
			m = max(m, wrap.Width(l))
		}
		return m
	}
	args := []string{"run", "http", "--help"}
	if w := widest(run(t, invocation{args: args}).stdout); w > 80 || w < 70 {
		t.Errorf("without COLUMNS on a pipe, run http --help is %d columns wide; want the 80 of no terminal", w)
	}
	if w := widest(helpAt(t, []string{"run", "http"}, "300")); w > 100 || w <= 80 {
		t.Errorf("at COLUMNS=300, run http --help is %d columns wide; want up to 100 and past 80", w)
	}
	if w := widest(helpAt(t, []string{"run", "http"}, "junk")); w > 80 || w < 70 {
		t.Errorf("at COLUMNS=junk, run http --help is %d columns wide; want 80", w)
	}
	// help through the help command is laid out the same way.
	res := run(t, invocation{args: []string{"help", "run", "http"}, env: map[string]string{"COLUMNS": "60"}})
	if res.stdout != helpAt(t, []string{"run", "http"}, "60") {
		t.Errorf("throttle help run http differs from throttle run http --help:\n%s", res.stdout)
	}
}
