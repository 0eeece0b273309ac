// Package mirror maintains managed mirrors: bare clones of remote git
// repositories that stackd owns and refreshes. All git work is done with
// go-git; no git binary is run (except by go-git's own file:// transport,
// which is only reachable with Config.AllowLocal).
//
// A mirror holds exactly three ref namespaces of its upstream,
// refs/heads/*, refs/stackit/* and refs/branch-metadata/*, fetched with
// force and prune so that they track the upstream exactly. Tags,
// refs/remotes/* and every other namespace are never fetched. HEAD of the
// bare repository follows the upstream's default branch when the upstream
// advertises it.
//
// # Concurrency
//
// The caller guarantees that at most one Clone or Fetch runs at a time for
// a given directory. RemoteRefs, Changed, Repository, Dir and URL may be
// called concurrently with each other and with a Fetch. go-git writes a
// fetched pack (and its index) to a temporary file and renames it into
// place before any ref is updated, so refs only ever point at complete
// objects, also when a Fetch is cancelled or fails midway; the next Fetch
// starts from the old refs and succeeds. (go-git rewrites loose ref files
// in place, so a reader racing a Fetch may transiently fail to read a ref
// that is being updated; readers should retry or build views between
// fetches.)
//
// # Errors
//
// No returned error contains credentials: every message is passed through
// package redact, and passwords and tokens known from the Config are
// masked as well. Errors wrap, for errors.Is and errors.As:
//
//   - ErrBadURL, ErrLocalRemote: the configured URL is refused;
//   - ErrExists: Clone into an existing directory;
//   - context.Canceled / context.DeadlineExceeded: the context ended;
//   - *FetchError (also errors.Is(err, ErrFetch)): the remote or the
//     transport failed; its message is the sanitized git error text,
//     suitable for a 502 answer.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/stackd/stackd/impl/redact"
)

// RemoteName is the name of the single remote of a mirror.
const RemoteName = "origin"

// Namespaces are the ref prefixes a mirror holds.
var Namespaces = []string{"refs/heads/", "refs/stackit/", "refs/branch-metadata/"}

// refSpecs maps every namespace onto itself, forced.
var refSpecs = []config.RefSpec{
	"+refs/heads/*:refs/heads/*",
	"+refs/stackit/*:refs/stackit/*",
	"+refs/branch-metadata/*:refs/branch-metadata/*",
}

var (
	// ErrBadURL reports a remote URL that cannot be parsed or uses a
	// scheme that is not allowed.
	ErrBadURL = errors.New("bad remote URL")
	// ErrLocalRemote reports a file:// URL or a plain path while local
	// remotes are disabled.
	ErrLocalRemote = errors.New("local remotes are disabled")
	// ErrExists reports a Clone into a directory that already exists.
	ErrExists = errors.New("mirror directory already exists")
	// ErrFetch matches (via errors.Is) every *FetchError.
	ErrFetch = errors.New("fetch from remote failed")
)

// FetchError is a failure of the remote or of the transport (unreachable
// host, authentication, missing repository, protocol error). Its message
// is sanitized and safe to show to API clients.
type FetchError struct {
	// Op is the operation that failed: "fetch" (Clone, Fetch) or
	// "ls-remote" (RemoteRefs, Changed).
	Op string
	// URL is the redacted remote URL.
	URL string
	// Msg is the sanitized error text from go-git.
	Msg string
	// kind is a credential-free go-git sentinel when one is recognised
	// (for example transport.ErrAuthenticationRequired), else nil.
	kind error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("mirror: %s %s: %s", e.Op, e.URL, e.Msg)
}

// Unwrap exposes ErrFetch and, when recognised, the go-git transport
// sentinel (transport.ErrRepositoryNotFound, ErrAuthenticationRequired,
// ErrAuthorizationFailed, ErrInvalidAuthMethod, ErrEmptyRemoteRepository).
// The raw go-git error is deliberately not exposed: its text may carry
// credentials.
func (e *FetchError) Unwrap() []error {
	if e.kind == nil {
		return []error{ErrFetch}
	}
	return []error{ErrFetch, e.kind}
}

