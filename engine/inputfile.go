package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"
)

// InputFile is what a [FileReader] reads: an *os.File of a regular file.
type InputFile interface {
	io.Reader
	Stat() (fs.FileInfo, error)
}

// Settle is how long a file must stay unchanged (size and modification time) before a last
// line without its newline is taken as it is: a writer that appends a line in two writes is
// never that slow between them, and one that stopped for that long has finished.
const Settle = 100 * time.Millisecond

// FollowPoll is how often a followed file is looked at for new lines.
const FollowPoll = 50 * time.Millisecond

// ErrInputClosed is what a [FileReader] returns once closed while it waited for its file.
var ErrInputClosed = errors.New("input closed")

// FileReader reads a regular file for a [LineReader] in one of two ways.
//
// [ReadFileAt] reads the file as it was when the run started: up to the size counted then,
// so that a file appended to while it is read neither runs past the total nor yields a
// fragment of a line still being written. If the counted size ends inside a line, the bytes
// up to the first newline after it complete that line (and reading stops there); if no newline
// comes, the line is taken as it is once the file has stopped changing for [Settle]. [Grew]
// then says by how much the file outgrew what was read.
//
// [FollowFile] reads a file that is meant to grow: at its end it waits for more, polling every
// [FollowPoll], so that a line is taken only once its newline has arrived. It ends only when
// closed (the run is drained); a file that shrinks under it is an error.
type FileReader struct {
	f      InputFile
	limit  int64 // the counted size; -1 when following
	n      int64 // bytes returned
	last   byte  // the last byte returned
	ended  bool
	grew   int64
	settle time.Duration
	poll   time.Duration
	done   chan struct{}
	once   sync.Once
}

// ReadFileAt returns a FileReader over f that stops at size, the size f had when it was
// counted (see [FileReader]).
func ReadFileAt(f InputFile, size int64) *FileReader {
	return &FileReader{f: f, limit: size, settle: Settle, poll: 5 * time.Millisecond, done: make(chan struct{})}
}

// FollowFile returns a FileReader over f that follows it as it grows (see [FileReader]).
func FollowFile(f InputFile) *FileReader {
	return &FileReader{f: f, limit: -1, settle: Settle, poll: FollowPoll, done: make(chan struct{})}
}

// Close wakes a reader waiting for its file; its reads return [ErrInputClosed] from then on.
// It does not close the file.
func (r *FileReader) Close() {
	r.once.Do(func() { close(r.done) })
}

// Grew returns, once Read has returned io.EOF, how many bytes the file held beyond those read:
// what was appended while the run read it.
func (r *FileReader) Grew() int64 { return r.grew }

// Read reads the file under the rules of [FileReader].
func (r *FileReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.limit < 0 {
		return r.follow(p)
	}
	if r.ended {
		return 0, io.EOF
	}
	if left := r.limit - r.n; left > 0 {
		n, err := r.f.Read(p[:min(int64(len(p)), left)])
		if n > 0 {
			r.took(p[:n])
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		// The file is shorter than counted (it was cut): what is there ends the input, under
		// the same rule for a last line without its newline.
	}
	if r.n == 0 || r.last == '\n' {
		return r.end()
	}
	return r.complete(p)
}

// complete reads the rest of a line that the counted size cut: up to its newline, or, if none
// comes, until the file has stopped changing for the settle time.
func (r *FileReader) complete(p []byte) (int, error) {
	st, err := r.f.Stat()
	if err != nil {
		return 0, err
	}
	since := time.Now()
	for {
		n, err := r.f.Read(p)
		if n > 0 {
			if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
				r.took(p[:i+1])
				r.ended = true // the line is whole; what follows was appended after the start
				r.measure()
				return i + 1, nil
			}
			r.took(p[:n])
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if !r.wait(r.poll) {
			return 0, ErrInputClosed
		}
		now, err := r.f.Stat()
		if err != nil {
			return 0, err
		}
		if now.Size() != st.Size() || !now.ModTime().Equal(st.ModTime()) {
			st, since = now, time.Now()
			continue
		}
		if time.Since(since) >= r.settle {
			return r.end()
		}
	}
}

// end ends the input and measures what the file gained beyond it.
func (r *FileReader) end() (int, error) {
	r.ended = true
	r.measure()
	return 0, io.EOF
}

func (r *FileReader) measure() {
	if st, err := r.f.Stat(); err == nil && st.Size() > r.n {
		r.grew = st.Size() - r.n
	}
}

func (r *FileReader) took(b []byte) {
	r.n += int64(len(b))
	r.last = b[len(b)-1]
}

// follow reads on as the file grows; at its end it waits for more.
func (r *FileReader) follow(p []byte) (int, error) {
	for {
		n, err := r.f.Read(p)
		if n > 0 {
			r.took(p[:n])
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if st, err := r.f.Stat(); err != nil {
			return 0, err
		} else if st.Size() < r.n {
			return 0, fmt.Errorf("the followed input shrank to %d bytes after %d were read (cut or rewritten); --follow takes lines appended to it only", st.Size(), r.n)
		}
		if !r.wait(r.poll) {
			return 0, ErrInputClosed
		}
	}
}

// wait sleeps for d; false if the reader was closed meanwhile.
func (r *FileReader) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.done:
		return false
	}
}
