// Package view builds an immutable [Snapshot] of a repository's stacked
// branches from a go-git repository: branches, their parents (from stackit
// or Graphite metadata refs, or from ancestry), stacks, own commits,
// restack state, ahead/behind counts and recently merged trunk commits.
//
// Build only reads the repository. It never fails because of one branch's
// bad metadata: that branch is logged and falls back to ancestry.
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
// share no history. Branch tips that are not readable commits are logged
// and left out.
//
// # Walks
//
// Own commits, is-ancestor, merge bases and ahead/behind use a per-build
// commit cache and git's painting walk (newest commit first, stop when every
// queued commit is reachable from both sides). Like git without a
// commit-graph file, the walks assume commit dates that roughly follow
// history.
package view

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
)

// Limits of the walks.
const (
	// AncestryLimit bounds the commits visited when looking for a
	// branch's ancestry parent.
	AncestryLimit = 1000
	// TrunkHistoryLimit bounds trunk's first-parent history considered
	// "on trunk" by the ancestry walk.
	TrunkHistoryLimit = 10000
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
	// DetectTrunk picks the trunk when Trunk is "". nil means
	// gitrepo.DetectTrunk (origin/HEAD, bare HEAD, init.defaultBranch from
	// the repository then the user's global config, main, master); tests
	// and callers wanting a pure build pass their own.
	DetectTrunk func(*git.Repository) string
	// Remote is the already redacted upstream URL ("" for none).
	Remote string
	// Logger receives warnings about malformed metadata; nil discards.
	Logger *slog.Logger
}

// Snapshot is an immutable view of a repository. Its gen values are built
// once and shared by every accessor: callers must treat them (including
// the slices and pointers inside) as read-only. Returned slices have their
// capacity clipped, so appending to them never writes into the snapshot.
type Snapshot struct {
	repo     gen.Repo
	view     gen.RepoView
	stacks   []gen.Stack
	branches []gen.Branch
	byName   map[string]int
	byRoot   map[string]int
	ranges   map[string][2]plumbing.Hash
	hash     string
	version  int64
	builtAt  time.Time
}

// branchInfo is the build-time state of one branch.
type branchInfo struct {
	name     string
	tip      plumbing.Hash
	parent   string // "" for none
	source   gen.BranchParentSource
	meta     *branchMeta // the metadata that supplied the parent, if any
	pr       *gen.PullRequest
	stackID  string
	children []string
	depth    int
}

type builder struct {
	ctx    context.Context
	repo   *git.Repository
	in     Input
	log    *slog.Logger
	g      *graph
	trunk  string // "" when trunk does not exist
	heads  map[string]plumbing.Hash
	tips   map[plumbing.Hash][]string // tip → non-trunk branches, sorted
	onFP   map[plumbing.Hash]bool     // trunk first-parent history
	fp     []plumbing.Hash
	infos  map[string]*branchInfo
	names  []string // sorted branch names
	remote map[plumbing.ReferenceName]plumbing.Hash
}

