package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/stackd/stackd/impl/refs"
)

const (
	// maxHaves bounds the commits a Sync names as haves.
	maxHaves = 32
	// maxRecent is how many recently written branch tips are remembered
	// as haves.
	maxRecent = 8
)

// Result is the outcome of a Sync.
type Result struct {
	// Changes are the refs that changed in the namespaces, sorted by name,
	// from refs.Diff: modified refs are refs.Updated (the caller tells
	// forced ones apart with refs.Classify). Nil when nothing changed.
	Changes []refs.Change
	// HeadChanged reports that the upstream's default branch changed (HEAD
	// now points at another branch).
	HeadChanged bool
	// Fetched reports that a pack was transferred.
	Fetched bool
	// CompactErr is not nil when merging the mirror's packs failed after
	// the Sync itself succeeded (see maxPacks). The mirror is consistent
	// and the merge is tried again after the next fetch; worth a log line,
	// not a failed Sync.
	CompactErr error
	// Collected reports that the Sync collected garbage: the object store
	// was rewritten to the objects reachable from the refs (see gcGrowth).
	Collected bool
	// GCErr is not nil when the garbage collection that followed the
	// fetch failed. The mirror is consistent (at worst with objects in two
	// packs) and the Sync succeeded; the error is also logged to
	// Config.Log.
	GCErr error
}

// logMaintenance logs a failed compaction or collection after a
// successful Sync to Config.Log, if set.
func (m *Mirror) logMaintenance(op string, err error) {
	if m.rem.log != nil {
		m.rem.log.Warn("mirror maintenance failed", "op", op, "url", m.rem.shown, "err", m.rem.sanitize(err))
	}
}

// Sync brings the mirror up to date with its upstream (see the package
// documentation): Fetch, then Commit. Callers serialise the Syncs of one
// mirror. On error the mirror's refs, in memory and on disk, are those of
// the last successful Sync, and its files are as they were.
func (m *Mirror) Sync(ctx context.Context) (Result, error) {
	p, err := m.Fetch(ctx)
	if err != nil || p == nil {
		return Result{}, err
	}
	return p.Commit(ctx)
}

// Pending is an update of a mirror that was fetched and checked but is
// not visible yet: its pack waits in a quarantine (see quarantine.go) and
// no ref moved. Its Reader shows the new refs over the stored objects and
// the quarantined ones, so that the caller can build (and check) what it
// serves from them before anything is published. Commit publishes it;
// Abort throws it away, leaving the mirror as it was. One of them must be
// called, before the next Fetch, Sync, Reload or Close of the mirror.
type Pending struct {
	m        *Mirror
	old      *refs.Table
	next     *refs.Table
	oldHead  string
	head     string
	changes  []refs.Change
	peeled   map[string]plumbing.Hash
	q        *quarantine // nil when nothing was fetched
	finished bool
}

// Fetch lists the upstream and, when its refs differ from the mirror's,
// fetches what is missing into a quarantine and checks it: it returns the
// pending update, or nil when nothing changed (then nothing was written).
// On error nothing is left behind.
func (m *Mirror) Fetch(ctx context.Context) (*Pending, error) {
	const op = "fetch"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mirror: fetch %s: %w", m.rem.shown, err)
	}
	if !m.clean {
		removeTempPacks(m.dir)
	}
	// Until it is known that this Fetch writes nothing (no change).
	m.clean = false
	old := m.table.Load()
	sess, err := m.rem.session(ctx, old.Len()+old.Len()/8)
	if err != nil {
		return nil, m.rem.fail(ctx, op, err)
	}
	closeSess := closeOnce(sess)
	defer closeSess()
	gs, _ := sess.(*gitSession)
	if gs != nil {
		// Compared as it streams: no map of unchanged refs.
		gs.expect, gs.expectation = old, m.expectation(old)
	}
	ls, err := m.rem.list(ctx, sess, op)
	if err != nil {
		return nil, err
	}
	if gs != nil && ls.refs != nil {
		// The map is the session's own (newRefMap): nothing holds it
		// after this Fetch (the tables built from it copy what they keep).
		defer recycleRefMap(ls.refs)
		if gs.same {
			ls.matched = old
		}
	}

	oldHead, _, _ := old.Head()
	head := ls.headTarget(oldHead)
	if head == "" {
		head = oldHead // not advertised: keep ours
	}
	if head == oldHead && ls.same(old) {
		m.clean = true // nothing was written
		return nil, nil
	}
	next := ls.table(head, old)
	changes := refs.Diff(old, next, InNamespaces)
	if len(changes) == 0 && head == oldHead {
		m.clean = true
		return nil, nil
	}

	wants, err := m.missing(changes)
	if err != nil {
		return nil, err
	}
	p := &Pending{m: m, old: old, next: next, oldHead: oldHead, head: head, changes: changes}
	var np *newPack
	if len(wants) > 0 {
		q, err := m.objs.newQuarantine()
		if err != nil {
			return nil, m.rem.fail(ctx, op, err)
		}
		opts := receiveOpts{lim: m.lim, verify: true, have: m.objs.has, wants: wants, keepIDs: true}
		store := func(r io.Reader) (newPack, error) { return receivePack(q.packDir(), r, opts) }
		if q.pack, err = m.fetch(ctx, sess, ls, wants, m.haves(old, changes), op, store); err != nil {
			m.objs.discard(q)
			return nil, err
		}
		p.q, np = q, &q.pack
	}
	closeSess()
	if err := ctx.Err(); err != nil {
		p.Abort()
		return nil, fmt.Errorf("mirror: fetch %s: %w", m.rem.shown, err)
	}
	if err := m.objs.checkBranches(changes, np); err != nil {
		p.Abort()
		return nil, m.rem.fail(ctx, op, err)
	}
	if p.q != nil {
		m.objs.admit(p.q)
	}
	p.peeled = m.peel(next, changes, m.peeled, np)
	return p, nil
}

