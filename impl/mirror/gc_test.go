package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// seededNoise returns n deterministic, incompressible bytes that differ
// for every seed (so that no two blobs deltify against each other).
func seededNoise(seed uint64, n int) []byte {
	return xorshiftBytes(0x9e3779b97f4a7c15^(seed+1)*0xbf58476d1ce4e5b9, n)
}

// churn is an upstream whose branches are all rewritten on every round,
// as restacking does: refs/heads/b<i> and refs/stackit/b<i> move to a new
// commit on main holding a big unique blob, refs/branch-metadata/b<i> to
// a new blob, and refs/stackit/tag<i> to a new annotated tag of it.
type churn struct {
	t        *testing.T
	up       *upstream
	addr     string
	main     string
	branches int
	blobSize int
}

func newChurn(t *testing.T, branches, blobSize int) *churn {
	t.Helper()
	base := t.TempDir()
	up := newUpstream(t, base, "up.git")
	main := up.commit("", "c1", map[string][]byte{"a.txt": []byte("a\n")})
	up.set("refs/heads/main", main)
	return &churn{t: t, up: up, addr: startDaemon(t, base), main: main, branches: branches, blobSize: blobSize}
}

func (c *churn) url() string { return "git://" + c.addr + "/up.git" }

// push rewrites every branch and returns the objects that exist only in
// this round (commits, trees, blobs, tags).
func (c *churn) push(round int) []string {
	c.t.Helper()
	var objs []string
	for i := range c.branches {
		big := seededNoise(uint64(round*1000+i), c.blobSize)
		commit := c.up.commit(c.main, fmt.Sprintf("r%d b%d", round, i), map[string][]byte{"a.txt": []byte("a\n"), "big.bin": big})
		tree := runGit(c.t, c.up.dir, nil, "rev-parse", commit+"^{tree}")
		meta := c.up.blob(fmt.Sprintf(`{"parent":"main","round":%d}`, round))
		if i > 0 {
			meta = c.up.blob(fmt.Sprintf(`{"parent":"main","round":%d,"b":%d}`, round, i))
		}
		tag := runGit(c.t, c.up.dir, []byte(fmt.Sprintf("object %s\ntype commit\ntag r%db%d\ntagger T <t@example.com> 1600000000 +0000\n\nround\n", commit, round, i)), "mktag")
		c.up.set(fmt.Sprintf("refs/heads/b%d", i), commit)
		c.up.set(fmt.Sprintf("refs/stackit/b%d", i), commit)
		c.up.set(fmt.Sprintf("refs/branch-metadata/b%d", i), meta)
		c.up.set(fmt.Sprintf("refs/stackit/tag%d", i), tag)
		objs = append(objs, commit, tree, c.up.blob(string(big)), meta, tag)
	}
	return objs
}

// reachable returns how many objects git finds reachable from the
// mirrored refs of the upstream.
func (c *churn) reachable() int {
	c.t.Helper()
	out := runGit(c.t, c.up.dir, nil, "rev-list", "--objects", "--branches", "--glob=refs/stackit/*", "--glob=refs/branch-metadata/*")
	return len(strings.Split(out, "\n"))
}

