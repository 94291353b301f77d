package cli_test

import (
	"os"
	"testing"

	"github.com/throttle-dev/throttle/internal/bintest"
)

// TestMain removes the binary the tests of the real binary share (bintest.Build).
func TestMain(m *testing.M) { os.Exit(bintest.Main(m)) }
