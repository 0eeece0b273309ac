package refresh

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/registry"
)

// published records the sync events a Manager publishes, in the order
// their publication completed ("sync_started <id>", ...). onEnd, when set,
// runs inside the publication of a run's sync_finished or sync_failed,
// before it is recorded.
type published struct {
	mu    sync.Mutex
	evs   []string
	onEnd func(res gen.SyncResult)
}

// Publish records ev (events.Publisher).
func (p *published) Publish(_ string, ev events.Event) error {
	res, ok := ev.Data.(gen.SyncResult)
	if !ok {
		return nil // view_updated, branch_switched
	}
	p.mu.Lock()
	onEnd := p.onEnd
	p.mu.Unlock()
	if onEnd != nil && (ev.Type == events.SyncFinished || ev.Type == events.SyncFailed) {
		onEnd(res)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, ev.Type+" "+res.Id)
	return nil
}

// reset forgets what was recorded and sets onEnd.
func (p *published) reset(onEnd func(res gen.SyncResult)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs, p.onEnd = nil, onEnd
}

func (p *published) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.evs)
}

// orderFixture is a manager with one local repository whose first view is
// built, and what it publishes (reset after the first build).
type orderFixture struct {
	rf       *Refresher
	pub      *published
	runs     *runs
	enqueued chan string // run ids, once per trigger (buffered)
	fail     error       // when set before a run, its source refresh fails with it
}

func newOrderFixture(t *testing.T, with ...func(*Options)) *orderFixture {
	t.Helper()
	g := gittest.New(t)
	g.Commit("initial", map[string]string{"README": "x\n"})
	wt, err := gitrepo.Discover(g.Dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &orderFixture{pub: &published{}, runs: &runs{started: make(chan string, 100)}, enqueued: make(chan string, 100)}
	opts := Options{
		Events: f.pub,
		BeforeRefresh: func(ctx context.Context, repoID string, mode Mode) error {
			if err := f.runs.before(ctx, repoID, mode); err != nil {
				return err
			}
			return f.fail
		},
		Enqueued: func(_, id string) { f.enqueued <- id },
	}
	for _, w := range with {
		w(&opts)
	}
	m := NewManager(opts)
	t.Cleanup(m.Close)
	f.rf = m.Add(registry.NewLocal("local", wt, "", "", ""))
	if res, err := f.rf.Sync(context.Background(), Onboard); err != nil || res.Err != nil {
		t.Fatalf("first build: %v %v", err, res.Err)
	}
	<-f.runs.started
	<-f.enqueued
	f.runs.n.Store(0)
	f.pub.reset(nil)
	return f
}

// checkEnd is an onEnd that checks, while a run's end is published, that
// the repository's status already shows the run and that nobody waiting
// for it has been released yet.
func (f *orderFixture) checkEnd(t *testing.T) func(res gen.SyncResult) {
	return func(res gen.SyncResult) {
		st := f.rf.Status()
		if st.Running || st.LastAttemptAt == nil || res.StartedAt == nil || !st.LastAttemptAt.Equal(*res.StartedAt) {
			t.Errorf("status while run %s's end is published: %+v", res.Id, st)
		}
		if res.State == gen.SyncResultStateFailed {
			if res.Error == nil || st.LastError != *res.Error || st.ConsecutiveFailures == 0 {
				t.Errorf("status while failed run %s's end is published: %+v", res.Id, st)
			}
		} else if st.LastError != "" || st.ConsecutiveFailures != 0 || st.LastSuccessAt == nil || res.FinishedAt == nil || !st.LastSuccessAt.Equal(*res.FinishedAt) {
			t.Errorf("status while run %s's end is published: %+v", res.Id, st)
		}
		ru := f.rf.find(res.Id)
		if ru == nil {
			t.Errorf("run %s unknown while its end is published", res.Id)
			return
		}
		select {
		case <-ru.done:
			t.Errorf("run %s released its waiters before its end was published", res.Id)
		default:
		}
	}
}

// TestRunEventsPrecedeItsResult: a run publishes sync_started, then its
// sync_finished (or sync_failed) once its status shows it, and a caller
// waiting for it (Sync) returns only after that publication.
func TestRunEventsPrecedeItsResult(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail error
		end  string
	}{
		{"finished", nil, events.SyncFinished},
		{"failed", errors.New("injected"), events.SyncFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newOrderFixture(t)
			f.fail = tc.fail
			f.pub.reset(f.checkEnd(t))
			res, err := f.rf.Sync(context.Background(), Manual)
			if err != nil || !errors.Is(res.Err, tc.fail) {
				t.Fatalf("sync = %+v %v", res, err)
			}
			// Read at once: the waiter was released after the publication.
			want := []string{events.SyncStarted + " " + res.ID, tc.end + " " + res.ID}
			if got := f.pub.list(); !slices.Equal(got, want) {
				t.Fatalf("published when Sync returned: %q, want %q", got, want)
			}
		})
	}
}

