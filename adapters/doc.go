// Package adapters holds the sinks a job calls, one file each: http (templates, batches,
// per-host limits), exec, postgres and llm, each an engine.Adapter; the simulated API and the
// simulated LLM provider that the demo, the tests and the benchmarks run against; and the
// saving of response bodies. The engine knows none of them: cli wires one in by name.
package adapters
