package cli_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestRunHTTPBatchEndpoint(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, a arrival) {
		var body struct{ Items []string }
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		sizes = append(sizes, len(body.Items))
		mu.Unlock()
		res := make([]map[string]string, len(body.Items))
		for i, it := range body.Items {
			res[i] = map[string]string{"id": it}
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	in, out := writeItems(t, 250), outPath(t)
	res := run(t, invocation{args: []string{"run", "http", "--input", in, "--out", out, "--headless",
		"--url", srv.URL + "/batch", "--body", `{"items": {items}}`, "--chunk", "100", "--split-response"}})
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	// A worker sends what it could gather, up to the chunk: at least 3 requests, none over 100.
	total := 0
	for _, n := range sizes {
		total += n
		if n < 1 || n > 100 {
			t.Fatalf("a request of %d items; the chunk is 100", n)
		}
	}
	if total != 250 || len(sizes) < 3 || len(sizes) > 10 {
		t.Fatalf("requests of %v items for 250 items in chunks of 100", sizes)
	}
	rows := readRows(t, out)
	if len(rows) != 250 {
		t.Fatalf("%d rows for 250 items", len(rows))
	}
	for _, r := range rows {
		if r.OK == nil || !*r.OK || string(r.Output) != `{"id":"`+r.item()+`"}` {
			t.Fatalf("row %+v: want its own element of the answer", r)
		}
	}
}

func TestRunHTTPBatchAndPerHostUsageErrors(t *testing.T) {
	in := writeItems(t, 3)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", "http://127.0.0.1:9/x", "--split-response"}, "--split-response is for batch requests"},
		{[]string{"--url", "http://127.0.0.1:9/{item}", "--body", "{items}"}, "name one item"},
		{[]string{"--url", "http://127.0.0.1:9/x", "--per-host-rate", "fast"}, "--per-host-rate"},
		{[]string{"--url", "http://127.0.0.1:9/x", "--per-host-parallelism", "-1"}, "--per-host-parallelism"},
	} {
		res := run(t, invocation{args: append([]string{"run", "http", "--input", in, "--out", outPath(t), "--headless"}, tc.args...)})
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, res.code, res.stderr, tc.want)
		}
	}
}
