package mirror

import (
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// verifyPack checks the commits, trees and tags of a resolved pack as git
// fsck would (fsck.go), and that every object they name is in the pack,
// with the type the naming object says, or already stored (have; nil when
// nothing is, as in a clone). That is git's connectivity check: the
// mirror's store only ever receives packs that passed it, so whatever an
// object names down to what the store held is present, and every ref tip
// the pack brings is connected. Blobs are not read at all.
//
// It returns the object each annotated tag of the pack names.
func verifyPack(c *chains, ix packIndex, have func(plumbing.Hash) (bool, error)) (map[plumbing.Hash]plumbing.Hash, error) {
	var roots []int32
	for i := range c.objs.len() {
		if e := c.objs.at(int32(i)); e.kind == kindWhole && isMeta(e.typ) {
			roots = append(roots, int32(i))
		}
	}
	var mu sync.Mutex
	tags := map[plumbing.Hash]plumbing.Hash{}
	to := func(h plumbing.Hash, want plumbing.ObjectType) error {
		if e, ok := ix.find(h); ok {
			if e.typ != want {
				return corrupt("an object names %s as a %s, but it is a %s", h, want, e.typ)
			}
			return nil
		}
		if have != nil {
			ok, err := have(h)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
		}
		return corrupt("an object names %s (a %s), which was neither sent nor stored", h, want)
	}
	check := func(_ int32, t plumbing.ObjectType, content []byte, h plumbing.Hash) error {
		if t != plumbing.TagObject {
			return checkObject(t, content, to)
		}
		obj, err := checkTag(content, to)
		if err != nil {
			return err
		}
		mu.Lock()
		tags[h] = obj
		mu.Unlock()
		return nil
	}
	hold := func(t plumbing.ObjectType, _ uint64) bool { return isMeta(t) }
	if err := c.walk(roots, check, true, hold); err != nil {
		return nil, err
	}
	return tags, nil
}
