package refresh

import (
	"context"
	"sync"
	"time"

	"github.com/stackd/stackd/impl/store"
)

// endBatchDelay is how long the end of a no-op interval run may wait in
// memory before it is stored, with the others that ended meanwhile, in one
// transaction; endBatchMax ends the wait early.
const (
	endBatchDelay = 5 * time.Second
	endBatchMax   = 512
)

// endBatch stores the ends of no-op interval runs of unshared
// repositories together (see Refresher.deferEnd): with many mirrors, they
// are most runs, and one transaction each was most of their cost. Until a
// run's end is stored, the run stays unstored, and the history shows it
// from memory (Refresher.Page). A crash loses the ends still waiting (at
// most endBatchDelay of them): such a run is missing from the history.
type endBatch struct {
	st    store.SyncStore
	keep  int
	delay time.Duration // endBatchDelay (tests wait for an explicit flush)
	log   func(msg string, args ...any)

	// flushMu is held by a flush from taking the pending ends until they
	// are stored and marked so, and by drop: a dropped repository's ends
	// are never written after drop returned.
	flushMu sync.Mutex
	mu      sync.Mutex
	pending []pendingEnd
	timer   *time.Timer // armed while pending is not empty
}

type pendingEnd struct {
	r   *Refresher
	ru  *run
	rec store.Sync
}

// add queues the end of ru. The caller holds r.mu (lock order: flushMu,
// then a Refresher's mu, then mu).
func (b *endBatch) add(r *Refresher, ru *run, rec store.Sync) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, pendingEnd{r: r, ru: ru, rec: rec})
	switch {
	case len(b.pending) >= endBatchMax:
		go b.flush()
	case b.timer == nil:
		b.timer = time.AfterFunc(b.delay, b.flush)
	}
}

// flush stores the pending ends in one transaction, and marks their runs
// stored. On failure each is stored on its own (a failure then is logged:
// that run is missing from the history, as after a crash).
func (b *endBatch) flush() {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	list := b.pending
	b.pending = nil
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.mu.Unlock()
	if len(list) == 0 {
		return
	}
	ctx := context.Background()
	recs := make([]store.Sync, len(list))
	for i, p := range list {
		recs[i] = p.rec
	}
	if err := b.st.PutSyncs(ctx, recs, b.keep); err != nil {
		for _, p := range list {
			if err := b.st.PutSync(ctx, p.rec, b.keep); err != nil {
				b.log("sync not stored", "repo", p.rec.RepoID, "sync", p.rec.ID, "state", p.rec.State, "err", err)
			}
		}
	}
	for _, p := range list {
		p.r.mu.Lock()
		p.ru.unstored = false
		p.r.mu.Unlock()
	}
}

// drop forgets the pending ends of r (a removed repository: its history
// is deleted after its Refresher stopped, and must not come back). A flush
// in progress ends first.
func (b *endBatch) drop(r *Refresher) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.pending[:0]
	for _, p := range b.pending {
		if p.r != r {
			kept = append(kept, p)
		}
	}
	clear(b.pending[len(kept):])
	b.pending = kept
}
