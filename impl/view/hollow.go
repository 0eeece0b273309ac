package view

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/stackd/stackd/gen"
)

// A hollow snapshot keeps only what answers GET view and the repository
// summary: the view's stacks as one compressed part (the concatenation of
// its chunks' compressed bytes, about a sixth of the view's JSON), its
// recently merged commits' JSON, the repository value, its counts, content
// hash, version and build time. It drops the per-branch and per-stack
// records, the gen values and the tip index, which are most of a
// snapshot's memory.
//
// The refresher replaces the snapshot of an idle mirror with its hollow
// copy and, when a request needs more than the view's bytes (a stack, a
// branch, a diff), builds the full snapshot again from the mirror's refs
// (registry.Repo.Full). A hollow snapshot's record accessors (Stacks,
// Stack, Branches, Branch, DiffRange, View, StacksJSON, StackJSON,
// BranchJSON, BranchesJSON) panic: callers check Hollow first. A Builder
// does not reuse a hollow snapshot (its next build is a full one).

// Hollow reports whether s is a hollow snapshot (see Snapshot.Hollow).
func (s *Snapshot) Hollow() bool { return s.hollow }

// Hollowed returns the hollow copy of s (s itself when it is hollow): same
// version, build time, content hash and ETag, the same view bytes.
func (s *Snapshot) Hollowed() *Snapshot {
	if s.hollow {
		return s
	}
	part := &chunk{first: true}
	var body []byte
	for _, c := range s.chunks {
		body = append(body, c.deflated...)
		part.crc = crcCombine(part.crc, c.crc, c.size)
		part.size += c.size
	}
	part.deflated = body
	return newHollow(hollowParts{
		repo:       s.repo,
		mergedJSON: s.mergedJSON,
		trunk:      s.trunk,
		current:    s.current,
		counts:     s.Counts(),
		hash:       s.hash,
		stacks:     part,
	}, s.version, s.builtAt)
}

// hollowParts are what a hollow snapshot is made of (also what
// SaveHollow writes and LoadHollow reads).
type hollowParts struct {
	repo       gen.Repo
	mergedJSON []byte
	trunk      string
	current    string
	counts     Counts
	hash       string
	stacks     *chunk // every stack, compressed as one part
}

func newHollow(p hollowParts, version int64, builtAt time.Time) *Snapshot {
	s := &Snapshot{
		hollow:     true,
		repo:       p.repo,
		mergedJSON: p.mergedJSON,
		trunk:      p.trunk,
		current:    p.current,
		hash:       p.hash,
		version:    version,
		builtAt:    builtAt,
		out:        newOutputs(),
		vals:       &values{},
	}
	if p.stacks != nil && p.stacks.size > 0 {
		s.chunks = []*chunk{p.stacks}
	}
	counts := p.counts
	s.vals.countsOnce.Do(func() { s.vals.counts = counts })
	if s.repo.ViewVersion != nil {
		s.repo.ViewVersion = &s.version // not the full snapshot's field
	}
	return s
}

// mustFull panics on a hollow snapshot: its records are gone.
func (s *Snapshot) mustFull() {
	if s.hollow {
		panic("view: a record accessor called on a hollow snapshot (check Hollow, use the full snapshot)")
	}
}

// ViewSize is the length of ViewJSON (without making it for a hollow
// snapshot).
func (s *Snapshot) ViewSize() int { return s.gzipOutputs().size }

// inflateView is the JSON of a hollow snapshot's view, decompressed from
// its gzip on each call: a hollow snapshot keeps its view compressed only,
// whoever reads it (WriteView streams it instead).
func (s *Snapshot) inflateView() []byte {
	var buf bytes.Buffer
	buf.Grow(s.ViewSize())
	if err := s.WriteView(&buf); err != nil {
		panic("view: a hollow snapshot's gzip does not read: " + err.Error()) // made by gzipView: cannot happen
	}
	return buf.Bytes()
}

// WriteView writes the view's JSON (ViewJSON, ViewSize bytes) to w: a
// full snapshot's bytes, a hollow one's decompressed from its gzip as
// they are written.
func (s *Snapshot) WriteView(w io.Writer) error {
	if !s.hollow {
		_, err := w.Write(s.ViewJSON())
		return err
	}
	zr := inflaters.Get().(*gzip.Reader)
	defer inflaters.Put(zr)
	if err := zr.Reset(bytes.NewReader(s.ViewGzip())); err != nil {
		return fmt.Errorf("view: inflate: %w", err)
	}
	if _, err := io.Copy(w, zr); err != nil {
		return fmt.Errorf("view: inflate: %w", err)
	}
	return nil
}

// inflaters are reusable gzip readers (WriteView).
var inflaters = sync.Pool{New: func() any { return new(gzip.Reader) }}
