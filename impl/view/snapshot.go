package view

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
)

// Snapshot is an immutable view of a repository. Its gen values are built
// once and shared by every accessor: callers must treat them (including
// the slices and pointers inside) as read-only. Returned slices have their
// capacity clipped, so appending to them never writes into the snapshot.
//
// A snapshot also holds its serialized forms (the view's JSON and gzip, the
// lists, each stack and branch), made from per-branch and per-stack bytes
// that later snapshots share while unchanged; Prepare makes the view's
// bytes ahead of the first request.
type Snapshot struct {
	builder *Builder
	objects Repo

	repo      gen.Repo
	recs      []*branchRec // in Branches() order
	byName    map[string]int
	stackRecs []*stackRec // in Stacks() order
	byRoot    map[string]int
	vals      *values // the gen values, made on first use
	merged    []gen.Commit
	chunks    []*chunk

	mergedJSON []byte
	trunk      string
	trunkTip   plumbing.Hash
	current    string
	infos      []*branchInfo // aligned with recs
	tips       *tipIndex
	tracking   map[string]trackCfg

	hash    string
	version int64
	builtAt time.Time
	out     *outputsRef // per version
	// hollow: only the view's bytes and the summary are kept (hollow.go).
	hollow bool
}

// Empty returns the snapshot of a repository with no commits, or of one
// not built yet: no branches, no stacks, trunk as configured.
func Empty(in Input) *Snapshot {
	s := &Snapshot{
		vals:       &values{},
		repo:       gen.Repo{Id: in.RepoID, Kind: in.Kind, Trunk: in.Trunk},
		byName:     map[string]int{},
		byRoot:     map[string]int{},
		merged:     []gen.Commit{},
		mergedJSON: []byte("[]"),
		out:        newOutputs(),
	}
	if in.Remote != "" {
		s.repo.Remote = ptr(in.Remote)
	}
	s.prepareChunks(nil)
	s.computeHash()
	return s
}

// WithVersion returns a copy stamped with version v and build time
// builtAt (Repo.ViewVersion, View.Version, View.BuiltAt). Repo.ViewVersion
// is null for version 0 (no view published yet).
func (s *Snapshot) WithVersion(v int64, builtAt time.Time) *Snapshot {
	c := *s
	c.version = v
	c.builtAt = builtAt.UTC()
	if v > 0 {
		c.repo.ViewVersion = &c.version // null in answers until a view is published
	} else {
		c.repo.ViewVersion = nil
	}
	c.out = newOutputs()
	return &c
}

// Version is the snapshot's version (0 until WithVersion).
func (s *Snapshot) Version() int64 { return s.version }

// BuiltAt is the time given to WithVersion.
func (s *Snapshot) BuiltAt() time.Time { return s.builtAt }

// ContentHash is a hex SHA-256 of the snapshot's content, independent of
// version and build time: equal for two builds of the same refs, metadata
// and HEAD.
func (s *Snapshot) ContentHash() string { return s.hash }

// ETag is a quoted strong ETag: "<version>-<first 16 hex of ContentHash>".
func (s *Snapshot) ETag() string {
	return `"` + strconv.FormatInt(s.version, 10) + "-" + s.hash[:16] + `"`
}

// Objects is the read-only repository the snapshot was built from: the
// commits it names can be read from it (for diffs). nil for Empty.
func (s *Snapshot) Objects() Repo { return s.objects }

// Repo is the repository summary.
func (s *Snapshot) Repo() gen.Repo { return s.repo }

// values are a snapshot's branches and stacks as gen values. The read
// handlers write bytes and never need them, so they are made on first use
// (and shared by the versions of one snapshot).
type values struct {
	once     sync.Once
	branches []gen.Branch
	stacks   []gen.Stack

	countsOnce sync.Once
	counts     Counts
}

// Counts is what a snapshot holds: its stacks, the branches in them, and
// how many of those need a restack.
type Counts struct {
	Stacks, Branches, NeedsRestack int
}

