package mirror

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// Verification, git fsck's and its connectivity check, costs one pass
// over the pack's commits, trees and tags, made while they are in hand
// anyway: whole ones as the pack streams in (scanPack), deltas as they are
// resolved (resolvePack). Each is checked as git fsck would (fsck.go), and
// every object it names is recorded with the type it must have in a links
// file next to the pack, so that memory does not grow with them. Once
// every object of the pack has its id, checkLinks reads the links back:
// each must be in the pack, with that type, or already stored (have;
// none when cloning). The mirror's store only ever receives packs that
// passed, so whatever an object names down to what the store held is
// present, and every ref tip the pack brings is connected. Blobs are not
// parsed.

// checker checks the commits, trees and tags of one received pack.
type checker struct {
	dir  string
	log  *links // the scan's
	mu   sync.Mutex
	logs []*links // every log, the walkers' too
	tags map[plumbing.Hash]plumbing.Hash
}

func newChecker(dir string) (*checker, error) {
	c := &checker{dir: dir, tags: map[plumbing.Hash]plumbing.Hash{}}
	l, err := c.newLog()
	if err != nil {
		return nil, err
	}
	c.log = l
	return c, nil
}

// newLog opens another links file (one per goroutine that checks).
func (c *checker) newLog() (*links, error) {
	f, err := os.CreateTemp(c.dir, "tmp_links_")
	if err != nil {
		return nil, fmt.Errorf("mirror: links: %w", err)
	}
	l := &links{f: f, w: bufio.NewWriterSize(f, 64<<10)}
	c.mu.Lock()
	c.logs = append(c.logs, l)
	c.mu.Unlock()
	return l, nil
}

// check checks one commit, tree or tag (id h) and records its links in
// log.
func (c *checker) check(log *links, t plumbing.ObjectType, content []byte, h plumbing.Hash) error {
	to := func(to plumbing.Hash, want plumbing.ObjectType) error { return log.add(to, want) }
	if t != plumbing.TagObject {
		return checkObject(t, content, to)
	}
	obj, err := checkTag(content, to)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.tags[h] = obj
	c.mu.Unlock()
	return nil
}

// close removes the links files.
func (c *checker) close() {
	for _, l := range c.logs {
		l.close()
	}
}

// checkLinks checks every recorded link against the pack's index and the
// store (see above).
func (c *checker) checkLinks(ix *packIndex, have func(plumbing.Hash) (bool, error)) error {
	outside := map[plumbing.Hash]bool{} // looked up in the store already
	for _, l := range c.logs {
		err := l.each(func(h plumbing.Hash, want plumbing.ObjectType) error {
			if e, ok := ix.find(h); ok {
				if e.typ != want {
					return corrupt("an object names %s as a %s, but it is a %s", h, want, e.typ)
				}
				return nil
			}
			if have != nil {
				ok, seen := outside[h]
				if !seen {
					var err error
					if ok, err = have(h); err != nil {
						return err
					}
					if len(outside) < 1<<16 {
						outside[h] = ok
					}
				}
				if ok {
					return nil
				}
			}
			return corrupt("an object names %s (a %s), which was neither sent nor stored", h, want)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// links is a file of links: 20 bytes of id and a byte of type each.
type links struct {
	f *os.File
	w *bufio.Writer
}

func (l *links) add(h plumbing.Hash, t plumbing.ObjectType) error {
	l.w.Write(h[:])
	return l.w.WriteByte(byte(t))
}

// each calls fn with every link recorded.
func (l *links) each(fn func(plumbing.Hash, plumbing.ObjectType) error) error {
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("mirror: links: %w", err)
	}
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("mirror: links: %w", err)
	}
	r := bufio.NewReaderSize(l.f, 64<<10)
	var rec [21]byte
	for {
		if _, err := io.ReadFull(r, rec[:]); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("mirror: links: %w", err)
		}
		var h plumbing.Hash
		copy(h[:], rec[:20])
		if err := fn(h, plumbing.ObjectType(rec[20])); err != nil {
			return err
		}
	}
}

func (l *links) close() {
	_ = l.f.Close()
	_ = os.Remove(l.f.Name())
}

// packIndex finds the objects of a pack by id: a fan-out table on the
// first two bytes narrows the search to a few entries.
type packIndex struct {
	objs  *entries
	order []int32 // entry indexes sorted by id
	fan   []int32 // order[fan[p]:fan[p+1]] start with the two bytes p
}

func newPackIndex(objs *entries, order []int32) *packIndex {
	x := &packIndex{objs: objs, order: order, fan: make([]int32, 1<<16+1)}
	for _, i := range order {
		h := objs.at(i).hash
		x.fan[int(h[0])<<8|int(h[1])+1]++
	}
	for p := 1; p < len(x.fan); p++ {
		x.fan[p] += x.fan[p-1]
	}
	return x
}

func (x *packIndex) find(h plumbing.Hash) (*entry, bool) {
	p := int(h[0])<<8 | int(h[1])
	lo, hi := x.fan[p], x.fan[p+1]
	for lo < hi {
		mid := int32(uint32(lo+hi) >> 1)
		e := x.objs.at(x.order[mid])
		switch c := bytes.Compare(e.hash[2:], h[2:]); {
		case c == 0:
			return e, true
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return nil, false
}

// sortByID orders the entries by id and refuses duplicates: an index
// cannot hold two entries of one id, and git reads such a pack wrong.
func sortByID(objs *entries) ([]int32, error) {
	type key struct {
		hi   uint64
		rest [12]byte
		i    int32
	}
	keys := make([]key, objs.len())
	for i := range keys {
		h := objs.at(int32(i)).hash
		keys[i].hi = binary.BigEndian.Uint64(h[:8])
		copy(keys[i].rest[:], h[8:])
		keys[i].i = int32(i)
	}
	cmp := func(a, b *key) int {
		switch {
		case a.hi < b.hi:
			return -1
		case a.hi > b.hi:
			return 1
		}
		return bytes.Compare(a.rest[:], b.rest[:])
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp(&a, &b) })
	order := make([]int32, len(keys))
	for n := range keys {
		order[n] = keys[n].i
		if n > 0 && cmp(&keys[n-1], &keys[n]) == 0 {
			return nil, corrupt("the pack holds object %s twice", objs.at(keys[n].i).hash)
		}
	}
	return order, nil
}
