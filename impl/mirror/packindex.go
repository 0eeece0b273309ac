package mirror

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// receivePack stores the pack read from r as it is received, as
// objects/pack/pack-<checksum>.pack, and writes its index, for a Clone.
//
// go-git's pack writer (used by Sync, whose packs are small) inflates
// every object two or three times after the transfer, on one core: at
// 10,000 branches that is most of a clone. Here each object is inflated
// once while the pack streams in (hashing the whole objects, which needs
// no other object), and after the transfer each delta chain is resolved
// once, the chains spread over the cores. Object ids, CRCs and offsets go
// into go-git's idxfile.Writer and Encoder, so the .idx is what go-git
// would write. A pack this cannot resolve (deltas against objects named by
// id only, which a pack fetched with ofs-delta and without thin-pack does
// not contain) is indexed by go-git's own parser instead.
//
// obs, when not nil, is shown the objects it wants as they are resolved.
func receivePack(dir string, r io.Reader, obs *observer) (newPack, error) {
	packDir := filepath.Join(dir, "objects", "pack")
	f, err := os.CreateTemp(packDir, "tmp_pack_")
	if err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()

	bw := bufio.NewWriterSize(f, 1<<20)
	objs, sum, err := scanPack(io.TeeReader(r, bw), obs)
	if err != nil {
		return newPack{}, err
	}
	// Whatever follows the pack's checksum (nothing, from a sane server)
	// would be stored too: refuse it.
	if n, err := io.Copy(bw, r); err != nil || n != 0 {
		return newPack{}, fmt.Errorf("mirror: store pack: %d bytes after the pack (%v)", n, err)
	}
	if err := bw.Flush(); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	if err := f.Sync(); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}

	var w *idxfile.Writer
	if rerr := resolvePack(tmp, objs, obs); rerr == nil {
		w = new(idxfile.Writer)
		_ = w.OnHeader(uint32(len(objs)))
		for i := range objs {
			w.Add(objs[i].hash, uint64(objs[i].offset), objs[i].crc)
		}
		err = w.OnFooter(sum)
	} else {
		w, err = parseWithGoGit(tmp)
	}
	if err != nil {
		return newPack{}, fmt.Errorf("mirror: index pack: %w", err)
	}
	idx, err := w.Index()
	if err != nil {
		return newPack{}, fmt.Errorf("mirror: index pack: %w", err)
	}

	if err := f.Close(); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	base := filepath.Join(packDir, "pack-"+sum.String())
	if err := os.Chmod(tmp, 0o444); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	if err := os.Rename(tmp, base+".pack"); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	done = true
	if err := writeIndex(base+".idx", idx); err != nil {
		_ = os.Remove(base + ".pack")
		return newPack{}, err
	}
	if err := syncDir(packDir); err != nil {
		return newPack{}, err
	}
	return newPack{hash: sum, index: idx}, nil
}

// observer shows the objects of a received pack that a ref points at to
// Config.Seen.
type observer struct {
	wanted map[plumbing.Hash]bool // read-only while the pack is received
	fn     func(plumbing.Hash, plumbing.ObjectType, []byte)
}

// maxObserved bounds the objects kept in memory to be shown.
const maxObserved = 1 << 20

// wants reports whether objects of type t and size n may be shown.
func (o *observer) wants(t plumbing.ObjectType, n int64) bool {
	return o != nil && (t == plumbing.CommitObject || t == plumbing.BlobObject) && n <= maxObserved
}

func (o *observer) show(h plumbing.Hash, t plumbing.ObjectType, content []byte) {
	if o != nil && o.wanted[h] && (t == plumbing.CommitObject || t == plumbing.BlobObject) {
		o.fn(h, t, content)
	}
}

// packObject is what the index needs of one object of a pack, and how to
// get at it.
type packObject struct {
	offset int64
	crc    uint32
	hash   plumbing.Hash // zero until known
	delta  bool
	base   int32 // for an ofs-delta, the index of its base; -1 otherwise
}

