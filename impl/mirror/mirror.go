// Package mirror maintains managed mirrors: bare clones of remote git
// repositories that stackd owns and refreshes. All git work is done with
// go-git; no git binary is run (except by go-git's own file:// transport,
// which is only reachable with Config.AllowLocal). Where a mirror may
// connect, and with which credentials, is decided by its Config (see
// Transports below).
//
// # Where mirrors live, and what Open accepts
//
// Mirrors exist only under a [Root], <data-dir>/mirrors: the mirror with
// id X is the bare repository <root>/X.git (ids are checked by [CheckID],
// so the path never leaves the root). A *Mirror can only be made by
// [Root.Clone] or [Root.Open]. Clone writes a marker file,
// stackd-mirror.json (format version, id, redacted URL), and Open refuses
// with [ErrNotMirror] a symbolic link, a directory that is not a bare
// repository (a checkout with .git, a work tree, core.bare unset), a
// repository without the marker and a marker naming another id: pointing
// stackd at an operator's repository can never fetch into it.
//
// A mirror holds exactly three ref namespaces of its upstream
// ([Namespaces]: refs/heads/*, refs/stackit/*, refs/branch-metadata/*),
// tracking them exactly (forced updates and deletions included), and HEAD,
// a symbolic ref to the upstream's default branch. Tags, refs/remotes/*
// and every other namespace are never fetched.
//
// # Refs in memory, packed on disk
//
// Open reads the refs once (packed-refs, then any loose ref files in the
// namespaces, which git may have written, and HEAD) into an immutable
// [refs.Table]; from then on the table in memory is the mirror's state.
// stackd never writes loose refs: after a Sync it rewrites packed-refs
// once, atomically, with git's lock-file protocol (packed-refs.lock
// created exclusively, sorted and fully peeled, fsynced, renamed over
// packed-refs), deletes the loose files of refs that changed, and rewrites
// HEAD (the same way) only when the default branch moved. A restart reads
// exactly what the last successful Sync wrote.
//
// # Shared mirrors
//
// Replicas of stackd that share a data directory share its mirrors. Each
// opens them with [Root.OpenShared], which only reads; the replicas take
// a cluster-wide lease per mirror (outside this package) around every
// write: [Mirror.Repair] (remove what a writer that died left: lock
// files, temporary packs), [Mirror.Reload] then [Mirror.Sync] (or
// [Root.Clone]). Reload re-reads the refs when packed-refs or HEAD was
// replaced since this Mirror last read or wrote them (a cheap check of
// inode, size and modification time), so a replica never trusts its
// in-memory table across another's writes, and its Sync of what another
// already fetched is one listing that writes nothing. The object store
// lists the packs again when an object is missing and the pack directory
// changed (another replica's pack, or its merge or collection of packs).
//
// # Sync: one listing, then only what changed
//
// [Mirror.Sync] opens one upload-pack session and reads the ref
// advertisement. When the advertised refs in the namespaces and HEAD's
// target equal the table, it closes the session and returns an empty
// [Result]: nothing is written. Otherwise the table is diffed with
// [refs.Diff] (modified refs are refs.Updated; the caller classifies forced
// ones with [refs.Classify]), and in the same session one upload-pack
// request asks for the new tips that are not stored yet (wants) and names
// a small, bounded set of commits the mirror has (haves: the trunk tip,
// the old tips of the changed refs, and a few branch tips written by
// recent Syncs), with neither thin-pack nor include-tag, so that the
// stored pack is self-contained. With no wants (deletions only, or tips
// already stored) no request is sent. Sync is [Mirror.Fetch] then
// [Pending.Commit]; a caller that must check what it serves before it is
// visible (the view build) calls them itself, and [Pending.Abort] when
// the check fails.
//
// # Hostile upstreams: budgets, quarantine, verification
//
// Nothing an upstream sends is trusted. The advertisement is filtered as
// it is read (advert.go): only the refs a mirror keeps reach go-git's
// decoder, within Limits.MaxRefs and MaxRefBytes, and its pkt-lines are
// checked. The pack is read by this package's parser, once, as it
// streams (pack.go): no size or count it declares is used before it is
// checked against what arrived and against the [Limits]; delta chains are
// resolved on all cores within a memory budget (resolve.go); every
// commit, tree and tag is checked as git fsck would, and every object one
// names must be in the pack or already stored (fsck.go, verify.go: git's
// connectivity check); the index is this package's, byte for byte what
// git index-pack writes (ingest.go). A fetched pack is received into a
// quarantine, objects/incoming-* (quarantine.go), which only the pending
// update's Reader reads; Commit moves it into objects/pack and then writes
// the refs, Abort removes it. Over a limit the fetch fails with
// ErrTooLarge, on a check with ErrCorrupt (both also ErrFetch), and the
// mirror is byte for byte what it was. A Sync that fails or is cancelled
// leaves the old refs on disk and in memory and a consistent object store
// (at most an unreferenced complete pack; leftover temporary files and
// quarantines are deleted by the next Sync), and the next Sync reports
// every change since the last successful one.
//
// # Compaction and garbage collection
//
// Every Sync that fetches adds a pack. After it, when there are more than
// maxPacks packs, all but the largest are merged into one (compact); and
// when the packs' total size has reached gcGrowth (1.5) times the size
// recorded in stackd-gc.json after the previous collection (or the
// clone), the store is collected: go-git's revlist.Objects walks
// everything reachable from the refs of the new table and of the table
// before the Sync (so that a Reader made before the Sync, or a replica one
// Sync behind, still reads its tips), the packed refs outside the
// namespaces and any loose ref; unless less than gcMinGarbage (10%) of
// the stored objects is unreachable, those objects are written as one
// new pack (go-git's encoder, indexed by receivePack), each is checked
// against its index, the readers' storage is swapped under the lock, and
// every other pack is deleted (.pack first); then the new size is
// recorded (atomically, as the other files). A repository that only grows
// pays one walk per 50% growth and is never rewritten; one whose branches
// are rewritten all the time (restacks) keeps about two tables' worth of
// objects. A mirror without stackd-gc.json (cloned before collections
// existed) records its size on its next fetch. A no-op Sync never looks
// at any of this. A failed collection leaves a consistent store (at worst
// objects in two packs), does not fail the Sync (Result.GCErr, and a log
// line to Config.Log) and is tried again after the next growth; a
// cancelled one after the next fetch. Collections happen under the
// mirror's write side (Sync, under the repository's lease for a shared
// mirror); other processes reading the mirror find the objects of the
// deleted packs in the new one (see Shared mirrors).
//
// # Clone
//
// [Root.Clone] initialises a bare repository in <root>/.<id>.git.clone-*
// with a config git understands (remote "origin" with the redacted URL,
// the three forced refspecs and tagOpt --no-tags, core.bare), asks for
// every wanted tip in one upload-pack session (no haves), stores the pack
// as received (checked as a fetch's, see above) with its index, writes all
// refs packed in one go, HEAD and the marker, fsyncs, and renames the
// directory into place: [Root.BeginClone] does all but the rename, which
// [PendingClone.Commit] does (the temporary directory is the clone's
// quarantine). A failed or cancelled Clone leaves nothing behind;
// [Root.SweepTemp] removes what a crash left.
//
// # Transports, and where a mirror may connect
//
// Every session starts from [Config.Check]: the URL's syntax and scheme
// (https, http, ssh, git; file:// and paths only with AllowLocal), plain
// http only with AllowPrivate, the host within AllowedHosts when that is
// set, an IP literal host only when it is public (or AllowPrivate), ssh
// only with a private key. Then every connection is checked where it is
// made, after DNS resolution, with package egress: an address that is not
// public (loopback, RFC 1918, CGNAT, link-local, unique-local, multicast,
// unspecified, reserved) is refused before connect(2) unless
// AllowPrivate is set, so a name that resolves elsewhere at fetch time
// than when it was checked gains nothing.
//
//   - http(s): go-git's http transport over an http.Client of the mirror's
//     own (no global client.InstallProtocol): its dialer carries the
//     egress Control hook; proxies from the environment are not used (a
//     proxy would pick the address where the check cannot see it); TLS
//     trusts Config.RootCAs or the system roots; go-git follows redirects
//     of the first request only, each target within AllowedHosts.
//     Credentials (Config.Auth, or userinfo in the URL) are bound to the
//     origin (scheme, host, port) of the configured URL: the RoundTripper
//     strips them from any request to another origin. Answers outside 2xx
//     are read through a limit of 64 KiB (go-git reads error bodies whole)
//     and the connection is then dropped.
//   - git://: gitSession, the same protocol messages from go-git's packp
//     package over a buffered connection that honours the context (go-git's
//     git:// session reads the advertisement unbuffered through a goroutine
//     per read, which tripled the cost of a no-op Sync at 10,000 refs),
//     dialed with the egress dialer.
//   - ssh: go-git's ssh transport cannot take a dialer, so the host name is
//     resolved here, the addresses checked, and the session opened to a
//     checked address as a literal; the host key is still verified for the
//     URL's host name (known_hosts, SSH_KNOWN_HOSTS). The only credential
//     is Config.Auth, a *ssh.PublicKeys: the ssh agent is never used, and
//     an ssh remote without a key is refused (ErrSSHKey). A SOCKS proxy
//     from ALL_PROXY, which go-git honours, is only ever given the checked
//     address. (go-git still looks the dialed literal up in ~/.ssh/config:
//     a "Host *" block with a Hostname would redirect every ssh session.)
//   - file:// (AllowLocal only): go-git's file transport, which runs the
//     git binary.
//
// # Concurrency
//
// Callers serialise Clone, Sync, Reload, Repair, Close and Remove of one
// mirror. Refs,
// Reader, Dir and URL may be called at any time, also during a Sync. A
// [Reader] is a fixed table (the one current when it was made) over the
// mirror's object store. Objects leave the store only in a collection,
// which keeps everything reachable from the current table and the one
// before the Sync that ran it, so a Reader made before a Sync keeps
// working, unchanged, during and after it (until a later Sync collects). The object store is one long-lived go-git filesystem storage per
// mirror (pack indexes loaded once, pack files kept open); go-git's
// storage is not safe for concurrent use, so every access goes through one
// mutex, objects leave it fully read, and a Sync's transfer runs outside
// it except for registering the finished pack.
//
// # Errors
//
// No returned error contains credentials: every message is passed through
// package redact, and passwords and tokens known from the Config are
// masked as well. The URL stored on disk (config, marker) is the redacted
// one; the credentials only live in memory. Errors wrap, for errors.Is and
// errors.As:
//
//   - ErrBadURL: the URL cannot be parsed or has an unsupported scheme;
//   - ErrLocalRemote, ErrPlainHTTP, ErrForbiddenAddress, ErrHostNotAllowed,
//     ErrSSHKey: the remote is refused by policy ([Refused] reports these);
//   - ErrBadID, ErrExists, ErrNoMirror, ErrNotMirror: the id or directory;
//   - ErrLocked: a lock file of another writer (a git process) is present;
//   - context.Canceled / context.DeadlineExceeded: the context ended;
//   - *FetchError (also errors.Is(err, ErrFetch)): the remote or the
//     transport failed (a name that resolved to a refused address
//     included: it then also matches ErrForbiddenAddress). Its message
//     says what failed in this package's words, such as "could not fetch:
//     authentication required (HTTP 401)" or "could not clone: repository
//     not found (HTTP 404)", and is suitable for an API answer; what the
//     upstream said (an error body, a daemon's or ssh server's message)
//     is only in FetchError.Detail, truncated to 512 bytes, which is
//     logged to Config.Log.
package mirror

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"weak"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/egress"
	"github.com/stackd/stackd/impl/refs"
)