// packTotal is the total size of the mirror's packs.
func packTotal(t *testing.T, dir string) int64 {
	t.Helper()
	n, err := packBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stored returns every object in the mirror's pack indexes.
func stored(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, p := range packs(t, dir) {
		for _, id := range idxObjects(t, p) {
			out[id] = true
		}
	}
	return out
}

// recorded returns the pack size in stackd-gc.json (-1 without one).
func recorded(t *testing.T, dir string) int64 {
	t.Helper()
	rec, ok := readGCRecord(dir)
	if !ok {
		return -1
	}
	return rec.PackBytes
}

// assertComplete checks that the mirror is fsck-clean and holds exactly
// what git finds reachable from the upstream's mirrored refs, and that
// the given objects are stored.
func assertComplete(t *testing.T, c *churn, m *Mirror, present ...[]string) {
	t.Helper()
	fsck(t, m.Dir())
	out := runGit(t, m.Dir(), nil, "rev-list", "--objects", "--all")
	if got, want := len(strings.Split(out, "\n")), c.reachable(); got != want {
		t.Fatalf("the mirror reaches %d objects, the upstream %d", got, want)
	}
	have := stored(t, m.Dir())
	for _, objs := range present {
		for _, id := range objs {
			if !have[id] {
				t.Fatalf("object %s is gone", id)
			}
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "tmp_*")); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

// setGCStage installs a gcStage hook for one test.
func setGCStage(t *testing.T, fn func(string) error) {
	t.Helper()
	prev := gcStage
	gcStage = fn
	t.Cleanup(func() { gcStage = prev })
}

// TestGCDropsRewrittenObjects: branches rewritten on every Sync (restacks)
// leave garbage; once the packs have grown by gcGrowth, a Sync that
// fetched rewrites the store to what the refs of the current and the
// previous table reach. The packs shrink well below their size before the
// collection, the mirror stays fsck-clean and complete (annotated tags,
// blobs as ref targets), the objects of older rounds are gone, and readers
// keep reading while the packs are swapped (run with -race).
func TestGCDropsRewrittenObjects(t *testing.T) {
	c := newChurn(t, 6, 32<<10)
	var rounds [][]string
	rounds = append(rounds, c.push(0))
	r := newRoot(t)
	m := cloneOK(t, r, "m", c.url())
	if got, want := recorded(t, m.Dir()), packTotal(t, m.Dir()); got != want {
		t.Fatalf("clone recorded %d pack bytes, the packs hold %d", got, want)
	}
	fetchedTotal := packTotal(t, m.Dir())

	var preGC int64
	setGCStage(t, func(stage string) error {
		if stage == "walked" {
			preGC = packTotal(t, m.Dir())
		}
		return nil
	})

	first := m.Reader()
	stable := plumbing.NewHash(c.main)
	stop := make(chan struct{})
	readErr := make(chan error, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, rd := range []*Reader{first, m.Reader()} {
					if _, err := rd.Object(plumbing.CommitObject, stable); err != nil {
						readErr <- err
						return
					}
				}
			}
		}()
	}

	collected := 0
	for i := 1; i <= 8; i++ {
		rounds = append(rounds, c.push(i))
		before := packTotal(t, m.Dir())
		preGC = 0
		res, err := m.Sync(bg())
		if err != nil || !res.Fetched || res.GCErr != nil || res.CompactErr != nil {
			t.Fatalf("Sync %d = %+v, %v", i, res, err)
		}
		after := packTotal(t, m.Dir())
		if !res.Collected {
			fetchedTotal += after - before
			if preGC != 0 {
				t.Fatalf("Sync %d wrote a pack without collecting", i)
			}
			continue
		}
		collected++
		fetchedTotal += preGC - before
		if preGC == 0 || float64(after) > 0.75*float64(preGC) {
			t.Fatalf("Sync %d collected: %d pack bytes before, %d after", i, preGC, after)
		}
		if n := len(packs(t, m.Dir())); n != 1 {
			t.Fatalf("%d packs after a collection", n)
		}
		if got := recorded(t, m.Dir()); got != after {
			t.Fatalf("recorded %d pack bytes, the packs hold %d", got, after)
		}
		assertComplete(t, c, m, rounds[i-1], rounds[i])
		have := stored(t, m.Dir())
		for j := 0; j < i-1; j++ {
			for _, id := range rounds[j] {
				if have[id] {
					t.Fatalf("Sync %d kept %s of round %d", i, id, j)
				}
			}
		}
	}
	close(stop)
	wg.Wait()
	close(readErr)
	for err := range readErr {
		t.Fatal(err)
	}
	if collected < 2 {
		t.Fatalf("%d collections in 8 rewrites of every branch", collected)
	}
	if total := packTotal(t, m.Dir()); float64(total) > 0.5*float64(fetchedTotal) {
		t.Fatalf("%d pack bytes, %d without collections", total, fetchedTotal)
	}
	assertMirrors(t, m, c.up)

	// A restart reads every ref's objects.
	m.Close()
	again := openOK(t, r, "m", c.url())
	for _, ref := range again.Refs().All() {
		if !ref.Symbolic() {
			if _, err := again.Reader().Object(plumbing.AnyObject, ref.Hash); err != nil {
				t.Fatalf("%s after a restart: %v", ref.Name, err)
			}
		}
	}
}

