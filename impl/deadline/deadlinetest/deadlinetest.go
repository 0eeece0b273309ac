// Package deadlinetest makes TCP clients that stop reading, or read
// slowly, observable in tests: both ends of a connection get small socket
// buffers, so a response of a few hundred KiB fills them and the server's
// writes block at once (loopback buffers otherwise absorb megabytes), and
// a ConnState hook reports when the server has closed a connection.
package deadlinetest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// Buffer is the socket buffer size asked for on both ends (the kernel
// rounds it up to its minimum, a few KiB).
const Buffer = 4096

// SmallBuffers returns ln whose accepted TCP connections have a send
// buffer of Buffer bytes.
func SmallBuffers(ln net.Listener) net.Listener { return smallListener{ln} }

type smallListener struct{ net.Listener }

func (l smallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.SetWriteBuffer(Buffer); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("deadlinetest: send buffer: %w", err)
		}
	}
	return c, err
}

// Dial connects to addr with a receive buffer of Buffer bytes, set before
// the connection is made (so the window it advertises is small too).
func Dial(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setRecvBuffer(fd, Buffer) }); err != nil {
			return err
		}
		return serr
	}}
	return d.Dial("tcp", addr)
}

// Get dials addr (Dial) and sends a GET of path with the given headers
// (pairs of name and value), without reading anything back.
func Get(addr, path string, header ...string) (net.Conn, error) {
	c, err := Dial(addr)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, addr)
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(w, "%s: %s\r\n", header[i], header[i+1])
	}
	fmt.Fprint(w, "\r\n")
	if err := w.Flush(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Conns follows a server's connections: set Hook as the http.Server's
// ConnState; Closed then reports each connection the server closed
// (StateClosed, or StateHijacked), by its remote address, the client's
// local one.
type Conns struct {
	mu     sync.Mutex
	closed map[string]chan struct{}
}

// NewConns returns an empty Conns.
func NewConns() *Conns { return &Conns{closed: map[string]chan struct{}{}} }

func (c *Conns) ch(addr string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.closed[addr]
	if !ok {
		ch = make(chan struct{})
		c.closed[addr] = ch
	}
	return ch
}

// Hook is an http.Server ConnState.
func (c *Conns) Hook(conn net.Conn, s http.ConnState) {
	if s == http.StateClosed || s == http.StateHijacked {
		close(c.ch(conn.RemoteAddr().String()))
	}
}

// Closed returns a channel closed when the server has closed the
// connection whose client end is client.
func (c *Conns) Closed(client net.Conn) <-chan struct{} { return c.ch(client.LocalAddr().String()) }
