package events

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readMessage reads one SSE message (through its terminating blank line).
func readMessage(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			t.Fatalf("reading stream after %q: %v", sb.String(), err)
		}
		if line == "\n" {
			return sb.String()
		}
	}
}

func expectMessage(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	if got := readMessage(t, br); got != want {
		t.Fatalf("stream message\n got %q\nwant %q", got, want)
	}
}

func expectEOF(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after last message: %q, %v; want clean EOF", rest, err)
	}
}

const (
	helloMsg     = "id: 0\nevent: connected\ndata: {\"repoID\":\"r1\"}\n\n"
	keepaliveMsg = ": keepalive\n\n"
)

var hello = map[string]string{"repoID": "r1"}

// TestStreamHTTP drives Stream through a real HTTP server and client, reading
// the body line by line while the handler is still running (so every message
// read proves a flush), and ends it by disconnecting the client.
func TestStreamHTTP(t *testing.T) {
	b := testBroker(Limits{PerClient: 1})
	handlerDone := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub, err := b.Subscribe("r1", "client")
		if err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		SetHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		handlerDone <- Stream(r.Context(), w, sub, hello)
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Fatalf("Content-Type = %q", ct)
	}
	br := bufio.NewReader(resp.Body)

	expectMessage(t, br, helloMsg)
	select {
	case err := <-handlerDone:
		t.Fatalf("handler returned early: %v", err)
	default:
	}
	// The connected event proves the subscription exists: a second one for
	// the same client is over the limit.
	if _, err := b.Subscribe("r1", "client"); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("second Subscribe = %v", err)
	}

	b.Publish("r2", Event{Type: SyncStarted, Data: "other repo"})
	b.Publish("r1", Event{Type: ViewUpdated, Data: map[string]int64{"version": 3}})
	expectMessage(t, br, "id: 2\nevent: view_updated\ndata: {\"version\":3}\n\n")

	b.Keepalive()
	expectMessage(t, br, keepaliveMsg)

	b.Publish("r1", Event{Type: BranchSwitched, Data: map[string]string{"from": "a\nb", "to": "<c>"}})
	expectMessage(t, br, "id: 3\nevent: branch_switched\ndata: {\"from\":\"a\\nb\",\"to\":\"\\u003cc\\u003e\"}\n\n")
	b.Publish("r1", Event{Type: SyncFinished})
	expectMessage(t, br, "id: 4\nevent: sync_finished\ndata: null\n\n")

	// Disconnect: the request context ends Stream, which frees the slot.
	cancel()
	if err := <-handlerDone; err != nil {
		t.Fatalf("Stream = %v, want nil on disconnect", err)
	}
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("Subscribers = %d after disconnect", n)
	}
}

// TestStreamHTTPServerClose ends the stream from the server side: the client
// sees every buffered event and then a clean end of body.
func TestStreamHTTPServerClose(t *testing.T) {
	b := testBroker(Limits{})
	subs := make(chan *Subscription, 1)
	handlerDone := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub, err := b.Subscribe("r1", r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		subs <- sub
		SetHeaders(w.Header())
		handlerDone <- Stream(r.Context(), w, sub, hello)
	}))
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	expectMessage(t, br, helloMsg)
	sub := <-subs
	b.Publish("r1", Event{Type: SyncFailed, Data: map[string]string{"error": "fetch failed"}})
	sub.Close()
	expectMessage(t, br, "id: 1\nevent: sync_failed\ndata: {\"error\":\"fetch failed\"}\n\n")
	expectEOF(t, br)
	if err := <-handlerDone; err != nil {
		t.Fatalf("Stream = %v", err)
	}
}

// flushWriter records writes and counts flushes.
type flushWriter struct {
	bytes.Buffer
	flushes int
	fail    error // returned by Write when set
}

func (w *flushWriter) Write(p []byte) (int, error) {
	if w.fail != nil {
		return 0, w.fail
	}
	return w.Buffer.Write(p)
}

func (w *flushWriter) Flush() error { w.flushes++; return nil }

var errDisk = errors.New("disk on fire")

