//go:build linux

package events

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Hub serves adopted streams off their requests' goroutines (see Serve):
// a few writer goroutines and one epoll poller for all of them. Its zero
// value is not usable: NewHub.
type Hub struct {
	stall time.Duration
	epfd  int
	wake  [2]int // a pipe: a byte written to wake[1] wakes the poller

	mu      sync.Mutex
	cond    *sync.Cond // writers wait on it for ready streams
	empty   *sync.Cond // Close waits on it for no stream left
	conns   map[uint64]*hubConn
	next    uint64 // the last token given (0 is the wake pipe's)
	ready   []*hubConn
	stalled map[*hubConn]struct{}
	closed  bool // Adopt refuses
	stop    bool // writers and poller return
	wg      sync.WaitGroup
}

// hubConn is one adopted stream.
type hubConn struct {
	token uint64
	nc    net.Conn
	raw   syscall.RawConn
	sub   *Subscription
	ended func(int64)

	// Guarded by Hub.mu.
	queued  bool // in Hub.ready
	running bool // a writer has it
	dirty   bool // scheduled while running: once more after
	done    bool // finished
	gone    bool // the client closed (or the hub closes): end at once
	armed   bool // the poller watches for the socket taking more

	// Owned by the writer that runs the stream.
	out     []byte    // bytes the socket did not take yet
	since   time.Time // when out was left
	ending  bool      // the subscription closed: out ends with the last chunk
	written int64
}

// maxBatch is about the most bytes a writer takes from one stream's
// subscription at a time before going on to the next stream.
const maxBatch = 64 << 10

// NewHub starts a hub whose writes to a client that does not read are
// given up after stall (0: one minute), with its writer goroutines and its
// poller. Close stops them.
func NewHub(stall time.Duration) (*Hub, error) {
	if stall <= 0 {
		stall = time.Minute
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("events: epoll: %w", err)
	}
	h := &Hub{stall: stall, epfd: epfd, conns: make(map[uint64]*hubConn), stalled: make(map[*hubConn]struct{})}
	if err := syscall.Pipe2(h.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("events: pipe: %w", err)
	}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, h.wake[0], &syscall.EpollEvent{Events: syscall.EPOLLIN}); err != nil {
		h.closeFDs()
		return nil, fmt.Errorf("events: epoll: %w", err)
	}
	h.cond, h.empty = sync.NewCond(&h.mu), sync.NewCond(&h.mu)
	writers := min(max(runtime.GOMAXPROCS(0), 1), 4)
	h.wg.Add(writers + 1)
	for range writers {
		go h.write()
	}
	go h.poll()
	return h, nil
}

func (h *Hub) closeFDs() {
	_ = syscall.Close(h.wake[0])
	_ = syscall.Close(h.wake[1])
	_ = syscall.Close(h.epfd)
}

// Adopt makes the hub write first and then sub's events to nc, chunked,
// until sub closes, the client closes nc, or a write fails or stalls past
// the hub's budget; the hub then closes sub and nc and calls ended with
// the bytes written. It returns ErrNotAdoptable (and leaves nc and sub to
// the caller) when nc is not a socket or the hub is closed.
func (h *Hub) Adopt(nc net.Conn, sub *Subscription, first []byte, ended func(int64)) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return ErrNotAdoptable
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotAdoptable, err)
	}
	c := &hubConn{nc: nc, raw: raw, sub: sub, ended: ended, out: first}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrNotAdoptable
	}
	h.next++
	c.token = h.next
	if err := h.ctl(c, syscall.EPOLL_CTL_ADD, false); err != nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNotAdoptable, err)
	}
	h.conns[c.token] = c
	h.mu.Unlock()
	if len(first) > 0 {
		c.since = time.Now()
	}
	sub.onReady(func() { h.schedule(c) })
	return nil
}

