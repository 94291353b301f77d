package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// appendLine appends line and "\n" to f in two writes, pause apart: a writer caught in the
// middle of a line, as a log shipper or a script's echo can be.
func appendLine(t *testing.T, f *os.File, line string, pause time.Duration) {
	half := len(line) / 2
	if _, err := f.WriteString(line[:half]); err != nil {
		t.Error(err)
		return
	}
	time.Sleep(pause)
	if _, err := f.WriteString(line[half:] + "\n"); err != nil {
		t.Error(err)
	}
}

// lineRE is the shape of every line the writers of these tests append: anything shorter is a
// fragment.
var lineRE = regexp.MustCompile(`^appended-line-\d{6}-tail$`)

func appended(i int) string { return fmt.Sprintf("appended-line-%06d-tail", i) }

// openAppend creates a file in a temporary directory with content, and returns it open for
// appending, and its path.
func openAppend(t *testing.T, content string) (*os.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "items.txt")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

// snapshotAt opens path, counts its items up to its size now, and returns the count and a
// LineReader that reads it as a run does.
func snapshotAt(t *testing.T, path string) (int64, *LineReader, *FileReader) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	n, err := CountItems(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		t.Fatal(err)
	}
	fr := ReadFileAt(f, st.Size())
	return n, NewLineReader(fr, false), fr
}

// TestFileReaderCutLine: the size counted at the start ends inside a line whose second half
// is written 0.5 ms later. The reader completes that line (never yields its first half),
// stops there, and says that the file grew.
func TestFileReaderCutLine(t *testing.T) {
	w, path := openAppend(t, appended(0)+"\n")
	line := appended(1)
	if _, err := w.WriteString(line[:10]); err != nil { // "appended-l": the fragment of the issue
		t.Fatal(err)
	}
	total, lr, _ := snapshotAt(t, path)
	if total != 2 {
		t.Fatalf("counted %d items, want 2 (the cut line counts as one)", total)
	}
	go func() {
		time.Sleep(500 * time.Microsecond)
		if _, err := w.WriteString(line[10:] + "\n" + appended(2) + "\n"); err != nil {
			t.Error(err)
		}
	}()
	got := readAll(t, lr)
	if len(got) != 2 || got[0].Line != appended(0) || got[1].Line != line {
		t.Fatalf("items %q, want the two whole lines %q and %q", lines(got), appended(0), line)
	}
	msg := lr.EndWarning()
	want := fmt.Sprintf("input grew by %d bytes while the run read it; stopped at the 2 items counted at the start; use --follow to take appended lines", len(appended(2))+1)
	if msg != want {
		t.Errorf("EndWarning() = %q, want %q", msg, want)
	}
}

// TestFileReaderWhileAppended: a writer appends lines, each in two halves 0.5 ms apart, while
// runs start and read the file again and again. No item is ever a fragment, each run takes
// exactly the items it counted, and one that saw the file grow says so.
func TestFileReaderWhileAppended(t *testing.T) {
	w, path := openAppend(t, "")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			appendLine(t, w, appended(i), 500*time.Microsecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(5 * time.Millisecond)
	cut, said := 0, 0
	for run := range 40 {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		if b := make([]byte, 1); st.Size() > 0 {
			if _, err := f.ReadAt(b, st.Size()-1); err == nil && b[0] != '\n' {
				cut++
			}
		}
		total, err := CountItems(io.NewSectionReader(f, 0, st.Size()))
		if err != nil {
			t.Fatal(err)
		}
		lr := NewLineReader(ReadFileAt(f, st.Size()), false)
		items := readAll(t, lr)
		f.Close()
		for _, it := range items {
			if !lineRE.MatchString(it.Line) {
				t.Fatalf("run %d: item %d is %q: a fragment of a line being written", run, it.Index, it.Line)
			}
		}
		if int64(len(items)) != total {
			t.Fatalf("run %d: %d items, but %d were counted at the start", run, len(items), total)
		}
		// A run that ended between two appends has nothing to say; one that did not must give
		// the count it stopped at.
		if msg := lr.EndWarning(); msg != "" {
			said++
			if !strings.Contains(msg, fmt.Sprintf("stopped at the %d items counted at the start", total)) {
				t.Errorf("run %d: EndWarning() = %q, want it to name the %d items counted", run, msg, total)
			}
		}
	}
	t.Logf("of 40 runs, %d counted a size that ended inside a line, %d said the file grew", cut, said)
	if cut == 0 || said == 0 {
		t.Errorf("no run counted a size inside a line (%d) or saw the file grow (%d): the test did not test", cut, said)
	}
}

// TestFileReaderLastLineSettles: a last line without its newline is an item once the file has
// stopped changing, and not before.
func TestFileReaderLastLineSettles(t *testing.T) {
	_, path := openAppend(t, "a\nb")
	total, lr, _ := snapshotAt(t, path)
	start := time.Now()
	got := readAll(t, lr)
	if took := time.Since(start); took < Settle {
		t.Errorf("the last line was taken after %v, before the file could have settled (%v)", took, Settle)
	}
	if total != 2 || len(got) != 2 || got[1].Line != "b" {
		t.Errorf("counted %d, read %q; want 2 items a, b", total, lines(got))
	}
	if msg := lr.EndWarning(); msg != "" {
		t.Errorf("EndWarning() = %q for a file that did not grow", msg)
	}
}

// TestFileReaderStopsAtCount: lines appended after the count are not read, and the reader
// says by how much the file grew.
func TestFileReaderStopsAtCount(t *testing.T) {
	w, path := openAppend(t, "a\nb\n")
	total, lr, fr := snapshotAt(t, path)
	if _, err := w.WriteString("c\nd\n"); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, lr)
	if total != 2 || len(got) != 2 {
		t.Errorf("counted %d, read %q; want a and b only", total, lines(got))
	}
	if fr.Grew() != 4 {
		t.Errorf("Grew() = %d, want 4", fr.Grew())
	}
}

