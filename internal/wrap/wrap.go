// Package wrap fits help text to a terminal's width. It breaks lines only between words, so
// that a flag name, a path or a URL is never cut, and measures in display columns (a "×" or
// an "…" takes one column, though more than one byte), so that a line said to fit does fit.
package wrap

import (
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// Width is the number of terminal columns s takes.
func Width(s string) int { return ansi.StringWidth(s) }

// Fill lays words out in lines of at most width columns: the first line after first (what
// already stands at the start of that line), the others after hang spaces. A word too wide
// to stand after hang (a long URL) starts its line further left, as far as it needs, and a
// word wider than the whole width stands alone on its line, whole: Fill never cuts a word.
// The lines carry no trailing spaces.
func Fill(first string, words []string, hang, width int) []string {
	var lines []string
	line := first
	col := Width(first)
	empty := true // no word on this line yet
	for _, w := range words {
		ww := Width(w)
		switch {
		case empty:
			if strings.TrimSpace(line) == "" && col+ww > width { // only an indentation: outdent
				line = strings.Repeat(" ", max(width-ww, 0))
				col = Width(line)
			}
			line += w
			col += ww
			empty = false
		case col+1+ww <= width:
			line += " " + w
			col += 1 + ww
		default:
			lines = append(lines, strings.TrimRight(line, " "))
			ind := hang
			if hang+ww > width {
				ind = max(width-ww, 0)
			}
			line = strings.Repeat(" ", ind) + w
			col = ind + ww
		}
	}
	return append(lines, strings.TrimRight(line, " "))
}

// Prose re-flows help prose to width. Runs of unindented lines are paragraphs, filled anew;
// blank lines stay. An indented line is laid out by itself (a table row, a command, a
// query): kept whole when it fits, else continued under its second column (the text after
// its first gap of two or more spaces), or four columns in when it has none. A line indented
// to the previous row's second column continues that row's text.
func Prose(s string, width int) string {
	var out, para []string
	row := "" // the indented line being gathered
	flush := func() {
		if len(para) > 0 {
			out = append(out, Fill("", strings.Fields(strings.Join(para, " ")), 0, width)...)
			para = nil
		}
		if row != "" {
			out = append(out, Line(row, width, 4)...)
			row = ""
		}
	}
	for _, line := range strings.Split(strings.TrimRight(s, " \t\n"), "\n") {
		line = strings.TrimRight(line, " \t")
		switch {
		case line == "":
			flush()
			out = append(out, "")
		case line[0] == ' ' || line[0] == '\t':
			if col := secondColumn(row); row != "" && col > 0 && Width(line)-Width(strings.TrimLeft(line, " ")) == col {
				row += " " + strings.TrimLeft(line, " ")
				continue
			}
			flush()
			row = line
		default:
			if row != "" {
				flush()
			}
			para = append(para, line)
		}
	}
	flush()
	return strings.Join(out, "\n")
}

// secondColumn is the column where line's text resumes after its first gap of two or more
// spaces (a table's description), or 0 when it has none.
func secondColumn(line string) int {
	body := strings.TrimLeft(line, " \t")
	gap := strings.Index(body, "  ")
	if gap <= 0 {
		return 0
	}
	return Width(line) - Width(strings.TrimLeft(body[gap:], " "))
}

// Line lays out one indented line: kept whole when it fits, else continued under its second
// column (the text after its first gap of two or more spaces: a table's description), or
// under its own indentation plus more when it has none.
func Line(line string, width, more int) []string {
	if Width(line) <= width {
		return []string{line}
	}
	body := strings.TrimLeft(line, " \t")
	lead := line[:len(line)-len(body)]
	hang := Width(lead) + more
	head := ""
	if col := secondColumn(line); col > 0 && col < width/2 {
		rest := strings.TrimLeft(body[strings.Index(body, "  "):], " ")
		head = line[:len(line)-len(rest)]
		body = rest
		hang = col
	}
	if head == "" {
		head = lead
	}
	return Fill(head, strings.Fields(body), hang, width)
}

// Example fits a command's examples to width. Comment lines (# …) are prose: a run of them
// at one indentation is filled anew under the same "# ". Every other line is a command and
// stays as written: a shell line broken at a space would no longer paste, so examples are
// written to fit the design width with \ continuations instead.
func Example(s string, width int) string {
	var out, para []string
	prefix := ""
	flush := func() {
		if len(para) > 0 {
			lines := Fill(prefix, strings.Fields(strings.Join(para, " ")), Width(prefix), width)
			for i := 1; i < len(lines); i++ { // a continued comment is still a comment
				lines[i] = prefix + strings.TrimLeft(lines[i], " ")
			}
			out = append(out, lines...)
			para = nil
		}
	}
	for _, line := range strings.Split(strings.TrimRight(s, " \t\n"), "\n") {
		line = strings.TrimRight(line, " \t")
		body := strings.TrimLeft(line, " ")
		if strings.HasPrefix(body, "# ") {
			p := line[:len(line)-len(body)] + "# "
			if p != prefix {
				flush()
				prefix = p
			}
			para = append(para, body[2:])
			continue
		}
		flush()
		prefix = ""
		out = append(out, line)
	}
	flush()
	return strings.Join(out, "\n")
}
