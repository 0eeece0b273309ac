//go:build linux

package events

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/deadline/deadlinetest"
)

// wait is how long a hub test waits for something that must happen.
const wait = 30 * time.Second

// hubStreams serves b's "r1" streams through hub.Serve: each request's
// handler reports its return on returned and its stream's end (the bytes
// written after the headers) on ended.
type hubStreams struct {
	srv      *httptest.Server
	returned chan error
	ended    chan int64
}

func newHubServer(t *testing.T, b *Broker, hub *Hub, small, tls bool) *hubStreams {
	t.Helper()
	hs := &hubStreams{returned: make(chan error, 16), ended: make(chan int64, 16)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub, err := b.Resume("r1", r.RemoteAddr, r.Header.Get("Last-Event-ID"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		SetHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		hs.returned <- hub.Serve(r.Context(), w, sub, hello, func() func(int64) {
			return func(n int64) { hs.ended <- n }
		})
	}))
	if small {
		srv.Listener = deadlinetest.SmallBuffers(srv.Listener)
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	hs.srv = srv
	return hs
}

func newTestHub(t *testing.T, stall time.Duration) *Hub {
	t.Helper()
	hub, err := NewHub(stall)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	return hub
}

// get opens a stream and returns its body's reader.
func (hs *hubStreams) get(t *testing.T, ctx context.Context, header ...string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hs.srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hs.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType {
		t.Fatalf("answer %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, bufio.NewReader(resp.Body)
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("no %s within %s", what, wait)
		panic("unreachable")
	}
}

// waitFor polls cond (which reads state the test cannot be told about)
// until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after %s: %s", wait, what)
		}
		time.Sleep(time.Millisecond) // polling, not waiting for an outcome
	}
}

// TestHubServesStream: a stream the hub took over carries the same
// messages as Stream's (replayed events first), after its handler has
// returned; its subscription's close ends the body cleanly (the chunked
// body's last chunk), frees the slot and reports the bytes written.
func TestHubServesStream(t *testing.T) {
	b := testBroker(Limits{})
	hub := newTestHub(t, wait)
	hs := newHubServer(t, b, hub, false, false)

	// One event before, to resume after id 0.
	if err := b.Publish("r1", Event{Type: SyncStarted, Data: map[string]string{"id": "s0"}}); err != nil {
		t.Fatal(err)
	}
	resp, br := hs.get(t, context.Background(), "Last-Event-ID", "0")
	if got := resp.TransferEncoding; len(got) != 1 || got[0] != "chunked" {
		t.Fatalf("Transfer-Encoding %v, want chunked", got)
	}
	if err := receive(t, hs.returned, "handler return"); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	expectMessage(t, br, helloMsg)
	expectMessage(t, br, "id: 1\nevent: sync_started\ndata: {\"id\":\"s0\"}\n\n")
	if hub.Len() != 1 || b.Subscribers() != 1 {
		t.Fatalf("hub holds %d streams, broker %d: want 1 and 1", hub.Len(), b.Subscribers())
	}

	b.Publish("r1", Event{Type: ViewUpdated, Data: map[string]int64{"version": 3}})
	expectMessage(t, br, "id: 2\nevent: view_updated\ndata: {\"version\":3}\n\n")
	b.Keepalive()
	expectMessage(t, br, keepaliveMsg)
	// A batch: more events than the subscription's buffer would take
	// unread, each written as it comes.
	for i := range 3 * DefaultBuffer {
		b.Publish("r1", Event{Type: SyncFinished, Data: i})
		expectMessage(t, br, "id: "+strconv.Itoa(3+i)+"\nevent: sync_finished\ndata: "+strconv.Itoa(i)+"\n\n")
	}

	select {
	case n := <-hs.ended:
		t.Fatalf("stream ended (%d bytes) while open", n)
	default:
	}
	if err := b.End("r1", Event{Type: RepoRemoved}); err != nil {
		t.Fatal(err)
	}
	expectMessage(t, br, "id: "+strconv.Itoa(3+3*DefaultBuffer)+"\nevent: repo_removed\ndata: null\n\n")
	expectEOF(t, br)
	if n := receive(t, hs.ended, "stream end"); n <= 0 {
		t.Fatalf("stream end reports %d bytes", n)
	}
	if hub.Len() != 0 || b.Subscribers() != 0 {
		t.Fatalf("after the end the hub holds %d streams, the broker %d", hub.Len(), b.Subscribers())
	}
}

// TestHubNoticesClientClose: a client that goes is noticed by the hub's
// poller without any write: its stream ends and its slot is freed.
func TestHubNoticesClientClose(t *testing.T) {
	b := testBroker(Limits{PerClient: 1})
	hub := newTestHub(t, wait)
	hs := newHubServer(t, b, hub, false, false)
	ctx, cancel := context.WithCancel(context.Background())
	_, br := hs.get(t, ctx)
	receive(t, hs.returned, "handler return")
	expectMessage(t, br, helloMsg)
	cancel() // the client closes its connection
	receive(t, hs.ended, "stream end")
	if hub.Len() != 0 || b.Subscribers() != 0 {
		t.Fatalf("after the client left the hub holds %d streams, the broker %d", hub.Len(), b.Subscribers())
	}
}

