package cli

import (
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
func openResults(path string) (*os.File, error) {
	if path == "" {
		return nil, usageError("--out must name a file")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, usageError("--out: %v", err)
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
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
// matched by content. It adjusts in.total by a counting pass over the same matches.
func resume(env *Env, out *os.File, outPath string, in *input, reopen func() (*input, error)) error {
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return usageError("--resume: %v", err)
	}
	fin, end, torn, err := engine.ReadFinished(out)
	if err != nil {
		return usageError("--resume: %s: %v", outPath, err)
	}
	if torn {
		st, _ := out.Stat()
		if err := out.Truncate(end); err != nil {
			return usageError("--resume: cutting the torn last line of %s: %v", outPath, err)
		}
		fmt.Fprintf(env.Stderr, "resume: cut a torn last line (%d bytes) that an interrupted run left in %s\n", st.Size()-end, outPath)
	}
	if in.total >= 0 && reopen != nil {
		counting, err := reopen()
		if err != nil {
			return err
		}
		sk := &engine.Skipping{Src: counting.source, Skip: fin.Clone().Take}
		for {
			if _, err := sk.Next(); err != nil {
				break
			}
		}
		counting.close()
		in.total -= sk.Skipped
		fmt.Fprintf(env.Stderr, "resume: %s items already ok in %s are skipped; %s to run\n",
			human.Count(sk.Skipped), outPath, human.Count(in.total))
	}
	in.source = &engine.Skipping{Src: in.source, Skip: fin.Take}
	return nil
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
