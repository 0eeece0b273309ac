// Package view builds an immutable [Snapshot] of a repository's stacked
// branches from a read-only [Repo]: branches, their parents (from stackit
// or Graphite metadata refs, or from ancestry), stacks, own commits,
// restack state, ahead/behind counts and recently merged trunk commits.
//
// Building only reads the repository. It never fails because of one
// branch's bad metadata: that branch is logged and falls back to ancestry.
//
// # Incremental builds
//
// A [Builder] belongs to one repository. Its [Cache] keeps decoded commits
// and parsed metadata blobs by object id for the life of the process, so a
// rebuild reads only objects it has not seen. Given the previous snapshot, a
// build recomputes a branch's commit walks only when their inputs changed
// (its tip, its parent's tip, its tracking ref's tip), re-infers an
// ancestry parent only when a branch tip moved within the commits that
// inference looked at, and reuses the previous snapshot's values and
// serialized bytes for every branch and stack whose content is unchanged.
//
// # Parents
//
// A non-trunk branch takes its parent from stackit metadata
// (refs/stackit/metadata/<branch>), else Graphite metadata
// (refs/branch-metadata/<branch>). Metadata is usable when its blob decodes
// as JSON and names an existing branch other than the branch itself; an
// unusable stackit blob falls through to Graphite, then to ancestry.
//
// The ancestry parent is found by a breadth-first walk over parents from the
// branch tip (at most [AncestryLimit] commits). At each distance the
// candidates are: tips of other non-trunk branches (never a commit equal to
// the branch's own tip) and the trunk, when the commit is the trunk tip or
// on trunk's first-parent history (its newest [TrunkHistoryLimit]
// commits). The first distance with a candidate decides: branch tips before
// trunk, then the smallest name. Without a hit the parent is trunk when the
// branch shares history with it, else none (parent nil, source "none").
//
// Metadata cycles are broken deterministically: while the parent graph has
// a cycle (found by visiting branches in name order), the smallest-named
// branch on it that got its parent from metadata is logged and falls back
// to ancestry. Ancestry edges alone cannot form a cycle, as they always
// point to a strict ancestor or to trunk.
//
// # Other choices
//
// Trunk has depth 0, no parent, no own commits (Commits is empty) and
// never needs a restack. A non-trunk branch without parent (no history
// shared with trunk, or no trunk branch at all) also has depth 0; it and
// its descendants are listed after the stacks, and its Commits are its
// newest commits. Repo.CurrentBranch names the branch HEAD points at even
// when that branch is unborn (an empty repository); it is nil when HEAD is
// detached and for mirrors. DiffRange is not ok when branch and parent
// share no history (or none is found within [OwnLimit] commits). Branch
// tips that are not readable commits are logged and left out.
//
// # Walks
//
// "Commits of b above its parent p" walks from b's tip, newest committer
// time first, and stops at commits reachable from p's tip; reachability
// from a tip is expanded lazily, also newest first, and shared by every
// branch of the build with the same parent (so the stacks on trunk share one
// walk down trunk). Like git without a commit-graph file, the walks rely on
// committer times that do not decrease along history.
//
// # Limits
//
// No object is read whole before its size is known to be within a limit
// ([MaxCommitSize], [MaxMetadataSize]; see [Sizer]): a commit over it is
// refused with [ErrObjectTooLarge] (a tip: the branch is left out; any
// other commit a walk needs: the build fails), a metadata blob over it is
// malformed metadata. Subjects and author names are cut to
// [MaxSubjectBytes] and [MaxAuthorBytes].
package view

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/refs"
)

// Limits of the walks.
const (
	// AncestryLimit bounds the commits visited when looking for a
	// branch's ancestry parent.
	AncestryLimit = 1000
	// TrunkHistoryLimit bounds trunk's first-parent history considered
	// "on trunk" by the ancestry walk.
	TrunkHistoryLimit = 10000
	// OwnLimit bounds the commits of a branch above its parent (and the
	// ahead/behind counts) that a build walks.
	OwnLimit = 10000
	// MaxCommits caps Branch.Commits.
	MaxCommits = 50
	// RecentlyMergedCount is the length of RepoView.RecentlyMerged.
	RecentlyMergedCount = 20
)

