package adapters

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/throttle-dev/throttle/engine"
)

// SaveConfig makes an [HTTP] adapter stream each ok answer's body to a file of its own
// instead of keeping it in the row (see [HTTPConfig]). Its zero value saves nothing.
//
// A body is written to a temporary file in SaveDir (".throttle-tmp-…", locked while it is
// written) and renamed into place only once it is complete, synced and its answer is ok, so a
// file under its final name is always whole: a killed run leaves at most temporary files,
// which the next run removes at its start (a live run's are locked and left alone). The row
// then holds "file" (the absolute path), "bytes" and "sha256" (hex, of the body as saved)
// and no output; a non-ok answer is read as without SaveDir, and saves nothing.
//
// Names never leave SaveDir: a value put into a name has "/", "\", "%", control characters
// and invalid UTF-8 percent-escaped, ".", ".." and the temporary prefix are refused, a name
// over 255 bytes is cut and made unique with a hash, and every file operation goes through an
// [os.Root] of the directory. Two items never write one file: each file is marked with its
// item (the extended attribute user.throttle.item, the item's sha256; where the filesystem
// has none, by content), and a name already in use by another item — in flight in this run,
// or a file already there — fails the second item (with the default name, it falls back to
// the item's hash). The same item, run again (a --resume after a kill), replaces its own file.
type SaveConfig struct {
	// SaveDir is the directory the bodies go to; "" saves nothing. It is created (0755, with
	// its parents) if missing, and must be writable.
	SaveDir string
	// SaveName is the file-name template: {item}, {.field}, {sha256} (hex, of the item's
	// text) and {n} (Item.Index+1), with literal text that has no "/" or control character.
	// "" gives the default name: the URL's last path segment (for an item that is a URL), the
	// "id" field (JSON Lines), or the item itself, when that is a plain name (letters, digits
	// and ._-+=@,~, at most 200 bytes, not starting with "."); otherwise, or when another item
	// holds it, the item's sha256 (with the URL's extension).
	SaveName string
	// MaxFile caps a saved body in bytes: a longer one fails its item and leaves no file.
	// 0 means no cap.
	MaxFile int64
	// SaveStopped, when set, is called once (from a call's goroutine) with the first error
	// that makes SaveDir unusable — a full disk, a read-only or vanished directory, an I/O
	// error — so that the caller can stop the run: every later ok answer fails unsaved.
	SaveStopped func(error)
	// SaveNote, when set, receives what saving has to tell the operator (temporary files a
	// killed run left, removed at the start).
	SaveNote func(string)
}

// tmpPrefix starts the temporary name of every file being written; no final name may start
// with it, since a run removes such files at its start.
const tmpPrefix = ".throttle-tmp-"

// ownerAttr is the extended attribute that marks a saved file with its item's sha256.
const ownerAttr = "user.throttle.item"

// maxNameLen is the longest file name (in bytes) of common Linux filesystems.
const maxNameLen = 255

// maxReadableLen bounds a default name taken from the item: longer ones are not readable.
const maxReadableLen = 200

// saveBufSize is the size of the buffer a body is copied through; with one per call in
// flight, it bounds saving's memory.
const saveBufSize = 64 << 10

var saveBufs = sync.Pool{New: func() any { b := make([]byte, saveBufSize); return &b }}

// saver writes bodies into the files of one directory. It is safe for concurrent use.
type saver struct {
	dir     string        // absolute; opened as an os.Root for each body, so no descriptor outlives a call
	name    *nameTemplate // nil: the default name
	maxFile int64         // 0: none
	xattr   bool          // the filesystem keeps ownerAttr
	noLink  bool          // the filesystem has no hard links: commit by rename after a check
	stopped func(error)

	mu       sync.Mutex
	inflight map[string]*reservation // names being saved now
	broken   error                   // the first error that made the directory unusable

	// wrap, when set (tests), wraps the writer of each temporary file: to inject faults.
	wrap func(io.Writer) io.Writer
}