// RemoteName is the name of the single remote of a mirror.
const RemoteName = "origin"

// Namespaces are the ref prefixes a mirror holds.
var Namespaces = []string{"refs/heads/", "refs/stackit/", "refs/branch-metadata/"}

// refSpecs maps every namespace onto itself, forced: what git itself would
// fetch with the mirror's stored config.
var refSpecs = []config.RefSpec{
	"+refs/heads/*:refs/heads/*",
	"+refs/stackit/*:refs/stackit/*",
	"+refs/branch-metadata/*:refs/branch-metadata/*",
}

// InNamespaces reports whether ref name is in one of the Namespaces.
func InNamespaces(name string) bool {
	for _, p := range Namespaces {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

const (
	markerFile    = "stackd-mirror.json"
	markerFormat  = 1
	cloneInfix    = ".git.clone-"
	removeInfix   = ".git.remove-"
	defaultBranch = "refs/heads/main"
)

// marker is the content of stackd-mirror.json.
type marker struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	URL    string `json:"url"` // redacted
}

// Config describes the upstream of a mirror and where the mirror may
// connect. The zero value of every policy field is the strict one.
type Config struct {
	// URL is the upstream. It may carry credentials; they are never
	// written to disk by this package nor shown in errors.
	URL string
	// Auth is nil or, for http(s), BasicAuth, sent only to the origin
	// (scheme, host, port) of URL; for ssh it must be SSHKeyFile's: ssh
	// without a key is refused (ErrSSHKey), the ssh agent is never used.
	Auth Credentials
	// AllowLocal permits file:// URLs and plain paths.
	AllowLocal bool
	// AllowPrivate permits connections to addresses that are not public
	// (loopback, RFC 1918, CGNAT, link-local, unique-local, multicast,
	// unspecified, reserved: see egress.Global) and plain http.
	AllowPrivate bool
	// AllowedHosts, when not empty, are the only hosts URL and any http
	// redirect may name.
	AllowedHosts egress.Hosts
	// RootCAs are the roots trusted for https; nil: the system's.
	RootCAs *x509.CertPool
	// Resolver resolves upstream host names; nil: net.DefaultResolver.
	Resolver *net.Resolver
	// Log, when set, receives one line per failed transfer with the
	// sanitized, truncated upstream error (FetchError.Detail).
	Log *slog.Logger
	// Limits bound what one clone or fetch may cost (zero fields: the
	// defaults, DefaultLimits).
	Limits Limits
	// Seen, when set, is called by Clone with every received object that
	// a ref points at (branch tips, metadata blobs) once its id is known,
	// possibly from several goroutines at once, so that the caller can
	// cache what it is about to read without reading it back from disk.
	// content is only valid during the call.
	Seen func(h plumbing.Hash, t plumbing.ObjectType, content []byte)
	// Transfers, when set, counts the upload-pack sessions opened with
	// the upstream and the pack bytes received (package metrics).
	Transfers Transfers
}

// Transfers observes what a mirror transfers (metrics.Transfers).
type Transfers interface {
	// SessionOpened: an upload-pack session with the upstream opened.
	SessionOpened()
	// Received: n more bytes of a pack arrived.
	Received(n int)
}

// Root is the directory that holds the mirrors, <data-dir>/mirrors.
type Root struct {
	path string // absolute, symlinks resolved
}

// NewRoot creates <dataDir>/mirrors (mode 0700) if needed and returns it.
// The root's path is kept with symbolic links resolved.
func NewRoot(dataDir string) (*Root, error) {
	if dataDir == "" {
		return nil, errors.New("mirror: empty data directory")
	}
	p := filepath.Join(dataDir, "mirrors")
	if err := os.MkdirAll(p, 0o700); err != nil {
		return nil, fmt.Errorf("mirror: create root: %w", err)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, fmt.Errorf("mirror: root: %w", err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return nil, fmt.Errorf("mirror: root: %w", err)
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("mirror: root %s is not a directory", real)
	}
	return &Root{path: real}, nil
}

// Path returns the root directory.
func (r *Root) Path() string { return r.path }

// Dir returns the directory of mirror id, <root>/<id>.git, or "" when id
// is not valid (see CheckID).
func (r *Root) Dir(id string) string {
	if CheckID(id) != nil {
		return ""
	}
	return filepath.Join(r.path, id+".git")
}

// Mirror is a managed bare clone, made by Root.Clone or Root.Open. See the
// package documentation for the concurrency contract.
type Mirror struct {
	id    string
	dir   string
	rem   remote
	lim   Limits
	objs  *objectStore
	table atomic.Pointer[refs.Table]

	// Owned by Sync (callers serialise Syncs, Reloads and Repairs).
	peeled map[string]plumbing.Hash // namespace refs that peel (annotated tags)
	extra  []packedRef              // packed refs outside the namespaces, preserved
	loose  map[string]bool          // namespace refs that still have a loose file
	recent []plumbing.Hash          // branch tips written by recent Syncs, newest first
	// disk identifies packed-refs and HEAD as this Mirror last read or
	// wrote them (Reload compares it with the files).
	disk refStamps
	// clean: no temporary pack file or quarantine can be in the mirror
	// (removeTempPacks ran, in Repair or in a Fetch, and no Fetch wrote
	// since): the next Fetch need not list the pack directory. A no-op
	// Fetch keeps it; any other Fetch clears it.
	clean bool
	// expOf is the table whose expectation is exp: worked out once per
	// table, for the listings that compare with it (Fetch only). Weak: a
	// replaced table is not kept for it.
	expOf weak.Pointer[refs.Table]
	exp   expectation
}

// expectation returns expect(t), worked out again only when t is not the
// table of the last call (Fetch only).
func (m *Mirror) expectation(t *refs.Table) expectation {
	if t == nil {
		return expect(nil) // weak.Make(nil) is the zero Pointer
	}
	if w := weak.Make(t); w != m.expOf {
		m.expOf, m.exp = w, expect(t)
	}
	return m.exp
}

// Dir returns the bare repository directory.
func (m *Mirror) Dir() string { return m.dir }

// URL returns the upstream URL without credentials.
func (m *Mirror) URL() string { return m.rem.shown }

// Refs returns the current ref table: refs/heads/*, refs/stackit/*,
// refs/branch-metadata/* and HEAD (symbolic). It is immutable; a Sync
// replaces it.
func (m *Mirror) Refs() *refs.Table { return m.table.Load() }

// Reader returns read-only access to the mirror with the current table.
func (m *Mirror) Reader() *Reader { return &Reader{table: m.table.Load(), objs: m.objs} }

// Close releases the mirror's open pack files. Readers fail with ErrClosed
// afterwards.
func (m *Mirror) Close() error {
	m.rem.close()
	if err := m.objs.close(); err != nil {
		return fmt.Errorf("mirror: close %s: %w", m.id, err)
	}
	return nil
}

// Open returns the existing mirror id. It fails with ErrNoMirror when
// there is none and with ErrNotMirror when the directory is not a mirror
// stackd cloned (see the package documentation). It repairs what an
// interrupted stackd left (see Repair): a mirror opened with Open belongs
// to this process alone. Several processes that share a mirror open it
// with OpenShared instead.
func (r *Root) Open(id string, cfg Config) (*Mirror, error) {
	m, err := r.open(id, cfg)
	if err != nil {
		return nil, err
	}
	if err := m.Repair(); err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

// OpenShared is Open for a mirror that other processes (replicas sharing
// the data directory) may be syncing at the same time: it only reads.
// Repairs and writes wait for the caller to hold the mirror's cluster-wide
// lease: Repair, Sync. Reload re-reads what the others wrote.
func (r *Root) OpenShared(id string, cfg Config) (*Mirror, error) {
	return r.open(id, cfg)
}

func (r *Root) open(id string, cfg Config) (*Mirror, error) {
	if err := CheckID(id); err != nil {
		return nil, fmt.Errorf("mirror: open: %w", err)
	}
	rem, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	dir := r.Dir(id)
	if _, err := checkMirror(dir, id); err != nil {
		return nil, err
	}
	stamps := stampRefs(dir)
	disk, err := readRefs(dir)
	if err != nil {
		return nil, fmt.Errorf("mirror: open %s: %w", id, err)
	}
	m := &Mirror{id: id, dir: dir, rem: rem, lim: cfg.Limits, peeled: disk.peeled, extra: disk.extra, loose: disk.loose, disk: stamps}
	m.table.Store(disk.table)
	m.objs = openObjects(dir)
	return m, nil
}

// Repair removes what a writer that was interrupted (a crash, a kill)
// left in the mirror: lock files (packed-refs.lock, HEAD.lock, ...) and
// the temporary files of a pack transfer; and records the configured
// upstream URL (redacted) in the mirror's config and marker when it
// changed. Only the mirror's one writer may call it: Open does, for a
// mirror of one process; for a shared mirror, the holder of its
// cluster-wide lease, before it syncs. Callers serialise it with Sync.
func (m *Mirror) Repair() error {
	for _, f := range []string{packedRefsFile, "HEAD", "config", markerFile, gcFile} {
		_ = os.Remove(filepath.Join(m.dir, f+lockSuffix))
	}
	removeTempPacks(m.dir)
	m.clean = true
	mk, err := checkMirror(m.dir, m.id)
	if err != nil {
		return err
	}
	if mk.URL != m.rem.shown {
		if err := storeURL(m.dir, m.id, m.rem.shown); err != nil {
			return err
		}
	}
	return nil
}

// Reload re-reads the refs (packed-refs, loose refs, HEAD) when another
// process replaced packed-refs or HEAD since this Mirror last read or
// wrote them, and reports whether the ref table changed. The check is
// cheap (the two files' inode, size and modification time): a Reload
// that finds them as they were reads nothing. Objects another process
// stored are found by the object store by itself (it lists the packs
// again when an object is missing and the pack directory changed); a
// Reload that read new refs also reopens the object store when the pack
// directory changed, which releases packs another process deleted
// (compaction, collection) that this one kept open.
// Callers serialise Reload with Sync.
func (m *Mirror) Reload() (bool, error) {
	stamps := stampRefs(m.dir)
	if stamps == m.disk {
		return false, nil
	}
	disk, err := readRefs(m.dir)
	if err != nil {
		return false, fmt.Errorf("mirror: reload %s: %w", m.id, err)
	}
	old := m.table.Load()
	m.table.Store(disk.table)
	m.peeled, m.extra, m.loose, m.disk = disk.peeled, disk.extra, disk.loose, stamps
	m.objs.follow()
	return !refs.Equal(old, disk.table), nil
}

// checkMirror verifies that dir is a mirror stackd cloned for id.
func checkMirror(dir, id string) (marker, error) {
	var mk marker
	not := func(why string, args ...any) (marker, error) {
		return mk, fmt.Errorf("mirror: open %s: %w: %s", id, ErrNotMirror, fmt.Sprintf(why, args...))
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return mk, fmt.Errorf("mirror: open %s: %w", id, ErrNoMirror)
	case err != nil:
		return mk, fmt.Errorf("mirror: open %s: %w", id, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return not("%s is a symbolic link", dir)
	case !fi.IsDir():
		return not("%s is not a directory", dir)
	}
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
		return not("%s holds .git: a working checkout", dir)
	}
	for _, e := range []struct {
		name string
		dir  bool
	}{{"HEAD", false}, {"config", false}, {"objects", true}, {"refs", true}, {markerFile, false}} {
		fi, err := os.Lstat(filepath.Join(dir, e.name))
		if err != nil || fi.IsDir() != e.dir || (!e.dir && !fi.Mode().IsRegular()) {
			return not("%s has no %s written by stackd", dir, e.name)
		}
	}
	f, err := os.Open(filepath.Join(dir, "config"))
	if err != nil {
		return mk, fmt.Errorf("mirror: open %s: %w", id, err)
	}
	cfg, err := config.ReadConfig(f)
	f.Close()
	if err != nil {
		return not("unreadable config: %v", err)
	}
	if !cfg.Core.IsBare || cfg.Core.Worktree != "" {
		return not("%s is not a bare repository", dir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, markerFile))
	if err != nil {
		return mk, fmt.Errorf("mirror: open %s: %w", id, err)
	}
	if err := json.Unmarshal(raw, &mk); err != nil {
		return not("unreadable %s", markerFile)
	}
	if mk.Format != markerFormat {
		return not("%s has format %d, want %d", markerFile, mk.Format, markerFormat)
	}
	if mk.ID != id {
		return not("%s names mirror %q", markerFile, mk.ID)
	}
	return mk, nil
}

// storeURL records a new redacted upstream URL in config and marker.
func storeURL(dir, id, shown string) error {
	f, err := os.Open(filepath.Join(dir, "config"))
	if err != nil {
		return fmt.Errorf("mirror: read config: %w", err)
	}
	cfg, err := config.ReadConfig(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("mirror: read config: %w", err)
	}
	rc, ok := cfg.Remotes[RemoteName]
	if !ok {
		rc = &config.RemoteConfig{Name: RemoteName, Fetch: refSpecs}
		cfg.Remotes[RemoteName] = rc
	}
	rc.URLs = []string{shown}
	if err := writeConfig(dir, cfg); err != nil {
		return err
	}
	return writeMarker(dir, id, shown)
}

func writeConfig(dir string, cfg *config.Config) error {
	raw, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("mirror: encode config: %w", err)
	}
	return writeLocked(filepath.Join(dir, "config"), raw)
}

func writeMarker(dir, id, shown string) error {
	raw, err := json.MarshalIndent(marker{Format: markerFormat, ID: id, URL: shown}, "", "  ")
	if err != nil {
		return fmt.Errorf("mirror: encode marker: %w", err)
	}
	return writeLocked(filepath.Join(dir, markerFile), append(raw, '\n'))
}

func writeHead(dir, target string) error {
	return writeLocked(filepath.Join(dir, "HEAD"), []byte("ref: "+target+"\n"))
}

// initBare lays out an empty bare repository with the mirror's config.
func initBare(dir, shown string) error {
	for _, d := range []string{"objects/pack", "objects/info", "refs/heads", "refs/tags"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(d)), 0o755); err != nil {
			return fmt.Errorf("mirror: init: %w", err)
		}
	}
	cfg := config.NewConfig()
	cfg.Core.IsBare = true
	cfg.Remotes[RemoteName] = &config.RemoteConfig{Name: RemoteName, URLs: []string{shown}, Fetch: refSpecs}
	// Marshal once to create the remote's raw section, then add what
	// go-git does not model: git must not follow tags into the mirror
	// either.
	if _, err := cfg.Marshal(); err != nil {
		return fmt.Errorf("mirror: encode config: %w", err)
	}
	cfg.Raw.Section("remote").Subsection(RemoteName).SetOption("tagOpt", "--no-tags")
	if err := writeConfig(dir, cfg); err != nil {
		return err
	}
	return writeHead(dir, defaultBranch)
}

