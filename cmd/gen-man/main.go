// Command gen-man writes throttle's man pages, one per command (throttle.1, throttle-run.1,
// throttle-run-http.1, …), from the command definitions themselves, so that they say what
// --help says. `make man` runs it:
//
//	go run ./cmd/gen-man [-version v1.2.3] DIR
//
// The pages' date is $SOURCE_DATE_EPOCH when it is set (reproducible builds), else today.
// It is a command of its own so that the man renderer stays out of the throttle binary.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/throttle-dev/throttle/cli"
)

func main() {
	version := flag.String("version", cli.Version, "the version the pages name (default: the one built in)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: gen-man [-version V] DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := generate(flag.Arg(0), cli.CommandTree(), *version); err != nil {
		fmt.Fprintf(os.Stderr, "gen-man: %v\n", err)
		os.Exit(1)
	}
}

// generate writes the man pages of root and every command under it to dir, which it creates,
// after removing the pages of an earlier run: a command that no longer exists must not keep
// its page.
func generate(dir string, root *cobra.Command, version string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, root.Name()+"*.1"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	prepare(root)
	source := root.Name()
	if version != "" {
		source += " " + version
	}
	return doc.GenManTree(root, &doc.GenManHeader{Section: "1", Source: source, Manual: "throttle manual"}, dir)
}

// prepare readies the tree as Execute would, minus what a manual has no use for. The doc
// generator adds a help command to every command that has subcommands (Execute adds one to the
// root only); they are hidden here, or each would be listed in SEE ALSO with no page. The
// "auto generated" history line goes too: its date would change every page on every run.
func prepare(c *cobra.Command) {
	c.DisableAutoGenTag = true
	if c.HasSubCommands() {
		c.InitDefaultHelpCmd()
		for _, sub := range c.Commands() {
			if sub.Name() == "help" {
				sub.Hidden = true
			}
		}
	}
	for _, sub := range c.Commands() {
		prepare(sub)
	}
}
