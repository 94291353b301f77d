package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// packagePrefixes are the names the project's packages put before their errors ("adapters:
// GET …", "cluster: …"). They help a developer find the code, but a user reads them as noise,
// so printError takes them off the one line the CLI prints.
var packagePrefixes = []string{"adapters", "cluster", "engine", "control", "record", "replay",
	"probes", "metrics", "eventlog", "notify", "tui", "demo"}

// userMessage is err's text for the user: the packages' prefixes taken off wherever a part
// of the message starts (at the start, or after a ": " that wraps it). A flag's name
// ("--record: …") is not a prefix and stays.
func userMessage(err error) string {
	parts := strings.Split(err.Error(), ": ")
	out := parts[:0]
	for i, p := range parts {
		if isPackagePrefix(p) && i < len(parts)-1 {
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return err.Error()
	}
	return strings.Join(out, ": ")
}

func isPackagePrefix(s string) bool {
	for _, p := range packagePrefixes {
		if s == p {
			return true
		}
	}
	return false
}

// callsTargets reports whether cmd is one of the commands that call a target (run and its
// adapters, demo, probe, join), or the root (a mistyped command may have been meant as one):
// only for those does a usage error mean "nothing was called".
func callsTargets(cmd *cobra.Command) bool {
	if cmd == nil || !cmd.HasParent() {
		return true
	}
	for cmd.HasParent() && cmd.Parent().HasParent() {
		cmd = cmd.Parent()
	}
	switch cmd.Name() {
	case "run", "demo", "probe", "join":
		return true
	}
	return false
}

// printError prints a command's error on stderr the one way the CLI prints errors: the user's
// message, and after a usage error where to read more — with "nothing was called" only from a
// command that calls targets, where it is the promise of exit status 2.
func printError(w io.Writer, cmd *cobra.Command, err error) int {
	code := ExitUsage // cobra's own errors: unknown commands and flags, bad flag values
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
		err = ee.err
	}
	msg := userMessage(err)
	fmt.Fprintf(w, "throttle: %s\n", msg)
	if code != ExitUsage {
		return code
	}
	path := "throttle"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	var hint []string
	if callsTargets(cmd) {
		hint = append(hint, "nothing was called")
	}
	if !strings.Contains(msg, "--help'") {
		hint = append(hint, fmt.Sprintf("see '%s --help'", path))
	}
	if len(hint) > 0 {
		fmt.Fprintln(w, strings.Join(hint, "; "))
	}
	return code
}