// Clone creates mirror id from cfg's upstream and returns it with the refs
// it holds, each as refs.Created: BeginClone, then Commit. It refuses
// (ErrExists) if the mirror's directory exists. A failed or cancelled
// Clone leaves nothing behind.
func (r *Root) Clone(ctx context.Context, id string, cfg Config) (*Mirror, []refs.Change, error) {
	p, err := r.BeginClone(ctx, id, cfg)
	if err != nil {
		return nil, nil, err
	}
	m, err := p.Commit()
	if err != nil {
		return nil, nil, err
	}
	return m, p.Changes(), nil
}

// PendingClone is a clone that was received and checked but is not in
// place yet: it lives in a temporary directory of the root (its
// quarantine), which Commit renames into place and Abort removes. Its
// Reader reads it meanwhile. One of them must be called.
type PendingClone struct {
	r        *Root
	m        *Mirror // in the temporary directory until Commit
	changes  []refs.Change
	finished bool
}

// BeginClone clones mirror id from cfg's upstream into a temporary
// directory of the root: a bare repository with the mirror's config, the
// pack as received (checked: see receivePack) with its index, all refs
// packed in one go, HEAD, the marker. Nothing is visible under the
// mirror's name until Commit. On error nothing is left behind.
func (r *Root) BeginClone(ctx context.Context, id string, cfg Config) (p *PendingClone, err error) {
	const op = "clone"
	if err := CheckID(id); err != nil {
		return nil, fmt.Errorf("mirror: clone: %w", err)
	}
	rem, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mirror: clone %s: %w", rem.shown, err)
	}
	dir := r.Dir(id)
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("mirror: clone into %s: %w", dir, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("mirror: clone: %w", err)
	}
	tmp, err := os.MkdirTemp(r.path, "."+id+cloneInfix)
	if err != nil {
		return nil, fmt.Errorf("mirror: clone: %w", err)
	}
	m := &Mirror{id: id, dir: tmp, rem: rem, lim: cfg.Limits, loose: map[string]bool{}}
	defer func() {
		if err != nil {
			if m.objs != nil {
				_ = m.objs.close()
			}
			_ = os.RemoveAll(tmp)
			rem.close()
			p = nil
		}
	}()
	if err := initBare(tmp, rem.shown); err != nil {
		return nil, err
	}

	sess, err := rem.session(ctx, 0)
	if err != nil {
		return nil, rem.fail(ctx, op, err)
	}
	closeSess := closeOnce(sess)
	defer closeSess()
	ls, err := rem.list(ctx, sess, op)
	if err != nil {
		return nil, err
	}
	head := ls.headTarget("")
	if head == "" {
		head = defaultBranch
	}
	table := ls.table(head, nil)
	var wants []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	for _, ref := range table.All() {
		if !ref.Symbolic() && !seen[ref.Hash] {
			seen[ref.Hash] = true
			wants = append(wants, ref.Hash)
		}
	}
	var np *newPack
	if len(wants) > 0 {
		var obs *observer
		if cfg.Seen != nil {
			obs = &observer{wanted: seen, fn: cfg.Seen}
		}
		opts := receiveOpts{lim: cfg.Limits, obs: obs, verify: true, wants: wants}
		packDir := filepath.Join(tmp, "objects", "pack")
		store := func(r io.Reader) (newPack, error) { return receivePack(packDir, r, opts) }
		pack, err := m.fetch(ctx, sess, ls, wants, nil, op, store)
		if err != nil {
			return nil, err
		}
		np = &pack
	}
	closeSess()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mirror: clone %s: %w", rem.shown, err)
	}
	m.objs = openObjects(tmp)
	changes := refs.Diff(nil, table, InNamespaces)
	if err := m.objs.checkBranches(changes, np); err != nil {
		return nil, rem.fail(ctx, op, err)
	}
	m.peeled = m.peel(table, nil, nil, np)
	if err := writePackedRefsLocked(filepath.Join(tmp, packedRefsFile), table, m.peeled, nil); err != nil {
		return nil, err
	}
	if head != defaultBranch {
		if err := writeHead(tmp, head); err != nil {
			return nil, err
		}
	}
	if err := writeMarker(tmp, id, rem.shown); err != nil {
		return nil, err
	}
	if err := recordPackBytes(tmp); err != nil { // the base of the first collection
		return nil, err
	}
	m.table.Store(table)
	return &PendingClone{r: r, m: m, changes: changes}, nil
}

