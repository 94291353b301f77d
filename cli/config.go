package cli

// Job files: `throttle run [ADAPTER] --config job.toml` reads the run's flags from a file, and
// `--print-config` writes the effective flags as one. A job file is flat: each key is the name
// of a flag of `run` or of the adapter, with the value the flag would take on the command
// line, or a list for a repeatable flag; two more keys name the adapter ("adapter") and, for
// exec, the command ("command"). Values go through the flags' own Set, so a job file accepts
// and refuses exactly what the command line does, and its ${NAME} templates stay templates.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Keys of a job file that are not flags.
const (
	adapterKey = "adapter"
	commandKey = "command"
)

// notJobSettings are flags that say how to start this one invocation, not what the job is; a
// job file refuses them and --print-config leaves them out. A --detach in a file would
// also come back in the background run, which reads the same file, and detach it again.
var notJobSettings = map[string]bool{"config": true, "print-config": true, "detach": true, "joined": true, "help": true}

// takesCommand says whether an adapter runs a command given after -- (the "command" key).
func takesCommand(adapter *cobra.Command) bool { return adapter.Name() == "exec" }

// jobEntry is one key of a job file.
type jobEntry struct {
	key    string
	line   int
	values []string // a scalar is one value; a list, its elements
	list   bool     // the file gave a list
}

// jobFile is a parsed job file: its keys in the order they appear.
type jobFile struct {
	path    string
	entries []jobEntry
}

// errorf is a usage error at a line of the file, in the form editors jump to (file:line:).
func (jf *jobFile) errorf(line int, format string, args ...any) error {
	return usageError("%s:%d: %s", jf.path, line, fmt.Sprintf(format, args...))
}

// lookup returns the entry of key, or nil.
func (jf *jobFile) lookup(key string) *jobEntry {
	if jf == nil {
		return nil
	}
	for i := range jf.entries {
		if jf.entries[i].key == key {
			return &jf.entries[i]
		}
	}
	return nil
}

// readJobFile reads and parses a job file: YAML when its name ends in .yaml or .yml, TOML
// otherwise. It checks the file's shape only; which keys are known depends on the adapter.
func readJobFile(path string) (*jobFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError("--config: %v", err)
	}
	jf := &jobFile{path: path}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		err = jf.parseYAML(data)
	default:
		err = jf.parseTOML(data)
	}
	if err != nil {
		return nil, err
	}
	return jf, nil
}

// parseTOML reads a TOML job file. The decoder gives the values (with every TOML rule:
// escapes, 1_000, duplicate keys) but not where a key is; the parser of go-toml's unstable
// package gives each key's line, for the messages about keys and values.
func (jf *jobFile) parseTOML(data []byte) error {
	var values map[string]any
	if err := toml.Unmarshal(data, &values); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, _ := de.Position()
			return jf.errorf(line, "%s", strings.TrimPrefix(de.Error(), "toml: "))
		}
		return usageError("%s: %v", jf.path, err)
	}
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.KeyValue {
			it := e.Key()
			it.Next()
			return jf.errorf(p.Shape(it.Node().Raw).Start.Line,
				"a job file has no tables ([…]): every key is a flag name at the top, e.g. parallelism = 8")
		}
		var parts []string
		line := 0
		for it := e.Key(); it.Next(); {
			if line == 0 {
				line = p.Shape(it.Node().Raw).Start.Line
			}
			parts = append(parts, string(it.Node().Data))
		}
		if len(parts) != 1 {
			return jf.errorf(line, "dotted key %s: every key is a flag name, e.g. max-parallelism = 32", strings.Join(parts, "."))
		}
		key := parts[0]
		entry, err := tomlEntry(key, values[key])
		if err != nil {
			return jf.errorf(line, "%s: %v", key, err)
		}
		entry.line = line
		jf.entries = append(jf.entries, entry)
	}
	if err := p.Error(); err != nil { // the decoder accepted the text, so this is unexpected
		return usageError("%s: %v", jf.path, err)
	}
	return nil
}

