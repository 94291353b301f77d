package cli_test

// Integration tests of `throttle run http --save-dir`: bodies streamed to files, names that
// stay in the directory, collisions, a kill mid-run and --resume, a directory that fails.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// bodyOf is the body the test servers send for path: up to 40 kB that depend on the path.
func bodyOf(path string) []byte {
	var seed [32]byte
	copy(seed[:], path)
	h := fnv.New64a()
	h.Write([]byte(path))
	b := make([]byte, h.Sum64()%40_000)
	_, _ = rand.NewChaCha8(seed).Read(b) // never fails
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// serveBody answers with bodyOf(path), in chunks of 8 kB with pause between them (so that a
// kill can land in the middle of a body).
func serveBody(pause time.Duration) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, a arrival) {
		b := bodyOf(r.URL.Path)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		for len(b) > 0 {
			n := min(len(b), 8<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
			if pause > 0 {
				w.(http.Flusher).Flush()
				time.Sleep(pause)
			}
		}
	}
}

// savedRow is a result row of a run with --save-dir.
type savedRow struct {
	Item   json.RawMessage `json:"item"`
	OK     bool            `json:"ok"`
	Status int             `json:"status"`
	Error  string          `json:"error"`
	Output json.RawMessage `json:"output"`
	File   string          `json:"file"`
	Bytes  int64           `json:"bytes"`
	SHA256 string          `json:"sha256"`
}

func (r savedRow) item() string { return row{Item: r.Item}.item() }

// savedRows reads a results file (checked by readRows) as savedRows.
func savedRows(t *testing.T, path string) []savedRow {
	t.Helper()
	readRows(t, path) // every line a whole row
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []savedRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r savedRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

// checkSaved checks that an ok row's file is in dir and holds want, as the row says.
func checkSaved(t *testing.T, r savedRow, dir string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(r.File)
	switch {
	case !r.OK || r.Output != nil:
		t.Errorf("item %s: ok %v, output %s; want ok and no output", r.item(), r.OK, r.Output)
	case filepath.Dir(r.File) != dir:
		t.Errorf("item %s: file %q is not in %s", r.item(), r.File, dir)
	case err != nil:
		t.Errorf("item %s: %v", r.item(), err)
	case sha(got) != sha(want) || r.SHA256 != sha(want) || r.Bytes != int64(len(want)):
		t.Errorf("item %s: file %d bytes sha256 %.12s, row %d bytes sha256 %.12s; server sent %d bytes sha256 %.12s",
			r.item(), len(got), sha(got), r.Bytes, r.SHA256, len(want), sha(want))
	}
}

// tempsIn returns the temporary files in dir.
func tempsIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var temps []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".throttle-tmp-") {
			temps = append(temps, e.Name())
		}
	}
	return temps
}

// TestSave1000Downloads: 1,000 downloads land as 1,000 whole files whose bytes are the
// server's (sha256), named after the items, with rows that say so.
func TestSave1000Downloads(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, serveBody(0))
	dir := filepath.Join(t.TempDir(), "json")
	out := outPath(t)
	r := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 1000), "--out", out,
		"--url", srv.URL + "/items/{item}", "--save-dir", dir, "--parallelism", "32"}})
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	rows := savedRows(t, out)
	if len(rows) != 1000 {
		t.Fatalf("%d rows, want 1000", len(rows))
	}
	for _, row := range rows {
		checkSaved(t, row, dir, bodyOf("/items/"+row.item()))
		if filepath.Base(row.File) != row.item() {
			t.Errorf("item %s saved as %s; want its id as the name", row.item(), row.File)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1000 || len(tempsIn(t, dir)) != 0 {
		t.Errorf("%s holds %d entries, want 1000 files and no temporary one", dir, len(entries))
	}
}

// TestSaveNamesStayInDir: items crafted to escape the directory never write outside it, and
// two items that map to one name do not overwrite each other: the second fails and says why.
func TestSaveNamesStayInDir(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, serveBody(0))
	parent := t.TempDir()
	dir := filepath.Join(parent, "files")
	if _, err := os.Stat("/etc/x"); err == nil {
		t.Skip("/etc/x exists: this test checks that nothing creates it")
	}
	long := strings.Repeat("n", 300)
	lines := []string{
		`{"id":1,"name":"../x"}`, `{"id":2,"name":"/etc/x"}`, `{"id":3,"name":"a/../../x"}`,
		`{"id":4,"name":"nul\u0000byte"}`, `{"id":5,"name":"` + long + `"}`, `{"id":6,"name":".."}`,
		`{"id":7,"name":"twin"}`, `{"id":8,"name":"twin"}`,
	}
	in := writeFile(t, "items.jsonl", strings.Join(lines, "\n")+"\n")
	out := outPath(t)
	r := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--url", srv.URL + "/{.id}",
		"--save-dir", dir, "--save-name", "{.name}", "--parallelism", "1"}})
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (\"..\" and the second twin fail):\n%s", r.code, r.stderr)
	}
	failed := map[string]string{}
	for _, row := range savedRows(t, out) {
		var it struct {
			ID   int
			Name string
		}
		_ = json.Unmarshal(row.Item, &it)
		if !row.OK {
			failed[strconv.Itoa(it.ID)] = row.Error
			continue
		}
		checkSaved(t, row, dir, bodyOf("/"+strconv.Itoa(it.ID)))
		if len(filepath.Base(row.File)) > 255 {
			t.Errorf("item %d: name of %d bytes", it.ID, len(filepath.Base(row.File)))
		}
	}
	if len(failed) != 2 || !strings.Contains(failed["6"], `".." is not a file name`) || !strings.Contains(failed["8"], `"twin"`) {
		t.Errorf("failed rows %q; want item 6 (\"..\") and item 8 (the second twin), with reasons", failed)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "twin")); sha(b) != sha(bodyOf("/7")) {
		t.Error("twin does not hold the first twin's body")
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("%d entries beside the save dir; want none", len(entries)-1)
	}
	if _, err := os.Stat("/etc/x"); err == nil {
		t.Fatal("/etc/x was created")
	}
}

