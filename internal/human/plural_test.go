package human

import "testing"

func TestCounted(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 retries"}, {1, "1 retry"}, {2, "2 retries"}, {1234, "1,234 retries"}, {-1, "-1 retry"},
	} {
		if got := Counted(tc.n, "retry", "retries"); got != tc.want {
			t.Errorf("Counted(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
