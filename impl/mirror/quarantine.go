package mirror

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
)

// A fetched pack is received into a quarantine, a directory inside the
// mirror's objects (objects/incoming-<random>/objects/pack, laid out so
// that go-git can open it as an object store of its own), where nothing
// reads it: not git, not another replica, not this process's Readers of
// the current refs. It is checked there (receivePack: sizes, checksum,
// index, duplicates, fsck, connectivity); then the pending update's
// Reader reads it after the store's own packs (admit) so that the new view
// can be built; only when that build succeeded is the pack moved into
// objects/pack (publish) and the refs written. Any failure removes the
// quarantine (discard) and leaves the mirror as it was, byte for byte. A
// quarantine a crash left is removed by the next Sync or Repair
// (removeTempPacks).

const quarantinePrefix = "incoming-"

// quarantine is one fetched pack's directory while it is checked.
type quarantine struct {
	root string
	pack newPack
}

func (q *quarantine) packDir() string { return filepath.Join(q.root, "objects", "pack") }

// newQuarantine creates an empty quarantine in the store.
func (o *objectStore) newQuarantine() (*quarantine, error) {
	root, err := os.MkdirTemp(filepath.Join(o.dir, "objects"), quarantinePrefix)
	if err != nil {
		return nil, fmt.Errorf("mirror: quarantine: %w", err)
	}
	q := &quarantine{root: root}
	if err := os.MkdirAll(q.packDir(), 0o755); err != nil {
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("mirror: quarantine: %w", err)
	}
	return q, nil
}

// admit lets reads find the quarantine's objects after the store's own.
func (o *objectStore) admit(q *quarantine) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.incoming != nil {
		_ = o.incoming.Close()
	}
	o.incoming, o.incomingIDs = newStorage(q.root, cache.NewObjectLRU(objectCacheSize)), q.pack.ids
}

// publish moves the quarantine's pack into the store (the .pack first,
// the .idx last: git and go-git find a pack by both), makes it readable
// and removes the quarantine.
func (o *objectStore) publish(q *quarantine) error {
	packDir := filepath.Join(o.dir, "objects", "pack")
	name := "pack-" + q.pack.hash.String()
	for _, ext := range []string{".pack", ".idx"} {
		if err := os.Rename(filepath.Join(q.packDir(), name+ext), filepath.Join(packDir, name+ext)); err != nil {
			return fmt.Errorf("mirror: publish pack: %w", err)
		}
	}
	if err := syncDir(packDir); err != nil {
		return err
	}
	o.mu.Lock()
	if !o.closed {
		o.used = true // registerLocked and Reindex
		if err := o.registerLocked(q.pack.hash); err != nil {
			o.st.Reindex() // every index is read again on the next read
		}
		o.packs = stampFile(packDir)
	}
	if o.incoming != nil {
		_ = o.incoming.Close()
		o.incoming, o.incomingIDs = nil, nil
	}
	o.mu.Unlock()
	_ = os.RemoveAll(q.root)
	return nil
}

// registerLocked makes the pack h, in place in objects/pack, readable
// through the storage without reading the other packs' indexes again (o.mu
// held). go-git registers a pack's index only through the Notify hook of a
// pack writer it creates, as it does for a pack it wrote itself: one is
// created and closed without data (which removes its temporary file), and
// its hook is given the new pack's index.
func (o *objectStore) registerLocked(h plumbing.Hash) error {
	idx, err := readIndex(filepath.Join(o.dir, "objects", "pack", "pack-"+h.String()+".idx"))
	if err != nil {
		return err
	}
	n, err := idx.Count()
	if err != nil {
		return err
	}
	w := new(idxfile.Writer)
	if err := w.OnHeader(uint32(n)); err != nil {
		return err
	}
	iter, err := idx.Entries()
	if err != nil {
		return err
	}
	for {
		e, err := iter.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = iter.Close()
			return err
		}
		w.Add(e.Hash, e.Offset, e.CRC32)
	}
	_ = iter.Close()
	if err := w.OnFooter(h); err != nil {
		return err
	}
	wc, err := o.st.PackfileWriter()
	if err != nil {
		return err
	}
	pw, ok := wc.(*dotgit.PackWriter)
	if !ok {
		_ = wc.Close()
		return fmt.Errorf("mirror: unexpected pack writer %T", wc)
	}
	notify := pw.Notify
	pw.Notify = nil
	if err := pw.Close(); err != nil || notify == nil {
		return fmt.Errorf("mirror: register pack: %v", err)
	}
	notify(h, w)
	return nil
}

// discard forgets the quarantine and removes it with everything in it.
func (o *objectStore) discard(q *quarantine) {
	o.mu.Lock()
	if o.incoming != nil {
		_ = o.incoming.Close()
		o.incoming, o.incomingIDs = nil, nil
	}
	o.mu.Unlock()
	_ = os.RemoveAll(q.root)
}

// removeQuarantines removes the quarantines left in a mirror's objects.
func removeQuarantines(dir string) {
	objDir := filepath.Join(dir, "objects")
	entries, err := os.ReadDir(objDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), quarantinePrefix) {
			_ = os.RemoveAll(filepath.Join(objDir, e.Name()))
		}
	}
}