// Build reads refs, metadata and HEAD of repo and builds a snapshot (at
// version 0; see WithVersion). It fails only when refs cannot be read or
// ctx is cancelled; broken metadata is logged and ignored.
func Build(ctx context.Context, repo *git.Repository, in Input) (*Snapshot, error) {
	b := &builder{
		ctx:    ctx,
		repo:   repo,
		in:     in,
		log:    in.Logger,
		g:      newGraph(repo),
		heads:  map[string]plumbing.Hash{},
		tips:   map[plumbing.Hash][]string{},
		onFP:   map[plumbing.Hash]bool{},
		infos:  map[string]*branchInfo{},
		remote: map[plumbing.ReferenceName]plumbing.Hash{},
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b.build()
}

type refSets struct {
	stackit  map[string]plumbing.Hash
	graphite map[string]plumbing.Hash
	stacks   map[string]plumbing.Hash
}

func (b *builder) readRefs() (*refSets, error) {
	rs := &refSets{stackit: map[string]plumbing.Hash{}, graphite: map[string]plumbing.Hash{}, stacks: map[string]plumbing.Hash{}}
	iter, err := b.repo.Storer.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("view: list refs: %w", err)
	}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() != plumbing.HashReference {
			return nil
		}
		name := r.Name().String()
		switch {
		case strings.HasPrefix(name, "refs/heads/"):
			b.heads[strings.TrimPrefix(name, "refs/heads/")] = r.Hash()
		case strings.HasPrefix(name, "refs/remotes/"):
			b.remote[r.Name()] = r.Hash()
		case strings.HasPrefix(name, stackitMetaPrefix):
			rs.stackit[strings.TrimPrefix(name, stackitMetaPrefix)] = r.Hash()
		case strings.HasPrefix(name, graphiteMetaPrefix):
			rs.graphite[strings.TrimPrefix(name, graphiteMetaPrefix)] = r.Hash()
		case strings.HasPrefix(name, stackitStackPrefix):
			rs.stacks[strings.TrimPrefix(name, stackitStackPrefix)] = r.Hash()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("view: list refs: %w", err)
	}
	return rs, nil
}

func (b *builder) build() (*Snapshot, error) {
	rs, err := b.readRefs()
	if err != nil {
		return nil, err
	}
	// Drop branches whose tip is not a readable commit.
	for name, h := range b.heads {
		if _, err := b.g.get(h); err != nil {
			b.log.Warn("view: branch tip is not a readable commit; branch skipped",
				"repo", b.in.RepoID, "branch", name, "err", err)
			delete(b.heads, name)
		}
	}
	if err := b.ctx.Err(); err != nil {
		return nil, fmt.Errorf("view: build: %w", err)
	}
	repoVal := gen.Repo{Id: b.in.RepoID, Kind: b.in.Kind}
	if b.in.Remote != "" {
		repoVal.Remote = ptr(b.in.Remote)
	}
	// HEAD.
	current := ""
	if head, err := b.repo.Storer.Reference(plumbing.HEAD); err == nil {
		switch head.Type() {
		case plumbing.SymbolicReference:
			if head.Target().IsBranch() {
				name := head.Target().Short()
				if b.in.Kind != gen.Mirror {
					current = name
					repoVal.CurrentBranch = ptr(name)
				}
				if h, ok := b.heads[name]; ok {
					repoVal.HeadSha = ptr(h.String())
				}
			}
		case plumbing.HashReference:
			repoVal.HeadSha = ptr(head.Hash().String())
		}
	}
	// Trunk.
	trunk := b.in.Trunk
	if trunk == "" {
		detect := b.in.DetectTrunk
		if detect == nil {
			detect = gitrepo.DetectTrunk
		}
		trunk = detect(b.repo)
	}
	repoVal.Trunk = trunk
	if _, ok := b.heads[trunk]; ok {
		b.trunk = trunk
	}
	for name := range b.heads {
		b.names = append(b.names, name)
	}
	slices.Sort(b.names)
	for _, name := range b.names {
		b.infos[name] = &branchInfo{name: name, tip: b.heads[name], source: gen.BranchParentSourceNone}
		if name != b.trunk {
			b.tips[b.heads[name]] = append(b.tips[b.heads[name]], name)
		}
	}
	if b.trunk != "" {
		fp, err := b.g.firstParents(b.ctx, b.heads[b.trunk], TrunkHistoryLimit)
		if err != nil {
			return nil, err
		}
		b.fp = fp
		for _, h := range fp {
			b.onFP[h] = true
		}
	}
	if err := b.resolveParents(rs); err != nil {
		return nil, err
	}
	order, err := b.layout()
	if err != nil {
		return nil, err
	}
	stackTitles := b.readStacks(rs)
	return b.assemble(repoVal, current, order, stackTitles)
}