var transportSentinels = []error{
	transport.ErrRepositoryNotFound,
	transport.ErrEmptyRemoteRepository,
	transport.ErrAuthenticationRequired,
	transport.ErrAuthorizationFailed,
	transport.ErrInvalidAuthMethod,
}

// ValidateURL checks that raw is a remote URL a mirror may use.
//
// Always allowed: https://, ssh:// (and the scp-like form user@host:path)
// and git://, each with a non-empty host. Plain http:// is refused unless
// allowLocal is set: credentials and content would travel in clear text,
// and the only legitimate use is a test or development server on loopback.
// file:// URLs and plain paths are allowed only with allowLocal (else
// ErrLocalRemote). Raw whitespace and control characters are refused
// (percent-encode them). Everything else wraps ErrBadURL. URLs are classified
// exactly as go-git classifies them, so what is validated is what is
// fetched.
func ValidateURL(raw string, allowLocal bool) error {
	shown := redact.URL(raw)
	if strings.TrimSpace(raw) == "" {
		return fmt.Errorf("%w: empty", ErrBadURL)
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("%w: whitespace or control character in %q (percent-encode it)", ErrBadURL, shown)
	}
	if strings.HasPrefix(raw, "-") {
		return fmt.Errorf("%w: %q starts with '-'", ErrBadURL, shown)
	}
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		// The parse error echoes the URL; do not pass it on.
		return fmt.Errorf("%w: cannot parse %q", ErrBadURL, shown)
	}
	switch strings.ToLower(ep.Protocol) {
	case "https", "ssh", "git":
	case "http":
		if !allowLocal {
			return fmt.Errorf("%w: plain http is only allowed with local remotes enabled: %q", ErrBadURL, shown)
		}
	case "file":
		if !allowLocal {
			return fmt.Errorf("%w: %q", ErrLocalRemote, shown)
		}
		return nil
	default:
		return fmt.Errorf("%w: unsupported scheme %q in %q", ErrBadURL, ep.Protocol, shown)
	}
	if ep.Host == "" || strings.HasPrefix(ep.Host, "-") {
		return fmt.Errorf("%w: missing or invalid host in %q", ErrBadURL, shown)
	}
	return nil
}

// Config describes a mirror.
type Config struct {
	// Dir is the bare repository directory. Its parent must exist.
	Dir string
	// URL is the upstream. It may carry credentials; they are never
	// written to disk by this package nor shown in errors.
	URL string
	// Auth is nil or, for https, a *http.BasicAuth (from
	// github.com/go-git/go-git/v5/plumbing/transport/http).
	Auth transport.AuthMethod
	// AllowLocal permits file:// URLs, plain paths and plain http.
	AllowLocal bool
}

// Mirror is a managed bare clone. See the package documentation for the
// concurrency contract.
type Mirror struct {
	dir     string
	url     string // raw, may hold credentials; never shown
	shown   string // redacted
	auth    transport.AuthMethod
	secrets []string
}

// Change classifies a RefUpdate.
type Change string

// The possible changes of a ref.
const (
	Created Change = "created"
	Updated Change = "updated"
	// Forced means the old commit is not an ancestor of the new one: the
	// upstream rewrote the ref (force-push).
	Forced Change = "forced"
	// Deleted means the ref disappeared upstream and was pruned.
	Deleted Change = "deleted"
)

// RefUpdate is the change of one local ref by a Fetch. OldSha is "" for
// created refs and NewSha is "" for deleted ones.
type RefUpdate struct {
	Ref    string
	OldSha string
	NewSha string
	Change Change
}

