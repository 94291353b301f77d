package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

// TestImportRules keeps the picture of the house true: it reads the module's import graph with
// go list and fails on an edge the layout forbids (docs/development.md, "Project layout"):
//   - the screen (tui) imports neither adapters nor cluster, not even through another package:
//     cli fills the screen's own types from them;
//   - adapters and probes do not import the screen;
//   - engine imports no package of the module;
//   - no product package imports a test kit (internal/enginetest, internal/recordtest,
//     internal/redacttest, or any package whose name ends in "test"); test kits serve tests.
//
// Only the packages' own (non-test) imports count: a test may import what it likes.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs, err := readPackages(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 10 || pkgs[0].Module == "" {
		t.Fatalf("go list found %d packages of module %q: not this module's graph", len(pkgs), pkgs[0].Module)
	}
	for _, v := range importViolations(pkgs) {
		t.Error(v)
	}
}

// TestImportRulesCatchEachForbiddenEdge checks the checker on a made-up module whose every
// rule is broken once, directly or through another package, and on one that breaks none.
func TestImportRulesCatchEachForbiddenEdge(t *testing.T) {
	const m = "example.com/m"
	graph := func(edges map[string][]string) []listedPackage {
		var pkgs []listedPackage
		for _, from := range slices.Sorted(maps.Keys(edges)) {
			name := from[strings.LastIndex(from, "/")+1:]
			p := listedPackage{ImportPath: m + "/" + from, Name: name, Module: m}
			for _, to := range edges[from] {
				p.Imports = append(p.Imports, m+"/"+to)
			}
			pkgs = append(pkgs, p)
		}
		return pkgs
	}
	clean := map[string][]string{
		"engine":              nil,
		"internal/human":      nil,
		"internal/enginetest": {"engine"},
		"internal/recordtest": {"internal/enginetest", "adapters", "engine"},
		"adapters":            {"engine", "internal/human"},
		"probes":              {"engine"},
		"cluster":             {"engine"},
		"tui":                 {"engine", "probes", "internal/human"},
		"replay":              {"engine", "probes"},
		"cli":                 {"tui", "adapters", "cluster", "replay"},
	}
	if v := importViolations(graph(clean)); len(v) != 0 {
		t.Fatalf("a module that keeps every rule broke some: %q", v)
	}
	broken := map[string][]string{
		"engine":              {"internal/human"},
		"internal/human":      nil,
		"internal/enginetest": {"engine"},
		"internal/redacttest": nil,
		"adapters":            {"engine", "tui"},
		"probes":              {"engine", "ui"},
		"ui":                  {"tui"}, // probes → ui → tui
		"cluster":             {"engine"},
		"tui":                 {"engine", "view"},
		"view":                {"cluster"}, // tui → view → cluster
		"replay":              {"engine", "internal/enginetest"},
		"metrics":             {"somethingtest"},
		"somethingtest":       {"internal/redacttest"}, // a kit may use a kit
		"cli":                 {"tui", "adapters", "replay", "metrics"},
	}
	got := importViolations(graph(broken))
	want := []string{
		"engine imports example.com/m/internal/human",
		"tui imports cluster (tui → view → cluster)",
		"adapters imports tui (adapters → tui)",
		"probes imports tui (probes → ui → tui)",
		"replay imports the test kit internal/enginetest (replay → internal/enginetest)",
		"metrics imports the test kit somethingtest (metrics → somethingtest)",
		"cli imports the test kit internal/enginetest (cli → replay → internal/enginetest)",
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(v string) bool { return strings.Contains(v, w) }) {
			t.Errorf("no violation %q among:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d violations for %d broken rules:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}

// listedPackage is what go list -json says of a package that the rules read.
type listedPackage struct {
	ImportPath string
	Name       string
	Imports    []string // its own non-test imports
	Module     string   // the module's path
}

// readPackages decodes go list -json's stream of objects.
func readPackages(r io.Reader) ([]listedPackage, error) {
	var pkgs []listedPackage
	dec := json.NewDecoder(r)
	for {
		var p struct {
			ImportPath, Name string
			Imports          []string
			Module           *struct{ Path string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return pkgs, nil
		} else if err != nil {
			return nil, fmt.Errorf("go list -json: %w", err)
		}
		lp := listedPackage{ImportPath: p.ImportPath, Name: p.Name, Imports: p.Imports}
		if p.Module != nil {
			lp.Module = p.Module.Path
		}
		pkgs = append(pkgs, lp)
	}
}

// importViolations returns one message per forbidden edge, naming it and the path of
// imports that makes it.
func importViolations(pkgs []listedPackage) []string {
	if len(pkgs) == 0 {
		return nil
	}
	mod := pkgs[0].Module
	rel := func(p string) string { // the module's root package is named by its last element
		if p == mod {
			return path.Base(mod)
		}
		return strings.TrimPrefix(p, mod+"/")
	}
	byPath := map[string]listedPackage{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	// chain is a path of the module's imports from p to a package that bad picks, or nil.
	chain := func(p listedPackage, bad func(string) bool) []string {
		prev := map[string]string{p.ImportPath: ""}
		queue := []string{p.ImportPath}
		for len(queue) > 0 {
			at := queue[0]
			queue = queue[1:]
			for _, next := range byPath[at].Imports {
				if _, seen := prev[next]; seen || !strings.HasPrefix(next, mod+"/") {
					continue
				}
				prev[next] = at
				if bad(rel(next)) {
					var hops []string
					for n := next; n != ""; n = prev[n] {
						hops = append([]string{rel(n)}, hops...)
					}
					return hops
				}
				queue = append(queue, next)
			}
		}
		return nil
	}
	within := func(pkg, root string) bool { return pkg == root || strings.HasPrefix(pkg, root+"/") }
	isKit := func(pkg string) bool {
		name := pkg[strings.LastIndex(pkg, "/")+1:]
		return strings.HasSuffix(name, "test")
	}
	var out []string
	for _, p := range pkgs {
		name := rel(p.ImportPath)
		if within(name, "engine") {
			for _, imp := range p.Imports {
				if strings.HasPrefix(imp, mod+"/") && !within(rel(imp), "engine") {
					out = append(out, fmt.Sprintf("%s imports %s: the engine imports nothing of the project", name, imp))
				}
			}
		}
		forbid := func(of, what, why string) {
			if !within(name, of) {
				return
			}
			if c := chain(p, func(n string) bool { return within(n, what) }); c != nil {
				out = append(out, fmt.Sprintf("%s imports %s (%s): %s", name, what, strings.Join(c, " → "), why))
			}
		}
		forbid("tui", "adapters", "the screen draws its own types, which cli fills from adapters")
		forbid("tui", "cluster", "the screen draws its own types, which cli fills from cluster")
		forbid("adapters", "tui", "a sink knows nothing of the screen")
		forbid("probes", "tui", "the probes feed the screen, not the other way round")
		if !isKit(name) {
			if c := chain(p, isKit); c != nil {
				out = append(out, fmt.Sprintf("%s imports the test kit %s (%s): test kits are for tests only",
					name, c[len(c)-1], strings.Join(c, " → ")))
			}
		}
	}
	return out
}
