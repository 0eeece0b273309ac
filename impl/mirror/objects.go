package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"

	"github.com/stackd/stackd/impl/refs"
)

// objectCacheSize bounds go-git's object cache (delta bases and recently
// read objects) per mirror. go-git's default is 96 MiB.
const objectCacheSize = 32 * cache.MiByte

// objectStore is a mirror's one long-lived go-git object storage.
//
// go-git's filesystem ObjectStorage is not safe for concurrent use: its
// pack index map is filled lazily and extended when a pack is written, a
// kept-open Packfile shares one file offset and scanner between reads, and
// in-memory objects compute their hash lazily. So every use of st happens
// under mu, objects leave it fully read (see object), and a pack transfer
// runs outside mu except for the two moments it touches shared state
// (creating the writer and registering the finished pack's index).
//
// Other processes may add packs to the store (replicas sharing the data
// directory) or merge and delete them (compact, gc). go-git lists the packs
// and loads their indexes once, so a storage opened before such a change
// misses the new packs or looks for deleted ones. When a read does not
// find an object and the pack directory changed since st was opened
// (packs records its stamp), st is replaced by a fresh storage, which
// lists the packs again, and the read is retried once.
type objectStore struct {
	dir   string
	mu    sync.Mutex
	st    *filesystem.Storage
	lru   *cache.ObjectLRU // st's object cache
	packs fileStamp        // the pack directory when st was opened
	// used: st was used since it was opened (it may hold pack indexes
	// and open pack files); a fresh storage holds nothing.
	used   bool
	closed bool
	// incoming is the storage of a quarantine whose pack passed its
	// checks and is read, after st, by the Reader of a pending update
	// (see quarantine.go); nil when there is none.
	incoming *filesystem.Storage
	// incomingIDs are the objects of the quarantine's pack, sorted.
	incomingIDs []plumbing.Hash
}

func openObjects(dir string) *objectStore {
	o := &objectStore{dir: dir}
	o.reopenLocked()
	return o
}

// reopenLocked replaces the storage with a fresh one (o.mu held, or
// before o is shared).
func (o *objectStore) reopenLocked() {
	old := o.st
	o.packs = stampFile(filepath.Join(o.dir, "objects", "pack"))
	o.lru = cache.NewObjectLRU(objectCacheSize)
	o.st = newStorage(o.dir, o.lru)
	o.used = false
	if old != nil {
		_ = old.Close()
	}
}

// relocate points the store at dir, where its repository was renamed
// (a clone moved into place), reopening the storage there.
func (o *objectStore) relocate(dir string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dir = dir
	if !o.closed {
		o.reopenLocked()
	}
}

// follow replaces the storage with a fresh one when the pack directory
// changed since it was opened (another process added, merged or
// collected packs): the new storage lists the packs again, and closing
// the old one releases the deleted packs it kept open, so that their
// disk space is freed.
func (o *objectStore) follow() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed && stampFile(filepath.Join(o.dir, "objects", "pack")) != o.packs {
		o.reopenLocked()
	}
}

// retryLocked tells whether a read that failed with err may succeed on a
// fresh storage, and makes one (o.mu held): the object or its pack was
// not found, and the pack directory changed since the storage was
// opened.
func (o *objectStore) retryLocked(err error) bool {
	if !errors.Is(err, plumbing.ErrObjectNotFound) && !errors.Is(err, dotgit.ErrPackfileNotFound) && !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if stampFile(filepath.Join(o.dir, "objects", "pack")) == o.packs {
		return false
	}
	o.reopenLocked()
	return true
}

// trim empties the object cache: what a build read is in the view's own
// cache of decoded commits and metadata (view.Cache), so keeping go-git's
// copies of the raw objects between runs only costs memory, up to
// objectCacheSize per mirror. It also closes the pack files the storage
// keeps open (KeepDescriptors): go-git opens a pack on its first read and
// keeps it until the storage is closed, and every fetch adds a pack, so
// without this a mirror would hold one more descriptor per fetch, up to
// maxPacks+1, between runs. The storage stays usable (go-git's Close
// closes the files and forgets them; its pack indexes stay loaded) and
// opens a pack again when it next reads from it. With indexes the storage
// is replaced by a fresh one, which loads the pack indexes on its first
// read, as follow does; not while a quarantine's update is pending (see
// Mirror.Trim), nor when it was not used since it was opened (a run that
// found nothing changed reads no object: replacing the storage after
// each such run was a twentieth of its cost with a thousand mirrors).
func (o *objectStore) trim(indexes bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed:
	case indexes && o.incoming == nil:
		if o.used {
			o.reopenLocked()
		}
	default:
		o.lru.Clear()
		_ = o.st.Close()
	}
}