// TestSaveKillAndResume kills `throttle run http --save-dir` with SIGKILL mid-run several
// times: no file is ever partial under its final name; then --resume removes the temporary
// files the kills left and finishes the rest, every file whole.
func TestSaveKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the binary")
	}
	t.Parallel()
	bin := bintest.Build(t)
	srv := newRecServer(t, serveBody(2*time.Millisecond))
	const items = 300
	dir := filepath.Join(t.TempDir(), "files")
	out := outPath(t)
	args := []string{"run", "http", "--input", writeItems(t, items), "--out", out, "--url", srv.URL + "/{item}",
		"--save-dir", dir, "--parallelism", "16", "--resume", "--headless"}
	whole := func(when string) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".throttle-tmp-") {
				continue
			}
			if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); sha(b) != sha(bodyOf("/"+e.Name())) {
				t.Errorf("%s: %s is not whole (%d bytes of %d)", when, e.Name(), len(b), len(bodyOf("/"+e.Name())))
			}
		}
	}
	var temps []string
	for kill := range 3 {
		// Killed once it has made about 60 calls, a few ms into the bodies in flight.
		cmd := exec.Command(bin, args...)
		before := srv.count()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(10*time.Second, func() bool { return srv.count() >= before+60 })
		time.Sleep(time.Duration(rand.IntN(8)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		whole(fmt.Sprintf("after kill %d", kill+1))
		temps = tempsIn(t, dir)
		t.Logf("kill %d: %d calls so far, %d temporary files left", kill+1, srv.count(), len(temps))
	}
	b, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "to run") || strings.Contains(string(b), "; 0 to run") {
		t.Errorf("the final run had nothing left to do; the kills came too late:\n%s", b)
	}
	if len(temps) > 0 && !strings.Contains(string(b), fmt.Sprintf("removed %d temporary files", len(temps))) {
		t.Errorf("the final run does not say it removed the %d temporary files of the last kill:\n%s", len(temps), b)
	}
	last := map[string]savedRow{}
	for _, r := range savedRows(t, out) {
		last[r.item()] = r
	}
	if len(last) != items {
		t.Fatalf("rows for %d items, want %d", len(last), items)
	}
	for it, r := range last {
		checkSaved(t, r, dir, bodyOf("/"+it))
	}
	whole("at the end")
	if temps := tempsIn(t, dir); len(temps) != 0 {
		t.Errorf("temporary files left after the final run: %q", temps)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != items {
		t.Errorf("%s holds %d entries, want %d files", dir, len(entries), items)
	}
}

// TestSaveResumeRerunsMissingFiles: --resume runs again the items whose file is gone or
// changed size, under the same name ({n} is the item's place in the input, not in the rest).
func TestSaveResumeRerunsMissingFiles(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, serveBody(0))
	dir := t.TempDir()
	out := outPath(t)
	args := []string{"run", "http", "--input", writeItems(t, 6), "--out", out, "--url", srv.URL + "/{item}",
		"--save-dir", dir, "--save-name", "{n}-{item}.bin", "--resume"}
	if r := run(t, invocation{args: args}); r.code != 0 {
		t.Fatalf("first run exit %d:\n%s", r.code, r.stderr)
	}
	if err := os.Remove(filepath.Join(dir, "3-2.bin")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "5-4.bin"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("more")
	f.Close()
	before := srv.count()
	r := run(t, invocation{args: args})
	if r.code != 0 || !strings.Contains(r.stderr, "2 ok rows") || !strings.Contains(r.stderr, "gone or changed size") {
		t.Fatalf("resume exit %d, want 0 and a message about the 2 files:\n%s", r.code, r.stderr)
	}
	var again []string
	for _, a := range srv.seen()[before:] {
		again = append(again, a.path)
	}
	if len(again) != 2 || !strings.Contains(strings.Join(again, " "), "/2") || !strings.Contains(strings.Join(again, " "), "/4") {
		t.Errorf("resume called %q; want /2 and /4 only", again)
	}
	for _, it := range []string{"2", "4"} {
		n, _ := strconv.Atoi(it)
		if b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d-%s.bin", n+1, it))); sha(b) != sha(bodyOf("/"+it)) {
			t.Errorf("item %s: its file is not whole after resume", it)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 6 {
		t.Errorf("%d files, want 6", len(entries))
	}
}

// TestSaveWriteErrorStopsTheRun: when the save directory fails mid-run (here it vanishes: it
// is renamed away, atomically), the item fails with the error, dispatch stops, and the run
// exits 1 saying why.
func TestSaveWriteErrorStopsTheRun(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "files")
	var calls atomic.Int64
	serve := serveBody(0)
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		if calls.Add(1) == 30 {
			if err := os.Rename(dir, dir+".gone"); err != nil {
				t.Error(err)
			}
		}
		serve(w, r, a)
	})
	out := outPath(t)
	r := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 2000), "--out", out,
		"--url", srv.URL + "/{item}", "--save-dir", dir, "--parallelism", "4"}})
	if r.code != 1 || !strings.Contains(r.stderr, "--save-dir: ") || !strings.Contains(r.stderr, "no such file or directory; the run stopped") {
		t.Errorf("exit %d, want 1 and why the run stopped:\n%s", r.code, r.stderr)
	}
	if n := srv.count(); n > 200 {
		t.Errorf("the server saw %d of 2000 calls; dispatch must stop at the first failed save", n)
	}
	notSaved := 0
	for _, row := range savedRows(t, out) {
		if !row.OK && strings.Contains(row.Error, "not saved: ") && strings.Contains(row.Error, "no such file or directory") {
			notSaved++
		}
	}
	if notSaved == 0 {
		t.Error("no row says the body was not saved, and why")
	}
}

