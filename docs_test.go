package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdLink finds a markdown link's target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^()\s]+)\)`)

// TestDocLinks: every relative link in README.md and docs/*.md points to a file of the
// repository (and, with #anchor, to a heading of it), and no page points outside the
// repository: users get the repository, not the project's shared folder (../shared).
func TestDocLinks(t *testing.T) {
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append([]string{"README.md"}, pages...)
	if len(pages) < 2 {
		t.Fatalf("no pages under docs/: %v", pages)
	}
	links := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.Contains(text, "../shared") || strings.Contains(text, "shared/CONTRACT") {
			t.Errorf("%s mentions the project's shared folder, which users never see", page)
		}
		for _, m := range mdLink.FindAllStringSubmatch(withoutCode(text), -1) {
			target := m[1]
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			if err := checkLink(root, page, target); err != nil {
				t.Errorf("%s: link %q: %v", page, target, err)
			}
		}
	}
	if links == 0 {
		t.Fatal("no relative links found: the test reads nothing")
	}
}

// checkLink says what is wrong with a relative link from page (a path under root), if anything.
func checkLink(root, page, target string) error {
	file, anchor, _ := strings.Cut(target, "#")
	path := page
	if file != "" {
		path = filepath.Join(filepath.Dir(page), file)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(root, abs); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return errors.New("it leaves the repository")
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if anchor == "" {
		return nil
	}
	if st.IsDir() || !strings.HasSuffix(path, ".md") {
		return errors.New("an anchor into a file that is not a page")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !hasAnchor(string(b), anchor) {
		return fmt.Errorf("%s has no heading #%s", path, anchor)
	}
	return nil
}

// withoutCode drops fenced code blocks and inline code, whose brackets are not links.
func withoutCode(s string) string {
	var out []string
	fenced := false
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			out = append(out, regexp.MustCompile("`[^`]*`").ReplaceAllString(l, "``"))
		}
	}
	return strings.Join(out, "\n")
}

// hasAnchor reports whether the page has a heading whose GitHub anchor is anchor.
func hasAnchor(page, anchor string) bool {
	fenced := false
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(l, "#") {
			continue
		}
		if githubAnchor(strings.TrimLeft(l, "# ")) == anchor {
			return true
		}
	}
	return false
}

// githubAnchor is the id GitHub gives a heading: lower case, punctuation dropped, spaces as -.
func githubAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDocLinksCatchesABrokenOne: the link check fails on the mistakes it is for: a missing
// file, a link out of the repository (even to a file that exists there), a missing heading.
func TestDocLinksCatchesABrokenOne(t *testing.T) {
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"nope.md", "../../shared/CONTRACT.md", "../../README.md", "README.md#no-such-heading"} {
		if checkLink(root, "docs/README.md", target) == nil {
			t.Errorf("docs/README.md: the link %q passes", target)
		}
	}
	for _, target := range []string{"running.md", "../go.mod", "rows.md#the-end-of-a-run", "../record/format.go"} {
		if err := checkLink(root, "docs/README.md", target); err != nil {
			t.Errorf("docs/README.md: the good link %q fails: %v", target, err)
		}
	}
	if m := mdLink.FindStringSubmatch(withoutCode("```\n[x](nope.md)\n```\n`[y](nope.md)`")); m != nil {
		t.Errorf("a link in code was taken: %v", m)
	}
	if got := githubAnchor("Is it safe to go faster? The advisor, `--auto` and `throttle probe`"); got != "is-it-safe-to-go-faster-the-advisor---auto-and-throttle-probe" {
		t.Errorf("anchor %q", got)
	}
}
