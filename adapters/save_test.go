package adapters

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/throttle-dev/throttle/engine"
)

// genBody is the body a test server sends for key: size bytes that depend on key.
func genBody(key string, size int) []byte {
	seed := sha256.Sum256([]byte(key))
	b := make([]byte, size)
	_, _ = rand.NewChaCha8(seed).Read(b) // never fails
	return b
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// saveServer answers every path with genBody(path, size(path)).
func saveServer(t *testing.T, size func(path string) int) string {
	t.Helper()
	return httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		b := genBody(r.URL.Path, size(r.URL.Path))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
}

// textItem and jsonItem make items as the line reader would.
func textItem(i int64, line string) engine.Item { return engine.Item{Index: i, Line: line} }

func jsonItem(t *testing.T, i int64, line string) engine.Item {
	t.Helper()
	var fields map[string]any
	if err := json.Unmarshal([]byte(line), &fields); err != nil {
		t.Fatal(err)
	}
	return engine.Item{Index: i, Line: line, JSON: true, Fields: fields}
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// noTemps fails the test if dir holds a temporary file.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, tmpPrefix) {
			t.Errorf("temporary file %s left in %s", n, dir)
		}
	}
}

// savedFile checks that out is an ok outcome whose file is in dir and holds want, and
// returns the file's name.
func savedFile(t *testing.T, out engine.Outcome, dir string, want []byte) string {
	t.Helper()
	if out.Verdict != engine.OK || out.Output != nil {
		t.Fatalf("outcome %v %q output %s; want ok with no output", out.Verdict, out.Message, out.Output)
	}
	path, _ := out.Extra["file"].(string)
	if filepath.Dir(path) != dir {
		t.Fatalf("file %q is not in %s", path, dir)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sumHex(got) != sumHex(want) || out.Extra["sha256"] != sumHex(want) || out.Extra["bytes"] != int64(len(want)) {
		t.Fatalf("file %s: %d bytes sha256 %.12s, row says %v bytes sha256 %.12s; server sent %d bytes sha256 %.12s",
			path, len(got), sumHex(got), out.Extra["bytes"], out.Extra["sha256"], len(want), sumHex(want))
	}
	return filepath.Base(path)
}

// TestSaveStreamsBodiesToFiles: 200 items in parallel through the engine land as 200 whole
// files matching the server's bytes; rows hold file, bytes and sha256, no output; a failed
// answer saves nothing.
func TestSaveStreamsBodiesToFiles(t *testing.T) {
	t.Parallel()
	size := func(p string) int { h := fnv.New32a(); h.Write([]byte(p)); return int(h.Sum32() % 40000) }
	srv := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.Error(w, "no such thing", 404)
			return
		}
		w.Write(genBody(r.URL.Path, size(r.URL.Path))) // chunked: no Content-Length
	})
	dir := filepath.Join(t.TempDir(), "out") // created by NewHTTP
	h := newTestHTTP(t, HTTPConfig{URL: srv + "/{item}", SaveConfig: SaveConfig{SaveDir: dir}})
	var lines []string
	for i := range 200 {
		lines = append(lines, fmt.Sprintf("item-%d", i))
	}
	lines = append(lines, "missing")
	var rows strings.Builder
	e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: 16}, Adapter: h,
		Source: engine.NewLineReader(strings.NewReader(strings.Join(lines, "\n")), false), Total: -1, Results: &rows})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := e.Run(context.Background())
	if err != nil || sum.OK != 200 || sum.Failed != 1 {
		t.Fatalf("run: %+v, %v; want 200 ok and 1 failed", sum, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(rows.String()), "\n") {
		var row struct {
			Item   string
			OK     bool
			Output json.RawMessage
			File   string
			Bytes  int64
			SHA256 string
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		if row.Item == "missing" {
			if row.OK || row.File != "" {
				t.Errorf("404 row %s: want failed, as without --save-dir, and no file", line)
			}
			continue
		}
		want := genBody("/"+row.Item, size("/"+row.Item))
		got, err := os.ReadFile(row.File)
		if err != nil || !row.OK || row.Output != nil || filepath.Join(dir, row.Item) != row.File ||
			row.Bytes != int64(len(want)) || row.SHA256 != sumHex(want) || sumHex(got) != sumHex(want) {
			t.Errorf("row %s: file %v, want %s with %d bytes sha256 %s", line, err, filepath.Join(dir, row.Item), len(want), sumHex(want))
		}
	}
	if n := len(dirNames(t, dir)); n != 200 {
		t.Errorf("%s holds %d files, want 200", dir, n)
	}
	noTemps(t, dir)
}

// TestSaveNamesNeverLeaveTheDir: items crafted to escape the directory — "..", absolute
// paths, separators, NUL and control characters, 300-byte names — with --save-name {item},
// {.field} and the default name, never write outside it; the names are single files of at
// most 255 bytes, and distinct items get distinct files.
func TestSaveNamesNeverLeaveTheDir(t *testing.T) {
	t.Parallel()
	srv := saveServer(t, func(string) int { return 100 })
	hostile := []string{
		"../x", "/etc/x", "a/../../x", "..", ".", "a\x00b", "\x00", "x\x01\x1b[2J", `..\..\x`, "%2e%2e%2fx",
		".throttle-tmp-x", strings.Repeat("a", 300), strings.Repeat("é", 150) + ".json", strings.Repeat("%", 100),
		"../" + strings.Repeat("b", 300), "ok",
	}
	if _, err := os.Stat("/etc/x"); err == nil {
		t.Skip("/etc/x exists: this test checks that nothing creates it")
	}
	for _, tc := range []struct {
		name, template string
		json           bool
		saved          int // the others are refused: ".", ".." and the temporary prefix
	}{
		{"item", "{item}", false, len(hostile) - 3},
		{"field", "{.name}.json", true, len(hostile) - 1},
		{"default", "", false, len(hostile)}, // the hash when the item is no plain name
		{"default-url", "", false, len(hostile)},
		{"default-id", "", true, len(hostile)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := filepath.Join(parent, "dir")
			tmpl := srv + "/{item}"
			switch {
			case tc.json:
				tmpl = srv + "/{.name}"
			case tc.name == "default-url":
				tmpl = "{item}"
			}
			h := newTestHTTP(t, HTTPConfig{URL: tmpl, SaveConfig: SaveConfig{SaveDir: dir, SaveName: tc.template}})
			files := map[string]string{} // file → item
			for i, v := range hostile {
				it := textItem(int64(i), v)
				switch {
				case tc.name == "default-url": // the URL's last segment is v
					it = textItem(int64(i), srv+"/p/"+url.PathEscape(v))
				case tc.json:
					b, _ := json.Marshal(map[string]string{"name": v, "id": v})
					it = jsonItem(t, int64(i), string(b))
				}
				out, err := h.Do(context.Background(), it)
				if err != nil {
					continue // a URL the client refuses: nothing saved either
				}
				if out.Verdict != engine.OK {
					if !strings.Contains(out.Message, "not saved") {
						t.Errorf("item %q: %v %q; want ok or a clear reason it was not saved", v, out.Verdict, out.Message)
					}
					continue
				}
				path := out.Extra["file"].(string)
				if filepath.Dir(path) != dir || len(filepath.Base(path)) > maxNameLen {
					t.Errorf("item %q saved as %q: not a file of %s of at most %d bytes", v, path, dir, maxNameLen)
				}
				if prev, dup := files[path]; dup {
					t.Errorf("items %q and %q share the file %s", prev, v, path)
				}
				files[path] = v
			}
			if len(files) != tc.saved {
				t.Errorf("%d items saved, want %d", len(files), tc.saved)
			}
			if got := dirNames(t, parent); len(got) != 1 || got[0] != "dir" {
				t.Errorf("beside the save dir: %q; want only dir", got)
			}
			if names := dirNames(t, dir); len(names) != len(files) {
				t.Errorf("the save dir holds %d files, the rows name %d: %q", len(names), len(files), names)
			}
			if _, err := os.Stat("/etc/x"); err == nil {
				t.Fatal("/etc/x was created")
			}
			noTemps(t, dir)
		})
	}
}

