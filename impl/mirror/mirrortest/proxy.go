package mirrortest

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP connections to a git server and records every
// session: when it was accepted, when its last bytes from the server were
// passed on, and whether it carried a pack. Armed, it stalls the next
// session that carries a pack (one started after Arm) shortly after the
// pack's signature, says so on Stalled, and holds that connection open
// until the proxy is closed: a test can then cancel, or kill the client
// of, a transfer that has demonstrably started.
type Proxy struct {
	// Stalled receives once per stalled session.
	Stalled chan struct{}

	ln     net.Listener
	target string
	armed  atomic.Bool
	quit   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	sessions []*session
	conns    []net.Conn
}

type session struct {
	start time.Time
	last  time.Time // the last server bytes passed on
	pack  bool      // a pack went through
}

// stallAfter is how many bytes of pack data a stalled session lets through.
const stallAfter = 64

// StartProxy starts a proxy to target (host:port), closed when the test
// ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, Stalled: make(chan struct{}, 16), quit: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Arm makes the proxy stall the next session that carries a pack.
func (p *Proxy) Arm() { p.armed.Store(true) }

// Stats returns the number of sessions, of those that carried a pack, and
// the most that overlapped.
func (p *Proxy) Stats() (sessions, packs, concurrent int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, s := range p.sessions {
		if s.pack {
			packs++
		}
		n := 1
		for j, o := range p.sessions {
			if i != j && o.start.Before(s.start) && o.last.After(s.start) {
				n++
			}
		}
		concurrent = max(concurrent, n)
	}
	return len(p.sessions), packs, concurrent
}

func (p *Proxy) close() {
	close(p.quit)
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		s := &session{start: time.Now()}
		armed := p.armed.Load()
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.sessions = append(p.sessions, s)
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(server, client)
			_ = server.(*net.TCPConn).CloseWrite()
		}()
		go func() {
			defer p.wg.Done()
			defer client.Close()
			p.down(s, armed, client, server)
		}()
	}
}

// down passes the server's bytes on, recording them, and stalls after the
// pack's signature when the session may stall (armed when it started) and
// the proxy is still armed (it disarms).
func (p *Proxy) down(s *session, armed bool, client, server net.Conn) {
	var tail []byte // the last bytes passed on: a signature may span reads
	buf := make([]byte, 32*1024)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			cut := -1 // where the stall cuts chunk, if it stalls
			window := append(tail, chunk...)
			if i := bytes.Index(window, []byte("PACK")); i >= 0 {
				p.mu.Lock()
				s.pack = true
				p.mu.Unlock()
				if armed && p.armed.CompareAndSwap(true, false) {
					cut = max(0, min(n, i+4+stallAfter-len(tail)))
				}
				armed = false
			}
			tail = append(tail[:0], window[max(0, len(window)-3):]...)
			p.mu.Lock()
			s.last = time.Now()
			p.mu.Unlock()
			if cut >= 0 {
				_, _ = client.Write(chunk[:cut])
				p.Stalled <- struct{}{}
				<-p.quit
				return
			}
			if _, werr := client.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
