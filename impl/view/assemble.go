package view

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/refs"
)

// walkKey is everything a branch's commit walks depend on.
type walkKey struct {
	tip, ptip, track    plumbing.Hash
	isTrunk, hasParent  bool
	hasTrack            bool
	parentRevisionDiffs bool // metadata's parentBranchRevision names another commit than the parent's tip
}

// walkRes is the outcome of a branch's commit walks.
type walkRes struct {
	commits       []gen.Commit
	restack       bool
	rng           [2]plumbing.Hash
	hasRange      bool
	ahead, behind int
}

// branchRec is one branch of a snapshot: its value, its JSON and what it
// was computed from. Records are shared between snapshots while unchanged.
type branchRec struct {
	key  walkKey
	walk *walkRes
	val  gen.Branch
	json []byte
	sum  [sha256.Size]byte
}

// stackRec is one stack of a snapshot, shared while unchanged. Its JSON is
// not stored whole: it is its branches' JSON between a fixed head and its
// tail (see write), so a stack costs its branches' bytes once.
type stackRec struct {
	root     string
	branches []*branchRec
	id       string
	title    string
	desc     *string
	tail     []byte // `],"description":…,"id":…,"root":…,"title":…}`
	size     int    // length of the stack's JSON
	sum      [sha256.Size]byte
}

// stackHead starts every stack's JSON.
var stackHead = []byte(`{"branches":[`)

// write hands the stack's JSON to w piece by piece.
func (sr *stackRec) write(w func([]byte)) {
	w(stackHead)
	for i, b := range sr.branches {
		if i > 0 {
			w(comma)
		}
		w(b.json)
	}
	w(sr.tail)
}

// appendJSON appends the stack's JSON to out (what write hands out, without
// a call per piece: this is the loop that assembles a view).
func (sr *stackRec) appendJSON(out []byte) []byte {
	out = append(out, stackHead...)
	for i, b := range sr.branches {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b.json...)
	}
	return append(out, sr.tail...)
}

var comma = []byte{','}

type trackCfg struct{ remote, merge string }

func (bd *build) branchConfig() map[string]trackCfg {
	out := map[string]trackCfg{}
	cfg, err := bd.repo.Config()
	if err != nil {
		bd.log.Warn("view: cannot read repository config; ahead/behind use origin", "err", err)
		return out
	}
	for name, br := range cfg.Branches {
		out[name] = trackCfg{remote: br.Remote, merge: br.Merge.String()}
	}
	return out
}

// trackingRefName names the ref a branch tracks: refs/remotes/<r>/<b> from
// its configuration (or origin/<name>), or refs/heads/<b> for remote ".".
func (bd *build) trackingRefName(name string) (string, bool) {
	if c, ok := bd.tracking[name]; ok && c.remote != "" && strings.HasPrefix(c.merge, "refs/heads/") {
		short := strings.TrimPrefix(c.merge, "refs/heads/")
		if c.remote == "." {
			return "refs/heads/" + short, true
		}
		return "refs/remotes/" + c.remote + "/" + short, true
	}
	if len(bd.remotes) == 0 {
		return "", false
	}
	return "refs/remotes/origin/" + name, true
}

// trackingRef finds the tip of the ref a branch tracks.
func (bd *build) trackingRef(name string) (plumbing.Hash, bool) {
	ref, ok := bd.trackingRefName(name)
	if !ok {
		return plumbing.ZeroHash, false
	}
	if short, local := strings.CutPrefix(ref, "refs/heads/"); local {
		return bd.tipOf(short)
	}
	i, ok := slices.BinarySearchFunc(bd.remotes, ref, func(r refs.Ref, n string) int { return strings.Compare(r.Name, n) })
	if !ok || bd.remotes[i].Symbolic() {
		return plumbing.ZeroHash, false
	}
	return bd.remotes[i].Hash, true
}

func (bd *build) commitVal(h plumbing.Hash) (gen.Commit, error) {
	n, err := bd.g.get(h)
	if err != nil {
		return gen.Commit{}, err
	}
	c := gen.Commit{Sha: h.String(), Subject: n.subject, Author: n.author, Date: n.date}
	if n.subjectCut {
		c.SubjectTruncated = ptr(true)
	}
	return c, nil
}

func (bd *build) keyOf(bi *branchInfo) walkKey {
	k := walkKey{tip: bi.tip, isTrunk: bi.name == bd.trunk}
	if !k.isTrunk && bi.parent != "" {
		k.hasParent = true
		k.ptip, _ = bd.tipOf(bi.parent)
		if bi.meta != nil && bi.meta.ParentBranchRevision != "" && bi.meta.ParentBranchRevision != k.ptip.String() {
			k.parentRevisionDiffs = true
		}
	}
	k.track, k.hasTrack = bd.trackingRef(bi.name)
	return k
}

