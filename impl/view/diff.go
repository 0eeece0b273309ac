package view

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/stackd/stackd/impl/diff"
)

// DiffLimits bound the work and the size of one patch. Zero fields take
// the defaults of DefaultDiffLimits.
type DiffLimits struct {
	// FileBytes is the largest blob compared, per side: a file with a
	// larger side is shown "too large" (its sizes, no hunks), and that
	// side is never read (its size is looked up alone).
	FileBytes int64
	// ReadBytes is the blob content one patch may read in all; files
	// that would read more are shown "too large".
	ReadBytes int64
	// PatchBytes is the largest patch: a file whose hunks would pass it
	// is shown "too large"; once not even that fits, the files left are
	// counted on one last line.
	PatchBytes int64
	// Work is the comparison budget of one patch, in steps of package
	// diff; when it is spent the comparisons left are coarse (a changed
	// region shown replaced whole), still correct.
	Work int64
	// Options tune the line comparison (tests set Minimal).
	Options diff.Options
}

// The defaults. A source file of 1 MiB is some 30,000 lines, beyond what
// anyone reviews as a diff; comparing one takes a few tens of megabytes
// at most. 8 MiB of blobs read per patch is four such files changed
// through and through; 8 MiB of patch is about 100,000 changed lines, and
// the diff cache (DefaultDiffCacheBytes) keeps eight such patches. 100
// million steps of comparison are about half a CPU-second. Measured
// (BenchmarkDiffRewrite200k, BenchmarkDiffWorstCase,
// BenchmarkDiffManyFiles): the 200,000-line rewrite of issue 14 costs
// about 0.3 CPU-seconds; a patch at every limit (files of 1 MiB, every
// line rewritten from two distinct ones) about 0.9; 40,000 small changed
// files (cut at 8 MiB of patch) about 1.
const (
	DefaultDiffFileBytes  = 1 << 20
	DefaultDiffReadBytes  = 8 << 20
	DefaultDiffPatchBytes = 8 << 20
	DefaultDiffWork       = 100_000_000
)

// DefaultDiffLimits returns the defaults.
func DefaultDiffLimits() DiffLimits {
	return DiffLimits{FileBytes: DefaultDiffFileBytes, ReadBytes: DefaultDiffReadBytes, PatchBytes: DefaultDiffPatchBytes, Work: DefaultDiffWork}
}

func (l DiffLimits) withDefaults() DiffLimits {
	d := DefaultDiffLimits()
	if l.FileBytes <= 0 {
		l.FileBytes = d.FileBytes
	}
	if l.ReadBytes <= 0 {
		l.ReadBytes = d.ReadBytes
	}
	if l.PatchBytes <= 0 {
		l.PatchBytes = d.PatchBytes
	}
	if l.Work <= 0 {
		l.Work = d.Work
	}
	return l
}

// TooLargePrefix starts the marker line of a file whose content is not
// shown, and the last line of a patch that lists no more files (see Diff).
const TooLargePrefix = "stackd: diff not shown"

// binarySniff is how much of a blob git looks at for a NUL byte.
const binarySniff = 8000

