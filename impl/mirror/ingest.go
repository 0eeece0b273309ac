package mirror

import (
	"bufio"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"
)

// receiveOpts say what receivePack checks and shows.
type receiveOpts struct {
	lim Limits
	// obs, when not nil, is shown the objects it wants as they are
	// resolved (Config.Seen).
	obs *observer
	// verify parses every commit, tree and tag as git fsck would and
	// checks that every object one names is in the pack or stored (have);
	// off only for packs this package encodes itself from its own store.
	verify bool
	// have reports whether an object outside the pack is stored; nil: no
	// object is (a clone).
	have func(plumbing.Hash) (bool, error)
	// wants must all be in the pack.
	wants []plumbing.Hash
	// keepIDs returns the pack's object ids (newPack.ids): a quarantine
	// reads only what it holds.
	keepIDs bool
}

// newPack is a pack received by receivePack: stored, indexed and checked.
type newPack struct {
	hash plumbing.Hash // objects/pack/pack-<hash>.{pack,idx}
	// tags maps every annotated tag of the pack to the object it names
	// (for peeled refs).
	tags map[plumbing.Hash]plumbing.Hash
	// wanted are the types of the wanted objects.
	wanted map[plumbing.Hash]plumbing.ObjectType
	// ids are the pack's objects, sorted, with receiveOpts.keepIDs.
	ids []plumbing.Hash
}

// receivePack stores the pack read from r in packDir as
// pack-<checksum>.pack, checks it and writes its index (see pack.go,
// resolve.go and verify.go): one streaming read that stores the pack and
// hashes its whole objects; the delta chains resolved from the stored
// file, on all cores, within the memory budget; the index sorted, with
// duplicates refused; then, with opts.verify, the commits, trees and tags
// checked. Only then is the pack renamed into place and its index written
// (the .idx last, since readers find packs by it). On any failure nothing
// is left in packDir.
func receivePack(packDir string, r io.Reader, opts receiveOpts) (newPack, error) {
	lim := opts.lim.orDefault()
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

	var chk *checker
	if opts.verify {
		if chk, err = newChecker(packDir); err != nil {
			return newPack{}, err
		}
		defer chk.close()
	}
	spend := newBudget(lim.MaxInflated)
	bw := bufio.NewWriterSize(f, 1<<20)
	s, err := scanPack(r, bw, lim, spend, opts.obs, chk)
	if err != nil {
		return newPack{}, err
	}
	if err := bw.Flush(); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	if err := f.Sync(); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	if err := f.Close(); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}

	c, err := newChains(tmp, s, lim, spend, chk)
	if err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	defer c.close()
	if err := resolvePack(c, opts.obs); err != nil {
		return newPack{}, err
	}
	order, err := sortByID(&s.objs)
	if err != nil {
		return newPack{}, err
	}
	np := newPack{hash: s.checksum, wanted: make(map[plumbing.Hash]plumbing.ObjectType, len(opts.wants))}
	ix := newPackIndex(&s.objs, order)
	for _, w := range opts.wants {
		e, ok := ix.find(w)
		if !ok {
			return newPack{}, corrupt("the pack lacks the wanted object %s", w)
		}
		np.wanted[w] = e.typ
	}
	if chk != nil {
		if err := chk.checkLinks(ix, opts.have); err != nil {
			return newPack{}, err
		}
		np.tags = chk.tags
	}
	if opts.keepIDs {
		np.ids = make([]plumbing.Hash, len(order))
		for n, i := range order {
			np.ids[n] = s.objs.at(i).hash
		}
	}

	base := filepath.Join(packDir, "pack-"+s.checksum.String())
	if err := os.Chmod(tmp, 0o444); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	if err := os.Rename(tmp, base+".pack"); err != nil {
		return newPack{}, fmt.Errorf("mirror: store pack: %w", err)
	}
	done = true
	if err := writeIndex(base+".idx", ix, s.checksum); err != nil {
		_ = os.Remove(base + ".pack")
		return newPack{}, err
	}
	if err := syncDir(packDir); err != nil {
		return newPack{}, err
	}
	return np, nil
}

// resolvePack computes the id of every delta of a scanned pack (see
// resolve.go), and checks the commits, trees and tags among them when
// c has a checker. A delta left unresolved names a base the pack does not
// hold (a thin pack) or one that cannot be read.
func resolvePack(c *chains, obs *observer) error {
	var roots []int32
	for i := range c.objs.len() {
		e := c.objs.at(int32(i))
		if e.kind != kindWhole {
			continue
		}
		if c.start[i+1] > c.start[i] || (c.byBase != nil && len(c.byBase[e.hash]) > 0) {
			roots = append(roots, int32(i))
		}
	}
	show := func(w *walker, _ int32, t plumbing.ObjectType, content []byte, h plumbing.Hash) error {
		if content == nil {
			return nil
		}
		obs.show(h, t, content)
		if w.log != nil && isMeta(t) {
			return c.chk.check(w.log, t, content, h)
		}
		return nil
	}
	hold := func(t plumbing.ObjectType, size uint64) bool {
		return obs.wants(t, int64(size)) || (c.chk != nil && isMeta(t))
	}
	if err := c.walk(roots, show, false, hold); err != nil {
		return err
	}
	for i := range c.objs.len() {
		if c.objs.at(int32(i)).hash.IsZero() {
			return corrupt("a delta's base is not in the pack (a thin pack, or a delta chain with no whole object at its start)")
		}
	}
	return nil
}

// writeIndex writes a version 2 pack index, what git index-pack writes:
// header, fan-out, ids, CRCs, 31-bit offsets (with the top bit naming an
// entry of the 64-bit table for larger ones), the pack checksum and the
// index's own checksum. It is written atomically (temporary file, fsync,
// rename).
func writeIndex(path string, ix *packIndex, packSum plumbing.Hash) error {
	f, err := os.CreateTemp(filepath.Dir(path), "tmp_idx_")
	if err != nil {
		return fmt.Errorf("mirror: write index: %w", err)
	}
	sum := sha1.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 256<<10)
	var b4 [4]byte
	put32 := func(v uint32) {
		binary.BigEndian.PutUint32(b4[:], v)
		bw.Write(b4[:])
	}
	bw.Write([]byte{0xff, 't', 'O', 'c'})
	put32(2)
	var fan [256]uint32
	for _, i := range ix.order {
		fan[ix.objs.at(i).hash[0]]++
	}
	var acc uint32
	for _, n := range fan {
		acc += n
		put32(acc)
	}
	for _, i := range ix.order {
		h := ix.objs.at(i).hash
		bw.Write(h[:])
	}
	for _, i := range ix.order {
		put32(ix.objs.at(i).crc)
	}
	var large []uint64
	for _, i := range ix.order {
		off := ix.objs.at(i).off
		if off > 0x7fffffff {
			put32(0x80000000 | uint32(len(large)))
			large = append(large, off)
			continue
		}
		put32(uint32(off))
	}
	var b8 [8]byte
	for _, off := range large {
		binary.BigEndian.PutUint64(b8[:], off)
		bw.Write(b8[:])
	}
	bw.Write(packSum[:])
	err = bw.Flush()
	if err == nil {
		_, err = f.Write(sum.Sum(nil))
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
