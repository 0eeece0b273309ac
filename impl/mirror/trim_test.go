package mirror

import (
	"io"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// TestTrimEmptiesObjectCache: Trim drops go-git's cached objects of a
// mirror that a read put there, Trim(true) also its storage's pack
// indexes, and every object still reads the same afterwards.
func TestTrimEmptiesObjectCache(t *testing.T) {
	_, url := stacksFixture(t, gittest.Shape{Branches: 20, MetadataEvery: 1, Bare: true})
	r := newRoot(t)
	m := cloneOK(t, r, "m", url)
	var ids []plumbing.Hash
	for _, l := range strings.Split(runGit(t, m.Dir(), nil, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"), "\n") {
		ids = append(ids, plumbing.NewHash(l))
	}
	read := func() map[plumbing.Hash]string {
		out := map[plumbing.Hash]string{}
		rd := m.Reader()
		for _, h := range ids {
			o, err := rd.Object(plumbing.AnyObject, h)
			if err != nil {
				t.Fatalf("%s: %v", h, err)
			}
			out[h] = o.Type().String() + ":" + contents(t, o)
		}
		return out
	}
	cached := func() int {
		n := 0
		for _, h := range ids {
			if _, ok := m.objs.lru.Get(h); ok {
				n++
			}
		}
		return n
	}
	before := read()
	if cached() == 0 {
		t.Fatal("reading every object cached none: the test shows nothing")
	}
	m.Trim(false)
	if n := cached(); n != 0 {
		t.Fatalf("%d objects still cached after Trim", n)
	}
	after := read()
	for h, v := range before {
		if after[h] != v {
			t.Fatalf("%s reads differently after Trim", h)
		}
	}

	// Idle: the storage, with its loaded pack indexes and open packs, is
	// replaced by one that loads them on its first read.
	st := m.objs.st
	m.Trim(false)
	if m.objs.st != st {
		t.Fatal("Trim(false) replaced the storage")
	}
	m.Trim(true)
	if m.objs.st == st {
		t.Fatal("Trim(true) kept the storage and its indexes")
	}
	if n := cached(); n != 0 {
		t.Fatalf("%d objects cached after Trim(true)", n)
	}
	again := read()
	for h, v := range before {
		if again[h] != v {
			t.Fatalf("%s reads differently after Trim(true)", h)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m.Trim(true) // closed: nothing to release, no panic
}

func contents(t *testing.T, o plumbing.EncodedObject) string {
	rc, err := o.Reader()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