// reservation holds a name for the item (key) whose body is being saved under it.
type reservation struct {
	key   string
	count int // calls of that item in flight (duplicate items share it)
}

// setupSave checks c and, when it names a directory, prepares it: called at the end of
// [NewHTTP]. A batch request has one body for a whole chunk, which no item's file can hold.
func (h *HTTP) setupSave(c SaveConfig) error {
	if c.SaveDir == "" {
		if c.SaveName != "" || c.MaxFile != 0 {
			return errors.New("adapters: a save name or max file size needs a save directory")
		}
		return nil
	}
	if h.body != nil && h.body.Batch() {
		return errors.New("adapters: saving bodies to files is one file per item; a batch request ({items} in the body) answers for a whole chunk")
	}
	s, err := newSaver(c)
	if err != nil {
		return err
	}
	h.save = s
	return nil
}

// newSaver checks c, creates the directory if missing, removes the temporary files that dead
// runs left in it, and checks that it can write there.
func newSaver(c SaveConfig) (*saver, error) {
	if c.MaxFile < 0 {
		return nil, fmt.Errorf("adapters: max file size %d is negative", c.MaxFile)
	}
	s := &saver{maxFile: c.MaxFile, stopped: c.SaveStopped, inflight: map[string]*reservation{}}
	if c.SaveName != "" {
		t, err := parseNameTemplate(c.SaveName)
		if err != nil {
			return nil, fmt.Errorf("adapters: save name: %w", err)
		}
		s.name = t
	}
	dir, err := filepath.Abs(c.SaveDir)
	if err != nil {
		return nil, fmt.Errorf("adapters: save dir: %w", err)
	}
	s.dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("adapters: save dir: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("adapters: save dir: %w", err)
	}
	defer func() { _ = root.Close() }() // a directory handle: closing it loses nothing
	n, err := s.removeLeftovers(root)
	if err != nil {
		return nil, fmt.Errorf("adapters: save dir %s: removing leftover temporary files: %w", dir, err)
	}
	if n > 0 && c.SaveNote != nil {
		c.SaveNote(fmt.Sprintf("save dir: removed %d temporary files that an interrupted run left in %s", n, dir))
	}
	if err := s.probe(root); err != nil {
		return nil, fmt.Errorf("adapters: save dir %s is not writable: %w", dir, err)
	}
	return s, nil
}

// probe writes a temporary file to see that the directory takes files, and whether it keeps
// owner marks and hard links.
func (s *saver) probe(root *os.Root) error {
	f, tmp, err := s.createTemp(root)
	if err != nil {
		return err
	}
	defer func() {
		_ = f.Close() // the probe file is removed next
		_ = root.Remove(tmp)
	}()
	switch err := unix.Fsetxattr(int(f.Fd()), ownerAttr, []byte("probe"), 0); {
	case err == nil:
		s.xattr = true
	case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPERM):
		// Ownership falls back to comparing contents.
	default:
		return err
	}
	link := tmp + "-link"
	switch err := root.Link(tmp, link); {
	case err == nil:
		_ = root.Remove(link)
	case linkUnsupported(err):
		s.noLink = true
	default:
		return err
	}
	return nil
}

// removeLeftovers removes the temporary files in the directory that no live run holds: a
// writer keeps its file locked until the file is renamed, so a lock we can take is a dead
// run's. It reads the directory in batches, so a directory of millions of files costs little
// memory.
func (s *saver) removeLeftovers(root *os.Root) (int, error) {
	d, err := root.Open(".")
	if err != nil {
		return 0, err
	}
	defer func() { _ = d.Close() }() // a directory handle being listed: closing it loses nothing
	removed := 0
	for {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			if !strings.HasPrefix(name, tmpPrefix) {
				continue
			}
			if st, err := root.Lstat(name); err != nil || !st.Mode().IsRegular() {
				continue
			}
			f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				continue // gone meanwhile
			}
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				if root.Remove(name) == nil {
					removed++
				}
			}
			_ = f.Close() // opened only to lock and remove; nothing written
		}
		if errors.Is(err, io.EOF) {
			return removed, nil
		}
		if err != nil {
			return removed, err
		}
	}
}