// tomlEntry turns a decoded TOML value into the text a flag takes.
func tomlEntry(key string, v any) (jobEntry, error) {
	e := jobEntry{key: key}
	if list, ok := v.([]any); ok {
		e.list = true
		for _, x := range list {
			s, err := tomlScalar(x)
			if err != nil {
				return e, err
			}
			e.values = append(e.values, s)
		}
		return e, nil
	}
	s, err := tomlScalar(v)
	if err != nil {
		return e, err
	}
	e.values = []string{s}
	return e, nil
}

func tomlScalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	what := "a date or time: quote it"
	switch v.(type) {
	case []any:
		what = "a list in a list"
	case map[string]any:
		what = "a table"
	}
	return "", fmt.Errorf("want a string, a number, true or false, or a list of them, not %s", what)
}

// yamlLine matches yaml.v3's errors, which carry their line in the text only.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML reads a YAML job file: a mapping of flag names to scalars or lists of scalars.
// Scalars are kept as written (8, 50/s, 1s, true), which is what the flags parse.
func (jf *jobFile) parseYAML(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file: no settings
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return jf.errorf(line, "%s", m[2])
		}
		return usageError("%s: %s", jf.path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return jf.errorf(max(more.Line, 1), "a job file is one YAML document (a second begins here)")
	}
	if len(doc.Content) == 0 {
		return nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return jf.errorf(top.Line, "want a mapping of flag names to values, e.g. parallelism: 8")
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], resolveAlias(top.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return jf.errorf(k.Line, "a key must be a flag name")
		}
		if at, dup := seen[k.Value]; dup {
			return jf.errorf(k.Line, "%s is given twice (also at line %d)", k.Value, at)
		}
		seen[k.Value] = k.Line
		e := jobEntry{key: k.Value, line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			if v.Tag == "!!null" {
				return jf.errorf(k.Line, "%s has no value", k.Value)
			}
			e.values = []string{v.Value}
		case yaml.SequenceNode:
			e.list = true
			for _, x := range v.Content {
				x = resolveAlias(x)
				if x.Kind != yaml.ScalarNode || x.Tag == "!!null" {
					return jf.errorf(x.Line, "%s: a list holds values only", k.Value)
				}
				e.values = append(e.values, x.Value)
			}
		default:
			return jf.errorf(k.Line, "%s: want a value or a list of values", k.Value)
		}
		jf.entries = append(jf.entries, e)
	}
	return nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// applyJobFile is the run command's PersistentPreRunE: it applies --config to the flags and
