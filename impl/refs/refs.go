// Package refs is stackd's one model of a repository's references: an
// immutable, sorted [Table], the [Change] between two tables ([Diff], the
// only ref-diff function), and bounded force detection ([Classify]).
//
// Both kinds of repository produce Tables: a managed mirror keeps its table
// in memory and writes it packed; the operator's working repository has its
// refs re-read into a new table on every refresh. Everything downstream (the
// view, sync results, events) consumes Changes of this one type.
package refs

import (
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// HEAD is the name of the HEAD entry of a Table.
const HEAD = "HEAD"

// Ref is one reference. A symbolic reference (HEAD, refs/remotes/origin/HEAD)
// has Target set and a zero Hash.
type Ref struct {
	Name   string
	Hash   plumbing.Hash
	Target string
}

// Symbolic reports whether r points at another reference.
func (r Ref) Symbolic() bool { return r.Target != "" }

// Table is an immutable set of references sorted by name. The zero value
// and nil are empty tables. Callers must not modify the slices it returns.
type Table struct {
	refs []Ref
}

// NewTable builds a table from refs in any order. When a name occurs more
// than once the last occurrence wins. refs is not retained.
func NewTable(refs []Ref) *Table {
	out := slices.Clone(refs)
	slices.SortStableFunc(out, func(a, b Ref) int { return strings.Compare(a.Name, b.Name) })
	// Keep the last of equal names (stable sort keeps input order).
	w := 0
	for i := range out {
		if i+1 < len(out) && out[i+1].Name == out[i].Name {
			continue
		}
		out[w] = out[i]
		w++
	}
	return &Table{refs: slices.Clip(out[:w])}
}

// NewSortedTable adopts refs that are already sorted by name without
// duplicates (as git's packed-refs file is). It panics when they are not:
// use NewTable for input of unknown order.
func NewSortedTable(refs []Ref) *Table {
	for i := 1; i < len(refs); i++ {
		if refs[i-1].Name >= refs[i].Name {
			panic("refs: NewSortedTable: input not strictly sorted at " + refs[i].Name)
		}
	}
	return &Table{refs: slices.Clip(refs)}
}

// Len is the number of references.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.refs)
}

// All returns every reference, sorted by name (shared, read-only).
func (t *Table) All() []Ref {
	if t == nil {
		return nil
	}
	return t.refs
}

func (t *Table) find(name string) (int, bool) {
	if t == nil {
		return 0, false
	}
	return slices.BinarySearchFunc(t.refs, name, func(r Ref, n string) int { return strings.Compare(r.Name, n) })
}

// Ref returns the reference called name.
func (t *Table) Ref(name string) (Ref, bool) {
	i, ok := t.find(name)
	if !ok {
		return Ref{}, false
	}
	return t.refs[i], true
}

// Hash returns the hash of the direct reference called name; false for a
// symbolic or missing one.
func (t *Table) Hash(name string) (plumbing.Hash, bool) {
	r, ok := t.Ref(name)
	if !ok || r.Symbolic() {
		return plumbing.ZeroHash, false
	}
	return r.Hash, true
}

// Resolve follows symbolic references (at most a few levels) to a hash.
func (t *Table) Resolve(name string) (plumbing.Hash, bool) {
	for range 5 {
		r, ok := t.Ref(name)
		if !ok {
			return plumbing.ZeroHash, false
		}
		if !r.Symbolic() {
			return r.Hash, true
		}
		name = r.Target
	}
	return plumbing.ZeroHash, false
}

// Prefix returns the references whose names start with prefix: a
// contiguous, shared, read-only part of the table.
func (t *Table) Prefix(prefix string) []Ref {
	lo, hi := t.PrefixBounds(prefix)
	return t.All()[lo:hi:hi]
}

// PrefixBounds returns where the references whose names start with prefix
// are in All(): from lo to hi (excluded).
func (t *Table) PrefixBounds(prefix string) (lo, hi int) {
	if t == nil {
		return 0, 0
	}
	cmp := func(r Ref, p string) int { return strings.Compare(r.Name, p) }
	lo, _ = slices.BinarySearchFunc(t.refs, prefix, cmp)
	// The names with the prefix end before the prefix with its last byte
	// raised by one (a scan when that byte cannot be raised).
	hi = lo
	if prefix != "" && prefix[len(prefix)-1] < 0xff {
		upper := prefix[:len(prefix)-1] + string([]byte{prefix[len(prefix)-1] + 1})
		n, _ := slices.BinarySearchFunc(t.refs[lo:], upper, cmp)
		hi += n
	} else {
		for hi < len(t.refs) && strings.HasPrefix(t.refs[hi].Name, prefix) {
			hi++
		}
	}
	return lo, hi
}

