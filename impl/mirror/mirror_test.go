package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/refs"
)

func TestValidateURL(t *testing.T) {
	tests := []struct {
		url        string
		allowLocal bool
		want       error
	}{
		{"https://github.com/a/b.git", false, nil},
		{"https://user:pw@github.com/a/b.git", false, nil},
		{"ssh://git@github.com/a/b.git", false, nil},
		{"ssh://git@github.com:2222/a/b.git", false, nil},
		{"git@github.com:a/b.git", false, nil},
		{"github.com:a/b.git", false, nil},
		{"git://127.0.0.1:9418/a.git", false, nil},
		{"http://127.0.0.1:8080/a.git", false, nil}, // Config.Check decides (ErrPlainHTTP)
		{"file:///srv/a.git", false, ErrLocalRemote},
		{"file:///srv/a.git", true, nil},
		{"/srv/a.git", false, ErrLocalRemote},
		{"./a.git", false, ErrLocalRemote},
		{"a.git", false, ErrLocalRemote},
		{"/srv/a.git", true, nil},
		{"", false, ErrBadURL},
		{"   ", true, ErrBadURL},
		{"ftp://example.com/a.git", true, ErrBadURL},
		{"ext::sh -c evil", true, ErrBadURL},
		{"https:///nohost", false, ErrBadURL},
		{"https://exa mple.com/a", false, ErrBadURL},
		{"https://example.com/a\nb", false, ErrBadURL},
		{"-oProxyCommand=evil", true, ErrBadURL},
		{"ssh://-oProxyCommand=evil/a", false, ErrBadURL},
		{"https://u:%zz@example.com/a", false, ErrBadURL},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/local=%v", tt.url, tt.allowLocal), func(t *testing.T) {
			err := ValidateURL(tt.url, tt.allowLocal)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateURL(%q) = %v, want nil", tt.url, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("ValidateURL(%q) = %v, want %v", tt.url, err, tt.want)
			}
			if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "%zz@") {
				t.Fatalf("credentials in %q", err)
			}
		})
	}
}

// fixture is an upstream with branches, stackit and metadata refs and
// refs that must not be mirrored, served by git daemon.
type fixture struct {
	up   *upstream
	addr string // git daemon host:port
	base string
	main string // commit ids
	feat string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	up := newUpstream(t, base, "up.git")
	c1 := up.commit("", "c1", map[string][]byte{"a.txt": []byte("a\n")})
	f1 := up.commit(c1, "f1", map[string][]byte{"a.txt": []byte("a\n"), "f.txt": []byte("f\n")})
	up.set("refs/heads/main", c1)
	up.set("refs/heads/feature", f1)
	up.set("refs/stackit/feature", f1)
	up.set("refs/branch-metadata/feature", up.blob(`{"parent":"main"}`))
	up.set("refs/remotes/origin/stale", c1)
	up.set("refs/tags/v1", c1)
	up.set("refs/notes/commits", c1)
	return &fixture{up: up, addr: startDaemon(t, base), base: base, main: c1, feat: f1}
}

func (f *fixture) url() string { return "git://" + f.addr + "/up.git" }

