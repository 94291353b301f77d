package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/adapters"
)

// startSimLLM serves a simulated chat completions API on 127.0.0.1 for the test and returns
// it and its endpoint.
func startSimLLM(t *testing.T, cfg adapters.SimLLMConfig) (*adapters.SimLLM, string) {
	t.Helper()
	sim := adapters.NewSimLLM(cfg)
	url, shutdown, err := adapters.StartSimLLMServer(sim, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) }) // the test is over
	return sim, url + adapters.SimLLMChatPath
}

// writePrompts writes n JSONL items {"id":i,"text":…} and returns the file's path.
func writePrompts(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"id":%d,"text":"Story %d: a fox met a dog, and they talked until the sun went down."}`+"\n", i, i)
	}
	return writeFile(t, "prompts.jsonl", b.String())
}

// llmArgs is a run of the llm adapter against endpoint, followed by extra flags.
func llmArgs(in, out, endpoint string, extra ...string) []string {
	return append([]string{"run", "llm", "--input", in, "--out", out, "--url", endpoint, "--model", "sim-1",
		"--tpm", "60000", "--rpm", "6000", "--prompt", "Summarise: {.text}", "--system", "Be brief.",
		"--max-tokens", "64", "--header", "Authorization: Bearer ${OPENAI_API_KEY}", "--parallelism", "4"}, extra...)
}

// TestLLMRunCLI: throttle run llm against the simulated provider on 127.0.0.1: every item
// gets a row with the answer and its usage, and the key never shows.
func TestLLMRunCLI(t *testing.T) {
	const key = "sk-cli-test-9f8e7d6c"
	sim, endpoint := startSimLLM(t, adapters.SimLLMConfig{TPM: 60_000, RPM: 6000, Latency: 5 * time.Millisecond, APIKey: key, Seed: 1})
	in, out := writePrompts(t, 20), outPath(t)
	res := run(t, invocation{args: llmArgs(in, out, endpoint), env: map[string]string{"OPENAI_API_KEY": key}})
	if res.code != 0 {
		t.Fatalf("exit %d, want 0\nstderr: %s", res.code, res.stderr)
	}
	rows := rowsByItem(t, readRows(t, out))
	if len(rows) != 20 {
		t.Fatalf("%d rows, want 20", len(rows))
	}
	for item, r := range rows {
		var o struct {
			Content      string `json:"content"`
			FinishReason string `json:"finish_reason"`
			Usage        struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
				TotalTokens      int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(r.Output, &o); err != nil || !*r.OK || r.Status != 200 {
			t.Fatalf("row of %s: ok %v status %d output %s (%v); want an ok chat answer", item, *r.OK, r.Status, r.Output, err)
		}
		u := o.Usage
		if o.Content == "" || o.FinishReason == "" || u.PromptTokens < 1 || u.CompletionTokens < 1 || u.CompletionTokens > 64 ||
			u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Errorf("row of %s: output %s, want content, finish_reason and usage within max tokens 64", item, r.Output)
		}
		if !strings.HasPrefix(item, `{"id":`) {
			t.Errorf("row item %s, want the JSONL object", item)
		}
	}
	if st := sim.Stats(); st.OK != 20 || st.TooMany != 0 {
		t.Errorf("the sim answered %+v, want 20 ok and no 429", st)
	}
	data, _ := os.ReadFile(out)
	for what, text := range map[string]string{"rows": string(data), "stdout": res.stdout, "stderr": res.stderr} {
		if strings.Contains(text, key) {
			t.Errorf("%s hold the key:\n%s", what, text)
		}
	}
}

// TestLLMRunCLIWrongKey: a wrong key fails every item at once (no retries), and the
// provider's echo of it is redacted in the rows.
func TestLLMRunCLIWrongKey(t *testing.T) {
	const wrong = "sk-wrong-1a2b3c4d"
	sim, endpoint := startSimLLM(t, adapters.SimLLMConfig{Latency: time.Millisecond, APIKey: "sk-right"})
	in, out := writePrompts(t, 3), outPath(t)
	res := run(t, invocation{args: llmArgs(in, out, endpoint), env: map[string]string{"OPENAI_API_KEY": wrong}})
	if res.code != 1 {
		t.Fatalf("exit %d, want 1\nstderr: %s", res.code, res.stderr)
	}
	for _, r := range readRows(t, out) {
		if *r.OK || r.Status != 401 || *r.Attempts != 1 || r.Error != "401 Unauthorized: Incorrect API key provided: REDACTED." {
			t.Errorf("row %s: ok %v status %d attempts %d error %q; want a 401 without retries, the key redacted",
				r.item(), *r.OK, r.Status, *r.Attempts, r.Error)
		}
	}
	data, _ := os.ReadFile(out)
	if strings.Contains(string(data)+res.stdout+res.stderr, wrong) {
		t.Errorf("the key shows in the rows or the output:\n%s\n%s%s", data, res.stdout, res.stderr)
	}
	if st := sim.Stats(); st.Rejected != 3 {
		t.Errorf("the sim rejected %d requests, want 3", st.Rejected)
	}
}

// TestLLMUsageErrors: bad flags exit 2 and call nothing.
func TestLLMUsageErrors(t *testing.T) {
	sim, endpoint := startSimLLM(t, adapters.SimLLMConfig{Latency: time.Millisecond})
	in := writePrompts(t, 2)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no url", []string{"run", "llm", "--input", in, "--model", "m"}, "llm needs --url"},
		{"no model", []string{"run", "llm", "--input", in, "--url", endpoint}, "llm needs --model"},
		{"negative tpm", llmArgs(in, outPath(t), endpoint, "--tpm", "-1"), "--tpm -1"},
		{"negative rpm", llmArgs(in, outPath(t), endpoint, "--rpm", "-5"), "--rpm -5"},
		{"max tokens 0", llmArgs(in, outPath(t), endpoint, "--max-tokens", "0"), "--max-tokens 0"},
		{"max tokens above the tpm", llmArgs(in, outPath(t), endpoint, "--tpm", "1000", "--max-tokens", "4096"), "more than the tpm"},
		{"a secret in the prompt", llmArgs(in, outPath(t), endpoint, "--prompt", "Hi ${OPENAI_API_KEY}"), "not allowed in a prompt"},
		{"a bad url", llmArgs(in, outPath(t), "localhost:8080/v1/chat/completions"), "is not http or https"},
		{"a bad header", llmArgs(in, outPath(t), endpoint, "--header", "Authorization Bearer x"), "header 2 of 2"},
	} {
		res := run(t, invocation{args: tc.args, env: map[string]string{"OPENAI_API_KEY": "k"}})
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) || !strings.Contains(res.stderr, "nothing was called") {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.name, res.code, res.stderr, tc.want)
		}
	}
	if st := sim.Stats(); st.Requests != 0 {
		t.Errorf("the sim got %d requests from bad command lines, want none", st.Requests)
	}
}

func TestLLMHelp(t *testing.T) {
	res := run(t, invocation{args: []string{"run", "llm", "--help"}})
	if res.code != 0 {
		t.Fatalf("exit %d", res.code)
	}
	for _, want := range []string{"--url", "--model", "--tpm", "--rpm", "--prompt", "--system", "--max-tokens", "--header",
		"counts tokens per minute", "throttle run llm --input prompts.jsonl"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("run llm --help lacks %q:\n%s", want, res.stdout)
		}
	}
	if res := run(t, invocation{args: []string{"run", "--help"}}); !strings.Contains(res.stdout, "llm") {
		t.Errorf("run --help does not list llm:\n%s", res.stdout)
	}
}

// TestLLMWarnsOfLongWaits: parallelism far beyond what the limits can serve is told before
// the run, since the wait for tokens counts in --timeout.
func TestLLMWarnsOfLongWaits(t *testing.T) {
	_, endpoint := startSimLLM(t, adapters.SimLLMConfig{Latency: time.Millisecond})
	empty := writeFile(t, "none.jsonl", "")
	for _, tc := range []struct {
		extra []string
		warns bool
	}{
		{[]string{"--parallelism", "64", "--tpm", "10000", "--max-tokens", "256"}, true}, // 64 × 256 tokens at 167/s: 97s
		{[]string{"--parallelism", "64", "--rpm", "60", "--tpm", "0"}, true},             // 64 requests at 1/s
		{[]string{"--parallelism", "64", "--tpm", "10000", "--timeout", "0"}, false},     // no timeout to fear
		{[]string{"--parallelism", "4", "--tpm", "60000", "--max-tokens", "256"}, false}, // 1s
	} {
		res := run(t, invocation{args: llmArgs(empty, outPath(t), endpoint, tc.extra...), env: map[string]string{"OPENAI_API_KEY": "k"}})
		if res.code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.extra, res.code, res.stderr)
		}
		if got := strings.Contains(res.stderr, "calls may wait"); got != tc.warns {
			t.Errorf("%v: warned %v, want %v\nstderr: %s", tc.extra, got, tc.warns, res.stderr)
		}
	}
}