// createTemp creates and locks a new temporary file in the directory.
func (s *saver) createTemp(root *os.Root) (*os.File, string, error) {
	var lastErr error
	for range 8 {
		var r [8]byte
		_, _ = rand.Read(r[:]) // never fails
		name := tmpPrefix + hex.EncodeToString(r[:])
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, "", err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			// Another run's cleaner holds it between our create and lock, and will remove it.
			_ = f.Close() // a temporary file we did not write to, left to its cleaner
			lastErr = err
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Nlink == 0 {
			_ = f.Close() // a cleaner removed it before we locked it
			lastErr = fmt.Errorf("temporary file %s vanished", name)
			continue
		}
		return f, name, nil
	}
	return nil, "", lastErr
}

// savedBody is what became of an ok answer's body.
type savedBody struct {
	path   string // absolute
	size   int64
	sum    string // hex sha256 of the bytes saved
	failed string // why it was not saved; "" when it was
}

// fill puts the saved file into out (file, bytes and sha256 in Extra, no output), or fails
// the item with the reason it was not saved: retrying would not help (a name taken, a cap
// passed, a full disk), so it is a Fail, which keeps the answer's status in the row.
func (b *savedBody) fill(out *engine.Outcome) {
	out.Output = nil
	if b.failed != "" {
		out.Verdict = engine.Fail
		out.Message = b.failed
		return
	}
	if out.Extra == nil {
		out.Extra = make(map[string]any, 3)
	}
	out.Extra["file"] = b.path
	out.Extra["bytes"] = b.size
	out.Extra["sha256"] = b.sum
}

// notSaved is the savedBody of a body that was not saved, and why.
func notSaved(format string, args ...any) *savedBody {
	return &savedBody{failed: "not saved: " + fmt.Sprintf(format, args...)}
}

// write streams the body of resp, an ok answer for items[0], into its file. An error means
// the body could not be read (the connection failed: the call may be retried); everything
// else, the reasons a body is not saved among it, is in the savedBody.
func (s *saver) write(items []engine.Item, resp *http.Response) (*savedBody, error) {
	if len(items) != 1 { // setupSave refuses batch requests
		return notSaved("a batch answer has no file of its own"), nil
	}
	if err := s.brokenErr(); err != nil {
		return notSaved("saving stopped after an earlier error: %v", err), nil
	}
	it := items[0]
	key := itemSum(it)
	names, err := s.names(it, key)
	if err != nil {
		return notSaved("file name: %v", err), nil
	}
	if s.maxFile > 0 && resp.ContentLength > s.maxFile {
		return notSaved("the body (%d bytes) is larger than the cap on saved files (--max-file) of %d bytes", resp.ContentLength, s.maxFile), nil
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return s.stop("opening", err), nil
	}
	defer func() { _ = root.Close() }() // a directory handle: closing it loses nothing
	i, err := s.reserve(root, names, 0, key)
	if err != nil {
		return notSaved("%v", err), nil
	}
	defer func() { s.release(names[i], key) }()

	f, tmp, err := s.createTemp(root)
	if err != nil {
		return s.stop("creating a file", err), nil
	}
	committed := false
	defer func() {
		if !committed {
			_ = root.Remove(tmp)
		}
		_ = f.Close() // after the rename: the lock keeps cleaners off until then
	}()
	size, sum, tooBig, werr, rerr := s.copy(f, resp.Body)
	switch {
	case rerr != nil:
		return nil, rerr
	case tooBig:
		return notSaved("the body is larger than the cap on saved files (--max-file) of %d bytes", s.maxFile), nil
	case werr != nil:
		return s.stop("writing", werr), nil
	}
	// Synced before the rename, so that a file under its final name is whole even after a
	// power cut (a kill needs no sync: the page cache survives it).
	if err := f.Sync(); err != nil {
		return s.stop("syncing", err), nil
	}
	if s.xattr {
		if err := unix.Fsetxattr(int(f.Fd()), ownerAttr, []byte(key), 0); err != nil {
			return s.stop("marking", err), nil
		}
	}
	for {
		err := s.commit(root, tmp, names[i], key, size, sum)
		if err == nil {
			committed = true
			return &savedBody{path: filepath.Join(s.dir, names[i]), size: size, sum: sum}, nil
		}
		var taken *nameError
		if !errors.As(err, &taken) {
			return s.stop("renaming", err), nil
		}
		// Another run wrote the name meanwhile, or the filesystem cannot tell owners before
		// the content is known: try the next name, if the default naming has one.
		next, rerr := s.reserve(root, names, i+1, key)
		if rerr != nil {
			return notSaved("%v", err), nil
		}
		s.release(names[i], key)
		i = next
	}
}