// TestSaveNameTemplate: {item}, {.field}, {sha256} and {n} expand, values escaped; bad
// templates are refused when the adapter is made.
func TestSaveNameTemplate(t *testing.T) {
	t.Parallel()
	it := engine.Item{Index: 41, Line: `{"user":"a/b","id":7}`, JSON: true, Fields: map[string]any{"user": "a/b", "id": json.Number("7")}}
	tm, err := parseNameTemplate("{n}-{.user}-{.id}-{sha256}.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tm.expand(it, itemSum(it))
	if want := "42-a%2Fb-7-" + sumHex([]byte(it.Line)) + ".json"; err != nil || got != want {
		t.Errorf("expand = %q, %v; want %q", got, err, want)
	}
	if _, err := tm.expand(engine.Item{Line: "plain"}, "x"); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("{.user} of a text item: %v; want an error that says why", err)
	}
	for _, bad := range []string{"", "fixed.json", "sub/{item}", "${TOKEN}-{item}", "{items}", "{.}-{item}", "{.x", "a\tb{item}"} {
		_, err := NewHTTP(HTTPConfig{URL: "http://127.0.0.1:1/{item}", SaveConfig: SaveConfig{SaveDir: t.TempDir(), SaveName: bad}})
		if bad == "" {
			if err != nil {
				t.Errorf("the default name: %v", err)
			}
			continue
		}
		if err == nil {
			t.Errorf("save name %q accepted", bad)
		}
	}
	for _, tc := range []struct {
		line, want string
	}{
		{"https://x.example/a/b/report.pdf?sig=1", "report.pdf"},
		{"https://x.example/a/b/", ""},
		{"https://x.example/a/%2E%2E", ""},
		{"https://x.example/a/my%20file.txt", ""},
		{"12345", "12345"},
		{"-rf", ""},
		{".hidden", ""},
	} {
		if got, _ := defaultName(engine.Item{Line: tc.line}); got != tc.want {
			t.Errorf("default name of %q = %q, want %q", tc.line, got, tc.want)
		}
	}
	long := shortenName(strings.Repeat("%41", 100) + ".json")
	head, _, _ := strings.Cut(long, "~")
	if len(long) > maxNameLen || !strings.HasSuffix(long, ".json") || strings.Count(head, "%41")*3 != len(head) {
		t.Errorf("shortenName = %q (%d bytes): want at most %d, .json kept, no escape cut", long, len(long), maxNameLen)
	}
}

