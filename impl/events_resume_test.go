package impl_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl"
)

// sseStream reads a server-sent event stream with ids.
type sseStream struct {
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

type sseEvent struct {
	id        uint64
	typ, data string
}

func openStream(t *testing.T, s *testServer, path string, hdr ...string) *sseStream {
	t.Helper()
	c, cancel := context.WithCancel(ctx(t))
	req, _ := http.NewRequestWithContext(c, "GET", s.srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return &sseStream{sc: bufio.NewScanner(resp.Body), cancel: cancel}
}

func (e *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	var ev sseEvent
	for e.sc.Scan() {
		line := e.sc.Text()
		switch {
		case line == "" && ev.typ != "":
			return ev
		case strings.HasPrefix(line, "id: "):
			id, err := strconv.ParseUint(strings.TrimPrefix(line, "id: "), 10, 64)
			if err != nil {
				t.Fatalf("event id %q", line)
			}
			ev.id = id
		case strings.HasPrefix(line, "event: "):
			ev.typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
	t.Fatalf("event stream ended: %v", e.sc.Err())
	return ev
}

// untilFinished reads events until the sync_finished of run id, checking
// that ids only increase; it returns the events read.
func (e *sseStream) untilFinished(t *testing.T, after uint64, run string) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		ev := e.next(t)
		if ev.id <= after {
			t.Fatalf("event %+v does not follow id %d", ev, after)
		}
		after = ev.id
		out = append(out, ev)
		if ev.typ == "sync_finished" && strings.Contains(ev.data, `"id":"`+run+`"`) {
			return out
		}
	}
}

// TestEventStreamResumes: ids grow across streams; a client that comes back
// with Last-Event-ID (or lastEventId) gets the events it missed, and one
// with an id of an earlier server run is told to resync.
func TestEventStreamResumes(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	const path = "/api/v1/repos/local/events"

	first := openStream(t, s, path)
	hello := first.next(t)
	if hello.typ != "connected" || !strings.Contains(hello.data, `"repoID":"local"`) {
		t.Fatalf("first event %+v", hello)
	}
	seen := syncOK(t, s, "local")
	evs := first.untilFinished(t, hello.id, seen.Id)
	last := evs[len(evs)-1].id
	first.cancel()

	// While no client listens: a change and a sync.
	r.Git("update-ref", "refs/heads/while-away", "main")
	missed := syncOK(t, s, "local")

	for _, how := range []struct {
		name      string
		path      string
		hdr       []string
		position  uint64
		wantEvent string
	}{
		{"Last-Event-ID", path, []string{"Last-Event-ID", fmt.Sprint(last)}, last, ""},
		{"lastEventId", path + "?lastEventId=" + fmt.Sprint(last), nil, last, ""},
		{"the header wins", path + "?lastEventId=1", []string{"Last-Event-ID", fmt.Sprint(last)}, last, ""},
	} {
		t.Run(how.name, func(t *testing.T) {
			again := openStream(t, s, how.path, how.hdr...)
			hello := again.next(t)
			if hello.typ != "connected" || hello.id != how.position {
				t.Fatalf("connected = %+v, want id %d", hello, how.position)
			}
			replayed := again.untilFinished(t, last, missed.Id)
			var types []string
			for _, ev := range replayed {
				types = append(types, ev.typ)
			}
			if !strings.Contains(strings.Join(types, " "), "view_updated") {
				t.Fatalf("replayed %v, want the view update of the missed sync", types)
			}
		})
	}

	t.Run("an id of an earlier server run", func(t *testing.T) {
		again := openStream(t, s, path, "Last-Event-ID", "1")
		hello, resync := again.next(t), again.next(t)
		if hello.typ != "connected" || resync.typ != "resync" || resync.id != hello.id || hello.id < last ||
			!strings.Contains(resync.data, `"viewVersion"`) {
			t.Fatalf("got %+v then %+v", hello, resync)
		}
		// Live events follow.
		res := syncOK(t, s, "local")
		again.untilFinished(t, hello.id, res.Id)
	})
}
