package deadline_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/deadline"
	"github.com/stackd/stackd/impl/deadline/deadlinetest"
)

// wait is how long a test waits for something that must happen.
const wait = 30 * time.Second

// serve starts h behind deadline.Middleware(budget) on a listener with
// small send buffers, and follows its connections.
func serve(t *testing.T, budget time.Duration, h http.HandlerFunc) (*httptest.Server, *deadlinetest.Conns) {
	t.Helper()
	srv := httptest.NewUnstartedServer(deadline.Middleware(budget)(h))
	srv.Listener = deadlinetest.SmallBuffers(srv.Listener)
	conns := deadlinetest.NewConns()
	srv.Config.ConnState = conns.Hook
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, conns
}

func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// TestStalledClientIsCut: a client that asks for a large body and never
// reads makes the write miss its deadline; the handler gets the error and
// ends, and the server closes the connection.
func TestStalledClientIsCut(t *testing.T) {
	ended := make(chan error, 1)
	srv, conns := serve(t, 100*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(body(4 << 20)) // one write: the middleware cuts it in chunks
		ended <- err
	})
	c, err := deadlinetest.Get(srv.Listener.Addr().String(), "/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the handler's write ended with %v, want a missed deadline", err)
		}
	case <-time.After(wait):
		t.Fatal("the handler is still writing to a client that does not read")
	}
	select {
	case <-conns.Closed(c):
	case <-time.After(wait):
		t.Fatal("the server kept the connection of a client that does not read")
	}
}

// TestSlowReaderGetsEverything: a client that reads a large body slowly,
// for much longer in total than the budget but never stalling for the
// budget, gets all of it. (The pauses between its reads are the property
// under test, not synchronisation.)
func TestSlowReaderGetsEverything(t *testing.T) {
	const budget = 500 * time.Millisecond
	want := body(4 * deadline.ChunkSize)
	ended := make(chan error, 1)
	srv, _ := serve(t, budget, func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(want)
		ended <- err
	})
	c, err := deadlinetest.Get(srv.Listener.Addr().String(), "/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var got bytes.Buffer
	// A chunk takes 16 ticks (160 ms, within the budget); the body, 64
	// (640 ms, longer than the budget).
	buf := make([]byte, deadline.ChunkSize/16)
	for {
		<-tick.C
		n, err := io.ReadFull(resp.Body, buf)
		got.Write(buf[:n])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got.Len(), err)
		}
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d", got.Len(), len(want))
	}
	if err := <-ended; err != nil {
		t.Fatalf("the handler's write: %v", err)
	}
	if took := time.Since(start); took < 2*budget {
		t.Logf("the read took %v, not longer than the budget %v: the test proved less than it should", took, budget)
	}
}

// TestIdleStreamSurvives: a streaming response idle for longer than the
// budget between two writes is not cut: only a pending write has a
// deadline.
func TestIdleStreamSurvives(t *testing.T) {
	const budget = 50 * time.Millisecond
	next := make(chan struct{})
	ended := make(chan error, 1)
	srv, _ := serve(t, budget, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for _, ev := range []string{"first\n", "second\n"} {
			if _, err := io.WriteString(w, ev); err != nil {
				ended <- err
				return
			}
			if err := rc.Flush(); err != nil {
				ended <- err
				return
			}
			if ev == "first\n" {
				<-next
			}
		}
		ended <- nil
	})
	c, err := deadlinetest.Get(srv.Listener.Addr().String(), "/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first: %q %v", line, err)
	}
	<-time.After(4 * budget) // idle for longer than the budget
	close(next)
	if line, err := br.ReadString('\n'); err != nil || line != "second\n" {
		t.Fatalf("second: %q %v", line, err)
	}
	if err := <-ended; err != nil {
		t.Fatalf("the handler: %v", err)
	}
}

// TestWithoutDeadlines: on a writer without deadlines the middleware only
// passes writes and flushes on.
func TestWithoutDeadlines(t *testing.T) {
	rec := httptest.NewRecorder()
	want := body(3*deadline.ChunkSize + 7)
	deadline.Middleware(0)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		if n, err := w.Write(want); n != len(want) || err != nil {
			t.Errorf("write: %d %v", n, err)
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
	})).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusTeapot || !bytes.Equal(rec.Body.Bytes(), want) || !rec.Flushed {
		t.Errorf("status %d, %d bytes, flushed %v", rec.Code, rec.Body.Len(), rec.Flushed)
	}
}