// TestStreamEnds covers every way a stream ends: what was written, the
// error, the flushes, and that the slot is freed each time.
func TestStreamEnds(t *testing.T) {
	tests := []struct {
		name    string
		limits  Limits
		setup   func(b *Broker, sub *Subscription, cancel context.CancelFunc, w *flushWriter)
		hello   any // default hello
		want    string
		flushes int
		wantErr error
	}{
		{
			name:  "context already done",
			setup: func(_ *Broker, _ *Subscription, cancel context.CancelFunc, _ *flushWriter) { cancel() },
		},
		{
			name: "subscription closed",
			setup: func(b *Broker, sub *Subscription, _ context.CancelFunc, _ *flushWriter) {
				b.Publish("r1", Event{Type: SyncStarted, Data: map[string]string{"id": "s1"}})
				sub.Close()
			},
			want:    helloMsg + "id: 1\nevent: sync_started\ndata: {\"id\":\"s1\"}\n\n",
			flushes: 2,
		},
		{
			name: "broker closed",
			setup: func(b *Broker, _ *Subscription, _ context.CancelFunc, _ *flushWriter) {
				b.Close()
			},
			want:    helloMsg,
			flushes: 1,
		},
		{
			name:   "overflow",
			limits: Limits{Buffer: 1},
			setup: func(b *Broker, _ *Subscription, _ context.CancelFunc, _ *flushWriter) {
				b.Publish("r1", Event{Type: ViewUpdated, Data: 1})
				b.Publish("r1", Event{Type: ViewUpdated, Data: 2})
			},
			want:    helloMsg + "id: 1\nevent: view_updated\ndata: 1\n\n",
			flushes: 2,
			wantErr: ErrSlowSubscriber,
		},
		{
			name: "hello not encodable",
			setup: func(*Broker, *Subscription, context.CancelFunc, *flushWriter) {
			},
			hello:   make(chan int),
			wantErr: ErrBadEvent,
		},
		{
			name: "write error",
			setup: func(_ *Broker, _ *Subscription, _ context.CancelFunc, w *flushWriter) {
				w.fail = errDisk
			},
			wantErr: errDisk,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBroker(tt.limits)
			sub := mustSubscribe(t, b, "r1", "c")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &flushWriter{}
			tt.setup(b, sub, cancel, w)
			h := tt.hello
			if h == nil {
				h = hello
			}
			err := Stream(ctx, w, sub, h)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Stream = %v, want %v", err, tt.wantErr)
			}
			if got := w.String(); got != tt.want {
				t.Fatalf("output\n got %q\nwant %q", got, tt.want)
			}
			if w.flushes != tt.flushes {
				t.Fatalf("flushes = %d, want %d", w.flushes, tt.flushes)
			}
			if n := b.Subscribers(); n != 0 {
				t.Fatalf("Subscribers = %d, slot not freed", n)
			}
		})
	}
}

// TestStreamBlockedWriterDoesNotBlockPublish: a Stream stuck writing to a
// client that does not read must not hold up Publish; the subscription is
// closed as slow and the stream ends with ErrSlowSubscriber once unblocked.
func TestStreamBlockedWriterDoesNotBlockPublish(t *testing.T) {
	b := testBroker(Limits{Buffer: 2})
	sub := mustSubscribe(t, b, "r1", "c")
	br, streamDone := pipeStream(context.Background(), sub)
	for i := range 10 { // Stream is blocked writing the connected event
		b.Publish("r1", Event{Type: ViewUpdated, Data: i})
	}
	expectMessage(t, br, helloMsg)
	expectMessage(t, br, "id: 1\nevent: view_updated\ndata: 0\n\n")
	expectMessage(t, br, "id: 2\nevent: view_updated\ndata: 1\n\n")
	expectEOF(t, br)
	if err := <-streamDone; !errors.Is(err, ErrSlowSubscriber) {
		t.Fatalf("Stream = %v, want ErrSlowSubscriber", err)
	}
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("Subscribers = %d", n)
	}
}

// pipeStream runs Stream(ctx, sub) into a pipe in the
// background: it returns a reader of what the stream writes, and a channel
// that receives Stream's result once it has ended (the pipe is closed
// then).
func pipeStream(ctx context.Context, sub *Subscription) (*bufio.Reader, <-chan error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := Stream(ctx, pw, sub, hello)
		pw.Close()
		done <- err
	}()
	return bufio.NewReader(pr), done
}