// Reader reads the pending clone.
func (p *PendingClone) Reader() *Reader { return p.m.Reader() }

// Changes are the refs of the clone, each refs.Created.
func (p *PendingClone) Changes() []refs.Change { return p.changes }

// Abort removes the pending clone. Abort after Commit does nothing.
func (p *PendingClone) Abort() {
	if p.finished {
		return
	}
	p.finished = true
	_ = p.m.objs.close()
	p.m.rem.close()
	_ = os.RemoveAll(p.m.dir)
}

// Commit renames the clone into place (after an fsync of everything) and
// returns the mirror. Its Reader, and Readers made before, keep working.
// It refuses (ErrExists) when the mirror's directory appeared meanwhile;
// on error the clone is removed.
func (p *PendingClone) Commit() (m *Mirror, err error) {
	if p.finished {
		return nil, errors.New("mirror: the clone was already committed or aborted")
	}
	p.finished = true
	m = p.m
	tmp, dir := m.dir, p.r.Dir(m.id)
	defer func() {
		if err != nil {
			_ = m.objs.close()
			m.rem.close()
			_ = os.RemoveAll(tmp)
		}
	}()
	for _, d := range []string{"objects", "refs", "."} {
		if err := syncDir(filepath.Join(tmp, d)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("mirror: clone into %s: %w", dir, ErrExists)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("mirror: clone: %w", err)
	}
	if err := syncDir(p.r.path); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	m.dir = dir
	m.objs.relocate(dir)
	m.disk = stampRefs(dir)
	return m, nil
}

// Remove deletes mirror id. It removes only a directory Open would
// accept (else ErrNoMirror or ErrNotMirror). The caller closes the mirror
// first.
func (r *Root) Remove(id string) error {
	if err := CheckID(id); err != nil {
		return fmt.Errorf("mirror: remove: %w", err)
	}
	dir := r.Dir(id)
	if _, err := checkMirror(dir, id); err != nil {
		return err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	trash := filepath.Join(r.path, "."+id+removeInfix+hex.EncodeToString(rnd[:]))
	// Renamed first, so that the mirror disappears at once and a crash
	// midway leaves only something SweepTemp removes.
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("mirror: remove %s: %w", id, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("mirror: remove %s: %w", id, err)
	}
	return nil
}

// SweepTemp removes what interrupted Clones and Removes left in the root
// (.<id>.git.clone-* and .<id>.git.remove-* directories) and returns the
// paths it removed. Call it when no Clone is running, e.g. at start-up.
// (A root that other processes share is swept one id at a time, under
// that id's lease: Leftovers, SweepTempOf.)
func (r *Root) SweepTemp() ([]string, error) { return r.sweepTemp(func(string) bool { return true }) }

// SweepTempOf is SweepTemp for the mirror id only. Call it when no Clone
// or Remove of id runs (in a shared root: holding id's lease).
func (r *Root) SweepTempOf(id string) ([]string, error) {
	return r.sweepTemp(func(other string) bool { return other == id })
}

// Leftovers returns the ids (without duplicates) whose interrupted Clones
// or Removes left temporary directories in the root.
func (r *Root) Leftovers() ([]string, error) {
	entries, err := os.ReadDir(r.path)
	if err != nil {
		return nil, fmt.Errorf("mirror: list leftovers: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := leftover(e.Name()); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (r *Root) sweepTemp(of func(id string) bool) ([]string, error) {
	entries, err := os.ReadDir(r.path)
	if err != nil {
		return nil, fmt.Errorf("mirror: sweep: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if id, ok := leftover(e.Name()); !ok || !of(id) {
			continue
		}
		p := filepath.Join(r.path, e.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("mirror: sweep: %w", err)
	}
	return removed, nil
}

// Mirrors returns the ids of the mirrors in the root: the entries
// <id>.git that Open would accept (a valid id, a bare repository, and a
// marker written by stackd that names this id). Everything else in the
// root is skipped, never returned, so that a caller removing what belongs
// to no repository (with Remove) only ever removes mirrors stackd cloned.
func (r *Root) Mirrors() ([]string, error) {
	entries, err := os.ReadDir(r.path)
	if err != nil {
		return nil, fmt.Errorf("mirror: list: %w", err)
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".git")
		if !ok || CheckID(id) != nil {
			continue
		}
		if _, err := checkMirror(filepath.Join(r.path, e.Name()), id); err != nil {
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// leftover reports whether name is a temporary directory of Clone or
// Remove, "." + a valid id + infix + an alphanumeric suffix, and of which
// id.
func leftover(name string) (string, bool) {
	if !strings.HasPrefix(name, ".") {
		return "", false
	}
	for _, infix := range []string{cloneInfix, removeInfix} {
		i := strings.LastIndex(name, infix)
		if i < 1 {
			continue
		}
		suffix := name[i+len(infix):]
		alnum := suffix != "" && strings.IndexFunc(suffix, func(r rune) bool {
			return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) < 0
		if alnum && CheckID(name[1:i]) == nil {
			return name[1:i], true
		}
	}
	return "", false
}

// Trim releases what the mirror caches between runs: go-git's cache of
// raw objects (up to 32 MiB), which a view build fills and the next build
// does not need, the view keeping its own decoded commits; with indexes
// also the pack indexes (about 30 bytes an object, plus go-git's
// offset table): the next read loads them again (milliseconds at 100,000
// objects), so the refresher asks for that only of an idle repository.
// Either way the pack files go-git keeps open are closed (one per pack
// read since the last Trim, up to maxPacks+1), so that a mirror holds no
// descriptor between runs however many fetches added packs. Reads after
// it are correct, only not cached. The refresher calls it after each run.
func (m *Mirror) Trim(indexes bool) { m.objs.trim(indexes) }
