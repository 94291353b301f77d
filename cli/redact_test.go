package cli_test

// Nothing leaked (issue 18), end to end: `throttle run http` with an Authorization header read
// from ${API_TOKEN}, against a server that echoes the header back through the errors of Go's
// HTTP client, the body at the --max-body cut and each encoding. No output of the run holds
// the token in any spelling, nor any 8-character piece of it.

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/throttle-dev/throttle/internal/redacttest"
)

// redactToken is the secret of the run; redactEcho the hostile server's answers by path,
// bodies as ok answers, kept in the rows' output (cut at --max-body 40).
const redactToken = redacttest.Token

var redactEcho = redacttest.Echo("200 OK")

// echoBody is an ok answer with body b.
func echoBody(b string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
}

func TestRunLeaksNoToken(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	srv := newRawServer(t, func(s *rawServer, c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			auth := req.Header.Get("Authorization")
			if req.URL.Path == "/hang" { // held until the test has read the socket
				<-release
				io.WriteString(c, echoBody("held"))
				continue
			}
			answer := redactEcho[strings.TrimPrefix(req.URL.Path, "/")]
			if answer == nil {
				io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			io.WriteString(c, answer(auth, strings.TrimPrefix(auth, "Bearer ")))
		}
	})
	dir := t.TempDir()
	var items strings.Builder
	for path := range redactEcho {
		items.WriteString(path + "\n")
	}
	items.WriteString("hang\n")
	input := writeFile(t, "items.txt", items.String())
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, logf, rec := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "run.log"), filepath.Join(dir, "run.rec")
	sock := filepath.Join(dir, "run.sock")
	done := make(chan result, 1)
	go func() {
		res, _ := runBounded(t, invocation{
			args: []string{"run", "http", "--input", input, "--out", out, "--log", logf, "--record", rec,
				"--url", srv.url() + "/{item}", "--header", "Authorization: Bearer ${API_TOKEN}",
				"--max-body", "40", "--timeout", "10s", "--retries", "1", "--max-backoff", "10ms",
				"--parallelism", "4", "--progress-every", "20ms", "--control", sock},
			env: map[string]string{"API_TOKEN": redactToken},
		}, 30*time.Second)
		done <- res
	}()
	// Every echo has its row and the held call is in flight: what the socket tells now (the
	// snapshot that the screen and attach draw too: recent errors, warnings) must be clean.
	if !waitFor(15*time.Second, func() bool {
		b, _ := os.ReadFile(out)
		return strings.Count(string(b), "\n") == len(redactEcho)
	}) {
		t.Fatal("the echo items never all ended")
	}
	ctlOut := map[string]string{}
	for _, args := range [][]string{{"get", "--json"}, {"get"}} {
		r := run(t, invocation{args: append([]string{"ctl", "--control", sock}, args...)})
		if r.code != 0 {
			t.Fatalf("ctl %v: exit %d\n%s", args, r.code, r.stderr)
		}
		ctlOut["ctl "+strings.Join(args, " ")] = r.stdout
	}
	var state struct{ OK, Failed int }
	if err := json.Unmarshal([]byte(ctlOut["ctl get --json"]), &state); err != nil || state.OK+state.Failed != len(redactEcho) {
		t.Errorf("ctl get --json does not tell the run's state (ok + failed = %d, want %d; %v):\n%s",
			state.OK+state.Failed, len(redactEcho), err, ctlOut["ctl get --json"])
	}
	once.Do(func() { close(release) })
	res := <-done
	if res.code != 1 { // some items fail: the client errors
		t.Errorf("exit %d, want 1; stderr:\n%s", res.code, res.stderr)
	}

	rows, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	logText, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	recText, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{"rows": string(rows), "--log": string(logText), "recording": string(recText),
		"stdout": res.stdout, "stderr (progress lines, summary)": res.stderr}
	for name, text := range ctlOut {
		outputs[name] = text
	}
	for name, text := range outputs {
		if l := redacttest.Leaks(text, redactToken); len(l) > 0 {
			t.Errorf("%s leaks %v:\n%s", name, l, text)
		}
	}
	// The outputs are not empty of what they should say: every item has its row, the client
	// errors say what went wrong, and the log counts the failed calls.
	n := strings.Count(string(rows), "\n")
	for _, want := range []string{"missing colon", "bad Content-Length", "unsupported protocol scheme", "no such host", "REDACTED"} {
		if !strings.Contains(string(rows), want) {
			t.Errorf("rows lack %q:\n%s", want, rows)
		}
	}
	if n != len(redactEcho)+1 {
		t.Errorf("%d rows, want %d:\n%s", n, len(redactEcho), rows)
	}
	if !strings.Contains(string(logText), "REDACTED") {
		t.Errorf("the log does not show the scrubbed errors:\n%s", logText)
	}
}