// Diff returns the unified, git-style patch from base to tip, within
// limits. Blobs are read only here, so in a partial clone missing blobs
// fail the diff (with the object-not-found error wrapped) and nothing
// else. ctx cancels it (the context's error, wrapped).
//
// The format is git's (`git diff --full-index -M100%`): renames are found
// when the content is identical; a change of file type (file, symbolic
// link, submodule) is a deletion and a creation; paths are quoted as git
// quotes them. A file beyond the limits keeps its header and index line
// and, instead of hunks, git's line for a file whose content is not shown
// and a marker line:
//
//	Binary files a/<path> and b/<path> differ
//	stackd: diff not shown, <reason>: old <n> bytes[, <n> lines]; new <n> bytes[, <n> lines]
//
// (a created file has no old part, a deleted one no new part; lines are
// counted when the blob was read). git apply then takes the file's new
// content from the object store, or refuses the patch. A patch that
// reaches its size limit ends with a section for the first file left
// out, which git apply refuses:
//
//	diff --git a/<path> b/<path>
//	index <old>..<new>
//	stackd: diff not shown, <n> more changed files, patch larger than <n> bytes
//
// so a patch is at most PatchBytes plus one such section.
func Diff(ctx context.Context, repo Repo, base, tip plumbing.Hash, limits DiffLimits) ([]byte, error) {
	s := objectsOnly{repo}
	from, err := object.GetCommit(s, base)
	if err != nil {
		return nil, fmt.Errorf("view: diff base %s: %w", base, err)
	}
	to, err := object.GetCommit(s, tip)
	if err != nil {
		return nil, fmt.Errorf("view: diff tip %s: %w", tip, err)
	}
	fromTree, err := from.Tree()
	if err != nil {
		return nil, fmt.Errorf("view: diff base tree: %w", err)
	}
	toTree, err := to.Tree()
	if err != nil {
		return nil, fmt.Errorf("view: diff tip tree: %w", err)
	}
	changes, err := object.DiffTreeWithOptions(ctx, fromTree, toTree, nil)
	if err != nil {
		if errors.Is(err, object.ErrCanceled) && ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("view: diff %s..%s: %w", base, tip, err)
	}
	p := &patchWriter{repo: repo, lim: limits.withDefaults()}
	p.budget = diff.NewBudget(ctx, p.lim.Work)
	files := filePairs(changes)
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("view: diff %s..%s: %w", base, tip, err)
		}
		more, err := p.file(f, len(files)-i)
		if err != nil {
			return nil, fmt.Errorf("view: diff %s..%s: %w", base, tip, err)
		}
		if !more {
			break
		}
	}
	return p.out.Bytes(), nil
}

// entry is one side of a file pair; a zero path means no file.
type entry struct {
	path string
	mode filemode.FileMode
	hash plumbing.Hash
}

func (e entry) exists() bool { return e.path != "" }

type filePair struct{ old, new entry }

// filePairs turns tree changes into the file pairs of the patch, in git's
// order (by path; a deletion before a creation at the same path), a
// change of file type split into a deletion and a creation, and a
// creation paired with a deletion of the same content as a rename.
func filePairs(changes object.Changes) []filePair {
	out := make([]filePair, 0, len(changes))
	for _, c := range changes {
		var old, new entry
		if c.From.Name != "" {
			old = entry{c.From.Name, c.From.TreeEntry.Mode, c.From.TreeEntry.Hash}
		}
		if c.To.Name != "" {
			new = entry{c.To.Name, c.To.TreeEntry.Mode, c.To.TreeEntry.Hash}
		}
		if old.exists() && new.exists() && kind(old.mode) != kind(new.mode) {
			out = append(out, filePair{old: old}, filePair{new: new})
			continue
		}
		out = append(out, filePair{old, new})
	}
	slices.SortStableFunc(out, func(a, b filePair) int {
		return strings.Compare(a.sortPath(), b.sortPath())
	})
	return exactRenames(out)
}

// exactRenames pairs each created file (in path order) with a deleted
// file of the same content and type, preferring one of the same base
// name, then the first by path, as git does; a rename takes the place of
// the creation. Exact renames only: finding similar files would read
// every created and deleted blob, whatever their number and size. It
// takes linear time, whatever the number of identical files.
func exactRenames(pairs []filePair) []filePair {
	type content struct {
		hash plumbing.Hash
		kind filemode.FileMode
	}
	type named struct {
		content
		base string
	}
	byContent := map[content][]int{} // deletions, in path order
	byName := map[named][]int{}
	for i, p := range pairs {
		if p.old.exists() && !p.new.exists() && p.old.mode != filemode.Submodule {
			c := content{p.old.hash, kind(p.old.mode)}
			byContent[c] = append(byContent[c], i)
			byName[named{c, path.Base(p.old.path)}] = append(byName[named{c, path.Base(p.old.path)}], i)
		}
	}
	if len(byContent) == 0 {
		return pairs
	}
	used := make([]bool, len(pairs))
	// first returns the first deletion of q not paired yet, dropping the
	// paired ones it meets.
	first := func(q []int) (int, []int) {
		for len(q) > 0 && used[q[0]] {
			q = q[1:]
		}
		if len(q) == 0 {
			return -1, q
		}
		return q[0], q
	}
	for i := range pairs {
		p := &pairs[i]
		if p.old.exists() || !p.new.exists() || p.new.mode == filemode.Submodule {
			continue
		}
		c := content{p.new.hash, kind(p.new.mode)}
		if _, ok := byContent[c]; !ok {
			continue
		}
		n := named{c, path.Base(p.new.path)}
		d, q := first(byName[n])
		byName[n] = q
		if d < 0 {
			d, q = first(byContent[c])
			byContent[c] = q
		}
		if d < 0 {
			continue
		}
		used[d] = true
		p.old = pairs[d].old
	}
	out := pairs[:0]
	for i, p := range pairs {
		if !used[i] {
			out = append(out, p)
		}
	}
	return out
}