// scanPack reads a pack once, in order: the offset and CRC of every
// object, the id of every whole (non-delta) object and the base of every
// delta, then the pack checksum (verified by go-git's scanner).
func scanPack(r io.Reader, obs *observer) ([]packObject, plumbing.Hash, error) {
	sc := packfile.NewScanner(r)
	_, count, err := sc.Header()
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("mirror: read pack: %w", err)
	}
	objs := make([]packObject, count)
	byOffset := make(map[int64]int32, count)
	var content bytes.Buffer
	for i := range objs {
		oh, err := sc.NextObjectHeader()
		if err != nil {
			return nil, plumbing.ZeroHash, fmt.Errorf("mirror: read pack: %w", err)
		}
		o := &objs[i]
		o.offset, o.base = oh.Offset, -1
		byOffset[oh.Offset] = int32(i)
		var crc uint32
		switch oh.Type {
		case plumbing.OFSDeltaObject, plumbing.REFDeltaObject:
			o.delta = true
			if oh.Type == plumbing.OFSDeltaObject {
				b, ok := byOffset[oh.OffsetReference]
				if !ok {
					return nil, plumbing.ZeroHash, fmt.Errorf("mirror: read pack: delta at %d has no base", oh.Offset)
				}
				o.base = b
			}
			_, crc, err = sc.NextObject(io.Discard)
		default:
			h := plumbing.NewHasher(oh.Type, oh.Length)
			if obs.wants(oh.Type, oh.Length) {
				content.Reset()
				_, crc, err = sc.NextObject(io.MultiWriter(h, &content))
				o.hash = h.Sum()
				obs.show(o.hash, oh.Type, content.Bytes())
			} else {
				_, crc, err = sc.NextObject(h)
				o.hash = h.Sum()
			}
		}
		if err != nil {
			return nil, plumbing.ZeroHash, fmt.Errorf("mirror: read pack: %w", err)
		}
		o.crc = crc
	}
	sum, err := sc.Checksum()
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("mirror: read pack: %w", err)
	}
	return objs, sum, nil
}

var errUnresolved = errors.New("pack has deltas this indexer does not resolve")

// resolvePack computes the ids of the deltas of a scanned pack: every
// chain is resolved from its whole base object down, each object inflated
// once, the chains spread over the available cores.
func resolvePack(path string, objs []packObject, obs *observer) error {
	// Children of each object, as one flat list (counting sort).
	start := make([]int32, len(objs)+1)
	for i := range objs {
		if objs[i].delta {
			if objs[i].base < 0 {
				return errUnresolved // a ref-delta
			}
			start[objs[i].base+1]++
		}
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	kids := make([]int32, start[len(objs)])
	fill := append([]int32(nil), start[:len(objs)]...)
	var roots []int32
	for i := range objs {
		if b := objs[i].base; objs[i].delta {
			kids[fill[b]] = int32(i)
			fill[b]++
		}
	}
	for i := range objs {
		if !objs[i].delta && start[i+1] > start[i] {
			roots = append(roots, int32(i))
		}
	}
	if len(roots) == 0 {
		return nil
	}

	var next atomic.Int64
	workers := min(runtime.GOMAXPROCS(0), len(roots))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(path)
			if err != nil {
				errs[w] = err
				return
			}
			defer f.Close()
			rs := &resolver{sc: packfile.NewScanner(f), objs: objs, kids: kids, start: start, obs: obs}
			for {
				i := next.Add(1) - 1
				if i >= int64(len(roots)) || errs[w] != nil {
					return
				}
				errs[w] = rs.root(roots[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i := range objs {
		if objs[i].hash.IsZero() {
			return errUnresolved
		}
	}
	return nil
}

// resolver resolves delta chains with its own view of the pack file.
type resolver struct {
	sc    *packfile.Scanner
	objs  []packObject
	kids  []int32
	start []int32
	obs   *observer
}

// read inflates object i (its delta data, for a delta).
func (rs *resolver) read(i int32) ([]byte, plumbing.ObjectType, error) {
	oh, err := rs.sc.SeekObjectHeader(rs.objs[i].offset)
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	buf.Grow(int(min(oh.Length, 1<<20)))
	if _, _, err := rs.sc.NextObject(&buf); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), oh.Type, nil
}

func (rs *resolver) root(i int32) error {
	content, t, err := rs.read(i)
	if err != nil {
		return err
	}
	return rs.children(i, t, content, 0)
}

// children resolves the deltas based on object i, whose content is
// content, and theirs in turn.
func (rs *resolver) children(i int32, t plumbing.ObjectType, content []byte, depth int) error {
	if depth > 10000 {
		return errUnresolved
	}
	for _, k := range rs.kids[rs.start[i]:rs.start[i+1]] {
		delta, _, err := rs.read(k)
		if err != nil {
			return err
		}
		out, err := packfile.PatchDelta(content, delta)
		if err != nil {
			return err
		}
		rs.objs[k].hash = plumbing.ComputeHash(t, out)
		rs.obs.show(rs.objs[k].hash, t, out)
		if rs.start[k+1] > rs.start[k] {
			if err := rs.children(k, t, out, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseWithGoGit indexes a stored pack with go-git's parser.
func parseWithGoGit(path string) (*idxfile.Writer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w := new(idxfile.Writer)
	p, err := packfile.NewParser(packfile.NewScanner(f), w)
	if err != nil {
		return nil, err
	}
	if _, err := p.Parse(); err != nil {
		return nil, err
	}
	return w, nil
}

// writeIndex writes a pack index with go-git's encoder, atomically.
func writeIndex(path string, idx *idxfile.MemoryIndex) error {
	f, err := os.CreateTemp(filepath.Dir(path), "tmp_idx_")
	if err != nil {
		return fmt.Errorf("mirror: write index: %w", err)
	}
	bw := bufio.NewWriter(f)
	_, err = idxfile.NewEncoder(bw).Encode(idx)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o444)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("mirror: write index: %w", err)
	}
	return nil
}
