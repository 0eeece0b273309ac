// Package registry holds the repositories stackd serves and the current view
// snapshot of each.
//
// A snapshot is published atomically (an atomic pointer swap): a reader sees
// the previous snapshot or the new one, never a mix. Publishing a snapshot
// whose content equals the current one keeps the current version, so the
// version counter (and the ETag) only moves when the view really changed.
package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/view"
)

// Errors returned by Add.
var (
	ErrDuplicateID       = errors.New("a repository with this id already exists")
	ErrDuplicateURL      = errors.New("a repository with this URL already exists")
	ErrDuplicateFullName = errors.New("a repository with this full name already exists")
)

// Origin says where a repository was declared, which decides its
// lifecycle: only repositories onboarded through the API can be removed
// through it.
type Origin string

// The origins.
const (
	// OriginLocal: the operator's working repository (--cwd).
	OriginLocal Origin = "local"
	// OriginConfig: a mirror declared in the config file.
	OriginConfig Origin = "config"
	// OriginAPI: a mirror onboarded through POST /api/v1/repos (stored).
	OriginAPI Origin = "api"
)

// Repo is one served repository. Its kind is decided once, here, by the
// constructor that creates its Source (see package source): NewLocal makes
// a source that can only re-read the working repository, NewMirror one that
// fetches a mirror under the data directory.
type Repo struct {
	ID       string
	Kind     gen.RepoKind
	Origin   Origin
	Remote   string // redacted upstream URL ("" if none)
	URL      string // the mirror's upstream URL as configured (may hold credentials; never log it)
	FullName string // owner/name, lower-case, for webhook matching ("" if unknown)
	Trunk    string // configured trunk ("" = detect)
	// AddedBy is who onboarded it through the API ("": nobody known; see
	// VisibleTo).
	AddedBy Owner

	src   source.Source
	mu    sync.Mutex // serialises Publish
	snap  atomic.Pointer[view.Snapshot]
	ready atomic.Bool
	// full builds the records of a hollow snapshot again (SetFull);
	// guarded by mu.
	full func(context.Context) (*view.Snapshot, error)
}

// NewLocal describes the operator's working repository. good is the file,
// in stackd's data directory, that keeps the refs of its last good view
// ("": none is kept; see source.Local).
func NewLocal(id string, wt *gitrepo.Worktree, trunk, remote, good string) *Repo {
	r := &Repo{ID: id, Kind: gen.Local, Origin: OriginLocal, Trunk: trunk, Remote: remote, src: source.NewLocal(wt, good)}
	r.snap.Store(view.Empty(r.Input()))
	return r
}

// MirrorSpec describes a managed mirror.
type MirrorSpec struct {
	ID       string
	Config   mirror.Config // upstream URL (may hold credentials), auth
	FullName string
	Trunk    string
	Origin   Origin // OriginConfig or OriginAPI
	// AddedBy is who onboarded it (OriginAPI).
	AddedBy Owner
	// Shared: other processes (replicas sharing the data directory)
	// share the mirror (source.NewSharedMirror).
	Shared bool
}

// NewMirror describes the managed mirror spec.ID under root. Nothing is
// cloned or fetched until its first refresh.
func NewMirror(root *mirror.Root, spec MirrorSpec) *Repo {
	src := source.NewMirror(root, spec.ID, spec.Config)
	if spec.Shared {
		src = source.NewSharedMirror(root, spec.ID, spec.Config)
	}
	r := &Repo{
		ID: spec.ID, Kind: gen.Mirror, Origin: spec.Origin, URL: spec.Config.URL, Remote: redact.URL(spec.Config.URL),
		FullName: strings.ToLower(spec.FullName), Trunk: spec.Trunk, AddedBy: spec.AddedBy,
		src: src,
	}
	r.snap.Store(view.Empty(r.Input()))
	return r
}

// Source is what a refresh of this repository may do.
func (r *Repo) Source() source.Source { return r.src }

// Input is what view.Build needs to know about this repository. The
// remote it shows is redact.PublicRemote's: none for a filesystem path or
// a file:// URL.
func (r *Repo) Input() view.Input {
	return view.Input{RepoID: r.ID, Kind: r.Kind, Trunk: r.Trunk, Remote: redact.PublicRemote(r.Remote)}
}

// Snapshot returns the current snapshot (never nil).
func (r *Repo) Snapshot() *view.Snapshot { return r.snap.Load() }

// ErrNoFull: the snapshot is hollow and nothing can build its records
// (no SetFull: the repository is being removed).
var ErrNoFull = errors.New("registry: the view's records are not kept and cannot be built")

// SetFull sets how Full builds the records of a hollow snapshot (the
// repository's refresher).
func (r *Repo) SetFull(f func(context.Context) (*view.Snapshot, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.full = f
}

// Full returns the current snapshot with its records: the current one
// unless it is hollow (view.Snapshot.Hollow), else the full snapshot of
// the same content that SetFull's function builds (which makes it
// current). Read handlers that need more than the view's bytes use it.
func (r *Repo) Full(ctx context.Context) (*view.Snapshot, error) {
	s := r.Snapshot()
	if !s.Hollow() {
		return s, nil
	}
	r.mu.Lock()
	f := r.full
	r.mu.Unlock()
	if f == nil {
		return nil, ErrNoFull
	}
	return f(ctx)
}

// Hollow makes the hollow copy of s current, when s still is, and reports
// whether it did. Readers holding s keep it.
func (r *Repo) Hollow(s *view.Snapshot) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap.Load() != s || s.Hollow() {
		return false
	}
	r.snap.Store(s.Hollowed())
	return true
}

