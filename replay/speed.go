package replay

import (
	"fmt"
	"strconv"
	"strings"
)

// Max is the replay speed "as fast as possible".
const Max = 0

// Speeds are the replay speeds the screen's keys choose from, 1 to 4.
var Speeds = []float64{1, 10, 100, Max}

// ParseSpeed reads a replay speed: "1x", "10", "100x" or "max" (returned as Max).
func ParseSpeed(s string) (float64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "max" {
		return Max, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "x"), 64)
	if err != nil || v <= 0 || v > 1e6 {
		return 0, fmt.Errorf("%q: want 1x, 10x, 100x or max", s)
	}
	return v, nil
}

// FormatSpeed writes a speed as ParseSpeed reads it.
func FormatSpeed(v float64) string {
	if v == Max {
		return "max"
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + "x"
}
