package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
)

// openResults opens --out for appending and takes an exclusive lock on it, so that two runs
// never write one results file at once. The lock goes with the file when it is closed (or the
// process dies).
func openResults(env *Env, path string) (*os.File, error) {
	if path == "" {
		return nil, usageError("--out must name a file")
	}
	f, err := openPrivate(env, "--out", path, os.O_RDWR|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return nil, usageError("--out: %v", err)
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close() // the lock failed: that error is the one to tell
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, usageError("--out %s: another throttle run is writing it (it holds the file's lock); wait for it, or pick another --out", path)
			}
			return nil, usageError("--out %s: cannot lock it: %v", path, err)
		}
	}
	return f, nil
}

// resume reads the results already in out (which the caller holds locked), cuts a torn last
// line left by a killed run, and wraps in so that each ok row skips one occurrence of its item,
// matched by content. An ok row that names a saved file (http --save-dir) counts only while
// the file is there with the size it records. It adjusts in.total by a counting pass over the
// same matches.
func resume(ctx context.Context, env *Env, out *os.File, outPath string, in *input, reopen func() (*input, error)) error {
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return usageError("--resume: %v", err)
	}
	fin, end, torn, err := engine.ReadFinishedFunc(out, savedFileThere)
	if err != nil {
		return usageError("--resume: %s: %v", outPath, err)
	}
	if fin.Dropped > 0 {
		rows, name, items := "ok rows", "name", "their items run"
		if fin.Dropped == 1 {
			rows, name, items = "ok row", "names", "its item runs"
		}
		fmt.Fprintf(env.Stderr, "resume: %s %s in %s %s a saved file that is gone or changed size; %s again\n",
			human.Count(fin.Dropped), rows, outPath, name, items)
	}
	if torn {
		st, _ := out.Stat()
		if err := out.Truncate(end); err != nil {
			return usageError("--resume: cutting the torn last line of %s: %v", outPath, err)
		}
		fmt.Fprintf(env.Stderr, "resume: cut a torn last line (%d bytes) that an interrupted run left in %s\n", st.Size()-end, outPath)
	}
	if reopen != nil {
		counting, err := reopen()
		if err != nil {
			return err
		}
		sk := &engine.Skipping{Src: counting.source, Skip: fin.Clone().Take}
		for ctx.Err() == nil {
			if _, err := sk.Next(); err != nil {
				break
			}
		}
		_ = counting.close() // read-only
		if ctx.Err() != nil {
			return errCountInterrupted
		}
		in.total -= sk.Skipped
		verb := "are"
		if sk.Skipped == 1 {
			verb = "is"
		}
		fmt.Fprintf(env.Stderr, "resume: %s already ok in %s %s skipped; %s to run\n",
			human.Counted(sk.Skipped, "item", "items"), outPath, verb, human.Count(in.total))
	}
	in.source = &engine.Skipping{Src: in.source, Skip: fin.Take}
	return nil
}

// savedFileThere reports whether the file an ok row names, if any, is still there with the
// size the row records. Rows hold absolute paths, so this needs no --save-dir: a row says
// where its file is wherever the run that wrote it was started.
func savedFileThere(row engine.Row) bool {
	if row.File == "" {
		return true
	}
	st, err := os.Stat(row.File)
	return err == nil && st.Mode().IsRegular() && st.Size() == row.Bytes
}

// onlyFailed opens a results file as input: the items whose last row failed.
func onlyFailed(path string) (*input, error) {
	if path == "-" {
		return nil, usageError("--only-failed needs a results file as --input, not stdin")
	}
	items, err := engine.Failed(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		return nil, usageError("--only-failed: %s: %v", path, err)
	}
	return &input{source: &engine.Items{List: items}, total: int64(len(items)), name: path + " (failed rows)", close: func() error { return nil }}, nil
}

// dedupe wraps in so that each distinct item runs once; later occurrences are counted.
func dedupe(in *input) {
	seen := make(map[uint64]struct{})
	sk := &engine.Skipping{Src: in.source, Skip: func(it engine.Item) bool {
		k := engine.ItemKey(it.Line)
		if _, dup := seen[k]; dup {
			return true
		}
		seen[k] = struct{}{}
		return false
	}}
	in.source = sk
}