// TestSaveDiskFullStopsTheRun: the same with a real full disk, a 1 MiB tmpfs (needs root;
// skipped when mount fails): exit 1 with ENOSPC, every file left whole, no temporary file.
func TestSaveDiskFullStopsTheRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).Run(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): TestSaveWriteErrorStopsTheRun covers a failing directory", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	srv := newRecServer(t, serveBody(0))
	out := outPath(t)
	r := run(t, invocation{args: []string{"run", "http", "--input", writeItems(t, 500), "--out", out,
		"--url", srv.URL + "/{item}", "--save-dir", dir, "--parallelism", "4"}})
	if r.code != 1 || !strings.Contains(r.stderr, "no space left on device; the run stopped") {
		t.Errorf("exit %d, want 1 and the disk's error:\n%s", r.code, r.stderr)
	}
	if n := srv.count(); n > 250 {
		t.Errorf("the server saw %d of 500 calls; dispatch must stop at the full disk", n)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); sha(b) != sha(bodyOf("/"+e.Name())) {
			t.Errorf("%s is not whole", e.Name())
		}
	}
	if temps := tempsIn(t, dir); len(temps) != 0 {
		t.Errorf("temporary files left: %q", temps)
	}
}

// TestSaveUsageErrors: flags that cannot work are refused with exit 2, before any call.
func TestSaveUsageErrors(t *testing.T) {
	t.Parallel()
	srv := newRecServer(t, serveBody(0))
	in := writeItems(t, 3)
	file := writeFile(t, "file", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "http", "--save-name", "{item}"}, "go with --save-dir"},
		{[]string{"run", "http", "--save-dir", t.TempDir(), "--max-file", "lots"}, "--max-file"},
		{[]string{"run", "http", "--save-dir", file}, "not a directory"},
		{[]string{"run", "http", "--save-dir", t.TempDir(), "--save-name", "../{item}"}, "no \"/\""},
		{[]string{"run", "http", "--save-dir", t.TempDir(), "--save-name", "{n}", "--only-failed"}, "{n}"},
		{[]string{"probe", "http", "--item", "x", "--save-dir", t.TempDir()}, "a probe"},
	} {
		args := append(tc.args, "--url", srv.URL+"/{item}")
		if tc.args[0] == "run" {
			args = append(args, "--input", in, "--out", outPath(t))
		}
		r := run(t, invocation{args: args})
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: exit %d, want 2 and %q:\n%s", tc.args, r.code, tc.want, r.stderr)
		}
	}
	if srv.count() != 0 {
		t.Errorf("the server saw %d calls; a usage error calls nothing", srv.count())
	}
}
