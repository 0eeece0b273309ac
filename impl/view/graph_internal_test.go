package view

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/refs"
)

// TestHashSet: the set answers as a map does, in place while small and
// past that.
func TestHashSet(t *testing.T) {
	for _, n := range []int{0, 1, 4, 5, 40} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var s hashSet
			want := map[plumbing.Hash]bool{}
			for i := range n {
				h := plumbing.NewHash(fmt.Sprintf("%040x", i*7+1))
				s.add(h)
				s.add(h) // twice: still one
				want[h] = true
			}
			for i := range 2*n + 2 {
				h := plumbing.NewHash(fmt.Sprintf("%040x", i))
				if got := s.has(h); got != want[h] {
					t.Fatalf("has(%s) = %v, want %v", h, got, want[h])
				}
			}
		})
	}
}

// TestPqueue: items pop newest committer time first, ties in insertion
// (seq) order, as container/heap ordered them.
func TestPqueue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var q pqueue
	var all []qitem
	for i := range 200 {
		it := qitem{when: int64(r.IntN(20)), seq: uint64(i)}
		all = append(all, it)
		q.push(it)
		if i%7 == 6 { // interleave pops with pushes
			got := q.pop()
			best := slices.IndexFunc(all, func(x qitem) bool { return x == got })
			for _, x := range all {
				if x.when > got.when || x.when == got.when && x.seq < got.seq {
					t.Fatalf("popped %+v before %+v", got, x)
				}
			}
			all = slices.Delete(all, best, best+1)
		}
	}
	for len(q) > 0 {
		got := q.pop()
		for _, x := range all {
			if x.when > got.when || x.when == got.when && x.seq < got.seq {
				t.Fatalf("popped %+v before %+v", got, x)
			}
		}
		i := slices.IndexFunc(all, func(x qitem) bool { return x == got })
		all = slices.Delete(all, i, i+1)
	}
	if len(all) != 0 {
		t.Fatalf("%d items never popped", len(all))
	}
}

// TestMetaLookup: the metadata refs of branches asked in name order, out
// of it, absent or symbolic, are found as a lookup of the table would.
func TestMetaLookup(t *testing.T) {
	h := func(i int) plumbing.Hash { return plumbing.NewHash(fmt.Sprintf("%040x", i)) }
	table := refs.NewTable([]refs.Ref{
		{Name: stackitMetaPrefix + "a", Hash: h(1)}, {Name: stackitMetaPrefix + "a/b", Hash: h(2)},
		{Name: stackitMetaPrefix + "c", Hash: h(3)}, {Name: stackitMetaPrefix + "s", Target: "refs/heads/x"},
		{Name: graphiteMetaPrefix + "b", Hash: h(4)}, {Name: graphiteMetaPrefix + "c", Hash: h(5)},
		{Name: "refs/heads/a", Hash: h(6)},
	})
	l := newMetaLookup(table)
	for _, name := range []string{"a", "a/b", "b", "c", "s", "z", "a", "c", "0"} { // in order, then not
		for i, s := range metaSources {
			want, wantOK := table.Hash(s.ref + name)
			if got, ok := l.hash(i, name); got != want || ok != wantOK {
				t.Fatalf("%s%s: %s %v, want %s %v", s.ref, name, got, ok, want, wantOK)
			}
		}
	}
}
