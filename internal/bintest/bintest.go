// Package bintest is a test kit: it builds the throttle binary once per test process, for
// the tests that run the real binary (as a user would, under tmux, as hosts of a shared job).
// Tests only.
package bintest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	once  sync.Once
	dir   string
	bin   string
	built error
	out   []byte
)

// Build returns the path of the throttle binary built from this module, building it on the
// first call of the test process; a failed build fails each test that asks for it.
func Build(t testing.TB) string {
	t.Helper()
	once.Do(build)
	if built != nil {
		t.Fatalf("go build: %v\n%s", built, out)
	}
	return bin
}

func build() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		built = err
		return
	}
	if dir, built = os.MkdirTemp("", "throttle-bin-"); built != nil {
		return
	}
	bin = filepath.Join(dir, "throttle")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod))) // the module root: package main
	out, built = cmd.CombinedOutput()
}

// Main runs the tests of a package and removes the binary Build made; a package whose tests
// use Build calls it from its TestMain: os.Exit(bintest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	return code
}