func newRoot(t *testing.T) *Root {
	t.Helper()
	r, err := NewRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func cloneOK(t *testing.T, r *Root, id, url string) *Mirror {
	t.Helper()
	m, _, err := r.Clone(bg(), id, Config{AllowPrivate: true, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func openOK(t *testing.T, r *Root, id, url string) *Mirror {
	t.Helper()
	m, err := r.Open(id, Config{AllowPrivate: true, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// assertMirrors checks that the mirror holds exactly the upstream's refs
// in the namespaces, in memory and as git reads them from disk, that they
// are all packed, and that HEAD agrees.
func assertMirrors(t *testing.T, m *Mirror, up *upstream) {
	t.Helper()
	want := up.mirrored()
	if got := tableRefs(m.Refs()); !reflect.DeepEqual(got, want) {
		t.Fatalf("table refs\n got %v\nwant %v", got, want)
	}
	if got := gitRefs(t, m.Dir()); !reflect.DeepEqual(got, want) {
		t.Fatalf("refs on disk (git for-each-ref)\n got %v\nwant %v", got, want)
	}
	if loose := looseRefs(t, m.Dir()); len(loose) != 0 {
		t.Fatalf("loose ref files: %v", loose)
	}
	target, _, ok := m.Refs().Head()
	if !ok || target != gitHead(t, m.Dir()) {
		t.Fatalf("HEAD in memory %q (%v), on disk %q", target, ok, gitHead(t, m.Dir()))
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("left behind in %s: %v", dir, names)
	}
}

func created(up map[string]string, names ...string) []refs.Change {
	var out []refs.Change
	for _, n := range names {
		out = append(out, refs.Change{Ref: n, New: plumbing.NewHash(up[n]), Kind: refs.Created})
	}
	return out
}

func TestClone(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m, changes, err := r.Clone(bg(), "widgets", Config{AllowPrivate: true, URL: f.url()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	assertMirrors(t, m, f.up) // no tags, refs/remotes or notes
	want := created(f.up.mirrored(), "refs/branch-metadata/feature", "refs/heads/feature", "refs/heads/main", "refs/stackit/feature")
	if !reflect.DeepEqual(changes, want) {
		t.Fatalf("changes\n got %+v\nwant %+v", changes, want)
	}
	if got := gitHead(t, m.Dir()); got != "refs/heads/main" {
		t.Fatalf("HEAD -> %s", got)
	}
	if m.Dir() != filepath.Join(r.Path(), "widgets.git") || m.Dir() != r.Dir("widgets") || m.URL() != f.url() {
		t.Fatalf("Dir/URL = %s %s", m.Dir(), m.URL())
	}
	entries, _ := os.ReadDir(r.Path())
	if len(entries) != 1 {
		t.Fatalf("root holds %d entries, want only the mirror", len(entries))
	}
	if got := len(packs(t, m.Dir())); got != 1 {
		t.Fatalf("%d packs after clone, want 1", got)
	}

	// A config git understands, a marker, everything fsck-clean.
	if got := runGit(t, m.Dir(), nil, "config", "--get-all", "remote.origin.fetch"); got != strings.Join([]string{
		"+refs/heads/*:refs/heads/*", "+refs/stackit/*:refs/stackit/*", "+refs/branch-metadata/*:refs/branch-metadata/*"}, "\n") {
		t.Fatalf("fetch refspecs: %q", got)
	}
	if got := runGit(t, m.Dir(), nil, "rev-parse", "--is-bare-repository"); got != "true" {
		t.Fatalf("bare: %s", got)
	}
	if got := runGit(t, m.Dir(), nil, "config", "remote.origin.url"); got != f.url() {
		t.Fatalf("url: %s", got)
	}
	var mk marker
	raw, err := os.ReadFile(filepath.Join(m.Dir(), markerFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &mk); err != nil || mk != (marker{Format: 1, ID: "widgets", URL: f.url()}) {
		t.Fatalf("marker %s: %v", raw, err)
	}
	fsck(t, m.Dir())

	// The on-disk mirror is reusable, and another clone is refused.
	again := openOK(t, r, "widgets", f.url())
	if !refs.Equal(again.Refs(), m.Refs()) {
		t.Fatalf("reopened table differs:\n%v\n%v", again.Refs().All(), m.Refs().All())
	}
	if _, _, err := r.Clone(bg(), "widgets", Config{AllowPrivate: true, URL: f.url()}); !errors.Is(err, ErrExists) {
		t.Fatalf("second clone: %v, want ErrExists", err)
	}

	// git itself can fetch into the mirror afterwards.
	main2 := f.up.commit(f.main, "c2", map[string][]byte{"a.txt": []byte("a2\n")})
	f.up.set("refs/heads/main", main2)
	runGit(t, m.Dir(), nil, "fetch", "-q", "--prune", "origin")
	if got := gitRefs(t, m.Dir()); !reflect.DeepEqual(got, f.up.mirrored()) {
		t.Fatalf("after git fetch\n got %v\nwant %v", got, f.up.mirrored())
	}
	fsck(t, m.Dir())
}

func TestSyncChanges(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	up := f.up
	main2 := up.commit(f.main, "c2", map[string][]byte{"a.txt": []byte("a2\n")})
	rewritten := up.commit(f.main, "f1 rewritten", map[string][]byte{"f.txt": []byte("g\n")})
	newBranch := up.commit(f.main, "n1", nil)
	meta1 := up.mirrored()["refs/branch-metadata/feature"]
	meta2 := up.blob(`{"parent":"main","pr":7}`)
	h := plumbing.NewHash

	steps := []struct {
		name    string
		mutate  func()
		want    []refs.Change
		head    string
		fetched bool
	}{
		{
			name:   "nothing changed",
			mutate: func() {},
			head:   "refs/heads/main",
		},
		{
			name:    "push to main",
			mutate:  func() { up.set("refs/heads/main", main2) },
			want:    []refs.Change{{Ref: "refs/heads/main", Old: h(f.main), New: h(main2), Kind: refs.Updated}},
			head:    "refs/heads/main",
			fetched: true,
		},
		{
			name: "new branch and its stackit ref",
			mutate: func() {
				up.set("refs/heads/new", newBranch)
				up.set("refs/stackit/new", newBranch)
			},
			want: []refs.Change{
				{Ref: "refs/heads/new", New: h(newBranch), Kind: refs.Created},
				{Ref: "refs/stackit/new", New: h(newBranch), Kind: refs.Created},
			},
			head:    "refs/heads/main",
			fetched: true,
		},
		{
			name: "force-push feature (the caller classifies it), metadata blob replaced",
			mutate: func() {
				up.set("refs/heads/feature", rewritten)
				up.set("refs/branch-metadata/feature", meta2)
			},
			want: []refs.Change{
				{Ref: "refs/branch-metadata/feature", Old: h(meta1), New: h(meta2), Kind: refs.Updated},
				{Ref: "refs/heads/feature", Old: h(f.feat), New: h(rewritten), Kind: refs.Updated},
			},
			head:    "refs/heads/main",
			fetched: true,
		},
		{
			name: "a ref moves to a commit the mirror has: no transfer",
			mutate: func() {
				up.set("refs/stackit/feature", main2)
			},
			want: []refs.Change{{Ref: "refs/stackit/feature", Old: h(f.feat), New: h(main2), Kind: refs.Updated}},
			head: "refs/heads/main",
		},
		{
			// The listing takes a line for the next ref of the table on its
			// hash and length, and checks the names by a hash of them at
			// the end: it lists again, and finds the rename.
			name: "a branch renamed, its name's length and commit kept",
			mutate: func() {
				up.del("refs/heads/feature")
				up.set("refs/heads/featurf", rewritten)
			},
			want: []refs.Change{
				{Ref: "refs/heads/feature", Old: h(rewritten), Kind: refs.Deleted},
				{Ref: "refs/heads/featurf", New: h(rewritten), Kind: refs.Created},
			},
			head: "refs/heads/main",
		},
		{
			// The same, found where the listing first differs (main).
			name: "renamed back, then main moves",
			mutate: func() {
				up.del("refs/heads/featurf")
				up.set("refs/heads/feature", rewritten)
				up.set("refs/heads/main", newBranch)
			},
			want: []refs.Change{
				{Ref: "refs/heads/feature", New: h(rewritten), Kind: refs.Created},
				{Ref: "refs/heads/featurf", Old: h(rewritten), Kind: refs.Deleted},
				{Ref: "refs/heads/main", Old: h(main2), New: h(newBranch), Kind: refs.Updated},
			},
			head: "refs/heads/main",
		},
		{
			name: "delete branch and stackit ref, new default branch",
			mutate: func() {
				up.del("refs/heads/feature")
				up.del("refs/stackit/feature")
				up.symref("refs/heads/new")
			},
			want: []refs.Change{
				{Ref: "refs/heads/feature", Old: h(rewritten), Kind: refs.Deleted},
				{Ref: "refs/stackit/feature", Old: h(main2), Kind: refs.Deleted},
			},
			head: "refs/heads/new",
		},
		{
			name:   "only the default branch changes",
			mutate: func() { up.symref("refs/heads/main") },
			head:   "refs/heads/main",
		},
		{
			name:   "tags and remotes still ignored",
			mutate: func() { up.set("refs/tags/v2", main2); up.set("refs/remotes/origin/x", main2) },
			head:   "refs/heads/main",
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			oldHead, _, _ := m.Refs().Head()
			st.mutate()
			res, err := m.Sync(bg())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Changes, st.want) {
				t.Fatalf("changes\n got %+v\nwant %+v", res.Changes, st.want)
			}
			if res.HeadChanged != (st.head != oldHead) || res.Fetched != st.fetched {
				t.Fatalf("result %+v, want head %s (was %s), fetched %v", res, st.head, oldHead, st.fetched)
			}
			assertMirrors(t, m, up)
			if got := gitHead(t, m.Dir()); got != st.head {
				t.Fatalf("HEAD -> %s, want %s", got, st.head)
			}
		})
	}
	fsck(t, m.Dir())
	again := openOK(t, r, "m", f.url())
	if !refs.Equal(again.Refs(), m.Refs()) {
		t.Fatalf("reopened table differs:\n%v\n%v", again.Refs().All(), m.Refs().All())
	}
}

// TestNoopSyncWritesNothing checks that a Sync against an unchanged
// upstream only lists it: no file of the mirror is created, removed,
// replaced or modified.
func TestNoopSyncWritesNothing(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	f.up.set("refs/heads/main", f.up.commit(f.main, "c2", nil))
	if _, err := m.Sync(bg()); err != nil { // a Sync that writes, first
		t.Fatal(err)
	}
	f.up.set("refs/tags/ignored", f.feat) // outside the namespaces
	before := treeState(t, r.Path())
	for range 3 {
		res, err := m.Sync(bg())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res, Result{}) {
			t.Fatalf("no-op Sync = %+v", res)
		}
	}
	if after := treeState(t, r.Path()); !reflect.DeepEqual(after, before) {
		for p, st := range after {
			if before[p] != st {
				t.Errorf("%s: %+v -> %+v", p, before[p], st)
			}
		}
		for p := range before {
			if _, ok := after[p]; !ok {
				t.Errorf("%s removed", p)
			}
		}
		t.Fatal("a no-op Sync wrote to the mirror")
	}
}

// stacksFixture serves a gittest.BuildStacks upstream with git daemon.
func stacksFixture(t testing.TB, shape gittest.Shape) (*upstream, string) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "up.git")
	if err := gittest.BuildStacks(dir, shape); err != nil {
		t.Fatal(err)
	}
	return &upstream{t: t, dir: dir, name: "up.git"}, "git://" + startDaemon(t, base) + "/up.git"
}

// TestOneChangeFetchesOnlyNewObjects checks that a one-branch change in a
// many-branch upstream adds one pack holding exactly the new objects.
func TestOneChangeFetchesOnlyNewObjects(t *testing.T) {
	up, url := stacksFixture(t, gittest.Shape{Branches: 300, MetadataEvery: 1, Bare: true})
	r := newRoot(t)
	m := cloneOK(t, r, "m", url)
	fsck(t, m.Dir())

	branch := "refs/heads/" + gittest.StackBranch(50, 2)
	old := up.mirrored()[branch]
	tree := runGit(t, up.dir, nil, "rev-parse", old+"^{tree}")
	var entries strings.Builder
	entries.WriteString(runGit(t, up.dir, nil, "ls-tree", tree) + "\n")
	fmt.Fprintf(&entries, "100644 blob %s\tnew.txt\n", up.blob("fresh content\n"))
	newTree := runGit(t, up.dir, []byte(entries.String()), "mktree")
	next := runGit(t, up.dir, nil, "commit-tree", newTree, "-p", old, "-m", "one more")
	up.set(branch, next)

	before := packs(t, m.Dir())
	res, err := m.Sync(bg())
	if err != nil {
		t.Fatal(err)
	}
	if want := []refs.Change{{Ref: branch, Old: plumbing.NewHash(old), New: plumbing.NewHash(next), Kind: refs.Updated}}; !reflect.DeepEqual(res.Changes, want) || !res.Fetched {
		t.Fatalf("Sync = %+v", res)
	}
	after := packs(t, m.Dir())
	var added []string
	for _, p := range after {
		if !slices.Contains(before, p) {
			added = append(added, p)
		}
	}
	if len(added) != 1 || len(after) != len(before)+1 {
		t.Fatalf("packs %v -> %v", before, after)
	}
	got := idxObjects(t, added[0])
	want := strings.Fields(runGit(t, up.dir, nil, "rev-list", "--objects", "--no-object-names", next, "^"+old))
	slices.Sort(got)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) || len(want) != 3 {
		t.Fatalf("new pack holds %v, want exactly the new objects %v", got, want)
	}

	// A new branch stacked on trunk: only its own objects.
	trunk := up.mirrored()["refs/heads/main"]
	nb := runGit(t, up.dir, nil, "commit-tree", newTree, "-p", trunk, "-m", "new branch")
	up.set("refs/heads/brand-new", nb)
	before = packs(t, m.Dir())
	if _, err := m.Sync(bg()); err != nil {
		t.Fatal(err)
	}
	after = packs(t, m.Dir())
	if len(after) != len(before)+1 {
		t.Fatalf("packs %v -> %v", before, after)
	}
	for _, p := range after {
		if !slices.Contains(before, p) {
			// The trunk tip is a have: the pack holds what the new branch
			// does not share with trunk, nothing more.
			got := idxObjects(t, p)
			want := strings.Fields(runGit(t, up.dir, nil, "rev-list", "--objects", "--no-object-names", nb, "^"+trunk))
			slices.Sort(got)
			slices.Sort(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("new pack holds %v, want %v", got, want)
			}
		}
	}
	assertMirrors(t, m, up)
	fsck(t, m.Dir())
}

func TestEmptyUpstream(t *testing.T) {
	base := t.TempDir()
	up := newUpstream(t, base, "empty.git")
	addr := startDaemon(t, base)
	r := newRoot(t)
	m, changes, err := r.Clone(bg(), "e", Config{AllowPrivate: true, URL: "git://" + addr + "/empty.git"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(changes) != 0 || m.Refs().Len() != 1 {
		t.Fatalf("changes = %v, table = %v", changes, m.Refs().All())
	}
	fsck(t, m.Dir())
	c := up.commit("", "first", nil)
	up.set("refs/heads/main", c)
	res, err := m.Sync(bg())
	if err != nil {
		t.Fatal(err)
	}
	if want := created(map[string]string{"refs/heads/main": c}, "refs/heads/main"); !reflect.DeepEqual(res.Changes, want) {
		t.Fatalf("changes = %+v", res.Changes)
	}
	assertMirrors(t, m, up)
	up.del("refs/heads/main")
	res, err = m.Sync(bg())
	if err != nil {
		t.Fatal(err)
	}
	if want := []refs.Change{{Ref: "refs/heads/main", Old: plumbing.NewHash(c), Kind: refs.Deleted}}; !reflect.DeepEqual(res.Changes, want) || res.Fetched {
		t.Fatalf("Sync = %+v", res)
	}
	fsck(t, m.Dir())
}

func TestUnreachableUpstream(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	before := m.Refs()
	m.Close()
	f.up.set("refs/heads/main", f.feat)

	dead := fmt.Sprintf("git://127.0.0.1:%d/up.git", freePort(t))
	broken := openOK(t, r, "m", dead)
	_, err := broken.Sync(bg())
	var fe *FetchError
	if !errors.As(err, &fe) || !errors.Is(err, ErrFetch) {
		t.Fatalf("err = %v (%T), want *FetchError", err, err)
	}
	if fe.Msg == "" || fe.URL != dead || fe.Op != "fetch" {
		t.Fatalf("FetchError = %+v", fe)
	}
	if !refs.Equal(broken.Refs(), before) {
		t.Fatalf("refs changed by failed fetch: %v", broken.Refs().All())
	}
	broken.Close()
	again := openOK(t, r, "m", f.url())
	if !refs.Equal(again.Refs(), before) {
		t.Fatalf("refs on disk changed by failed fetch: %v", again.Refs().All())
	}
	if _, err := again.Sync(bg()); err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, again, f.up)
}

func TestOpenUpdatesStoredURL(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	cloneOK(t, r, "m", f.url()).Close()
	other := "https://user:s3cret@example.com/up.git"
	m := openOK(t, r, "m", other)
	if got := runGit(t, m.Dir(), nil, "config", "remote.origin.url"); got != "https://example.com/up.git" {
		t.Fatalf("stored url %q", got)
	}
	raw, _ := os.ReadFile(filepath.Join(m.Dir(), markerFile))
	cfg, _ := os.ReadFile(filepath.Join(m.Dir(), "config"))
	if strings.Contains(string(raw)+string(cfg), "s3cret") || !strings.Contains(string(raw), "https://example.com/up.git") {
		t.Fatalf("marker %s\nconfig %s", raw, cfg)
	}
	if got := runGit(t, m.Dir(), nil, "config", "--get-all", "remote.origin.fetch"); strings.Count(got, "\n") != 2 {
		t.Fatalf("refspecs lost: %q", got)
	}
}

func TestBadIDs(t *testing.T) {
	r := newRoot(t)
	for _, id := range []string{"", "../x", "a/b", "/abs", ".hidden", "-x", "..", "a b", "a\x00b", "é", strings.Repeat("a", 65)} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			if r.Dir(id) != "" {
				t.Fatalf("Dir(%q) = %q", id, r.Dir(id))
			}
			if _, _, err := r.Clone(bg(), id, Config{AllowPrivate: true, URL: "git://127.0.0.1:1/x.git"}); !errors.Is(err, ErrBadID) {
				t.Fatalf("Clone: %v", err)
			}
			if _, err := r.Open(id, Config{AllowPrivate: true, URL: "git://127.0.0.1:1/x.git"}); !errors.Is(err, ErrBadID) {
				t.Fatalf("Open: %v", err)
			}
			if err := r.Remove(id); !errors.Is(err, ErrBadID) {
				t.Fatalf("Remove: %v", err)
			}
		})
	}
	for _, id := range []string{"a", "A.b_c-d", "0", "x.git", strings.Repeat("z", 64), "_x"} {
		if err := CheckID(id); err != nil || r.Dir(id) != filepath.Join(r.Path(), id+".git") {
			t.Errorf("CheckID(%q) = %v", id, err)
		}
	}
	assertEmptyDir(t, r.Path())
}

func TestNewRootResolvesSymlinks(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	r, err := NewRoot(link)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(filepath.Join(real, "mirrors"))
	if r.Path() != want {
		t.Fatalf("Path = %s, want %s", r.Path(), want)
	}
	if fi, err := os.Stat(want); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("root: %v %v", fi, err)
	}
}

// TestOpenRefusesWhatStackdDidNotClone points Open and Remove at
// directories that are not stackd's mirrors: each is refused and left
// byte for byte as it was.
func TestOpenRefusesWhatStackdDidNotClone(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	cloneOK(t, r, "real", f.url()).Close()
	elsewhere := t.TempDir()
	home := t.TempDir()
	copyDir := func(id string) string {
		dst := r.Dir(id)
		runGit(t, home, nil, "clone", "-q", "--bare", "--no-local", r.Dir("real"), dst)
		raw, err := os.ReadFile(filepath.Join(r.Dir("real"), markerFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, markerFile), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return dst
	}

	tests := []struct {
		name  string
		id    string
		setup func(dir string)
		want  error
	}{
		{"absent", "absent", func(string) {}, ErrNoMirror},
		{"symlink to a mirror", "link", func(dir string) {
			if err := os.Symlink(r.Dir("real"), dir); err != nil {
				t.Fatal(err)
			}
		}, ErrNotMirror},
		{"regular file", "file", func(dir string) {
			if err := os.WriteFile(dir, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrNotMirror},
		{"working checkout", "checkout", func(dir string) {
			runGit(t, home, nil, "clone", "-q", f.up.dir, dir)
		}, ErrNotMirror},
		{"a checkout's .git directory", "dotgit", func(dir string) {
			wt := filepath.Join(elsewhere, "wt")
			runGit(t, home, nil, "clone", "-q", f.up.dir, wt)
			if err := os.Rename(filepath.Join(wt, ".git"), dir); err != nil {
				t.Fatal(err)
			}
		}, ErrNotMirror},
		{"checkout with a stackd marker", "marked-checkout", func(dir string) {
			runGit(t, home, nil, "clone", "-q", f.up.dir, dir)
			raw, _ := json.Marshal(marker{Format: 1, ID: "marked-checkout"})
			if err := os.WriteFile(filepath.Join(dir, markerFile), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrNotMirror},
		{"bare repository without marker", "bare", func(dir string) {
			runGit(t, home, nil, "clone", "-q", "--mirror", f.up.dir, dir)
		}, ErrNotMirror},
		{"marker of another mirror", "other", func(dir string) { copyDir("other") }, ErrNotMirror},
		{"marker is a symlink", "symmarker", func(dir string) {
			copyDir("symmarker")
			p := filepath.Join(dir, markerFile)
			raw, _ := json.Marshal(marker{Format: 1, ID: "symmarker"})
			target := filepath.Join(elsewhere, "marker.json")
			if err := os.WriteFile(target, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, ErrNotMirror},
		{"unknown marker format", "format", func(dir string) {
			copyDir("format")
			raw, _ := json.Marshal(marker{Format: 99, ID: "format"})
			if err := os.WriteFile(filepath.Join(dir, markerFile), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrNotMirror},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := r.Dir(tt.id)
			tt.setup(dir)
			before := treeState(t, r.Path())
			if _, err := r.Open(tt.id, Config{AllowPrivate: true, URL: f.url()}); !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
			if err := r.Remove(tt.id); !errors.Is(err, tt.want) {
				t.Fatalf("Remove: %v, want %v", err, tt.want)
			}
			if after := treeState(t, r.Path()); !reflect.DeepEqual(after, before) {
				t.Fatal("a refused Open or Remove changed the directory")
			}
		})
	}

	// Mirrors lists only what Open accepts: none of the directories above,
	// nor a directory that is not named <id>.git.
	if err := os.MkdirAll(filepath.Join(r.Path(), "notes", "objects"), 0o700); err != nil {
		t.Fatal(err)
	}
	if ids, err := r.Mirrors(); err != nil || !reflect.DeepEqual(ids, []string{"real"}) {
		t.Fatalf("Mirrors = %v, %v; want [real]", ids, err)
	}

	// A marker whose id was fixed makes a (git-made) copy acceptable,
	// which shows the refusal above was the marker's doing.
	raw, _ := json.Marshal(marker{Format: 1, ID: "other", URL: f.url()})
	if err := os.WriteFile(filepath.Join(r.Dir("other"), markerFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	openOK(t, r, "other", f.url()).Close()
	if ids, _ := r.Mirrors(); !reflect.DeepEqual(ids, []string{"other", "real"}) {
		t.Fatalf("Mirrors = %v; want [other real]", ids)
	}

	if err := r.Remove("real"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(r.Dir("real")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed mirror still there: %v", err)
	}
	if _, err := r.Open("real", Config{AllowPrivate: true, URL: f.url()}); !errors.Is(err, ErrNoMirror) {
		t.Fatalf("Open after Remove: %v", err)
	}
	if err := r.Remove("real"); !errors.Is(err, ErrNoMirror) {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestCloneIntoExistingDirRefused(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	if err := os.Mkdir(r.Dir("x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Clone(bg(), "x", Config{AllowPrivate: true, URL: f.url()}); !errors.Is(err, ErrExists) {
		t.Fatalf("Clone: %v, want ErrExists", err)
	}
	entries, _ := os.ReadDir(r.Path())
	if len(entries) != 1 {
		t.Fatalf("root holds %d entries", len(entries))
	}
	assertEmptyDir(t, r.Dir("x"))
}

func TestSweepTemp(t *testing.T) {
	r := newRoot(t)
	leftovers := []string{".a.git.clone-12345", ".b.c.git.clone-9", ".a.git.remove-0f3a"}
	keep := []string{"a.git", ".a.git.clone-", ".a.git.clone-x.y", "..a.git.clone-1", ".-a.git.clone-1", ".other", "x.git.clone-1"}
	for _, n := range append(slices.Clone(leftovers), keep...) {
		if err := os.MkdirAll(filepath.Join(r.Path(), n, "objects"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := r.Leftovers()
	slices.Sort(ids)
	if err != nil || !reflect.DeepEqual(ids, []string{"a", "b.c"}) {
		t.Fatalf("Leftovers = %v, %v", ids, err)
	}
	// One id at a time (a shared root, under that id's lease).
	removed, err := r.SweepTempOf("b.c")
	if err != nil || len(removed) != 1 || removed[0] != filepath.Join(r.Path(), ".b.c.git.clone-9") {
		t.Fatalf("SweepTempOf(b.c) = %v, %v", removed, err)
	}
	if ids, _ := r.Leftovers(); !reflect.DeepEqual(ids, []string{"a"}) {
		t.Fatalf("Leftovers after SweepTempOf = %v", ids)
	}
	leftovers = slices.DeleteFunc(leftovers, func(n string) bool { return n == ".b.c.git.clone-9" })
	removed, err = r.SweepTemp()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range leftovers {
		want = append(want, filepath.Join(r.Path(), n))
	}
	slices.Sort(want)
	slices.Sort(removed)
	if !reflect.DeepEqual(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	for _, n := range keep {
		if _, err := os.Lstat(filepath.Join(r.Path(), n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func TestFailedCloneLeavesNothing(t *testing.T) {
	f := newFixture(t)
	dead := fmt.Sprintf("git://127.0.0.1:%d/up.git", freePort(t))
	expired, cancel := context.WithDeadline(bg(), time.Now().Add(-time.Second))
	defer cancel()
	cancelled, cancel2 := context.WithCancel(bg())
	cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		url  string
		want []error
	}{
		{"unreachable", bg(), dead, []error{ErrFetch}},
		{"no such repository", bg(), "git://" + f.addr + "/nope.git", []error{ErrFetch, transport.ErrRepositoryNotFound}},
		{"bad url", bg(), "ftp://" + f.addr + "/up.git", []error{ErrBadURL}},
		{"local path refused", bg(), f.up.dir, []error{ErrLocalRemote}},
		{"deadline exceeded", expired, f.url(), []error{context.DeadlineExceeded}},
		{"cancelled before start", cancelled, f.url(), []error{context.Canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRoot(t)
			m, changes, err := r.Clone(tt.ctx, "m", Config{AllowPrivate: true, URL: tt.url})
			if err == nil || m != nil || changes != nil {
				t.Fatalf("Clone = %v, %v, %v", m, changes, err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want errors.Is %v", err, w)
				}
			}
			assertEmptyDir(t, r.Path())
		})
	}
}

// bigCommit adds a commit with 1 MiB of incompressible data, so that a
// transfer of it can be interrupted after the pack has started.
func bigCommit(up *upstream, parent, msg string) string {
	return up.commit(parent, msg, map[string][]byte{msg + ".bin": noiseFile(1 << 20)})
}

func TestCancelledCloneLeavesNothing(t *testing.T) {
	f := newFixture(t)
	f.up.set("refs/heads/big", bigCommit(f.up, f.main, "big"))
	p := startProxy(t, f.addr)
	p.Arm()
	r := newRoot(t)

	ctx, cancel := context.WithCancel(bg())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, _, err := r.Clone(ctx, "m", Config{AllowPrivate: true, URL: "git://" + p.Addr() + "/up.git"})
		errc <- err
	}()
	waitStalled(t, p)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertEmptyDir(t, r.Path())
}

func TestCancelledSyncThenSync(t *testing.T) {
	f := newFixture(t)
	p := startProxy(t, f.addr)
	r := newRoot(t)
	url := "git://" + p.Addr() + "/up.git"
	m := cloneOK(t, r, "m", url)
	before := m.Refs()
	beforeDisk := gitRefs(t, m.Dir())
	big := bigCommit(f.up, f.main, "big")
	f.up.set("refs/heads/main", big)
	f.up.set("refs/stackit/big", big)

	p.Arm()
	ctx, cancel := context.WithCancel(bg())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := m.Sync(ctx)
		errc <- err
	}()
	waitStalled(t, p)
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var fe *FetchError
	if errors.As(err, &fe) {
		t.Fatalf("cancellation reported as FetchError: %v", err)
	}
	if !refs.Equal(m.Refs(), before) || !reflect.DeepEqual(gitRefs(t, m.Dir()), beforeDisk) {
		t.Fatalf("refs moved by cancelled fetch: %v", m.Refs().All())
	}
	if tmp, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "tmp_*")); len(tmp) != 0 {
		t.Fatalf("temporary packs left: %v", tmp)
	}
	fsck(t, m.Dir())

	res, err := m.Sync(bg())
	if err != nil {
		t.Fatal(err)
	}
	want := []refs.Change{
		{Ref: "refs/heads/main", Old: plumbing.NewHash(f.main), New: plumbing.NewHash(big), Kind: refs.Updated},
		{Ref: "refs/stackit/big", New: plumbing.NewHash(big), Kind: refs.Created},
	}
	if !reflect.DeepEqual(res.Changes, want) {
		t.Fatalf("changes\n got %+v\nwant %+v", res.Changes, want)
	}
	assertMirrors(t, m, f.up)
	obj, err := m.Reader().Object(plumbing.CommitObject, plumbing.NewHash(big))
	if err != nil {
		t.Fatal(err)
	}
	c, err := object.DecodeCommit(nil, obj)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := readTree(m.Reader(), c.TreeHash)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := m.Reader().Object(plumbing.BlobObject, tree["big.bin"])
	if err != nil || blob.Size() != 1<<20 {
		t.Fatalf("big blob: %v", err)
	}
	fsck(t, m.Dir())
}

func readTree(r *Reader, h plumbing.Hash) (map[string]plumbing.Hash, error) {
	obj, err := r.Object(plumbing.TreeObject, h)
	if err != nil {
		return nil, err
	}
	var tree object.Tree
	if err := tree.Decode(obj); err != nil {
		return nil, err
	}
	out := map[string]plumbing.Hash{}
	for _, e := range tree.Entries {
		out[e.Name] = e.Hash
	}
	return out, nil
}

// TestReaderDuringSync reads objects from several goroutines through a
// Reader made before a Sync while that Sync stores a new pack (run with
// -race), then checks that the old Reader kept its table and that a new
// one sees the new objects.
func TestReaderDuringSync(t *testing.T) {
	up, url := stacksFixture(t, gittest.Shape{Branches: 60, MetadataEvery: 1, Bare: true})
	r := newRoot(t)
	m := cloneOK(t, r, "m", url)
	old := m.Reader()
	oldTable := old.Refs()

	var tips []plumbing.Hash
	for _, ref := range oldTable.Prefix("refs/") {
		tips = append(tips, ref.Hash)
	}
	big := bigCommit(up, up.mirrored()["refs/heads/main"], "big")
	up.set("refs/heads/main", big)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				h := tips[i%len(tips)]
				obj, err := old.Object(plumbing.AnyObject, h)
				if err != nil {
					errs <- err
					return
				}
				if obj.Hash() != h {
					errs <- fmt.Errorf("object %s read as %s", h, obj.Hash())
					return
				}
				if obj.Type() == plumbing.CommitObject {
					if _, err := object.DecodeCommit(nil, obj); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	res, err := m.Sync(bg())
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err != nil || !res.Fetched {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	if old.Refs() != oldTable || refs.Equal(oldTable, m.Refs()) {
		t.Fatal("the old Reader's table changed, or the Sync changed nothing")
	}
	nr := m.Reader()
	h, _ := nr.Refs().Hash("refs/heads/main")
	if h.String() != big {
		t.Fatalf("new reader main = %s", h)
	}
	obj, err := old.Object(plumbing.CommitObject, h) // the store is shared and keeps the previous table's objects
	if err != nil {
		t.Fatal(err)
	}
	c, err := object.DecodeCommit(nil, obj)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := readTree(nr, c.TreeHash)
	if err != nil {
		t.Fatal(err)
	}
	var wg2 sync.WaitGroup
	for range 4 { // concurrent reads of a large (lazily read) blob
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			blob, err := nr.Object(plumbing.BlobObject, tree["big.bin"])
			if err != nil || blob.Size() != 1<<20 {
				t.Errorf("big blob: %v", err)
			}
		}()
	}
	wg2.Wait()
	if _, err := nr.Object(plumbing.CommitObject, tree["big.bin"]); !errors.Is(err, plumbing.ErrObjectNotFound) {
		t.Fatalf("wrong type: %v", err)
	}
	if _, err := nr.Object(plumbing.AnyObject, plumbing.NewHash(strings.Repeat("ab", 20))); !errors.Is(err, plumbing.ErrObjectNotFound) {
		t.Fatalf("missing object: %v", err)
	}
	cfg, err := nr.Config()
	if err != nil || !cfg.Core.IsBare || cfg.Remotes[RemoteName] == nil {
		t.Fatalf("config: %+v %v", cfg, err)
	}
	m.Close()
	if _, err := nr.Object(plumbing.AnyObject, h); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

// TestLooseRefsWrittenByGit: git may write loose refs into a mirror (an
// operator's git fetch); Open reads them, and a Sync that changes such a
// ref removes its loose file.
func TestLooseRefsWrittenByGit(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	main2 := f.up.commit(f.main, "c2", nil)
	f.up.set("refs/heads/main", main2)
	f.up.set("refs/heads/side", main2)
	runGit(t, m.Dir(), nil, "fetch", "-q", "--prune", "origin")
	m.Close()
	if loose := looseRefs(t, m.Dir()); len(loose) == 0 {
		t.Fatal("git wrote no loose refs; the test needs some")
	}

	m = openOK(t, r, "m", f.url())
	if got := tableRefs(m.Refs()); !reflect.DeepEqual(got, f.up.mirrored()) {
		t.Fatalf("table from loose refs\n got %v\nwant %v", got, f.up.mirrored())
	}
	if res, err := m.Sync(bg()); err != nil || res.Changes != nil {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	main3 := f.up.commit(main2, "c3", nil)
	f.up.set("refs/heads/main", main3)
	f.up.del("refs/heads/side")
	res, err := m.Sync(bg())
	if err != nil || len(res.Changes) != 2 {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	assertMirrors(t, m, f.up) // no loose file is left
	fsck(t, m.Dir())
}

// TestLockedPackedRefs: a packed-refs.lock held by someone else fails the
// Sync without moving refs and is left alone; once it is gone, the next
// Sync reports the changes.
func TestLockedPackedRefs(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	before := m.Refs()
	lock := filepath.Join(m.Dir(), "packed-refs.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.up.del("refs/stackit/feature")
	if _, err := m.Sync(bg()); !errors.Is(err, ErrLocked) {
		t.Fatalf("Sync = %v, want ErrLocked", err)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("someone else's lock was removed: %v", err)
	}
	if !refs.Equal(m.Refs(), before) {
		t.Fatal("refs moved")
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	res, err := m.Sync(bg())
	if err != nil || len(res.Changes) != 1 || res.Changes[0].Kind != refs.Deleted {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	assertMirrors(t, m, f.up)

	// Locks left by an interrupted stackd are cleared when the mirror is
	// opened again (one process owns a mirror).
	m.Close()
	for _, name := range []string{"packed-refs.lock", "HEAD.lock"} {
		if err := os.WriteFile(filepath.Join(m.Dir(), name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m = openOK(t, r, "m", f.url())
	f.up.symref("refs/heads/feature")
	if res, err := m.Sync(bg()); err != nil || !res.HeadChanged {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	assertMirrors(t, m, f.up)
}

func TestHTTPBasicAuth(t *testing.T) {
	root := t.TempDir()
	up := newUpstream(t, root, "up.git")
	c := up.commit("", "c1", nil)
	up.set("refs/heads/main", c)
	up.set("refs/stackit/main", c)
	addr := startHTTP(t, root, "alice", "s3cret-pw")
	url := "http://" + addr + "/up.git"

	tests := []struct {
		name    string
		url     string
		auth    transport.AuthMethod
		wantErr error
	}{
		{"basic auth", url, &githttp.BasicAuth{Username: "alice", Password: "s3cret-pw"}, nil},
		{"credentials in url", "http://alice:s3cret-pw@" + addr + "/up.git", nil, nil},
		{"wrong password", url, &githttp.BasicAuth{Username: "alice", Password: "wrong-pw-123"}, ErrFetch},
		{"wrong password in url", "http://alice:wrong-pw-123@" + addr + "/up.git", nil, ErrFetch},
		{"no credentials", url, nil, transport.ErrAuthenticationRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRoot(t)
			cfg := Config{AllowPrivate: true, URL: tt.url, Auth: tt.auth}
			m, _, err := r.Clone(bg(), "m", cfg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				for _, secret := range []string{"wrong-pw-123", "s3cret-pw"} {
					if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), secret) {
						t.Fatalf("secret in error: %v", err)
					}
				}
				assertEmptyDir(t, r.Path())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			assertMirrors(t, m, up)
			if strings.Contains(m.URL(), "s3cret") {
				t.Fatalf("URL() = %s", m.URL())
			}
			for _, name := range []string{"config", markerFile} {
				raw, err := os.ReadFile(filepath.Join(m.Dir(), name))
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(raw), "s3cret") {
					t.Fatalf("credentials written to %s:\n%s", name, raw)
				}
			}
			if res, err := m.Sync(bg()); err != nil || !reflect.DeepEqual(res, Result{}) {
				t.Fatalf("Sync = %+v, %v", res, err)
			}
			c2 := up.commit(c, "c2", nil)
			up.set("refs/heads/main", c2)
			if res, err := m.Sync(bg()); err != nil || len(res.Changes) != 1 || !res.Fetched {
				t.Fatalf("Sync = %+v, %v", res, err)
			}
			assertMirrors(t, m, up)
			fsck(t, m.Dir())
			up.set("refs/heads/main", c) // for the next case
		})
	}
}

func TestCredentialsNeverInErrors(t *testing.T) {
	port := freePort(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"https", Config{AllowPrivate: true, URL: fmt.Sprintf("https://user:secret@127.0.0.1:%d/r.git", port)}},
		{"https token", Config{AllowPrivate: true, URL: fmt.Sprintf("https://secret@127.0.0.1:%d/r.git", port)}},
		{"https at and colon", Config{AllowPrivate: true, URL: fmt.Sprintf("https://user:se:cr@et-secret@127.0.0.1:%d/r.git", port)}},
		{"https percent-encoded", Config{AllowPrivate: true, URL: fmt.Sprintf("https://user:secret%%40x@127.0.0.1:%d/r.git", port)}},
		{"http", Config{AllowPrivate: true, URL: fmt.Sprintf("http://user:secret@127.0.0.1:%d/r.git", port)}},
		{"ssh", Config{AllowPrivate: true, URL: fmt.Sprintf("ssh://user:secret@127.0.0.1:%d/r.git", port), Auth: newSSHKey(t).auth}},
		{"git", Config{AllowPrivate: true, URL: fmt.Sprintf("git://user:secret@127.0.0.1:%d/r.git", port)}},
		{"basic auth", Config{AllowPrivate: true, URL: fmt.Sprintf("https://127.0.0.1:%d/r.git", port),
			Auth: &githttp.BasicAuth{Username: "user", Password: "secret"}}},
	}
	f := newFixture(t)
	synced := newRoot(t)
	cloneOK(t, synced, "m", f.url()).Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRoot(t)
			_, _, err := r.Clone(bg(), "m", tt.cfg)
			if err == nil {
				t.Fatal("clone from a dead port succeeded")
			}
			if !errors.Is(err, ErrFetch) {
				t.Errorf("err = %v, want ErrFetch", err)
			}
			if s := fmt.Sprintf("%v|%+v|%#v", err, err, err); strings.Contains(s, "secret") {
				t.Fatalf("secret in error: %s", s)
			}
			assertEmptyDir(t, r.Path())

			// The same through Open and Sync of an existing mirror.
			m, err := synced.Open("m", tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			_, err = m.Sync(bg())
			if !errors.Is(err, ErrFetch) {
				t.Errorf("Sync err = %v, want ErrFetch", err)
			}
			if s := fmt.Sprintf("%v|%+v|%#v", err, err, err); strings.Contains(s, "secret") {
				t.Fatalf("secret in error: %s", s)
			}
			raw, _ := os.ReadFile(filepath.Join(m.Dir(), "config"))
			mk, _ := os.ReadFile(filepath.Join(m.Dir(), markerFile))
			if strings.Contains(string(raw)+string(mk), "secret") {
				t.Fatalf("secret stored on disk:\n%s\n%s", raw, mk)
			}
		})
	}
}

// TestReceivePackIndex checks the pack indexer against git's own
// index-pack, on packs with offset deltas and with ref deltas (resolved
// by one walker, since a ref delta's base is known by id only once
// resolved).
func TestReceivePackIndex(t *testing.T) {
	up, _ := stacksFixture(t, gittest.Shape{Branches: 90, MetadataEvery: 1, Bare: true})
	revs := runGit(t, up.dir, nil, "for-each-ref", "--format=%(objectname)")
	for _, ofs := range []bool{true, false} {
		t.Run(fmt.Sprintf("ofs-delta=%v", ofs), func(t *testing.T) {
			args := []string{"pack-objects", "--revs", "--stdout", "--no-reuse-delta", "--window=50"}
			if ofs {
				args = append(args, "--delta-base-offset")
			}
			pack := runGitBytes(t, up.dir, []byte(revs+"\n"), args...)
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "objects", "pack"), 0o755); err != nil {
				t.Fatal(err)
			}
			np, err := receivePack(filepath.Join(dir, "objects", "pack"), bytes.NewReader(pack), receiveOpts{verify: true})
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(dir, "objects", "pack", "pack-"+np.hash.String())
			ours, err := os.ReadFile(base + ".idx")
			if err != nil {
				t.Fatal(err)
			}
			gitIdx := filepath.Join(t.TempDir(), "git.idx")
			runGit(t, dir, nil, "index-pack", "-o", gitIdx, base+".pack")
			theirs, err := os.ReadFile(gitIdx)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Fatal("the index differs from git index-pack's")
			}
			stats := runGit(t, dir, nil, "verify-pack", "-v", base+".idx")
			if !strings.Contains(stats, "chain length = 1:") {
				t.Fatalf("no deltas in the test pack:\n%s", stats)
			}
		})
	}
}

// TestAnnotatedTagInNamespace: a ref in the namespaces may point at an
// annotated tag; packed-refs then carries its peeled value, as git
// expects of a "fully-peeled" file.
func TestAnnotatedTagInNamespace(t *testing.T) {
	f := newFixture(t)
	tag := runGit(t, f.up.dir, []byte(fmt.Sprintf("object %s\ntype commit\ntag v1\ntagger T <t@example.com> 1600000000 +0000\n\nrelease\n", f.main)), "mktag")
	f.up.set("refs/stackit/tagged", tag)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	assertMirrors(t, m, f.up)
	raw, err := os.ReadFile(filepath.Join(m.Dir(), "packed-refs"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), tag+" refs/stackit/tagged\n^"+f.main+"\n") {
		t.Fatalf("packed-refs:\n%s", raw)
	}
	if got := runGit(t, m.Dir(), nil, "for-each-ref", "--format=%(*objectname)", "refs/stackit/tagged"); got != f.main {
		t.Fatalf("peeled = %q", got)
	}
	fsck(t, m.Dir())

	// Reopened, rewritten by a Sync that changes another ref: kept.
	m.Close()
	m = openOK(t, r, "m", f.url())
	f.up.set("refs/heads/main", f.feat)
	if _, err := m.Sync(bg()); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(filepath.Join(m.Dir(), "packed-refs"))
	if !strings.Contains(string(raw), tag+" refs/stackit/tagged\n^"+f.main+"\n") {
		t.Fatalf("packed-refs after Sync:\n%s", raw)
	}
	f.up.set("refs/stackit/tagged", f.feat)
	if _, err := m.Sync(bg()); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(filepath.Join(m.Dir(), "packed-refs"))
	if strings.Contains(string(raw), "^") {
		t.Fatalf("stale peeled line:\n%s", raw)
	}
	assertMirrors(t, m, f.up)
	fsck(t, m.Dir())
}

// TestOtherRefsPreserved: refs outside the namespaces that git put in
// packed-refs are neither part of the table nor lost by a rewrite.
func TestOtherRefsPreserved(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	m.Close()
	runGit(t, m.Dir(), nil, "update-ref", "refs/tags/keep", f.main)
	runGit(t, m.Dir(), nil, "pack-refs", "--all")
	m = openOK(t, r, "m", f.url())
	if _, ok := m.Refs().Ref("refs/tags/keep"); ok {
		t.Fatal("a tag in the table")
	}
	f.up.set("refs/heads/zzz", f.feat)
	if res, err := m.Sync(bg()); err != nil || len(res.Changes) != 1 {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	if got := gitRefs(t, m.Dir())["refs/tags/keep"]; got != f.main {
		t.Fatalf("refs/tags/keep = %q", got)
	}
	if got := gitRefs(t, m.Dir())["refs/heads/zzz"]; got != f.feat {
		t.Fatalf("refs/heads/zzz = %q", got)
	}
	fsck(t, m.Dir())
}

// TestCompaction: when Syncs have added more than maxPacks packs, the
// small ones are merged into one; readers, old and new, keep reading
// every object, also while the packs are swapped (run with -race).
func TestCompaction(t *testing.T) {
	defer func(n int) { maxPacks = n }(maxPacks)
	maxPacks = 3
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	first := m.Reader()
	start := first.Refs().Prefix("refs/")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	readErr := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := first.Object(plumbing.AnyObject, start[i%len(start)].Hash); err != nil {
					readErr <- err
					return
				}
			}
		}()
	}

	var commits []string
	tip := f.main
	merged := false
	for i := range 8 {
		tip = f.up.commit(tip, fmt.Sprintf("c%d", i), map[string][]byte{fmt.Sprintf("f%d.txt", i): []byte(fmt.Sprintf("content %d\n", i))})
		commits = append(commits, tip)
		f.up.set("refs/heads/main", tip)
		before := len(packs(t, m.Dir()))
		res, err := m.Sync(bg())
		if err != nil || res.CompactErr != nil || !res.Fetched {
			t.Fatalf("Sync = %+v, %v", res, err)
		}
		n := len(packs(t, m.Dir()))
		if n > maxPacks {
			t.Fatalf("%d packs after Sync %d", n, i)
		}
		if n < before {
			merged = true
		}
		for _, c := range commits {
			for _, rd := range []*Reader{first, m.Reader()} {
				if _, err := rd.Object(plumbing.CommitObject, plumbing.NewHash(c)); err != nil {
					t.Fatalf("commit %s after Sync %d: %v", c, i, err)
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
	if !merged {
		t.Fatal("packs were never merged")
	}
	if tmp, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "tmp_*")); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	assertMirrors(t, m, f.up)
	fsck(t, m.Dir())
	m.Close()
	again := openOK(t, r, "m", f.url())
	if _, err := again.Reader().Object(plumbing.CommitObject, plumbing.NewHash(commits[0])); err != nil {
		t.Fatal(err)
	}
}

// TestTempPacksRemovedAfterAWrite: the temporary files of an interrupted
// transfer are removed by the first Fetch of a cloned mirror and by the
// Fetch after one that wrote; a Fetch after a no-op one, which wrote
// nothing, does not list the pack directory again (its own process is the
// only writer of the mirror: Open and a shared mirror's Repair remove
// what another left).
func TestTempPacksRemovedAfterAWrite(t *testing.T) {
	f := newFixture(t)
	r := newRoot(t)
	m := cloneOK(t, r, "m", f.url())
	leftover := filepath.Join(m.Dir(), "objects", "pack", "tmp_pack_1")
	plant := func() {
		t.Helper()
		if err := os.WriteFile(leftover, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	syncThen := func(what string, wantLeft bool) {
		t.Helper()
		if _, err := m.Sync(bg()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(leftover); (err == nil) != wantLeft {
			t.Fatalf("%s: leftover there %v, want %v", what, err == nil, wantLeft)
		}
	}
	plant()
	syncThen("first Fetch of a clone", false)
	plant()
	syncThen("Fetch after a no-op one", true)
	f.up.set("refs/heads/main", f.up.commit(f.main, "c2", nil))
	syncThen("a Fetch that writes, after a no-op one", true)
	syncThen("Fetch after one that wrote", false)
}