// copy streams body into f through the sha256 and the size cap. werr is an error of the
// directory's filesystem, rerr one of the connection.
func (s *saver) copy(f *os.File, body io.Reader) (size int64, sum string, tooBig bool, werr, rerr error) {
	bp := saveBufs.Get().(*[]byte)
	defer saveBufs.Put(bp)
	buf := *bp
	var w io.Writer = f
	if s.wrap != nil {
		w = s.wrap(f)
	}
	h := sha256.New()
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if s.maxFile > 0 && size+int64(n) > s.maxFile {
				return size, "", true, nil, nil
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return size, "", false, err, nil
			}
			h.Write(buf[:n])
			size += int64(n)
		}
		if errors.Is(err, io.EOF) {
			return size, hex.EncodeToString(h.Sum(nil)), false, nil, nil
		}
		if err != nil {
			return size, "", false, nil, err
		}
	}
}

// nameError says a name cannot be this item's: another item holds it, or the filesystem
// refuses it. It fails the item alone, where any other error of the directory stops saving.
type nameError struct{ msg string }

func (e *nameError) Error() string { return e.msg }

// reserve takes the first of names[from:] that no other item holds — in flight in this run,
// or as a file in the directory — for the item key, and returns its index.
func (s *saver) reserve(root *os.Root, names []string, from int, key string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	why := errors.New("no name left to try")
	for i := from; i < len(names); i++ {
		name := names[i]
		if r, ok := s.inflight[name]; ok {
			if r.key != key {
				why = &nameError{fmt.Sprintf("file name %q is being saved for another item of this run; not overwritten", name)}
				continue
			}
			r.count++
			return i, nil
		}
		if err := s.mayWrite(root, name, key); err != nil {
			why = err
			continue
		}
		s.inflight[name] = &reservation{key: key, count: 1}
		return i, nil
	}
	return -1, why
}

// release gives back a name that reserve took.
func (s *saver) release(name, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.inflight[name]; ok && r.key == key {
		if r.count--; r.count == 0 {
			delete(s.inflight, name)
		}
	}
}

// mayWrite reports, before the body is read, whether the item key may write name: it is
// free, or holds the item's own file. Without owner marks, a file there is judged by its
// content at commit.
func (s *saver) mayWrite(root *os.Root, name, key string) error {
	st, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &nameError{fmt.Sprintf("file %q: %v", name, err)}
	}
	if !st.Mode().IsRegular() {
		return &nameError{fmt.Sprintf("%q is already in the save dir and is not a regular file; not overwritten", name)}
	}
	if !s.xattr {
		return nil
	}
	return s.ownedBy(root, name, key)
}