// Head returns HEAD: its symbolic target (e.g. "refs/heads/main") or, when
// detached, its hash.
func (t *Table) Head() (target string, detached plumbing.Hash, ok bool) {
	r, ok := t.Ref(HEAD)
	if !ok {
		return "", plumbing.ZeroHash, false
	}
	return r.Target, r.Hash, true
}

// Equal reports whether two tables hold the same references.
func Equal(a, b *Table) bool {
	return slices.Equal(a.All(), b.All())
}

// Kind is what happened to one reference.
type Kind string

// The kinds of change. Their values are the API's RefUpdate.change.
const (
	Created Kind = "created"
	// Updated: the new commit descends from the old one (or the ref does
	// not point at commits, as metadata blobs do).
	Updated Kind = "updated"
	// Forced: the old commit is not an ancestor of the new one, or that
	// could not be shown within the bounds of [Classify].
	Forced  Kind = "forced"
	Deleted Kind = "deleted"
)

// Change is the change of one direct reference between two tables. Old is
// zero for a created ref, New for a deleted one.
type Change struct {
	Ref  string
	Old  plumbing.Hash
	New  plumbing.Hash
	Kind Kind
}

// Diff lists the direct references that differ between old and new, sorted
// by name, restricted to the names keep accepts (nil keeps all). Symbolic
// references are not compared. A modified ref is Updated; Classify tells
// the forced ones apart.
func Diff(old, new *Table, keep func(name string) bool) []Change {
	a, b := old.All(), new.All()
	var out []Change
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var c Change
		switch {
		case j >= len(b) || (i < len(a) && a[i].Name < b[j].Name):
			if !a[i].Symbolic() {
				c = Change{Ref: a[i].Name, Old: a[i].Hash, Kind: Deleted}
			}
			i++
		case i >= len(a) || b[j].Name < a[i].Name:
			if !b[j].Symbolic() {
				c = Change{Ref: b[j].Name, New: b[j].Hash, Kind: Created}
			}
			j++
		default:
			ra, rb := a[i], b[j]
			i++
			j++
			switch {
			case ra.Symbolic() && rb.Symbolic():
			case ra.Symbolic():
				c = Change{Ref: rb.Name, New: rb.Hash, Kind: Created}
			case rb.Symbolic():
				c = Change{Ref: ra.Name, Old: ra.Hash, Kind: Deleted}
			case ra.Hash != rb.Hash:
				c = Change{Ref: ra.Name, Old: ra.Hash, New: rb.Hash, Kind: Updated}
			}
		}
		if c.Kind != "" && (keep == nil || keep(c.Ref)) {
			out = append(out, c)
		}
	}
	return out
}

// Apply returns the table that results from applying changes to t (the
// inverse of Diff: Apply(old, Diff(old, new, nil)) equals new in its direct
// references). Changes may come in any order; a ref changed twice takes
// the last change.
func Apply(t *Table, changes []Change) *Table {
	if len(changes) == 0 {
		return t
	}
	changes = slices.Clone(changes)
	slices.SortStableFunc(changes, func(a, b Change) int { return strings.Compare(a.Ref, b.Ref) })
	a := t.All()
	out := make([]Ref, 0, len(a)+len(changes))
	i := 0
	for _, c := range changes {
		for i < len(a) && a[i].Name < c.Ref {
			out = append(out, a[i])
			i++
		}
		if i < len(a) && a[i].Name == c.Ref {
			i++ // replaced or deleted
		}
		if n := len(out); n > 0 && out[n-1].Name == c.Ref {
			out = out[:n-1] // a later change of the same ref wins
		}
		if c.Kind != Deleted {
			out = append(out, Ref{Name: c.Ref, Hash: c.New})
		}
	}
	out = append(out, a[i:]...)
	return &Table{refs: slices.Clip(out)}
}
