package events

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Streams served off the request's goroutine (issue 18: an idle stream
// costs at most 16 KB).
//
// A stream written by its request's goroutine (Stream) costs what net/http
// holds for an open response: the goroutine's stack, the connection's
// read and write buffers, the goroutine that watches for the client
// closing. A Hub serves streams without any of that. Serve answers the
// request's headers, takes the connection over (http.ResponseController's
// Hijack) and gives it to the hub (Adopt); the handler returns, and
// net/http lets go of its goroutines and buffers. From then on:
//
//   - the stream's events and keepalives are written by a few writer
//     goroutines shared by every stream, each time the broker sends one
//     to the subscription (Subscription.onReady), with non-blocking
//     writes straight to the connection, chunked as net/http would have
//     (the response's headers announced Transfer-Encoding: chunked);
//   - one poller goroutine watches every adopted connection for the
//     client closing it (epoll on Linux): the stream ends at once, not at
//     the next failed write;
//   - a client that does not read: a write that the socket does not take
//     whole keeps the rest, and the stream takes no further event from its
//     subscription until the rest is written (the poller tells when the
//     socket can take more), so the subscription fills and the broker
//     closes it as too slow, as for a stream written on its goroutine; a
//     rest not written within the hub's stall budget (the server's
//     --write-stall-timeout) ends the stream;
//   - the subscription's close (Subscription.Close, Broker.End,
//     Broker.Close) ends the stream after the events before it, with the
//     chunked body's last chunk: a clean end of the response.
//
// Where a hub is not available (not Linux: NewHub returns nil), or the
// connection cannot be taken over (HTTP/2) the stream is written on the
// request's goroutine (Stream). A connection taken over that the hub
// cannot watch (not a socket: a TLS connection) is written on the
// request's goroutine too, with a write deadline of the stall budget.

// ErrNotAdoptable is returned by Hub.Adopt for a connection that is not a
// socket (syscall.Conn), or after Hub.Close.
var ErrNotAdoptable = errors.New("events: connection cannot be adopted")

// lastChunk ends a chunked body.
var lastChunk = []byte("0\r\n\r\n")

// appendChunk appends ev as one chunk of a chunked body: a keepalive
// comment when ev has no type, else its SSE message (appendMessage).
func appendChunk(dst []byte, ev Event) ([]byte, error) {
	if ev.Type == "" {
		return appendChunkOf(dst, keepaliveLine), nil
	}
	// The message goes after room for its chunk's size line (at most
	// 16 hex digits and CRLF), which is then filled and closed up.
	start := len(dst)
	var room [18]byte
	out, err := appendMessage(append(dst, room[:]...), ev)
	if err != nil {
		return dst, err
	}
	size := append(strconv.AppendUint(room[:0], uint64(len(out)-start-len(room)), 16), "\r\n"...)
	n := copy(out[start:], size)
	out = append(out[:start+n], out[start+len(room):]...)
	return append(out, "\r\n"...), nil
}

func appendChunkOf(dst, p []byte) []byte {
	dst = strconv.AppendUint(dst, uint64(len(p)), 16)
	dst = append(dst, "\r\n"...)
	dst = append(dst, p...)
	return append(dst, "\r\n"...)
}

// startChunks is what the stream begins with (start), as chunks.
func startChunks(ctx context.Context, sub *Subscription, hello any) ([]byte, error) {
	var out []byte
	err := start(ctx, sub, hello, func(ev Event) error {
		var err error
		out, err = appendChunk(out, ev)
		return err
	})
	return out, err
}

// Serve writes sub's events to the client of w as Stream does, off the
// request's goroutine when it can (see above): w is the response of an
// HTTP/1.1 request whose status and headers (SetHeaders, 200) were given
// to WriteHeader and nothing else written. take is called when the
// connection is taken over, before Serve returns; the function it returns
// is called once, when the stream has ended, with the bytes written after
// the headers (package handoff: the access log's line and the in-flight
// gauge wait for it). On a nil Hub, Serve is Stream.
//
// Serve closes sub when the stream ends (as Stream does), and returns nil
// when the hub took the stream, else what Stream returns.
func (h *Hub) Serve(ctx context.Context, w http.ResponseWriter, sub *Subscription, hello any, take func() func(int64)) error {
	if h == nil || ctx.Err() != nil {
		return Stream(ctx, w, sub, hello)
	}
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2, or a writer that cannot be taken over: on this
		// goroutine.
		return Stream(ctx, w, sub, hello)
	}
	ended := take()
	first, err := startChunks(ctx, sub, hello)
	if err != nil {
		sub.Close()
		_ = nc.Close()
		ended(0)
		return err
	}
	if err := h.Adopt(nc, sub, first, ended); err != nil {
		writeConn(nc, sub, first, h.stall, ended)
	}
	return nil
}

// writeConn writes first and then sub's events to nc, chunked, on the
// calling goroutine, each write within stall; it ends (closing nc and sub)
// when sub closes or a write fails, and calls ended with the bytes
// written.
func writeConn(nc net.Conn, sub *Subscription, first []byte, stall time.Duration, ended func(int64)) {
	var written int64
	defer func() { ended(written) }()
	defer nc.Close()
	defer sub.Close()
	buf := first
	for {
		if len(buf) > 0 {
			_ = nc.SetWriteDeadline(time.Now().Add(stall))
			n, err := nc.Write(buf)
			written += int64(n)
			if err != nil {
				return
			}
		}
		ev, ok := <-sub.Events()
		if !ok {
			_ = nc.SetWriteDeadline(time.Now().Add(stall))
			n, _ := nc.Write(lastChunk)
			written += int64(n)
			return
		}
		var err error
		if buf, err = appendChunk(buf[:0], ev); err != nil {
			return
		}
	}
}
