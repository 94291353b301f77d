package adapters

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/throttle-dev/throttle/engine"
)

func TestHTTPRedirectsAreFollowedAndCounted(t *testing.T) {
	var srvURL string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
		if n > 0 {
			http.Redirect(w, r, srvURL+"/hop/"+strconv.Itoa(n-1), http.StatusFound)
			return
		}
		w.Write([]byte(`{"landed":true}`))
	}))
	defer srv.Close()
	srvURL = srv.URL
	h := newTestHTTP(t, HTTPConfig{URL: srv.URL + "/hop/{item}"})
	out, err := h.Do(context.Background(), engine.Item{Line: "3"})
	if err != nil || out.Verdict != engine.OK || out.Extra["redirects"] != 3 || string(out.Output) != `{"landed":true}` {
		t.Fatalf("3 hops: %+v %s, %v", out, out.Output, err)
	}
	if out, err = h.Do(context.Background(), engine.Item{Line: "0"}); err != nil || out.Extra != nil {
		t.Fatalf("no hop: %+v, %v: want no redirects field", out, err)
	}
	_, err = h.Do(context.Background(), engine.Item{Line: "11"})
	if err == nil || !engine.IsPermanent(err) || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Fatalf("11 hops: %v, want a permanent error", err)
	}
	nf := newTestHTTP(t, HTTPConfig{URL: srv.URL + "/hop/{item}", NoFollow: true, OKStatus: []int{302}})
	out, err = nf.Do(context.Background(), engine.Item{Line: "2"})
	if err != nil || out.Status != 302 || out.Verdict != engine.OK || out.Extra != nil {
		t.Fatalf("--no-follow: %+v, %v: want the 302 as the answer", out, err)
	}
}

func TestHTTPCompressedBodiesAreDecoded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(`{"big":"` + strings.Repeat("x", 1000) + `"}`))
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(b.Bytes())
	}))
	defer srv.Close()
	// A header that asks for gzip itself: Go then leaves the body compressed; the adapter decodes.
	h := newTestHTTP(t, HTTPConfig{URL: srv.URL + "/{item}", Headers: []string{"Accept-Encoding: gzip"}})
	out, err := h.Do(context.Background(), engine.Item{Line: "x"})
	if err != nil || !strings.HasPrefix(string(out.Output), `{"big":"xxx`) {
		t.Fatalf("%+v %.40s, %v", out, out.Output, err)
	}
	plain := newTestHTTP(t, HTTPConfig{URL: srv.URL + "/{item}"}) // Go asks for gzip and decodes
	if out, err := plain.Do(context.Background(), engine.Item{Line: "x"}); err != nil || !strings.HasPrefix(string(out.Output), `{"big":"xxx`) {
		t.Fatalf("%+v %.40s, %v", out, out.Output, err)
	}
}

func TestHTTPTLSOptions(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"proto":` + strconv.Itoa(r.ProtoMajor) + `}`))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	untrusted := newTestHTTP(t, HTTPConfig{URL: srv.URL + "/{item}"})
	if _, err := untrusted.Do(context.Background(), engine.Item{Line: "x"}); err == nil {
		t.Fatal("a certificate nobody trusts was accepted")
	}
	for name, cfg := range map[string]HTTPConfig{
		"--cacert":   {URL: srv.URL + "/{item}", CACert: ca},
		"--insecure": {URL: srv.URL + "/{item}", Insecure: true},
	} {
		out, err := newTestHTTP(t, cfg).Do(context.Background(), engine.Item{Line: "x"})
		if err != nil || out.Verdict != engine.OK {
			t.Fatalf("%s: %+v, %v", name, out, err)
		}
		if string(out.Output) != `{"proto":2}` {
			t.Errorf("%s: answered over %s; the server offers HTTP/2", name, out.Output)
		}
	}
	if _, err := NewHTTP(HTTPConfig{URL: "https://x/", CACert: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Fatal("a missing --cacert file was accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHTTP(HTTPConfig{URL: "https://x/", CACert: bad}); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a --cacert without PEM: %v", err)
	}
}

func TestHTTPQuotaHeadersReachTheOutcome(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Limit", "60")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", "2")
	}))
	defer srv.Close()
	out, err := newTestHTTP(t, HTTPConfig{URL: srv.URL + "/{item}"}).Do(context.Background(), engine.Item{Line: "x"})
	if err != nil || out.Quota == nil || out.Quota.Remaining != 0 || out.Quota.Limit != 60 || out.Quota.Reset.Seconds() != 2 {
		t.Fatalf("%+v %+v, %v", out, out.Quota, err)
	}
}
