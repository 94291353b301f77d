package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/throttle-dev/throttle/cli"
)

// TestManPages generates the pages into a temporary directory and checks them against the
// command tree they came from: one page per command a user can run, none for a hidden command
// or a help command, each with the command's use line, its summary and every visible flag
// (its own and those it inherits), and no page left over from an earlier run.
func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000") // Nov 2023, so the date is known
	dir := t.TempDir()
	stale := filepath.Join(dir, "throttle-gone.1")
	if err := os.WriteFile(stale, []byte("a command that no longer exists"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := generate(dir, cli.CommandTree(), "v9.8.7"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the page of a removed command survived: %v", err)
	}

	// The tree as Main builds it, walked as a user would see it: visible commands only.
	want := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		want[strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"] = c
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() && sub.Name() != "help" {
				walk(sub)
			}
		}
	}
	walk(cli.CommandTree())
	for _, must := range []string{"throttle.1", "throttle-run.1", "throttle-run-http.1", "throttle-completion.1"} {
		if want[must] == nil {
			t.Fatalf("the command tree has no %s; the walk is broken", must)
		}
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	for name := range want {
		if !slices.Contains(got, name) {
			t.Errorf("no page %s", name)
		}
	}
	for _, name := range got {
		if want[name] == nil {
			t.Errorf("page %s has no command (a hidden or help command?)", name)
		}
	}

	for name, c := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue // reported above
		}
		title := strings.ToUpper(strings.TrimSuffix(name, ".1"))
		if head := ".nh\n.TH \"" + title + "\" \"1\" \"Nov 2023\" \"throttle v9.8.7\" \"throttle manual\"\n"; !strings.HasPrefix(string(b), head) {
			t.Errorf("%s: header %q, want %q", name, strings.SplitN(string(b), "\n", 3)[:2], head)
		}
		page := plain(string(b))
		if !strings.Contains(page, strings.Join(strings.Fields(c.Short), " ")) {
			t.Errorf("%s lacks its summary %q", name, c.Short)
		}
		if strings.Contains(page, "Auto generated") || strings.Contains(page, "help(1)") {
			t.Errorf("%s has a dated history line or a help command in SEE ALSO", name)
		}
		c.InheritedFlags().VisitAll(func(f *pflag.Flag) { checkFlag(t, name, page, f) })
		c.NonInheritedFlags().VisitAll(func(f *pflag.Flag) { checkFlag(t, name, page, f) })
	}
}

// checkFlag checks that page lists f with its usage, unless f is hidden.
func checkFlag(t *testing.T, name, page string, f *pflag.Flag) {
	t.Helper()
	if f.Hidden || f.Deprecated != "" {
		if strings.Contains(page, `\fB--`+f.Name+`\fP`) {
			t.Errorf("%s lists the hidden flag --%s", name, f.Name)
		}
		return
	}
	if !strings.Contains(page, `\fB--`+f.Name+`\fP`) {
		t.Errorf("%s lacks the flag --%s", name, f.Name)
		return
	}
	// The usage's first words, as roff writes them: the page says what --help says.
	words := strings.Fields(f.Usage)
	if len(words) > 3 {
		words = words[:3]
	}
	if first := strings.Join(words, " "); !strings.Contains(page, first) {
		t.Errorf("%s: --%s lacks its usage %q", name, f.Name, first)
	}
}

// plain undoes what roff does to plain text that the checks look for: a hyphen may be written
// "\-" (go-md2man versions differ), and lines are filled, so white space runs are one space.
func plain(page string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(page, `\-`, "-")), " ")
}