// TestGCGrowingRepositoryRewritesNothing: a repository that only grows
// never has its store rewritten: the Syncs past the growth threshold walk
// the refs and record the new size, and packs are added and merged as
// before (see TestCompaction).
func TestGCGrowingRepositoryRewritesNothing(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	listed := 0
	setGCStage(t, func(stage string) error {
		if stage == "listed" {
			listed++ // a walk
			return nil
		}
		t.Errorf("a growing repository reached gc stage %q", stage)
		return nil
	})
	tip := f.main
	rec := recorded(t, m.Dir())
	walks := 0
	for i := range 6 {
		tip = f.up.commit(tip, fmt.Sprintf("g%d", i), map[string][]byte{fmt.Sprintf("g%d.bin", i): seededNoise(uint64(i), 16<<10)})
		f.up.set("refs/heads/main", tip)
		res, err := m.Sync(bg())
		if err != nil || !res.Fetched || res.Collected || res.GCErr != nil {
			t.Fatalf("Sync %d = %+v, %v", i, res, err)
		}
		total := packTotal(t, m.Dir())
		if n := len(packs(t, m.Dir())); n != i+2 {
			t.Fatalf("%d packs after %d Syncs", n, i+1)
		}
		switch got := recorded(t, m.Dir()); {
		case float64(total) >= gcGrowth*float64(rec):
			if got != total {
				t.Fatalf("Sync %d past the threshold recorded %d, the packs hold %d", i, got, total)
			}
			walks++
		case got != rec:
			t.Fatalf("Sync %d below the threshold recorded %d (was %d)", i, got, rec)
		}
		rec = recorded(t, m.Dir())
	}
	if walks == 0 || listed != walks {
		t.Fatalf("the threshold was reached %d times, the refs walked %d times", walks, listed)
	}
	assertMirrors(t, m, f.up)
	fsck(t, m.Dir())
}