// TestFollowUpStartsAfterTheEndIsPublished: triggers during a run queue one
// follow-up, which starts only once the first run's end was published:
// sync_started(1), sync_finished(1), sync_started(2), sync_finished(2).
// A caller waiting for the follow-up returns after its sync_finished.
func TestFollowUpStartsAfterTheEndIsPublished(t *testing.T) {
	f := newOrderFixture(t)
	var first, second string // set before the first run is released
	check := f.checkEnd(t)
	f.pub.reset(func(res gen.SyncResult) {
		check(res)
		if res.Id != first {
			return
		}
		if next, ok := f.rf.Get(second); !ok || next.State != Queued {
			t.Errorf("the follow-up is %+v while the first run's end is published", next)
		}
	})
	hold := make(chan struct{})
	f.runs.setHold(hold)
	first = f.rf.Trigger(Manual)
	<-f.enqueued
	<-f.runs.started

	type answer struct {
		res Result
		err error
		evs []string // published when Sync returned
	}
	waited := make(chan answer, 1)
	go func() {
		res, err := f.rf.Sync(context.Background(), Manual)
		waited <- answer{res, err, f.pub.list()}
	}()
	second = <-f.enqueued // the waiter joined the queued follow-up
	if second == first {
		t.Fatalf("a trigger during run %s joined it", first)
	}
	f.runs.setHold(nil)
	close(hold)
	a := <-waited
	if a.err != nil || a.res.ID != second || a.res.State != Succeeded {
		t.Fatalf("the follow-up's waiter got %+v %v", a.res, a.err)
	}
	want := []string{
		events.SyncStarted + " " + first, events.SyncFinished + " " + first,
		events.SyncStarted + " " + second, events.SyncFinished + " " + second,
	}
	if !slices.Equal(a.evs, want) {
		t.Fatalf("published when the follow-up's waiter returned: %q, want %q", a.evs, want)
	}
	if n := f.runs.n.Load(); n != 2 {
		t.Fatalf("%d refreshes, want 2", n)
	}
}

// TestTriggerDuringTheEndJoinsTheNextRun: a trigger that arrives while a
// run's end is being published queues the next run; it starts only after
// that publication.
func TestTriggerDuringTheEndJoinsTheNextRun(t *testing.T) {
	f := newOrderFixture(t)
	var once sync.Once
	next := make(chan string, 1)
	check := f.checkEnd(t)
	f.pub.reset(func(res gen.SyncResult) {
		check(res)
		once.Do(func() {
			id := f.rf.Trigger(Webhook)
			if id == "" || id == res.Id {
				t.Errorf("a trigger during the end of run %s got run %q", res.Id, id)
			}
			if next, ok := f.rf.Get(id); !ok || next.State != Queued {
				t.Errorf("the run of a trigger during the end of run %s: %+v", res.Id, next)
			}
			next <- id
		})
	})
	res, err := f.rf.Sync(context.Background(), Manual)
	if err != nil || res.Err != nil {
		t.Fatalf("sync = %+v %v", res, err)
	}
	second := <-next
	waitOK(t, f.rf, second)
	want := []string{
		events.SyncStarted + " " + res.ID, events.SyncFinished + " " + res.ID,
		events.SyncStarted + " " + second, events.SyncFinished + " " + second,
	}
	if got := f.pub.list(); !slices.Equal(got, want) {
		t.Fatalf("published: %q, want %q", got, want)
	}
}
