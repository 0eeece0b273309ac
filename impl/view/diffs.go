package view

import (
	"container/list"
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// DefaultDiffCacheBytes is what Diffs keeps of finished patches by
// default: eight patches of the largest size (DefaultDiffPatchBytes).
const DefaultDiffCacheBytes = 64 << 20

// cacheEntryOverhead is what an entry costs besides its patch bytes.
const cacheEntryOverhead = 256

// DiffHooks observe the computations of Diffs (tests synchronise on
// them). Each may be nil.
type DiffHooks struct {
	// Joined is called when a request started or joined the
	// computation of a patch, with the number of requests now waiting
	// for it.
	Joined func(base, tip plumbing.Hash, waiters int)
	// Started runs in the computation's goroutine, with its context,
	// once it holds a slot and before it reads anything.
	Started func(ctx context.Context, base, tip plumbing.Hash)
	// Done is called last in the computation's goroutine, with its error
	// (nil: the patch was computed and cached).
	Done func(base, tip plumbing.Hash, err error)
}

// Diffs computes patches (Diff) and shares them. A patch is computed once
// per repository and commit pair at a time: concurrent requests for it
// wait for the one computation, which runs under its own context,
// cancelled when the last request waiting for it is gone (a patch nobody
// waits for is not worth finishing). A patch computed is kept (a commit
// pair pins its content) in a cache bounded by bytes, the least recently
// used dropped first; failures are not kept. At most GOMAXPROCS
// computations run at once; the others wait for a slot, cancellably.
//
// It is safe for concurrent use.
type Diffs struct {
	limits DiffLimits
	hooks  DiffHooks
	slots  chan struct{}

	mu       sync.Mutex
	flights  map[diffKey]*flight
	entries  map[diffKey]*list.Element // of *cachedPatch
	lru      list.List                 // front: most recently used
	bytes    int64
	maxBytes int64
}

type diffKey struct {
	repo      string
	base, tip plumbing.Hash
}

// flight is one computation and the requests waiting for it.
type flight struct {
	done    chan struct{} // closed when patch and err are set
	waiters int           // under Diffs.mu
	cancel  context.CancelFunc
	patch   []byte
	err     error
}

type cachedPatch struct {
	key   diffKey
	patch []byte
}

// NewDiffs returns a Diffs computing patches within limits (zero fields:
// the defaults) and keeping up to cacheBytes of them (0: the default).
func NewDiffs(limits DiffLimits, cacheBytes int64, hooks DiffHooks) *Diffs {
	if cacheBytes <= 0 {
		cacheBytes = DefaultDiffCacheBytes
	}
	return &Diffs{
		limits:   limits.withDefaults(),
		hooks:    hooks,
		slots:    make(chan struct{}, runtime.GOMAXPROCS(0)),
		flights:  map[diffKey]*flight{},
		entries:  map[diffKey]*list.Element{},
		maxBytes: cacheBytes,
	}
}

// Get returns the patch from base to tip of repository id, whose objects
// repo reads: from the cache, from a computation under way, or from a new
// one. When ctx is done first it returns ctx's error, and the computation
// stops if no other request waits for it. The patch is shared: callers
// must not change it.
func (d *Diffs) Get(ctx context.Context, id string, repo Repo, base, tip plumbing.Hash) ([]byte, error) {
	key := diffKey{id, base, tip}
	d.mu.Lock()
	if e, ok := d.entries[key]; ok {
		d.lru.MoveToFront(e)
		d.mu.Unlock()
		return e.Value.(*cachedPatch).patch, nil
	}
	f, ok := d.flights[key]
	if !ok {
		// The computation keeps the request's values (its id for the
		// logs) but not its cancellation: it stops when its last
		// waiter is gone, whichever that is.
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		d.flights[key] = f
		go d.compute(fctx, key, f, repo)
	}
	f.waiters++
	waiters := f.waiters
	d.mu.Unlock()
	if d.hooks.Joined != nil {
		d.hooks.Joined(base, tip, waiters)
	}
	select {
	case <-f.done:
		return f.patch, f.err
	case <-ctx.Done():
		d.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
			if d.flights[key] == f {
				delete(d.flights, key)
			}
		}
		d.mu.Unlock()
		return nil, ctx.Err()
	}
}

// compute runs one flight: it waits for a slot, computes the patch,
// caches it when it succeeded, and hands it to the waiters.
func (d *Diffs) compute(ctx context.Context, key diffKey, f *flight, repo Repo) {
	defer f.cancel()
	var patch []byte
	var err error
	select {
	case d.slots <- struct{}{}:
		patch, err = d.run(ctx, key, repo)
		<-d.slots
	case <-ctx.Done():
		err = ctx.Err()
	}
	d.mu.Lock()
	if d.flights[key] == f {
		delete(d.flights, key)
	}
	if err == nil {
		d.store(key, patch)
	}
	f.patch, f.err = patch, err
	close(f.done)
	d.mu.Unlock()
	if d.hooks.Done != nil {
		d.hooks.Done(key.base, key.tip, err)
	}
}

// run computes a patch; a panic (a bug met by some input) fails it
// instead of the process.
func (d *Diffs) run(ctx context.Context, key diffKey, repo Repo) (patch []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			patch, err = nil, fmt.Errorf("view: diff %s..%s panicked: %v", key.base, key.tip, r)
		}
	}()
	if d.hooks.Started != nil {
		d.hooks.Started(ctx, key.base, key.tip)
	}
	return Diff(ctx, repo, key.base, key.tip, d.limits)
}

// store caches a patch (d.mu held), dropping the least recently used
// ones to stay within the byte bound.
func (d *Diffs) store(key diffKey, patch []byte) {
	size := int64(len(patch)) + cacheEntryOverhead
	if size > d.maxBytes {
		return
	}
	if _, ok := d.entries[key]; ok {
		return
	}
	for d.bytes+size > d.maxBytes {
		e := d.lru.Back()
		c := e.Value.(*cachedPatch)
		d.lru.Remove(e)
		delete(d.entries, c.key)
		d.bytes -= int64(len(c.patch)) + cacheEntryOverhead
	}
	d.entries[key] = d.lru.PushFront(&cachedPatch{key, patch})
	d.bytes += size
}

// CachedBytes is what the cache holds, entry overhead included.
func (d *Diffs) CachedBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bytes
}
