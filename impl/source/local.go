package source

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/view"
)

// Local is the operator's working repository. It only ever reads: it holds
// a *gitrepo.Worktree, whose one way in, Read, yields a *gitrepo.Repo, and
// neither type has a method that could fetch into the repository or write
// to it.
//
// The refs of the last view that was built from it (committed, see
// Update.Commit) are kept in a file of stackd's data directory (never in
// the working repository), so that a restart whose refs make no view can
// serve that one instead (LastGood).
type Local struct {
	wt   *gitrepo.Worktree
	good string // the file of the last good refs; "": not kept

	mu    sync.Mutex
	last  *refs.Table // refs of the last committed Refresh, or of Load
	saved *refs.Table // what the good file holds
}

var _ Source = (*Local)(nil)

// NewLocal wraps a working repository. good is the file, in stackd's data
// directory, that keeps the refs of its last good view ("": none is
// kept).
func NewLocal(wt *gitrepo.Worktree, good string) *Local { return &Local{wt: wt, good: good} }

// Kind is gen.Local.
func (l *Local) Kind() gen.RepoKind { return gen.Local }

// Mode is ModeReread.
func (l *Local) Mode() Mode { return ModeReread }

// Load re-reads the repository; a working repository's disk is always
// fresh.
func (l *Local) Load(ctx context.Context) (view.Repo, bool, error) {
	u, err := l.Refresh(ctx, nil)
	if err != nil {
		return nil, true, err
	}
	l.mu.Lock()
	l.last = u.Repo.Refs()
	l.mu.Unlock()
	return u.Repo, true, nil
}

// Refresh re-reads the refs on disk and reports those that changed since
// the last committed call. Nothing is fetched and nothing is written to
// the working repository; nothing is received, so cache is not used. Its
// Commit records the refs as the last good ones (the file, when they
// changed); Abort forgets them, so that the next Refresh reports the same
// changes again.
func (l *Local) Refresh(ctx context.Context, _ *view.Cache) (Update, error) {
	if err := ctx.Err(); err != nil {
		return Update{}, err
	}
	repo, err := l.wt.Read()
	if err != nil {
		return Update{}, fmt.Errorf("read working repository: %w", err)
	}
	l.mu.Lock()
	prev := l.last
	l.mu.Unlock()
	table := repo.Refs()
	commit := func(context.Context) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.last = table
		return l.saveLocked(table)
	}
	return Update{
		Repo:    repo,
		Changes: refs.Diff(prev, table, Reported),
		// The view also reads the config (tracking branches, trunk): a
		// re-read always rebuilds, which is cheap when nothing changed.
		Changed: true,
		Commit:  commit,
		Abort:   func() {},
	}, nil
}

// LastGood returns the working repository with the refs of its last good
// view (see Local), if they were kept: what a start-up whose refs make no
// view serves instead. The objects are the repository's own; a read of
// one that was deleted since fails.
func (l *Local) LastGood(context.Context) (view.Repo, bool, error) {
	if l.good == "" {
		return nil, false, nil
	}
	raw, err := os.ReadFile(l.good)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the last good refs: %w", err)
	}
	table, err := decodeRefs(raw)
	if err != nil {
		return nil, false, fmt.Errorf("read the last good refs: %w", err)
	}
	repo, err := l.wt.Read()
	if err != nil {
		return nil, false, fmt.Errorf("read working repository: %w", err)
	}
	return pinned{Repo: repo, table: table}, true, nil
}

// pinned is the working repository with another ref table.
type pinned struct {
	*gitrepo.Repo
	table *refs.Table
}

func (p pinned) Refs() *refs.Table { return p.table }

// saveLocked writes table to the good file when it differs from what the
// file holds (l.mu held): atomically, a temporary file renamed over it.
func (l *Local) saveLocked(table *refs.Table) error {
	if l.good == "" || (l.saved != nil && refs.Equal(l.saved, table)) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(l.good), 0o700); err != nil {
		return fmt.Errorf("keep the last good refs: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(l.good), ".refs-")
	if err == nil {
		_, err = f.Write(encodeRefs(table))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), l.good)
		}
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("keep the last good refs: %w", err)
	}
	l.saved = table
	return nil
}

// goodHeader starts the file of the last good refs.
const goodHeader = "# stackd: the refs of the last good view, v1\n"

// encodeRefs writes a table as lines "<hash> <name>", and "ref: <target>
// <name>" for a symbolic ref.
func encodeRefs(t *refs.Table) []byte {
	var b bytes.Buffer
	b.WriteString(goodHeader)
	for _, r := range t.All() {
		if r.Symbolic() {
			b.WriteString("ref: " + r.Target + " " + r.Name + "\n")
			continue
		}
		b.WriteString(r.Hash.String() + " " + r.Name + "\n")
	}
	return b.Bytes()
}

func decodeRefs(raw []byte) (*refs.Table, error) {
	if !bytes.HasPrefix(raw, []byte(goodHeader)) {
		return nil, errors.New("unknown format")
	}
	var list []refs.Ref
	sc := bufio.NewScanner(bytes.NewReader(raw[len(goodHeader):]))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if target, ok := strings.CutPrefix(line, "ref: "); ok {
			t, name, ok := strings.Cut(target, " ")
			if !ok {
				return nil, fmt.Errorf("bad line %q", line)
			}
			list = append(list, refs.Ref{Name: name, Target: t})
			continue
		}
		h, name, ok := strings.Cut(line, " ")
		var id plumbing.Hash
		if n, err := hex.Decode(id[:], []byte(h)); !ok || err != nil || n != len(id) || len(h) != 2*len(id) {
			return nil, fmt.Errorf("bad line %q", line)
		}
		list = append(list, refs.Ref{Name: name, Hash: id})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return refs.NewTable(list), nil
}
