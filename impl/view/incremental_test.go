package view_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// commitOn makes a commit on top of rev without touching HEAD or the work
// tree and returns it.
func commitOn(r *gittest.Repo, rev, msg string) string {
	r.Tick()
	return r.Git("commit-tree", "-p", rev, "-m", msg, rev+"^{tree}")
}

// TestIncrementalEqualsFull applies one change after another to a
// repository of stacks (metadata and ancestry parents, a tracking ref, a
// stack title) and checks after each that the incremental build from the
// previous snapshot equals a fresh full build, byte for byte.
func TestIncrementalEqualsFull(t *testing.T) {
	r := gittest.New(t)
	r.Commit("init", map[string]string{"README": "hi\n"})
	r.Commit("second", map[string]string{"README": "hi again\n"})
	for _, stack := range []string{"p", "q", "r"} {
		r.Branch(stack+"1", "main")
		r.Commit(stack+"1", map[string]string{stack + "1.txt": "1\n"})
		r.Branch(stack+"2", stack+"1")
		r.Commit(stack+"2", map[string]string{stack + "2.txt": "2\n"})
		r.Branch(stack+"3", stack+"2")
		r.Commit(stack+"3", map[string]string{stack + "3.txt": "3\n"})
	}
	// p has stackit metadata (with a stack title), q Graphite, r none.
	r.BlobRef("refs/stackit/metadata/p1", meta(t, "main", map[string]any{"stackId": "sp"}))
	r.BlobRef("refs/stackit/metadata/p2", meta(t, "p1", map[string]any{"prInfo": map[string]any{"number": 7}}))
	r.BlobRef("refs/stackit/metadata/p3", meta(t, "p2", nil))
	r.BlobRef("refs/stackit/stacks/sp", `{"title":"P stack"}`)
	r.BlobRef("refs/branch-metadata/q1", meta(t, "main", nil))
	r.BlobRef("refs/branch-metadata/q2", meta(t, "q1", nil))
	r.Git("update-ref", "refs/remotes/origin/r2", "r2")
	r.Git("update-ref", "refs/remotes/origin/q3", "q3~1")
	r.Git("checkout", "-q", "r3")

	steps := []struct {
		name   string
		change func()
		fast   bool // the change can be applied without the slow path
	}{
		{"nothing", func() {}, true},
		{"fast-forward a stacked branch", func() { r.Git("update-ref", "refs/heads/p2", commitOn(r, "p2", "p2 more")) }, true},
		{"fast-forward an ancestry branch", func() { r.Git("update-ref", "refs/heads/r3", commitOn(r, "r3", "r3 more")) }, true},
		{"move an ancestry branch's parent", func() { r.Git("update-ref", "refs/heads/r1", commitOn(r, "r1", "r1 more")) }, false},
		{"force-push a metadata branch", func() { r.Git("update-ref", "refs/heads/r2", commitOn(r, "r1", "r2 rewritten")) }, false}, // r3 now sits on r1
		{"force-push a leaf", func() { r.Git("update-ref", "refs/heads/p3", commitOn(r, "p2", "p3 rewritten")) }, true},
		{"change pull request metadata", func() {
			r.BlobRef("refs/stackit/metadata/p2", meta(t, "p1", map[string]any{"prInfo": map[string]any{"number": 8, "title": "T"}}))
		}, true},
		{"change a stack title", func() { r.BlobRef("refs/stackit/stacks/sp", `{"title":"P renamed","description":"d"}`) }, true},
		{"move a tracking ref", func() { r.Git("update-ref", "refs/remotes/origin/q3", "q3") }, true},
		{"switch branch", func() { r.Git("checkout", "-q", "p3") }, true},
		{"detach HEAD", func() { r.Git("checkout", "-q", "--detach", "q1") }, true},
		{"reparent through metadata", func() { r.BlobRef("refs/stackit/metadata/p3", meta(t, "p1", nil)) }, false},
		{"create a branch", func() { r.Git("branch", "new", "q2") }, false},
		{"delete a branch", func() { r.Git("branch", "-D", "r2") }, false},
		{"move trunk", func() {
			r.Git("checkout", "-q", "main")
			r.Commit("trunk moves", map[string]string{"t.txt": "t\n"})
		}, false},
		{"unusable stackit metadata over Graphite's", func() { r.BlobRef("refs/stackit/metadata/q1", "{not json") }, true},
		{"drop metadata", func() { r.Git("update-ref", "-d", "refs/branch-metadata/q2") }, false},
	}

	w, err := gitrepo.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	in := view.Input{RepoID: "x", Kind: gen.Local, Trunk: "main"}
	b := view.NewBuilder(in, nil)
	read := func() view.Repo {
		repo, err := w.Read()
		if err != nil {
			t.Fatal(err)
		}
		return repo
	}
	prev, _, err := b.Build(context.Background(), read(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range steps {
		st.change()
		repo := read()
		got, stats, err := b.Build(context.Background(), repo, prev)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		want, err := view.Build(context.Background(), repo, in)
		if err != nil {
			t.Fatal(err)
		}
		if stats.Full {
			t.Errorf("%s: a build with a previous snapshot reports Full", st.name)
		}
		if stats.Patched != st.fast {
			t.Errorf("%s: patched %v, want %v", st.name, stats.Patched, st.fast)
		}
		if st.fast && stats.Recomputed > 3 {
			t.Errorf("%s: %d branches recomputed, want only the changed ones", st.name, stats.Recomputed)
		}
		v := int64(i + 1)
		g, w := got.WithVersion(v, time.Unix(v, 0)), want.WithVersion(v, time.Unix(v, 0))
		if !bytes.Equal(g.ViewJSON(), w.ViewJSON()) || !bytes.Equal(g.BranchesJSON(), w.BranchesJSON()) {
			t.Fatalf("%s: incremental build differs from a full build:\n got %s\nwant %s", st.name, g.BranchesJSON(), w.BranchesJSON())
		}
		if g.ContentHash() != w.ContentHash() {
			t.Errorf("%s: content hash %s, full build %s", st.name, g.ContentHash(), w.ContentHash())
		}
		for _, br := range w.Branches() {
			b1, t1, ok1 := g.DiffRange(br.Name)
			b2, t2, ok2 := w.DiffRange(br.Name)
			if b1 != b2 || t1 != t2 || ok1 != ok2 {
				t.Errorf("%s: DiffRange(%s) differs", st.name, br.Name)
			}
		}
		checkEncoding(t, g)
		prev = got
	}
}

// checkEncoding checks that every precomputed form equals what
// encoding/json makes of the snapshot's values.
func checkEncoding(t *testing.T, s *view.Snapshot) {
	t.Helper()
	enc := func(v any) []byte {
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if got, want := s.ViewJSON(), enc(s.View()); !bytes.Equal(got, want) {
		t.Fatalf("ViewJSON:\n got %s\nwant %s", got, want)
	}
	if got, want := append(bytes.Clone(s.StacksJSON()), '\n'), enc(s.Stacks()); !bytes.Equal(got, want) {
		t.Fatalf("StacksJSON:\n got %s\nwant %s", got, want)
	}
	if got, want := s.BranchesJSON(), enc(s.Branches()); !bytes.Equal(got, want) {
		t.Fatalf("BranchesJSON:\n got %s\nwant %s", got, want)
	}
	for _, st := range s.Stacks() {
		js, ok := s.StackJSON(st.Root)
		if want := enc(st); !ok || !bytes.Equal(append(bytes.Clone(js), '\n'), want) {
			t.Fatalf("StackJSON(%s):\n got %s\nwant %s", st.Root, js, want)
		}
	}
	for _, br := range s.Branches() {
		js, ok := s.BranchJSON(br.Name)
		if want := enc(br); !ok || !bytes.Equal(append(bytes.Clone(js), '\n'), want) {
			t.Fatalf("BranchJSON(%s):\n got %s\nwant %s", br.Name, js, want)
		}
	}
	gunzipEquals(t, s.ViewGzip(), s.ViewJSON())
}