// TestSaveCollisions: two items that map to one name never overwrite each other — in this
// run or with a file already there — and the second fails with a clear error (or, with the
// default name, takes its hash); the same item run again replaces its own file.
func TestSaveCollisions(t *testing.T) {
	t.Parallel()
	var version atomic.Int64
	srv := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s v%d", r.URL.Path, version.Load())
	})
	dir := t.TempDir()
	h := newTestHTTP(t, HTTPConfig{URL: srv + "/{.id}", SaveConfig: SaveConfig{SaveDir: dir, SaveName: "{.name}"}})
	a := jsonItem(t, 0, `{"id":"a","name":"same"}`)
	b := jsonItem(t, 1, `{"id":"b","name":"same"}`)
	out, err := h.Do(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	savedFile(t, out, dir, []byte("/a v0"))
	out, err = h.Do(context.Background(), b)
	if err != nil || out.Verdict != engine.Fail || !strings.Contains(out.Message, `"same"`) || !strings.Contains(out.Message, "another item") {
		t.Errorf("second item to the same name: %v %v %q; want a failure that names the file and says why", err, out.Verdict, out.Message)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "same")); string(b) != "/a v0" {
		t.Errorf("the first item's file now holds %q", b)
	}

	// The same item again, with new content: it replaces its own file.
	version.Store(1)
	out, err = h.Do(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	savedFile(t, out, dir, []byte("/a v1"))

	// A file already there from elsewhere is not overwritten.
	if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := jsonItem(t, 2, `{"id":"c","name":"precious"}`)
	out, err = h.Do(context.Background(), c)
	if err != nil || out.Verdict != engine.Fail || !strings.Contains(out.Message, "not overwritten") {
		t.Errorf("item to a file already there: %v %v %q; want a failure", err, out.Verdict, out.Message)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "precious")); string(b) != "mine" {
		t.Errorf("a file from elsewhere now holds %q", b)
	}

	// With the default name, the second of two URLs with one last segment takes its hash,
	// and so does a URL whose name a file from elsewhere holds.
	hd := newTestHTTP(t, HTTPConfig{URL: "{item}", SaveConfig: SaveConfig{SaveDir: dir}})
	u1, u2, u3 := srv+"/x/data.json", srv+"/y/data.json", srv+"/z/precious"
	out1, err1 := hd.Do(context.Background(), textItem(0, u1))
	out2, err2 := hd.Do(context.Background(), textItem(1, u2))
	out3, err3 := hd.Do(context.Background(), textItem(2, u3))
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	if n := savedFile(t, out1, dir, []byte("/x/data.json v1")); n != "data.json" {
		t.Errorf("first URL saved as %s, want data.json", n)
	}
	if n := savedFile(t, out2, dir, []byte("/y/data.json v1")); n != itemSum(textItem(0, u2))+".json" {
		t.Errorf("second URL saved as %s, want its hash with .json", n)
	}
	if n := savedFile(t, out3, dir, []byte("/z/precious v1")); n != itemSum(textItem(0, u3)) {
		t.Errorf("URL whose name is taken saved as %s, want its hash", n)
	}
	noTemps(t, dir)
}