// Fill makes full, a snapshot of the same content as the hollow snapshot
// h, current in h's place at h's version and build time, when h is still
// current; it returns the snapshot now current (a full one unless another
// hollow copy replaced it meanwhile) and whether it was Fill's.
func (r *Repo) Fill(h, full *view.Snapshot) (*view.Snapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snap.Load()
	if cur != h || full.ContentHash() != h.ContentHash() {
		return cur, false
	}
	next := full.WithVersion(h.Version(), h.BuiltAt())
	next.Prepare()
	r.snap.Store(next)
	return next, true
}

// Ready reports whether a first refresh has finished (successfully or not).
func (r *Repo) Ready() bool { return r.ready.Load() }

// MarkReady records that a first refresh has finished.
func (r *Repo) MarkReady() { r.ready.Store(true) }

// Publish makes s the current snapshot unless its content equals the current
// one. It returns the snapshot now current and whether it changed. The new
// snapshot's bytes are made before readers can see it.
func (r *Repo) Publish(s *view.Snapshot, now time.Time) (*view.Snapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snap.Load()
	if cur.Version() > 0 && cur.ContentHash() == s.ContentHash() {
		return cur, false
	}
	next := s.WithVersion(cur.Version()+1, now)
	next.Prepare()
	r.snap.Store(next)
	return next, true
}

// PublishAt makes s the current snapshot as version v built at builtAt:
// the version another replica published for it (replicas that share a
// database serve one version for one content, with the same bytes). It
// never goes back: a v below the current version changes nothing, and
// so does the current version with the same content. It returns the
// snapshot now current and whether it changed.
func (r *Repo) PublishAt(s *view.Snapshot, v int64, builtAt time.Time) (*view.Snapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snap.Load()
	if v <= 0 || v < cur.Version() || v == cur.Version() && cur.ContentHash() == s.ContentHash() {
		return cur, false
	}
	next := s.WithVersion(v, builtAt)
	next.Prepare()
	r.snap.Store(next)
	return next, true
}

// Registry is the set of served repositories, safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	byID  map[string]*Repo
	order []string
}

// New returns an empty registry.
func New() *Registry { return &Registry{byID: map[string]*Repo{}} }

// Add registers r. Ids, mirror URLs and full names are unique, compared
// case-insensitively.
func (g *Registry) Add(r *Repo) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.checkLocked(r.ID, r.URL, r.FullName); err != nil {
		return err
	}
	g.byID[strings.ToLower(r.ID)] = r
	g.order = append(g.order, r.ID)
	sort.Strings(g.order)
	return nil
}

// Check reports the error Add would return for a repository with this id,
// upstream URL and full name, without adding anything.
func (g *Registry) Check(id, url, fullName string) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.checkLocked(id, url, fullName)
}

func (g *Registry) checkLocked(id, url, fullName string) error {
	if _, ok := g.byID[strings.ToLower(id)]; ok {
		return fmt.Errorf("%w: %q", ErrDuplicateID, id)
	}
	fullName = strings.ToLower(strings.TrimSpace(fullName))
	want := ""
	if url != "" {
		want = normalizeURL(url)
	}
	for _, other := range g.byID {
		if want != "" && other.URL != "" && normalizeURL(other.URL) == want {
			return fmt.Errorf("%w: repository %q", ErrDuplicateURL, other.ID)
		}
		if fullName != "" && other.FullName == fullName {
			return fmt.Errorf("%w: %q is repository %q's", ErrDuplicateFullName, fullName, other.ID)
		}
	}
	return nil
}

// Remove forgets the repository r, if it is still the one registered
// under its id (a repository added again under the same id is kept).
func (g *Registry) Remove(r *Repo) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byID[strings.ToLower(r.ID)] != r {
		return
	}
	id := r.ID
	delete(g.byID, strings.ToLower(id))
	for i, v := range g.order {
		if v == id {
			g.order = append(g.order[:i], g.order[i+1:]...)
			break
		}
	}
}

// Get returns the repository with this id (case-insensitive).
func (g *Registry) Get(id string) (*Repo, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	r, ok := g.byID[strings.ToLower(id)]
	return r, ok
}

// List returns every repository, ordered by id.
func (g *Registry) List() []*Repo {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]*Repo, 0, len(g.order))
	for _, id := range g.order {
		out = append(out, g.byID[strings.ToLower(id)])
	}
	return out
}

// ByFullName finds a mirror by its owner/name, case-insensitively.
func (g *Registry) ByFullName(fullName string) (*Repo, bool) {
	want := strings.ToLower(strings.TrimSpace(fullName))
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, r := range g.byID {
		if r.FullName != "" && r.FullName == want {
			return r, true
		}
	}
	return nil, false
}

// normalizeURL makes two spellings of one remote compare equal: case, a
// trailing slash and a trailing .git do not matter.
func normalizeURL(u string) string {
	u = strings.ToLower(strings.TrimSpace(redact.URL(u)))
	u = strings.TrimSuffix(u, "/")
	u = strings.TrimSuffix(u, ".git")
	return u
}
