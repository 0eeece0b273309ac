package refresh

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/refresh/refreshtest"
	"github.com/stackd/stackd/impl/registry"
)

// runs counts the refreshes that reach the source and can hold them.
type runs struct {
	n       atomic.Int64
	started chan string // repo id, once per run (buffered)
	mu      sync.Mutex
	hold    chan struct{}
}

func (r *runs) before(ctx context.Context, _ string, _ Mode) error {
	r.n.Add(1)
	r.started <- "run"
	r.mu.Lock()
	hold := r.hold
	r.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *runs) setHold(h chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hold = h
}

// newDebounced returns a manager with one local repository whose first
// view is built, a fake clock, and the run counter (reset to 0).
func newDebounced(t *testing.T, debounce, maxDelay time.Duration) (*Manager, *Refresher, *refreshtest.Clock, *runs) {
	t.Helper()
	g := gittest.New(t)
	g.Commit("initial", map[string]string{"README": "x\n"})
	wt, err := gitrepo.Discover(g.Dir)
	if err != nil {
		t.Fatal(err)
	}
	clk := refreshtest.NewClock()
	rs := &runs{started: make(chan string, 100)}
	m := NewManager(Options{Debounce: debounce, MaxDelay: maxDelay, Clock: clk, BeforeRefresh: rs.before})
	t.Cleanup(m.Close)
	rf := m.Add(registry.NewLocal("local", wt, "", "", ""))
	if res, err := rf.Sync(context.Background(), Onboard); err != nil || res.Err != nil {
		t.Fatalf("first build: %v %v", err, res.Err)
	}
	<-rs.started
	rs.n.Store(0)
	return m, rf, clk, rs
}

func state(t *testing.T, rf *Refresher, id string) State {
	t.Helper()
	res, ok := rf.Get(id)
	if !ok {
		t.Fatalf("no run %s", id)
	}
	return res.State
}

func waitOK(t *testing.T, rf *Refresher, id string) Result {
	t.Helper()
	res, err := rf.Wait(context.Background(), id)
	if err != nil || res.State != Succeeded {
		t.Fatalf("run %s: %+v %v", id, res, err)
	}
	return res
}

// TestDebounceBurst: eight pushes at once go to one queued run, which
// starts only when the quiet window has passed, and runs once.
func TestDebounceBurst(t *testing.T) {
	_, rf, clk, rs := newDebounced(t, 2*time.Second, 10*time.Second)
	first := rf.TriggerDebounced(Webhook)
	<-clk.Armed
	for range 7 {
		if id := rf.TriggerDebounced(Webhook); id != first {
			t.Fatalf("a push of the burst went to run %s, not %s", id, first)
		}
	}
	if st := state(t, rf, first); st != Queued {
		t.Fatalf("run %s is %s before its window ended", first, st)
	}
	if clk.Advance(time.Second) != 0 {
		t.Fatal("a timer fired before the window")
	}
	if clk.Advance(time.Second) != 1 {
		t.Fatal("the window's timer did not fire")
	}
	res := waitOK(t, rf, first)
	if res.Trigger != Webhook || !res.StartedAt.After(res.QueuedAt) && !res.StartedAt.Equal(res.QueuedAt) {
		t.Fatalf("run = %+v", res)
	}
	if n := rs.n.Load(); n != 1 {
		t.Fatalf("%d refreshes for a burst, want 1", n)
	}
}

// TestDebounceQuietWindowMoves: a push during the window moves its end;
// the run starts a full window after the last push.
func TestDebounceQuietWindowMoves(t *testing.T) {
	_, rf, clk, rs := newDebounced(t, 2*time.Second, 10*time.Second)
	id := rf.TriggerDebounced(Webhook)
	<-clk.Armed
	clk.Advance(1500 * time.Millisecond)
	rf.TriggerDebounced(Webhook) // the window now ends at 3.5 s
	if clk.Advance(500*time.Millisecond) != 1 {
		t.Fatal("first timer did not fire")
	}
	if d := <-clk.Armed; d != 1500*time.Millisecond { // re-armed for the rest of the window
		t.Fatalf("re-armed for %s", d)
	}
	if st := state(t, rf, id); st != Queued {
		t.Fatalf("run started %s, before the moved window ended", st)
	}
	clk.Advance(1500 * time.Millisecond)
	waitOK(t, rf, id)
	if n := rs.n.Load(); n != 1 {
		t.Fatalf("%d refreshes", n)
	}
}

// TestDebounceMaxDelay: pushes every second cannot postpone the run past
// the maximum delay.
func TestDebounceMaxDelay(t *testing.T) {
	_, rf, clk, rs := newDebounced(t, 2*time.Second, 5*time.Second)
	id := rf.TriggerDebounced(Webhook)
	<-clk.Armed
	for sec := 1; ; sec++ {
		if sec > 5 {
			t.Fatal("the run did not start at the maximum delay")
		}
		fired := clk.Advance(time.Second)
		if fired > 0 {
			// The hold either re-arms or starts the run.
			select {
			case <-clk.Armed:
			case <-rs.started:
				if sec != 5 {
					t.Fatalf("started after %d s, want 5 (the maximum delay)", sec)
				}
				waitOK(t, rf, id)
				return
			}
		}
		if got := rf.TriggerDebounced(Webhook); got != id {
			t.Fatalf("push at %d s went to %s, want the waiting %s", sec, got, id)
		}
	}
}