// paths are the names of the "diff --git" line: a created or deleted
// file has its one name on both sides.
func (f filePair) paths() (string, string) {
	oldPath, newPath := f.old.path, f.new.path
	if !f.old.exists() {
		oldPath = newPath
	}
	if !f.new.exists() {
		newPath = oldPath
	}
	return oldPath, newPath
}

func (f filePair) sortPath() string {
	if f.new.exists() {
		return f.new.path
	}
	return f.old.path
}

// kind is a mode's file type: regular (executable or not), symbolic link
// or submodule.
func kind(m filemode.FileMode) filemode.FileMode {
	if m == filemode.Executable || m == filemode.Deprecated {
		return filemode.Regular
	}
	return m
}

// patchWriter writes a patch file by file, within its limits.
type patchWriter struct {
	repo   Repo
	lim    DiffLimits
	budget *diff.Budget
	read   int64 // blob bytes read so far
	out    bytes.Buffer
}

// side is what is known of one side of a file: its size, and its content
// and line count once read.
type side struct {
	size    int64
	data    []byte
	read    bool
	lines   int
	present bool
}

// file writes the section of one file pair. It returns false when the
// patch is full: then it has written the notice that ends the patch.
func (p *patchWriter) file(f filePair, left int) (bool, error) {
	mark := p.out.Len()
	header := p.header(f)
	p.out.WriteString(header)
	if f.old.exists() && f.new.exists() && f.old.hash == f.new.hash {
		// A rename or a mode change: the header says it all.
		return p.keep(mark, f, left), nil
	}
	old, new, reason, err := p.load(f)
	if err != nil {
		return false, err
	}
	la, lb := label("a/", f.old), label("b/", f.new)
	if reason != "" {
		return p.tooLarge(mark, f, header, reason, old, new, left), nil
	}
	if isBinary(old.data) || isBinary(new.data) {
		fmt.Fprintf(&p.out, "Binary files %s and %s differ\n", la, lb)
		return p.keep(mark, f, left), nil
	}
	r, err := diff.Compare(old.data, new.data, p.lim.Options, p.budget)
	if err != nil {
		return false, err
	}
	old.lines, new.lines = r.Lines()
	labels := p.out.Len()
	fmt.Fprintf(&p.out, "--- %s%s\n+++ %s%s\n", la, tabIfSpace(la), lb, tabIfSpace(lb))
	hunks := p.out.Len()
	r.WriteHunks(&p.out)
	if p.out.Len() == hunks {
		// No hunks (two empty sides): no labels either, as git.
		p.out.Truncate(labels)
	}
	if int64(p.out.Len()) <= p.lim.PatchBytes {
		return true, nil
	}
	return p.tooLarge(mark, f, header, "patch larger than "+strconv.FormatInt(p.lim.PatchBytes, 10)+" bytes", old, new, left), nil
}

// keep keeps the section written from mark on when the patch is within
// its limit, and else ends the patch there.
func (p *patchWriter) keep(mark int, f filePair, left int) bool {
	if int64(p.out.Len()) <= p.lim.PatchBytes {
		return true
	}
	p.end(mark, f, left)
	return false
}