// ownedBy checks the owner mark of the file name: nil when it is the item key's.
func (s *saver) ownedBy(root *os.Root, name, key string) error {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return &nameError{fmt.Sprintf("file %q: %v", name, err)}
	}
	defer func() { _ = f.Close() }() // read-only
	var mark [64]byte
	n, err := unix.Fgetxattr(int(f.Fd()), ownerAttr, mark[:])
	switch {
	case err == nil && string(mark[:n]) == key:
		return nil
	case err == nil:
		return &nameError{fmt.Sprintf("file %q is already in the save dir, saved for another item (sha256 %.12s…); not overwritten", name, mark[:n])}
	default:
		return &nameError{fmt.Sprintf("file %q is already in the save dir and was not saved by throttle for this item; not overwritten", name)}
	}
}

// sameContent reports whether the file name holds exactly size bytes whose sha256 is sum: on
// a filesystem without owner marks, the item's own earlier file is recognised by its content.
func (s *saver) sameContent(root *os.Root, name string, size int64, sum string) bool {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }() // read-only
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() != size {
		return false
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == sum
}

// commit gives the complete temporary file tmp its final name: a hard link, which fails
// rather than overwrite a file someone else put there; if one is there, it is replaced only
// when it is the item's own (its owner mark, or without marks its content). A nameError
// says the name is another's; any other error is the filesystem's.
func (s *saver) commit(root *os.Root, tmp, name, key string, size int64, sum string) error {
	if !s.noLink {
		err := root.Link(tmp, name)
		if err == nil {
			_ = root.Remove(tmp) // a leftover link is removed by the next run
			return nil
		}
		if refusedName(err) {
			return &nameError{fmt.Sprintf("file name %q: %v", name, errors.Unwrap(err))}
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	st, err := root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Only without hard links: a check, then a rename, so a file another process puts
		// there in between would be replaced.
	case err != nil:
		return err
	case !st.Mode().IsRegular():
		return &nameError{fmt.Sprintf("%q is already in the save dir and is not a regular file; not overwritten", name)}
	case s.xattr:
		if err := s.ownedBy(root, name, key); err != nil {
			return err
		}
	case !s.sameContent(root, name, size, sum):
		return &nameError{fmt.Sprintf("file %q is already in the save dir with other content (this filesystem keeps no owner marks); not overwritten", name)}
	}
	return root.Rename(tmp, name)
}

// brokenErr returns the error that made the directory unusable, if any.
func (s *saver) brokenErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

// stop records err, an error of the directory's filesystem while doing what, as the one that
// makes the directory unusable, tells the caller once, and returns the item's unsaved body.
func (s *saver) stop(what string, err error) *savedBody {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = pe.Err // the path is a temporary name: the directory says more
	case errors.As(err, &le):
		err = le.Err
	}
	err = fmt.Errorf("%s a file in %s: %w", what, s.dir, err)
	s.mu.Lock()
	first := s.broken == nil
	if first {
		s.broken = err
	}
	s.mu.Unlock()
	if first && s.stopped != nil {
		s.stopped(err)
	}
	return notSaved("%v", err)
}

// refusedName reports whether err says the filesystem refuses a name (too long for it, or
// characters it does not take), which concerns that name only.
func refusedName(err error) bool {
	return errors.Is(err, unix.ENAMETOOLONG) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EILSEQ)
}

// linkUnsupported reports whether err says the filesystem has no hard links.
func linkUnsupported(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EMLINK)
}

// itemSum is the hex sha256 of an item's text: {sha256}, and the owner mark of its file. A
// JSON Lines item's text is its object without the white space around it, as rows hold it.
func itemSum(it engine.Item) string {
	line := it.Line
	if it.JSON {
		line = strings.Trim(line, " \t\r")
	}
	sum := sha256.Sum256([]byte(line))
	return hex.EncodeToString(sum[:])
}