// walk computes a branch's commits, restack state, diff range and
// ahead/behind counts.
func (bd *build) walk(k walkKey) (*walkRes, error) {
	res := &walkRes{}
	var own []plumbing.Hash
	switch {
	case k.isTrunk:
	case !k.hasParent:
		l, err := bd.g.log(k.tip, MaxCommits)
		if err != nil {
			return nil, err
		}
		own = l
	default:
		ex, err := bd.g.exclude(k.tip, k.ptip, OwnLimit)
		if err != nil {
			return nil, err
		}
		own = ex.own
		// The parent's tip is reached (as a boundary commit) exactly when
		// it is an ancestor of the branch tip.
		res.restack = k.tip != k.ptip && !slices.Contains(ex.boundary, k.ptip) || k.parentRevisionDiffs
		switch {
		case k.tip == k.ptip:
			res.rng, res.hasRange = [2]plumbing.Hash{k.ptip, k.tip}, true
		case len(ex.boundary) > 0:
			res.rng, res.hasRange = [2]plumbing.Hash{ex.boundary[0], k.tip}, true
		}
	}
	res.commits = make([]gen.Commit, 0, min(len(own), MaxCommits))
	for _, h := range own[:min(len(own), MaxCommits)] {
		c, err := bd.commitVal(h)
		if err != nil {
			return nil, err
		}
		res.commits = append(res.commits, c)
	}
	if k.hasTrack && k.track != k.tip {
		a, err := bd.g.exclude(k.tip, k.track, OwnLimit)
		if err != nil {
			return nil, err
		}
		b, err := bd.g.exclude(k.track, k.tip, OwnLimit)
		if err != nil {
			return nil, err
		}
		res.ahead, res.behind = len(a.own), len(b.own)
	}
	return res, nil
}

// branchRecord returns the record of one branch, prev's when unchanged.
func (bd *build) branchRecord(bi *branchInfo, current string) (*branchRec, error) {
	var prevRec *branchRec
	if bd.prev != nil {
		if i, ok := bd.prev.byName[bi.name]; ok {
			prevRec = bd.prev.recs[i]
		}
	}
	k := bd.keyOf(bi)
	var w *walkRes
	if prevRec != nil && prevRec.key == k {
		w = prevRec.walk
	} else {
		var err error
		if w, err = bd.walk(k); err != nil {
			return nil, err
		}
		bd.recomputed++
	}
	val := gen.Branch{
		Name:         bi.name,
		Sha:          bi.tip.String(),
		ParentSource: bi.source,
		Children:     slices.Clip(slices.Clone(bi.children)),
		Depth:        bi.depth,
		IsCurrent:    bi.name == current,
		Commits:      slices.Clip(w.commits),
		Pr:           bi.pr,
		NeedsRestack: w.restack,
	}
	if val.Children == nil {
		val.Children = []string{}
	}
	if k.isTrunk {
		val.ParentSource = gen.BranchParentSourceNone
	} else if bi.parent != "" {
		val.Parent = ptr(bi.parent)
	}
	if k.hasTrack {
		val.Ahead, val.Behind = ptr(w.ahead), ptr(w.behind)
	}
	if prevRec != nil && prevRec.walk == w && sameBranch(&prevRec.val, &val) {
		return prevRec, nil
	}
	js, err := json.Marshal(val)
	if err != nil {
		return nil, fmt.Errorf("view: encode branch %s: %w", bi.name, err)
	}
	return &branchRec{key: k, walk: w, val: val, json: js, sum: sha256.Sum256(js)}, nil
}

// sameBranch compares two branch values built from the same walk (so their
// commits are the same slice).
func sameBranch(a, b *gen.Branch) bool {
	return a.Name == b.Name && a.Sha == b.Sha && a.ParentSource == b.ParentSource &&
		a.Depth == b.Depth && a.IsCurrent == b.IsCurrent && a.NeedsRestack == b.NeedsRestack &&
		eqPtr(a.Parent, b.Parent) && eqPtr(a.Ahead, b.Ahead) && eqPtr(a.Behind, b.Behind) &&
		slices.Equal(a.Children, b.Children) && samePR(a.Pr, b.Pr)
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func samePR(a, b *gen.PullRequest) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	return a.Number == b.Number && eqPtr(a.Title, b.Title) && eqPtr(a.State, b.State) &&
		eqPtr(a.Url, b.Url) && eqPtr(a.IsDraft, b.IsDraft) && eqPtr(a.Base, b.Base)
}

func (bd *build) assemble(repoVal gen.Repo, current string, order []string, table *refs.Table) (*Snapshot, error) {
	s := &Snapshot{
		vals:     &values{},
		builder:  bd.b,
		objects:  bd.repo,
		repo:     repoVal,
		trunk:    bd.trunk,
		trunkTip: bd.trunkTip(),
		current:  current,
		tips:     &tipIndex{base: bd.tips},
		byName:   make(map[string]int, len(order)),
		byRoot:   map[string]int{},
	}
	s.tracking = bd.tracking
	s.recs = make([]*branchRec, 0, len(order))
	s.infos = make([]*branchInfo, 0, len(order))
	for _, name := range order {
		rec, err := bd.branchRecord(bd.infos[name], current)
		if err != nil {
			return nil, err
		}
		s.byName[name] = len(s.recs)
		s.recs = append(s.recs, rec)
		s.infos = append(s.infos, bd.infos[name])
	}
	if err := bd.assembleStacks(s, table); err != nil {
		return nil, err
	}
	if err := bd.recentlyMerged(s); err != nil {
		return nil, err
	}
	s.prepareChunks(bd.prev)
	s.computeHash()
	return s, nil
}

