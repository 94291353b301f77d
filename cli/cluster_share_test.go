package cli_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClusterEveryHostCalls: with a global cap that binds (6 across 3 hosts) the work still
// goes to every host: the first host takes only what its workers can start soon, so the
// hosts that join a moment later find entries and make calls.
func TestClusterEveryHostCalls(t *testing.T) {
	url := redisURL(t)
	bin := filepath.Join(t.TempDir(), "throttle")
	if b, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, _ arrival) {
		time.Sleep(100 * time.Millisecond)
		okJSON(w, r)
	})
	const items = 600
	in, out := writeItems(t, items), outPath(t)
	job := fmt.Sprintf("share-%d-%d", os.Getpid(), time.Now().UnixNano())
	coord := startHost(t, bin, "run", "http", "--input", in, "--out", out, "--url", srv.URL+"/{item}", "--headless",
		"--parallelism", "6", "--redis", url, "--job", job)
	coord.waitFor(t, "coordinator", 10*time.Second)
	hosts := map[string]*host{"coordinator": coord,
		"join 1": startHost(t, bin, "join", "--redis", url, "--job", job, "--headless"),
		"join 2": startHost(t, bin, "join", "--redis", url, "--job", job, "--headless")}
	calls := regexp.MustCompile(`(?m)^([0-9,]+) calls,`)
	total := 0
	for name, h := range hosts {
		select {
		case err := <-h.done:
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, h.stderr())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not end in 60 s:\n%s", name, h.stderr())
		}
		m := calls.FindStringSubmatch(h.stdout())
		if m == nil {
			t.Fatalf("%s's summary has no calls:\n%s", name, h.stdout())
		}
		n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
		t.Logf("%s: %d calls", name, n)
		total += n
		// A third would be 200; a host that joined a second late still gets far more than 60.
		if n < items/10 {
			t.Errorf("%s made %d of %d calls; every host should share the work", name, n, items)
		}
	}
	if total != items {
		t.Errorf("the hosts made %d calls for %d items", total, items)
	}
	if rows := readRows(t, out); len(rows) != items {
		t.Errorf("%d rows for %d items", len(rows), items)
	}
}
