// Package control serves a running job's control socket and talks to it: a private unix
// socket (0600 in a 0700 directory owned by the user, like tmux's /tmp/tmux-UID) over which
// `throttle ctl` reads the live settings and snapshot and changes them. Every connection's
// peer must be the same user (SO_PEERCRED).
package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
)

// maxSocketPath is the longest path a unix socket address holds (sun_path, with its NUL).
const maxSocketPath = 107

// Dir returns the user's private directory for control sockets, /tmp/throttle-UID, creating
// it 0700 if needed and refusing it unless it is a real directory (not a symlink) owned by the
// user with no access for others. Not $XDG_RUNTIME_DIR: logind removes it at the user's last
// logout, often exactly when ssh drops.
func Dir() (string, error) {
	dir := filepath.Join(os.TempDir(), "throttle-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("control: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// checkPrivateDir refuses a directory that is a symlink, not owned by this user, or open to
// others.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
		return fmt.Errorf("control: %s is not a directory (a symlink?): refusing it", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Getuid() {
		return fmt.Errorf("control: %s is not owned by you: refusing it", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("control: %s has mode %v; want 0700: refusing it", dir, fi.Mode().Perm())
	}
	return nil
}

// runs numbers the runs of this process, so that each has its own socket.
var runs atomic.Int64

// DefaultPath is a new control socket path for a run of the process pid, in [Dir]:
// PID.sock for the first run, PID-N.sock for later ones.
func DefaultPath(pid int) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	name := strconv.Itoa(pid)
	if n := runs.Add(1); n > 1 {
		name += "-" + strconv.FormatInt(n, 10)
	}
	return filepath.Join(dir, name+".sock"), nil
}

// Sockets lists the control sockets in [Dir].
func Sockets() ([]string, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	return filepath.Glob(filepath.Join(dir, "*.sock"))
}
