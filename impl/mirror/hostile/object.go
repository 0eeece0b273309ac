package hostile

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// Object is a git object: its type and its content (what is hashed after
// the "<type> <size>\x00" header, and what a pack compresses).
type Object struct {
	Type plumbing.ObjectType
	Data []byte
}

// Hash returns the object's id.
func (o Object) Hash() plumbing.Hash { return plumbing.ComputeHash(o.Type, o.Data) }

// Blob returns a blob holding data.
func Blob(data []byte) Object { return Object{Type: plumbing.BlobObject, Data: data} }

// Signature is an author, committer or tagger line.
type Signature struct {
	Name, Email string
	When        time.Time
}

// DefaultSignature is a fixed identity and date, so that built objects
// have reproducible ids.
var DefaultSignature = Signature{Name: "Hostile", Email: "hostile@example.com", When: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}

// String formats the signature as git writes it: "Name <email> 1577836800 +0000".
func (s Signature) String() string {
	return fmt.Sprintf("%s <%s> %d %s", s.Name, s.Email, s.When.Unix(), s.When.Format("-0700"))
}

// Commit returns a commit object. message is written as given (git's own
// commits end it with a newline).
func Commit(tree plumbing.Hash, parents []plumbing.Hash, author, committer Signature, message string) Object {
	var b bytes.Buffer
	b.WriteString(commitHeader(tree, parents, author, committer))
	b.WriteString(message)
	return Object{Type: plumbing.CommitObject, Data: b.Bytes()}
}

// commitHeader is a commit's content up to and including the blank line
// before the message.
func commitHeader(tree plumbing.Hash, parents []plumbing.Hash, author, committer Signature) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "tree %s\n", tree)
	for _, p := range parents {
		fmt.Fprintf(&b, "parent %s\n", p)
	}
	fmt.Fprintf(&b, "author %s\ncommitter %s\n\n", author, committer)
	return b.String()
}

// Tag returns an annotated tag object pointing at object, of type typ.
func Tag(object plumbing.Hash, typ plumbing.ObjectType, name string, tagger Signature, message string) Object {
	var b bytes.Buffer
	fmt.Fprintf(&b, "object %s\ntype %s\ntag %s\ntagger %s\n\n%s", object, typ, name, tagger, message)
	return Object{Type: plumbing.TagObject, Data: b.Bytes()}
}

// File modes of tree entries, as git writes them (a tree entry's mode is
// free text here, so that an attack can use "0100644" or "1").
const (
	ModeFile       = "100644"
	ModeExecutable = "100755"
	ModeSymlink    = "120000"
	ModeDir        = "40000"
	ModeSubmodule  = "160000"
)

// TreeEntry is one entry of a tree.
type TreeEntry struct {
	Mode string // e.g. ModeFile
	Name string
	Hash plumbing.Hash
}

// Tree returns a tree of entries sorted as git sorts them (by name, a
// directory's name compared as if it ended with "/"). Entries with the
// same name are kept, next to each other: use that, or RawTree, to build
// trees git fsck refuses.
func Tree(entries ...TreeEntry) Object {
	sorted := append([]TreeEntry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return treeKey(sorted[i]) < treeKey(sorted[j]) })
	return RawTree(sorted...)
}

func treeKey(e TreeEntry) string {
	if e.Mode == ModeDir {
		return e.Name + "/"
	}
	return e.Name
}

// RawTree returns a tree of entries in the order given: unsorted or
// duplicate entries stay as they are.
func RawTree(entries ...TreeEntry) Object {
	var b bytes.Buffer
	for _, e := range entries {
		b.WriteString(e.Mode)
		b.WriteByte(' ')
		b.WriteString(e.Name)
		b.WriteByte(0)
		b.Write(e.Hash[:])
	}
	return Object{Type: plumbing.TreeObject, Data: b.Bytes()}
}

// EmptyTree is the tree with no entries (4b825dc6...).
var EmptyTree = RawTree()
