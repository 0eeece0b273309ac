// Package gitrepo opens the operator's working repository strictly read-only.
//
// stackd serves the repository it was started in without ever changing it:
// no refs, objects, index, config or working-tree file is written, and it is
// never fetched into. The rule is enforced by types: the only thing this
// package hands out is a [Repo] (Worktree.Read), which has exactly four
// methods (Refs, Object, ObjectSize, Config), all reads; no *git.Repository,
// remote or storer ever leaves the package, so code holding the working
// repository has nothing it could call Fetch (or any write) on.
// Underneath, the go-git storage is built by hand (so linked worktrees,
// partial clones and repositories with extensions.worktreeConfig open) and
// wrapped in a [ReadOnlyStorer] whose every write method fails with
// [ErrReadOnly].
package gitrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrNotRepository is returned (wrapped) when no git repository is found.
var ErrNotRepository = errors.New("not a git repository")

// Worktree locates one checkout of a repository: its work tree, its
// per-worktree git directory (where HEAD and the index live; for a linked
// worktree <common>/worktrees/<name>) and the common git directory (refs/,
// packed-refs, config and objects/). A bare repository has an empty
// WorkDir and one git directory. Neither git directory is handed out as
// such: Dirs lists them for the data-dir check, RefDirs for the watcher.
// It is safe for concurrent use.
type Worktree struct {
	workDir   string
	gitDir    string
	commonDir string

	mu   sync.Mutex
	objs *objects // reused while the set of pack files stays the same
}

// Discover walks up from dir to the first directory that holds a .git
// directory or .git file, or that is itself a git directory (a bare
// repository), and opens it.
func Discover(dir string) (*Worktree, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("gitrepo: discover %q: %w", dir, err)
	}
	for d := abs; ; {
		w, err := Open(d)
		if err == nil {
			return w, nil
		}
		if !errors.Is(err, ErrNotRepository) {
			return nil, err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return nil, fmt.Errorf("gitrepo: %q (or any parent): %w", abs, ErrNotRepository)
		}
		d = parent
	}
}

// Open opens the repository whose work tree root (or bare repository
// directory) is path. It does not walk up.
func Open(path string) (*Worktree, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("gitrepo: open %q: %w", path, err)
	}
	dotGit := filepath.Join(abs, ".git")
	fi, err := os.Stat(dotGit)
	switch {
	case err == nil && fi.IsDir():
		return newWorktree(abs, dotGit)
	case err == nil:
		gitDir, err := readGitFile(dotGit)
		if err != nil {
			return nil, err
		}
		return newWorktree(abs, gitDir)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("gitrepo: open %q: %w", path, err)
	}
	if isGitDir(abs) {
		return newWorktree("", abs)
	}
	return nil, fmt.Errorf("gitrepo: %q: %w", abs, ErrNotRepository)
}

// readGitFile resolves a ".git" file ("gitdir: <path>") to the git dir.
func readGitFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("gitrepo: read %q: %w", file, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	target, ok := strings.CutPrefix(line, "gitdir:")
	if !ok {
		return "", fmt.Errorf("gitrepo: %q has no gitdir line: %w", file, ErrNotRepository)
	}
	target = strings.TrimSpace(target)
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(file), target)
	}
	return filepath.Clean(target), nil
}

// isGitDir reports whether dir looks like a git directory: a HEAD file
// plus objects/ and refs/ (directly or through a commondir file).
func isGitDir(dir string) bool {
	if fi, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil || fi.IsDir() {
		return false
	}
	common := dir
	if c, err := commonDirOf(dir); err == nil {
		common = c
	}
	for _, sub := range []string{"objects", "refs"} {
		if fi, err := os.Stat(filepath.Join(common, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// commonDirOf reads gitDir/commondir; without it the git dir is the
// common dir.
func commonDirOf(gitDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(gitDir, "commondir"))
	if errors.Is(err, os.ErrNotExist) {
		return gitDir, nil
	}
	if err != nil {
		return "", fmt.Errorf("gitrepo: read commondir: %w", err)
	}
	c := strings.TrimSpace(string(b))
	if c == "" {
		return gitDir, nil
	}
	if !filepath.IsAbs(c) {
		c = filepath.Join(gitDir, c)
	}
	return filepath.Clean(c), nil
}

func newWorktree(workDir, gitDir string) (*Worktree, error) {
	if !isGitDir(gitDir) {
		return nil, fmt.Errorf("gitrepo: %q: %w", gitDir, ErrNotRepository)
	}
	common, err := commonDirOf(gitDir)
	if err != nil {
		return nil, err
	}
	return &Worktree{workDir: workDir, gitDir: gitDir, commonDir: common}, nil
}

// WorkDir is the work tree root; "" for a bare repository.
func (w *Worktree) WorkDir() string { return w.workDir }

// RemoteURL returns the first URL of remote "origin", or of the only
// remote when there is exactly one; "" otherwise. The URL is raw: it may
// hold credentials, which the caller must redact.
func (w *Worktree) RemoteURL() string {
	cfg, err := w.newStorer().Config()
	if err != nil {
		return ""
	}
	r, ok := cfg.Remotes["origin"]
	if !ok {
		if len(cfg.Remotes) != 1 {
			return ""
		}
		for _, only := range cfg.Remotes {
			r = only
		}
	}
	if r == nil || len(r.URLs) == 0 {
		return ""
	}
	return r.URLs[0]
}