// TestStreamBodyCopy consumes StreamBody with io.Copy (the WriteTo path).
func TestStreamBodyCopy(t *testing.T) {
	b := testBroker(Limits{})
	sub := mustSubscribe(t, b, "r1", "c")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := StreamBody(ctx, sub, hello)
	if _, ok := body.(io.WriterTo); !ok {
		t.Fatal("StreamBody does not implement io.WriterTo")
	}

	pr, pw := io.Pipe()
	type result struct {
		n   int64
		err error
	}
	copied := make(chan result, 1)
	go func() {
		n, err := io.Copy(pw, body)
		pw.Close()
		copied <- result{n, err}
	}()

	br := bufio.NewReader(pr)
	var read int
	for _, step := range []struct {
		do   func()
		want string
	}{
		{func() {}, helloMsg},
		{func() { b.Publish("r1", Event{Type: SyncStarted, Data: map[string]string{"id": "s1"}}) }, "id: 1\nevent: sync_started\ndata: {\"id\":\"s1\"}\n\n"},
		{b.Keepalive, keepaliveMsg},
		{func() { b.Publish("r1", Event{Type: SyncFinished, Data: map[string]string{"id": "s1"}}) }, "id: 2\nevent: sync_finished\ndata: {\"id\":\"s1\"}\n\n"},
	} {
		step.do()
		expectMessage(t, br, step.want)
		read += len(step.want)
	}
	// Read must not be usable once WriteTo streams.
	if _, err := body.Read(make([]byte, 8)); !errors.Is(err, ErrStreamed) {
		t.Fatalf("Read during WriteTo = %v, want ErrStreamed", err)
	}

	cancel()
	res := <-copied
	if res.err != nil || res.n != int64(read) {
		t.Fatalf("io.Copy = %d, %v; want %d, nil", res.n, res.err, read)
	}
	expectEOF(t, br)
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("Subscribers = %d, slot not freed", n)
	}
}

// visitLikeGenerated mirrors what oapi-codegen generates for a
// text/event-stream response when w is an http.Flusher: Read chunks from the
// body, write and flush each, stop at io.EOF, and Close the body if it is an
// io.ReadCloser.
func visitLikeGenerated(w http.ResponseWriter, body io.Reader) error {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusOK)
	if c, ok := body.(io.ReadCloser); ok {
		defer c.Close()
	}
	flusher := w.(http.Flusher)
	buf := make([]byte, 4096)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			flusher.Flush()
		}
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// TestStreamBodyReadLoopHTTP serves StreamBody the way the generated strict
// server does (Read + Flush loop) and ends it by client disconnect.
func TestStreamBodyReadLoopHTTP(t *testing.T) {
	b := testBroker(Limits{})
	handlerDone := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub, err := b.Subscribe("r1", r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		handlerDone <- visitLikeGenerated(w, StreamBody(r.Context(), sub, hello))
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)

	expectMessage(t, br, helloMsg)
	b.Publish("r1", Event{Type: ViewUpdated, Data: map[string]int64{"version": 7}})
	expectMessage(t, br, "id: 1\nevent: view_updated\ndata: {\"version\":7}\n\n")
	b.Keepalive()
	expectMessage(t, br, keepaliveMsg)
	select {
	case err := <-handlerDone:
		t.Fatalf("handler returned early: %v", err)
	default:
	}

	cancel()
	if err := <-handlerDone; err != nil {
		t.Fatalf("handler = %v, want nil", err)
	}
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("Subscribers = %d, slot not freed", n)
	}
}

// TestStreamBodyReadThenClose ends a Read-consumed body with Close while the
// stream is idle: Close must stop the goroutine and free the slot before
// returning.
func TestStreamBodyReadThenClose(t *testing.T) {
	b := testBroker(Limits{})
	sub := mustSubscribe(t, b, "r1", "c")
	body := StreamBody(context.Background(), sub, hello).(io.ReadCloser)

	buf := make([]byte, 4096)
	n, err := body.Read(buf)
	if err != nil || string(buf[:n]) != helloMsg {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if err := body.Close(); err != nil {
		t.Fatal(err)
	}
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("Subscribers = %d", n)
	}
	if err := body.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, err := body.(io.WriterTo).WriteTo(io.Discard); !errors.Is(err, ErrStreamed) {
		t.Fatalf("WriteTo after Read = %v, want ErrStreamed", err)
	}
}

func TestStreamBodyCloseUnused(t *testing.T) {
	b := testBroker(Limits{})
	sub := mustSubscribe(t, b, "r1", "c")
	body := StreamBody(context.Background(), sub, hello).(io.ReadCloser)
	if err := body.Close(); err != nil {
		t.Fatal(err)
	}
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("Subscribers = %d", n)
	}
	if _, err := body.Read(make([]byte, 10)); !errors.Is(err, ErrStreamed) {
		t.Fatalf("Read after Close = %v, want ErrStreamed", err)
	}
}

func TestSetHeaders(t *testing.T) {
	h := http.Header{}
	SetHeaders(h)
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