// TestFileReaderFollow: a followed file gives each line once its newline has arrived, never a
// half of one, and ends (with an error, not an item) when closed.
func TestFileReaderFollow(t *testing.T) {
	w, path := openAppend(t, "")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fr := FollowFile(f)
	lr := NewLineReader(fr, false)
	const n = 50
	go func() {
		for i := range n {
			appendLine(t, w, appended(i), 500*time.Microsecond)
		}
		if _, err := w.WriteString("half-of-a-line"); err != nil { // never finished
			t.Error(err)
		}
	}()
	for i := range n {
		it, err := lr.Next()
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		if it.Line != appended(i) {
			t.Fatalf("item %d is %q, want %q", i, it.Line, appended(i))
		}
	}
	type next struct {
		it  Item
		err error
	}
	ch := make(chan next, 1)
	go func() { it, err := lr.Next(); ch <- next{it, err} }()
	select {
	case got := <-ch:
		t.Fatalf("Next() = %q, %v before its newline arrived", got.it.Line, got.err)
	case <-time.After(3 * FollowPoll):
	}
	fr.Close()
	select {
	case got := <-ch:
		if got.err == nil || !errors.Is(got.err, ErrInputClosed) {
			t.Errorf("after Close, Next() = %q, %v; want ErrInputClosed", got.it.Line, got.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next() did not return after Close")
	}
}

// TestFileReaderFollowShrinks: a followed file cut under the reader is an error, not a silent
// wait at an offset past its end.
func TestFileReaderFollowShrinks(t *testing.T) {
	_, path := openAppend(t, "a\nb\n")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lr := NewLineReader(FollowFile(f), false)
	for range 2 {
		if _, err := lr.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := lr.Next(); err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Errorf("Next() after the file was cut: %v, want an error that it shrank", err)
	}
}

// zeros is an endless line: /dev/zero without the device.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	clear(p)
	z.n += int64(len(p))
	return len(p), nil
}

// TestLineReaderEndlessLine: a line that never ends is an Invalid item as soon as it passes
// MaxLineBytes (the reader does not wait for a newline that never comes), and a line merely
// too long is skipped to its newline, the next lines read as usual.
func TestLineReaderEndlessLine(t *testing.T) {
	z := &zeros{}
	it, err := NewLineReader(z, false).Next()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(it.Invalid, "longer than") || len(it.Line) != 256 {
		t.Errorf("item: Invalid %q, %d bytes kept; want the too-long reason and 256 bytes", it.Invalid, len(it.Line))
	}
	if z.n > MaxLineBytes+1<<20 {
		t.Errorf("%d bytes read before the item; the limit is %d", z.n, MaxLineBytes)
	}

	in := io.MultiReader(strings.NewReader("a\n"), io.LimitReader(&zeros{}, 3*MaxLineBytes), strings.NewReader("\r\nb\n"))
	got := readAll(t, NewLineReader(in, false))
	if len(got) != 3 || got[0].Line != "a" || got[1].Invalid != fmt.Sprintf("input line 2 is longer than %d bytes", MaxLineBytes) || got[2].Line != "b" || got[2].Invalid != "" {
		t.Errorf("items %q, want a, the too-long line 2, b", lines(got))
	}
	n, err := CountItems(io.MultiReader(strings.NewReader("a\n"), io.LimitReader(&zeros{}, 3*MaxLineBytes), strings.NewReader("\r\nb\n")))
	if n != 3 || err != nil {
		t.Errorf("CountItems = %d, %v; want 3 like the reader", n, err)
	}
}

// TestCountItemsContext: a count of an endless input ends when its context is cancelled.
func TestCountItemsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := CountItemsContext(ctx, io.MultiReader(&zeros{}))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("CountItemsContext() = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("CountItemsContext did not end within 2 s of its context's cancel")
	}
}

func lines(items []Item) []string {
	var s []string
	for _, it := range items {
		l := it.Line
		if len(l) > 40 {
			l = l[:40] + "…"
		}
		s = append(s, l)
	}
	return s
}
