package adapters_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/engine"
)

func ExampleSim() {
	// A server that accepts 1 call per second with a burst of 2.
	sim := adapters.NewSim(adapters.SimConfig{Rate: 1, Burst: 2, Latency: time.Millisecond})
	for range 3 {
		a := sim.Serve(context.Background(), "42")
		fmt.Println(a.Status, string(a.Body))
	}
	st := sim.Stats()
	fmt.Println("ok", st.OK, "429", st.TooMany)
	// Output:
	// 200 {"id":"42","value":835011}
	// 200 {"id":"42","value":835011}
	// 429 {"error":"rate limit exceeded"}
	// ok 2 429 1
}

func ExampleSimAdapter() {
	sim := adapters.NewSim(adapters.SimConfig{ErrorRate: 1, Latency: time.Millisecond})
	out, err := adapters.NewSimAdapter(sim).Do(context.Background(), engine.Item{Line: "a"})
	fmt.Println(out.Verdict, out.Message, err)
	// Output: retry 503 Service Unavailable <nil>
}

func ExampleStartSimServer() {
	sim := adapters.NewSim(adapters.SimConfig{Latency: time.Millisecond})
	url, shutdown, err := adapters.StartSimServer(sim, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = shutdown(context.Background()) }() // the example is over

	resp, err := http.Get(url + "/items/7")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 {"id":"7","value":689206}
}
