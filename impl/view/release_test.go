package view_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// TestReleaseMakesOutputsAgain: a released snapshot drops its serialized
// forms and makes them again, byte for byte, on the next request; bytes
// handed out before stay as they were.
func TestReleaseMakesOutputsAgain(t *testing.T) {
	r := gittest.New(t)
	r.Commit("init", map[string]string{"README": "hi\n"})
	for _, b := range []string{"a1", "a2"} {
		r.Branch(b, "main")
		r.Commit(b, map[string]string{b + ".txt": b + "\n"})
	}
	r.BlobRef("refs/branch-metadata/a1", meta(t, "main", nil))
	w, err := gitrepo.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := w.Read()
	if err != nil {
		t.Fatal(err)
	}
	built, err := view.Build(context.Background(), repo, view.Input{RepoID: "x", Kind: gen.Local, Trunk: "main"})
	if err != nil {
		t.Fatal(err)
	}
	s := built.WithVersion(3, time.Unix(3, 0))
	s.Prepare()
	js, gz, branches := s.ViewJSON(), s.ViewGzip(), s.BranchesJSON()
	saved := [][]byte{bytes.Clone(js), bytes.Clone(gz), bytes.Clone(branches)}

	s.Release()
	js2, gz2, branches2 := s.ViewJSON(), s.ViewGzip(), s.BranchesJSON()
	if &js2[0] == &js[0] || &gz2[0] == &gz[0] || &branches2[0] == &branches[0] {
		t.Fatal("Release kept the serialized forms")
	}
	for i, pair := range [][2][]byte{{js2, saved[0]}, {gz2, saved[1]}, {branches2, saved[2]}} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Fatalf("form %d differs after Release:\n got %q\nwant %q", i, pair[0], pair[1])
		}
	}
	for i, b := range [][]byte{js, gz, branches} {
		if !bytes.Equal(b, saved[i]) {
			t.Fatalf("form %d handed out before Release changed", i)
		}
	}
	checkEncoding(t, s)
}
