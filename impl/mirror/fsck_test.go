package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

const (
	idA = "1111111111111111111111111111111111111111"
	idB = "2222222222222222222222222222222222222222"
)

func treeBytes(entries ...string) []byte {
	// entries: "mode name hexid"
	var b bytes.Buffer
	for _, e := range entries {
		f := strings.SplitN(e, " ", 3)
		b.WriteString(f[0] + " " + f[1] + "\x00")
		h := plumbing.NewHash(f[2])
		b.Write(h[:])
	}
	return b.Bytes()
}

// TestCheckObject: what git fsck refuses (its error-level checks) is
// refused, what it accepts (warnings included) is accepted, and every
// link is reported with the type it must have.
func TestCheckObject(t *testing.T) {
	ident := "A U Thor <a@example.com> 1600000000 +0000"
	tests := []struct {
		name  string
		t     plumbing.ObjectType
		body  []byte
		ok    bool
		links []string // "type id"
	}{
		{"commit", plumbing.CommitObject, []byte("tree " + idA + "\nparent " + idB + "\nauthor " + ident + "\ncommitter " + ident + "\n\nmsg\n"), true,
			[]string{"tree " + idA, "commit " + idB}},
		{"commit without message", plumbing.CommitObject, []byte("tree " + idA + "\nauthor " + ident + "\ncommitter " + ident + "\n"), true, []string{"tree " + idA}},
		{"commit with gpgsig and encoding", plumbing.CommitObject, []byte("tree " + idA + "\nauthor " + ident + "\ncommitter " + ident + "\nencoding latin1\ngpgsig -----BEGIN-----\n x\n -----END-----\n\nmsg"), true, nil},
		{"commit without tree", plumbing.CommitObject, []byte("author " + ident + "\ncommitter " + ident + "\n\nmsg\n"), false, nil},
		{"commit with a bad tree id", plumbing.CommitObject, []byte("tree 12345\nauthor " + ident + "\ncommitter " + ident + "\n\nm"), false, nil},
		{"commit without author", plumbing.CommitObject, []byte("tree " + idA + "\ncommitter " + ident + "\n\nm"), false, nil},
		{"commit with two authors", plumbing.CommitObject, []byte("tree " + idA + "\nauthor " + ident + "\nauthor " + ident + "\ncommitter " + ident + "\n\nm"), false, nil},
		{"commit without committer", plumbing.CommitObject, []byte("tree " + idA + "\nauthor " + ident + "\n\nm"), false, nil},
		{"commit with NUL in a header", plumbing.CommitObject, []byte("tree " + idA + "\nauthor A\x00 <a@b> 1 +0000\ncommitter " + ident + "\n\nm"), false, nil},
		{"commit with an unterminated header", plumbing.CommitObject, []byte("tree " + idA + "\nauthor " + ident + "\ncommitter " + ident), false, nil},
		{"ident without email", plumbing.CommitObject, []byte("tree " + idA + "\nauthor A U Thor 1600000000 +0000\ncommitter " + ident + "\n\nm"), false, nil},
		{"ident without name", plumbing.CommitObject, []byte("tree " + idA + "\nauthor <a@b> 1 +0000\ncommitter " + ident + "\n\nm"), false, nil},
		{"ident with zero-padded date", plumbing.CommitObject, []byte("tree " + idA + "\nauthor A <a@b> 0160 +0000\ncommitter " + ident + "\n\nm"), false, nil},
		{"ident with bad zone", plumbing.CommitObject, []byte("tree " + idA + "\nauthor A <a@b> 160 +00\ncommitter " + ident + "\n\nm"), false, nil},
		{"tree", plumbing.TreeObject, treeBytes("100644 a.txt "+idA, "40000 dir "+idB, "160000 sub "+idA), true,
			[]string{"blob " + idA, "tree " + idB}},
		{"tree with zero-padded mode", plumbing.TreeObject, treeBytes("040000 dir " + idB), true, []string{"tree " + idB}},
		{"empty tree", plumbing.TreeObject, nil, true, nil},
		{"tree not sorted", plumbing.TreeObject, treeBytes("100644 b "+idA, "100644 a "+idA), false, nil},
		{"tree dir sorts as name/", plumbing.TreeObject, treeBytes("100644 a.b "+idA, "40000 a "+idB), true, nil},
		{"tree dir then a.b", plumbing.TreeObject, treeBytes("40000 a "+idB, "100644 a.b "+idA), false, nil},
		{"tree a.b then dir a/", plumbing.TreeObject, treeBytes("100644 a-b "+idA, "40000 a "+idB), true, nil},
		{"tree with duplicates", plumbing.TreeObject, treeBytes("100644 a "+idA, "100644 a "+idA), false, nil},
		{"tree with a file and a dir of one name", plumbing.TreeObject, treeBytes("100644 a "+idA, "100644 a-b "+idA, "40000 a "+idB), false, nil},
		{"tree with .git", plumbing.TreeObject, treeBytes("40000 .GIT " + idB), false, nil},
		{"tree with .git. (NTFS)", plumbing.TreeObject, treeBytes("40000 .git. " + idB), false, nil},
		{"tree with git~1", plumbing.TreeObject, treeBytes("40000 GIT~1 " + idB), false, nil},
		{"tree with ..", plumbing.TreeObject, treeBytes("40000 .. " + idB), false, nil},
		{"tree with a slash", plumbing.TreeObject, treeBytes("100644 a/b " + idA), false, nil},
		{"tree with an empty name", plumbing.TreeObject, []byte("100644 \x00" + strings.Repeat("\x11", 20)), false, nil},
		{"tree with a bad mode", plumbing.TreeObject, treeBytes("100a44 a " + idA), false, nil},
		{"tree with an unknown type of mode", plumbing.TreeObject, treeBytes("70000 a " + idA), false, nil},
		{"truncated tree", plumbing.TreeObject, treeBytes("100644 a " + idA)[:15], false, nil},
		{"tree naming the null id", plumbing.TreeObject, treeBytes("100644 a " + strings.Repeat("0", 40)), false, nil},
		{"tag", plumbing.TagObject, []byte("object " + idA + "\ntype commit\ntag v1\ntagger " + ident + "\n\nrelease\n"), true, []string{"commit " + idA}},
		{"tag without tagger", plumbing.TagObject, []byte("object " + idA + "\ntype tree\ntag v1\n\nx"), true, []string{"tree " + idA}},
		{"tag without object", plumbing.TagObject, []byte("type commit\ntag v1\n\nx"), false, nil},
		{"tag with an unknown type", plumbing.TagObject, []byte("object " + idA + "\ntype spoon\ntag v1\n\nx"), false, nil},
		{"tag without name", plumbing.TagObject, []byte("object " + idA + "\ntype commit\n\nx"), false, nil},
		{"tag with a bad tagger", plumbing.TagObject, []byte("object " + idA + "\ntype commit\ntag v1\ntagger nobody\n\nx"), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var links []string
			err := checkObject(tt.t, tt.body, func(h plumbing.Hash, want plumbing.ObjectType) error {
				links = append(links, want.String()+" "+h.String())
				return nil
			})
			if tt.ok != (err == nil) {
				t.Fatalf("checkObject = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v is not ErrCorrupt", err)
			}
			if tt.ok && tt.links != nil && fmt.Sprint(links) != fmt.Sprint(tt.links) {
				t.Fatalf("links %v, want %v", links, tt.links)
			}
		})
	}
}

