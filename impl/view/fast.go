package view

import (
	"maps"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/refs"
)

// fast builds the new snapshot by patching prev, when the refs that changed
// since prev allow it: branches moved (none created or deleted, trunk
// unchanged), metadata, stack titles, remote-tracking refs or HEAD changed,
// and no branch's parent changed. Only the branches whose inputs changed
// (a moved branch, its children, branches whose ancestry inference looked
// at a moved tip, branches whose metadata or tracking ref changed) are
// recomputed, and only their stacks re-encoded; everything else is shared
// with prev. It returns nil (and no error) when the slow path must run.
func (bd *build) fast() (*Snapshot, error) {
	prev := bd.prev
	if prev.objects == nil {
		return nil, nil
	}
	table := bd.repo.Refs()
	trunk := bd.detectTrunk()
	if trunk != prev.repo.Trunk {
		return nil, nil
	}
	bd.trunk = prev.trunk
	bd.tracking = bd.branchConfig()
	if !maps.Equal(bd.tracking, prev.tracking) {
		return nil, nil
	}
	bd.remotes = table.Prefix("refs/remotes/")
	bd.fastTips = map[string]plumbing.Hash{}
	bd.moved = map[plumbing.Hash]bool{}
	affected := map[string]bool{}  // records to rebuild
	reresolve := map[string]bool{} // parents to resolve again
	stackIDs := map[string]bool{}  // stack blobs that changed
	tracked := map[string]bool{}   // remote-tracking refs that changed
	for _, c := range refs.Diff(prev.objects.Refs(), table, nil) {
		switch {
		case strings.HasPrefix(c.Ref, "refs/heads/"):
			name := strings.TrimPrefix(c.Ref, "refs/heads/")
			old := prev.info(name)
			if c.Kind == refs.Created || c.Kind == refs.Deleted || name == bd.trunk || old == nil {
				return nil, nil
			}
			if _, err := bd.g.get(c.New); err != nil {
				if err := bd.g.ctx.Err(); err != nil {
					return nil, err
				}
				return nil, nil // the slow path logs and skips it
			}
			bd.fastTips[name] = c.New
			bd.moved[c.Old], bd.moved[c.New] = true, true
			affected[name], reresolve[name] = true, true
			for _, ch := range old.children {
				affected[ch] = true
			}
		case strings.HasPrefix(c.Ref, stackitMetaPrefix), strings.HasPrefix(c.Ref, graphiteMetaPrefix):
			name := strings.TrimPrefix(strings.TrimPrefix(c.Ref, stackitMetaPrefix), graphiteMetaPrefix)
			if prev.info(name) != nil && name != bd.trunk {
				affected[name], reresolve[name] = true, true
			}
		case strings.HasPrefix(c.Ref, stackitStackPrefix):
			stackIDs[strings.TrimPrefix(c.Ref, stackitStackPrefix)] = true
		case strings.HasPrefix(c.Ref, "refs/remotes/"):
			tracked[c.Ref] = true
		}
	}
	// Branches tracking a changed remote ref, or a moved local branch.
	if len(tracked) > 0 || len(bd.fastTips) > 0 {
		for _, bi := range prev.infos {
			if ref, ok := bd.trackingRefName(bi.name); ok && tracked[ref] {
				affected[bi.name] = true
			} else if short, local := strings.CutPrefix(ref, "refs/heads/"); ok && local {
				if _, moved := bd.fastTips[short]; moved {
					affected[bi.name] = true
				}
			}
		}
	}
	if len(bd.moved) > 0 {
		for _, bi := range prev.infos {
			if bi.anc == nil || reresolve[bi.name] {
				continue
			}
			if slices.ContainsFunc(bi.anc.visited, func(h plumbing.Hash) bool { return bd.moved[h] }) {
				affected[bi.name], reresolve[bi.name] = true, true
			}
		}
	}
	repoVal, current := bd.repoValue(table, trunk)
	if current != prev.current {
		for _, name := range []string{prev.current, current} {
			if prev.info(name) != nil {
				affected[name] = true
			}
		}
	}

	// Parents: any change of structure takes the slow path.
	names := slices.Sorted(maps.Keys(reresolve))
	meta := newMetaLookup(table)
	for _, name := range names {
		old := prev.info(name)
		tip, _ := bd.tipOf(name)
		bi := &branchInfo{name: name, tip: tip, source: gen.BranchParentSourceNone, children: old.children, depth: old.depth}
		bd.applyMetadata(bi, meta)
		if bi.parent == "" {
			if err := bd.setAncestryParent(bi); err != nil {
				return nil, err
			}
		}
		if bi.parent != old.parent || bi.source != old.source {
			return nil, nil
		}
		bd.infos[name] = bi
	}

	s := &Snapshot{
		vals:       &values{},
		builder:    bd.b,
		objects:    bd.repo,
		repo:       repoVal,
		recs:       slices.Clone(prev.recs),
		byName:     prev.byName,
		byRoot:     prev.byRoot,
		stackRecs:  slices.Clone(prev.stackRecs),
		merged:     prev.merged,
		mergedJSON: prev.mergedJSON,
		trunk:      prev.trunk,
		trunkTip:   prev.trunkTip,
		current:    current,
		infos:      slices.Clone(prev.infos),
		tips:       prev.tips,
		tracking:   bd.tracking,
	}
	if len(bd.fastTips) > 0 {
		s.tips = prev.tips.with(bd.fastTips)
	}
	roots := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(affected)) {
		i := s.byName[name]
		bi := bd.infos[name]
		if bi == nil { // only its walk inputs changed: same info, new tip
			cp := *prev.infos[i]
			cp.tip, _ = bd.tipOf(name)
			bi = &cp
			bd.infos[name] = bi
		}
		s.infos[i] = bi
		rec, err := bd.branchRecord(bi, current)
		if err != nil {
			return nil, err
		}
		s.recs[i] = rec
		if root := bd.rootOf(name); root != "" {
			roots[root] = true
		}
	}
	for _, sr := range prev.stackRecs {
		if bd.infoOf(sr.root).stackID != "" && stackIDs[bd.infoOf(sr.root).stackID] {
			roots[sr.root] = true
		}
	}
	// Stacks: rebuild the touched ones.
	for root := range roots {
		j := prev.byRoot[root]
		start := s.byName[root]
		end := start + len(prev.stackRecs[j].branches)
		nsr, err := bd.stackRecord(root, s.recs[start:end:end], table)
		if err != nil {
			return nil, err
		}
		s.stackRecs[j] = nsr
	}
	s.patchChunks(prev)
	s.computeHash()
	return s, nil
}

// rootOf is the root of the stack holding branch name ("" when it is the
// trunk or not connected to it).
func (bd *build) rootOf(name string) string {
	for bi := bd.infoOf(name); bi != nil && bi.depth > 0; bi = bd.infoOf(bi.parent) {
		if bi.depth == 1 {
			if bi.parent == bd.trunk {
				return bi.name
			}
			return ""
		}
	}
	return ""
}
