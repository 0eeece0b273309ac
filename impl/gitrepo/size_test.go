package gitrepo_test

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

var _ view.Sizer = (*gitrepo.Repo)(nil)

// allObjects lists every object of r as git sees it: id → size and delta
// base ("" when stored whole or loose).
func allObjects(t *testing.T, r *gittest.Repo) map[string][2]string {
	t.Helper()
	out := r.Git("cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objectsize) %(deltabase)")
	objs := map[string][2]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("cat-file line %q", line)
		}
		base := f[2]
		if strings.Trim(base, "0") == "" {
			base = ""
		}
		objs[f[0]] = [2]string{f[1], base}
	}
	return objs
}

func readRepo(t *testing.T, dir string) *gitrepo.Repo {
	t.Helper()
	w, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := w.Read()
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// TestObjectSize checks ObjectSize against git for every object of
// repositories holding loose objects, whole packed objects and deltas
// (offset deltas, and deltas naming their base by id), and of a clone
// that borrows its objects through objects/info/alternates.
func TestObjectSize(t *testing.T) {
	for _, ofs := range []bool{true, false} {
		t.Run(fmt.Sprintf("offset deltas %v", ofs), func(t *testing.T) { testObjectSize(t, ofs) })
	}
}

func testObjectSize(t *testing.T, ofsDeltas bool) {
	r := gittest.New(t)
	// Similar large files in successive commits, so that the repack
	// stores most of them as deltas.
	text := strings.Repeat("a line of text that repeats\n", 2000)
	for i := range 6 {
		r.Commit(fmt.Sprintf("change %d", i), map[string]string{"big.txt": text + strings.Repeat("x", i) + "\n"})
	}
	r.Git("-c", fmt.Sprintf("repack.useDeltaBaseOffset=%v", ofsDeltas), "repack", "-adq", "--window=10", "--depth=10")
	r.Commit("loose after the repack", map[string]string{"new.txt": "new\n"})

	check := func(t *testing.T, dir string, objs map[string][2]string, withObject bool) {
		repo := readRepo(t, dir)
		var deltas, loose int
		for id, o := range objs {
			got, err := repo.ObjectSize(plumbing.NewHash(id))
			if err != nil {
				t.Errorf("ObjectSize(%s): %v", id, err)
				continue
			}
			if strconv.FormatInt(got, 10) != o[0] {
				t.Errorf("ObjectSize(%s) = %d, git says %s", id, got, o[0])
			}
			if withObject {
				obj, err := repo.Object(plumbing.AnyObject, plumbing.NewHash(id))
				if err != nil || obj.Size() != got {
					t.Errorf("Object(%s): %v, %v; ObjectSize %d", id, obj, err, got)
				}
			}
			if o[1] != "" {
				deltas++
			}
		}
		for _, line := range strings.Split(r.Git("count-objects", "-v"), "\n") {
			if n, ok := strings.CutPrefix(line, "count: "); ok {
				loose, _ = strconv.Atoi(n)
			}
		}
		if deltas == 0 || loose == 0 {
			t.Fatalf("fixture has %d deltas and %d loose objects; want some of each", deltas, loose)
		}
		_, err := repo.ObjectSize(plumbing.NewHash(strings.Repeat("ab", 20)))
		if !errors.Is(err, plumbing.ErrObjectNotFound) {
			t.Errorf("ObjectSize(missing) = %v, want ErrObjectNotFound", err)
		}
	}
	objs := allObjects(t, r)
	t.Run("own objects", func(t *testing.T) { check(t, r.Dir, objs, true) })

	t.Run("alternates", func(t *testing.T) {
		dir := t.TempDir() + "/shared"
		r.Run(r.Dir, "clone", "-q", "--shared", r.Dir, dir)
		c := r.Sibling(dir)
		if got := allObjects(t, c); len(got) != len(objs) {
			t.Fatalf("the shared clone sees %d objects, want %d", len(got), len(objs))
		}
		// go-git's storage does not follow an absolute alternates path
		// out of the repository's directory, so Object does not find
		// these objects; ObjectSize follows git.
		check(t, dir, objs, false)
	})
}

// TestObjectSizeOfAHugeDelta: the size of an object stored as a delta as
// large as the object comes from the delta's first bytes, without
// inflating the delta.
func TestObjectSizeOfAHugeDelta(t *testing.T) {
	r := gittest.New(t)
	const n = 64 << 20
	base := []byte(`{"parentBranchName":"main"`)
	_, target := r.DeltaPack("blob", base, n, ' ')
	repo := readRepo(t, r.Dir)
	var size int64
	var err error
	alloc := allocated(func() { size, err = repo.ObjectSize(plumbing.NewHash(target)) })
	if err != nil || size != int64(len(base))+n {
		t.Fatalf("ObjectSize = %d, %v; want %d", size, err, len(base)+n)
	}
	t.Logf("ObjectSize of a %d MiB delta allocated %d KiB", n>>20, alloc>>10)
	if alloc > 1<<20 {
		t.Errorf("ObjectSize allocated %d bytes for an object of %d: it read the delta", alloc, n)
	}
}

// allocated is how many bytes the heap allocated while f ran
// (runtime.MemStats.TotalAlloc only grows, so nothing allocated and
// freed in between is missed).
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// BenchmarkObjectSize sizes every commit of a 2,000-branch repository,
// repacked as git gc would (some commits are deltas), with a freshly
// opened Repo, as a first view build does before reading each commit. Its
// "x-object" metric is the ratio to reading the same commits with Object,
// also cold, timed in the same run: what ObjectSize adds to a first
// build's reads.
func BenchmarkObjectSize(b *testing.B) {
	dir := b.TempDir() + "/repo"
	if err := gittest.BuildStacks(dir, gittest.Shape{Branches: 2000, TrunkCommits: 500, MetadataEvery: 1}); err != nil {
		b.Fatal(err)
	}
	// Repacked as git gc would, so that some commits are deltas.
	if out, err := exec.Command("git", "-C", dir, "repack", "-adfq").CombinedOutput(); err != nil {
		b.Fatalf("repack: %v\n%s", err, out)
	}
	out, err := exec.Command("git", "-C", dir, "rev-list", "--all").Output()
	if err != nil {
		b.Fatal(err)
	}
	var commits []plumbing.Hash
	for _, id := range strings.Fields(string(out)) {
		commits = append(commits, plumbing.NewHash(id))
	}
	cold := func(f func(repo *gitrepo.Repo, h plumbing.Hash) error) time.Duration {
		w, err := gitrepo.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		repo, err := w.Read()
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for _, h := range commits {
			if err := f(repo, h); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	read := func(repo *gitrepo.Repo, h plumbing.Hash) error {
		_, err := repo.Object(plumbing.AnyObject, h)
		return err
	}
	size := func(repo *gitrepo.Repo, h plumbing.Hash) error {
		_, err := repo.ObjectSize(h)
		return err
	}
	var reads, sizes time.Duration
	b.ResetTimer()
	for b.Loop() {
		// Alternate, so that both see the same machine.
		reads += cold(read)
		sizes += cold(size)
	}
	b.ReportMetric(float64(sizes)/float64(reads), "x-object")
	b.ReportMetric(float64(len(commits)), "commits")
}
