package mirror

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// maxPacks is the number of packs above which a Sync that fetched merges
// all packs but the largest into one. Every Sync that fetches adds a
// pack, and go-git looks an object up in each pack in turn (and keeps
// each open), so without merging, reads would slow down with the number
// of Syncs. A variable for tests.
var maxPacks = 16

// packFile is one pack of the object store.
type packFile struct {
	hash plumbing.Hash
	size int64
}

func listPacks(dir string) ([]packFile, error) {
	packDir := filepath.Join(dir, "objects", "pack")
	entries, err := os.ReadDir(packDir)
	if err != nil {
		return nil, fmt.Errorf("mirror: list packs: %w", err)
	}
	var out []packFile
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "pack-") || !strings.HasSuffix(n, ".pack") {
			continue
		}
		h, ok := parseHex([]byte(strings.TrimSuffix(strings.TrimPrefix(n, "pack-"), ".pack")))
		if !ok {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("mirror: list packs: %w", err)
		}
		out = append(out, packFile{hash: h, size: fi.Size()})
	}
	return out, nil
}

// compact merges every pack but the largest into one new pack when there
// are more than maxPacks, and reports whether it did. The new pack is
// written (go-git's encoder, read from a storage of its own) and indexed
// before anything is removed; every object of the old packs is checked
// to be in it; then the readers' storage is replaced under the lock, and
// only then are the old packs deleted. Failing at any point leaves a
// consistent store (at worst with objects in two packs).
func (o *objectStore) compact() (bool, error) {
	packs, err := listPacks(o.dir)
	if err != nil || len(packs) <= maxPacks {
		return false, err
	}
	slices.SortFunc(packs, func(a, b packFile) int { return cmp.Compare(b.size, a.size) })
	small := packs[1:]
	packDir := filepath.Join(o.dir, "objects", "pack")

	var hashes []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	for _, p := range small {
		idx, err := readIndex(filepath.Join(packDir, "pack-"+p.hash.String()+".idx"))
		if err != nil {
			return false, err
		}
		iter, err := idx.Entries()
		if err != nil {
			return false, fmt.Errorf("mirror: compact: %w", err)
		}
		for {
			e, err := iter.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return false, fmt.Errorf("mirror: compact: %w", err)
			}
			if !seen[e.Hash] {
				seen[e.Hash] = true
				hashes = append(hashes, e.Hash)
			}
		}
		_ = iter.Close()
	}

	src := filesystem.NewStorageWithOptions(osfs.New(o.dir), cache.NewObjectLRU(16*cache.MiByte),
		filesystem.Options{KeepDescriptors: true})
	np, err := o.encodePack(context.Background(), "compact", src, hashes)
	_ = src.Close()
	if err != nil {
		return false, err
	}
	return o.replacePacks("compact", small, np.hash)
}

// encodePack encodes hashes, read from src, into one new pack of the store
// (go-git's encoder piped into receivePack, which checks that the pack
// holds every one of them). When ctx ends the transfer stops, and the
// error is ctx's. On failure the temporary files are removed. op names
// the caller in errors.
func (o *objectStore) encodePack(ctx context.Context, op string, src storer.EncodedObjectStorer, hashes []plumbing.Hash) (newPack, error) {
	pr, pw := io.Pipe()
	stopOnCancel := context.AfterFunc(ctx, func() { _ = pr.CloseWithError(ctx.Err()) })
	defer stopOnCancel()
	encoded := make(chan error, 1)
	go func() {
		_, err := packfile.NewEncoder(pw, src, false).Encode(hashes, 10)
		_ = pw.CloseWithError(err)
		encoded <- err
	}()
	// The objects come from this store, checked when they arrived: only
	// the index is made, and every one must be in the new pack.
	np, err := receivePack(filepath.Join(o.dir, "objects", "pack"), pr, receiveOpts{lim: unlimited, wants: hashes})
	_ = pr.CloseWithError(fmt.Errorf("mirror: %s stopped", op)) // unblocks the encoder on failure
	encErr := <-encoded
	if err == nil {
		err = encErr
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr // whatever the pipe reported, this is why
	}
	if err != nil {
		removeTempPacks(o.dir)
		return newPack{}, fmt.Errorf("mirror: %s: %w", op, err)
	}
	return np, nil
}

// replacePacks swaps the readers' storage for a new one and deletes the
// packs in old but kept (the new pack), under the lock: the new storage
// lists the packs on its first read, which must not find a pack that is
// about to disappear. It reports that the store changed (also when a
// deletion failed, which leaves duplicate objects only).
func (o *objectStore) replacePacks(op string, old []packFile, kept plumbing.Hash) (bool, error) {
	packDir := filepath.Join(o.dir, "objects", "pack")
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false, ErrClosed
	}
	prev := o.st
	o.lru = cache.NewObjectLRU(objectCacheSize)
	o.st = newStorage(o.dir, o.lru)
	o.used = false
	var rmErr error
	for _, p := range old {
		if p.hash == kept {
			continue
		}
		base := filepath.Join(packDir, "pack-"+p.hash.String())
		// The .pack first: go-git and git find packs by their .pack
		// file, so an .idx left alone by a crash is ignored.
		for _, ext := range []string{".pack", ".idx", ".rev"} {
			if err := os.Remove(base + ext); err != nil && !errors.Is(err, os.ErrNotExist) && rmErr == nil {
				rmErr = fmt.Errorf("mirror: %s: %w", op, err)
			}
		}
	}
	o.packs = stampFile(packDir) // the new storage sees the new pack; the deletions are its own
	o.mu.Unlock()
	_ = prev.Close()
	if rmErr != nil {
		return true, rmErr
	}
	return true, syncDir(packDir)
}

func readIndex(path string) (*idxfile.MemoryIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mirror: read index: %w", err)
	}
	defer f.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(f).Decode(idx); err != nil {
		return nil, fmt.Errorf("mirror: read index %s: %w", filepath.Base(path), err)
	}
	return idx, nil
}