// answers --print-config. runCmd is `run`, cmd the command cobra chose (run itself when no
// adapter was named) and args its arguments.
//
// Cobra has already chosen the command and computed the arguments it will hand to RunE, so
// when the file supplies either (its adapter, or exec's command) this hook runs the adapter
// itself and then stops cobra with a zero exit status. Either way, the adapter's RunE sees
// the same flags and arguments as from the equivalent command line.
func applyJobFile(env *Env, rf *runFlags, runCmd, cmd *cobra.Command, args []string) error {
	if rf.config == "" && !rf.printConfig {
		return nil
	}
	var jf *jobFile
	if rf.config != "" {
		var err error
		if jf, err = readJobFile(rf.config); err != nil {
			return err
		}
	}
	adapter, command, dispatch := cmd, args, false
	named := jf.lookup(adapterKey)
	if named != nil && (named.list || len(named.values) != 1) {
		return jf.errorf(named.line, "adapter: want one name, e.g. adapter = \"http\"")
	}
	if cmd == runCmd {
		if len(args) > 0 && cmd.ArgsLenAtDash() != 0 {
			return nil // an unknown adapter: run's RunE says so
		}
		if named == nil {
			if jf == nil {
				return nil // --print-config with no adapter anywhere: run's RunE asks for one
			}
			return usageError("%s names no adapter: add adapter = \"http\" (or another: %s) to it, or name it: throttle run http --config %s",
				jf.path, adapterNames(runCmd), jf.path)
		}
		adapter = findAdapter(runCmd, named.values[0])
		if adapter == nil {
			return jf.errorf(named.line, "unknown adapter %q: want one of %s", named.values[0], adapterNames(runCmd))
		}
		dispatch = true
	} else if named != nil && named.values[0] != cmd.Name() {
		return jf.errorf(named.line, "adapter %q, but the command line runs %s: drop one", named.values[0], cmd.Name())
	}
	if c := jf.lookup(commandKey); c != nil && takesCommand(adapter) && len(command) == 0 {
		if !c.list || len(c.values) == 0 || c.values[0] == "" {
			return jf.errorf(c.line, "command: want a list of the program and its arguments, each one word (no shell splits them), e.g. command = [\"curl\", \"-sf\", \"{item}\"]")
		}
		command, dispatch = c.values, true
	}
	if dispatch {
		// Parse again so that the adapter's flag set holds run's flags (cobra merges them on
		// parsing) and its arguments are the command, after a -- as exec wants it. The
		// command line's flags were parsed already; this touches no flag.
		var rest []string
		if len(command) > 0 {
			rest = append([]string{"--"}, command...)
		}
		if err := adapter.ParseFlags(rest); err != nil {
			return usageError("%v", err)
		}
		if err := adapter.ValidateArgs(adapter.Flags().Args()); err != nil {
			return usageError("%v (see '%s --help')", err, adapter.CommandPath())
		}
	}
	if err := jf.apply(runCmd, adapter); err != nil {
		return err
	}
	if rf.printConfig {
		if _, err := rf.settings(); err != nil {
			return err
		}
		if takesCommand(adapter) && len(command) > 0 && adapter.ArgsLenAtDash() != 0 {
			return usageError("%s: put the command after --: throttle run %s [flags] -- %s …", adapter.Name(), adapter.Name(), command[0])
		}
		var cmdWords []string
		if takesCommand(adapter) {
			cmdWords = command
		}
		if _, err := io.WriteString(env.Stdout, effectiveJobFile(runCmd, adapter, cmdWords)); err != nil {
			return err
		}
		return exitCode(ExitOK)
	}
	if !dispatch {
		return nil
	}
	adapter.SetContext(cmd.Context())
	var err error
	switch {
	case adapter.RunE != nil:
		err = adapter.RunE(adapter, adapter.Flags().Args())
	case adapter.Run != nil:
		adapter.Run(adapter, adapter.Flags().Args())
	}
	if err != nil {
		return err
	}
	return exitCode(ExitOK) // done: cobra must not go on to run's own RunE
}

// findAdapter returns run's command for the adapter name, or nil.
func findAdapter(runCmd *cobra.Command, name string) *cobra.Command {
	for _, c := range runCmd.Commands() {
		if c.Name() == name {
			return c
		}
	}
	return nil
}

// apply sets the file's values on the adapter's flags (run's included), except those the
// command line gave, and checks every key. It reports every bad key at once, so that a file
// is fixed in one pass.
func (jf *jobFile) apply(runCmd, adapter *cobra.Command) error {
	if jf == nil {
		return nil
	}
	fs := adapter.Flags()
	// Given by the command line, before the file sets any. Changed, not Visit: run's flags
	// were parsed in run's own flag set when the adapter comes from the file.
	given := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { given[f.Name] = f.Changed })
	var problems []string
	for _, e := range jf.entries {
		if err := jf.set(runCmd, adapter, fs, given, e); err != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: %v", jf.path, e.line, err))
		}
	}
	if len(problems) > 0 {
		return usageError("%s", strings.Join(problems, "\n"))
	}
	return nil
}