// newStorage opens go-git's storage of the repository in dir, keeping
// pack files open once read, with the object cache lru.
func newStorage(dir string, lru *cache.ObjectLRU) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(dir), lru,
		filesystem.Options{KeepDescriptors: true})
}

func (o *objectStore) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	if o.incoming != nil {
		_ = o.incoming.Close()
		o.incoming = nil
	}
	return o.st.Close()
}

// withLocked runs read on the storage that holds h (o.mu held): the
// quarantine's when h is one of the objects of its pack (so that neither
// storage is asked for what it does not hold: a miss costs go-git a look
// for a loose object and for alternates), else the store's, opened again
// and read once more when the pack directory changed (retryLocked).
func (o *objectStore) withLocked(h plumbing.Hash, read func(*filesystem.Storage) error) error {
	if o.incoming != nil && o.incomingHas(h) {
		return read(o.incoming)
	}
	o.used = true
	err := read(o.st)
	if err != nil && o.retryLocked(err) {
		err = read(o.st)
	}
	return err
}

// incomingHas reports whether h is an object of the quarantine's pack.
func (o *objectStore) incomingHas(h plumbing.Hash) bool {
	_, ok := slices.BinarySearchFunc(o.incomingIDs, h, func(a, b plumbing.Hash) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// object reads one object. The result is safe to share between goroutines:
// small objects are go-git's in-memory objects with their hash computed
// here, under the lock; larger ones (which go-git reads lazily from the
// pack) are read into memory first. Callers must not write to it.
func (o *objectStore) object(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	var obj plumbing.EncodedObject
	err := o.withLocked(h, func(st *filesystem.Storage) (err error) {
		obj, err = st.EncodedObject(t, h)
		return err
	})
	if err != nil {
		return nil, err
	}
	if mo, ok := obj.(*plumbing.MemoryObject); ok {
		mo.Hash()
		return mo, nil
	}
	r, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("mirror: read object %s: %w", h, err)
	}
	defer r.Close()
	mo := &plumbing.MemoryObject{}
	mo.SetType(obj.Type())
	mo.SetSize(obj.Size())
	if _, err := io.Copy(mo, r); err != nil {
		return nil, fmt.Errorf("mirror: read object %s: %w", h, err)
	}
	if mo.Hash() != h {
		return nil, fmt.Errorf("mirror: object %s: content does not match its id", h)
	}
	return mo, nil
}

// has reports whether object h is stored.
func (o *objectStore) has(h plumbing.Hash) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false, ErrClosed
	}
	err := o.withLocked(h, func(st *filesystem.Storage) error { return st.HasEncodedObject(h) })
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, plumbing.ErrObjectNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("mirror: look up %s: %w", h, err)
	}
}

// size returns the size of object h's content without reading it:
// go-git reads the object's header (for a delta, the delta, whose size the
// fetch limits bound: every object of a mirror was checked when it
// arrived).
func (o *objectStore) size(h plumbing.Hash) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, ErrClosed
	}
	var n int64
	err := o.withLocked(h, func(st *filesystem.Storage) (err error) {
		n, err = st.EncodedObjectSize(h)
		return err
	})
	return n, err
}

// isCommit reports whether h is a stored commit.
func (o *objectStore) isCommit(h plumbing.Hash) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	err := o.withLocked(h, func(st *filesystem.Storage) error {
		_, err := st.EncodedObject(plumbing.CommitObject, h)
		return err
	})
	return err == nil
}

// removeTempPacks deletes the temporary files an interrupted transfer or
// index left, and quarantines a crash left (see quarantine.go). Safe
// because Syncs of one mirror are serialised and nothing else writes
// there.
func removeTempPacks(dir string) {
	packDir := filepath.Join(dir, "objects", "pack")
	entries, err := os.ReadDir(packDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "tmp_pack_") || strings.HasPrefix(n, "tmp_idx_") || strings.HasPrefix(n, "tmp_obj_") || strings.HasPrefix(n, "tmp_links_") {
			_ = os.Remove(filepath.Join(packDir, n))
		}
	}
	removeQuarantines(dir)
}

