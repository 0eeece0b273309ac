package hostile

import (
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

func TestObjectsHashAsGitDoes(t *testing.T) {
	repo := bareRepo(t)
	blob := Blob([]byte("hello\n"))
	tree := Tree(
		TreeEntry{ModeFile, "b", blob.Hash()},
		TreeEntry{ModeDir, "a", EmptyTree.Hash()},
		TreeEntry{ModeFile, "a.txt", blob.Hash()},
		TreeEntry{ModeExecutable, "a-b", blob.Hash()},
	)
	other := Signature{Name: "Other", Email: "o@example.com", When: time.Date(2021, 2, 3, 4, 5, 6, 0, time.FixedZone("", 2*3600))}
	commit := Commit(tree.Hash(), []plumbing.Hash{phantom("p1"), phantom("p2")}, DefaultSignature, other, "subject\n\nbody\n")
	tag := Tag(commit.Hash(), plumbing.CommitObject, "v1", other, "release\n")
	for _, o := range []Object{blob, tree, EmptyTree, commit, tag} {
		out, stderr, err := gitRun(repo, o.Data, "hash-object", "-t", o.Type.String(), "--stdin")
		if err != nil {
			t.Fatalf("git hash-object -t %s: %v\n%s", o.Type, err, stderr)
		}
		if got := strings.TrimSpace(out); got != o.Hash().String() {
			t.Errorf("%s: git says %s, Hash %s", o.Type, got, o.Hash())
		}
	}
	if EmptyTree.Hash().String() != "4b825dc642cb6eb9a060e54bf8d69288fbee4904" {
		t.Errorf("empty tree %s", EmptyTree.Hash())
	}
	if got, want := other.String(), "Other <o@example.com> 1612317906 +0200"; got != want {
		t.Errorf("signature %q, want %q", got, want)
	}

	// git mktree sorts entries itself: the same tree from shuffled input.
	mk, stderr, err := gitRun(repo, []byte(
		"040000 tree "+EmptyTree.Hash().String()+"\ta\n"+
			"100644 blob "+blob.Hash().String()+"\tb\n"+
			"100755 blob "+blob.Hash().String()+"\ta-b\n"+
			"100644 blob "+blob.Hash().String()+"\ta.txt\n"), "mktree", "--missing")
	if err != nil {
		t.Fatalf("git mktree: %v\n%s", err, stderr)
	}
	if strings.TrimSpace(mk) != tree.Hash().String() {
		t.Errorf("git mktree %s, Tree %s", strings.TrimSpace(mk), tree.Hash())
	}
}

// Trees built with RawTree out of order, or with duplicates, are what git
// fsck refuses (index-pack --strict checks every object).
func TestRawTreesFailFsck(t *testing.T) {
	blob := Blob([]byte("x\n"))
	for _, tc := range []struct {
		name string
		tree Object
		msg  string
	}{
		{"unsorted", RawTree(TreeEntry{ModeFile, "b", blob.Hash()}, TreeEntry{ModeFile, "a", blob.Hash()}), "treeNotSorted"},
		{"duplicate", RawTree(TreeEntry{ModeFile, "a", blob.Hash()}, TreeEntry{ModeFile, "a", blob.Hash()}), "duplicateEntries"},
		{"duplicate via Tree", Tree(TreeEntry{ModeFile, "a", blob.Hash()}, TreeEntry{ModeFile, "a", blob.Hash()}), "duplicateEntries"},
		{"zero-padded mode", RawTree(TreeEntry{"0100644", "a", blob.Hash()}), "zeroPaddedFilemode"},
		{"dot-dot name", RawTree(TreeEntry{ModeFile, "..", blob.Hash()}), "hasDotdot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPack()
			p.Add(blob)
			p.Add(tc.tree)
			stderr, err := indexPack(bareRepo(t), p.Bytes())
			if err == nil || !strings.Contains(stderr, tc.msg) {
				t.Errorf("git index-pack --strict: %v %q, want a refusal naming %s", err, stderr, tc.msg)
			}
		})
	}
	// The sorted tree is fine.
	p := NewPack()
	p.Add(blob)
	p.Add(Tree(TreeEntry{ModeFile, "b", blob.Hash()}, TreeEntry{ModeFile, "a", blob.Hash()}))
	mustIndex(t, bareRepo(t), p.Bytes())
}