// TestSaveConcurrentCollision: many different items that map to one name, in flight at once:
// exactly one file, written by one of them, whole; every other item fails.
func TestSaveConcurrentCollision(t *testing.T) {
	t.Parallel()
	srv := saveServer(t, func(p string) int { return 300_000 })
	dir := t.TempDir()
	h := newTestHTTP(t, HTTPConfig{URL: srv + "/{.id}", SaveConfig: SaveConfig{SaveDir: dir, SaveName: "{.name}"}})
	var wg sync.WaitGroup
	outs := make([]engine.Outcome, 16)
	for i := range outs {
		wg.Go(func() {
			out, err := h.Do(context.Background(), jsonItem(t, int64(i), fmt.Sprintf(`{"id":"%d","name":"one"}`, i)))
			if err != nil {
				t.Error(err)
			}
			outs[i] = out
		})
	}
	wg.Wait()
	ok := 0
	for i, out := range outs {
		if out.Verdict == engine.OK {
			ok++
			savedFile(t, out, dir, genBody("/"+strconv.Itoa(i), 300_000))
		} else if !strings.Contains(out.Message, "another item") {
			t.Errorf("item %d: %q", i, out.Message)
		}
	}
	if ok != 1 {
		t.Errorf("%d items saved to one name, want 1", ok)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("dir holds %q", names)
	}
}

// TestSaveWithoutOwnerMarks: on a filesystem without extended attributes, the item's own
// earlier file is recognised by its content; other content is not overwritten.
func TestSaveWithoutOwnerMarks(t *testing.T) {
	t.Parallel()
	var version atomic.Int64
	srv := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "v%d", version.Load()) })
	dir := t.TempDir()
	h := newTestHTTP(t, HTTPConfig{URL: srv + "/{item}", SaveConfig: SaveConfig{SaveDir: dir, SaveName: "f-{item}"}})
	h.save.xattr = false
	it := textItem(0, "a")
	for range 2 { // the second time: a file with the same content is there
		out, err := h.Do(context.Background(), it)
		if err != nil {
			t.Fatal(err)
		}
		savedFile(t, out, dir, []byte("v0"))
	}
	version.Store(1)
	out, err := h.Do(context.Background(), it)
	if err != nil || out.Verdict != engine.Fail || !strings.Contains(out.Message, "other content") {
		t.Errorf("other content under the name: %v %v %q; want a failure", err, out.Verdict, out.Message)
	}
	h.save.noLink = true // a filesystem without hard links: check, then rename
	out, err = h.Do(context.Background(), textItem(1, "b"))
	if err != nil {
		t.Fatal(err)
	}
	savedFile(t, out, dir, []byte("v1"))
	noTemps(t, dir)
}

