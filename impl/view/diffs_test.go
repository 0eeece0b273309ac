package view_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// deadline is how long a test waits for something that takes
// milliseconds: a generous bound, not a measurement.
const deadline = 30 * time.Second

// chainRepo is a repository with n+1 commits on main, each changing
// f.txt; it returns them oldest first.
func chainRepo(t *testing.T, n int) (view.Repo, []plumbing.Hash) {
	r := gittest.New(t)
	var commits []plumbing.Hash
	for i := range n + 1 {
		commits = append(commits, plumbing.NewHash(r.Commit(fmt.Sprint(i), map[string]string{"f.txt": fmt.Sprintf("version %d\n%s", i, numbered(50, "line "))})))
	}
	return openRepo(t, r.Dir), commits
}

// observer records what DiffHooks report, and can hold computations.
type observer struct {
	hold    chan struct{} // Started waits for it to close (nil: no wait)
	joined  chan int
	started chan context.Context
	done    chan error
	starts  atomic.Int32
	joins   atomic.Int32
}

func newObserver(hold bool) *observer {
	o := &observer{joined: make(chan int, 100), started: make(chan context.Context, 100), done: make(chan error, 100)}
	if hold {
		o.hold = make(chan struct{})
	}
	return o
}

func (o *observer) hooks() view.DiffHooks {
	return view.DiffHooks{
		Joined: func(_, _ plumbing.Hash, n int) {
			o.joins.Add(1)
			o.joined <- n
		},
		Started: func(ctx context.Context, _, _ plumbing.Hash) {
			o.starts.Add(1)
			o.started <- ctx
			if o.hold != nil {
				select {
				case <-o.hold:
				case <-ctx.Done():
				}
			}
		},
		Done: func(_, _ plumbing.Hash, err error) { o.done <- err },
	}
}

func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(deadline):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// joinedUntil waits until a request reports n waiters.
func (o *observer) joinedUntil(t *testing.T, n int) {
	t.Helper()
	for await(t, o.joined, fmt.Sprintf("%d waiters", n)) != n {
	}
}

type result struct {
	patch []byte
	err   error
}

func get(d *view.Diffs, ctx context.Context, repo view.Repo, base, tip plumbing.Hash) <-chan result {
	ch := make(chan result, 1)
	go func() {
		p, err := d.Get(ctx, "r", repo, base, tip)
		ch <- result{p, err}
	}()
	return ch
}

// TestDiffsShareOneComputation: two concurrent requests for a patch get
// it from one computation, and a later request from the cache.
func TestDiffsShareOneComputation(t *testing.T) {
	repo, c := chainRepo(t, 1)
	o := newObserver(true)
	d := view.NewDiffs(view.DiffLimits{}, 0, o.hooks())
	first := get(d, context.Background(), repo, c[0], c[1])
	second := get(d, context.Background(), repo, c[0], c[1])
	o.joinedUntil(t, 2)
	close(o.hold)
	a, b := await(t, first, "the first answer"), await(t, second, "the second answer")
	if a.err != nil || b.err != nil || len(a.patch) == 0 || !bytes.Equal(a.patch, b.patch) {
		t.Fatalf("answers: %v %v, %q %q", a.err, b.err, a.patch, b.patch)
	}
	if err := await(t, o.done, "the computation"); err != nil {
		t.Fatal(err)
	}
	p, err := d.Get(context.Background(), "r", repo, c[0], c[1])
	if err != nil || !bytes.Equal(p, a.patch) {
		t.Fatalf("cached answer: %v %q", err, p)
	}
	if n := o.starts.Load(); n != 1 {
		t.Errorf("%d computations, want 1", n)
	}
	if n := o.joins.Load(); n != 2 {
		t.Errorf("%d requests joined a computation, want 2 (the third is answered from the cache)", n)
	}
}

// TestDiffsCancelledWhenNobodyWaits: the computation's context is
// cancelled when the last of its two requests is gone, not before, and
// the computation returns; the next request computes afresh.
func TestDiffsCancelledWhenNobodyWaits(t *testing.T) {
	repo, c := chainRepo(t, 1)
	o := newObserver(true)
	d := view.NewDiffs(view.DiffLimits{}, 0, o.hooks())
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	first, second := get(d, ctx1, repo, c[0], c[1]), get(d, ctx2, repo, c[0], c[1])
	o.joinedUntil(t, 2)
	fctx := await(t, o.started, "the computation to start")

	cancel1()
	if r := await(t, first, "the first request"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("first request: %v", r.err)
	}
	if fctx.Err() != nil {
		t.Fatal("the computation was cancelled while a request still waits for it")
	}
	cancel2()
	if r := await(t, second, "the second request"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("second request: %v", r.err)
	}
	if fctx.Err() == nil {
		t.Fatal("the last request is gone, the computation's context is not cancelled")
	}
	if err := await(t, o.done, "the computation to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("the computation returned %v, want context.Canceled", err)
	}

	close(o.hold)
	p, err := d.Get(context.Background(), "r", repo, c[0], c[1])
	if err != nil || len(p) == 0 {
		t.Fatalf("after a cancelled computation: %v %q", err, p)
	}
	if n := o.starts.Load(); n != 2 {
		t.Errorf("%d computations, want 2", n)
	}
}

