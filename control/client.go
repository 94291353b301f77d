package control

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// Do sends one request to the socket at path and returns its response.
func Do(path string, req Request) (Response, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return Response{}, fmt.Errorf("control: %s: no run answers there: %w", path, err)
	}
	defer func() { _ = c.Close() }() // the answer was read; this drops the connection
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req.V = Version
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, fmt.Errorf("control: %w", err)
	}
	var resp Response
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	if !sc.Scan() {
		return Response{}, fmt.Errorf("control: %s closed without an answer (another user's socket?)", path)
	}
	if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
		return Response{}, fmt.Errorf("control: bad answer: %w", err)
	}
	return resp, nil
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
