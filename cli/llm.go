package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/adapters"
	"github.com/throttle-dev/throttle/internal/redact"
)

func init() { registerAdapter(40, newLLMCmd) }

// llmFlags are the flags of the llm adapter.
type llmFlags struct {
	url       string
	model     string
	tpm       int
	rpm       int
	prompt    string
	system    string
	maxTokens int
	headers   []string
}

func (f *llmFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.url, "url", "", "the chat completions endpoint, e.g. https://api.openai.com/v1/chat/completions (required)")
	fs.StringVar(&f.model, "model", "", "the model to ask (required)")
	fs.IntVar(&f.tpm, "tpm", 0, "the provider's tokens per minute: each call's estimate is taken before it and corrected by its usage (0: no limit)")
	fs.IntVar(&f.rpm, "rpm", 0, "the provider's requests per minute (0: no limit)")
	fs.StringVar(&f.prompt, "prompt", "{item}", "the user message: {item} is the input line, {.field} a field of a JSONL item")
	fs.StringVar(&f.system, "system", "", "a system message, a template like --prompt (default none)")
	fs.IntVar(&f.maxTokens, "max-tokens", adapters.DefaultLLMMaxTokens, "max_tokens of each answer; providers count it against --tpm when a call arrives, so keep it near what answers need")
	fs.StringArrayVar(&f.headers, "header", nil, "request header 'Key: Value' (repeatable); ${NAME} reads environment variable NAME at call time")
}

func (f *llmFlags) config(env *Env) (adapters.LLMConfig, error) {
	switch {
	case f.url == "":
		return adapters.LLMConfig{}, usageError("llm needs --url, e.g. --url https://api.openai.com/v1/chat/completions")
	case strings.TrimSpace(f.model) == "":
		return adapters.LLMConfig{}, usageError("llm needs --model, e.g. --model gpt-4o-mini")
	case f.tpm < 0:
		return adapters.LLMConfig{}, usageError("--tpm %d: must be 0 (no limit) or more", f.tpm)
	case f.rpm < 0:
		return adapters.LLMConfig{}, usageError("--rpm %d: must be 0 (no limit) or more", f.rpm)
	case f.maxTokens < 1:
		return adapters.LLMConfig{}, usageError("--max-tokens %d: must be at least 1", f.maxTokens)
	}
	return adapters.LLMConfig{
		URL: f.url, Model: f.model, TPM: float64(f.tpm), RPM: float64(f.rpm), Prompt: f.prompt,
		System: f.system, MaxTokens: f.maxTokens, Headers: f.headers, LookupEnv: env.LookupEnv,
		UserAgent: "throttle/" + strings.TrimPrefix(versionWord(), "v"),
	}, nil
}

// tokenWait is the least time the last of parallelism calls can wait for its tokens at the
// start of a run, when every worker takes its estimate at once: each estimate holds at
// least max_tokens, and the buckets hold one second of their limits.
func (f *llmFlags) tokenWait(parallelism int) time.Duration {
	var wait float64 // seconds
	if f.tpm > 0 {
		perSecond := float64(f.tpm) / 60
		wait = (float64(parallelism*f.maxTokens) - max(perSecond, 1)) / perSecond
	}
	if f.rpm > 0 {
		perSecond := float64(f.rpm) / 60
		wait = max(wait, (float64(parallelism)-max(perSecond, 1))/perSecond)
	}
	return time.Duration(max(wait, 0) * float64(time.Second))
}

// warnTokenWait tells, before a run starts, when calls will wait for tokens so long that the
// per-call --timeout, which the wait counts in, may end them: more parallelism than the
// limits can serve only queues.
func (f *llmFlags) warnTokenWait(cmd *cobra.Command, env *Env) {
	p, errP := cmd.Flags().GetInt("parallelism")
	timeout, errT := cmd.Flags().GetDuration("timeout")
	if errP != nil || errT != nil || timeout <= 0 || p < 1 {
		return // not a run (probe has no --parallelism), or no timeout to fear
	}
	if wait := f.tokenWait(p); wait > timeout/2 {
		fmt.Fprintf(env.Stderr, "throttle: llm: with --parallelism %d, calls may wait %v for tokens under --tpm %d --rpm %d, "+
			"and that wait counts in --timeout %v: lower --parallelism (more only queues) or raise --timeout\n",
			p, wait.Round(time.Second), f.tpm, f.rpm, timeout)
	}
}

func newLLMCmd(env *Env, act action) *cobra.Command {
	lf := &llmFlags{}
	cmd := &cobra.Command{
		Use:   "llm",
		Short: "Ask an OpenAI-compatible chat completions API once per item, under its TPM and RPM",
		Long: `Ask an OpenAI-compatible chat completions API once per item: POST
{"model", "messages": [system?, user], "max_tokens"} to --url. The user message is the
--prompt template: {item} is the input line, {.field} a field of a JSONL item. Headers
may read secrets with ${NAME} at call time; they never appear in argv, rows or logs.
The row's output holds the answer (choices[0].message.content), finish_reason, model
and usage.

The provider counts tokens per minute as well as requests: a call is charged its
prompt plus max_tokens when it arrives. So before each call the adapter estimates
that (a token per 4 characters of prompt, rounded up, plus max_tokens) and takes it
from a --tpm bucket, and one request from an --rpm bucket, waiting while either is
empty; after the answer it gives back what the call did not use (or charges what it
used beyond the estimate), so that the tokens really used run at --tpm, not at a
fraction of it. Each bucket's burst is one second of its limit (the TPM's at least
one call). The wait counts in --timeout but not in latency_ms: rows carry it as
"wait_ms".

2xx is ok. 429, 408 and 5xx are retried, after the provider's retry-after-ms,
retry-after or x-ratelimit-reset-* headers; a 429 for insufficient_quota and other
4xx fail at once.`,
		Example: `  # The provider counts tokens per minute: 60,000 TPM and 500 RPM on this key.
  export OPENAI_API_KEY=…   # never on the command line
  throttle run llm --input prompts.jsonl --out summaries.jsonl \
      --url https://api.openai.com/v1/chat/completions --model gpt-4o-mini \
      --tpm 60000 --rpm 500 --prompt 'Summarise: {.text}' --max-tokens 256 \
      --header 'Authorization: Bearer ${OPENAI_API_KEY}' --parallelism 16

  # A local server (vLLM, llama.cpp, Ollama) with no quota: parallelism is the limit.
  throttle run llm --input questions.txt \
      --url http://127.0.0.1:8080/v1/chat/completions \
      --model qwen2.5-7b --system 'Answer in one sentence.' --parallelism 8

  # Retry only what failed (429s that ran out of retries, timeouts):
  throttle run llm … --input summaries.jsonl --only-failed --out summaries.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := lf.config(env)
			if err == nil {
				err = preflightAdapter(cmd.Context(), env, cfg.EnvUses(), "url", cfg.TargetHost())
			}
			if err != nil {
				return err
			}
			a, err := adapters.NewLLM(cfg)
			if err != nil {
				return usageError("%v", err)
			}
			defer func() { _ = a.Close() }() // the run's rows are written; the adapter holds no data
			lf.warnTokenWait(cmd, env)
			target := fmt.Sprintf("llm %s at %s", cfg.Model, redact.URL(cfg.URL))
			return act(cmd, job{adapter: a, name: "llm", target: target})
		},
	}
	lf.register(cmd)
	return cmd
}
