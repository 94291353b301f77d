package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"strings"

	"github.com/throttle-dev/throttle/engine"
)

// ExampleNew runs a job of three items through an adapter made from a function, at most 100
// calls a second, and reads the result rows back.
func ExampleNew() {
	lookup := engine.AdapterFunc(func(ctx context.Context, it engine.Item) (engine.Outcome, error) {
		if it.Line == "nobody" {
			return engine.Outcome{Verdict: engine.Fail, Status: 404, Message: "404 Not Found"}, nil
		}
		return engine.Outcome{Verdict: engine.OK, Status: 200, Output: json.RawMessage(`{"user":"` + it.Line + `"}`)}, nil
	})
	input := "alice\nbob\nnobody\n"
	var results bytes.Buffer
	e, err := engine.New(engine.Config{
		Settings: engine.Settings{Parallelism: 1, Rate: 100, Burst: 1},
		Retries:  3,
		Adapter:  lookup,
		Source:   engine.NewLineReader(strings.NewReader(input), false),
		Total:    3,
		Results:  &results,
	})
	if err != nil {
		log.Fatal(err)
	}
	sum, err := e.Run(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%v: %d ok, %d failed, %d calls\n", sum.State, sum.OK, sum.Failed, sum.Calls)

	dec := json.NewDecoder(&results)
	for dec.More() {
		var row struct {
			Item     string          `json:"item"`
			OK       bool            `json:"ok"`
			Attempts int             `json:"attempts"`
			Output   json.RawMessage `json:"output"`
			Error    string          `json:"error"`
		}
		if err := dec.Decode(&row); err != nil {
			log.Fatal(err)
		}
		if row.OK {
			fmt.Printf("%s: ok %s\n", row.Item, row.Output)
		} else {
			fmt.Printf("%s: failed after %d attempt: %s\n", row.Item, row.Attempts, row.Error)
		}
	}
	// Output:
	// done: 2 ok, 1 failed, 3 calls
	// alice: ok {"user":"alice"}
	// bob: ok {"user":"bob"}
	// nobody: failed after 1 attempt: 404 Not Found
}
