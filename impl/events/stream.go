package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

var keepaliveLine = []byte(": keepalive\n\n")

// SetHeaders sets the response headers of an event stream: the content type
// and no caching or proxy buffering.
func SetHeaders(h http.Header) {
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// Stream writes sub's events to w as server-sent events and closes sub when
// it returns. Each event is written as
//
//	id: <n>
//	event: <type>
//	data: <json>
//
// followed by a blank line, where n is the broker-wide id of the event. It
// first writes a "connected" event whose data is hello and whose id is the
// subscription's position (Subscription.Position: the client's last id when
// it resumed, else the latest id); then, when the client's last id could not
// be honoured, a "resync" event with the same id and data (the client must
// reload what it shows); then the events Resume replays; then live events.
// A comment line ": keepalive" (followed by a blank line) is written each
// time the broker's Keepalive asks for one. It flushes
// after each write through http.NewResponseController when w is an
// http.ResponseWriter, or through a Flush method of w otherwise; writers
// that cannot flush are written to without flushing.
//
// Stream returns nil when ctx is done or the subscription is closed by Close
// or Broker.Close, an error wrapping ErrSlowSubscriber when the broker
// closed it for falling behind, an error wrapping ErrBadEvent when hello
// cannot be encoded, and the write or flush error otherwise.
func Stream(ctx context.Context, w io.Writer, sub *Subscription, hello any) error {
	_, err := stream(ctx, w, sub, hello)
	return err
}

func stream(ctx context.Context, w io.Writer, sub *Subscription, hello any) (int64, error) {
	defer sub.Close()
	if ctx.Err() != nil {
		return 0, nil
	}
	flush := flusher(w)
	var (
		n   int64
		buf bytes.Buffer
	)
	write := func(b []byte) error {
		m, err := w.Write(b)
		n += int64(m)
		if err != nil {
			return fmt.Errorf("events: write: %w", err)
		}
		if err := flush(); err != nil {
			return fmt.Errorf("events: flush: %w", err)
		}
		return nil
	}
	send := func(ev Event) error {
		buf.Reset()
		if err := frame(&buf, ev); err != nil {
			return err
		}
		return write(buf.Bytes())
	}

	if err := start(ctx, sub, hello, send); err != nil || ctx.Err() != nil {
		return n, err
	}
	for {
		select {
		case <-ctx.Done():
			return n, nil
		case ev, ok := <-sub.Events():
			if !ok {
				return n, sub.Err()
			}
			if ev.Type == "" { // Broker.Keepalive
				if err := write(keepaliveLine); err != nil {
					return n, err
				}
				continue
			}
			if err := send(ev); err != nil {
				return n, err
			}
		}
	}
}

// start sends what a stream begins with: the connected event, the resync
// event when the client's last id could not be honoured, and the events
// Resume replays (until ctx ends).
func start(ctx context.Context, sub *Subscription, hello any, send func(Event) error) error {
	if err := send(Event{ID: sub.Position(), Type: Connected, Data: hello}); err != nil {
		return err
	}
	if sub.NeedsResync() {
		if err := send(Event{ID: sub.Position(), Type: Resync, Data: hello}); err != nil {
			return err
		}
	}
	for _, ev := range sub.Replay() {
		if ctx.Err() != nil {
			return nil
		}
		if err := send(ev); err != nil {
			return err
		}
	}
	return nil
}

// frame writes one SSE message for ev to buf. Published events carry their
// data encoded already (a json.RawMessage).
func frame(buf *bytes.Buffer, ev Event) error {
	msg, err := appendMessage(buf.AvailableBuffer(), ev)
	if err != nil {
		return err
	}
	buf.Write(msg)
	return nil
}

// appendMessage appends ev's SSE message to dst:
//
//	id: <n>
//	event: <type>
//	data: <json>
//
// and a blank line.
func appendMessage(dst []byte, ev Event) ([]byte, error) {
	if ev.Type == "" || strings.ContainsAny(ev.Type, "\r\n") {
		return dst, fmt.Errorf("%w: type %q", ErrBadEvent, ev.Type)
	}
	data, err := encode(ev.Data)
	if err != nil {
		return dst, fmt.Errorf("%w: %s data: %w", ErrBadEvent, ev.Type, err)
	}
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, ev.ID, 10)
	dst = append(dst, "\nevent: "...)
	dst = append(dst, ev.Type...)
	dst = append(dst, "\ndata: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...), nil
}

// flusher returns the function that pushes w's buffered output to the client.
func flusher(w io.Writer) func() error {
	if rw, ok := w.(http.ResponseWriter); ok {
		rc := http.NewResponseController(rw)
		return func() error {
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
			return nil
		}
	}
	switch f := w.(type) {
	case interface{ Flush() error }:
		return f.Flush
	case http.Flusher:
		return func() error { f.Flush(); return nil }
	}
	return func() error { return nil }
}

// ErrStreamed is returned when a StreamBody is consumed a second time (or
// after Close).
var ErrStreamed = errors.New("events: stream body already consumed")

// StreamBody returns the body of an event-stream response: an
// io.ReadCloser that also implements io.WriterTo, so both ways a generated
// strict-server response may consume it stream with flushes:
//
//   - io.Copy(w, body) calls WriteTo(w), which runs Stream on w directly
//     (flushing through w);
//   - a loop of body.Read followed by a flush of each chunk (what
//     oapi-codegen generates for text/event-stream when w is an
//     http.Flusher) reads from a pipe fed by Stream running in a goroutine;
//     each message arrives in its own Read.
//
// Keepalives come from the broker (Broker.Keepalive). Streaming ends when ctx is done, the subscription closes, or a write fails,
// and then closes the subscription. Ending because the broker closed a slow
// subscription is reported as a normal end (nil from WriteTo, io.EOF from
// Read), since the response is already committed and the client reconnects.
// Close closes the subscription, stops any streaming goroutine and waits for
// it; the body can be consumed only once, by one of the two ways. WriteTo
// is the way that costs no goroutine of its own (package api's response
// takes it).
func StreamBody(ctx context.Context, sub *Subscription, hello any) io.Reader {
	return &body{ctx: ctx, sub: sub, hello: hello}
}

type body struct {
	ctx   context.Context
	sub   *Subscription
	hello any

	mu      sync.Mutex
	started bool
	pr      *io.PipeReader // set when consumed through Read
	done    chan struct{}  // closed when the Read goroutine has finished
}

var (
	_ io.ReadCloser = (*body)(nil)
	_ io.WriterTo   = (*body)(nil)
)

func (b *body) run(w io.Writer) (int64, error) {
	n, err := stream(b.ctx, w, b.sub, b.hello)
	if errors.Is(err, ErrSlowSubscriber) {
		err = nil
	}
	return n, err
}

// WriteTo streams the events to w; see StreamBody.
func (b *body) WriteTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return 0, ErrStreamed
	}
	b.started = true
	b.mu.Unlock()
	return b.run(w)
}

// Read reads the stream through a pipe; see StreamBody.
func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.pr == nil {
		if b.started {
			b.mu.Unlock()
			return 0, ErrStreamed
		}
		b.started = true
		pr, pw := io.Pipe()
		b.pr, b.done = pr, make(chan struct{})
		// A blocked pipe write does not watch ctx; closing the writer
		// when ctx ends unblocks it and gives the reader io.EOF.
		stop := context.AfterFunc(b.ctx, func() { pw.Close() })
		go func() {
			defer close(b.done)
			defer stop()
			_, err := b.run(pw)
			pw.CloseWithError(err) // nil: readers get io.EOF
		}()
	}
	pr := b.pr
	b.mu.Unlock()
	return pr.Read(p)
}

// Close closes the subscription and, if Read started a streaming goroutine,
// stops it and waits for it to finish. It is idempotent.
func (b *body) Close() error {
	b.sub.Close()
	b.mu.Lock()
	b.started = true // a body closed before use cannot be consumed later
	pr, done := b.pr, b.done
	b.mu.Unlock()
	if pr != nil {
		pr.Close()
		<-done
	}
	return nil
}