// resolveParents sets parent/source of every non-trunk branch.
func (b *builder) resolveParents(rs *refSets) error {
	for _, name := range b.names {
		if name == b.trunk {
			continue
		}
		bi := b.infos[name]
		b.applyMetadata(bi, rs)
		if bi.parent == "" {
			if err := b.setAncestryParent(bi); err != nil {
				return err
			}
		}
	}
	// Break cycles.
	for {
		cycle := b.findCycle()
		if cycle == nil {
			return nil
		}
		victim := ""
		for _, n := range cycle {
			s := b.infos[n].source
			if (s == gen.BranchParentSourceStackit || s == gen.BranchParentSourceGraphite) && (victim == "" || n < victim) {
				victim = n
			}
		}
		if victim == "" { // cannot happen: ancestry edges are acyclic
			return fmt.Errorf("view: parent cycle without metadata: %v", cycle)
		}
		bi := b.infos[victim]
		b.log.Warn("view: metadata parent cycle; branch falls back to ancestry",
			"repo", b.in.RepoID, "branch", victim, "parent", bi.parent, "cycle", cycle)
		bi.meta = nil
		if err := b.setAncestryParent(bi); err != nil {
			return err
		}
	}
}

// applyMetadata takes parent, PR and stack id from stackit, else Graphite.
func (b *builder) applyMetadata(bi *branchInfo, rs *refSets) {
	sources := []struct {
		src  gen.BranchParentSource
		refs map[string]plumbing.Hash
		ref  string
	}{
		{gen.BranchParentSourceStackit, rs.stackit, stackitMetaPrefix},
		{gen.BranchParentSourceGraphite, rs.graphite, graphiteMetaPrefix},
	}
	prSet := false
	for _, s := range sources {
		h, ok := s.refs[bi.name]
		if !ok {
			continue
		}
		var m branchMeta
		if err := readBlobJSON(b.repo, h, &m); err != nil {
			b.log.Warn("view: malformed branch metadata ignored",
				"repo", b.in.RepoID, "branch", bi.name, "ref", s.ref+bi.name, "err", err)
			continue
		}
		if !prSet {
			bi.pr = m.PRInfo.pr()
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
			if _, ok := b.heads[p]; !ok {
				problem = "parent branch does not exist"
			}
		}
		if problem != "" {
			b.log.Warn("view: unusable metadata parent ignored",
				"repo", b.in.RepoID, "branch", bi.name, "ref", s.ref+bi.name,
				"parent", m.ParentBranchName, "problem", problem)
			continue
		}
		mm := m
		bi.parent, bi.source, bi.meta = m.ParentBranchName, s.src, &mm
	}
}

// setAncestryParent implements the ancestry rule documented on the package.
func (b *builder) setAncestryParent(bi *branchInfo) error {
	bi.parent, bi.source, bi.meta = "", gen.BranchParentSourceNone, nil
	trunkTip := plumbing.ZeroHash
	if b.trunk != "" {
		trunkTip = b.heads[b.trunk]
	}
	level := []plumbing.Hash{bi.tip}
	visited := map[plumbing.Hash]bool{bi.tip: true}
	for len(level) > 0 {
		if err := b.ctx.Err(); err != nil {
			return fmt.Errorf("view: ancestry: %w", err)
		}
		best, trunkHit := "", false
		for _, c := range level {
			if c != bi.tip {
				for _, other := range b.tips[c] {
					if other != bi.name && (best == "" || other < best) {
						best = other
					}
				}
			}
			if b.trunk != "" && (c == trunkTip || b.onFP[c]) {
				trunkHit = true
			}
		}
		if best != "" {
			bi.parent, bi.source = best, gen.BranchParentSourceAncestry
			return nil
		}
		if trunkHit {
			bi.parent, bi.source = b.trunk, gen.BranchParentSourceAncestry
			return nil
		}
		var next []plumbing.Hash
		for _, c := range level {
			n, err := b.g.get(c)
			if err != nil {
				return err
			}
			for _, p := range n.parents {
				if visited[p] || len(visited) >= AncestryLimit {
					continue
				}
				visited[p] = true
				next = append(next, p)
			}
		}
		level = next
	}
	if b.trunk == "" {
		return nil
	}
	_, shared, err := b.g.mergeBase(b.ctx, bi.tip, trunkTip)
	if err != nil {
		return err
	}
	if shared {
		bi.parent, bi.source = b.trunk, gen.BranchParentSourceAncestry
	}
	return nil
}