// names returns the names the item may be saved under, in order of preference: the
// template's one, or the default name and then the hash.
func (s *saver) names(it engine.Item, key string) ([]string, error) {
	if s.name != nil {
		name, err := s.name.expand(it, key)
		if err != nil {
			return nil, err
		}
		name, err = checkName(name)
		if err != nil {
			return nil, err
		}
		return []string{name}, nil
	}
	readable, ext := defaultName(it)
	hashed := key + ext
	if readable == "" || readable == hashed {
		return []string{hashed}, nil
	}
	return []string{readable, hashed}, nil
}

// checkName refuses a name that would not be a plain file of the directory, and shortens one
// that is too long for the filesystem.
func checkName(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("it is empty")
	case name == "." || name == "..":
		return "", fmt.Errorf("%q is not a file name", name)
	case strings.HasPrefix(name, tmpPrefix):
		return "", fmt.Errorf("%q starts with %q, which is kept for temporary files", shorten(name), tmpPrefix)
	case strings.ContainsAny(name, "/\x00"): // escaped values and checked literals have none
		return "", fmt.Errorf("%q has a path separator or NUL", shorten(name))
	}
	if len(name) > maxNameLen {
		name = shortenName(name)
	}
	return name, nil
}

// shortenName cuts a name longer than maxNameLen bytes and appends 16 hex digits of its
// sha256 (and its extension), so that two long names that share a beginning stay apart.
func shortenName(name string) string {
	ext := filepath.Ext(name)
	if len(ext) > 16 || strings.Contains(ext, "%") {
		ext = ""
	}
	sum := sha256.Sum256([]byte(name))
	tag := "~" + hex.EncodeToString(sum[:8])
	cut := maxNameLen - len(tag) - len(ext)
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	// Not inside a %XX escape.
	if i := strings.LastIndexByte(name[max(0, cut-2):cut], '%'); i >= 0 {
		cut = max(0, cut-2) + i
	}
	return name[:cut] + tag + ext
}