// tooLarge replaces the section written from mark on with the file's
// "too large" section: its header, git's line for a file whose content
// is not shown, and the marker line with the reason and what is known of
// each side. git apply then either takes the new content from the object
// store (the index line names it in full) or refuses: never a wrong
// result. When not even that fits, the patch ends there.
func (p *patchWriter) tooLarge(mark int, f filePair, header, reason string, old, new side, left int) bool {
	p.out.Truncate(mark)
	p.out.WriteString(header)
	fmt.Fprintf(&p.out, "Binary files %s and %s differ\n%s, %s:", label("a/", f.old), label("b/", f.new), TooLargePrefix, reason)
	sep := " "
	for _, s := range []struct {
		name string
		side
	}{{"old", old}, {"new", new}} {
		if !s.present {
			continue
		}
		fmt.Fprintf(&p.out, "%s%s %d bytes", sep, s.name, s.size)
		if s.read {
			fmt.Fprintf(&p.out, ", %d lines", s.lines)
		}
		sep = "; "
	}
	p.out.WriteByte('\n')
	return p.keep(mark, f, left)
}

// end replaces what was written from mark on with the notice that ends a
// full patch: a section for the first file left out (so that git apply
// refuses the patch: a change with neither hunks nor content) whose last
// line counts the files left out.
func (p *patchWriter) end(mark int, f filePair, left int) {
	p.out.Truncate(mark)
	oldPath, newPath := f.paths()
	oldHash, newHash := plumbing.ZeroHash, plumbing.ZeroHash
	if f.old.exists() {
		oldHash = f.old.hash
	}
	if f.new.exists() {
		newHash = f.new.hash
	}
	fmt.Fprintf(&p.out, "diff --git %s %s\nindex %s..%s\n%s, %d more changed files, patch larger than %d bytes\n",
		quotePath("a/"+oldPath), quotePath("b/"+newPath), oldHash, newHash, TooLargePrefix, left, p.lim.PatchBytes)
}

// load reads both sides of a changed file, or says why it does not: a
// side larger than the file limit, or more than the patch may still read.
// Sizes are looked up before anything is read.
func (p *patchWriter) load(f filePair) (old, new side, reason string, err error) {
	for _, s := range []struct {
		e   entry
		out *side
	}{{f.old, &old}, {f.new, &new}} {
		if !s.e.exists() {
			s.out.read = true
			continue
		}
		s.out.present = true
		if s.e.mode == filemode.Submodule {
			s.out.data = []byte("Subproject commit " + s.e.hash.String() + "\n")
			s.out.size, s.out.read = int64(len(s.out.data)), true
			s.out.lines = 1
			continue
		}
		if s.out.size, err = objectSize(p.repo, s.e.hash); err != nil {
			return old, new, "", fmt.Errorf("size of %s: %w", s.e.hash, err)
		}
	}
	for _, s := range []*side{&old, &new} {
		if !s.read && s.size > p.lim.FileBytes {
			return old, new, "file larger than " + strconv.FormatInt(p.lim.FileBytes, 10) + " bytes", nil
		}
	}
	var need int64
	for _, s := range []*side{&old, &new} {
		if !s.read {
			need += s.size
		}
	}
	if p.read+need > p.lim.ReadBytes {
		return old, new, "patch reads more than " + strconv.FormatInt(p.lim.ReadBytes, 10) + " bytes of files", nil
	}
	for _, s := range []struct {
		e   entry
		out *side
	}{{f.old, &old}, {f.new, &new}} {
		if s.out.read {
			continue
		}
		if s.out.data, err = readBlob(p.repo, s.e.hash, s.out.size); err != nil {
			return old, new, "", err
		}
		p.read += s.out.size
		s.out.read = true
		s.out.lines = diff.CountLines(s.out.data)
	}
	return old, new, "", nil
}

// objectSize returns the size of object h: from its header when repo is
// a Sizer, else by reading it.
func objectSize(repo Repo, h plumbing.Hash) (int64, error) {
	if s, ok := repo.(Sizer); ok {
		return s.ObjectSize(h)
	}
	obj, err := repo.Object(plumbing.BlobObject, h)
	if err != nil {
		return 0, err
	}
	return obj.Size(), nil
}

