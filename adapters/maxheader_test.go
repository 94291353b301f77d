package adapters

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/throttle-dev/throttle/engine"
)

// Response headers past MaxHeader fail the item at once, without a retry, and say which cap;
// headers under it are read as ever. Without a cap of its own the adapter uses 256 KiB, not
// Go's 10 MB.
func TestHTTPMaxHeader(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size := map[string]int{"/big": 200 << 10, "/huge": 2 << 20}[r.URL.Path]
		for i := range size / (4 << 10) {
			w.Header().Set("X-Pad-"+strconv.Itoa(i), strings.Repeat("x", 4<<10))
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()

	h, err := NewHTTP(HTTPConfig{URL: srv.URL + "/{item}", MaxHeader: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	out, err := h.Do(context.Background(), engine.Item{Line: "small"})
	if err != nil || out.Verdict != engine.OK {
		t.Fatalf("small headers: %+v, %v; want ok", out, err)
	}
	_, err = h.Do(context.Background(), engine.Item{Line: "big"})
	if err == nil || !strings.Contains(err.Error(), "response headers over --max-header 64KiB") {
		t.Fatalf("200 KiB of headers under a 64 KiB cap: %v; want \"response headers over --max-header 64KiB\"", err)
	}
	if !engine.IsPermanent(err) {
		t.Errorf("the oversize headers error is retryable; want it permanent: %v", err)
	}

	def, err := NewHTTP(HTTPConfig{URL: srv.URL + "/{item}"})
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if out, err := def.Do(context.Background(), engine.Item{Line: "big"}); err != nil || out.Verdict != engine.OK {
		t.Errorf("200 KiB of headers under the default cap: %+v, %v; want ok", out, err)
	}
	if _, err := def.Do(context.Background(), engine.Item{Line: "huge"}); err == nil || !strings.Contains(err.Error(), "--max-header 256KiB") {
		t.Errorf("2 MiB of headers under the default cap: %v; want refused at 256KiB", err)
	}
	if _, err := NewHTTP(HTTPConfig{URL: "http://x/", MaxHeader: -1}); err == nil {
		t.Error("a negative MaxHeader was accepted")
	}
}