// TestGCWithoutRecord: a mirror without stackd-gc.json (from before
// collections existed) records its size on its first fetch and collects
// nothing then; later growth collects.
func TestGCWithoutRecord(t *testing.T) {
	c := newChurn(t, 4, 32<<10)
	r0 := c.push(0)
	r := newRoot(t)
	m := cloneOK(t, r, "m", c.url())
	r1 := c.push(1)
	if res, err := m.Sync(bg()); err != nil || res.Collected {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	if err := os.Remove(filepath.Join(m.Dir(), gcFile)); err != nil {
		t.Fatal(err)
	}
	r2 := c.push(2)
	res, err := m.Sync(bg())
	if err != nil || res.Collected || res.GCErr != nil {
		t.Fatalf("first Sync without a record = %+v, %v", res, err)
	}
	if got, want := recorded(t, m.Dir()), packTotal(t, m.Dir()); got != want {
		t.Fatalf("recorded %d pack bytes, the packs hold %d", got, want)
	}
	assertComplete(t, c, m, r0, r1, r2) // round 0 is garbage, and kept
	for i := 3; ; i++ {
		c.push(i)
		res, err := m.Sync(bg())
		if err != nil || res.GCErr != nil {
			t.Fatalf("Sync = %+v, %v", res, err)
		}
		if res.Collected {
			break
		}
		if i > 6 {
			t.Fatal("never collected")
		}
	}
	if have := stored(t, m.Dir()); have[r0[0]] {
		t.Fatal("round 0 survived the collection")
	}
}

// TestNoopSyncPastGCThreshold: a no-op Sync writes nothing even when the
// packs are far past the collection threshold: only a Sync that fetched
// looks at it.
func TestNoopSyncPastGCThreshold(t *testing.T) {
	c := newChurn(t, 2, 4<<10)
	c.push(0)
	r := newRoot(t)
	m := cloneOK(t, r, "m", c.url())
	c.push(1)
	if _, err := m.Sync(bg()); err != nil {
		t.Fatal(err)
	}
	if err := writeGCRecord(m.Dir(), 1); err != nil {
		t.Fatal(err)
	}
	setGCStage(t, func(stage string) error {
		t.Errorf("a no-op Sync reached gc stage %q", stage)
		return nil
	})
	before := treeState(t, r.Path())
	for range 2 {
		if res, err := m.Sync(bg()); err != nil || !reflect.DeepEqual(res, Result{}) {
			t.Fatalf("no-op Sync = %+v, %v", res, err)
		}
	}
	if after := treeState(t, r.Path()); !reflect.DeepEqual(after, before) {
		t.Fatal("a no-op Sync wrote to the mirror")
	}
}

// TestGCSharedReader: another process's Mirror on the same directory,
// opened before the collections, reads every object reachable from its
// table one Sync behind (before its Reload: the previous table's objects
// are kept), and every object reachable from the current refs after its
// Reload, although the packs it had listed and opened were deleted.
func TestGCSharedReader(t *testing.T) {
	c := newChurn(t, 4, 32<<10)
	c.push(0)
	data := t.TempDir()
	r, err := NewRoot(data)
	if err != nil {
		t.Fatal(err)
	}
	a := cloneOK(t, r, "m", c.url())
	b := openSharedOK(t, data, "m", c.url())
	if _, err := b.Reader().Object(plumbing.CommitObject, plumbing.NewHash(c.main)); err != nil {
		t.Fatal(err)
	}
	readAll := func(rd *Reader, what string) {
		t.Helper()
		var tips []string
		for _, ref := range rd.Refs().All() {
			if !ref.Symbolic() {
				tips = append(tips, ref.Hash.String())
			}
		}
		out := runGit(t, a.Dir(), nil, append([]string{"rev-list", "--objects"}, tips...)...)
		n := 0
		for _, line := range strings.Split(out, "\n") {
			id, _, _ := strings.Cut(line, " ")
			if _, err := rd.Object(plumbing.AnyObject, plumbing.NewHash(id)); err != nil {
				t.Fatalf("b reads %s of its %s table: %v", id, what, err)
			}
			n++
		}
		if n < len(tips) {
			t.Fatalf("read %d objects", n)
		}
	}
	collected := 0
	for i := 1; i <= 6; i++ {
		c.push(i)
		res, err := a.Sync(bg())
		if err != nil || res.GCErr != nil {
			t.Fatalf("a.Sync = %+v, %v", res, err)
		}
		if res.Collected {
			collected++
		}
		readAll(b.Reader(), "previous")
		if changed, err := b.Reload(); err != nil || !changed {
			t.Fatalf("b.Reload = %v, %v", changed, err)
		}
		// b's Reload released the packs a deleted, which b had open:
		// their disk space is free.
		if open := deletedPacksOpen(t, a.Dir()); len(open) != 0 {
			t.Fatalf("deleted packs still open after b's Reload: %v", open)
		}
		readAll(b.Reader(), "current")
	}
	if collected == 0 {
		t.Fatal("a never collected")
	}
	fsck(t, a.Dir())
}

// deletedPacksOpen returns the deleted files under dir that this process
// still holds open (Linux: /proc/self/fd).
func deletedPacksOpen(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list open files (not Linux?): %v", err)
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir) && strings.HasSuffix(target, "(deleted)") {
			out = append(out, target)
		}
	}
	return out
}

