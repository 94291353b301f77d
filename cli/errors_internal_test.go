package cli

import (
	"errors"
	"fmt"
	"testing"
)

func TestUserMessageDropsPackagePrefixes(t *testing.T) {
	for _, tc := range []struct{ err, want string }{
		{"adapters: GET http://x/1: connection refused", "GET http://x/1: connection refused"},
		{"--limit: cluster: redis at redis://h:1 does not answer", "--limit: redis at redis://h:1 does not answer"},
		{"control: socket path /x is 200 bytes", "socket path /x is 200 bytes"},
		{"demo: open /tmp/x: permission denied", "open /tmp/x: permission denied"},
		// A flag named like a package is not a prefix; nor is a word inside a part.
		{"--record: record: open x: denied", "--record: open x: denied"},
		{"the engine: stopped", "the engine: stopped"},
		// The message itself is never dropped, even if it is only a package's name.
		{"cluster", "cluster"},
	} {
		if got := userMessage(errors.New(tc.err)); got != tc.want {
			t.Errorf("userMessage(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
	wrapped := fmt.Errorf("--limit: %w", errors.New("cluster: limit x: no such limit"))
	if got, want := userMessage(&exitError{code: ExitUsage, err: wrapped}), "--limit: limit x: no such limit"; got != want {
		t.Errorf("wrapped: %q, want %q", got, want)
	}
}
