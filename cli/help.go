package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/throttle-dev/throttle/internal/wrap"
)

// Help widths: 80 columns is the design width (and the width when the help does not go to a
// terminal: a pipe, a file, a test); wider terminals get up to maxHelpWidth, past which prose
// gets hard to read; below minHelpWidth a flag's name leaves no room for its description, so
// the terminal's own wrapping is left to do the rest.
const (
	defaultHelpWidth = 80
	maxHelpWidth     = 100
	minHelpWidth     = 40
)

// helpWidth is the width help written to w is laid out for: $COLUMNS when it is set (a user
// or a test asking for a width), else the terminal's, else 80.
func helpWidth(env *Env, w io.Writer) int {
	cols := 0
	if v, ok := env.LookupEnv("COLUMNS"); ok {
		cols, _ = strconv.Atoi(strings.TrimSpace(v))
	}
	if f, ok := w.(*os.File); ok && cols <= 0 && term.IsTerminal(int(f.Fd())) {
		cols, _, _ = term.GetSize(int(f.Fd()))
	}
	if cols <= 0 {
		return defaultHelpWidth
	}
	return min(max(cols, minHelpWidth), maxHelpWidth)
}

// installHelp gives root, and so every command under it, cobra help and usage functions that
// lay the text out for the width of the terminal: prose re-flowed, flag descriptions wrapped
// under their column, the commands' summaries continued under theirs. The text itself stays
// in the commands' Long, Example and flag usages, where the man pages (cmd/gen-man) read it.
func installHelp(root *cobra.Command, env *Env) {
	root.SetHelpFunc(func(c *cobra.Command, _ []string) {
		w := c.OutOrStdout()
		writeHelp(w, c, helpWidth(env, w))
	})
	root.SetUsageFunc(func(c *cobra.Command) error {
		w := c.OutOrStderr()
		writeUsage(w, c, helpWidth(env, w))
		return nil
	})
}

// writeHelp writes c's help, laid out for width columns: its description, then its usage.
func writeHelp(w io.Writer, c *cobra.Command, width int) {
	text := c.Long
	if text == "" {
		text = c.Short
	}
	if text = strings.TrimSpace(text); text != "" {
		fmt.Fprintf(w, "%s\n\n", wrap.Prose(text, width))
	}
	if c.Runnable() || c.HasSubCommands() {
		writeUsage(w, c, width)
	}
}

// writeUsage writes what cobra's default usage template does, laid out for width columns.
func writeUsage(w io.Writer, c *cobra.Command, width int) {
	var b strings.Builder
	b.WriteString("Usage:")
	if c.Runnable() {
		b.WriteString("\n" + strings.Join(wrap.Fill("  ", strings.Fields(c.UseLine()), 6, width), "\n"))
	}
	if c.HasAvailableSubCommands() {
		b.WriteString("\n  " + c.CommandPath() + " [command]")
	}
	if len(c.Aliases) > 0 {
		b.WriteString("\n\nAliases:\n  " + c.NameAndAliases())
	}
	if c.HasExample() {
		b.WriteString("\n\nExamples:\n" + wrap.Example(c.Example, width))
	}
	if c.HasAvailableSubCommands() {
		b.WriteString("\n\nAvailable Commands:")
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() || sub.Name() == "help" {
				head := "  " + fmt.Sprintf("%-*s", sub.NamePadding(), sub.Name()) + " "
				b.WriteString("\n" + strings.Join(wrap.Fill(head, strings.Fields(sub.Short), wrap.Width(head), width), "\n"))
			}
		}
	}
	if c.HasAvailableLocalFlags() {
		b.WriteString("\n\nFlags:\n" + flagUsages(c.LocalFlags().FlagUsagesWrapped(width), width))
	}
	if c.HasAvailableInheritedFlags() {
		b.WriteString("\n\nGlobal Flags:\n" + flagUsages(c.InheritedFlags().FlagUsagesWrapped(width), width))
	}
	if c.HasAvailableSubCommands() {
		more := fmt.Sprintf("Use %q for more information about a command.", c.CommandPath()+" [command] --help")
		b.WriteString("\n\n" + wrap.Prose(more, width))
	}
	fmt.Fprintln(w, b.String())
}

// flagUsages finishes pflag's table of flags for width columns. pflag pads a description that
// starts on the next line (a narrow terminal) with spaces the line does not need, and leaves
// the rest of a description unwrapped after a word too long for its column (a URL): such a
// line is laid out again, continued under its description's column.
func flagUsages(s string, width int) string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, " \n"), "\n") {
		out = append(out, wrap.Line(strings.TrimRight(l, " "), width, 0)...)
	}
	return strings.Join(out, "\n")
}
