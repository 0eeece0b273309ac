package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/stackd/stackd/impl/refs"
)

// This file holds the mirror's garbage collection: a Sync that fetched
// rewrites the object store to the objects reachable from the refs once
// the packs have grown enough since the last collection.

var (
	// gcGrowth is the growth that triggers a collection: a Sync that
	// fetched collects when the packs' total size has reached gcGrowth
	// times the size recorded after the previous collection (or the
	// clone). A variable for tests.
	gcGrowth = 1.5
	// gcMinGarbage is the share of the stored objects that must be
	// unreachable for a collection to rewrite the store; with less, it
	// only records the size. A variable for tests.
	gcMinGarbage = 0.10
)

// gcStage, when set (by tests only), is called at each stage of a
// collection: "listed" (the packs are listed, the walk is next), then,
// when it is about to write, "walked" (the reachable set is known,
// nothing written yet) and "written" (the new pack is stored and
// checked, no old pack deleted yet). An error it returns fails the
// collection there, as a failure of that stage would.
var gcStage func(stage string) error

func gcAt(stage string) error {
	if gcStage == nil {
		return nil
	}
	if err := gcStage(stage); err != nil {
		return fmt.Errorf("mirror: gc: %s: %w", stage, err)
	}
	return nil
}

const (
	gcFile   = "stackd-gc.json"
	gcFormat = 1
)

// gcRecord is the content of stackd-gc.json: the packs' total size after
// the last collection (or the clone).
type gcRecord struct {
	Format    int   `json:"format"`
	PackBytes int64 `json:"pack_bytes"`
}

// packBytes returns the total size of the mirror's packs.
func packBytes(dir string) (int64, error) {
	packs, err := listPacks(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range packs {
		n += p.size
	}
	return n, nil
}

// readGCRecord reads stackd-gc.json; false when there is none (a mirror
// from before collections existed) or it cannot be used.
func readGCRecord(dir string) (gcRecord, bool) {
	var rec gcRecord
	raw, err := os.ReadFile(filepath.Join(dir, gcFile))
	if err != nil || json.Unmarshal(raw, &rec) != nil || rec.Format != gcFormat || rec.PackBytes < 0 {
		return gcRecord{}, false
	}
	return rec, true
}

// writeGCRecord records the packs' total size, atomically (writeLocked).
func writeGCRecord(dir string, size int64) error {
	raw, err := json.Marshal(gcRecord{Format: gcFormat, PackBytes: size})
	if err != nil {
		return fmt.Errorf("mirror: encode %s: %w", gcFile, err)
	}
	return writeLocked(filepath.Join(dir, gcFile), append(raw, '\n'))
}

// recordPackBytes records the current total size of the packs.
func recordPackBytes(dir string) error {
	n, err := packBytes(dir)
	if err != nil {
		return err
	}
	return writeGCRecord(dir, n)
}

// collect runs after a Sync that fetched (prev is the table before it):
// when the packs have grown to gcGrowth times the recorded size, it
// rewrites the object store to what the refs reach (objects.gc) and
// records the new size; a mirror without a record only records its size.
// It reports whether the store was rewritten. A failure leaves a
// consistent store; unless the context was cancelled (the next fetch
// tries again), the current size is recorded anyway, so that a
// collection that keeps failing is only tried again after the next
// growth, not after every fetch.
func (m *Mirror) collect(ctx context.Context, prev *refs.Table) (bool, error) {
	total, err := packBytes(m.dir)
	if err != nil {
		return false, err
	}
	rec, ok := readGCRecord(m.dir)
	if !ok {
		return false, writeGCRecord(m.dir, total)
	}
	if total <= rec.PackBytes || float64(total) < gcGrowth*float64(rec.PackBytes) {
		return false, nil
	}
	tips, err := m.gcTips(prev)
	if err != nil {
		return false, err
	}
	ctx, cancel := gcBudget(ctx)
	defer cancel()
	rewrote, err := m.objs.gc(ctx, tips)
	if err != nil {
		// A failure, or a collection that ran out of its time, is tried
		// again after the next growth; a cancelled one (the Sync was
		// cancelled: a shutdown) on the next fetch.
		if !errors.Is(err, context.Canceled) {
			_ = recordPackBytes(m.dir)
		}
		return rewrote, err
	}
	return rewrote, recordPackBytes(m.dir)
}

// gcBudget bounds a collection to half of the time left to the Sync that
// runs it: the rest is for what follows the Sync (the view build), which
// a slow collection must not starve.
func gcBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
}

