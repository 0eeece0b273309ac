package view

import (
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
)

// Limits on what a build reads and what it copies into a view. Objects are
// checked by size before their content is read (see [Sizer]); strings
// copied from commits are cut (see [MaxSubjectBytes]). A repository's
// content is not trusted: a single hostile object must not exhaust the
// server's memory, nor one commit make every view of the repository huge.
const (
	// MaxCommitSize bounds an object read where a commit is expected (a
	// branch tip, any commit a walk visits). Real commits are far smaller:
	// headers, a signature and a message take a few KiB, the longest
	// messages (squash merges listing hundreds of commits) some tens of
	// KiB. Decoding a commit of this size costs a few MiB for a moment.
	// A larger object is not read: the read fails with ErrObjectTooLarge.
	MaxCommitSize = 1 << 20
	// MaxMetadataSize bounds a metadata blob (refs/stackit/metadata/<b>,
	// refs/branch-metadata/<b>, refs/stackit/stacks/<id>). A blob holds a
	// parent name, a revision and pull-request fields; Graphite's may
	// carry the pull request's body, which GitHub caps at 65,536
	// characters (at most 192 KiB of UTF-8 for characters of the basic
	// plane), so 256 KiB never refuses a blob a tool wrote. A larger blob
	// is not read and counts as malformed metadata: it is logged and the
	// branch falls back as for any unusable metadata.
	MaxMetadataSize = 256 << 10
	// MaxSubjectBytes bounds a commit subject in a view, in bytes. A
	// dashboard shows a subject on one line: git's convention is 50 to 72
	// characters, GitHub cuts commit titles at 72 (and pull-request titles
	// at 256 characters); 512 bytes is several lines' worth even in a
	// script of 3-byte characters. A longer subject is cut on a UTF-8
	// boundary and ends with [Ellipsis] (within the bound), and the
	// commit's subjectTruncated is true.
	MaxSubjectBytes = 512
	// MaxAuthorBytes bounds an author name in a view, in bytes; a longer
	// name is cut like a subject (there is no flag: no real name is this
	// long).
	MaxAuthorBytes = 256
)

// Ellipsis ends a cut subject or author name.
const Ellipsis = "…"

// ErrObjectTooLarge is wrapped by the error of a read refused because the
// object is larger than its limit (see [ObjectTooLargeError]).
var ErrObjectTooLarge = errors.New("object too large")

// ObjectTooLargeError is a read refused by size. It names the object and
// the limit, never the content.
type ObjectTooLargeError struct {
	ID    plumbing.Hash
	Size  int64 // the size found: the size declared by the repository, or the bytes that arrived past the limit
	Limit int64
}

func (e *ObjectTooLargeError) Error() string {
	return fmt.Sprintf("object %s is too large (%d bytes; the limit is %d)", e.ID, e.Size, e.Limit)
}

// Unwrap makes errors.Is(err, ErrObjectTooLarge) hold.
func (e *ObjectTooLargeError) Unwrap() error { return ErrObjectTooLarge }

// Sizer is implemented by a [Repo] that can tell an object's size without
// reading its content. A build asks it first and does not read an object
// over its limit at all. A Repo without it is read and then checked: the
// object is still refused before it is decoded, but its content has been
// read (by Repo.Object) by then.
type Sizer interface {
	// ObjectSize returns the size in bytes of object h's content (what
	// EncodedObject.Reader yields, without git's "<type> <size>" header),
	// reading at most the object's header: for a deltified object, the
	// delta's header, not the delta. A missing object wraps
	// plumbing.ErrObjectNotFound. It is safe for concurrent use.
	ObjectSize(h plumbing.Hash) (int64, error)
}

// readObject reads object h, refusing it with an *ObjectTooLargeError
// when it is larger than limit: by its size alone when repo is a Sizer,
// else by the size of what Object returned.
func readObject(repo Repo, h plumbing.Hash, limit int64) (plumbing.EncodedObject, error) {
	if s, ok := repo.(Sizer); ok {
		size, err := s.ObjectSize(h)
		if err != nil {
			return nil, err
		}
		if size > limit {
			return nil, &ObjectTooLargeError{ID: h, Size: size, Limit: limit}
		}
	}
	obj, err := repo.Object(plumbing.AnyObject, h)
	if err != nil {
		return nil, err
	}
	if size := obj.Size(); size > limit {
		return nil, &ObjectTooLargeError{ID: h, Size: size, Limit: limit}
	}
	return obj, nil
}

// capped is an object whose Reader fails with an *ObjectTooLargeError
// once more than limit bytes arrive: the size an object declares is not
// trusted to match its content.
type capped struct {
	plumbing.EncodedObject
	id    plumbing.Hash
	limit int64
}

func (c capped) Reader() (io.ReadCloser, error) {
	r, err := c.EncodedObject.Reader()
	if err != nil {
		return nil, err
	}
	return &capReader{rc: r, id: c.id, left: c.limit, limit: c.limit}, nil
}

type capReader struct {
	rc    io.ReadCloser
	id    plumbing.Hash
	left  int64
	limit int64
}

func (r *capReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		// One more byte tells a content of exactly limit bytes (EOF) from
		// a longer one.
		var one [1]byte
		n, err := r.rc.Read(one[:])
		if n > 0 {
			return 0, &ObjectTooLargeError{ID: r.id, Size: r.limit + 1, Limit: r.limit}
		}
		return 0, err
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	return n, err
}

func (r *capReader) Close() error { return r.rc.Close() }

// readAll reads the content of obj (object h), at most limit bytes.
func readAll(h plumbing.Hash, obj plumbing.EncodedObject, limit int64) ([]byte, error) {
	rd, err := capped{obj, h, limit}.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

// clip returns s cut to at most max bytes (Ellipsis included) on a UTF-8
// boundary, and whether it was cut. A cut string is a new string: it does
// not keep s alive.
func clip(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	end := max - len(Ellipsis)
	// Back off to the start of a character; in invalid UTF-8 (no start
	// byte within a character's length) cut where the bound falls.
	for i := end; i > 0 && i > end-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			end = i
			break
		}
	}
	return s[:end] + Ellipsis, true
}