func newMirror(cfg Config) (*Mirror, error) {
	if err := ValidateURL(cfg.URL, cfg.AllowLocal); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, errors.New("mirror: empty directory")
	}
	return &Mirror{
		dir:     cfg.Dir,
		url:     cfg.URL,
		shown:   redact.URL(cfg.URL),
		auth:    cfg.Auth,
		secrets: secretsOf(cfg),
	}, nil
}

// secretsOf lists the credential strings of cfg that must never appear in
// an error message, in the forms they might be printed.
func secretsOf(cfg Config) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if esc := url.QueryEscape(s); esc != s {
			out = append(out, esc)
		}
		if esc := url.PathEscape(s); esc != s {
			out = append(out, esc)
		}
	}
	if ba, ok := cfg.Auth.(*githttp.BasicAuth); ok && ba != nil {
		add(ba.Password)
	}
	if ep, err := transport.NewEndpoint(cfg.URL); err == nil {
		add(ep.Password)
		// A user without password on http(s) is usually a token.
		if p := strings.ToLower(ep.Protocol); ep.Password == "" && (p == "https" || p == "http") {
			add(ep.User)
		}
	}
	// Longest first, so that a secret containing another is masked whole.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// sanitize returns err's message without credentials.
func (m *Mirror) sanitize(err error) string {
	s := redact.Error(err)
	for _, sec := range m.secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	return s
}

// remoteError converts a go-git failure into the package's error types.
func (m *Mirror) remoteError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("mirror: %s %s: %w", op, m.shown, ctxErr)
	}
	fe := &FetchError{Op: op, URL: m.shown, Msg: m.sanitize(err)}
	for _, s := range transportSentinels {
		if errors.Is(err, s) {
			fe.kind = s
			break
		}
	}
	return fe
}

