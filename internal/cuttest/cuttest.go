// Package cuttest is a test kit: a TCP proxy in front of a service (Redis, in the tests that
// use it) that a test cuts, as a network partition does, and restores on the same address.
// Tests only.
package cuttest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy forwards TCP to a target until cut. Cut drops every connection and refuses new ones;
// Restore listens again on the same address.
type Proxy struct {
	target string
	mu     sync.Mutex
	addr   string
	ln     net.Listener
	conns  []net.Conn
}

// Start listens on a free loopback port and forwards to target (host:port). The proxy is cut
// when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{target: target, addr: "127.0.0.1:0"}
	p.Restore(t)
	t.Cleanup(p.Cut)
	return p
}

// StartURL starts a proxy to the host of rawURL and returns it with rawURL rewritten to go
// through it.
func StartURL(t testing.TB, rawURL string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p := Start(t, u.Host)
	u.Host = p.Addr()
	return p, u.String()
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Restore listens again on the proxy's address. It reports a failure with t.Error rather than
// t.Fatal, so that a test may restore from a goroutine of its own.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Errorf("cuttest: listen again on %s: %v", p.addr, err)
		return
	}
	p.ln, p.addr = ln, ln.Addr().String()
	go p.serve(ln)
}

func (p *Proxy) serve(ln net.Listener) {
	for {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = down.Close() // a proxy drops connections; their close errors tell nothing
			continue
		}
		p.mu.Lock()
		if p.ln != ln {
			// Cut while this connection was being dialled: it must not outlive the cut, or a
			// call would go through a partition.
			p.mu.Unlock()
			_ = down.Close() // a proxy drops connections; their close errors tell nothing
			_ = up.Close()   // a proxy drops connections; their close errors tell nothing
			continue
		}
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		go pipe(up, down)
		go pipe(down, up)
	}
}

// pipe copies src to dst until either side closes, then closes both.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close() // a proxy drops connections; their close errors tell nothing
	_ = src.Close() // a proxy drops connections; their close errors tell nothing
}

// Cut closes the listener and every connection: the service is gone, connections refused.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close() // a proxy drops connections; their close errors tell nothing
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close() // a proxy drops connections; their close errors tell nothing
	}
	p.conns = nil
}
