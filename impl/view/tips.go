package view

import (
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
)

// tipIndex maps a commit to the non-trunk branches whose tip it is (the
// ancestry inference asks it at every commit it visits). A snapshot made by
// patching its predecessor shares the predecessor's base map and records
// the branches moved since in a small overlay, so a patch costs the moved
// branches rather than a copy of the whole map.
type tipIndex struct {
	base    map[plumbing.Hash][]string // shared, read-only; names sorted
	moved   map[string]plumbing.Hash   // branch -> its tip now, for branches moved since base
	movedTo map[plumbing.Hash][]string // tip -> branches moved there since base
}

// maxOverlay is the overlay size past which with flattens the index.
const maxOverlay = 4096

// at lists the branches whose tip is c, sorted.
func (t *tipIndex) at(c plumbing.Hash) []string {
	if t == nil {
		return nil
	}
	if len(t.moved) == 0 {
		return t.base[c]
	}
	var out []string
	for _, name := range t.base[c] {
		if now, moved := t.moved[name]; !moved || now == c {
			out = append(out, name)
		}
	}
	for _, name := range t.movedTo[c] {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// with returns the index after the given branches moved to new tips.
func (t *tipIndex) with(tips map[string]plumbing.Hash) *tipIndex {
	n := &tipIndex{base: t.base, moved: make(map[string]plumbing.Hash, len(t.moved)+len(tips)), movedTo: map[plumbing.Hash][]string{}}
	for name, h := range t.moved {
		n.moved[name] = h
	}
	for name, h := range tips {
		n.moved[name] = h
	}
	for name, h := range n.moved {
		n.movedTo[h] = append(n.movedTo[h], name)
	}
	if len(n.moved) > maxOverlay {
		return n.flatten()
	}
	return n
}

// flatten folds the overlay into a new base map.
func (t *tipIndex) flatten() *tipIndex {
	base := make(map[plumbing.Hash][]string, len(t.base))
	for c, names := range t.base {
		for _, name := range names {
			if _, moved := t.moved[name]; !moved {
				base[c] = append(base[c], name)
			}
		}
	}
	for name, h := range t.moved {
		base[h] = append(base[h], name)
	}
	for c := range base {
		slices.Sort(base[c])
	}
	return &tipIndex{base: base}
}