// Input describes the repository being built.
type Input struct {
	RepoID string
	// Kind is gen.Local or gen.Mirror; a mirror has no current branch.
	Kind gen.RepoKind
	// Trunk is the configured trunk branch; "" means DetectTrunk decides.
	Trunk string
	// DetectTrunk picks the trunk when Trunk is "". nil means the package's
	// DetectTrunk; tests wanting a pure build pass their own.
	DetectTrunk func(Repo) string
	// Remote is the already redacted upstream URL ("" for none).
	Remote string
	// Logger receives warnings about malformed metadata; nil discards.
	// Its lines do not name the repository (each key appears once in a
	// line): give a logger that does, as the refresher's
	// (With("repo", id)).
	Logger *slog.Logger
}

// Stats describes one build.
type Stats struct {
	// Full is true when no previous snapshot was reused.
	Full bool
	// Branches is the number of branches in the new snapshot.
	Branches int
	// Recomputed is the number of branches whose commit walks ran.
	Recomputed int
	// Patched is true when the snapshot was made by patching the previous
	// one (only branches moved or metadata changed; see Builder.Build).
	Patched bool
	// Duration is the build's wall time.
	Duration time.Duration
}

// Builder builds the snapshots of one repository, each from the previous
// one. Calls to Build must not overlap (the repository's refresher runs one
// at a time).
type Builder struct {
	in    Input
	log   *slog.Logger
	cache *Cache

	fpTip plumbing.Hash // trunk tip of the memoised first-parent history
	fp    []plumbing.Hash
	onFP  map[plumbing.Hash]bool
}

// NewBuilder returns a builder for the repository in. A nil cache means a
// new one.
func NewBuilder(in Input, cache *Cache) *Builder {
	if cache == nil {
		cache = NewCache()
	}
	log := in.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Builder{in: in, log: log, cache: cache}
}

// Cache is the builder's object cache.
func (b *Builder) Cache() *Cache { return b.cache }

// Forget lets go what the builder keeps between builds (its cache of
// decoded commits and metadata, the trunk's first-parent history): the
// next build reads what it needs again. For an idle repository whose
// snapshot was made hollow. Not concurrent with Build.
func (b *Builder) Forget() {
	b.cache = NewCache()
	b.fpTip, b.fp, b.onFP = plumbing.ZeroHash, nil, nil
}

// Build is a full build with a fresh cache (at version 0; see WithVersion).
func Build(ctx context.Context, repo Repo, in Input) (*Snapshot, error) {
	s, _, err := NewBuilder(in, nil).Build(ctx, repo, nil)
	return s, err
}

// Build reads refs, metadata and HEAD of repo and builds a snapshot (at
// version 0), reusing what it can of prev (nil: none; a snapshot of another
// builder is not reused). It fails only when refs or commits cannot be read
// (a commit over MaxCommitSize: ErrObjectTooLarge) or ctx is cancelled;
// broken metadata is logged and ignored.
func (b *Builder) Build(ctx context.Context, repo Repo, prev *Snapshot) (*Snapshot, Stats, error) {
	start := time.Now()
	if prev != nil && prev.builder != b {
		prev = nil
	}
	bd := &build{
		b:     b,
		g:     &graph{ctx: ctx, repo: repo, cache: b.cache, reach: map[plumbing.Hash]*reachSet{}},
		repo:  repo,
		prev:  prev,
		log:   b.log,
		heads: map[string]plumbing.Hash{},
		tips:  map[plumbing.Hash][]string{},
		infos: map[string]*branchInfo{},
	}
	var s *Snapshot
	var err error
	if prev != nil {
		s, err = bd.fast()
	}
	patched := s != nil
	if s == nil && err == nil {
		bd.fastTips, bd.recomputed = nil, 0
		s, err = bd.run()
	}
	if err != nil {
		return nil, Stats{}, err
	}
	st := Stats{Full: prev == nil, Branches: len(s.recs), Recomputed: bd.recomputed, Patched: patched, Duration: time.Since(start)}
	return s, st, nil
}