// TestSaveMaxFile: a body over the cap fails its item and leaves no file, whether the
// Content-Length says so up front or the body grows past it; one at the cap is saved.
func TestSaveMaxFile(t *testing.T) {
	t.Parallel()
	srv := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		size, chunked := strings.CutPrefix(strings.TrimPrefix(r.URL.Path, "/"), "chunked-")
		n, _ := strconv.Atoi(size)
		if !chunked {
			w.Header().Set("Content-Length", size)
		}
		w.Write(genBody(r.URL.Path, n))
	})
	dir := t.TempDir()
	h := newTestHTTP(t, HTTPConfig{URL: srv + "/{item}", SaveConfig: SaveConfig{SaveDir: dir, SaveName: "{sha256}", MaxFile: 100_000}})
	for _, tc := range []struct {
		item string
		ok   bool
	}{{"100000", true}, {"100001", false}, {"chunked-100000", true}, {"chunked-300000", false}} {
		out, err := h.Do(context.Background(), textItem(0, tc.item))
		if err != nil {
			t.Fatal(err)
		}
		if tc.ok {
			savedFile(t, out, dir, genBody("/"+tc.item, 100_000))
			continue
		}
		if out.Verdict != engine.Fail || out.Status != 200 || !strings.Contains(out.Message, "--max-file") {
			t.Errorf("%s: %v %d %q; want a failure that names --max-file", tc.item, out.Verdict, out.Status, out.Message)
		}
		if _, err := os.Stat(filepath.Join(dir, itemSum(textItem(0, tc.item)))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a file was left: %v", tc.item, err)
		}
	}
	noTemps(t, dir)
}

