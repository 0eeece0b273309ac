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
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
)

// This file walks the delta chains of a scanned pack from their whole
// base objects down, reading the stored pack file: once to compute the
// ids of the deltas (resolvePack), once more for the commits, trees and
// tags to check them (see verify.go). Each object is inflated once per
// walk. Memory is bounded: an object held to resolve deltas (a base, or a
// result that is itself a base) is at most MaxDeltaSize, a result nobody
// bases on is hashed as the delta is applied and never held, a base is
// released as soon as its last delta is applied, and the bytes held at
// once by all walkers stay within twice MaxDeltaSize. The chains are
// spread over the cores; one that needs more than a walker's share of the
// memory is walked again at the end, alone, with all of it.

// errOverBudget stops a walker whose chain needs more memory than its
// share; the chain is walked again alone.
var errOverBudget = errors.New("delta chain over the walker's memory share")

// chains are the delta chains of a scanned pack.
type chains struct {
	data  []byte // the stored pack, mapped read-only
	objs  *entries
	start []int32 // kids[start[i]:start[i+1]] are the OFS_DELTAs based on entry i
	kids  []int32
	// byBase maps a REF_DELTA's base id to the deltas based on it; nil
	// when the pack has none.
	byBase map[plumbing.Hash][]int32
	lim    Limits
	spend  *budget
	chk    *checker // nil: objects are not checked
}

// newChains maps the stored pack at path and indexes its delta chains.
// The caller unmaps it with close.
func newChains(path string, s *scanned, lim Limits, spend *budget, chk *checker) (*chains, error) {
	data, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	n := s.objs.len()
	c := &chains{data: data, objs: &s.objs, start: make([]int32, n+1), lim: lim, spend: spend, chk: chk}
	for i := range n {
		if e := s.objs.at(int32(i)); e.kind == kindOfs {
			c.start[e.base+1]++
		}
	}
	for i := 1; i <= n; i++ {
		c.start[i] += c.start[i-1]
	}
	c.kids = make([]int32, c.start[n])
	fill := make([]int32, n)
	copy(fill, c.start[:n])
	for i := range n {
		if e := s.objs.at(int32(i)); e.kind == kindOfs {
			c.kids[fill[e.base]] = int32(i)
			fill[e.base]++
		}
	}
	if len(s.refs) > 0 {
		c.byBase = map[plumbing.Hash][]int32{}
		for _, r := range s.refs {
			c.byBase[r.base] = append(c.byBase[r.base], r.idx)
		}
	}
	return c, nil
}

// close unmaps the pack.
func (c *chains) close() {
	if c.data != nil {
		_ = syscall.Munmap(c.data)
		c.data = nil
	}
}

// mapFile maps a file read-only: the walkers read objects at random
// offsets, thousands of them, which through read(2) would cost a system
// call and a buffer fill each.
func mapFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 || fi.Size() != int64(int(fi.Size())) {
		return nil, fmt.Errorf("mirror: map %s: size %d", filepath.Base(path), fi.Size())
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	return data, nil
}

// kidsOf returns the deltas based on entry i, whose id is h (zero when
// not known yet).
func (c *chains) kidsOf(i int32, h plumbing.Hash) []int32 {
	ofs := c.kids[c.start[i]:c.start[i+1]]
	if c.byBase == nil || h.IsZero() {
		return ofs
	}
	refs := c.byBase[h]
	if len(refs) == 0 {
		return ofs
	}
	return append(append(make([]int32, 0, len(ofs)+len(refs)), ofs...), refs...)
}

// hasKids reports whether some delta may be based on entry i: certainly
// when an OFS_DELTA is, and possibly whenever the pack has REF_DELTAs.
func (c *chains) hasKids(i int32) bool {
	return c.start[i+1] > c.start[i] || c.byBase != nil
}

// visit is called with every object of a walked chain: its entry, type
// and, when the walk holds it, its content (nil for a result that was
// only hashed). It may record the object's id (resolvePack) or check it.
type visit func(w *walker, i int32, t plumbing.ObjectType, content []byte, h plumbing.Hash) error

