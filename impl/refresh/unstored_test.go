package refresh

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/store"
)

// countedStore is a real SQLite store that counts the sync writes per
// run id and state.
type countedStore struct {
	*store.SQLite
	mu     sync.Mutex
	writes map[string][]string // run id -> the states written, in order
}

func (c *countedStore) PutSync(ctx context.Context, sy store.Sync, keep int) error {
	c.mu.Lock()
	c.writes[sy.ID] = append(c.writes[sy.ID], sy.State)
	c.mu.Unlock()
	return c.SQLite.PutSync(ctx, sy, keep)
}

func (c *countedStore) PutSyncs(ctx context.Context, list []store.Sync, keep int) error {
	c.mu.Lock()
	for _, sy := range list {
		c.writes[sy.ID] = append(c.writes[sy.ID], sy.State)
	}
	c.mu.Unlock()
	return c.SQLite.PutSyncs(ctx, list, keep)
}

func (c *countedStore) written(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes[id])
}

func newCountedStore(t *testing.T) *countedStore {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "stackd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return &countedStore{SQLite: st, writes: map[string][]string{}}
}

// TestIntervalRunStoredWhenItEnds: an interval run of the scheduler
// (Sync with Interval) is written once, after it ended (a no-op one with
// the others of its batch, endBatch); until then the history shows it from
// memory at its place by id. A run that hands out its id (Trigger) is
// written when queued, when it starts and when it ends, as before; a
// trigger that joins a queued interval run stores it before its id is
// handed out; a removed repository's waiting ends are never written.
func TestIntervalRunStoredWhenItEnds(t *testing.T) {
	bg := context.Background()
	t.Run("alone", func(t *testing.T) {
		st := newCountedStore(t)
		f := newOrderFixture(t, func(o *Options) { o.Store = st })
		f.rf.m.ends.delay = time.Hour // stored when the test flushes
		hold := make(chan struct{})
		f.runs.setHold(hold)
		done := intervalSync(t, f.rf)
		id := <-f.enqueued
		<-f.runs.started // running, held
		if _, err := st.GetSync(bg, "local", id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a running interval run is in the store: %v", err)
		}
		page, err := f.rf.Page(bg, 50, "")
		if err != nil || len(page) == 0 || page[0].ID != id || page[0].State != Running {
			t.Fatalf("history while the interval run runs: %+v %v", page, err)
		}
		if got, ok := f.rf.Get(id); !ok || got.State != Running {
			t.Fatalf("Get while running: %+v %v", got, ok)
		}
		// Paging past it, and a page of one, each show it once.
		if page, err := f.rf.Page(bg, 50, id); err != nil || slices.ContainsFunc(page, func(r Result) bool { return r.ID == id }) {
			t.Fatalf("the page after the interval run holds it: %+v %v", page, err)
		}
		if page, err := f.rf.Page(bg, 1, ""); err != nil || len(page) != 1 || page[0].ID != id {
			t.Fatalf("a page of one: %+v %v", page, err)
		}
		f.runs.setHold(nil)
		close(hold)
		res := <-done
		if res.ID != id || res.State != Succeeded {
			t.Fatalf("interval run = %+v", res)
		}
		// A no-op run: its end waits for the batch, and the history
		// shows it from memory meanwhile.
		if w := st.written(id); len(w) != 0 {
			t.Fatalf("the no-op interval run's end was written at once: %q", w)
		}
		page, err = f.rf.Page(bg, 50, "")
		if err != nil || len(page) == 0 || page[0].ID != id || page[0].State != Succeeded {
			t.Fatalf("history before the batch is stored: %+v %v", page, err)
		}
		f.rf.m.ends.flush()
		if w := st.written(id); !slices.Equal(w, []string{string(Succeeded)}) {
			t.Fatalf("writes of the interval run: %q, want only its end", w)
		}
		sy, err := st.GetSync(bg, "local", id)
		if err != nil || sy.State != string(Succeeded) || sy.Trigger != string(Interval) || sy.StartedAt == nil {
			t.Fatalf("stored interval run: %+v %v", sy, err)
		}
		page, err = f.rf.Page(bg, 50, "")
		if err != nil || len(page) == 0 || page[0].ID != id || page[0].State != Succeeded ||
			slices.IndexFunc(page[1:], func(r Result) bool { return r.ID == id }) >= 0 {
			t.Fatalf("history after the interval run: %+v %v", page, err)
		}

		// A manual trigger's run is written in each of its states.
		mid := f.rf.Trigger(Manual)
		<-f.enqueued
		waitOK(t, f.rf, mid)
		if w := st.written(mid); !slices.Equal(w, []string{string(Queued), string(Running), string(Succeeded)}) {
			t.Fatalf("writes of a manual run: %q", w)
		}

		// A removed repository's waiting end is dropped.
		last, err := f.rf.Sync(bg, Interval)
		if err != nil || last.State != Succeeded {
			t.Fatalf("interval sync: %+v %v", last, err)
		}
		<-f.enqueued
		if err := f.rf.Stop(bg); err != nil {
			t.Fatal(err)
		}
		f.rf.m.ends.flush()
		if w := st.written(last.ID); len(w) != 0 {
			t.Fatalf("a stopped repository's waiting end was written: %q", w)
		}
	})
	t.Run("joined", func(t *testing.T) {
		st := newCountedStore(t)
		f := newOrderFixture(t, func(o *Options) { o.Store = st })
		hold := make(chan struct{})
		f.runs.setHold(hold)
		first := f.rf.Trigger(Manual)
		<-f.enqueued
		<-f.runs.started
		done := intervalSync(t, f.rf)
		id := <-f.enqueued // queued behind the held run
		if _, err := st.GetSync(bg, "local", id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a queued interval run is in the store: %v", err)
		}
		// Another interval run joins without storing it.
		go func() {
			if _, err := f.rf.Sync(bg, Interval); err != nil {
				t.Errorf("second interval sync: %v", err)
			}
		}()
		if joined := <-f.enqueued; joined != id {
			t.Fatalf("a second interval run went to %s, not the queued %s", joined, id)
		}
		if w := st.written(id); len(w) != 0 {
			t.Fatalf("a waiting interval joiner stored the run: %q", w)
		}
		// A webhook that joins it gets its id only once it is stored.
		if joined := f.rf.Trigger(Webhook); joined != id {
			t.Fatalf("the webhook went to %s, not the queued %s", joined, id)
		}
		<-f.enqueued
		sy, err := st.GetSync(bg, "local", id)
		if err != nil || sy.State != string(Queued) || sy.Trigger != string(Webhook) {
			t.Fatalf("the joined run when its id was handed out: %+v %v", sy, err)
		}
		f.runs.setHold(nil)
		close(hold)
		waitOK(t, f.rf, first)
		res := <-done
		if res.ID != id || res.State != Succeeded || res.Trigger != Webhook {
			t.Fatalf("joined run = %+v", res)
		}
		if w := st.written(id); !slices.Equal(w, []string{string(Queued), string(Running), string(Succeeded)}) {
			t.Fatalf("writes of the joined run: %q", w)
		}
	})
}

// intervalSync runs an interval Sync of rf in the background; its result
// arrives on the channel.
func intervalSync(t *testing.T, rf *Refresher) <-chan Result {
	t.Helper()
	done := make(chan Result, 1)
	go func() {
		res, err := rf.Sync(context.Background(), Interval)
		if err != nil {
			t.Errorf("interval sync: %v", err)
		}
		done <- res
	}()
	return done
}
