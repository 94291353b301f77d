package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
)

// Engine is what the socket reads and steers: an [*engine.Engine].
type Engine = engine.Controls

// writeTimeout bounds a response's write: a client that does not read cannot hold a
// connection's goroutine for ever (and never the engine, which it does not touch).
const writeTimeout = 2 * time.Second

// Server serves one run's control socket.
type Server struct {
	ln    *net.UnixListener
	path  string
	eng   Engine
	title string
	wg    sync.WaitGroup

	mu      sync.Mutex
	viewers map[string]viewer // attached screens by their Request.Viewer
	// Viewer, Retries and Auto, when set before Serve, let screens attach (the view command).
	Viewer  Viewer
	Retries int
	Auto    bool
	// Job, when set before Serve, is the progress of the job across hosts this host
	// coordinates: get tells it beside this host's counts.
	Job func() JobProgress
}

// Listen creates the control socket at path (0600) and returns its server; Serve must be
// called. A stale socket left by a dead run is replaced; a live one is refused.
func Listen(path string, eng Engine, title string) (*Server, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control: socket path %s is %d bytes, more than the %d a unix socket takes", path, len(path), maxSocketPath)
	}
	if err := checkPrivateDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close() // only dialled to see whether someone listens
			return nil, fmt.Errorf("control: another run serves %s", path)
		}
		_ = os.Remove(path) // stale: its run is gone
	}
	old := syscall.Umask(0o177) // the socket is born 0600: no moment when others may connect
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return &Server{ln: ln, path: path, eng: eng, title: title}, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve accepts connections until Close.
func (s *Server) Serve() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { _ = c.Close() }() // the exchange is over (or refused): closing loses nothing
			if err := checkPeer(c); err != nil {
				return
			}
			s.serveConn(c)
		}()
	}
}

// viewer is what the server knows of an attached screen: when it last fetched a view, and
// whether that view showed the run's end.
type viewer struct {
	last  time.Time
	final bool
}

// Linger bounds how long Close waits for attached screens to fetch the final view; a screen
// that asked for no view in the last Linger is gone (it asks several times a second).
const Linger = 2 * time.Second

// Close stops serving and removes the socket. Once the run has ended it first waits, at most
// Linger, until every screen attached of late has fetched a view of the end: a screen that
// only saw the socket go would be left with the numbers of its last view, not the job's final
// ones.
func (s *Server) Close() error {
	if !s.eng.Snapshot().Ended.IsZero() {
		deadline := time.Now().Add(Linger)
		for !s.viewersSawTheEnd() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// viewersSawTheEnd reports whether every screen attached of late has fetched a final view.
func (s *Server) viewersSawTheEnd() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.viewers {
		if !v.final && time.Since(v.last) < Linger {
			return false
		}
	}
	return true
}

// checkPeer refuses a peer that is not this user (SO_PEERCRED).
func checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return credErr
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("control: peer uid %d is not %d", cred.Uid, os.Getuid())
	}
	return nil
}

func (s *Server) serveConn(c *net.UnixConn) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), 64<<10)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req Request
		resp := Response{V: Version}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp.Error = "control: a request is one JSON object per line: " + err.Error()
		} else if err := s.apply(req); err != nil {
			resp.Error = err.Error()
		} else if req.Cmd == "view" {
			resp.OK, resp.View = true, s.view()
			s.saw(req.Viewer, resp.View)
		} else {
			resp.OK = true
			snap := s.eng.Snapshot()
			var points []probes.Point
			if s.Viewer != nil {
				points = s.Viewer.Points(time.Now(), probes.RateWindow+2*time.Second)
			}
			resp.Status = statusOf(s.title, os.Getpid(), snap, points, s.Viewer != nil)
			if s.Job != nil {
				j := s.Job()
				resp.Status.Job = &j
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if enc.Encode(resp) != nil {
			return
		}
	}
}

// saw notes that the screen id was given the view v.
func (s *Server) saw(id string, v *View) {
	if id == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.viewers == nil {
		s.viewers = map[string]viewer{}
	}
	s.viewers[id] = viewer{last: time.Now(), final: !v.Snapshot.Ended.IsZero()}
}

// view is what an attached screen draws now.
func (s *Server) view() *View {
	snap := s.eng.Snapshot()
	v := &View{Title: s.title, Retries: s.Retries, Auto: s.Auto, Snapshot: snap}
	if s.Viewer != nil {
		now := time.Now()
		v.Points = s.Viewer.Points(now, probes.SeriesSpan)
		v.Latency = s.Viewer.Latency(now)
		v.Overall = s.Viewer.Overall()
		v.Errors = s.Viewer.Errors(8)
		v.Advice = s.Viewer.Advice(now, snap.Settings, snap.Effective)
	}
	return v
}

// apply carries out a request; an unknown command, key or a bad value changes nothing.
func (s *Server) apply(r Request) error {
	if r.V != 0 && r.V != Version {
		return fmt.Errorf("control: protocol version %d; this run speaks %d", r.V, Version)
	}
	origin := "ctl"
	if r.Origin == "tui" || r.Origin == "advisor" {
		origin = r.Origin
	}
	switch r.Cmd {
	case "get", "view":
		return nil
	case "pause":
		s.eng.Pause(origin)
	case "resume":
		s.eng.Resume(origin)
	case "drain":
		s.eng.Drain(origin)
	case "stop":
		s.eng.Stop(origin)
	case "set":
		return s.set(r, origin)
	default:
		return fmt.Errorf("control: unknown command %q: get, set, pause, resume, drain or stop", r.Cmd)
	}
	return nil
}

// set applies a set request as one change: its Set fields and its Key and Value, read by the
// engine's parser and applied by the engine's Set, so that a refused value changes nothing.
func (s *Server) set(r Request, origin string) error {
	u, err := engine.ParseFields(r.Set)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if r.Key != "" {
		v, err := engine.ParseKnobValue(r.Key, r.Value)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		u = u.Merge(v)
	}
	if u.Empty() {
		return errors.New("control: set names no knob, e.g. set parallelism 16")
	}
	return s.eng.Set(u, origin)
}
