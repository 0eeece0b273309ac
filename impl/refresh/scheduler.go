package refresh

import (
	"container/heap"
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/stackd/stackd/impl/store"
)

// Scheduler is the interval loop of every mirror: one goroutine and one
// timer over a min-heap of the repositories keyed by their next due time,
// however many repositories there are.
//
//   - A repository joins (Add) due at a hashed offset in [0, Interval)
//     from now, so that the first listings are spread over the interval,
//     not bunched at start-up.
//   - A due repository leaves the heap while its interval run (trigger
//     Interval, through the Refresher) runs, and comes back once the run
//     ended, due at Schedule.Next: an interval (±Jitter) after the due
//     time it ran for, or the first whole number of intervals after that
//     due time that is still ahead of the run's end (its phase is kept
//     when the run started late or ran long); after failures,
//     Schedule.Delay after the run's end (doubled per consecutive failure
//     up to MaxBackoff). So two interval runs of one repository never
//     overlap, and runs that end together are not due together.
//   - The timer fires on ticks (Schedule.Tick, a 64th of the interval
//     by default): the repositories due within one tick run together.
//   - At most Workers interval runs are in flight at once; a due
//     repository waits for a free slot.
//   - The Refresher's NextScheduledAt is its due time while it waits.
//   - A repository leaves with Remove (or when its Refresher refuses the
//     run: removed, or the manager closed).
//
// On replicas (Store set, for mirrors shared with other replicas) the
// schedule lives in the database: a repository's due time is the stored
// one, and a replica starts a due run only after it claimed it
// (store.ScheduleStore.ClaimDue moves the stored due time forward in one
// conditional statement). A replica that lost the claim reschedules to
// the due time the winner stored. N replicas thus list a remote once per
// interval between them. The claim moves the due time past the run's
// timeout; the winner stores the real next due time once its run ended.
type Scheduler struct {
	s       Schedule
	m       *Manager
	st      store.ScheduleStore
	workers int
	log     *slog.Logger

	mu    sync.Mutex
	h     dueHeap
	byID  map[string]*dueEntry
	wake  chan struct{} // the heap changed (buffered: a pending wake)
	slots chan struct{} // one per interval run in flight
}

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	// Schedule is the interval, jitter, backoff and timer.
	Schedule Schedule
	// Workers bounds the interval runs in flight. Default: the
	// manager's Workers.
	Workers int
	// Store, when set, holds the schedule of shared mirrors (replicas).
	Store store.ScheduleStore
}

type dueEntry struct {
	rf      *Refresher
	due     time.Time
	index   int  // in the heap; -1 while out of it
	removed bool // Remove came: a running entry does not come back
}

type dueHeap []*dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*dueEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// NewScheduler makes the interval scheduler of the manager's
// repositories; Run runs it. With Interval 0 it schedules nothing.
func (m *Manager) NewScheduler(o SchedulerOptions) *Scheduler {
	o.Schedule.defaults()
	if o.Workers <= 0 {
		o.Workers = m.opts.Workers
	}
	return &Scheduler{
		s: o.Schedule, m: m, st: o.Store, workers: o.Workers, log: m.opts.Logger,
		byID: map[string]*dueEntry{}, wake: make(chan struct{}, 1), slots: make(chan struct{}, o.Workers),
	}
}

// InitialOffset is where in [0, interval) a repository is first due: a
// hash of its id, the same on every replica and across restarts.
func InitialOffset(repoID string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(strings.ToLower(repoID)))
	return time.Duration(h.Sum64() % uint64(interval))
}

