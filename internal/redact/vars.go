package redact

// Vars scrubs the values of named environment variables, the secrets a run's templates read
// (${NAME} in a header or a body). It looks them up again at every use, so that a token
// rotated during the run is scrubbed too, and it keeps every value it has seen, so that a
// value changed stays scrubbed. It is safe for concurrent use.
type Vars struct {
	lookup func(string) (string, bool)
	names  []string
	set    Set
}

// NewVars returns a Vars of the variables names, read through lookup (os.LookupEnv or a
// test's own).
func NewVars(lookup func(string) (string, bool), names []string) *Vars {
	v := &Vars{lookup: lookup, names: append([]string(nil), names...)}
	v.refresh()
	return v
}

// Empty reports whether v names no variable: it has nothing of its own to scrub.
func (v *Vars) Empty() bool { return len(v.names) == 0 }

// refresh looks the variables up again.
func (v *Vars) refresh() {
	if v.lookup == nil {
		return
	}
	for _, name := range v.names {
		if s, ok := v.lookup(name); ok {
			v.set.Add(s)
		}
	}
}

// String returns t with every spelling of every value of the variables replaced by [Mask].
func (v *Vars) String(t string) string {
	v.refresh()
	return v.set.String(t)
}

// Text is [Vars.String] after [URLs]: for a message, where a URL's credentials and query
// values must go even when they are not a known secret.
func (v *Vars) Text(t string) string {
	v.refresh()
	return v.set.Text(t)
}
