package watch

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// TestWatchLinkedWorktree watches a linked worktree (its HEAD in
// .git/worktrees/<name>, its refs in the common dir) and expects one
// trigger per change: a commit, a new branch with a slash (a new
// directory), a checkout, and packed refs.
func TestWatchLinkedWorktree(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	wtDir := filepath.Join(t.TempDir(), "linked")
	r.Git("worktree", "add", "-q", "-b", "feature", wtDir)
	linked := r.Sibling(wtDir)
	wt, err := gitrepo.Discover(wtDir)
	if err != nil {
		t.Fatal(err)
	}
	if wt.RefDirs().Head == wt.RefDirs().Common {
		t.Fatal("a linked worktree should have its own git dir")
	}
	fired := make(chan struct{}, 16)
	w, err := New(wt.RefDirs().Head, wt.RefDirs().Common, Options{Debounce: 20 * time.Millisecond, Trigger: func() { fired <- struct{}{} }, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	wait := func(what string) {
		t.Helper()
		select {
		case <-fired:
		case <-time.After(30 * time.Second): // failure guard
			t.Fatalf("no trigger after %s", what)
		}
	}
	for _, step := range []struct {
		what string
		do   func()
	}{
		{"a commit in the linked worktree", func() { linked.Commit("work", map[string]string{"f": "1\n"}) }},
		{"a branch with a slash", func() { r.Git("branch", "team/new", "main") }},
		{"a commit on the slashed branch", func() { r.Git("update-ref", "refs/heads/team/new", linked.Rev("feature")) }},
		{"a checkout in the linked worktree", func() { linked.Git("checkout", "-q", "team/new") }},
		{"stackit metadata", func() { r.BlobRef("refs/stackit/metadata/team/new", `{"parentBranchName":"main"}`) }},
		{"packing refs", func() { r.Git("pack-refs", "--all") }},
	} {
		step.do()
		wait(step.what)
		// Drain a second trigger of the same burst, if the debounce split it.
		select {
		case <-fired:
		default:
		}
	}
}

func TestRelevant(t *testing.T) {
	w := &Watcher{gitDir: "/r/.git/worktrees/x", commonDir: "/r/.git"}
	cases := map[string]bool{
		"/r/.git/worktrees/x/HEAD":        true,
		"/r/.git/worktrees/x/index":       false,
		"/r/.git/HEAD":                    false, // the main worktree's HEAD is not ours
		"/r/.git/packed-refs":             true,
		"/r/.git/packed-refs.lock":        false,
		"/r/.git/refs/heads/a/b":          true,
		"/r/.git/refs/heads/a.lock":       false,
		"/r/.git/refs/stackit/metadata/a": true,
		"/r/.git/refs/branch-metadata/a":  true,
		"/r/.git/refs/remotes/origin/a":   false,
		"/r/.git/refs/tags/v1":            false,
		"/r/.git/index":                   false,
		"/r/.git/FETCH_HEAD":              false,
	}
	for p, want := range cases {
		if got := w.relevant(p); got != want {
			t.Errorf("relevant(%s) = %v, want %v", p, got, want)
		}
	}
}

// timer is one timer made by a fakeAfter.
type timer struct {
	d  time.Duration
	ch chan time.Time
}

// fakeAfter hands every timer it makes to the test, in order.
func fakeAfter(timers chan<- timer) func(time.Duration) <-chan time.Time {
	return func(d time.Duration) <-chan time.Time {
		ch := make(chan time.Time, 1)
		timers <- timer{d, ch}
		return ch
	}
}

// loopWatcher runs the event loop of a Watcher over channels the test
// feeds, with timers the test fires. A send on events or errs returns once
// the loop has taken it; the loop handles it before its next receive.
func loopWatcher(t *testing.T, gitDir string) (events chan fsnotify.Event, errs chan error, timers chan timer, fired chan struct{}) {
	t.Helper()
	events, errs = make(chan fsnotify.Event), make(chan error)
	timers, fired = make(chan timer, 100), make(chan struct{}, 100)
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	w := &Watcher{gitDir: gitDir, commonDir: gitDir, fw: fw, o: Options{
		Debounce: time.Second, MaxWait: 5 * time.Second,
		Trigger: func() { fired <- struct{}{} }, Log: slog.New(slog.DiscardHandler), After: fakeAfter(timers),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.loop(ctx, events, errs); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return events, errs, timers, fired
}

func noTrigger(t *testing.T, fired chan struct{}) {
	t.Helper()
	select {
	case <-fired:
		t.Fatal("unexpected trigger")
	default:
	}
}

// settle makes sure the loop has finished handling what was sent before: it
// takes a second send only after returning to its select.
func settle(events chan fsnotify.Event) {
	events <- fsnotify.Event{Name: "/irrelevant", Op: fsnotify.Write}
}

// TestDebounceAndMaxWait: a burst triggers once after its quiet period; a
// steady stream of changes triggers at the maximum wait; stale timers of a
// burst that ended do nothing.
func TestDebounceAndMaxWait(t *testing.T) {
	const gitDir = "/r/.git"
	head := fsnotify.Event{Name: gitDir + "/refs/heads/main", Op: fsnotify.Write}
	events, _, timers, fired := loopWatcher(t, gitDir)

	// A burst: quiet timer per change, one deadline.
	events <- head
	q1, dl := <-timers, <-timers
	if q1.d != time.Second || dl.d != 5*time.Second {
		t.Fatalf("timers %s and %s", q1.d, dl.d)
	}
	events <- head
	q2 := <-timers
	q1.ch <- time.Time{} // stale: the second change moved the quiet period
	settle(events)
	noTrigger(t, fired)
	q2.ch <- time.Time{}
	<-fired

	// A steady stream: each change re-arms the quiet timer, none fires; the
	// deadline does.
	events <- head
	<-timers
	dl = <-timers
	for range 20 {
		events <- head
		<-timers
	}
	noTrigger(t, fired)
	dl.ch <- time.Time{}
	<-fired
	settle(events)
	noTrigger(t, fired)

	// Irrelevant paths arm nothing.
	events <- fsnotify.Event{Name: gitDir + "/index", Op: fsnotify.Write}
	settle(events)
	select {
	case tm := <-timers:
		t.Fatalf("an irrelevant change armed a %s timer", tm.d)
	default:
	}
}

// TestOverflowTriggersAReread: a queue overflow is a change (events were
// lost), other errors are only logged.
func TestOverflowTriggersAReread(t *testing.T) {
	events, errs, timers, fired := loopWatcher(t, t.TempDir())
	errs <- errors.New("some other error")
	settle(events)
	select {
	case tm := <-timers:
		t.Fatalf("an error armed a %s timer", tm.d)
	default:
	}
	errs <- fsnotify.ErrEventOverflow
	q := <-timers
	<-timers // the deadline
	q.ch <- time.Time{}
	<-fired
}

// TestChangesBeforeRunAreNotLost: a change made after New and before Run
// (the window between the first read of the repository and the watcher's
// start) triggers once Run starts.
func TestChangesBeforeRunAreNotLost(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	wt, err := gitrepo.Discover(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	fired := make(chan struct{}, 16)
	w, err := New(wt.RefDirs().Head, wt.RefDirs().Common, Options{Debounce: 20 * time.Millisecond, Trigger: func() { fired <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	r.Git("branch", "made-before-run")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-fired:
	case <-time.After(30 * time.Second): // failure guard
		t.Fatal("a change made before Run was lost")
	}
}

// TestCloseWithoutRun frees the watches of a watcher that never ran.
func TestCloseWithoutRun(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	wt, err := gitrepo.Discover(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(wt.RefDirs().Head, wt.RefDirs().Common, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