// TestCheckObjectAgreesWithGit: the objects git fsck refuses with an error
// (on a throwaway repository) are refused here, and those it accepts are
// accepted.
func TestCheckObjectAgreesWithGit(t *testing.T) {
	blob := plumbing.ComputeHash(plumbing.BlobObject, []byte("x\n")).String()
	tree := plumbing.ComputeHash(plumbing.TreeObject, treeBytes("100644 x "+blob)).String()
	ident := "A <a@b.c> 1600000000 +0000"
	bodies := map[string][]byte{
		"ok":             []byte("tree " + tree + "\nauthor " + ident + "\ncommitter " + ident + "\n\nm\n"),
		"no author":      []byte("tree " + tree + "\ncommitter " + ident + "\n\nm\n"),
		"bad zone":       []byte("tree " + tree + "\nauthor A <a@b.c> 1 +00x0\ncommitter " + ident + "\n\nm\n"),
		"padded date":    []byte("tree " + tree + "\nauthor A <a@b.c> 01 +0000\ncommitter " + ident + "\n\nm\n"),
		"no email":       []byte("tree " + tree + "\nauthor A 1 +0000\ncommitter " + ident + "\n\nm\n"),
		"two authors":    []byte("tree " + tree + "\nauthor " + ident + "\nauthor " + ident + "\ncommitter " + ident + "\n\nm\n"),
		"no header end":  []byte("tree " + tree + "\nauthor " + ident + "\ncommitter " + ident),
		"no name":        []byte("tree " + tree + "\nauthor <a@b.c> 1 +0000\ncommitter " + ident + "\n\nm\n"),
		"missing space ": []byte("tree " + tree + "\nauthor A<a@b.c> 1 +0000\ncommitter " + ident + "\n\nm\n"),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("git", "init", "-q", "--bare", dir).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			gitHashObject(t, dir, "blob", []byte("x\n"))
			gitHashObject(t, dir, "tree", treeBytes("100644 x "+blob))
			id := gitHashObject(t, dir, "commit", body)
			out, err := exec.Command("git", "-C", dir, "fsck", "--strict", "--no-dangling", id).CombinedOutput()
			gitOK := err == nil && !strings.Contains(string(out), "error")
			ours := checkObject(plumbing.CommitObject, body, func(plumbing.Hash, plumbing.ObjectType) error { return nil })
			if gitOK != (ours == nil) {
				t.Fatalf("git fsck ok=%v (%s), checkObject = %v", gitOK, out, ours)
			}
		})
	}
}

// gitHashObject writes an object of type t into the repository in dir
// without git's own checks, and returns its id.
func gitHashObject(t *testing.T, dir, typ string, body []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "obj")
	if err := os.WriteFile(f, body, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", dir, "hash-object", "-w", "--literally", "-t", typ, f).CombinedOutput()
	if err != nil {
		t.Fatalf("hash-object: %v %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestReaderObjectSize: a mirror tells every object's size as git does,
// deltas included, without reading it; a missing object is
// plumbing.ErrObjectNotFound.
func TestReaderObjectSize(t *testing.T) {
	_, url := stacksFixture(t, gittest.Shape{Branches: 20, MetadataEvery: 1, Bare: true})
	r := newRoot(t)
	m := cloneOK(t, r, "m", url)
	rd := m.Reader()
	lines := strings.Split(runGit(t, m.Dir(), nil, "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objectsize)"), "\n")
	if len(lines) < 40 {
		t.Fatalf("only %d objects", len(lines))
	}
	for _, l := range lines {
		id, size, _ := strings.Cut(l, " ")
		got, err := rd.ObjectSize(plumbing.NewHash(id))
		if err != nil || fmt.Sprint(got) != size {
			t.Fatalf("%s: ObjectSize = %d, %v; git says %s", id, got, err, size)
		}
	}
	if _, err := rd.ObjectSize(plumbing.NewHash(idA)); !errors.Is(err, plumbing.ErrObjectNotFound) {
		t.Fatalf("missing object: %v", err)
	}
}
