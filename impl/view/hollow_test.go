package view_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// hollowFixture builds a repository with a few stacks (enough for several
// chunks), metadata and hostile-looking names, and its full snapshot.
func hollowFixture(t *testing.T) (*gittest.Repo, view.Repo, view.Input, *view.Snapshot) {
	t.Helper()
	r := gittest.New(t)
	r.Commit("init", map[string]string{"README": "hi\n"})
	for i := range 24 {
		b := fmt.Sprintf("s%02d-<b>&\"x\"", i)
		r.Branch(b, "main")
		r.Commit(b+" </script>", map[string]string{fmt.Sprintf("f%d.txt", i): "x\n"})
		r.Branch(b+"-2", b)
		r.Commit(b+" 2", map[string]string{fmt.Sprintf("g%d.txt", i): "y\n"})
	}
	r.BlobRef("refs/branch-metadata/s01-<b>&\"x\"-2", meta(t, "s01-<b>&\"x\"", nil))
	repo := openRepo(t, r.Dir)
	in := view.Input{RepoID: "x", Kind: gen.Mirror, Trunk: "main", Remote: "https://example.com/x.git"}
	s, err := view.Build(context.Background(), repo, in)
	if err != nil {
		t.Fatal(err)
	}
	return r, repo, in, s
}

// TestHollowServesTheSameView: a hollow copy answers GET view with the
// same bytes (JSON and gzip), size, ETag, content hash and counts as the
// full snapshot, at every version it is published with.
func TestHollowServesTheSameView(t *testing.T) {
	_, _, _, built := hollowFixture(t)
	for _, tc := range []struct {
		name string
		make func(full *view.Snapshot) *view.Snapshot
	}{
		{"hollowed", func(full *view.Snapshot) *view.Snapshot { return full.Hollowed() }},
		{"hollowed, released", func(full *view.Snapshot) *view.Snapshot { h := full.Hollowed(); h.Release(); return h }},
		{"hollowed twice", func(full *view.Snapshot) *view.Snapshot { return full.Hollowed().Hollowed() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := built.WithVersion(7, time.Unix(7, 0))
			h := tc.make(full)
			if !h.Hollow() || full.Hollow() {
				t.Fatalf("Hollow: full %v, hollow %v", full.Hollow(), h.Hollow())
			}
			if !bytes.Equal(h.ViewJSON(), full.ViewJSON()) {
				t.Fatalf("ViewJSON differs:\n got %s\nwant %s", h.ViewJSON(), full.ViewJSON())
			}
			gunzipEquals(t, h.ViewGzip(), full.ViewJSON())
			if h.ViewSize() != len(full.ViewJSON()) || h.ETag() != full.ETag() || h.ContentHash() != full.ContentHash() ||
				h.Counts() != full.Counts() || h.Version() != 7 || *h.Repo().ViewVersion != 7 {
				t.Fatalf("hollow: size %d etag %s hash %s counts %+v; full: %d %s %s %+v",
					h.ViewSize(), h.ETag(), h.ContentHash(), h.Counts(), len(full.ViewJSON()), full.ETag(), full.ContentHash(), full.Counts())
			}
			// A later version of the hollow copy is the later version of the full one.
			h8, f8 := h.WithVersion(8, time.Unix(8, 0)), full.WithVersion(8, time.Unix(8, 0))
			if !bytes.Equal(h8.ViewJSON(), f8.ViewJSON()) || h8.ETag() != f8.ETag() || *h8.Repo().ViewVersion != 8 || *h.Repo().ViewVersion != 7 {
				t.Fatalf("version 8 differs:\n got %s\nwant %s", h8.ViewJSON(), f8.ViewJSON())
			}
			gunzipEquals(t, h8.ViewGzip(), f8.ViewJSON())
		})
	}
}

// TestHollowRecordsPanic: the record accessors of a hollow snapshot panic
// rather than answer "not found" for a branch that exists.
func TestHollowRecordsPanic(t *testing.T) {
	_, _, _, built := hollowFixture(t)
	h := built.WithVersion(1, time.Unix(1, 0)).Hollowed()
	for name, call := range map[string]func(){
		"Branch":       func() { h.Branch("main") },
		"Branches":     func() { h.Branches() },
		"Stack":        func() { h.Stack("s00") },
		"Stacks":       func() { h.Stacks() },
		"DiffRange":    func() { h.DiffRange("s00") },
		"View":         func() { h.View() },
		"StacksJSON":   func() { h.StacksJSON() },
		"StackJSON":    func() { h.StackJSON("s00") },
		"BranchJSON":   func() { h.BranchJSON("main") },
		"BranchesJSON": func() { h.BranchesJSON() },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s on a hollow snapshot did not panic", name)
				}
			}()
			call()
		}()
	}
}

// TestSavedViewLoadsUnderItsKeyOnly: a saved view loads back (same bytes
// and hash) under the key of the same refs; a moved branch, another input
// or a damaged file is refused.
func TestSavedViewLoadsUnderItsKeyOnly(t *testing.T) {
	r, repo, in, built := hollowFixture(t)
	key, err := view.Key(repo, in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := built.WithVersion(4, time.Unix(4, 0)).Save(&buf, key); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()

	loaded, err := view.LoadHollow(saved, key)
	if err != nil {
		t.Fatal(err)
	}
	got, want := loaded.WithVersion(1, time.Unix(9, 0)), built.WithVersion(1, time.Unix(9, 0))
	if !bytes.Equal(got.ViewJSON(), want.ViewJSON()) || got.ContentHash() != want.ContentHash() || got.Counts() != want.Counts() {
		t.Fatalf("loaded view differs:\n got %s\nwant %s", got.ViewJSON(), want.ViewJSON())
	}
	gunzipEquals(t, got.ViewGzip(), want.ViewJSON())

	other := in
	other.Trunk = "s00-<b>&\"x\""
	if k2, err := view.Key(repo, other); err != nil || k2 == key {
		t.Fatalf("another trunk: same key (%v)", err)
	}
	r.Git("checkout", "-q", "s00-<b>&\"x\"")
	r.Commit("moved", map[string]string{"m.txt": "m\n"})
	k3, err := view.Key(openRepo(t, r.Dir), in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := view.LoadHollow(saved, k3); !errors.Is(err, view.ErrStale) {
		t.Fatalf("a moved branch: %v, want ErrStale", err)
	}
	for name, data := range map[string][]byte{
		"truncated":   saved[:len(saved)-1],
		"empty":       nil,
		"a bit flips": func() []byte { b := bytes.Clone(saved); b[len(b)/2] ^= 1; return b }(),
	} {
		if _, err := view.LoadHollow(data, key); err == nil || errors.Is(err, view.ErrStale) {
			t.Errorf("%s: %v, want a damaged-file error", name, err)
		}
	}
}