// branchInfo is the build-time state of one branch.
type branchInfo struct {
	name     string
	tip      plumbing.Hash
	parent   string // "" for none
	source   gen.BranchParentSource
	meta     *branchMeta // the metadata that supplied the parent, if any
	metaRefs [2]plumbing.Hash
	pr       *gen.PullRequest
	stackID  string
	children []string
	depth    int
	anc      *ancestry
}

// ancestry memoises one ancestry inference: its result holds while the
// branch tip, the trunk and the tips at the visited commits stay the same.
type ancestry struct {
	tip      plumbing.Hash
	trunk    string
	trunkTip plumbing.Hash
	visited  []plumbing.Hash
	parent   string
}

type build struct {
	b     *Builder
	g     *graph
	repo  Repo
	prev  *Snapshot
	log   *slog.Logger
	trunk string // "" when trunk does not exist
	heads map[string]plumbing.Hash
	tips  map[plumbing.Hash][]string // tip → non-trunk branches, sorted
	names []string                   // sorted branch names
	infos map[string]*branchInfo
	// fastTips, set on the fast path only, holds the moved branches' new
	// tips; every other branch keeps prev's.
	fastTips map[string]plumbing.Hash
	// moved holds the old and new tips of every branch created, deleted or
	// moved since prev.
	moved      map[plumbing.Hash]bool
	remotes    []refs.Ref
	tracking   map[string]trackCfg
	recomputed int
}

func (bd *build) trunkTip() plumbing.Hash {
	if bd.trunk == "" {
		return plumbing.ZeroHash
	}
	h, _ := bd.tipOf(bd.trunk)
	return h
}

// tipOf returns the tip of branch name in this build.
func (bd *build) tipOf(name string) (plumbing.Hash, bool) {
	if bd.fastTips != nil {
		if h, ok := bd.fastTips[name]; ok {
			return h, true
		}
		if bi := bd.prev.info(name); bi != nil {
			return bi.tip, true
		}
		return plumbing.ZeroHash, false
	}
	h, ok := bd.heads[name]
	return h, ok
}

