package engine

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
)

// TestOpenFileLimitWarnsAndRunsOn stands in for the OS's RLIMIT_NOFILE: a hard limit too low
// for the asked parallelism gives a warning with the numbers and a way out, at start and when
// parallelism is raised, and the run still completes.
func TestOpenFileLimitWarnsAndRunsOn(t *testing.T) {
	var asked []uint64
	saved := openFileLimit
	openFileLimit = func(need uint64) (uint64, uint64, error) {
		asked = append(asked, need)
		return 100, 100, nil // as if the soft limit had been raised to a hard limit of 100
	}
	t.Cleanup(func() { openFileLimit = saved })

	var out bytes.Buffer
	e, err := New(Config{
		Settings: Settings{Parallelism: 8, Burst: 1},
		Adapter: AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) {
			return Outcome{Verdict: OK}, nil
		}),
		Source:  NewLineReader(strings.NewReader("a\nb\nc\n"), false),
		Results: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if w := e.Snapshot().Warnings; len(w) != 0 {
		t.Fatalf("warnings before Run = %q, want none", w)
	}
	sub := e.Subscribe(16)
	if err := e.SetParallelism(200, "test"); err != nil { // before Run: checked at Run
		t.Fatal(err)
	}
	s, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.OK != 3 {
		t.Errorf("Run() ok = %d, want 3: a warning must not stop the run", s.OK)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "parallelism 200 needs about 264 open files but the limit is 100") ||
		!strings.Contains(s.Warnings[0], "ulimit -n 264") {
		t.Errorf("Run() warnings = %q, want one naming parallelism 200, 264 files, limit 100 and `ulimit -n 264`", s.Warnings)
	}
	if len(asked) == 0 || asked[len(asked)-1] != 264 {
		t.Errorf("openFileLimit asked for %v, want a last request of 264 (200 calls + 64 reserve)", asked)
	}
	var warned bool
	for len(sub.C) > 0 {
		if ev := <-sub.C; ev.Kind == Warning {
			warned = true
		}
	}
	if !warned {
		t.Error("no Warning event was published")
	}
}

// TestOpenFileLimitFits: no warning when the limit is large enough.
func TestOpenFileLimitFits(t *testing.T) {
	saved := openFileLimit
	openFileLimit = func(need uint64) (uint64, uint64, error) { return need, need, nil }
	t.Cleanup(func() { openFileLimit = saved })
	e, err := New(Config{
		Settings: Settings{Parallelism: 2, Burst: 1},
		Adapter:  AdapterFunc(func(ctx context.Context, it Item) (Outcome, error) { return Outcome{}, nil }),
		Source:   NewLineReader(strings.NewReader("a\n"), false),
		Results:  &bytes.Buffer{},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e.Run(context.Background())
	if len(s.Warnings) != 0 {
		t.Errorf("Run() warnings = %q, want none", s.Warnings)
	}
}

// TestOpenFileLimitRaisesSoftLimit checks the real OS path: with the soft limit lowered below
// what is needed, openFileLimit raises it again (up to the hard limit).
func TestOpenFileLimitRaisesSoftLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatalf("Getrlimit: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	low := orig
	low.Cur = 256
	if low.Max < 512 {
		t.Skipf("hard limit %d is too low to test raising", low.Max)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatalf("lowering the soft limit: %v", err)
	}
	got, hard, err := openFileLimit(512)
	if err != nil || got != 512 || hard != orig.Max {
		t.Errorf("openFileLimit(512) = %d, %d, %v, want 512, %d, nil (soft raised from 256)", got, hard, err, orig.Max)
	}
	var now syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	if now.Cur != 512 {
		t.Errorf("soft limit after openFileLimit(512) = %d, want 512", now.Cur)
	}
}