// Reader reads the pending update: its refs, over the stored objects and
// the quarantined ones.
func (p *Pending) Reader() *Reader { return &Reader{table: p.next, objs: p.m.objs} }

// Changes are the refs the update changes (see Result.Changes).
func (p *Pending) Changes() []refs.Change { return p.changes }

// HeadChanged reports that the update moves HEAD to another branch.
func (p *Pending) HeadChanged() bool { return p.head != p.oldHead }

// Abort throws the update away: the quarantine is removed and the mirror
// stays as it was. Abort after Commit does nothing.
func (p *Pending) Abort() {
	if p.finished {
		return
	}
	p.finished = true
	if p.q != nil {
		p.m.objs.discard(p.q)
	}
}

// Commit publishes the update: the pack moves into the store, then
// packed-refs (and HEAD when the default branch moved) are rewritten with
// git's lock-file protocol. Then the packs are merged or collected when
// due (see Result). On error the refs are the old ones (at most an
// unreferenced pack was added).
func (p *Pending) Commit(ctx context.Context) (Result, error) {
	if p.finished {
		return Result{}, errors.New("mirror: the update was already committed or aborted")
	}
	p.finished = true
	m := p.m
	if p.q != nil {
		if err := m.objs.publish(p.q); err != nil {
			m.objs.discard(p.q)
			return Result{}, fmt.Errorf("mirror: fetch %s: %w: %w", m.rem.shown, ErrStorage, err)
		}
	}
	if len(p.changes) > 0 {
		if err := writePackedRefsLocked(filepath.Join(m.dir, packedRefsFile), p.next, p.peeled, m.extra); err != nil {
			return Result{}, err
		}
		for _, c := range p.changes {
			if m.loose[c.Ref] {
				if err := removeLoose(m.dir, c.Ref); err != nil {
					return Result{}, err
				}
			}
		}
	}
	if p.head != p.oldHead {
		if err := writeHead(m.dir, p.head); err != nil {
			return Result{}, err
		}
	}
	if err := syncDir(m.dir); err != nil {
		return Result{}, err
	}

	m.disk = stampRefs(m.dir)
	m.table.Store(p.next)
	m.peeled = p.peeled
	for _, c := range p.changes {
		delete(m.loose, c.Ref)
	}
	m.remember(p.changes)
	fetched := p.q != nil
	res := Result{Changes: p.changes, HeadChanged: p.head != p.oldHead, Fetched: fetched}
	if fetched {
		if _, err := m.objs.compact(); err != nil {
			res.CompactErr = err
			m.logMaintenance("compact", err)
		}
		collected, err := m.collect(ctx, p.old)
		res.Collected = collected
		if err != nil {
			res.GCErr = err
			m.logMaintenance("gc", err)
		}
	}
	return res, nil
}