// assembleStacks makes the stacks: the trunk's children in name order, each
// with its subtree, which is contiguous in s.recs.
func (bd *build) assembleStacks(s *Snapshot, table *refs.Table) error {
	if bd.trunk == "" {
		return nil
	}
	for _, root := range bd.infos[bd.trunk].children {
		start := s.byName[root]
		end := start + 1
		for end < len(s.recs) && s.recs[end].val.Depth > 1 {
			end++
		}
		sr, err := bd.stackRecord(root, s.recs[start:end:end], table)
		if err != nil {
			return err
		}
		s.byRoot[root] = len(s.stackRecs)
		s.stackRecs = append(s.stackRecs, sr)
	}
	return nil
}

// infoOf is the build state of branch name.
func (bd *build) infoOf(name string) *branchInfo {
	if bi, ok := bd.infos[name]; ok || bd.fastTips == nil {
		return bi
	}
	return bd.prev.info(name)
}

// stackRecord makes the record of the stack rooted at root, prev's when
// unchanged.
func (bd *build) stackRecord(root string, recs []*branchRec, table *refs.Table) (*stackRec, error) {
	sr := &stackRec{root: root, branches: recs, id: root, title: root}
	if id := bd.infoOf(root).stackID; id != "" {
		sr.id = id
		if h, ok := table.Hash(stackitStackPrefix + id); ok {
			e := bd.b.cache.stackMeta(bd.repo, h)
			if e.err != nil {
				bd.log.Warn("view: malformed stack metadata ignored",
					"ref", stackitStackPrefix+id, "err", e.err)
			} else {
				if e.meta.Title != "" {
					sr.title = e.meta.Title
				}
				if e.meta.Description != "" {
					sr.desc = ptr(e.meta.Description)
				}
			}
		}
	}
	if bd.prev != nil {
		if i, ok := bd.prev.byRoot[root]; ok && sameStack(bd.prev.stackRecs[i], sr) {
			return bd.prev.stackRecs[i], nil
		}
	}
	if err := sr.encode(); err != nil {
		return nil, err
	}
	return sr, nil
}

func (sr *stackRec) value(branches []gen.Branch) gen.Stack {
	return gen.Stack{Root: sr.root, Id: sr.id, Title: sr.title, Description: sr.desc, Branches: branches}
}

func sameStack(a, b *stackRec) bool {
	return a.root == b.root && a.id == b.id && a.title == b.title && eqPtr(a.desc, b.desc) &&
		slices.Equal(a.branches, b.branches)
}

// encode makes the stack's tail, size and checksum, as encoding/json
// would encode the stack, reusing the branches' bytes.
func (sr *stackRec) encode() error {
	rest, err := json.Marshal(struct {
		Description *string `json:"description,omitempty"`
		ID          string  `json:"id"`
		Root        string  `json:"root"`
		Title       string  `json:"title"`
	}{sr.desc, sr.id, sr.root, sr.title})
	if err != nil {
		return fmt.Errorf("view: encode stack %s: %w", sr.root, err)
	}
	sr.tail = append([]byte("],"), rest[1:]...)
	h := sha256.New()
	sr.size = 0
	sr.write(func(p []byte) {
		h.Write(p)
		sr.size += len(p)
	})
	h.Sum(sr.sum[:0])
	return nil
}

// recentlyMerged lists trunk's newest first-parent commits.
func (bd *build) recentlyMerged(s *Snapshot) error {
	if bd.prev != nil && bd.prev.trunk == bd.trunk && bd.prev.trunkTip == bd.trunkTip() && bd.prev.mergedJSON != nil {
		s.merged, s.mergedJSON = bd.prev.merged, bd.prev.mergedJSON
		return nil
	}
	s.merged = []gen.Commit{}
	if bd.trunk != "" {
		fp := bd.b.fp
		for _, h := range fp[:min(len(fp), RecentlyMergedCount)] {
			c, err := bd.commitVal(h)
			if err != nil {
				return err
			}
			s.merged = append(s.merged, c)
		}
	}
	s.merged = slices.Clip(s.merged)
	js, err := json.Marshal(s.merged)
	if err != nil {
		return fmt.Errorf("view: encode recently merged: %w", err)
	}
	s.mergedJSON = js
	return nil
}

// computeHash hashes the content: everything but version and build time.
func (s *Snapshot) computeHash() {
	h := sha256.New()
	repo := s.repo
	repo.ViewVersion = nil
	js, _ := json.Marshal(repo) // plain values: cannot fail
	h.Write(js)
	h.Write(s.mergedJSON)
	for _, r := range s.recs {
		h.Write(r.sum[:])
	}
	for _, sr := range s.stackRecs {
		h.Write(sr.sum[:])
	}
	s.hash = hex.EncodeToString(h.Sum(nil))
}
