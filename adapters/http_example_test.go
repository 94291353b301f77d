package adapters_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
)

func ExampleNewHTTP() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/users/busy" {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, `{"user": "`+r.URL.Path[len("/users/"):]+`"}`)
	}))
	defer srv.Close()

	h, err := adapters.NewHTTP(adapters.HTTPConfig{
		URL:     srv.URL + "/users/{item}",
		Headers: []string{"Authorization: Bearer ${API_TOKEN}"},
		LookupEnv: func(name string) (string, bool) {
			return "t0k3n", name == "API_TOKEN"
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	for _, line := range []string{"ada", "busy"} {
		out, err := h.Do(context.Background(), engine.Item{Line: line})
		fmt.Println(out.Verdict, out.Status, out.Message, out.RetryAfter, string(out.Output), err)
	}
	// Output:
	// ok 200  0s {"user":"ada"} <nil>
	// retry 429 429 Too Many Requests 2s  <nil>
}

func ExampleParseRetryAfter() {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, v := range []string{"120", "Mon, 23 Nov 2026 10:00:30 GMT", "Sun, 22 Nov 2026 10:00:00 GMT", "-1"} {
		d, ok := adapters.ParseRetryAfter(v, now)
		fmt.Println(d, ok)
	}
	// Output:
	// 2m0s true
	// 30s true
	// 0s true
	// 0s false
}

func ExampleParseTemplate() {
	t, err := adapters.ParseTemplate(`{"id": {.id}, "name": "{.name}", "key": "${KEY}"}`)
	if err != nil {
		fmt.Println(err)
		return
	}
	it := engine.Item{
		Line:   `{"id": 7, "name": "Ada"}`,
		JSON:   true,
		Fields: map[string]any{"id": 7.0, "name": "Ada"},
	}
	env := func(name string) (string, bool) { return "k-123", name == "KEY" }
	s, err := t.Expand(it, env)
	fmt.Println(s, err)
	_, err = t.Expand(engine.Item{Line: "plain"}, env)
	fmt.Println(err, engine.IsPermanent(err))
	// Output:
	// {"id": 7, "name": "Ada", "key": "k-123"} <nil>
	// adapters: {.id}: the item is not a JSON object (the input is not JSON Lines) true
}

func ExampleParseURLTemplate() {
	t, _ := adapters.ParseURLTemplate("https://api.example.com/search/{item}?q={item}")
	s, _ := t.Expand(engine.Item{Line: "a b&c"}, nil)
	fmt.Println(s)
	_, err := adapters.ParseURLTemplate("https://api.example.com/?key=${KEY}")
	fmt.Println(err)
	// Output:
	// https://api.example.com/search/a%20b&c?q=a+b%26c
	// adapters: url template: ${KEY} at byte 29: environment variables are not allowed in a url, where a secret would leak into errors and logs; put it in a header or the body
}