// Clone creates a new mirror in cfg.Dir: it initialises a bare repository
// in a temporary directory next to cfg.Dir, adds the remote "origin",
// fetches, and renames the result into place. It refuses (ErrExists) if
// cfg.Dir exists. A failed or cancelled Clone leaves neither cfg.Dir nor
// the temporary directory behind. The returned updates list every ref as
// created.
func Clone(ctx context.Context, cfg Config) (*Mirror, []RefUpdate, error) {
	m, err := newMirror(cfg)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Lstat(cfg.Dir); err == nil {
		return nil, nil, fmt.Errorf("mirror: clone into %s: %w", cfg.Dir, ErrExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("mirror: clone: %w", err)
	}
	parent, base := filepath.Split(filepath.Clean(cfg.Dir))
	tmp, err := os.MkdirTemp(parent, "."+base+".clone-")
	if err != nil {
		return nil, nil, fmt.Errorf("mirror: clone: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()

	repo, err := git.PlainInit(tmp, true)
	if err != nil {
		return nil, nil, fmt.Errorf("mirror: init %s: %w", tmp, err)
	}
	// The stored URL is redacted: credentials never reach the disk. Every
	// network operation passes the real URL explicitly.
	if _, err := repo.CreateRemote(&config.RemoteConfig{
		Name:  RemoteName,
		URLs:  []string{m.shown},
		Fetch: refSpecs,
	}); err != nil {
		return nil, nil, fmt.Errorf("mirror: add remote: %w", err)
	}

	m.dir = tmp
	updates, err := m.Fetch(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("mirror: clone %s: %w", m.shown, err)
	}
	if _, err := os.Lstat(cfg.Dir); err == nil {
		return nil, nil, fmt.Errorf("mirror: clone into %s: %w", cfg.Dir, ErrExists)
	}
	if err := os.Rename(tmp, cfg.Dir); err != nil {
		return nil, nil, fmt.Errorf("mirror: clone: %w", err)
	}
	done = true
	m.dir = cfg.Dir
	return m, updates, nil
}

// Open returns the existing mirror in cfg.Dir.
func Open(cfg Config) (*Mirror, error) {
	m, err := newMirror(cfg)
	if err != nil {
		return nil, err
	}
	repo, err := git.PlainOpen(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("mirror: open %s: %w", cfg.Dir, err)
	}
	if _, err := repo.Remote(RemoteName); err != nil {
		return nil, fmt.Errorf("mirror: open %s: %w", cfg.Dir, err)
	}
	return m, nil
}

// Dir returns the bare repository directory.
func (m *Mirror) Dir() string { return m.dir }

// URL returns the upstream URL without credentials.
func (m *Mirror) URL() string { return m.shown }

// Repository returns a fresh go-git handle on the mirror, for reading.
func (m *Mirror) Repository() (*git.Repository, error) {
	repo, err := git.PlainOpen(m.dir)
	if err != nil {
		return nil, fmt.Errorf("mirror: open %s: %w", m.dir, err)
	}
	return repo, nil
}

func (m *Mirror) remote() (*git.Repository, *git.Remote, error) {
	repo, err := m.Repository()
	if err != nil {
		return nil, nil, err
	}
	rem, err := repo.Remote(RemoteName)
	if err != nil {
		return nil, nil, fmt.Errorf("mirror: %s: %w", m.dir, err)
	}
	return repo, rem, nil
}

func inNamespaces(name string) bool {
	for _, p := range Namespaces {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// list runs ls-remote; op names the caller's operation in errors. It
// returns the refs in the mirrored namespaces and
// the target of the remote's HEAD ("" if not advertised). An empty remote
// yields an empty map.
func (m *Mirror) list(ctx context.Context, op string) (map[string]plumbing.Hash, plumbing.ReferenceName, error) {
	// ListContext always uses the stored (redacted) URL, so list through a
	// detached remote carrying the real one.
	detached := git.NewRemote(nil, &config.RemoteConfig{Name: RemoteName, URLs: []string{m.url}})
	refs, err := detached.ListContext(ctx, &git.ListOptions{Auth: m.auth, PeelingOption: git.IgnorePeeled})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) && ctx.Err() == nil {
		return map[string]plumbing.Hash{}, "", nil
	}
	if err != nil {
		return nil, "", m.remoteError(ctx, op, err)
	}
	out := make(map[string]plumbing.Hash)
	var head plumbing.ReferenceName
	for _, r := range refs {
		switch {
		case r.Name() == plumbing.HEAD && r.Type() == plumbing.SymbolicReference:
			head = r.Target()
		case r.Type() == plumbing.HashReference && inNamespaces(r.Name().String()):
			out[r.Name().String()] = r.Hash()
		}
	}
	return out, head, nil
}

// RemoteRefs lists the upstream's refs in the mirrored namespaces.
func (m *Mirror) RemoteRefs(ctx context.Context) (map[string]plumbing.Hash, error) {
	refs, _, err := m.list(ctx, "ls-remote")
	return refs, err
}

// localRefs returns the mirror's refs in the mirrored namespaces.
func localRefs(repo *git.Repository) (map[string]plumbing.Hash, error) {
	iter, err := repo.References()
	if err != nil {
		return nil, fmt.Errorf("mirror: list refs: %w", err)
	}
	out := make(map[string]plumbing.Hash)
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() == plumbing.HashReference && inNamespaces(r.Name().String()) {
			out[r.Name().String()] = r.Hash()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mirror: list refs: %w", err)
	}
	return out, nil
}

// Changed reports whether the upstream's refs in the mirrored namespaces
// differ from the mirror's, so that a polling loop can skip needless
// fetches.
func (m *Mirror) Changed(ctx context.Context) (bool, error) {
	repo, err := m.Repository()
	if err != nil {
		return false, err
	}
	remote, _, err := m.list(ctx, "ls-remote")
	if err != nil {
		return false, err
	}
	local, err := localRefs(repo)
	if err != nil {
		return false, err
	}
	return !sameRefs(local, remote), nil
}

func sameRefs(a, b map[string]plumbing.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Fetch brings the mirror up to date with force and prune and returns the
// refs that changed, sorted by name (empty, not an error, when nothing
// changed). The caller must not run two Fetches of one mirror at once.
func (m *Mirror) Fetch(ctx context.Context) ([]RefUpdate, error) {
	repo, rem, err := m.remote()
	if err != nil {
		return nil, err
	}
	m.removeTempPacks()
	before, err := localRefs(repo)
	if err != nil {
		return nil, err
	}
	remote, head, err := m.list(ctx, "fetch")
	if err != nil {
		return nil, err
	}

	if len(remote) == 0 {
		// Nothing to transfer (go-git refuses to fetch from an empty
		// repository); prune by hand.
		for name := range before {
			if err := repo.Storer.RemoveReference(plumbing.ReferenceName(name)); err != nil {
				return nil, fmt.Errorf("mirror: prune %s: %w", name, err)
			}
		}
	} else {
		err = rem.FetchContext(ctx, &git.FetchOptions{
			RemoteName: RemoteName,
			RemoteURL:  m.url,
			RefSpecs:   refSpecs,
			Auth:       m.auth,
			Tags:       git.NoTags,
			Force:      true,
			Prune:      true,
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			m.removeTempPacks()
			return nil, m.remoteError(ctx, "fetch", err)
		}
	}

	after, err := localRefs(repo)
	if err != nil {
		return nil, err
	}
	if err := m.setHead(repo, head, after); err != nil {
		return nil, err
	}
	return diff(repo, before, after), nil
}

// setHead points HEAD at the remote's default branch when it is known and
// present in the mirror.
func (m *Mirror) setHead(repo *git.Repository, target plumbing.ReferenceName, refs map[string]plumbing.Hash) error {
	if !target.IsBranch() {
		return nil
	}
	if _, ok := refs[target.String()]; !ok {
		return nil
	}
	cur, err := repo.Storer.Reference(plumbing.HEAD)
	if err == nil && cur.Type() == plumbing.SymbolicReference && cur.Target() == target {
		return nil
	}
	if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, target)); err != nil {
		return fmt.Errorf("mirror: set HEAD: %w", err)
	}
	return nil
}

// removeTempPacks deletes the temporary pack files go-git leaves behind
// when a transfer is interrupted. Safe because fetches are serialised.
func (m *Mirror) removeTempPacks() {
	dir := filepath.Join(m.dir, "objects", "pack")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "tmp_pack_") || strings.HasPrefix(n, "tmp_obj_") {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}

// diff computes the RefUpdates between two ref snapshots, sorted by ref.
func diff(repo *git.Repository, before, after map[string]plumbing.Hash) []RefUpdate {
	out := []RefUpdate{}
	for name, old := range before {
		nw, ok := after[name]
		switch {
		case !ok:
			out = append(out, RefUpdate{Ref: name, OldSha: old.String(), Change: Deleted})
		case nw != old:
			out = append(out, RefUpdate{Ref: name, OldSha: old.String(), NewSha: nw.String(), Change: classify(repo, old, nw)})
		}
	}
	for name, nw := range after {
		if _, ok := before[name]; !ok {
			out = append(out, RefUpdate{Ref: name, NewSha: nw.String(), Change: Created})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out
}

// classify tells a fast-forward (Updated) from a rewrite (Forced). Refs
// that do not point at commits (branch metadata may be blobs) have no
// ancestry; replacing them is an ordinary Updated.
func classify(repo *git.Repository, old, nw plumbing.Hash) Change {
	oldC, okOld := commit(repo, old)
	newC, okNew := commit(repo, nw)
	if !okOld || !okNew {
		return Updated
	}
	if ok, err := oldC.IsAncestor(newC); err != nil || !ok {
		return Forced
	}
	return Updated
}

func commit(repo *git.Repository, h plumbing.Hash) (*object.Commit, bool) {
	obj, err := repo.Object(plumbing.AnyObject, h)
	if err != nil {
		return nil, false
	}
	c, ok := obj.(*object.Commit)
	return c, ok
}
