package adapters_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
)

// The child process of the flat-memory measures: it saves one body from the URL in
// THROTTLE_SAVE_CHILD_URL to THROTTLE_SAVE_CHILD_DIR and prints its peak RSS (VmHWM), so
// that the figure is the adapter's alone, not the server's or the test harness's.
const childURL, childDir = "THROTTLE_SAVE_CHILD_URL", "THROTTLE_SAVE_CHILD_DIR"

// TestSaveRSSChild is not a test on its own: it is the child that saveInChild starts.
func TestSaveRSSChild(t *testing.T) {
	url := os.Getenv(childURL)
	if url == "" {
		t.Skip("the child of TestSaveFlatMemory and BenchmarkSaveLargeBody")
	}
	h, err := adapters.NewHTTP(adapters.HTTPConfig{URL: url, SaveConfig: adapters.SaveConfig{SaveDir: os.Getenv(childDir), SaveName: "{item}"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	out, err := h.Do(context.Background(), engine.Item{Line: "big"})
	if err != nil || out.Verdict != engine.OK {
		t.Fatalf("%v %v %q", err, out.Verdict, out.Message)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fmt.Printf("peak_rss_kib=%s bytes=%d sha256=%s\n", strings.Fields(line)[1], out.Extra["bytes"], out.Extra["sha256"])
		}
	}
}

// streamServer streams size bytes (a 1 MiB random block, repeated) and returns its URL and
// the body's sha256.
func streamServer(tb testing.TB, size int64) (string, string) {
	tb.Helper()
	block := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	h := sha256.New()
	for n := int64(0); n < size; n += int64(len(block)) {
		h.Write(block[:min(int64(len(block)), size-n)])
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		for n := int64(0); n < size; n += int64(len(block)) {
			if _, err := w.Write(block[:min(int64(len(block)), size-n)]); err != nil {
				return
			}
		}
	}))
	tb.Cleanup(srv.Close)
	return srv.URL + "/{item}", hex.EncodeToString(h.Sum(nil))
}

// saveInChild saves a body of size bytes in a child process and returns its peak RSS in MB
// and how long the child took; it fails tb if the file is not the server's bytes.
func saveInChild(tb testing.TB, size int64) (float64, time.Duration) {
	tb.Helper()
	url, sum := streamServer(tb, size)
	dir := tb.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSaveRSSChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childURL+"="+url, childDir+"="+dir)
	start := time.Now()
	b, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		tb.Fatalf("child: %v\n%s", err, b)
	}
	var kib, bytes int64
	var got string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if n, _ := fmt.Sscanf(sc.Text(), "peak_rss_kib=%d bytes=%d sha256=%s", &kib, &bytes, &got); n == 3 {
			break
		}
	}
	if kib == 0 || bytes != size || got != sum {
		tb.Fatalf("child saved %d bytes sha256 %s (peak %d KiB); want %d bytes sha256 %s\n%s", bytes, got, kib, size, sum, b)
	}
	st, err := os.Stat(filepath.Join(dir, "big"))
	if err != nil || st.Size() != size {
		tb.Fatalf("saved file: %v", err)
	}
	return float64(kib) / 1024, took
}

// TestSaveFlatMemory: a body larger than the memory bound (128 MiB) is streamed to its file
// with a peak RSS under 100 MB, which it could not be if it were held whole. The 512 MiB
// figure is BenchmarkSaveLargeBody's: here the suite's other tests share the machine.
func TestSaveFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 128 MiB")
	}
	t.Parallel()
	mb, took := saveInChild(t, 128<<20)
	t.Logf("128 MiB saved in %v, peak RSS %.1f MB", took.Round(time.Millisecond), mb)
	if mb >= 100 {
		t.Errorf("peak RSS %.1f MB saving 128 MiB; want under 100 MB", mb)
	}
}

// BenchmarkSaveLargeBody saves one 512 MiB body from a loopback server per iteration, in a
// child process, and reports the child's peak RSS (VmHWM) and the throughput:
//
//	go test -run '^$' -bench SaveLargeBody -benchtime 1x -count 3 ./adapters/
func BenchmarkSaveLargeBody(b *testing.B) {
	const size = 512 << 20
	var peak float64
	var total time.Duration
	for range b.N {
		mb, took := saveInChild(b, size)
		peak, total = max(peak, mb), total+took
	}
	b.ReportMetric(peak, "peak-RSS-MB")
	b.ReportMetric(float64(size)*float64(b.N)/(1<<20)/total.Seconds(), "MiB/s")
	if peak >= 100 {
		b.Errorf("peak RSS %.1f MB; want under 100 MB", peak)
	}
}