// missing returns the new tips of changes that are not stored yet,
// without duplicates.
func (m *Mirror) missing(changes []refs.Change) ([]plumbing.Hash, error) {
	var wants []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	for _, c := range changes {
		if c.Kind == refs.Deleted || seen[c.New] {
			continue
		}
		seen[c.New] = true
		ok, err := m.objs.has(c.New)
		if err != nil {
			return nil, err
		}
		if !ok {
			wants = append(wants, c.New)
		}
	}
	return wants, nil
}

// haves chooses the commits named as haves: the trunk tip, the old tips
// of the changed refs, then recently written branch tips; stored commits
// only, at most maxHaves, looking at a bounded number of candidates.
func (m *Mirror) haves(old *refs.Table, changes []refs.Change) []plumbing.Hash {
	var out []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	looked := 0
	add := func(h plumbing.Hash, limit int) {
		if len(out) >= limit || looked >= 4*maxHaves || h.IsZero() || seen[h] {
			return
		}
		seen[h] = true
		looked++
		if m.objs.isCommit(h) {
			out = append(out, h)
		}
	}
	if h, ok := old.Resolve(refs.HEAD); ok {
		add(h, maxHaves)
	}
	for _, c := range changes {
		add(c.Old, maxHaves-maxRecent)
	}
	for _, h := range m.recent {
		add(h, maxHaves)
	}
	return out
}

// remember records the new branch tips of a successful Sync as future
// haves.
func (m *Mirror) remember(changes []refs.Change) {
	var tips []plumbing.Hash
	for _, c := range changes {
		if c.Kind != refs.Deleted && strings.HasPrefix(c.Ref, "refs/heads/") && len(tips) < maxRecent {
			tips = append(tips, c.New)
		}
	}
	m.recent = append(tips, m.recent...)
	if len(m.recent) > maxRecent {
		m.recent = m.recent[:maxRecent:maxRecent]
	}
}

// fetch sends one upload-pack request on sess and stores the pack it
// answers with (with store, which checks it, and that it holds every
// want).
func (m *Mirror) fetch(ctx context.Context, sess transport.UploadPackSession, ls *listing, wants, haves []plumbing.Hash,
	op string, store func(io.Reader) (newPack, error)) (newPack, error) {
	req := packp.NewUploadPackRequestFromCapabilities(ls.caps)
	// A thin pack would refer to objects outside it: the stored pack must
	// stand alone (receivePack refuses a delta whose base it lacks).
	req.Capabilities.Delete(capability.ThinPack)
	if ls.caps.Supports(capability.NoProgress) {
		if err := req.Capabilities.Set(capability.NoProgress); err != nil {
			return newPack{}, fmt.Errorf("mirror: %s: %w", op, err)
		}
	}
	req.Wants = wants
	req.Haves = haves
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return newPack{}, m.rem.fail(ctx, op, err)
	}
	defer resp.Close()
	var r io.Reader = resp
	if m.rem.transfers != nil {
		r = counted{r: resp, t: m.rem.transfers} // what came over the wire
	}
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, r)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, r)
	}
	pack, err := store(r)
	if err != nil {
		return newPack{}, m.rem.fail(ctx, op, err)
	}
	return pack, nil
}

// closeOnce returns a function that closes sess the first time it is
// called (errors are irrelevant once the transfer is over).
func closeOnce(sess transport.UploadPackSession) func() {
	done := false
	return func() {
		if !done {
			done = true
			_ = sess.Close()
		}
	}
}

// listing is what a mirror uses of a ref advertisement.
type listing struct {
	refs map[string]plumbing.Hash // every advertised ref; see wanted
	// matched, when set, is a table whose direct refs in the namespaces
	// are exactly the advertised ones there: refs lacks them until fill.
	matched  *refs.Table
	head     string // HEAD's symref target, "" if not advertised
	headHash *plumbing.Hash
	caps     *capability.List
}

// list reads the ref advertisement of sess. An empty upstream yields an
// empty listing.
func (r remote) list(ctx context.Context, sess transport.UploadPackSession, op string) (*listing, error) {
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) && ctx.Err() == nil {
		return &listing{caps: capability.NewList()}, nil
	}
	if err != nil {
		return nil, r.fail(ctx, op, err)
	}
	ls := &listing{refs: ar.References, headHash: ar.Head, caps: ar.Capabilities}
	for _, v := range ar.Capabilities.Get(capability.SymRef) {
		if name, target, ok := strings.Cut(v, ":"); ok && name == refs.HEAD {
			ls.head = target
		}
	}
	return ls, nil
}