// Add schedules a repository's interval runs; a repository already
// scheduled stays as it is.
func (s *Scheduler) Add(ctx context.Context, rf *Refresher) {
	if s.s.Interval <= 0 {
		return
	}
	id := rf.repo.ID
	due := s.m.opts.Now().Add(InitialOffset(id, s.s.Interval)).UTC()
	if s.st != nil && rf.shared() {
		stored, err := s.st.ScheduledDue(ctx, id, due)
		if err != nil {
			// The claim decides anyway: a due time no replica stored is
			// claimed by whoever comes first.
			s.log.Warn("the stored schedule is unreadable: due at the hashed offset", "repo", id, "err", err)
		} else {
			due = stored
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[id]; ok {
		return
	}
	e := &dueEntry{rf: rf, due: due, index: -1}
	s.byID[id] = e
	s.push(e)
}

// Remove stops scheduling a repository (its running interval run, if
// any, goes on; the repository does not come back after it).
func (s *Scheduler) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	if !ok {
		return
	}
	delete(s.byID, id)
	e.removed = true
	if e.index >= 0 {
		heap.Remove(&s.h, e.index)
		s.poke()
	}
	e.rf.SetNextScheduled(nil)
}

// Len is how many repositories are scheduled (in the heap or running).
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// push puts e in the heap and records its due time. Callers hold mu.
func (s *Scheduler) push(e *dueEntry) {
	heap.Push(&s.h, e)
	at := e.due
	e.rf.SetNextScheduled(&at)
	s.poke()
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run dispatches the due repositories until ctx ends, then waits for the
// interval runs it started.
func (s *Scheduler) Run(ctx context.Context) {
	if s.s.Interval <= 0 {
		return
	}
	var (
		runs    sync.WaitGroup
		armed   <-chan time.Time
		armedAt time.Time // the tick the timer was armed for (Schedule.Tick)
		armedE  *dueEntry
	)
	defer runs.Wait()
	for {
		s.mu.Lock()
		var top *dueEntry
		if len(s.h) > 0 {
			top = s.h[0]
		}
		s.mu.Unlock()
		switch {
		case top == nil:
			armed, armedE = nil, nil
		case top != armedE || !s.s.tickAfter(top.due).Equal(armedAt):
			// A new earliest due time: one timer for the tick it falls
			// in (the one before is dropped), none when that is past.
			armedE, armedAt = top, s.s.tickAfter(top.due)
			if d := armedAt.Sub(s.m.opts.Now()); d > 0 {
				armed = s.s.After(d)
			} else {
				fired := make(chan time.Time, 1)
				fired <- armedAt
				armed = fired
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			continue
		case <-armed:
		}
		// The timer fired: everything due by the tick it was armed for
		// (or by now, whichever is later) runs, a free slot each.
		upTo := armedAt
		if now := s.m.opts.Now(); now.After(upTo) {
			upTo = now
		}
		armed, armedE = nil, nil
		for {
			s.mu.Lock()
			if len(s.h) == 0 || s.h[0].due.After(upTo) {
				s.mu.Unlock()
				break
			}
			e := heap.Pop(&s.h).(*dueEntry)
			s.mu.Unlock()
			select {
			case s.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			runs.Add(1)
			go func() {
				defer runs.Done()
				defer func() { <-s.slots }()
				s.runDue(ctx, e)
			}()
		}
	}
}

// runDue runs a due repository's interval run (once claimed, on
// replicas) and puts it back in the heap.
func (s *Scheduler) runDue(ctx context.Context, e *dueEntry) {
	id := e.rf.repo.ID
	s.mu.Lock()
	removed := e.removed // while it waited for a slot
	s.mu.Unlock()
	if removed {
		return
	}
	if s.st != nil && e.rf.shared() {
		// Claimed past the run's timeout: no other replica starts one
		// while this one may still run.
		next := s.m.opts.Now().Add(s.s.Delay(0) + s.m.opts.Timeout).UTC()
		stored, claimed, err := s.st.ClaimDue(ctx, id, e.due, next)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("an interval run could not be claimed: it waits for the next one", "repo", id, "err", err)
			s.reschedule(ctx, e, false)
			return
		case !claimed:
			s.mu.Lock()
			defer s.mu.Unlock()
			if !e.removed {
				e.due = stored
				s.push(e)
			}
			return
		}
	}
	if _, err := e.rf.Sync(ctx, Interval); err != nil {
		// The Refresher refused the run (the repository was removed, the
		// manager closed) or ctx ended: the repository leaves.
		s.mu.Lock()
		if s.byID[id] == e {
			delete(s.byID, id)
		}
		s.mu.Unlock()
		e.rf.SetNextScheduled(nil)
		if !errors.Is(err, ErrRemoved) && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
			s.log.Warn("interval run refused", "repo", id, "err", err)
		}
		return
	}
	s.reschedule(ctx, e, true)
}

// reschedule puts e back in the heap, due at Schedule.Next from the due
// time it ran for (e.due) and now, its run's end (stored on replicas when
// this replica claimed the run). Only runDue, which holds e out of the
// heap, reads e.due here unlocked.
func (s *Scheduler) reschedule(ctx context.Context, e *dueEntry, claimed bool) {
	due := s.s.Next(e.due, s.m.opts.Now(), e.rf.Status().ConsecutiveFailures).UTC()
	if claimed && s.st != nil && e.rf.shared() {
		if err := s.st.SetDue(ctx, e.rf.repo.ID, due); err != nil && ctx.Err() == nil {
			// The claim's due time stands: the run comes a timeout later.
			s.log.Warn("the next due time was not stored", "repo", e.rf.repo.ID, "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.removed {
		return
	}
	e.due = due
	s.push(e)
}
