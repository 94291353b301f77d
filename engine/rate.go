package engine

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseRate parses a rate such as "50", "50/s", "3000/m", "1000/h" or "2.5/s" into calls per
// second. "0", "" and "unlimited" mean no cap and give 0.
func ParseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || s == "unlimited" || s == "none" {
		return 0, nil
	}
	num, unit, found := strings.Cut(s, "/")
	per := time.Second
	if found {
		switch strings.TrimSpace(unit) {
		case "s", "sec", "second":
			per = time.Second
		case "m", "min", "minute":
			per = time.Minute
		case "h", "hour":
			per = time.Hour
		default:
			return 0, fmt.Errorf("engine: rate %q: unit must be /s, /m or /h", s)
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 0 || v != v || v > 1e9 {
		return 0, fmt.Errorf("engine: rate %q: want a number of calls such as 50, 50/s, 3000/m or 1000/h", s)
	}
	return v / per.Seconds(), nil
}

// FormatRate renders calls per second the way an operator would write it: "unlimited",
// "50/s", "0.5/s" or, below one call a second, "30/m" (to three decimals).
func FormatRate(perSecond float64) string { return formatRate(perSecond, round3) }

// formatRate renders a rate in the largest unit in which it is at least one, rounded by round.
func formatRate(perSecond float64, round func(float64) float64) string {
	switch {
	case perSecond <= 0:
		return "unlimited"
	case round(perSecond) >= 1:
		return strconv.FormatFloat(round(perSecond), 'f', -1, 64) + "/s"
	case round(perSecond*60) >= 1:
		return strconv.FormatFloat(round(perSecond*60), 'f', -1, 64) + "/m"
	default:
		return strconv.FormatFloat(round(perSecond*3600), 'f', -1, 64) + "/h"
	}
}

func round3(v float64) float64 {
	return float64(int64(v*1000+0.5)) / 1000
}

// FormatComputedRate renders a rate that the engine or a probe computed, not one an operator
// typed, at three significant digits in the units rates are written in: "188/s", "2.5/s",
// "30/m", "12/h"; "unlimited" for 0 or less. The change log, the screen and the advice all
// write computed rates this way, so a figure reads alike wherever it appears.
func FormatComputedRate(perSecond float64) string { return formatRate(perSecond, sig3) }

// sig3 rounds v to three significant digits.
func sig3(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 3, 64), 64)
	return r
}