// wanted reports whether an advertised ref belongs in the mirror: in the
// namespaces, with a name git accepts.
func wanted(name string) bool { return InNamespaces(name) && validRefName(name) }

// headTarget returns the upstream's default branch: HEAD's symref target
// when it is a branch; without symref, the branch HEAD's hash matches
// (current, main and master first, then by name); "" when unknown.
func (ls *listing) headTarget(current string) string {
	if ls.head != "" {
		if strings.HasPrefix(ls.head, "refs/heads/") && validRefName(ls.head) {
			return ls.head
		}
		return ""
	}
	if ls.headHash == nil {
		return ""
	}
	ls.fill()
	for _, cand := range []string{current, "refs/heads/main", "refs/heads/master"} {
		if h, ok := ls.refs[cand]; ok && h == *ls.headHash && strings.HasPrefix(cand, "refs/heads/") {
			return cand
		}
	}
	best := ""
	for name, h := range ls.refs {
		if h == *ls.headHash && strings.HasPrefix(name, "refs/heads/") && validRefName(name) && (best == "" || name < best) {
			best = name
		}
	}
	return best
}

// fill puts the refs of matched into refs (see listing.matched).
func (ls *listing) fill() {
	if ls.matched == nil {
		return
	}
	for _, r := range ls.matched.All() {
		if !r.Symbolic() && InNamespaces(r.Name) {
			ls.refs[r.Name] = r.Hash
		}
	}
	ls.matched = nil
}

// same reports whether the advertised refs in the namespaces equal the
// direct refs of t.
func (ls *listing) same(t *refs.Table) bool {
	if ls.matched != nil && ls.matched == t {
		return true
	}
	ls.fill()
	n := 0
	for _, r := range t.All() {
		if r.Symbolic() || !InNamespaces(r.Name) {
			continue
		}
		n++
		if h, ok := ls.refs[r.Name]; !ok || h != r.Hash {
			return false
		}
	}
	// Every ref of t was found; the listing holds no other unless it has
	// more refs in the namespaces. (A ref git would refuse makes the
	// count differ; Sync then finds no change and still writes nothing.)
	for name := range ls.refs {
		if InNamespaces(name) {
			if n--; n < 0 {
				return false
			}
		}
	}
	return n == 0
}

// table builds the mirror's table from the listing: the wanted refs and
// HEAD pointing at head ("": old's HEAD, if any).
func (ls *listing) table(head string, old *refs.Table) *refs.Table {
	ls.fill()
	list := make([]refs.Ref, 0, len(ls.refs)+1)
	switch {
	case head != "":
		list = append(list, refs.Ref{Name: refs.HEAD, Target: head})
	default:
		if r, ok := old.Ref(refs.HEAD); ok {
			list = append(list, r)
		}
	}
	for name, h := range ls.refs {
		if wanted(name) {
			list = append(list, refs.Ref{Name: name, Hash: h})
		}
	}
	// Names are unique (map keys, and HEAD is not in the namespaces): an
	// unstable sort will do, and is much faster than NewTable's stable one
	// at 100,000 refs.
	slices.SortFunc(list, func(a, b refs.Ref) int { return strings.Compare(a.Name, b.Name) })
	return refs.NewSortedTable(list)
}

// peel returns the peeled values for packed-refs after changes (every
// ref of t when changes is nil): prev, with the entries of the changed
// refs computed again from the objects themselves, never taken from the
// upstream's advertisement. A ref that names an annotated tag peels to
// the first object down its chain of tags that is not a tag; np (nil when
// nothing was fetched) tells the types of the received tips and what the
// received tags point at without a read, other objects are read from the
// store. prev is not modified.
func (m *Mirror) peel(t *refs.Table, changes []refs.Change, prev map[string]plumbing.Hash, np *newPack) map[string]plumbing.Hash {
	out := maps.Clone(prev)
	if out == nil {
		out = map[string]plumbing.Hash{}
	}
	set := func(name string, h plumbing.Hash) {
		delete(out, name)
		if p, ok := m.objs.peel(h, np); ok {
			out[name] = p
		}
	}
	if changes == nil {
		for _, r := range t.All() {
			if !r.Symbolic() {
				set(r.Name, r.Hash)
			}
		}
		return out
	}
	for _, c := range changes {
		if c.Kind == refs.Deleted {
			delete(out, c.Ref)
			continue
		}
		set(c.Ref, c.New)
	}
	return out
}