// gcTips returns the objects a collection keeps with everything they
// reach: the refs of the current table and of prev (the table before
// this Sync: a Reader made before it, or a replica one Sync behind, still
// reads its tips), the packed refs outside the namespaces that the mirror
// preserves, and any loose ref file under refs/ (git may have written
// some).
func (m *Mirror) gcTips(prev *refs.Table) ([]plumbing.Hash, error) {
	seen := map[plumbing.Hash]bool{}
	var tips []plumbing.Hash
	add := func(h plumbing.Hash) {
		if !h.IsZero() && !seen[h] {
			seen[h] = true
			tips = append(tips, h)
		}
	}
	for _, t := range []*refs.Table{m.table.Load(), prev} {
		if t == nil {
			continue
		}
		for _, r := range t.All() {
			if !r.Symbolic() {
				add(r.Hash)
			}
		}
	}
	for _, p := range m.extra {
		add(p.hash)
	}
	err := walkLooseRefs(m.dir, filepath.Join(m.dir, "refs"), func(_ string, h plumbing.Hash) { add(h) })
	if err != nil {
		return nil, fmt.Errorf("mirror: gc: read loose refs: %w", err)
	}
	if h, err := readHead(m.dir); err == nil && !h.Symbolic() {
		add(h.Hash)
	}
	return tips, nil
}

// ctxStorer is a read-only object storer that fails every read once ctx
// is done, so that a reachability walk stops when its Sync is cancelled.
type ctxStorer struct {
	storer.EncodedObjectStorer
	ctx context.Context
}

func (s ctxStorer) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	return s.EncodedObjectStorer.EncodedObject(t, h)
}

// DeltaObject lets go-git's encoder reuse the deltas stored in the packs
// (see storer.DeltaObjectStorer), as it does for compact.
func (s ctxStorer) DeltaObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	if d, ok := s.EncodedObjectStorer.(storer.DeltaObjectStorer); ok {
		return d.DeltaObject(t, h)
	}
	return s.EncodedObjectStorer.EncodedObject(t, h)
}

// gc rewrites the object store to the objects reachable from tips and
// reports whether it did. The reachable set is go-git's revlist.Objects
// over a storage of its own (commits, their trees and blobs, annotated
// tags and their targets; gitlinks are not followed); a tip or object
// that cannot be read fails the collection before anything is written.
// With less than gcMinGarbage of the stored objects unreachable, nothing
// is written. Otherwise the reachable objects are encoded into one new
// pack (go-git's encoder into receivePack, as compact does), every one of
// them is checked to be in its index, the readers' storage is replaced
// under the lock, and only then are all the other packs deleted (.pack
// first). Failing at any point leaves a consistent store (at worst with
// objects in two packs); a cancelled ctx stops the walk and the transfer.
//
// Callers hold the mirror's write side (a Sync, under the repository's
// lease): no pack is added while gc runs. Other processes reading the
// mirror find the deleted packs' objects in the new pack (objectStore
// lists the packs again when a pack is missing).
func (o *objectStore) gc(ctx context.Context, tips []plumbing.Hash) (bool, error) {
	if len(tips) == 0 {
		return false, nil
	}
	packs, err := listPacks(o.dir)
	if err != nil || len(packs) == 0 {
		return false, err
	}
	packDir := filepath.Join(o.dir, "objects", "pack")
	var stored int64
	for _, p := range packs {
		idx, err := readIndex(filepath.Join(packDir, "pack-"+p.hash.String()+".idx"))
		if err != nil {
			return false, err
		}
		n, err := idx.Count()
		if err != nil {
			return false, fmt.Errorf("mirror: gc: %w", err)
		}
		stored += n
	}

	if err := gcAt("listed"); err != nil {
		return false, err
	}
	src := newStorage(o.dir, cache.NewObjectLRU(objectCacheSize))
	defer src.Close()
	objs := ctxStorer{EncodedObjectStorer: src, ctx: ctx}
	keep, err := revlist.Objects(objs, tips, nil)
	if err != nil {
		return false, fmt.Errorf("mirror: gc: reachable objects: %w", err)
	}
	if len(keep) == 0 || float64(stored-int64(len(keep))) < gcMinGarbage*float64(stored) {
		return false, nil
	}
	if err := gcAt("walked"); err != nil {
		return false, err
	}

	np, err := o.encodePack(ctx, "gc", objs, keep)
	if err != nil {
		return false, err
	}
	if err := gcAt("written"); err != nil {
		return false, err // the new pack stays, a duplicate
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("mirror: gc: %w", err) // the new pack stays, a duplicate
	}
	return o.replacePacks("gc", packs, np.hash)
}