// TestDiffsFinishForTheRemainingWaiter: one of two requests leaves; the
// other gets the patch, which is cached.
func TestDiffsFinishForTheRemainingWaiter(t *testing.T) {
	repo, c := chainRepo(t, 1)
	o := newObserver(true)
	d := view.NewDiffs(view.DiffLimits{}, 0, o.hooks())
	ctx1, cancel1 := context.WithCancel(context.Background())
	first, second := get(d, ctx1, repo, c[0], c[1]), get(d, context.Background(), repo, c[0], c[1])
	o.joinedUntil(t, 2)
	await(t, o.started, "the computation to start")
	cancel1()
	if r := await(t, first, "the first request"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("first request: %v", r.err)
	}
	close(o.hold)
	r := await(t, second, "the second request")
	if r.err != nil || len(r.patch) == 0 {
		t.Fatalf("second request: %v %q", r.err, r.patch)
	}
	if err := await(t, o.done, "the computation"); err != nil {
		t.Fatal(err)
	}
	if p, err := d.Get(context.Background(), "r", repo, c[0], c[1]); err != nil || !bytes.Equal(p, r.patch) || o.starts.Load() != 1 {
		t.Fatalf("not cached: %v, %d computations", err, o.starts.Load())
	}
}

// TestDiffsCacheBoundedByBytes: the cache drops the least recently used
// patch to stay within its bytes; failures are not cached.
func TestDiffsCacheBoundedByBytes(t *testing.T) {
	repo, c := chainRepo(t, 3)
	o := newObserver(false)
	one, err := view.Diff(context.Background(), repo, c[0], c[1], view.DiffLimits{})
	if err != nil {
		t.Fatal(err)
	}
	// Room for two patches of this size (they all are), not three.
	limit := int64(2*(len(one)+256) + 100)
	d := view.NewDiffs(view.DiffLimits{}, limit, o.hooks())
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {0, 1}, {0, 3}, {0, 1}, {0, 2}} {
		if _, err := d.Get(context.Background(), "r", repo, c[pair[0]], c[pair[1]]); err != nil {
			t.Fatal(err)
		}
		if got := d.CachedBytes(); got > limit {
			t.Fatalf("the cache holds %d bytes, limit %d", got, limit)
		}
	}
	// 0..1 computed, 0..2 computed, 0..1 cached, 0..3 computed (drops
	// 0..2, the least recently used), 0..1 cached, 0..2 computed again.
	if n := o.starts.Load(); n != 4 {
		t.Errorf("%d computations, want 4", n)
	}

	missing := plumbing.NewHash("1111111111111111111111111111111111111111")
	for range 2 {
		if _, err := d.Get(context.Background(), "r", repo, missing, c[1]); !errors.Is(err, plumbing.ErrObjectNotFound) {
			t.Fatalf("missing base: %v", err)
		}
	}
	if n := o.starts.Load(); n != 6 {
		t.Errorf("a failure was cached: %d computations, want 6", n)
	}
}

// TestDiffsRunAtMostGOMAXPROCS: with every slot held, one more
// computation waits for a slot; its request leaving cancels it before it
// starts.
func TestDiffsRunAtMostGOMAXPROCS(t *testing.T) {
	slots := runtime.GOMAXPROCS(0)
	repo, c := chainRepo(t, slots+1)
	o := newObserver(true)
	d := view.NewDiffs(view.DiffLimits{}, 0, o.hooks())
	var wg sync.WaitGroup
	for i := 1; i <= slots; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.Get(context.Background(), "r", repo, c[0], c[i])
		}()
		await(t, o.started, "a computation to start")
	}
	ctx, cancel := context.WithCancel(context.Background())
	extra := get(d, ctx, repo, c[0], c[slots+1])
	o.joinedUntil(t, 1)
	cancel()
	if r := await(t, extra, "the extra request"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("extra request: %v", r.err)
	}
	if err := await(t, o.done, "the extra computation to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("the extra computation returned %v", err)
	}
	if n := o.starts.Load(); n != int32(slots) {
		t.Errorf("%d computations started, want %d", n, slots)
	}
	close(o.hold)
	wg.Wait()
}