// checkBranches refuses changes that move a branch (refs/heads/*) to an
// object that is not a commit: git fsck reports such a branch as an
// error. np, when not nil, is the pack just received, whose tips' types
// are known; other tips are looked up in the store.
func (o *objectStore) checkBranches(changes []refs.Change, np *newPack) error {
	for _, c := range changes {
		if c.Kind == refs.Deleted || !strings.HasPrefix(c.Ref, "refs/heads/") {
			continue
		}
		t, ok := plumbing.InvalidObject, false
		if np != nil {
			t, ok = np.wanted[c.New]
		}
		if !ok {
			t = o.typeOf(c.New)
		}
		if t != plumbing.CommitObject {
			return corrupt("a branch names a %s, not a commit", t)
		}
	}
	return nil
}

// typeOf returns the type of stored object h, without reading its
// content (InvalidObject when it is not stored).
func (o *objectStore) typeOf(h plumbing.Hash) plumbing.ObjectType {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return plumbing.InvalidObject
	}
	t := plumbing.InvalidObject
	_ = o.withLocked(h, func(st *filesystem.Storage) error {
		obj, err := st.EncodedObject(plumbing.AnyObject, h)
		if err == nil {
			t = obj.Type()
		}
		return err
	})
	return t
}

// maxTagChain bounds the annotated tags peeled through, one naming the
// next.
const maxTagChain = 64

// peel follows h down annotated tags to the first object that is not a
// tag, and reports whether h is a tag at all. np, when not nil, is the
// pack just received: the types of its wanted objects and what its tags
// point at are known without a read; other objects are read from the
// store.
func (o *objectStore) peel(h plumbing.Hash, np *newPack) (plumbing.Hash, bool) {
	peeled := false
	for range maxTagChain {
		var next plumbing.Hash
		ok := false
		if np != nil {
			if next, ok = np.tags[h]; !ok {
				if t, known := np.wanted[h]; known && t != plumbing.TagObject {
					return h, peeled
				}
			}
		}
		if !ok {
			if next, ok = o.tagTarget(h); !ok {
				return h, peeled
			}
		}
		h, peeled = next, true
	}
	return h, false // a chain of tags that long is not peeled
}

// tagTarget returns the object that h names when h is a stored annotated
// tag.
func (o *objectStore) tagTarget(h plumbing.Hash) (plumbing.Hash, bool) {
	obj, err := o.object(plumbing.TagObject, h)
	if err != nil {
		return plumbing.ZeroHash, false
	}
	r, err := obj.Reader()
	if err != nil {
		return plumbing.ZeroHash, false
	}
	defer r.Close()
	var head [48]byte
	n, _ := io.ReadFull(r, head[:])
	v, _, ok := header(head[:n], "object")
	if !ok {
		return plumbing.ZeroHash, false
	}
	return parseHex(v)
}

// Reader is read-only access to a mirror: a ref table fixed when the
// Reader was made and the mirror's object store, which keeps the table's
// objects at least until the Sync after the next one (see the package
// documentation on garbage collection).
// It has no method that fetches or writes. It is safe for concurrent use,
// also while the mirror runs a Sync, and satisfies view.Repo.
type Reader struct {
	table *refs.Table
	objs  *objectStore
}

// Refs returns the ref table of the mirror at the time the Reader was
// made: the mirrored namespaces and HEAD (symbolic).
func (r *Reader) Refs() *refs.Table { return r.table }

// Object reads one object. A missing object (or one of another type than
// t, unless t is plumbing.AnyObject) wraps plumbing.ErrObjectNotFound. The
// returned object is shared and must not be written to.
func (r *Reader) Object(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return r.objs.object(t, h)
}

// ObjectSize returns the size of object h's content without reading the
// content (view.Sizer). A missing object wraps plumbing.ErrObjectNotFound.
func (r *Reader) ObjectSize(h plumbing.Hash) (int64, error) { return r.objs.size(h) }

// Config returns the mirror's git config, freshly read (changing it
// changes nothing on disk).
func (r *Reader) Config() (*config.Config, error) {
	f, err := os.Open(filepath.Join(r.objs.dir, "config"))
	if err != nil {
		return nil, fmt.Errorf("mirror: read config: %w", err)
	}
	defer f.Close()
	c, err := config.ReadConfig(f)
	if err != nil {
		return nil, fmt.Errorf("mirror: read config: %w", err)
	}
	return c, nil
}
