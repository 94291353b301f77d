package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/cluster"
)

// Preflight: what a run checks before its first call, so that a mistake in the configuration
// costs an exit 2 with the flag to change rather than a failed row for every item. It runs
// before the adapter is built and before the results file is opened, so a refused run leaves
// nothing behind.

// resolveTimeout bounds the lookup of the target's host name before a run: a slow resolver
// must not hold up the start for long, and the lookup only ever warns.
const resolveTimeout = 2 * time.Second

// outputFiles are the flags that name a file a run writes (or appends to): the directory of
// each must exist and take files. A flag an adapter or a command does not have is skipped.
var outputFiles = []string{"out", "log", "record", "summary-json"}

// outputDirs are the flags that name a directory a run writes files into; a missing one is
// created with its parents, so the nearest directory that exists must take files.
var outputDirs = []string{"save-dir"}

// preflightRun checks, for a run's adapter command cmd, the shared settings, the names of
// --job and --limit (as cluster names them) and the places the run writes to. It calls nothing and creates nothing.
func preflightRun(rf *runFlags, cmd *cobra.Command) error {
	if _, err := rf.settings(); err != nil {
		return err
	}
	if rf.job != "" && !cluster.ValidName(rf.job) {
		return usageError("--job %q: a job's name is letters, digits, '-', '_' or '.' (1 to 64)", rf.job)
	}
	if len(rf.limits) > 0 {
		if _, err := parseLimitUses(rf.limits); err != nil {
			return err
		}
	}
	for _, name := range outputFiles {
		if f := cmd.Flags().Lookup(name); f != nil && f.Value.String() != "" {
			if err := checkOutputFile(name, f.Value.String()); err != nil {
				return err
			}
		}
	}
	for _, name := range outputDirs {
		if f := cmd.Flags().Lookup(name); f != nil && f.Value.String() != "" {
			if err := checkOutputDir(name, f.Value.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkOutputFile checks that the file path of --flag can be created or appended to: its
// directory exists and is writable, and the file, if it exists, is not a directory and is
// writable.
func checkOutputFile(flag, path string) error {
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return usageError("--%s %s is a directory; want a file", flag, path)
		}
		if err := unix.Access(path, unix.W_OK); err != nil {
			return usageError("--%s %s: cannot write to it (%v); fix its mode or pick another file", flag, path, err)
		}
		return nil
	}
	return checkWritableDir(flag, path, filepath.Dir(path))
}

// checkOutputDir checks that the directory path of --flag takes files, or, when it is
// missing, that the nearest directory above it does (the run creates the rest).
func checkOutputDir(flag, path string) error {
	dir := filepath.Clean(path)
	for {
		st, err := os.Stat(dir)
		switch {
		case err == nil && !st.IsDir():
			return usageError("--%s %s: %s is not a directory", flag, path, dir)
		case err == nil:
			return checkWritableDir(flag, path, dir)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR):
			// ENOTDIR: a file stands above it; the walk up finds and names it.
			return usageError("--%s %s: %v", flag, path, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return usageError("--%s %s: no directory of its path exists", flag, path)
		}
		dir = parent
	}
}

// checkWritableDir checks that dir, where the path of --flag goes, exists and takes files.
func checkWritableDir(flag, path, dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usageError("--%s %s: directory %s does not exist; create it (mkdir -p %s) or pick another path", flag, path, dir, dir)
	case err != nil:
		return usageError("--%s %s: %v", flag, path, err)
	case !st.IsDir():
		return usageError("--%s %s: %s is not a directory", flag, path, dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return usageError("--%s %s: cannot create files in %s (%v); pick another path", flag, path, dir, err)
	}
	return nil
}

// preflightAdapter checks, before an adapter is built, that every ${NAME} its templates read
// is set (an unset one is a usage error that names the variable and its flag; a set but empty
// one, a warning: an empty header may be meant), and warns when the host that every call goes
// to does not resolve: it may resolve later, or only through a proxy, so that is no error.
// --print-config and --help never get here: they need no variable.
func preflightAdapter(ctx context.Context, env *Env, uses []adapters.EnvUse, urlFlag, host string) error {
	if err := checkEnv(env, uses); err != nil {
		return err
	}
	if host != "" {
		warnUnresolved(ctx, env, urlFlag, host)
	}
	return nil
}

// checkEnv checks the variables of uses in env; every unset one is named in the one error.
func checkEnv(env *Env, uses []adapters.EnvUse) error {
	var unset []string
	seen := map[string]bool{}
	for _, u := range uses {
		if seen[u.Name] {
			continue
		}
		seen[u.Name] = true
		v, ok := env.LookupEnv(u.Name)
		when := "each call"
		if u.Option == "dsn" {
			when = "each connection"
		}
		switch {
		case !ok:
			unset = append(unset, fmt.Sprintf("%s: %s is not set in the environment; export it (its value is read at %s and never written anywhere)",
				envWhere(u), u.Name, when))
		case v == "":
			fmt.Fprintf(env.Stderr, "warning: %s: %s is set but empty: %s sends it empty\n", envWhere(u), u.Name, when)
		}
	}
	if len(unset) > 0 {
		return usageError("%s", strings.Join(unset, "\n"))
	}
	return nil
}

// envWhere names the flag of u, with its template when that may be quoted.
func envWhere(u adapters.EnvUse) string {
	if u.Shown == "" {
		return "--" + u.Option
	}
	return fmt.Sprintf("--%s %q", u.Option, u.Shown)
}

// warnUnresolved says on stderr when host, the target of --flag, does not resolve.
func warnUnresolved(ctx context.Context, env *Env, flag, host string) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	_, err := net.DefaultResolver.LookupHost(ctx, host)
	if err == nil {
		return
	}
	why := "it does not resolve"
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		why = "no such host"
	case errors.As(err, &de) && de.IsTimeout, errors.Is(err, context.DeadlineExceeded):
		why = fmt.Sprintf("no answer within %v", resolveTimeout)
	}
	fmt.Fprintf(env.Stderr, "warning: --%s: host %s does not resolve here (%s); the run goes on, and its calls fail with a network error unless the name resolves later or a proxy reaches it\n",
		flag, host, why)
}
