package human

import (
	"testing"
	"time"
)

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{Count(0), "0"}, {Count(999), "999"}, {Count(1000), "1,000"}, {Count(1234567), "1,234,567"}, {Count(-1200), "-1,200"},
		{Clock(0), "0:00"}, {Clock(72*time.Second + 400*time.Millisecond), "1:12"}, {Clock(time.Hour + 12*time.Minute + 31*time.Second), "1:12:31"},
		{Clock(-time.Second), "0:00"},
		{Latency(400 * time.Microsecond), "0.4ms"}, {Latency(52 * time.Millisecond), "52ms"}, {Latency(1200 * time.Millisecond), "1.2s"},
		{Latency(35 * time.Second), "35s"},
		{Bytes(512), "512 B"}, {Bytes(107400), "104.9 KiB"}, {Bytes(3 << 30), "3.0 GiB"},
		{Span(5 * time.Second), "5s"}, {Span(80 * time.Second), "1m20s"}, {Span(2 * time.Minute), "2m"}, {Span(65 * time.Minute), "1h05m"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
