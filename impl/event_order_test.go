package impl_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
)

// position is the id of the latest event the server had published when
// this call opened a stream of path: the id of its "connected" event. The
// stream is closed again.
func position(t *testing.T, s *testServer, path string) uint64 {
	t.Helper()
	st := openStream(t, s, path)
	defer st.cancel()
	hello := st.next(t)
	if hello.typ != "connected" {
		t.Fatalf("first event %+v", hello)
	}
	return hello.id
}

// syncEvents returns, in order, "<type> <run id>" for the sync events
// among evs.
func syncEvents(t *testing.T, evs []sseEvent) []string {
	t.Helper()
	var out []string
	for _, ev := range evs {
		if !strings.HasPrefix(ev.typ, "sync_") {
			continue
		}
		var res struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(ev.data), &res); err != nil {
			t.Fatalf("%s data %q: %v", ev.typ, ev.data, err)
		}
		out = append(out, ev.typ+" "+res.ID)
	}
	return out
}

// TestSyncFinishedPrecedesTheAnswer: a client that waits for a sync
// (POST .../sync) gets its 200 only after the sync's sync_finished was
// published to the event streams open before it; and a follow-up run
// starts (sync_started) only after the previous run's sync_finished.
func TestSyncFinishedPrecedesTheAnswer(t *testing.T) {
	up := newUpstream(t, "acme/ordered.git")
	cf := &countingFetch{}
	enqueued := make(chan string, 64) // run ids, once per trigger
	s := startServer(t, mirrorConfig(t), impl.Options{
		BeforeRefresh: cf.fetch,
		Enqueued:      func(_, run string) { enqueued <- run },
	})
	id := onboard(t, s, up.url).Id
	<-enqueued
	cf.n.Store(0)
	path := "/api/v1/repos/" + id + "/events"
	stream := openStream(t, s, path)
	hello := stream.next(t)
	if hello.typ != "connected" {
		t.Fatalf("first event %+v", hello)
	}

	// One sync: its sync_finished was published when the 200 arrived.
	res := syncOK(t, s, id)
	<-enqueued
	answered := position(t, s, path)
	evs := stream.untilFinished(t, hello.id, res.Id)
	if got, want := syncEvents(t, evs), []string{"sync_started " + res.Id, "sync_finished " + res.Id}; !slices.Equal(got, want) {
		t.Fatalf("events of the sync: %q, want %q", got, want)
	}
	if finished := evs[len(evs)-1]; finished.id > answered {
		t.Fatalf("sync_finished (id %d) was published after the 200 (the latest id then: %d)", finished.id, answered)
	}

	// A run, and a waiting client whose trigger during it queues the
	// follow-up: run 1 ends (published) before run 2 starts, and run 2's
	// end is published before its waiter's 200.
	started, hold := make(chan struct{}, 1), make(chan struct{})
	cf.set(hold, started)
	wait := false
	acc, err := s.c.SyncRepoWithResponse(ctx(t), id, &client.SyncRepoParams{Wait: &wait})
	if err != nil || acc.JSON202 == nil {
		t.Fatalf("202: %v %s", err, acc.Body)
	}
	first := <-enqueued
	if first != acc.JSON202.Id {
		t.Fatalf("enqueued %s, answered %s", first, acc.JSON202.Id)
	}
	<-started
	type answer struct {
		resp *client.SyncRepoResponse
		err  error
	}
	waited := make(chan answer, 1)
	go func() {
		resp, err := s.c.SyncRepoWithResponse(ctx(t), id, nil)
		waited <- answer{resp, err}
	}()
	second := <-enqueued // the waiter's trigger queued the follow-up
	cf.set(nil, nil)
	close(hold)
	a := <-waited
	if a.err != nil || a.resp.JSON200 == nil || a.resp.JSON200.Id != second || second == first {
		t.Fatalf("the waiter's answer (follow-up %s of %s): %v %+v", second, first, a.err, a.resp)
	}
	answered = position(t, s, path)
	evs = stream.untilFinished(t, evs[len(evs)-1].id, second)
	want := []string{"sync_started " + first, "sync_finished " + first, "sync_started " + second, "sync_finished " + second}
	if got := syncEvents(t, evs); !slices.Equal(got, want) {
		t.Fatalf("events of a run and its follow-up: %q, want %q", got, want)
	}
	if finished := evs[len(evs)-1]; finished.id > answered {
		t.Fatalf("the follow-up's sync_finished (id %d) was published after its waiter's 200 (the latest id then: %d)", finished.id, answered)
	}
	if n := cf.n.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3 (the sync, the run and its follow-up)", n)
	}
}