// TestHubStalledClient: a client that does not read never blocks the
// publisher nor the hub's writers: its stream is cut, either by the broker
// (its subscription fills: too slow) or by the stall budget (a write the
// socket never takes).
func TestHubStalledClient(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	for _, tc := range []struct {
		name    string
		publish func(b *Broker)
		slow    bool
	}{
		{"subscription fills", func(b *Broker) {
			for b.Subscribers() > 0 {
				b.Publish("r1", Event{Type: ViewUpdated, Data: big[:8<<10]})
				runtime.Gosched()
			}
		}, true},
		{"stall budget", func(b *Broker) {
			b.Publish("r1", Event{Type: ViewUpdated, Data: big})
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testBroker(Limits{Buffer: 2})
			hub := newTestHub(t, 200*time.Millisecond)
			hs := newHubServer(t, b, hub, true, false)
			c, err := deadlinetest.Get(hs.srv.Listener.Addr().String(), "/")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			receive(t, hs.returned, "handler return")
			tc.publish(b)
			receive(t, hs.ended, "stream end")
			if hub.Len() != 0 || b.Subscribers() != 0 {
				t.Fatalf("after the cut the hub holds %d streams, the broker %d", hub.Len(), b.Subscribers())
			}
			// Another stream of the same hub still works.
			_, br := hs.get(t, context.Background())
			receive(t, hs.returned, "handler return")
			if m := readMessage(t, br); !strings.Contains(m, "event: connected\n") {
				t.Fatalf("first message %q", m)
			}
			b.Publish("r1", Event{Type: SyncStarted, Data: 1})
			if m := readMessage(t, br); !strings.Contains(m, "event: sync_started\ndata: 1\n") {
				t.Fatalf("next message %q", m)
			}
		})
	}
}

// TestHubCloseEndsStreams: closing the hub ends every stream cleanly and
// stops its goroutines; a stream served after that is written on its
// request's goroutine.
func TestHubCloseEndsStreams(t *testing.T) {
	before := runtime.NumGoroutine()
	b := testBroker(Limits{})
	hub, err := NewHub(wait)
	if err != nil {
		t.Fatal(err)
	}
	hs := newHubServer(t, b, hub, false, false)
	var readers []*bufio.Reader
	for range 3 {
		_, br := hs.get(t, context.Background())
		receive(t, hs.returned, "handler return")
		expectMessage(t, br, helloMsg)
		readers = append(readers, br)
	}
	hub.Close()
	for _, br := range readers {
		expectEOF(t, br)
		receive(t, hs.ended, "stream end")
	}
	if b.Subscribers() != 0 {
		t.Fatalf("the broker holds %d streams after the hub closed", b.Subscribers())
	}

	// After Close: on the request's goroutine, until the subscription
	// closes.
	_, br := hs.get(t, context.Background())
	expectMessage(t, br, helloMsg)
	b.Close()
	expectEOF(t, br)
	receive(t, hs.returned, "handler return")
	receive(t, hs.ended, "stream end")
	hs.srv.CloseClientConnections()
	hs.srv.Close()
	hs.srv.Client().CloseIdleConnections()
	waitFor(t, "the hub's goroutines gone", func() bool { return runtime.NumGoroutine() <= before })
}

// TestHubFallbacks: where the connection cannot be taken over (a writer
// without Hijack, like HTTP/2's), Serve is Stream; where it is taken over
// but is not a socket (TLS), it is written on the request's goroutine.
func TestHubFallbacks(t *testing.T) {
	t.Run("no hijack", func(t *testing.T) {
		b := testBroker(Limits{})
		hub := newTestHub(t, wait)
		sub := mustSubscribe(t, b, "r1", "c")
		b.Publish("r1", Event{Type: SyncStarted, Data: 1})
		sub.Close()
		rec := httptest.NewRecorder()
		took := false
		if err := hub.Serve(context.Background(), rec, sub, hello, func() func(int64) { took = true; return func(int64) {} }); err != nil {
			t.Fatal(err)
		}
		if took || rec.Body.String() != helloMsg+"id: 1\nevent: sync_started\ndata: 1\n\n" {
			t.Fatalf("took %v, body %q", took, rec.Body.String())
		}
	})
	t.Run("tls", func(t *testing.T) {
		b := testBroker(Limits{})
		hub := newTestHub(t, wait)
		hs := newHubServer(t, b, hub, false, true)
		_, br := hs.get(t, context.Background())
		expectMessage(t, br, helloMsg)
		b.Publish("r1", Event{Type: SyncStarted, Data: 1})
		expectMessage(t, br, "id: 1\nevent: sync_started\ndata: 1\n\n")
		if hub.Len() != 0 {
			t.Fatalf("the hub adopted a TLS connection")
		}
		b.Close()
		expectEOF(t, br)
		if err := receive(t, hs.returned, "handler return"); err != nil {
			t.Fatal(err)
		}
		receive(t, hs.ended, "stream end")
	})
}

// TestAdoptRefuses: a connection that is not a socket, and any after
// Close, is left to the caller.
func TestAdoptRefuses(t *testing.T) {
	b := testBroker(Limits{})
	hub := newTestHub(t, wait)
	a, c := net.Pipe()
	defer a.Close()
	defer c.Close()
	sub := mustSubscribe(t, b, "r1", "c")
	if err := hub.Adopt(a, sub, nil, func(int64) {}); !errors.Is(err, ErrNotAdoptable) {
		t.Fatalf("Adopt(pipe) = %v", err)
	}
	hub.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := hub.Adopt(d, sub, nil, func(int64) {}); !errors.Is(err, ErrNotAdoptable) {
		t.Fatalf("Adopt after Close = %v", err)
	}
	if b.Subscribers() != 1 {
		t.Fatalf("a refused adoption closed the subscription")
	}
}