// set applies one entry.
func (jf *jobFile) set(runCmd, adapter *cobra.Command, fs *pflag.FlagSet, given map[string]bool, e jobEntry) error {
	switch {
	case e.key == adapterKey:
		return nil // chose the adapter already
	case e.key == commandKey && takesCommand(adapter):
		return nil // the command's arguments already
	case e.key == commandKey:
		return fmt.Errorf("command is for exec only; %s takes no command", adapter.Name())
	case notJobSettings[e.key]:
		return fmt.Errorf("%s is not a job setting: give --%s on the command line", e.key, e.key)
	}
	f := fs.Lookup(e.key)
	if f == nil {
		var others []string
		for _, c := range runCmd.Commands() {
			if c != adapter && c.Flags().Lookup(e.key) != nil {
				others = append(others, c.Name())
			}
		}
		if len(others) > 0 {
			return fmt.Errorf("%s is a flag of %s, not of %s", e.key, strings.Join(others, " and "), adapter.Name())
		}
		if s := suggest(e.key, jobKeys(adapter)); s != "" {
			return fmt.Errorf("unknown key %q (did you mean %s?)", e.key, s)
		}
		return fmt.Errorf("unknown key %q: the keys are the flags of 'throttle run %s --help'", e.key, adapter.Name())
	}
	if given[e.key] {
		return nil // the command line overrides the file
	}
	if _, repeatable := f.Value.(pflag.SliceValue); e.list && !repeatable {
		return fmt.Errorf("%s takes one value, not a list", e.key)
	}
	// Set, once per element, is how the command line fills a repeatable flag too: the first
	// replaces the default, the next ones add to it.
	for _, v := range e.values {
		if err := fs.Set(e.key, v); err != nil {
			return err
		}
	}
	return nil
}

// jobKeys are the keys a job file for adapter may hold.
func jobKeys(adapter *cobra.Command) []string {
	keys := []string{adapterKey}
	if takesCommand(adapter) {
		keys = append(keys, commandKey)
	}
	adapter.Flags().VisitAll(func(f *pflag.Flag) {
		if !notJobSettings[f.Name] && !f.Hidden {
			keys = append(keys, f.Name)
		}
	})
	return keys
}

// suggest returns the key nearest to key (a typo, or _ for -), or "" if none is near.
func suggest(key string, keys []string) string {
	best, bestD := "", len(key)/3+2
	for _, k := range keys {
		if d := editDistance(strings.ReplaceAll(key, "_", "-"), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// effectiveJobFile writes the effective settings as a TOML job file: the adapter, then every
// flag of run and then of the adapter that was set, by the file or the command line, and for
// exec the command. A flag set to its default value is kept, so that a saved job keeps its
// value if a default changes; defaults never set are left out. Values are what the flags
// hold, so ${NAME} templates stay templates.
func effectiveJobFile(runCmd, adapter *cobra.Command, command []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# throttle job file: throttle run --config FILE (flags on the command line override it)\n")
	fmt.Fprintf(&b, "%s = %s\n", adapterKey, tomlString(adapter.Name()))
	var runLines, adapterLines []string
	adapter.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Changed || notJobSettings[f.Name] {
			return
		}
		line := f.Name + " = " + tomlValue(f)
		if runCmd.PersistentFlags().Lookup(f.Name) != nil {
			runLines = append(runLines, line)
		} else {
			adapterLines = append(adapterLines, line)
		}
	})
	if len(command) > 0 {
		adapterLines = append(adapterLines, commandKey+" = "+tomlList(command))
	}
	for _, group := range [][]string{runLines, adapterLines} {
		if len(group) > 0 {
			b.WriteString("\n" + strings.Join(group, "\n") + "\n")
		}
	}
	return b.String()
}

var (
	tomlInt   = regexp.MustCompile(`^[-+]?(0|[1-9][0-9]*)$`)
	tomlFloat = regexp.MustCompile(`^[-+]?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)
)

// tomlValue is a flag's value as TOML: numbers and booleans bare when they read back the same,
// a repeatable flag as a list, everything else (durations, rates, sizes) as a string.
func tomlValue(f *pflag.Flag) string {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return tomlList(sv.GetSlice())
	}
	s := f.Value.String()
	t := f.Value.Type()
	switch {
	case t == "bool" && (s == "true" || s == "false"):
		return s
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || t == "count":
		if tomlInt.MatchString(s) {
			return s
		}
	case strings.HasPrefix(t, "float") && tomlFloat.MatchString(s):
		return s
	}
	return tomlString(s)
}

func tomlList(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = tomlString(v)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// tomlString quotes s as a TOML basic string. strconv.Quote would not do: TOML has no \x or
// \a escapes.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