// TestManualSyncStartsAWaitingRun: another trigger joins the waiting run
// and starts it at once; the push's run id stays true.
func TestManualSyncStartsAWaitingRun(t *testing.T) {
	_, rf, clk, rs := newDebounced(t, 2*time.Second, 10*time.Second)
	id := rf.TriggerDebounced(Webhook)
	<-clk.Armed
	res, err := rf.Sync(context.Background(), Manual)
	if err != nil || res.ID != id || res.State != Succeeded {
		t.Fatalf("manual sync = %+v %v, want the waiting run %s", res, err, id)
	}
	if n := rs.n.Load(); n != 1 {
		t.Fatalf("%d refreshes", n)
	}
	clk.Advance(time.Minute) // the old timer fires into nothing
	if n := rs.n.Load(); n != 1 {
		t.Fatalf("%d refreshes after the window", n)
	}
}

// TestPushesDuringARun: pushes while a run is running queue one follow-up,
// which waits for its window and for the running run.
func TestPushesDuringARun(t *testing.T) {
	_, rf, clk, rs := newDebounced(t, 2*time.Second, 10*time.Second)
	hold := make(chan struct{})
	rs.setHold(hold)
	running := rf.Trigger(Manual)
	<-rs.started
	next := rf.TriggerDebounced(Webhook)
	<-clk.Armed
	for range 5 {
		if id := rf.TriggerDebounced(Webhook); id != next || id == running {
			t.Fatalf("push went to %s (running %s, next %s)", id, running, next)
		}
	}
	clk.Advance(2 * time.Second) // the window ends while the first run still runs
	rs.setHold(nil)
	close(hold)
	waitOK(t, rf, running)
	waitOK(t, rf, next)
	if n := rs.n.Load(); n != 2 {
		t.Fatalf("%d refreshes, want 2 (the running one and one follow-up)", n)
	}
}

// TestAdmitOnlyForNewRuns: admit is asked only when a run is created; a
// refusal queues nothing.
func TestAdmitOnlyForNewRuns(t *testing.T) {
	_, rf, _, rs := newDebounced(t, 0, 0)
	var asked atomic.Int64
	admit := func() error { asked.Add(1); return nil }
	hold := make(chan struct{})
	rs.setHold(hold)
	first, err := rf.TriggerIf(Manual, admit)
	if err != nil {
		t.Fatal(err)
	}
	<-rs.started
	var wg sync.WaitGroup
	ids := make([]string, 30)
	for i := range ids {
		wg.Go(func() {
			id, err := rf.TriggerIf(Manual, admit)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || id == first {
			t.Fatalf("ids = %v", ids)
		}
	}
	if n := asked.Load(); n != 2 {
		t.Fatalf("admit asked %d times, want 2 (the first run and its follow-up)", n)
	}
	// A refusal creates nothing, and joining still needs no admission.
	refuse := errors.New("no")
	if id, err := rf.TriggerIf(Manual, func() error { return refuse }); err != nil || id != ids[0] {
		t.Fatalf("joining with a refusing admit = %q %v", id, err)
	}
	rs.setHold(nil)
	close(hold)
	waitOK(t, rf, ids[0])
	before := len(rf.History())
	if _, err := rf.SyncIf(context.Background(), Manual, func() error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("SyncIf with a refusal = %v", err)
	}
	if len(rf.History()) != before {
		t.Fatal("a refused trigger created a run")
	}
}

// TestCloseAbandonsAWaitingRun: a run waiting for its window fails with
// ErrClosed when the manager closes.
func TestCloseAbandonsAWaitingRun(t *testing.T) {
	m, rf, clk, rs := newDebounced(t, 2*time.Second, 10*time.Second)
	id := rf.TriggerDebounced(Webhook)
	<-clk.Armed
	m.Close()
	res, err := rf.Wait(context.Background(), id)
	if err != nil || res.State != Failed || !errors.Is(res.Err, ErrClosed) {
		t.Fatalf("waiting run after Close = %+v %v", res, err)
	}
	if n := rs.n.Load(); n != 0 {
		t.Fatalf("%d refreshes", n)
	}
}

// TestStopFailsAWaitingRun: removing the repository fails the run that
// waits for its window (ErrRemoved); its timer starts nothing later, and
// pushes after it queue nothing.
func TestStopFailsAWaitingRun(t *testing.T) {
	_, rf, clk, rs := newDebounced(t, 2*time.Second, 10*time.Second)
	id := rf.TriggerDebounced(Webhook)
	<-clk.Armed
	if err := rf.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := rf.Wait(context.Background(), id)
	if err != nil || res.State != Failed || !errors.Is(res.Err, ErrRemoved) {
		t.Fatalf("waiting run after Stop = %+v %v", res, err)
	}
	clk.Advance(time.Minute)
	if got := rf.TriggerDebounced(Webhook); got != "" {
		t.Fatalf("a push after Stop queued run %q", got)
	}
	if n := rs.n.Load(); n != 0 {
		t.Fatalf("%d refreshes", n)
	}
}
