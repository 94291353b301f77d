package cli

import (
	"fmt"
	"os"
)

// openPrivate opens path with flag, creating it 0600 (before the umask): results, event logs
// and recordings hold whatever the target answered, which is nobody else's to read. A file
// that already exists keeps its mode — who may read it was its owner's choice, and a run that
// appends to it must not change that — but a note says so when others may read it.
func openPrivate(env *Env, what, path string, flag int) (*os.File, error) {
	before, statErr := os.Stat(path)
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	if statErr == nil && before.Mode().IsRegular() && before.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(env.Stderr, "note: %s %s already exists with mode %04o: others may read it; throttle creates such files 0600 (chmod 600 %s to match)\n",
			what, path, before.Mode().Perm(), path)
	}
	return f, nil
}