// readBlob reads blob h, whose size was looked up as size (already within
// the limits): no more than that is read, and a blob that turns out to be
// of another size is an error.
func readBlob(repo Repo, h plumbing.Hash, size int64) ([]byte, error) {
	obj, err := repo.Object(plumbing.BlobObject, h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if obj.Size() != size {
		return nil, fmt.Errorf("blob %s: %d bytes, its size was %d", h, obj.Size(), size)
	}
	r, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	defer r.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if n, _ := r.Read(make([]byte, 1)); n != 0 {
		return nil, fmt.Errorf("blob %s: more than its size, %d bytes", h, size)
	}
	return data, nil
}

// isBinary is git's test: a NUL byte in the first 8,000.
func isBinary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), binarySniff)], 0) >= 0
}

// header is a file's "diff --git" line and extended header lines, as git
// writes them with --full-index.
func (p *patchWriter) header(f filePair) string {
	var b strings.Builder
	oldPath, newPath := f.paths()
	fmt.Fprintf(&b, "diff --git %s %s\n", quotePath("a/"+oldPath), quotePath("b/"+newPath))
	zero := plumbing.ZeroHash
	switch {
	case !f.old.exists():
		fmt.Fprintf(&b, "new file mode %06o\nindex %s..%s\n", uint32(f.new.mode), zero, f.new.hash)
	case !f.new.exists():
		fmt.Fprintf(&b, "deleted file mode %06o\nindex %s..%s\n", uint32(f.old.mode), f.old.hash, zero)
	default:
		if f.old.mode != f.new.mode {
			fmt.Fprintf(&b, "old mode %06o\nnew mode %06o\n", uint32(f.old.mode), uint32(f.new.mode))
		}
		if f.old.path != f.new.path {
			fmt.Fprintf(&b, "similarity index 100%%\nrename from %s\nrename to %s\n", quotePath(f.old.path), quotePath(f.new.path))
		}
		switch {
		case f.old.hash == f.new.hash:
		case f.old.mode != f.new.mode:
			fmt.Fprintf(&b, "index %s..%s\n", f.old.hash, f.new.hash)
		default:
			fmt.Fprintf(&b, "index %s..%s %06o\n", f.old.hash, f.new.hash, uint32(f.new.mode))
		}
	}
	return b.String()
}

// label is how the ---, +++ and "Binary files" lines name a side.
func label(prefix string, e entry) string {
	if !e.exists() {
		return "/dev/null"
	}
	return quotePath(prefix + e.path)
}

// tabIfSpace is what git puts after a ---/+++ label with a space in it.
func tabIfSpace(label string) string {
	if strings.Contains(label, " ") {
		return "\t"
	}
	return ""
}

// quotePath quotes a path as git does (core.quotePath on): in double
// quotes with C escapes when it holds a double quote, a backslash, a
// control character or a byte outside ASCII; as is otherwise. A path can
// hold any byte but NUL and '/'-separated empties, and a newline in one
// must not start a line of the patch.
func quotePath(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\v':
			b.WriteString(`\v`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			if c < 0x20 || c >= 0x7f {
				fmt.Fprintf(&b, `\%03o`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// objectsOnly adapts a Repo to the object reader go-git's object package
// expects. It can only read: the write methods go-git's interface demands
// fail, and the Repo underneath has none.
type objectsOnly struct{ r Repo }

var _ storer.EncodedObjectStorer = objectsOnly{}

var errReadOnly = fmt.Errorf("view: objects are read-only")

func (o objectsOnly) NewEncodedObject() plumbing.EncodedObject { return &plumbing.MemoryObject{} }
func (o objectsOnly) SetEncodedObject(plumbing.EncodedObject) (plumbing.Hash, error) {
	return plumbing.ZeroHash, errReadOnly
}
func (o objectsOnly) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return o.r.Object(t, h)
}
func (o objectsOnly) IterEncodedObjects(plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	return nil, errReadOnly
}
func (o objectsOnly) HasEncodedObject(h plumbing.Hash) error {
	_, err := o.r.Object(plumbing.AnyObject, h)
	return err
}
func (o objectsOnly) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	return objectSize(o.r, h)
}
func (o objectsOnly) AddAlternate(string) error { return errReadOnly }