// defaultName returns the readable name of an item, "" when it has none that is safe, and the
// extension its hash name should keep.
func defaultName(it engine.Item) (name, ext string) {
	var cand string
	switch {
	case it.JSON:
		switch v := it.Fields["id"].(type) {
		case string:
			cand = v
		case json.Number:
			cand = string(v)
		case float64:
			if v == math.Trunc(v) && math.Abs(v) < 1e15 {
				cand = strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
	case strings.HasPrefix(it.Line, "http://") || strings.HasPrefix(it.Line, "https://"):
		u, err := url.Parse(it.Line)
		if err != nil {
			return "", ""
		}
		p := u.EscapedPath()
		seg := p[strings.LastIndexByte(p, '/')+1:]
		if seg, err = url.PathUnescape(seg); err != nil {
			return "", ""
		}
		cand = seg
		if e := filepath.Ext(seg); len(e) >= 2 && len(e) <= 11 && plainExt(e[1:]) {
			ext = e
		}
	default:
		cand = it.Line
	}
	if !readable(cand) {
		return "", ext
	}
	return cand, ext
}

// readable reports whether s can be a file name as it is, and reads as one: letters, digits
// and a few punctuation marks, not starting with "." or "-", at most maxReadableLen bytes.
func readable(s string) bool {
	if s == "" || len(s) > maxReadableLen || s[0] == '.' || s[0] == '-' || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("._-+=@,~", r) {
			return false
		}
	}
	return true
}

// plainExt reports whether e (without its dot) is letters and digits of ASCII.
func plainExt(e string) bool {
	for i := 0; i < len(e); i++ {
		c := e[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// nameTemplate is a compiled file-name template (SaveConfig.SaveName).
type nameTemplate struct{ parts []namePart }

type namePartKind uint8

const (
	nameLiteral namePartKind = iota
	nameItem
	nameField
	nameSum
	nameNumber
)

type namePart struct {
	kind namePartKind
	text string // the literal text or the field name
}

// parseNameTemplate compiles a file-name template. Its literal text may not hold a "/" (a
// file of the directory, no subdirectories) or a control character, it must have a
// placeholder (or every item would write one file), and ${NAME} is refused: a secret would
// end up in the row.
func parseNameTemplate(src string) (*nameTemplate, error) {
	t := &nameTemplate{}
	lit := 0
	literal := func(end int) error {
		s := src[lit:end]
		for i := 0; i < len(s); i++ {
			if c := s[i]; c == '/' || c < ' ' || c == 0x7f {
				return fmt.Errorf("%q: a name is one file of the directory: no \"/\" and no control characters", src)
			}
		}
		if s != "" {
			t.parts = append(t.parts, namePart{kind: nameLiteral, text: s})
		}
		return nil
	}
	placeholders := 0
	for i := 0; i < len(src); {
		rest := src[i:]
		var kind namePartKind
		var text string
		var n int
		switch {
		case strings.HasPrefix(rest, "${"):
			return nil, fmt.Errorf("%q: environment variables are not allowed in a file name, which goes into the row", src)
		case strings.HasPrefix(rest, "{items}"), strings.HasPrefix(rest, "{items_jsonl}"):
			return nil, fmt.Errorf("%q: {items} is a whole chunk; a file is one item's", src)
		case strings.HasPrefix(rest, "{item}"):
			kind, n = nameItem, len("{item}")
		case strings.HasPrefix(rest, "{sha256}"):
			kind, n = nameSum, len("{sha256}")
		case strings.HasPrefix(rest, "{n}"):
			kind, n = nameNumber, len("{n}")
		case strings.HasPrefix(rest, "{."):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("unclosed \"{.\" at byte %d", i)
			}
			if end == 2 {
				return nil, fmt.Errorf("empty field name \"{.}\" at byte %d", i)
			}
			kind, text, n = nameField, rest[2:end], end+1
		default:
			i++
			continue
		}
		if err := literal(i); err != nil {
			return nil, err
		}
		t.parts = append(t.parts, namePart{kind: kind, text: text})
		placeholders++
		i += n
		lit = i
	}
	if err := literal(len(src)); err != nil {
		return nil, err
	}
	if placeholders == 0 {
		return nil, fmt.Errorf("%q has no placeholder ({item}, {.field}, {sha256} or {n}): every item would get the same name", src)
	}
	return t, nil
}

// expand returns the name of it; sum is the item's sha256. Values are escaped (see
// escapeName); literal text is as written.
func (t *nameTemplate) expand(it engine.Item, sum string) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.kind {
		case nameLiteral:
			b.WriteString(p.text)
		case nameItem:
			escapeName(&b, it.Line)
		case nameField:
			v, err := fieldText(it, p.text)
			if err != nil {
				return "", errors.Unwrap(err) // the Permanent wrapper says nothing here
			}
			escapeName(&b, v)
		case nameSum:
			b.WriteString(sum)
		case nameNumber:
			b.WriteString(strconv.FormatInt(it.Index+1, 10))
		}
	}
	return b.String(), nil
}

// escapeName writes v to b with every byte that could make it leave the directory or
// mislead — "/", "\", control characters, invalid UTF-8 — and "%" itself written as %XX, so
// that two different values never give one name.
func escapeName(b *strings.Builder, v string) {
	const hexUpper = "0123456789ABCDEF"
	for i := 0; i < len(v); {
		c := v[i]
		if c >= utf8.RuneSelf {
			if r, size := utf8.DecodeRuneInString(v[i:]); r != utf8.RuneError || size > 1 {
				b.WriteString(v[i : i+size])
				i += size
				continue
			}
		} else if c >= ' ' && c != 0x7f && c != '/' && c != '\\' && c != '%' {
			b.WriteByte(c)
			i++
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexUpper[c>>4])
		b.WriteByte(hexUpper[c&0xf])
		i++
	}
}