// tipsAt lists the non-trunk branches whose tip is c, sorted.
func (bd *build) tipsAt(c plumbing.Hash) []string {
	if bd.fastTips == nil {
		return bd.tips[c]
	}
	var out []string
	for _, name := range bd.prev.tips.at(c) {
		if h, moved := bd.fastTips[name]; !moved || h == c {
			out = append(out, name)
		}
	}
	for name, h := range bd.fastTips {
		if h == c && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// repoValue reads HEAD: the repository summary and the current branch.
func (bd *build) repoValue(table *refs.Table, trunk string) (gen.Repo, string) {
	in := bd.b.in
	repoVal := gen.Repo{Id: in.RepoID, Kind: in.Kind, Trunk: trunk}
	if in.Remote != "" {
		repoVal.Remote = ptr(in.Remote)
	}
	current := ""
	if target, detached, ok := table.Head(); ok {
		switch {
		case strings.HasPrefix(target, "refs/heads/"):
			name := strings.TrimPrefix(target, "refs/heads/")
			if in.Kind != gen.Mirror {
				current = name
				repoVal.CurrentBranch = ptr(name)
			}
			if h, ok := bd.tipOf(name); ok {
				repoVal.HeadSha = ptr(h.String())
			}
		case target == "":
			repoVal.HeadSha = ptr(detached.String())
		}
	}
	return repoVal, current
}

// detectTrunk is the configured trunk, else the detected one.
func (bd *build) detectTrunk() string {
	in := bd.b.in
	if in.Trunk != "" {
		return in.Trunk
	}
	detect := in.DetectTrunk
	if detect == nil {
		detect = DetectTrunk
	}
	return detect(bd.repo)
}

func (bd *build) run() (*Snapshot, error) {
	table := bd.repo.Refs()
	bd.prefetch(table)
	for _, r := range table.Prefix("refs/heads/") {
		if r.Symbolic() {
			continue
		}
		name := strings.TrimPrefix(r.Name, "refs/heads/")
		if _, err := bd.g.get(r.Hash); err != nil {
			if e := bd.g.ctx.Err(); e != nil {
				return nil, fmt.Errorf("view: build: %w", e)
			}
			bd.log.Warn("view: branch tip is not a readable commit; branch skipped",
				"branch", name, "err", err)
			continue
		}
		bd.heads[name] = r.Hash
		bd.names = append(bd.names, name) // sorted: the table is
	}
	if err := bd.g.ctx.Err(); err != nil {
		return nil, fmt.Errorf("view: build: %w", err)
	}
	bd.remotes = table.Prefix("refs/remotes/")
	trunk := bd.detectTrunk()
	repoVal, current := bd.repoValue(table, trunk)
	if _, ok := bd.heads[trunk]; ok {
		bd.trunk = trunk
	}
	for _, name := range bd.names {
		bd.infos[name] = &branchInfo{name: name, tip: bd.heads[name], source: gen.BranchParentSourceNone}
		if name != bd.trunk {
			bd.tips[bd.heads[name]] = append(bd.tips[bd.heads[name]], name)
		}
	}
	bd.findMoved()
	bd.tracking = bd.branchConfig()
	if err := bd.trunkHistory(); err != nil {
		return nil, err
	}
	if err := bd.resolveParents(table); err != nil {
		return nil, err
	}
	order, err := bd.layout()
	if err != nil {
		return nil, err
	}
	return bd.assemble(repoVal, current, order, table)
}

// findMoved compares the branch tips with prev's.
func (bd *build) findMoved() {
	if bd.prev == nil {
		return
	}
	bd.moved = map[plumbing.Hash]bool{}
	for name, h := range bd.heads {
		if old := bd.prev.info(name); old == nil || old.tip != h {
			bd.moved[h] = true
			if old != nil {
				bd.moved[old.tip] = true
			}
		}
	}
	for _, old := range bd.prev.infos {
		if _, ok := bd.heads[old.name]; !ok {
			bd.moved[old.tip] = true
		}
	}
}

// trunkHistory loads trunk's first-parent history (memoised by trunk tip).
func (bd *build) trunkHistory() error {
	b := bd.b
	if bd.trunk == "" {
		return nil
	}
	tip := bd.trunkTip()
	if b.onFP != nil && b.fpTip == tip {
		return nil
	}
	fp, err := bd.g.firstParents(tip, TrunkHistoryLimit)
	if err != nil {
		return err
	}
	b.fpTip, b.fp, b.onFP = tip, fp, make(map[plumbing.Hash]bool, len(fp))
	for _, h := range fp {
		b.onFP[h] = true
	}
	return nil
}

func (bd *build) onTrunk(h plumbing.Hash) bool {
	return bd.trunk != "" && (h == bd.trunkTip() || bd.b.onFP[h])
}

// resolveParents sets parent/source of every non-trunk branch.
func (bd *build) resolveParents(table *refs.Table) error {
	meta := newMetaLookup(table)
	for _, name := range bd.names {
		if name == bd.trunk {
			continue
		}
		bi := bd.infos[name]
		bd.applyMetadata(bi, meta)
		if bi.parent == "" {
			if err := bd.setAncestryParent(bi); err != nil {
				return err
			}
		}
	}
	// Break cycles.
	for {
		cycle := bd.findCycle()
		if cycle == nil {
			return nil
		}
		victim := ""
		for _, n := range cycle {
			s := bd.infos[n].source
			if (s == gen.BranchParentSourceStackit || s == gen.BranchParentSourceGraphite) && (victim == "" || n < victim) {
				victim = n
			}
		}
		if victim == "" { // cannot happen: ancestry edges are acyclic
			return fmt.Errorf("view: parent cycle without metadata: %v", cycle)
		}
		bi := bd.infos[victim]
		bd.log.Warn("view: metadata parent cycle; branch falls back to ancestry",
			"branch", victim, "parent", bi.parent, "cycle", cycle)
		bi.meta = nil
		if err := bd.setAncestryParent(bi); err != nil {
			return err
		}
	}
}

// metaSources are the metadata refs, in the order they are read.
var metaSources = [2]struct {
	src gen.BranchParentSource
	ref string
}{
	{gen.BranchParentSourceStackit, stackitMetaPrefix},
	{gen.BranchParentSourceGraphite, graphiteMetaPrefix},
}

// metaLookup finds the metadata refs of branches asked for in name order
// (as builds ask) by walking each source's run of the table alongside
// them. A binary search of the whole table per branch and source read
// names no cache held: in a build of 50,000 branches it cost several
// times as much per branch as in one of 1,000.
type metaLookup struct {
	runs [len(metaSources)][]refs.Ref // the table's refs under each source's prefix
	at   [len(metaSources)]int        // runs[i][at[i]:] are not before the last name asked
	last string                       // the last name asked
}

func newMetaLookup(table *refs.Table) *metaLookup {
	l := &metaLookup{}
	for i, s := range metaSources {
		l.runs[i] = table.Prefix(s.ref)
	}
	return l
}

// hash returns the hash of source i's direct ref for the branch name.
func (l *metaLookup) hash(i int, name string) (plumbing.Hash, bool) {
	if name < l.last { // asked out of order: start over (not how builds ask)
		l.at = [len(metaSources)]int{}
	}
	l.last = name
	run, n := l.runs[i], len(metaSources[i].ref)
	for l.at[i] < len(run) && run[l.at[i]].Name[n:] < name {
		l.at[i]++
	}
	if l.at[i] == len(run) || run[l.at[i]].Name[n:] != name || run[l.at[i]].Symbolic() {
		return plumbing.ZeroHash, false
	}
	return run[l.at[i]].Hash, true
}

// applyMetadata takes parent, PR and stack id from stackit, else Graphite.
func (bd *build) applyMetadata(bi *branchInfo, meta *metaLookup) {
	// Log problems once per metadata blob, not on every rebuild.
	var prevInfo *branchInfo
	if bd.prev != nil {
		prevInfo = bd.prev.info(bi.name)
	}
	prSet := false
	for i, s := range metaSources {
		h, ok := meta.hash(i, bi.name)
		if !ok {
			continue
		}
		bi.metaRefs[i] = h
		quiet := prevInfo != nil && prevInfo.metaRefs[i] == h
		e := bd.b.cache.branchMeta(bd.repo, h)
		if e.err != nil {
			if !quiet {
				bd.log.Warn("view: malformed branch metadata ignored",
					"branch", bi.name, "ref", s.ref+bi.name, "err", e.err)
			}
			continue
		}
		m := &e.meta
		if !prSet {
			bi.pr = e.pr
			prSet = true
		}
		if s.src == gen.BranchParentSourceStackit && bi.stackID == "" {
			bi.stackID = m.StackID
		}
		if bi.parent != "" {
			continue
		}
		var problem string
		switch p := m.ParentBranchName; {
		case p == "":
			problem = "no parentBranchName"
		case p == bi.name:
			problem = "parent is the branch itself"
		default:
			if _, ok := bd.tipOf(p); !ok {
				problem = "parent branch does not exist"
			}
		}
		if problem != "" {
			if !quiet || prevInfo.parent != "" && prevInfo.source == s.src {
				bd.log.Warn("view: unusable metadata parent ignored",
					"branch", bi.name, "ref", s.ref+bi.name,
					"parent", m.ParentBranchName, "problem", problem)
			}
			continue
		}
		bi.parent, bi.source, bi.meta = m.ParentBranchName, s.src, m
	}
}

// setAncestryParent implements the ancestry rule documented on the package,
// reusing prev's inference when nothing it looked at changed.
func (bd *build) setAncestryParent(bi *branchInfo) error {
	bi.parent, bi.source, bi.meta = "", gen.BranchParentSourceNone, nil
	if bd.prev != nil {
		if a := bd.prev.info(bi.name); a != nil && a.anc != nil && bd.ancestryHolds(a.anc, bi.tip) {
			bi.anc = a.anc
			bi.parent = a.anc.parent
			if bi.parent != "" {
				bi.source = gen.BranchParentSourceAncestry
			}
			return nil
		}
	}
	anc := &ancestry{tip: bi.tip, trunk: bd.trunk, trunkTip: bd.trunkTip()}
	bi.anc = anc
	level := []plumbing.Hash{bi.tip}
	visited := map[plumbing.Hash]bool{bi.tip: true}
	anc.visited = append(anc.visited, bi.tip)
	for len(level) > 0 {
		if err := bd.g.tick(); err != nil {
			return err
		}
		best, trunkHit := "", false
		for _, c := range level {
			if c != bi.tip {
				for _, other := range bd.tipsAt(c) {
					if other != bi.name && (best == "" || other < best) {
						best = other
					}
				}
			}
			if bd.onTrunk(c) {
				trunkHit = true
			}
		}
		if best != "" {
			anc.parent = best
			bi.parent, bi.source = best, gen.BranchParentSourceAncestry
			return nil
		}
		if trunkHit {
			anc.parent = bd.trunk
			bi.parent, bi.source = bd.trunk, gen.BranchParentSourceAncestry
			return nil
		}
		var next []plumbing.Hash
		for _, c := range level {
			n, err := bd.g.get(c)
			if err != nil {
				return err
			}
			for _, p := range n.parents {
				if visited[p] || len(visited) >= AncestryLimit {
					continue
				}
				visited[p] = true
				anc.visited = append(anc.visited, p)
				next = append(next, p)
			}
		}
		level = next
	}
	if bd.trunk == "" {
		return nil
	}
	ex, err := bd.g.exclude(bi.tip, bd.trunkTip(), OwnLimit)
	if err != nil {
		return err
	}
	if len(ex.boundary) > 0 {
		anc.parent = bd.trunk
		bi.parent, bi.source = bd.trunk, gen.BranchParentSourceAncestry
	}
	return nil
}

// ancestryHolds reports whether a memoised inference still applies: same
// tip, same trunk, and no branch tip created, moved or deleted at any commit
// it visited.
func (bd *build) ancestryHolds(a *ancestry, tip plumbing.Hash) bool {
	if a.tip != tip || a.trunk != bd.trunk || a.trunkTip != bd.trunkTip() {
		return false
	}
	for _, h := range a.visited {
		if bd.moved[h] {
			return false
		}
	}
	if a.parent != "" && a.parent != bd.trunk {
		if _, ok := bd.tipOf(a.parent); !ok {
			return false
		}
	}
	return true
}

// findCycle returns the branches of one parent cycle, or nil.
func (bd *build) findCycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := make(map[string]int, len(bd.names))
	for _, start := range bd.names {
		if color[start] != white {
			continue
		}
		var path []string
		n := start
		for n != "" && color[n] == white {
			color[n] = grey
			path = append(path, n)
			n = bd.infos[n].parent
		}
		if n != "" && color[n] == grey {
			i := slices.Index(path, n)
			return slices.Clone(path[i:])
		}
		for _, p := range path {
			color[p] = black
		}
	}
	return nil
}

// layout fills children and depth and returns the branch order: trunk,
// then each stack depth-first (roots and children by name), then the
// branches not reachable from trunk (roots by name, depth-first).
func (bd *build) layout() ([]string, error) {
	for _, name := range bd.names {
		if p := bd.infos[name].parent; p != "" {
			bd.infos[p].children = append(bd.infos[p].children, name)
		}
	}
	order := make([]string, 0, len(bd.names))
	var walk func(name string, depth int)
	walk = func(name string, depth int) {
		bi := bd.infos[name]
		bi.depth = depth
		order = append(order, name)
		for _, c := range bi.children { // already sorted: names are
			walk(c, depth+1)
		}
	}
	if bd.trunk != "" {
		walk(bd.trunk, 0)
	}
	for _, name := range bd.names {
		if name != bd.trunk && bd.infos[name].parent == "" {
			walk(name, 0)
		}
	}
	if len(order) != len(bd.names) { // cannot happen after cycle breaking
		return nil, fmt.Errorf("view: %d of %d branches placed", len(order), len(bd.names))
	}
	return order, nil
}

func ptr[T any](v T) *T { return &v }