// findCycle returns the branches of one parent cycle, or nil.
func (b *builder) findCycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	for _, start := range b.names {
		if color[start] != white {
			continue
		}
		var path []string
		n := start
		for n != "" && color[n] == white {
			color[n] = grey
			path = append(path, n)
			n = b.infos[n].parent
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
func (b *builder) layout() ([]string, error) {
	for _, name := range b.names {
		if p := b.infos[name].parent; p != "" {
			b.infos[p].children = append(b.infos[p].children, name)
		}
	}
	var order []string
	var walk func(name string, depth int)
	walk = func(name string, depth int) {
		bi := b.infos[name]
		bi.depth = depth
		order = append(order, name)
		for _, c := range bi.children { // already sorted: names are
			walk(c, depth+1)
		}
	}
	if b.trunk != "" {
		walk(b.trunk, 0)
	}
	for _, name := range b.names {
		if name != b.trunk && b.infos[name].parent == "" {
			walk(name, 0)
		}
	}
	if len(order) != len(b.names) { // cannot happen after cycle breaking
		return nil, fmt.Errorf("view: %d of %d branches placed", len(order), len(b.names))
	}
	return order, nil
}

// readStacks decodes refs/stackit/stacks/<id>.
func (b *builder) readStacks(rs *refSets) map[string]stackMeta {
	out := map[string]stackMeta{}
	for id, h := range rs.stacks {
		var m stackMeta
		if err := readBlobJSON(b.repo, h, &m); err != nil {
			b.log.Warn("view: malformed stack metadata ignored",
				"repo", b.in.RepoID, "ref", stackitStackPrefix+id, "err", err)
			continue
		}
		out[id] = m
	}
	return out
}

func (b *builder) commitVal(h plumbing.Hash) (gen.Commit, error) {
	n, err := b.g.get(h)
	if err != nil {
		return gen.Commit{}, err
	}
	return gen.Commit{Sha: h.String(), Subject: n.subject, Author: n.author, Date: n.date}, nil
}

// trackingRef finds the remote-tracking ref of a branch.
func (b *builder) trackingRef(name string, cfgBranches map[string]trackCfg) (plumbing.Hash, bool) {
	if c, ok := cfgBranches[name]; ok && c.remote != "" && strings.HasPrefix(c.merge, "refs/heads/") {
		short := strings.TrimPrefix(c.merge, "refs/heads/")
		if c.remote == "." {
			h, ok := b.heads[short]
			return h, ok
		}
		h, ok := b.remote[plumbing.NewRemoteReferenceName(c.remote, short)]
		return h, ok
	}
	h, ok := b.remote[plumbing.NewRemoteReferenceName("origin", name)]
	return h, ok
}

type trackCfg struct{ remote, merge string }

func (b *builder) branchConfig() map[string]trackCfg {
	out := map[string]trackCfg{}
	cfg, err := b.repo.Config()
	if err != nil {
		b.log.Warn("view: cannot read repository config; ahead/behind use origin", "repo", b.in.RepoID, "err", err)
		return out
	}
	for name, br := range cfg.Branches {
		out[name] = trackCfg{remote: br.Remote, merge: br.Merge.String()}
	}
	return out
}

func (b *builder) branchVal(bi *branchInfo, current string, cfgBranches map[string]trackCfg) (gen.Branch, [2]plumbing.Hash, bool, error) {
	br := gen.Branch{
		Name:         bi.name,
		Sha:          bi.tip.String(),
		ParentSource: bi.source,
		Children:     slices.Clip(append([]string{}, bi.children...)),
		Depth:        bi.depth,
		IsCurrent:    bi.name == current,
		Commits:      []gen.Commit{},
		Pr:           bi.pr,
	}
	var rng [2]plumbing.Hash
	hasRange := false
	var own []plumbing.Hash
	switch {
	case bi.name == b.trunk:
		br.ParentSource = gen.BranchParentSourceNone
	case bi.parent == "":
		l, err := b.g.log(b.ctx, bi.tip, MaxCommits)
		if err != nil {
			return br, rng, false, err
		}
		own = l
	default:
		br.Parent = ptr(bi.parent)
		ptip := b.heads[bi.parent]
		r, err := b.g.paint(b.ctx, bi.tip, ptip)
		if err != nil {
			return br, rng, false, err
		}
		own = r.only(flagOne)
		br.NeedsRestack = bi.tip != ptip && r.flags[ptip]&flagOne == 0
		if bi.meta != nil && bi.meta.ParentBranchRevision != "" && bi.meta.ParentBranchRevision != ptip.String() {
			br.NeedsRestack = true
		}
		switch {
		case bi.tip == ptip:
			rng, hasRange = [2]plumbing.Hash{ptip, bi.tip}, true
		case len(r.bases) > 0:
			rng, hasRange = [2]plumbing.Hash{r.bases[0], bi.tip}, true
		}
	}
	if len(own) > MaxCommits {
		own = own[:MaxCommits]
	}
	for _, h := range own {
		c, err := b.commitVal(h)
		if err != nil {
			return br, rng, false, err
		}
		br.Commits = append(br.Commits, c)
	}
	br.Commits = slices.Clip(br.Commits)
	if th, ok := b.trackingRef(bi.name, cfgBranches); ok {
		ahead, behind := 0, 0
		if th != bi.tip {
			r, err := b.g.paint(b.ctx, bi.tip, th)
			if err != nil {
				return br, rng, false, err
			}
			ahead, behind = len(r.only(flagOne)), len(r.only(flagTwo))
		}
		br.Ahead, br.Behind = ptr(ahead), ptr(behind)
	}
	return br, rng, hasRange, nil
}

func (b *builder) assemble(repoVal gen.Repo, current string, order []string, stackTitles map[string]stackMeta) (*Snapshot, error) {
	s := &Snapshot{
		repo:   repoVal,
		byName: map[string]int{},
		byRoot: map[string]int{},
		ranges: map[string][2]plumbing.Hash{},
	}
	cfgBranches := b.branchConfig()
	s.branches = make([]gen.Branch, 0, len(order))
	for _, name := range order {
		bi := b.infos[name]
		br, rng, ok, err := b.branchVal(bi, current, cfgBranches)
		if err != nil {
			return nil, err
		}
		if ok {
			s.ranges[name] = rng
		}
		s.byName[name] = len(s.branches)
		s.branches = append(s.branches, br)
	}
	// Stacks: the trunk's children in name order, each with its subtree,
	// which is contiguous in s.branches.
	s.stacks = []gen.Stack{}
	if b.trunk != "" {
		for _, root := range b.infos[b.trunk].children {
			start := s.byName[root]
			end := start + 1
			for end < len(s.branches) && s.branches[end].Depth > 1 {
				end++
			}
			st := gen.Stack{Root: root, Id: root, Title: root, Branches: s.branches[start:end:end]}
			if id := b.infos[root].stackID; id != "" {
				st.Id = id
				if m, ok := stackTitles[id]; ok {
					if m.Title != "" {
						st.Title = m.Title
					}
					if m.Description != "" {
						st.Description = ptr(m.Description)
					}
				}
			}
			s.byRoot[root] = len(s.stacks)
			s.stacks = append(s.stacks, st)
		}
	}
	s.stacks = slices.Clip(s.stacks)
	merged := []gen.Commit{}
	for _, h := range b.fp[:min(len(b.fp), RecentlyMergedCount)] {
		c, err := b.commitVal(h)
		if err != nil {
			return nil, err
		}
		merged = append(merged, c)
	}
	s.view = gen.RepoView{Repo: s.repo, Stacks: s.stacks, RecentlyMerged: slices.Clip(merged)}
	if err := s.computeHash(); err != nil {
		return nil, err
	}
	return s, nil
}

// computeHash hashes everything except version and build time.
func (s *Snapshot) computeHash() error {
	content := struct {
		Repo           gen.Repo
		Stacks         []gen.Stack
		Branches       []gen.Branch
		RecentlyMerged []gen.Commit
	}{s.repo, s.stacks, s.branches, s.view.RecentlyMerged}
	content.Repo.ViewVersion = 0
	b, err := json.Marshal(content)
	if err != nil {
		return fmt.Errorf("view: hash snapshot: %w", err)
	}
	sum := sha256.Sum256(b)
	s.hash = hex.EncodeToString(sum[:])
	return nil
}

// Empty returns the snapshot of a repository with no commits, or of one
// not built yet: no branches, no stacks, trunk as configured.
func Empty(in Input) *Snapshot {
	s := &Snapshot{
		repo:     gen.Repo{Id: in.RepoID, Kind: in.Kind, Trunk: in.Trunk},
		stacks:   []gen.Stack{},
		branches: []gen.Branch{},
		byName:   map[string]int{},
		byRoot:   map[string]int{},
		ranges:   map[string][2]plumbing.Hash{},
	}
	if in.Remote != "" {
		s.repo.Remote = ptr(in.Remote)
	}
	s.view = gen.RepoView{Repo: s.repo, Stacks: s.stacks, RecentlyMerged: []gen.Commit{}}
	_ = s.computeHash() // cannot fail: plain values
	return s
}

// WithVersion returns a copy stamped with version v and build time
// builtAt (Repo.ViewVersion, View.Version, View.BuiltAt).
func (s *Snapshot) WithVersion(v int64, builtAt time.Time) *Snapshot {
	c := *s
	c.version = v
	c.builtAt = builtAt.UTC()
	c.repo.ViewVersion = v
	c.view.Repo = c.repo
	c.view.Version = v
	c.view.BuiltAt = c.builtAt
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

// Repo is the repository summary.
func (s *Snapshot) Repo() gen.Repo { return s.repo }

// View is the whole view.
func (s *Snapshot) View() gen.RepoView { return s.view }

// Stacks lists the stacks, by root name (shared, read-only).
func (s *Snapshot) Stacks() []gen.Stack { return s.stacks }

// Stack returns the stack whose root branch is root.
func (s *Snapshot) Stack(root string) (gen.Stack, bool) {
	i, ok := s.byRoot[root]
	if !ok {
		return gen.Stack{}, false
	}
	return s.stacks[i], true
}

// Branches lists every branch: trunk first (depth 0), then each stack
// depth-first, then branches not connected to trunk (shared, read-only).
func (s *Snapshot) Branches() []gen.Branch { return s.branches }

// Branch returns one branch by name.
func (s *Snapshot) Branch(name string) (gen.Branch, bool) {
	i, ok := s.byName[name]
	if !ok {
		return gen.Branch{}, false
	}
	return s.branches[i], true
}

// DiffRange returns the merge base of branch and its parent, and the
// branch tip, as pinned by this snapshot. ok is false for trunk, for a
// branch without parent or sharing no history with it, and for an unknown
// branch.
func (s *Snapshot) DiffRange(branch string) (base, tip plumbing.Hash, ok bool) {
	r, ok := s.ranges[branch]
	return r[0], r[1], ok
}

func ptr[T any](v T) *T { return &v }