// ctl adds, changes (op) or removes c's registration with the poller: the
// client closing, and with out the socket taking more. h.mu is held.
func (h *Hub) ctl(c *hubConn, op int, out bool) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(uint32(c.token)), Pad: int32(uint32(c.token >> 32))}
	if out {
		ev.Events |= syscall.EPOLLOUT
	}
	var cerr error
	if err := c.raw.Control(func(fd uintptr) { cerr = syscall.EpollCtl(h.epfd, op, int(fd), &ev) }); err != nil {
		return err
	}
	return cerr
}

// schedule puts c on the writers' queue (once), or has the writer that
// runs it run it once more. It never blocks (the broker calls it under
// its lock).
func (h *Hub) schedule(c *hubConn) {
	h.mu.Lock()
	h.scheduleLocked(c)
	h.mu.Unlock()
}

func (h *Hub) scheduleLocked(c *hubConn) {
	switch {
	case c.done:
	case c.running:
		c.dirty = true
	case !c.queued:
		c.queued = true
		h.ready = append(h.ready, c)
		h.cond.Signal()
	}
}

// write is a writer goroutine: it runs the ready streams one at a time.
func (h *Hub) write() {
	defer h.wg.Done()
	var scratch []byte
	for {
		h.mu.Lock()
		for len(h.ready) == 0 && !h.stop {
			h.cond.Wait()
		}
		if h.stop {
			h.mu.Unlock()
			return
		}
		c := h.ready[0]
		h.ready[0] = nil
		h.ready = h.ready[1:]
		if len(h.ready) == 0 {
			h.ready = nil // let the backing array go
		}
		c.queued, c.running, c.dirty = false, true, false
		gone := c.gone
		h.mu.Unlock()

		if gone {
			h.finish(c)
		} else {
			scratch = h.run(c, scratch[:0])
			if cap(scratch) > maxBatch*2 {
				scratch = nil
			}
		}

		h.mu.Lock()
		c.running = false
		if c.dirty {
			c.dirty = false
			h.scheduleLocked(c)
		}
		h.mu.Unlock()
	}
}

// run writes what c has to write: the rest a stalled write left, then the
// events its subscription holds (a batch), with buf as scratch space,
// which it returns.
func (h *Hub) run(c *hubConn, buf []byte) []byte {
	if len(c.out) > 0 {
		if !h.flush(c) || c.ending {
			return buf
		}
	}
	more := false
	for !c.ending {
		if len(buf) >= maxBatch {
			more = true
			break
		}
		var (
			ev Event
			ok bool
		)
		select {
		case ev, ok = <-c.sub.Events():
		default:
			goto write
		}
		if !ok {
			c.ending = true
			buf = append(buf, lastChunk...)
			break
		}
		next, err := appendChunk(buf, ev)
		if err != nil { // Publish encoded it: cannot happen
			continue
		}
		buf = next
	}
write:
	if len(buf) == 0 {
		return buf
	}
	n, err := h.send(c, buf)
	if err != nil {
		h.finish(c)
		return buf
	}
	if n < len(buf) {
		c.out = append([]byte(nil), buf[n:]...)
		c.since = time.Now()
		h.stalling(c)
		return buf
	}
	if c.ending {
		h.finish(c)
	} else if more {
		h.schedule(c)
	}
	return buf
}

// flush writes c.out; it reports whether all of it is written (false also
// when the stream has ended).
func (h *Hub) flush(c *hubConn) bool {
	n, err := h.send(c, c.out)
	if err != nil {
		h.finish(c)
		return false
	}
	c.out = c.out[n:]
	if len(c.out) > 0 {
		if time.Since(c.since) > h.stall {
			h.finish(c)
			return false
		}
		h.stalling(c)
		return false
	}
	c.out = nil
	h.mu.Lock()
	delete(h.stalled, c)
	h.mu.Unlock()
	if c.ending {
		h.finish(c)
	}
	return true
}

// stalling has the poller tell when c's socket takes more, and sweep it at
// the stall budget.
func (h *Hub) stalling(c *hubConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.done {
		return
	}
	if !c.armed && h.ctl(c, syscall.EPOLL_CTL_MOD, true) == nil {
		c.armed = true
	}
	if _, ok := h.stalled[c]; !ok {
		h.stalled[c] = struct{}{}
		if len(h.stalled) == 1 {
			h.wakePoller()
		}
	}
}

