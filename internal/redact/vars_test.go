package redact

import (
	"sync"
	"testing"
)

// TestVars: the values of the named variables go, in any spelling, also after a variable
// changes (both the old and the new value); a variable not named, one unset and a value
// shorter than MinLen stay; Text also blanks URLs' credentials, String leaves URLs alone. It is
// used from many goroutines at once while a variable rotates (run with -race).
func TestVars(t *testing.T) {
	var mu sync.Mutex
	env := map[string]string{"TOKEN": "tok/&<x>-1234", "SHORT": "abc", "OTHER": "not-named-here"}
	lookup := func(k string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		v, ok := env[k]
		return v, ok
	}
	v := NewVars(lookup, []string{"TOKEN", "SHORT", "UNSET"})
	if v.Empty() || !NewVars(lookup, nil).Empty() {
		t.Fatal("Empty: want false with names, true without")
	}
	for _, tc := range []struct{ in, want string }{
		{"Bearer tok/&<x>-1234", "Bearer REDACTED"},
		{`{"auth":"tok\/\u0026\u003cx\u003e-1234"}`, `{"auth":"REDACTED"}`},
		{"abc and not-named-here stay", "abc and not-named-here stay"},
	} {
		if got := v.String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := v.String("https://u:p@h/?k=v tok/&<x>-1234"); got != "https://u:p@h/?k=v REDACTED" {
		t.Errorf("String touched a URL: %q", got)
	}
	if got := v.Text("https://u:p@h/?k=v tok/&<x>-1234"); got != "https://REDACTED@h/?k=REDACTED REDACTED" {
		t.Errorf("Text: %q", got)
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				v.Text("tok/&<x>-1234 rotated-5678")
			}
		})
	}
	mu.Lock()
	env["TOKEN"] = "rotated-5678"
	mu.Unlock()
	wg.Wait()
	if got := v.String("old tok/&<x>-1234 new rotated-5678"); got != "old REDACTED new REDACTED" {
		t.Errorf("after a rotation: %q", got)
	}
}
