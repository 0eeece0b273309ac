package mirror

import (
	"bytes"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// This file checks commits, trees and tags as they arrive, as git fsck
// does (its error-level checks, fsck.c), and names every object each one
// refers to with the type it must have, for the connectivity check
// (verify.go). A mirror is served to git clients too: what git would
// refuse, or what would be dangerous in a checkout (a tree entry named
// ".git", "..", or with a '/'), is refused here.

// link is called with every object an object names, and the type it must
// have.
type link func(h plumbing.Hash, want plumbing.ObjectType) error

// checkObject checks the content of an object of type t and reports its
// links. A malformed object is ErrCorrupt.
func checkObject(t plumbing.ObjectType, content []byte, to link) error {
	switch t {
	case plumbing.CommitObject:
		return checkCommit(content, to)
	case plumbing.TreeObject:
		return checkTree(content, to)
	case plumbing.TagObject:
		_, err := checkTag(content, to)
		return err
	}
	return nil
}

// headerEnd checks that the headers of a commit or tag end with an empty
// line (or the object with a newline) and hold no NUL.
func headerEnd(b []byte, what string) error {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case 0:
			return corrupt("a %s has a NUL byte in its header", what)
		case '\n':
			if i+1 < len(b) && b[i+1] == '\n' {
				return nil
			}
		}
	}
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return nil
	}
	return corrupt("a %s's header does not end", what)
}

// header cuts the header line "name value\n" at the start of b.
func header(b []byte, name string) (value, rest []byte, ok bool) {
	if !bytes.HasPrefix(b, []byte(name)) || len(b) <= len(name) || b[len(name)] != ' ' {
		return nil, b, false
	}
	line := b[len(name)+1:]
	i := bytes.IndexByte(line, '\n')
	if i < 0 {
		return nil, b, false
	}
	return line[:i], line[i+1:], true
}

func hexID(v []byte) (plumbing.Hash, bool) {
	return parseHex(v)
}

func checkCommit(b []byte, to link) error {
	if err := headerEnd(b, "commit"); err != nil {
		return err
	}
	v, rest, ok := header(b, "tree")
	if !ok {
		return corrupt("a commit has no tree")
	}
	tree, ok := hexID(v)
	if !ok {
		return corrupt("a commit names a malformed tree id")
	}
	if err := to(tree, plumbing.TreeObject); err != nil {
		return err
	}
	for {
		v, r, ok := header(rest, "parent")
		if !ok {
			break
		}
		p, ok := hexID(v)
		if !ok {
			return corrupt("a commit names a malformed parent id")
		}
		if err := to(p, plumbing.CommitObject); err != nil {
			return err
		}
		rest = r
	}
	v, rest, ok = header(rest, "author")
	if !ok {
		return corrupt("a commit has no author")
	}
	if err := checkIdent(v, "author"); err != nil {
		return err
	}
	if _, _, again := header(rest, "author"); again {
		return corrupt("a commit has more than one author")
	}
	v, _, ok = header(rest, "committer")
	if !ok {
		return corrupt("a commit has no committer")
	}
	return checkIdent(v, "committer")
}

// checkIdent checks "Name <email> timestamp +zone" as git fsck does.
func checkIdent(v []byte, who string) error {
	bad := func(why string) error { return corrupt("a %s line %s", who, why) }
	if len(v) > 0 && v[0] == '<' {
		return bad("has no name before the email")
	}
	i := bytes.IndexAny(v, "<>\n")
	if i < 0 || v[i] != '<' {
		return bad("has no email")
	}
	if i == 0 || v[i-1] != ' ' {
		return bad("has no space before the email")
	}
	v = v[i+1:]
	j := bytes.IndexAny(v, "<>\n")
	if j < 0 || v[j] != '>' {
		return bad("has a malformed email")
	}
	v = v[j+1:]
	if len(v) == 0 || v[0] != ' ' {
		return bad("has no space before the date")
	}
	v = v[1:]
	k := 0
	for k < len(v) && v[k] >= '0' && v[k] <= '9' {
		k++
	}
	switch {
	case k == 0 || k >= len(v) || v[k] != ' ':
		return bad("has a malformed date")
	case v[0] == '0' && k > 1:
		return bad("has a zero-padded date")
	case k > 19:
		return bad("has a date that overflows")
	}
	zone := v[k+1:]
	if len(zone) != 5 || (zone[0] != '+' && zone[0] != '-') || !digits(zone[1:]) {
		return bad("has a malformed time zone")
	}
	return nil
}

func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// treeEntry is one parsed entry of a tree.
type treeEntry struct {
	name []byte
	dir  bool
}