// Counts counts the stacks, their branches and those that need a restack
// (once per snapshot; trunk and branches outside every stack are not
// counted).
func (s *Snapshot) Counts() Counts {
	v := s.vals
	v.countsOnce.Do(func() {
		c := Counts{Stacks: len(s.stackRecs)}
		for _, sr := range s.stackRecs {
			c.Branches += len(sr.branches)
			for _, b := range sr.branches {
				if b.val.NeedsRestack {
					c.NeedsRestack++
				}
			}
		}
		v.counts = c
	})
	return v.counts
}

func (s *Snapshot) values() *values {
	s.mustFull()
	v := s.vals
	v.once.Do(func() {
		v.branches = make([]gen.Branch, len(s.recs))
		for i, r := range s.recs {
			v.branches[i] = r.val
		}
		v.stacks = make([]gen.Stack, len(s.stackRecs))
		for j, sr := range s.stackRecs {
			start := s.byName[sr.root]
			end := start + len(sr.branches)
			v.stacks[j] = sr.value(v.branches[start:end:end])
		}
	})
	return v
}

// View is the whole view.
func (s *Snapshot) View() gen.RepoView {
	s.mustFull()
	return gen.RepoView{Repo: s.repo, Stacks: s.Stacks(), RecentlyMerged: s.merged, Version: s.version, BuiltAt: s.builtAt}
}

// Stacks lists the stacks, by root name (shared, read-only).
func (s *Snapshot) Stacks() []gen.Stack { return s.values().stacks }

// Stack returns the stack whose root branch is root.
func (s *Snapshot) Stack(root string) (gen.Stack, bool) {
	s.mustFull()
	i, ok := s.byRoot[root]
	if !ok {
		return gen.Stack{}, false
	}
	return s.values().stacks[i], true
}

// Branches lists every branch: trunk first (depth 0), then each stack
// depth-first, then branches not connected to trunk (shared, read-only).
func (s *Snapshot) Branches() []gen.Branch { return s.values().branches }

// Branch returns one branch by name.
func (s *Snapshot) Branch(name string) (gen.Branch, bool) {
	s.mustFull()
	i, ok := s.byName[name]
	if !ok {
		return gen.Branch{}, false
	}
	return s.recs[i].val, true
}

// DiffRange returns the merge base of branch and its parent, and the
// branch tip, as pinned by this snapshot. ok is false for trunk, for a
// branch without parent or sharing no history with it, and for an unknown
// branch.
func (s *Snapshot) DiffRange(branch string) (base, tip plumbing.Hash, ok bool) {
	s.mustFull()
	i, found := s.byName[branch]
	if !found {
		return plumbing.ZeroHash, plumbing.ZeroHash, false
	}
	w := s.recs[i].walk
	return w.rng[0], w.rng[1], w.hasRange
}

// info returns the build state of one branch, nil if unknown.
func (s *Snapshot) info(name string) *branchInfo {
	s.mustFull()
	i, ok := s.byName[name]
	if !ok {
		return nil
	}
	return s.infos[i]
}

// outputsRef holds the serialized forms of one version of a snapshot;
// Release replaces them with empty ones.
type outputsRef struct{ p atomic.Pointer[outputs] }

func newOutputs() *outputsRef {
	r := &outputsRef{}
	r.p.Store(&outputs{})
	return r
}

// Release drops the snapshot's serialized forms (the view's JSON and
// gzip, the branch list: about twice the view's bytes); the next request
// makes them again from the per-branch and per-stack bytes, which stay (a
// copy, and the gzip assembled from compressed parts: no compression).
// Answers given before keep their bytes. The refresher calls it for an
// idle repository (README, Memory).
func (s *Snapshot) Release() { s.out.p.Store(&outputs{}) }

// outputs are the serialized forms of one version of a snapshot.
type outputs struct {
	gzipOnce     sync.Once
	gzip         []byte // the view's JSON, gzip-compressed (Prepare)
	size         int    // the length of the view's JSON
	viewOnce     sync.Once
	view         []byte // JSON of the view and a newline (on first use; not for a hollow snapshot)
	stacksFrom   int    // view[stacksFrom:stacksTo] is the JSON array of the stacks
	stacksTo     int
	branchesOnce sync.Once
	branches     []byte
}
