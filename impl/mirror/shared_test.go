package mirror

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// openSharedOK opens mirror id of a second Root on the same directory, as
// another replica sharing the data directory would.
func openSharedOK(t *testing.T, dataDir, id, url string) *Mirror {
	t.Helper()
	r, err := NewRoot(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.OpenShared(id, Config{AllowPrivate: true, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// TestReloadSeesAnotherWriter: a mirror opened by two processes (two
// Mirrors on one directory) stays one mirror: what one Sync wrote, the
// other's Reload reads (refs, and objects from the new pack), after which
// its own Sync is one listing that writes nothing. A Reload that finds
// packed-refs and HEAD as it last saw them reads nothing.
func TestReloadSeesAnotherWriter(t *testing.T) {
	f := newFixture(t)
	data := t.TempDir()
	r, err := NewRoot(data)
	if err != nil {
		t.Fatal(err)
	}
	a := cloneOK(t, r, "m", f.url())
	b := openSharedOK(t, data, "m", f.url())
	if changed, err := b.Reload(); err != nil || changed {
		t.Fatalf("Reload of an unchanged mirror: %v, %v", changed, err)
	}

	tip := f.up.commit(f.main, "c2", map[string][]byte{"new.txt": []byte("new\n")})
	f.up.set("refs/heads/main", tip)
	f.up.set("refs/heads/other", f.feat)
	f.up.symref("refs/heads/other")
	res, err := a.Sync(bg())
	if err != nil || len(res.Changes) != 2 || !res.HeadChanged {
		t.Fatalf("a.Sync = %+v, %v", res, err)
	}

	old := b.Reader()
	changed, err := b.Reload()
	if err != nil || !changed {
		t.Fatalf("b.Reload after a's Sync: %v, %v", changed, err)
	}
	if got, want := tableRefs(b.Refs()), tableRefs(a.Refs()); !reflect.DeepEqual(got, want) {
		t.Fatalf("b's refs after Reload:\n%v\nwant\n%v", got, want)
	}
	if target, _, _ := b.Refs().Head(); target != "refs/heads/other" {
		t.Fatalf("b's HEAD after Reload: %q", target)
	}
	if _, err := b.Reader().Object(plumbing.CommitObject, plumbing.NewHash(tip)); err != nil {
		t.Fatalf("b reads the commit a fetched: %v", err)
	}
	if h, _ := old.Refs().Hash("refs/heads/main"); h.String() != f.main {
		t.Fatalf("a Reader made before Reload changed: main is %s", h)
	}

	before := treeState(t, r.Path())
	for _, m := range []*Mirror{b, a} {
		res, err := m.Sync(bg())
		if err != nil || !reflect.DeepEqual(res, Result{}) {
			t.Fatalf("Sync after the other's: %+v, %v", res, err)
		}
	}
	if after := treeState(t, r.Path()); !reflect.DeepEqual(after, before) {
		t.Fatal("a Sync of what the other replica already fetched wrote to the mirror")
	}
	if changed, err := a.Reload(); err != nil || changed {
		t.Fatalf("a.Reload after its own Sync: %v, %v", changed, err)
	}
	fsck(t, a.Dir())
}

// TestOpenSharedRepairsNothing: Open repairs what an interrupted writer
// left (lock files, temporary packs); OpenShared leaves them to the
// writer holding the lease, which calls Repair.
func TestOpenSharedRepairsNothing(t *testing.T) {
	f := newFixture(t)
	data := t.TempDir()
	r, err := NewRoot(data)
	if err != nil {
		t.Fatal(err)
	}
	m := cloneOK(t, r, "m", f.url())
	dir := m.Dir()
	_ = m.Close()
	leftovers := []string{
		filepath.Join(dir, "packed-refs.lock"),
		filepath.Join(dir, "HEAD.lock"),
		filepath.Join(dir, "objects", "pack", "tmp_pack_123"),
	}
	for _, p := range leftovers {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := openSharedOK(t, data, "m", f.url())
	for _, p := range leftovers {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("OpenShared removed %s", p)
		}
	}
	if err := s.Repair(); err != nil {
		t.Fatal(err)
	}
	for _, p := range leftovers {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("Repair left %s", p)
		}
	}
	for _, p := range leftovers {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	openOK(t, r, "m", f.url())
	for _, p := range leftovers {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("Open left %s", p)
		}
	}
}

// TestReadsSurviveAnotherCompaction: a mirror whose packs another process
// merged and deleted (compact) still finds every object, including those
// of packs it had indexed but never opened.
func TestReadsSurviveAnotherCompaction(t *testing.T) {
	defer func(n int) { maxPacks = n }(maxPacks)
	maxPacks = 3
	f := newFixture(t)
	data := t.TempDir()
	r, err := NewRoot(data)
	if err != nil {
		t.Fatal(err)
	}
	a := cloneOK(t, r, "m", f.url())
	var commits []string
	tip := f.main
	for i := range 2 { // 3 packs, no merge yet
		tip = f.up.commit(tip, fmt.Sprintf("c%d", i), map[string][]byte{fmt.Sprintf("f%d.txt", i): []byte(fmt.Sprintf("%d\n", i))})
		commits = append(commits, tip)
		f.up.set("refs/heads/main", tip)
		if _, err := a.Sync(bg()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(packs(t, a.Dir())); n != 3 {
		t.Fatalf("%d packs before the merge", n)
	}
	b := openSharedOK(t, data, "m", f.url())
	// b indexes every pack but opens only the clone's.
	if _, err := b.Reader().Object(plumbing.CommitObject, plumbing.NewHash(f.main)); err != nil {
		t.Fatal(err)
	}
	tip = f.up.commit(tip, "merge me", map[string][]byte{"m.txt": []byte("m\n")})
	commits = append(commits, tip)
	f.up.set("refs/heads/main", tip)
	if _, err := a.Sync(bg()); err != nil {
		t.Fatal(err)
	}
	if n := len(packs(t, a.Dir())); n > maxPacks {
		t.Fatalf("%d packs: a did not merge", n)
	}
	if _, err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, c := range commits {
		if _, err := b.Reader().Object(plumbing.CommitObject, plumbing.NewHash(c)); err != nil {
			t.Fatalf("b reads %s after a merged the packs: %v", c, err)
		}
	}
}