func checkTree(b []byte, to link) error {
	var list []treeEntry
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 || sp > 7 {
			return corrupt("a tree entry has a malformed mode")
		}
		mode, ok := parseMode(b[:sp])
		if !ok {
			return corrupt("a tree entry has a malformed mode")
		}
		b = b[sp+1:]
		nul := bytes.IndexByte(b, 0)
		if nul < 0 || len(b) < nul+1+20 {
			return corrupt("a tree is truncated")
		}
		name := b[:nul]
		var h plumbing.Hash
		copy(h[:], b[nul+1:nul+21])
		b = b[nul+21:]
		if err := checkEntryName(name); err != nil {
			return err
		}
		var want plumbing.ObjectType
		switch mode & 0o170000 {
		case 0o040000:
			want = plumbing.TreeObject
		case 0o100000, 0o120000:
			want = plumbing.BlobObject
		case 0o160000:
			want = plumbing.InvalidObject // a submodule's commit: not in this repository
		default:
			return corrupt("a tree entry has the unknown mode %o", mode)
		}
		if h.IsZero() {
			return corrupt("a tree entry names the null object id")
		}
		e := treeEntry{name: name, dir: want == plumbing.TreeObject}
		if n := len(list); n > 0 {
			if err := ordered(list, e); err != nil {
				return err
			}
		}
		list = append(list, e)
		if want != plumbing.InvalidObject {
			if err := to(h, want); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseMode parses an octal mode (git writes no leading zero, but older
// tools did: accepted, as git accepts it with a warning).
func parseMode(b []byte) (uint32, bool) {
	var m uint32
	for _, c := range b {
		if c < '0' || c > '7' {
			return 0, false
		}
		m = m<<3 | uint32(c-'0')
	}
	return m, len(b) > 0
}

// checkEntryName refuses names a checkout could not hold safely.
func checkEntryName(name []byte) error {
	switch {
	case len(name) == 0:
		return corrupt("a tree entry has an empty name")
	case bytes.IndexByte(name, '/') >= 0:
		return corrupt("a tree entry's name holds a '/'")
	case string(name) == "." || string(name) == "..":
		return corrupt("a tree entry is named %q", name)
	case isDotGit(name):
		return corrupt("a tree entry is named .git")
	}
	return nil
}

// isDotGit reports a name a checkout would take for ".git": in any case,
// or with the trailing dots and spaces Windows drops, or its 8.3 short
// name.
func isDotGit(name []byte) bool {
	s := strings.ToLower(strings.TrimRight(string(name), ". "))
	return s == ".git" || s == "git~1"
}

// ordered checks that e may follow the entries of list in a tree: git
// sorts by name, a directory's as if it ended with '/', and one name may
// appear only once, even as a file and a directory.
func ordered(list []treeEntry, e treeEntry) error {
	prev := list[len(list)-1]
	if c := compareEntries(prev, e); c > 0 {
		return corrupt("a tree's entries are not sorted")
	} else if c == 0 || bytes.Equal(prev.name, e.name) {
		return corrupt("a tree has two entries of one name")
	}
	if e.dir {
		// A file of the same name sorts before the names that extend it
		// with a character below '/', which sort before this directory.
		for j := len(list) - 1; j >= 0 && bytes.HasPrefix(list[j].name, e.name); j-- {
			if len(list[j].name) == len(e.name) {
				return corrupt("a tree has two entries of one name")
			}
		}
	}
	return nil
}

func compareEntries(a, b treeEntry) int {
	n := min(len(a.name), len(b.name))
	if c := bytes.Compare(a.name[:n], b.name[:n]); c != 0 {
		return c
	}
	next := func(e treeEntry) int {
		switch {
		case len(e.name) > n:
			return int(e.name[n])
		case e.dir:
			return '/'
		}
		return 0
	}
	ca, cb := next(a), next(b)
	switch {
	case ca < cb:
		return -1
	case ca > cb:
		return 1
	}
	return 0
}

// checkTag checks an annotated tag and returns the object it names.
func checkTag(b []byte, to link) (plumbing.Hash, error) {
	if err := headerEnd(b, "tag"); err != nil {
		return plumbing.ZeroHash, err
	}
	v, rest, ok := header(b, "object")
	if !ok {
		return plumbing.ZeroHash, corrupt("a tag names no object")
	}
	obj, ok := hexID(v)
	if !ok {
		return plumbing.ZeroHash, corrupt("a tag names a malformed object id")
	}
	v, rest, ok = header(rest, "type")
	if !ok {
		return plumbing.ZeroHash, corrupt("a tag has no type")
	}
	t, err := plumbing.ParseObjectType(string(v))
	if err != nil || !(t == plumbing.CommitObject || t == plumbing.TreeObject || t == plumbing.BlobObject || t == plumbing.TagObject) {
		return plumbing.ZeroHash, corrupt("a tag has an unknown type")
	}
	if _, rest, ok = header(rest, "tag"); !ok {
		return plumbing.ZeroHash, corrupt("a tag has no name")
	}
	if v, _, ok := header(rest, "tagger"); ok {
		if err := checkIdent(v, "tagger"); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	return obj, to(obj, t)
}