func (h *Hub) wakePoller() { _, _ = syscall.Write(h.wake[1], []byte{0}) }

// send writes p to c's socket without waiting: it returns how much the
// socket took, and an error only when the write failed (not when the
// socket is full).
func (h *Hub) send(c *hubConn, p []byte) (int, error) {
	var (
		n    int
		werr error
	)
	err := c.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := syscall.Write(int(fd), p[n:])
			if m > 0 {
				n += m
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				if !errors.Is(err, syscall.EAGAIN) {
					werr = err
				}
				break
			}
			if m <= 0 {
				break
			}
		}
		return true // never wait: the poller tells when to go on
	})
	c.written += int64(n)
	if err != nil {
		return n, err
	}
	return n, werr
}

// finish ends c: it leaves the poller, its subscription and connection
// are closed, and its end is reported. Only the writer running c (or
// Adopt's caller) calls it.
func (h *Hub) finish(c *hubConn) {
	h.mu.Lock()
	if c.done {
		h.mu.Unlock()
		return
	}
	c.done = true
	delete(h.conns, c.token)
	delete(h.stalled, c)
	_ = h.ctl(c, syscall.EPOLL_CTL_DEL, false)
	if len(h.conns) == 0 {
		h.empty.Broadcast()
	}
	h.mu.Unlock()
	c.sub.Close()
	_ = c.nc.Close()
	c.out = nil
	c.ended(c.written)
}

// poll is the poller goroutine: it ends the streams whose clients closed,
// runs those whose sockets take more again, and sweeps the stalled ones.
func (h *Hub) poll() {
	defer h.wg.Done()
	events := make([]syscall.EpollEvent, 128)
	sweep := min(max(h.stall/4, 10*time.Millisecond), time.Second)
	last := time.Now()
	for {
		h.mu.Lock()
		if h.stop {
			h.mu.Unlock()
			return
		}
		timeout := -1
		if len(h.stalled) > 0 {
			timeout = int(sweep / time.Millisecond)
		}
		h.mu.Unlock()
		n, err := syscall.EpollWait(h.epfd, events, timeout)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		h.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if token == 0 {
				var b [64]byte
				_, _ = syscall.Read(h.wake[0], b[:])
				continue
			}
			c := h.conns[token]
			if c == nil {
				continue
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				// An event stream's client sends nothing after its
				// request: anything readable is its close (or a
				// client to let go of). It stays readable: watch it no
				// more (finish's removal then finds it gone).
				c.gone = true
				_ = h.ctl(c, syscall.EPOLL_CTL_DEL, false)
				c.armed = false
			}
			if ev.Events&syscall.EPOLLOUT != 0 && c.armed && !c.gone {
				if h.ctl(c, syscall.EPOLL_CTL_MOD, false) == nil {
					c.armed = false
				}
			}
			h.scheduleLocked(c)
		}
		if time.Since(last) >= sweep {
			last = time.Now()
			for c := range h.stalled {
				h.scheduleLocked(c)
			}
		}
		h.mu.Unlock()
	}
}

// Len returns the number of streams the hub serves.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// closeGrace is how long Close lets the streams write what they have and
// their last chunk before it closes their connections.
const closeGrace = 2 * time.Second

// Close ends every stream (after the events their subscriptions hold and
// their last chunk, for at most closeGrace), then stops the hub's
// goroutines. Adopt refuses from then on. Idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	subs := make([]*Subscription, 0, len(h.conns))
	for _, c := range h.conns {
		subs = append(subs, c.sub)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.Close() // each stream ends after what it holds
	}
	grace := time.AfterFunc(closeGrace, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.gone = true
			h.scheduleLocked(c)
		}
	})
	h.mu.Lock()
	for len(h.conns) > 0 {
		h.empty.Wait()
	}
	h.stop = true
	h.cond.Broadcast()
	h.mu.Unlock()
	grace.Stop()
	h.wakePoller()
	h.wg.Wait()
	h.closeFDs()
}
