package adapters

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/throttle-dev/throttle/engine"
)

// runBatch runs input through an HTTPBatch with the given chunk and returns the rows.
func runBatch(t *testing.T, a *HTTPBatch, input string, jsonl bool, chunk int) []map[string]any {
	t.Helper()
	var out bytes.Buffer
	e, err := engine.New(engine.Config{Settings: engine.Settings{Parallelism: 4, Burst: 1}, Chunk: chunk, Adapter: a,
		Source: engine.NewLineReader(strings.NewReader(input), jsonl), Total: -1, Results: &out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		var row map[string]any
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("row %q: %v", line, err)
		}
		rows = append(rows, row)
	}
	return rows
}

func TestHTTPBatchSendsTheChunkAndGivesEveryItemARow(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	url := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"upserted":true}`)
	})
	a, err := NewHTTPBatch(HTTPConfig{URL: url + "/points", Body: `{"points": {items}}`}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var input strings.Builder
	for i := range 95 {
		input.WriteString(`{"id":` + strconv.Itoa(i) + `,"v":[0.5,"a\"b"]}` + "\n")
	}
	rows := runBatch(t, a, input.String(), true, 10)
	if len(rows) != 95 {
		t.Fatalf("%d rows for 95 items", len(rows))
	}
	// A worker sends what it gathered, up to the chunk: at least 10 requests for 95 items.
	if len(bodies) < 10 {
		t.Fatalf("%d requests for 95 items in chunks of 10", len(bodies))
	}
	seen := map[float64]bool{}
	for _, b := range bodies {
		var req struct{ Points []map[string]any }
		if err := json.Unmarshal([]byte(b), &req); err != nil {
			t.Fatalf("body %q is not the template over the chunk: %v", b, err)
		}
		if len(req.Points) < 1 || len(req.Points) > 10 {
			t.Fatalf("a request of %d items; the chunk is 10", len(req.Points))
		}
		for _, p := range req.Points {
			seen[p["id"].(float64)] = true
		}
	}
	if len(seen) != 95 {
		t.Fatalf("the requests carried %d distinct items", len(seen))
	}
	for _, r := range rows {
		if r["ok"] != true || r["output"].(map[string]any)["upserted"] != true {
			t.Fatalf("row %v does not share the batch's outcome", r)
		}
	}
}

func TestHTTPBatchText(t *testing.T) {
	var got []string
	var mu sync.Mutex
	url := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		w.WriteHeader(503)
	})
	a, err := NewHTTPBatch(HTTPConfig{URL: url, Body: "{items_jsonl}"}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	outs, err := a.DoBatch(context.Background(), []engine.Item{{Line: `a "b"`}, {Line: "<c>"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "\"a \\\"b\\\"\"\n\"<c>\"\n"; len(got) != 1 || got[0] != want {
		t.Fatalf("body %q, want %q", got, want)
	}
	if len(outs) != 2 || outs[0].Verdict != engine.Retry || outs[1].Status != 503 {
		t.Fatalf("outcomes %+v: both items share the 503", outs)
	}
}

func TestHTTPBatchSplitsAnArrayAnswer(t *testing.T) {
	url := httpTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		var items []string
		_ = json.NewDecoder(r.Body).Decode(&items)
		if items[0] == "bad" { // answer one result short
			items = items[1:]
		}
		res := make([]map[string]string, len(items))
		for i, it := range items {
			res[i] = map[string]string{"echo": it}
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	a, err := NewHTTPBatch(HTTPConfig{URL: url, Body: "{items}"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	outs, err := a.DoBatch(context.Background(), []engine.Item{{Line: "x"}, {Line: "y"}, {Line: "z"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"x", "y", "z"} {
		if outs[i].Verdict != engine.OK || string(outs[i].Output) != `{"echo":"`+want+`"}` {
			t.Fatalf("item %d: %+v %s", i, outs[i], outs[i].Output)
		}
	}
	outs, err = a.DoBatch(context.Background(), []engine.Item{{Line: "bad"}, {Line: "y"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		if o.Verdict != engine.Fail || !strings.Contains(o.Message, "cannot split the answer for 2 items: 1 results") {
			t.Fatalf("a short answer: %+v", o)
		}
	}
}

func TestHTTPBatchConfigErrors(t *testing.T) {
	for name, cfg := range map[string]HTTPConfig{
		"no {items}":         {URL: "http://x/", Body: `{"id":"{item}"}`},
		"no body":            {URL: "http://x/"},
		"per-item url":       {URL: "http://x/{item}", Body: "{items}"},
		"per-item body":      {URL: "http://x/", Body: `{"all": {items}, "one": "{.id}"}`},
		"per-item header":    {URL: "http://x/", Body: "{items}", Headers: []string{"X-Id: {item}"}},
		"{items} in the url": {URL: "http://x/{items}", Body: "{items}"},
	} {
		if a, err := NewHTTPBatch(cfg, false); err == nil {
			a.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}
