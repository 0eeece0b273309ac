package mirror

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
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
	dir    string
	mu     sync.Mutex
	st     *filesystem.Storage
	packs  fileStamp // the pack directory when st was opened
	closed bool
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
	o.st = newStorage(o.dir)
	if old != nil {
		_ = old.Close()
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

// newStorage opens go-git's storage of the repository in dir, keeping
// pack files open once read.
func newStorage(dir string) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRU(objectCacheSize),
		filesystem.Options{KeepDescriptors: true})
}

func (o *objectStore) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	return o.st.Close()
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
	obj, err := o.st.EncodedObject(t, h)
	if err != nil && o.retryLocked(err) {
		obj, err = o.st.EncodedObject(t, h)
	}
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
	err := o.st.HasEncodedObject(h)
	if err != nil && o.retryLocked(err) {
		err = o.st.HasEncodedObject(h)
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, plumbing.ErrObjectNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("mirror: look up %s: %w", h, err)
	}
}

// isCommit reports whether h is a stored commit.
func (o *objectStore) isCommit(h plumbing.Hash) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	_, err := o.st.EncodedObject(plumbing.CommitObject, h)
	if err != nil && o.retryLocked(err) {
		_, err = o.st.EncodedObject(plumbing.CommitObject, h)
	}
	return err == nil
}

// newPack is a pack written by writePack.
type newPack struct {
	hash  plumbing.Hash // the pack checksum: objects/pack/pack-<hash>.{pack,idx}
	index *idxfile.MemoryIndex
}

// writePack stores the packfile read from r as objects/pack/pack-*.pack
// with its .idx (go-git's pack writer: a temporary file renamed into
// place once fully received and indexed), makes the pack visible to reads,
// and fsyncs it. Nothing is made visible when r fails midway; go-git may
// leave a tmp_pack_* file, which removeTempPacks deletes.
func (o *objectStore) writePack(r io.Reader) (newPack, error) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return newPack{}, ErrClosed
	}
	wc, err := o.st.PackfileWriter()
	o.mu.Unlock()
	if err != nil {
		return newPack{}, fmt.Errorf("mirror: pack writer: %w", err)
	}
	pw, ok := wc.(*dotgit.PackWriter)
	if !ok {
		_ = wc.Close()
		return newPack{}, fmt.Errorf("mirror: unexpected pack writer %T", wc)
	}
	// go-git registers the finished pack's index in the storage from
	// Notify, at the end of Close: do that under the lock, and keep the
	// index to check the wanted objects against.
	var got newPack
	register := pw.Notify
	pw.Notify = func(h plumbing.Hash, w *idxfile.Writer) {
		if idx, err := w.Index(); err == nil {
			got = newPack{hash: h, index: idx}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if register != nil && !o.closed {
			register(h, w)
		}
	}
	err = packfile.WritePackfileToObjectStorage(preparedWriter{pw}, r)
	if err == nil && got.index == nil {
		err = errors.New("received pack was not indexed")
	}
	if err == nil {
		err = o.syncPack(got.hash)
	}
	if err != nil {
		// The index may have been registered for a pack that did not
		// reach the disk: forget all indexes; they are reloaded lazily.
		o.mu.Lock()
		o.st.Reindex()
		o.mu.Unlock()
		return newPack{}, err
	}
	return got, nil
}

// syncPack fsyncs a new pack, its index and the pack directory.
func (o *objectStore) syncPack(h plumbing.Hash) error {
	dir := filepath.Join(o.dir, "objects", "pack")
	for _, ext := range []string{".pack", ".idx"} {
		if err := syncFile(filepath.Join(dir, "pack-"+h.String()+ext)); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

// preparedWriter hands an already created pack writer to
// packfile.WritePackfileToObjectStorage.
type preparedWriter struct{ w io.WriteCloser }

func (p preparedWriter) PackfileWriter() (io.WriteCloser, error) { return p.w, nil }

// removeTempPacks deletes the temporary files go-git leaves behind when a
// transfer is interrupted. Safe because Syncs of one mirror are serialised
// and nothing else writes there.
func removeTempPacks(dir string) {
	packDir := filepath.Join(dir, "objects", "pack")
	entries, err := os.ReadDir(packDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "tmp_pack_") || strings.HasPrefix(n, "tmp_idx_") || strings.HasPrefix(n, "tmp_obj_") {
			_ = os.Remove(filepath.Join(packDir, n))
		}
	}
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
