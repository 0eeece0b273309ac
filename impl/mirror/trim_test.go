package mirror

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	// A fresh storage, not read since, holds nothing to release: it is
	// kept (no-op runs read no object).
	fresh := m.objs.st
	m.Trim(true)
	if m.objs.st != fresh {
		t.Fatal("Trim(true) replaced a storage nothing had read")
	}
	again := read()
	for h, v := range before {
		if again[h] != v {
			t.Fatalf("%s reads differently after Trim(true)", h)
		}
	}
	m.Trim(true)
	if m.objs.st == fresh {
		t.Fatal("Trim(true) kept a storage that was read")
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

// openUnder returns the files under dir that this process holds open
// (Linux: /proc/self/fd), and the number of descriptors it holds in all.
func openUnder(t *testing.T, dir string) ([]string, int) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list open files (/proc/self/fd, Linux only): %v", err)
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			out = append(out, target)
		}
	}
	return out, len(fds)
}

// TestOpenPacksDoNotGrowWithSyncs: a mirror synced many times, each Sync
// bringing a new pack whose commits are then read (as a view build does),
// and trimmed after each run as the refresher does (Trim(false): the
// repository is not idle, each run changed its view), holds no pack file
// open between runs, so the descriptors a server holds do not grow by one
// per fetched pack (up to maxPacks per mirror before compaction); and
// every commit still reads after the trims.
func TestOpenPacksDoNotGrowWithSyncs(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	const syncs = 12 // fewer than maxPacks: no compaction closes them
	if syncs >= maxPacks {
		t.Fatalf("maxPacks %d: the test needs more syncs than packs", maxPacks)
	}
	m.Trim(false)
	_, before := openUnder(t, m.Dir())
	var commits []string
	tip := f.main
	most := 0
	for i := range syncs {
		tip = f.up.commit(tip, fmt.Sprintf("c%d", i), map[string][]byte{fmt.Sprintf("f%d.txt", i): []byte(fmt.Sprintf("content %d\n", i))})
		commits = append(commits, tip)
		f.up.set("refs/heads/main", tip)
		res, err := m.Sync(bg())
		if err != nil || !res.Fetched {
			t.Fatalf("Sync %d = %+v, %v", i, res, err)
		}
		rd := m.Reader()
		for _, c := range commits {
			if _, err := rd.Object(plumbing.CommitObject, plumbing.NewHash(c)); err != nil {
				t.Fatalf("commit %s after Sync %d: %v", c, i, err)
			}
		}
		inRun, _ := openUnder(t, m.Dir())
		most = max(most, len(inRun))
		m.Trim(false)
		if open, _ := openUnder(t, m.Dir()); len(open) != 0 {
			t.Fatalf("after Sync %d and Trim, %d files of the mirror are open: %v", i, len(open), open)
		}
	}
	if most < 2 {
		t.Fatalf("at most %d files of the mirror open during a run: the reads opened no packs, the test shows nothing", most)
	}
	_, after := openUnder(t, m.Dir())
	t.Logf("%d syncs: %d descriptors before, %d after; up to %d pack files open during a run", syncs, before, after, most)
	rd := m.Reader()
	for _, c := range commits {
		if _, err := rd.Object(plumbing.CommitObject, plumbing.NewHash(c)); err != nil {
			t.Fatalf("commit %s after the trims: %v", c, err)
		}
	}
}
