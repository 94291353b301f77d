package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// steady returns n buckets of c answers each.
func steady(n int, c int64) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = c
	}
	return v
}

func TestMaxWindow(t *testing.T) {
	ok := append(steady(200, 2), 50) // 200/s, then a spike of 50 in one bucket
	if got := maxWindow(ok, 0, len(ok)); got != 2*99+50 {
		t.Errorf("maxWindow = %d, want %d", got, 2*99+50)
	}
	if got := maxWindow(nil, 0, 0); got != 0 {
		t.Errorf("maxWindow(nil) = %d, want 0", got)
	}
}

func TestFirstReach(t *testing.T) {
	ok := append(steady(300, 1), steady(300, 4)...) // 100/s for 3 s, then 400/s
	if got := firstReach(ok, 0, 90); got != time.Second {
		t.Errorf("firstReach(90) = %v, want 1s: the first whole window", got)
	}
	if got := firstReach(ok, 0, 360); got != 3870*time.Millisecond {
		t.Errorf("firstReach(360) = %v, want 3.87s", got) // 13 × 1 + 87 × 4 = 361 ≥ 360
	}
	if got := firstReach(ok, 300, 360); got != 4*time.Second {
		t.Errorf("firstReach(from 3s, 360) = %v, want 4s: windows start at from", got)
	}
	if got := firstReach(ok, 0, 1000); got != -1 {
		t.Errorf("firstReach(1000) = %v, want -1 (never)", got)
	}
}

func TestFollowTime(t *testing.T) {
	// 200/s until bucket 100, then 429s for 0.5 s, then 100/s (1 per bucket) until bucket 500.
	ok := append(steady(100, 2), steady(400, 1)...)
	tm := make([]int64, 500)
	for i := 100; i < 150; i++ {
		tm[i], ok[i] = 1, 0
	}
	got, rate, share := followTime(ok, tm, 100, 500, 100)
	// a window must hold 90..110 ok and at most one 429: the first such is [149, 249), which
	// holds the last 429 of the storm
	if want := 1490 * time.Millisecond; got != want || rate != 100 || share != 0 {
		t.Errorf("followTime = %v, %v/s, %v%%; want %v, 100/s, 0%%", got, rate, share, want)
	}
	tm[480] = 1 // one late probe past the limit: still following
	if got, _, _ := followTime(ok, tm, 100, 500, 100); got != 1490*time.Millisecond {
		t.Errorf("with one late 429: followTime = %v, want 1.49s", got)
	}
	for i := 300; i < 500; i += 20 { // 10 × 429 in the last 2 s (one of them the probe's): hammering
		tm[i] = 1
	}
	if got, _, share := followTime(ok, tm, 100, 500, 100); got != -1 || share != 100.0*10/210 {
		t.Errorf("hammering: followTime = %v, %v%%; want never and 10 of 210 answers", got, share)
	}
}

func TestItems(t *testing.T) {
	for _, s := range limitShapes() {
		n := s.items(30 * time.Second)
		switch s.name {
		case "bucket", "window":
			if n != 6000 {
				t.Errorf("%s: items(30s) = %d, want 6000", s.name, n)
			}
		case "halve":
			if n != 4500 {
				t.Errorf("halve: items(30s) = %d, want 4500 (15 s at 200/s, 15 s at 100/s)", n)
			}
		case "double":
			if n != 5000 {
				t.Errorf("double: items(30s) = %d, want 5000 (10 s at 100/s, 20 s at 200/s)", n)
			}
			if p, r := overSettings(s); r != 250 || p < 24 {
				t.Errorf("overSettings(double) = %d, %v; want 25%% over the doubled limit, 250/s", p, r)
			}
		}
		if err := s.cfg.Validate(); err != nil {
			t.Errorf("%s: %v", s.name, err)
		}
	}
	p, r := overSettings(limitShapes()[0])
	if p != 24 || r != 250 {
		t.Errorf("overSettings(bucket) = %d, %v; want 24, 250", p, r)
	}
	if p, r := overSettings(limitShapes()[2]); p != 20 || r != 0 {
		t.Errorf("overSettings(conc429) = %d, %v; want 20, 0", p, r)
	}
}

func TestCheckRows(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "ids")
	if err := os.WriteFile(in, []byte("1\n2\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rows     string
		ok, fail int
		problem  string
	}{
		{`{"item":"1","ok":true}` + "\n" + `{"item":"3","ok":false}` + "\n" + `{"item":"2","ok":true}` + "\n", 2, 1, ""},
		{`{"item":"1","ok":true}` + "\n" + `{"item":"1","ok":true}` + "\n" + `{"item":"9","ok":true}` + "\n", 3, 0,
			"2 items without a row, 1 duplicate rows, 1 rows of items not in the input"},
		{`{"item":"1","ok":true}` + "\n" + `{"item":"2","ok":true}` + "\n", 2, 0, "2 rows for 3 items, 1 items without a row"},
	}
	for i, tt := range tests {
		out := filepath.Join(dir, "rows")
		if err := os.WriteFile(out, []byte(tt.rows), 0o644); err != nil {
			t.Fatal(err)
		}
		ok, fail, problem := checkRows(out, in, 3)
		if ok != tt.ok || fail != tt.fail || problem != tt.problem {
			t.Errorf("case %d: checkRows = %d, %d, %q; want %d, %d, %q", i, ok, fail, problem, tt.ok, tt.fail, tt.problem)
		}
	}
}