// TestGCFailureLeavesConsistentMirror: a collection that fails or is
// cancelled at any stage leaves a complete, fsck-clean mirror (at worst
// with objects in two packs) and the Sync that ran it succeeds, with the
// failure in Result.GCErr. A cancelled collection is tried again after
// the next fetch; a failed one after the next growth (its size is
// recorded). The next collection then succeeds.
func TestGCFailureLeavesConsistentMirror(t *testing.T) {
	injected := errors.New("injected")
	tests := []struct {
		name     string
		fail     func(stage string, cancel context.CancelFunc) error
		cancel   bool
		newPack  bool // the new pack was stored before the failure
		brokenRf bool // a loose ref to a missing object: the walk fails
	}{
		{name: "failure before writing", fail: func(s string, _ context.CancelFunc) error {
			if s == "walked" {
				return injected
			}
			return nil
		}},
		{name: "failure before deleting", newPack: true, fail: func(s string, _ context.CancelFunc) error {
			if s == "written" {
				return injected
			}
			return nil
		}},
		{name: "cancelled during the walk", cancel: true, fail: func(s string, cancel context.CancelFunc) error {
			if s == "listed" {
				cancel()
			}
			return nil
		}},
		{name: "cancelled before writing", cancel: true, fail: func(s string, cancel context.CancelFunc) error {
			if s == "walked" {
				cancel()
			}
			return nil
		}},
		{name: "cancelled before deleting", cancel: true, newPack: true, fail: func(s string, cancel context.CancelFunc) error {
			if s == "written" {
				cancel()
			}
			return nil
		}},
		{name: "out of time during the walk", fail: func(s string, _ context.CancelFunc) error {
			if s == "listed" {
				return context.DeadlineExceeded
			}
			return nil
		}},
		{name: "missing object", brokenRf: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChurn(t, 3, 16<<10)
			r0 := c.push(0)
			r := newRoot(t)
			var logged bytes.Buffer
			var logMu sync.Mutex
			m, _, err := r.Clone(bg(), "m", Config{AllowPrivate: true, URL: c.url(), Log: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logged}, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Close() })
			r1 := c.push(1)
			if _, err := m.Sync(bg()); err != nil {
				t.Fatal(err)
			}
			r2 := c.push(2) // round 0 is now garbage
			broken := filepath.Join(m.Dir(), "refs", "tags", "broken")
			if tt.brokenRf {
				if err := os.WriteFile(broken, []byte(strings.Repeat("ab", 20)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := writeGCRecord(m.Dir(), 1); err != nil { // past the threshold
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(bg())
			defer cancel()
			if tt.fail != nil {
				setGCStage(t, func(s string) error { return tt.fail(s, cancel) })
			}
			nPacks := len(packs(t, m.Dir()))
			res, err := m.Sync(ctx)
			if err != nil || !res.Fetched || res.Collected || res.GCErr == nil {
				t.Fatalf("Sync = %+v, %v", res, err)
			}
			if tt.cancel != errors.Is(res.GCErr, context.Canceled) {
				t.Fatalf("GCErr = %v", res.GCErr)
			}
			logMu.Lock()
			line := logged.String()
			logMu.Unlock()
			if !strings.Contains(line, "mirror maintenance failed") || !strings.Contains(line, "op=gc") {
				t.Fatalf("the failure was not logged: %q", line)
			}
			if tt.brokenRf {
				if err := os.Remove(broken); err != nil {
					t.Fatal(err)
				}
			}
			want := nPacks + 1 // the fetched pack
			if tt.newPack {
				want++
			}
			if n := len(packs(t, m.Dir())); n != want {
				t.Fatalf("%d packs, want %d", n, want)
			}
			assertComplete(t, c, m, r0, r1, r2) // nothing removed
			switch got := recorded(t, m.Dir()); {
			case tt.cancel && got != 1:
				t.Fatalf("a cancelled collection recorded %d pack bytes", got)
			case !tt.cancel && got != packTotal(t, m.Dir()):
				t.Fatalf("a failed collection recorded %d pack bytes, the packs hold %d", got, packTotal(t, m.Dir()))
			}

			gcStage = nil
			if err := writeGCRecord(m.Dir(), 1); err != nil {
				t.Fatal(err)
			}
			r3 := c.push(3)
			res, err = m.Sync(bg())
			if err != nil || !res.Collected || res.GCErr != nil {
				t.Fatalf("Sync after the failure = %+v, %v", res, err)
			}
			assertComplete(t, c, m, r2, r3)
			if have := stored(t, m.Dir()); have[r0[0]] || have[r1[0]] {
				t.Fatal("rounds 0 and 1 survived the collection")
			}
		})
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestGCBudget: a collection gets half of the time left to its Sync, so
// the view build that follows keeps the other half; without a deadline,
// none.
func TestGCBudget(t *testing.T) {
	parent, cancel := context.WithTimeout(bg(), 10*time.Minute)
	defer cancel()
	before := time.Now()
	ctx, stop := gcBudget(parent)
	defer stop()
	dl, ok := ctx.Deadline()
	pdl, _ := parent.Deadline()
	if !ok || !dl.Before(pdl) || dl.Before(before.Add(5*time.Minute-time.Second)) || dl.After(time.Now().Add(5*time.Minute)) {
		t.Fatalf("budget deadline %v for a Sync deadline %v", dl, pdl)
	}
	free, stop2 := gcBudget(bg())
	defer stop2()
	if _, ok := free.Deadline(); ok {
		t.Fatal("a deadline without one on the Sync")
	}
}
