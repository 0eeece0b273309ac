package refresh

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/refresh/refreshtest"
	"github.com/stackd/stackd/impl/registry"
)

// schedFixture is a manager over n local repositories (one working
// repository, described n times), a fake clock, and a scheduler timed by
// that clock. Each run reports its repository on started and waits while
// hold is set; fail makes the runs fail.
type schedFixture struct {
	m       *Manager
	clk     *refreshtest.Clock
	sched   *Scheduler
	rfs     []*Refresher
	started chan string
	release chan struct{} // one receive per held run
	hold    atomic.Bool
	fail    atomic.Bool
	// inFlight and maxInFlight count the runs between their start and end.
	inFlight, maxInFlight atomic.Int64
}

var errUpstreamDown = errors.New("upstream down")

func newSchedFixture(t *testing.T, n int, s Schedule, workers int) *schedFixture {
	t.Helper()
	g := gittest.New(t)
	g.Commit("initial", map[string]string{"README": "x\n"})
	wt, err := gitrepo.Discover(g.Dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &schedFixture{clk: refreshtest.NewClock(), started: make(chan string, 1000), release: make(chan struct{})}
	f.m = NewManager(Options{Workers: 64, Now: f.clk.Now, BeforeRefresh: func(ctx context.Context, id string, _ Mode) error {
		n := f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		for {
			m := f.maxInFlight.Load()
			if n <= m || f.maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		f.started <- id
		if f.hold.Load() {
			select {
			case <-f.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if f.fail.Load() {
			return errUpstreamDown
		}
		return nil
	}})
	t.Cleanup(f.m.Close)
	for i := range n {
		f.rfs = append(f.rfs, f.m.Add(registry.NewLocal(fmt.Sprintf("repo-%03d", i), wt, "", "", "")))
	}
	s.After = f.clk.After
	if s.Tick == 0 {
		s.Tick = -1 // exact due times (TestSchedulerGroupsRunsByTick has ticks)
	}
	f.sched = f.m.NewScheduler(SchedulerOptions{Schedule: s, Workers: workers})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.sched.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// armed waits until the scheduler armed its timer for d from now.
func (f *schedFixture) armed(t *testing.T, d time.Duration) {
	t.Helper()
	for got := range f.clk.Armed {
		if got == d {
			return
		}
	}
}

func (f *schedFixture) next(t *testing.T, rf *Refresher) time.Duration {
	t.Helper()
	at := rf.Status().NextScheduledAt
	if at == nil {
		t.Fatalf("%s: no next scheduled run", rf.repo.ID)
	}
	return at.Sub(f.clk.Now())
}

func fixedRand(v float64) func() float64 { return func() float64 { return v } }

// TestSchedulerReschedules: after each interval run the repository is due
// again Schedule.Delay after the run's end: jitter within ±10%, doubled
// per consecutive failure, capped by MaxBackoff; NextScheduledAt says so.
func TestSchedulerReschedules(t *testing.T) {
	const iv = 10 * time.Minute
	cases := []struct {
		name  string
		s     Schedule
		fail  bool
		after []time.Duration // the delay after the 1st, 2nd, ... run
	}{
		{"low jitter", Schedule{Interval: iv, Rand: fixedRand(0)}, false, []time.Duration{9 * time.Minute, 9 * time.Minute}},
		{"high jitter", Schedule{Interval: iv, Rand: fixedRand(1)}, false, []time.Duration{11 * time.Minute}},
		{"no jitter draw", Schedule{Interval: iv, Rand: fixedRand(0.5)}, false, []time.Duration{iv}},
		{"backoff doubles per failure", Schedule{Interval: iv, Rand: fixedRand(0.5)}, true, []time.Duration{20 * time.Minute, 40 * time.Minute, 60 * time.Minute, 60 * time.Minute}},
		{"backoff capped", Schedule{Interval: iv, MaxBackoff: 25 * time.Minute, Rand: fixedRand(0.5)}, true, []time.Duration{20 * time.Minute, 25 * time.Minute}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newSchedFixture(t, 1, tc.s, 1)
			f.fail.Store(tc.fail)
			rf := f.rfs[0]
			f.sched.Add(context.Background(), rf)
			first := InitialOffset(rf.repo.ID, iv)
			f.armed(t, first)
			if got := f.next(t, rf); got != first {
				t.Fatalf("first due in %s, want the hashed offset %s", got, first)
			}
			wait := first
			for i, want := range tc.after {
				f.clk.Advance(wait)
				<-f.started
				f.armed(t, want)
				if got := f.next(t, rf); got != want {
					t.Fatalf("after run %d: next due in %s, want %s", i+1, got, want)
				}
				if st := rf.Status(); tc.fail != (st.ConsecutiveFailures == i+1) {
					t.Fatalf("after run %d: %d consecutive failures", i+1, st.ConsecutiveFailures)
				}
				wait = want
			}
		})
	}
}

// TestSchedulerGroupsRunsByTick: the timer fires on whole ticks, never
// before a due time; the repositories due within one tick all run when it
// fires, and none due in a later tick does.
func TestSchedulerGroupsRunsByTick(t *testing.T) {
	const iv, n, tick = time.Minute, 40, 15 * time.Second // four ticks per interval
	f := newSchedFixture(t, n, Schedule{Interval: iv, Rand: fixedRand(0.5), Tick: tick}, n)
	start := f.clk.Now() // a whole number of ticks (the fake clock starts on a minute)
	perTick := map[time.Duration][]string{}
	for _, rf := range f.rfs {
		off := InitialOffset(rf.repo.ID, iv)
		k := (off + tick - 1) / tick * tick // the tick its first due time falls in
		perTick[k] = append(perTick[k], rf.repo.ID)
		f.sched.Add(context.Background(), rf)
	}
	if len(perTick) < 3 {
		t.Fatalf("the due times fall in %d ticks: the test shows little", len(perTick))
	}
	at := time.Duration(0)
	for k := time.Duration(0); k <= iv; k += tick {
		want := perTick[k]
		if len(want) == 0 {
			continue
		}
		f.armed(t, k-at)
		f.clk.Advance(k - at - 1) // just before the tick: nothing runs
		select {
		case id := <-f.started:
			t.Fatalf("%s ran before its tick %s", id, k)
		default:
		}
		f.clk.Advance(1)
		at = k
		var got []string
		for range want {
			got = append(got, <-f.started)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("tick %s ran %v, want %v", k, got, want)
		}
	}
	if got := len(f.started); got != 0 {
		t.Fatalf("%d more runs started", got)
	}
	if now := f.clk.Now(); now.Sub(start)%tick != 0 {
		t.Fatalf("the timer fired off a tick: %s", now.Sub(start))
	}
}

// TestSchedulerNeverOverlapsARepositorysRuns: while a repository's
// interval run runs, however far the clock moves, no second one starts;
// the next is due at the first whole interval after the run's end
// counted from the due time it ran for (its phase is kept).
func TestSchedulerNeverOverlapsARepositorysRuns(t *testing.T) {
	const iv = time.Minute
	f := newSchedFixture(t, 1, Schedule{Interval: iv, Rand: fixedRand(0.5)}, 4)
	rf := f.rfs[0]
	f.hold.Store(true)
	f.sched.Add(context.Background(), rf)
	first := InitialOffset(rf.repo.ID, iv)
	f.armed(t, first)
	f.clk.Advance(first)
	<-f.started
	for range 10 {
		if n := f.clk.Advance(iv); n != 0 {
			t.Fatalf("%d timers fired while the run ran", n)
		}
	}
	f.clk.Advance(iv / 4) // the run ends a quarter into its 11th interval
	f.release <- struct{}{}
	want := iv - iv/4
	f.armed(t, want)
	if got := len(f.started); got != 0 {
		t.Fatalf("%d runs started while one ran", got)
	}
	if got := f.next(t, rf); got != want {
		t.Fatalf("next due in %s after the run's end, want %s (11 intervals after the due time it ran for)", got, want)
	}
}

// TestSchedulerBoundsRunsInFlight: with every repository due at once, at
// most Workers interval runs are in flight; the others wait for a slot,
// and every one runs.
func TestSchedulerBoundsRunsInFlight(t *testing.T) {
	const iv, n, workers = time.Minute, 12, 3
	f := newSchedFixture(t, n, Schedule{Interval: iv, Rand: fixedRand(0.5)}, workers)
	f.hold.Store(true)
	for _, rf := range f.rfs {
		f.sched.Add(context.Background(), rf)
	}
	f.clk.Advance(iv) // every initial offset is below the interval
	seen := map[string]bool{}
	for range n {
		seen[<-f.started] = true
		f.release <- struct{}{}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct repositories ran, want %d", len(seen), n)
	}
	if got := f.maxInFlight.Load(); got > workers {
		t.Fatalf("%d interval runs in flight at once, want at most %d", got, workers)
	}
}

// TestSchedulerAddRemove: repositories join and leave at run time; a
// removed one is not run and has no next scheduled run, the others are.
// Adding one twice schedules it once.
func TestSchedulerAddRemove(t *testing.T) {
	const iv = time.Minute
	f := newSchedFixture(t, 3, Schedule{Interval: iv, Rand: fixedRand(0.5)}, 4)
	for _, rf := range f.rfs {
		f.sched.Add(context.Background(), rf)
	}
	f.sched.Add(context.Background(), f.rfs[0])
	if got := f.sched.Len(); got != 3 {
		t.Fatalf("%d scheduled, want 3", got)
	}
	removed := f.rfs[1]
	f.sched.Remove(removed.repo.ID)
	if got := f.sched.Len(); got != 2 {
		t.Fatalf("%d scheduled after a removal, want 2", got)
	}
	if removed.Status().NextScheduledAt != nil {
		t.Fatal("a removed repository still has a next scheduled run")
	}
	f.clk.Advance(iv)
	ran := map[string]bool{<-f.started: true, <-f.started: true}
	if ran[removed.repo.ID] || !ran[f.rfs[0].repo.ID] || !ran[f.rfs[2].repo.ID] {
		t.Fatalf("ran %v: want the two scheduled repositories only", ran)
	}
	// Both back in the heap, due an interval after their first due
	// times: the next timer is armed for the earlier, and the removed
	// one never ran.
	f.armed(t, min(InitialOffset(f.rfs[0].repo.ID, iv), InitialOffset(f.rfs[2].repo.ID, iv)))
	if got := len(f.started); got != 0 {
		t.Fatalf("%d more runs", got)
	}
}

// TestInitialDueTimesAreSpread: the first due times of many repositories
// spread over the first interval (ten slices of it each hold 10% of them,
// ±50%), not bunched at start-up.
func TestInitialDueTimesAreSpread(t *testing.T) {
	const iv, n, slices = 5 * time.Minute, 2000, 10
	var count [slices]int
	for i := range n {
		off := InitialOffset(fmt.Sprintf("acme/repo-%d", i), iv)
		if off < 0 || off >= iv {
			t.Fatalf("offset %s out of [0, %s)", off, iv)
		}
		count[off*slices/iv]++
	}
	for i, c := range count {
		if c < n/slices/2 || c > n/slices*3/2 {
			t.Fatalf("slice %d of the interval holds %d of %d first runs: %v", i, c, n, count)
		}
	}
	if InitialOffset("Acme/X", iv) != InitialOffset("acme/x", iv) {
		t.Fatal("the offset depends on the id's case")
	}
}

// TestSchedulerIsOneGoroutine: scheduling hundreds of repositories adds
// no goroutine (the heap's one goroutine and timer serve them all).
func TestSchedulerIsOneGoroutine(t *testing.T) {
	f := newSchedFixture(t, 300, Schedule{Interval: time.Hour}, 4)
	f.sched.Add(context.Background(), f.rfs[0])
	f.armed(t, InitialOffset(f.rfs[0].repo.ID, time.Hour))
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for _, rf := range f.rfs[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); f.sched.Add(context.Background(), rf) }()
	}
	wg.Wait()
	if got := f.sched.Len(); got != 300 {
		t.Fatalf("%d scheduled, want 300", got)
	}
	// The callers' goroutines end after their wg.Done: wait for them
	// to go (a scheduler that started one per repository keeps 300).
	deadline := time.Now().Add(10 * time.Second)
	after := runtime.NumGoroutine()
	for after > before+2 && time.Now().Before(deadline) {
		runtime.Gosched()
		after = runtime.NumGoroutine()
	}
	if after > before+2 {
		t.Fatalf("%d goroutines for 300 scheduled repositories, %d for one", after, before)
	}
}

// TestSchedulerKeepsPhasesOfRunsThatEndTogether: a thousand repositories
// whose interval runs all started late and ended at the same instant
// (after a start-up three and a half intervals long) are next due at
// their hashed phases, a whole number of intervals after the due times
// they ran for, not an interval after that one instant: the busiest
// tenth of the next interval holds at most 20% of them. (Timed from the
// runs' end, ±10% jitter would put them all in two tenths.)
func TestSchedulerKeepsPhasesOfRunsThatEndTogether(t *testing.T) {
	const iv, n, tenths = 5 * time.Minute, 1000, 10
	f := newSchedFixture(t, n, Schedule{Interval: iv}, 1)
	// A scheduler of its own, not running: the test runs its due
	// repositories one by one, each through runDue (run, reschedule),
	// while the clock stands still.
	s := f.m.NewScheduler(SchedulerOptions{Schedule: Schedule{Interval: iv, After: f.clk.After}, Workers: n})
	ctx := context.Background()
	start := f.clk.Now()
	for _, rf := range f.rfs {
		s.Add(ctx, rf)
	}
	f.clk.Advance(3*iv + iv/2)
	end := f.clk.Now()
	s.mu.Lock()
	var due []*dueEntry
	for len(s.h) > 0 {
		due = append(due, heap.Pop(&s.h).(*dueEntry))
	}
	s.mu.Unlock()
	if len(due) != n {
		t.Fatalf("%d repositories due, want %d", len(due), n)
	}
	for _, e := range due {
		s.runDue(ctx, e)
		<-f.started
	}
	var count [tenths]int
	for _, rf := range f.rfs {
		at := rf.Status().NextScheduledAt
		if at == nil {
			t.Fatalf("%s: not rescheduled", rf.repo.ID)
		}
		in := at.Sub(end)
		if in <= 0 || in > iv {
			t.Fatalf("%s: next due %s after the runs' end, want within (0, %s]", rf.repo.ID, in, iv)
		}
		if phase, want := at.Sub(start)%iv, InitialOffset(rf.repo.ID, iv); phase != want {
			t.Fatalf("%s: next due at phase %s of the interval, want its hashed offset %s", rf.repo.ID, phase, want)
		}
		count[min(int(in*tenths/iv), tenths-1)]++
	}
	if busiest := slices.Max(count[:]); busiest*5 > n {
		t.Fatalf("the busiest tenth of the interval holds %d of %d next runs (over 20%%): %v", busiest, n, count)
	}
}
