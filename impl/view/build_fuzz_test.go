package view_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/view"
)

// memRepo is a view.Repo over go-git's in-memory object storage: the same
// encoded objects as on disk, without a file per fuzz input.
type memRepo struct {
	st   *memory.Storage
	refs *refs.Table
}

func (m *memRepo) Refs() *refs.Table { return m.refs }

func (m *memRepo) Object(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return m.st.EncodedObject(t, h)
}

func (m *memRepo) Config() (*config.Config, error) { return config.NewConfig(), nil }

func store(t *testing.T, st *memory.Storage, enc interface {
	Encode(plumbing.EncodedObject) error
}) plumbing.Hash {
	obj := st.NewEncodedObject()
	if err := enc.Encode(obj); err != nil {
		t.Fatal(err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func blob(t *testing.T, st *memory.Storage, data []byte) plumbing.Hash {
	obj := &plumbing.MemoryObject{}
	obj.SetType(plumbing.BlobObject)
	if _, err := obj.Write(data); err != nil {
		t.Fatal(err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// metaRepo is trunk main with a chain a -> b -> c above it (HEAD on b),
// whose metadata blobs are the fuzz input: stackit metadata for a and b,
// Graphite metadata for c, and a stackit stack blob.
func metaRepo(t *testing.T, metaA, metaB, metaC, stack []byte) *memRepo {
	st := memory.NewStorage()
	tree := store(t, st, &object.Tree{})
	var tips []plumbing.Hash
	parent := []plumbing.Hash{}
	for i, msg := range []string{"init", "a1", "b1", "c1"} {
		when := time.Unix(1_700_000_000+int64(i)*60, 0).UTC()
		sig := object.Signature{Name: "T", Email: "t@example.com", When: when}
		h := store(t, st, &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: parent})
		tips = append(tips, h)
		parent = []plumbing.Hash{h}
	}
	table := refs.NewTable([]refs.Ref{
		{Name: refs.HEAD, Target: "refs/heads/b"},
		{Name: "refs/heads/main", Hash: tips[0]},
		{Name: "refs/heads/a", Hash: tips[1]},
		{Name: "refs/heads/b", Hash: tips[2]},
		{Name: "refs/heads/c", Hash: tips[3]},
		{Name: "refs/stackit/metadata/a", Hash: blob(t, st, metaA)},
		{Name: "refs/stackit/metadata/b", Hash: blob(t, st, metaB)},
		{Name: "refs/branch-metadata/c", Hash: blob(t, st, metaC)},
		{Name: "refs/stackit/stacks/s1", Hash: blob(t, st, stack)},
	})
	return &memRepo{st: st, refs: table}
}

// FuzzBuildWithMetadata: whatever the metadata blobs hold (bad JSON,
// unknown parents, self-parents, cycles, huge numbers), a build succeeds,
// keeps every branch, never makes a parent cycle, and its JSON is valid.
func FuzzBuildWithMetadata(f *testing.F) {
	f.Add([]byte(`{"parentBranchName":"main","stackId":"s1","prInfo":{"number":7,"title":"A"}}`),
		[]byte(`{"parentBranchName":"a","stackId":"s1"}`),
		[]byte(`{"parentBranchName":"b"}`),
		[]byte(`{"id":"s1","title":"Login flow"}`))
	f.Add([]byte(`{"parentBranchName":"c"}`), []byte(`{"parentBranchName":"a"}`), []byte(`{"parentBranchName":"b"}`), []byte(`{}`))
	f.Add([]byte(`{"parentBranchName":"a"}`), []byte(`{"parentBranchName":"b"}`), []byte(`{"parentBranchName":"c"}`), []byte(`null`))
	f.Add([]byte(`{"parentBranchName":"nope"}`), []byte(`{"parentBranchName":"main","parentBranchRevision":"zz"}`), []byte(`{"parentBranchName":""}`), []byte(`[`))
	f.Add([]byte(`{"parentBranchName":"\u0000"}`), []byte(`{"prInfo":{"number":-5}}`), []byte(`{"parentBranchName":"main","prInfo":{"number":99999999999999999999}}`), []byte(`{"title":7}`))
	f.Add([]byte(``), []byte("\xff"), []byte(`{"parentBranchName":"HEAD"}`), []byte(`{"id":"other"}`))
	f.Fuzz(func(t *testing.T, metaA, metaB, metaC, stack []byte) {
		repo := metaRepo(t, metaA, metaB, metaC, stack)
		s, err := view.Build(context.Background(), repo, view.Input{RepoID: "x", Kind: gen.Local, Trunk: "main"})
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		s = s.WithVersion(1, time.Unix(1_700_000_000, 0)) // as the registry publishes it
		for name, js := range map[string][]byte{"view": s.ViewJSON(), "stacks": s.StacksJSON(), "branches": s.BranchesJSON()} {
			if !json.Valid(js) {
				t.Fatalf("%s JSON is not valid: %s", name, js)
			}
		}
		parents := map[string]*string{}
		for _, b := range s.Branches() {
			parents[b.Name] = b.Parent
			if b.Pr != nil && b.Pr.Number <= 0 {
				t.Fatalf("%s: pull request number %d", b.Name, b.Pr.Number)
			}
		}
		for _, want := range []string{"main", "a", "b", "c"} {
			if _, ok := parents[want]; !ok {
				t.Fatalf("branch %s is missing: %v", want, parents)
			}
		}
		for name := range parents {
			cur, steps := name, 0
			for p := parents[cur]; p != nil; p = parents[cur] {
				if _, ok := parents[*p]; !ok {
					t.Fatalf("%s: parent %q is not a branch", cur, *p)
				}
				cur = *p
				if steps++; steps > len(parents) {
					t.Fatalf("parent cycle through %s", name)
				}
			}
		}
	})
}