// walk resolves the chains rooted at roots, calling v for every object
// below a root, and for each root too when rootsToo. hold says whether
// an object of type t must be held even when no delta is based on it.
func (c *chains) walk(roots []int32, v visit, rootsToo bool, hold func(t plumbing.ObjectType, size uint64) bool) error {
	if len(roots) == 0 {
		return nil
	}
	total := 2 * c.lim.MaxDeltaSize
	workers := min(runtime.GOMAXPROCS(0), len(roots))
	if c.byBase != nil {
		// A REF_DELTA's base is known by id only once resolved, by any
		// walker: walk alone.
		workers = 1
	}
	var next atomic.Int64
	var mu sync.Mutex
	var deferred []int32
	errs := make([]error, workers)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk, err := c.walker(total/int64(workers), v, rootsToo, hold)
			if err != nil {
				errs[w] = err
				failed.Store(true)
				return
			}
			defer wk.close()
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(len(roots)) {
					return
				}
				err := wk.root(roots[i])
				if errors.Is(err, errOverBudget) && workers > 1 {
					mu.Lock()
					deferred = append(deferred, roots[i])
					mu.Unlock()
					continue
				}
				if err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return firstErr(errs)
	}
	if len(deferred) == 0 {
		return nil
	}
	wk, err := c.walker(total, v, rootsToo, hold)
	if err != nil {
		return err
	}
	defer wk.close()
	for _, r := range deferred {
		if err := wk.root(r); err != nil {
			return err
		}
	}
	return nil
}

// firstErr returns the first non-nil error: the one a walker met, not the
// others' reactions to it.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// walker resolves chains, reading the mapped pack.
type walker struct {
	c        *chains
	br       bytes.Reader
	z        inflater
	ops      *bufio.Reader
	held     int64
	share    int64
	v        visit
	rootsToo bool
	hold     func(plumbing.ObjectType, uint64) bool
	free     [][]byte
	log      *links // where the objects it checks record their links
}