// TestSaveBrokenBodyLeavesNoFile: a body cut short by the server is a retryable error and
// leaves neither a final nor a temporary file.
func TestSaveBrokenBodyLeavesNoFile(t *testing.T) {
	t.Parallel()
	srv := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 100_000))
		// returns early: the client sees an unexpected EOF
	})
	dir := t.TempDir()
	h := newTestHTTP(t, HTTPConfig{URL: srv + "/{item}", SaveConfig: SaveConfig{SaveDir: dir}})
	_, err := h.Do(context.Background(), textItem(0, "x"))
	if err == nil || engine.IsPermanent(err) || !strings.Contains(err.Error(), "reading the body") {
		t.Errorf("cut body: %v; want a retryable error about the body", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("dir holds %q after a cut body", names)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestSaveDiskFull: a write that fails (ENOSPC) fails the item with the error, leaves no
// file under its name nor a temporary one, tells SaveStopped once, and every later ok answer
// fails unsaved without touching the directory.
func TestSaveDiskFull(t *testing.T) {
	t.Parallel()
	srv := saveServer(t, func(string) int { return 200_000 })
	dir := t.TempDir()
	var stops []error
	var mu sync.Mutex
	h := newTestHTTP(t, HTTPConfig{URL: srv + "/{item}", SaveConfig: SaveConfig{SaveDir: dir, SaveName: "{item}.bin",
		SaveStopped: func(err error) { mu.Lock(); stops = append(stops, err); mu.Unlock() }}})
	var budget atomic.Int64
	budget.Store(450_000) // two whole files, then the disk is full mid-body
	h.save.wrap = func(w io.Writer) io.Writer {
		return writerFunc(func(p []byte) (int, error) {
			if budget.Add(-int64(len(p))) < 0 {
				return 0, &fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}
			}
			return w.Write(p)
		})
	}
	var outs []engine.Outcome
	for i := range 5 {
		out, err := h.Do(context.Background(), textItem(int64(i), strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
	}
	for i, out := range outs {
		name := filepath.Join(dir, strconv.Itoa(i)+".bin")
		switch {
		case i < 2:
			savedFile(t, out, dir, genBody("/"+strconv.Itoa(i), 200_000))
		case out.Verdict != engine.Fail || out.Status != 200:
			t.Errorf("item %d after the disk filled: %v %d; want failed", i, out.Verdict, out.Status)
		case i == 2 && !strings.Contains(out.Message, "no space left on device"):
			t.Errorf("item 2: %q; want the disk's error", out.Message)
		case i > 2 && !strings.Contains(out.Message, "saving stopped after an earlier error: writing a file in "+dir+": no space left on device"):
			t.Errorf("item %d: %q; want why saving stopped", i, out.Message)
		}
		if _, err := os.Stat(name); i >= 2 && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("item %d: %s exists after a failed write", i, name)
		}
	}
	if len(stops) != 1 || !errors.Is(stops[0], syscall.ENOSPC) {
		t.Errorf("SaveStopped got %v; want one ENOSPC", stops)
	}
	noTemps(t, dir)
}

// TestSaveDiskFullTmpfs: the same on a real full filesystem, a 1 MiB tmpfs (needs root; skipped
// when mount fails): every file left is whole, no temporary file is left, the failed row says
// "no space left on device".
func TestSaveDiskFullTmpfs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).Run(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): the fault-injecting writer test covers a full disk", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	srv := saveServer(t, func(string) int { return 150_000 })
	stopped := make(chan error, 1)
	h := newTestHTTP(t, HTTPConfig{URL: srv + "/{item}", SaveConfig: SaveConfig{SaveDir: dir, SaveStopped: func(err error) { stopped <- err }}})
	full := false
	for i := 0; i < 12 && !full; i++ {
		out, err := h.Do(context.Background(), textItem(int64(i), "f"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if out.Verdict == engine.OK {
			savedFile(t, out, dir, genBody("/f"+strconv.Itoa(i), 150_000))
			continue
		}
		full = true
		if !strings.Contains(out.Message, "no space left on device") {
			t.Errorf("failed row: %q; want the disk's error", out.Message)
		}
	}
	if !full {
		t.Fatal("12 × 150 kB fitted in a 1 MiB tmpfs")
	}
	if err := <-stopped; !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("SaveStopped got %v", err)
	}
	for _, n := range dirNames(t, dir) {
		if b, _ := os.ReadFile(filepath.Join(dir, n)); !strings.HasPrefix(n, tmpPrefix) && sumHex(b) != sumHex(genBody("/"+n, 150_000)) {
			t.Errorf("%s is not whole: %d bytes", n, len(b))
		}
	}
	noTemps(t, dir)
}

// TestSaveRemovesDeadRunsTempFiles: at its start a run removes the temporary files no live
// run holds (a killed run's), and leaves a locked one alone.
func TestSaveRemovesDeadRunsTempFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dead := filepath.Join(dir, tmpPrefix+"dead")
	live := filepath.Join(dir, tmpPrefix+"live")
	other := filepath.Join(dir, "keep.json")
	for _, p := range []string{dead, live, other} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var notes []string
	newTestHTTP(t, HTTPConfig{URL: "http://127.0.0.1:1/{item}", SaveConfig: SaveConfig{SaveDir: dir, SaveNote: func(s string) { notes = append(notes, s) }}})
	got := strings.Join(dirNames(t, dir), " ")
	if got != filepath.Base(live)+" keep.json" {
		t.Errorf("after the start, the dir holds %q; want the live run's temporary file and keep.json", got)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "removed 1 temporary files") {
		t.Errorf("notes %q", notes)
	}
}

// TestSaveConfigErrors: what NewHTTP refuses about saving.
func TestSaveConfigErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  HTTPConfig
		want string
	}{
		{HTTPConfig{URL: "http://h/{item}", SaveConfig: SaveConfig{SaveName: "{item}"}}, "needs a save directory"},
		{HTTPConfig{URL: "http://h/{item}", SaveConfig: SaveConfig{SaveDir: file}}, "not a directory"},
		{HTTPConfig{URL: "http://h/{item}", SaveConfig: SaveConfig{SaveDir: t.TempDir(), MaxFile: -1}}, "negative"},
		{HTTPConfig{URL: "http://h/x", Body: "{items}", SaveConfig: SaveConfig{SaveDir: t.TempDir()}}, "batch"},
	} {
		if _, err := NewHTTP(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an error with %q", tc.cfg.SaveConfig, err, tc.want)
		}
	}
}
