// Package adapters holds the sinks a run calls, one file per sink: http (and its batch form),
// exec, postgres, llm, and the simulated APIs (sim, simllm) that tests, benchmarks and demos
// run against. Each is an [engine.Adapter], one method, with optional extras the engine looks
// for ([engine.Batcher], [engine.Coster], [engine.Resizer]): the engine knows none of them by
// name. Secrets in templates are read from the environment at call time, so that none reaches
// an argument list, a row or a recording.
package adapters