func (c *chains) walker(share int64, v visit, rootsToo bool, hold func(plumbing.ObjectType, uint64) bool) (*walker, error) {
	w := &walker{c: c, z: inflater{spend: c.spend}, ops: bufio.NewReaderSize(nil, 16<<10),
		share: share, v: v, rootsToo: rootsToo, hold: hold}
	if c.chk != nil {
		var err error
		if w.log, err = c.chk.newLog(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (w *walker) close() {}

// open positions the walker at entry i's data and returns its declared
// size; the inflater is ready to read it.
func (w *walker) open(i int32) (uint64, error) {
	e := w.c.objs.at(i)
	if e.off >= uint64(len(w.c.data)) {
		return 0, corrupt("an object lies outside the pack")
	}
	w.br.Reset(w.c.data[e.off:])
	_, size, err := objectHeader(&w.br)
	if err != nil {
		return 0, truncated(err)
	}
	switch e.kind {
	case kindOfs:
		if _, err := ofsDistance(&w.br); err != nil {
			return 0, truncated(err)
		}
	case kindRef:
		if _, err := w.br.Seek(20, io.SeekCurrent); err != nil || w.br.Len() == 0 {
			return 0, corrupt("the pack is truncated")
		}
	}
	if err := w.z.reset(&w.br, size); err != nil {
		return 0, truncated(err)
	}
	return size, nil
}

// get returns a buffer of n bytes, charged to the walker's share.
func (w *walker) get(n uint64) ([]byte, error) {
	if w.held+int64(n) > w.share {
		return nil, errOverBudget
	}
	for k, b := range w.free {
		if uint64(cap(b)) >= n && w.held+int64(cap(b)) <= w.share {
			w.free = append(w.free[:k], w.free[k+1:]...)
			w.held += int64(cap(b))
			return b[:0], nil
		}
	}
	w.held += int64(n)
	return make([]byte, 0, n), nil
}

// put returns a buffer to the walker, keeping a few for reuse (as many
// as fit in half its share): a chain of large deltas reuses two or three
// buffers instead of allocating one per delta.
func (w *walker) put(b []byte) {
	if b == nil {
		return
	}
	w.held -= int64(cap(b))
	var kept int64
	for _, f := range w.free {
		kept += int64(cap(f))
	}
	if len(w.free) < 4 && kept+int64(cap(b)) <= w.share/2 {
		w.free = append(w.free, b)
	}
}

// root walks the chain rooted at the whole object i.
func (w *walker) root(i int32) (err error) {
	w.held = 0
	e := w.c.objs.at(i)
	kids := w.c.hasKids(i)
	size, err := w.open(i)
	if err != nil {
		return err
	}
	var content []byte
	if kids || (w.rootsToo && w.hold(e.typ, size)) {
		if err := w.c.lim.sizeLimit(e.typ, size, kids); err != nil {
			return err
		}
		if content, err = w.get(size); err != nil {
			return err
		}
		content = content[:size]
		if _, err := io.ReadFull(onlyReader{&w.z}, content); err != nil {
			return truncated(err)
		}
		if err := w.z.drain(io.Discard, nil); err != nil {
			return err
		}
	}
	if w.rootsToo {
		if err := w.v(w, i, e.typ, content, e.hash); err != nil {
			return err
		}
	}
	return w.children(i, e.typ, content, e.hash, 1)
}

// children applies the deltas based on entry i (content, id h) and walks
// theirs in turn. It owns content and releases it once its last delta is
// applied.
func (w *walker) children(i int32, t plumbing.ObjectType, content []byte, h plumbing.Hash, depth int) error {
	kids := w.c.kidsOf(i, h)
	if len(kids) > 0 && depth > w.c.lim.MaxDeltaDepth {
		return tooLarge("a delta chain", "MaxDeltaDepth", int64(w.c.lim.MaxDeltaDepth))
	}
	for n, k := range kids {
		out, kh, err := w.apply(k, t, content)
		if err != nil {
			w.put(out)
			return err
		}
		if n == len(kids)-1 {
			w.put(content) // the last delta based on it is applied
			content = nil
		}
		if out != nil || w.c.hasKids(k) {
			if err := w.children(k, t, out, kh, depth+1); err != nil {
				return err
			}
		}
	}
	if len(kids) == 0 {
		w.put(content)
	}
	return nil
}

// apply applies delta k to base, of type t: the result is hashed and,
// when some delta is based on it (or the visit wants it), kept and
// returned.
func (w *walker) apply(k int32, t plumbing.ObjectType, base []byte) ([]byte, plumbing.Hash, error) {
	if base == nil {
		// Only a base that was held can have deltas applied to it.
		return nil, plumbing.ZeroHash, corrupt("a delta's base could not be read")
	}
	if _, err := w.open(k); err != nil {
		return nil, plumbing.ZeroHash, err
	}
	w.ops.Reset(onlyReader{&w.z})
	src, dst, err := deltaHeader(w.ops)
	if err != nil {
		return nil, plumbing.ZeroHash, corrupt("%v", err)
	}
	if src != uint64(len(base)) {
		return nil, plumbing.ZeroHash, corrupt("a delta expects a base of %d bytes, its base has %d", src, len(base))
	}
	keep := w.c.hasKids(k) || w.hold(t, dst)
	if err := w.c.lim.sizeLimit(t, dst, keep); err != nil {
		return nil, plumbing.ZeroHash, err
	}
	if dst > uint64(w.c.lim.MaxDeltaSize) {
		return nil, plumbing.ZeroHash, tooLarge("a delta's result", "MaxDeltaSize", w.c.lim.MaxDeltaSize)
	}
	if err := w.c.spend.take(dst); err != nil {
		return nil, plumbing.ZeroHash, err
	}
	hs := plumbing.NewHasher(t, int64(dst))
	var out []byte
	var sink io.Writer = hs
	if keep {
		if out, err = w.get(dst); err != nil {
			return nil, plumbing.ZeroHash, err
		}
		sink = io.MultiWriter(hs, appender{&out})
	}
	if err := applyDelta(base, w.ops, dst, sink); err != nil {
		if errors.Is(err, errBadDelta) {
			err = corrupt("%v", err)
		}
		return out, plumbing.ZeroHash, err
	}
	id := hs.Sum()
	switch e := w.c.objs.at(k); {
	case e.hash.IsZero():
		e.hash, e.typ = id, t
	case e.hash != id:
		return out, plumbing.ZeroHash, corrupt("a delta resolves to another object than before")
	}
	if err := w.v(w, k, t, out, id); err != nil {
		return out, plumbing.ZeroHash, err
	}
	return out, id, nil
}
