// Package gitrepo opens the operator's working repository strictly read-only.
//
// stackd serves the repository it was started in without ever changing it:
// no refs, objects, index, config or working-tree file is written. The
// package builds go-git storage by hand (so linked worktrees, partial clones
// and repositories with extensions.worktreeConfig open), wraps it in a
// [ReadOnlyStorer] whose every write method fails with [ErrReadOnly], and
// opens it with a nil worktree filesystem so go-git cannot touch the working
// tree at all. Fetching is deliberately absent from this package.
package gitrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
)

// ErrNotRepository is returned (wrapped) when no git repository is found.
var ErrNotRepository = errors.New("not a git repository")

// Worktree locates one checkout of a repository: its work tree, its
// per-worktree git directory and the common git directory. A bare
// repository has an empty WorkDir and GitDir == CommonDir.
type Worktree struct {
	workDir   string
	gitDir    string
	commonDir string
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

// GitDir is the per-worktree git directory, where HEAD and the index live
// (for a linked worktree: <common>/worktrees/<name>).
func (w *Worktree) GitDir() string { return w.gitDir }

// CommonDir is where refs/, packed-refs, config and objects/ live.
func (w *Worktree) CommonDir() string { return w.commonDir }

// IsBare reports whether the repository has no work tree.
func (w *Worktree) IsBare() bool { return w.workDir == "" }

// Storer returns a fresh read-only storer over the repository's files.
func (w *Worktree) Storer() *ReadOnlyStorer {
	var fs billy.Filesystem = osfs.New(w.gitDir)
	if w.commonDir != w.gitDir {
		fs = dotgit.NewRepositoryFilesystem(fs, osfs.New(w.commonDir))
	}
	return NewReadOnlyStorer(filesystem.NewStorage(fs, cache.NewObjectLRUDefault()))
}

// Read returns a fresh read-only go-git handle. Each call builds new
// storage, so packs and refs written since the last call are seen. The
// handle has no worktree filesystem, and its storer refuses every write.
func (w *Worktree) Read() (*git.Repository, error) {
	repo, err := git.Open(w.Storer(), nil)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, fmt.Errorf("gitrepo: open %q: %w: %w", w.gitDir, ErrNotRepository, err)
	}
	if err != nil {
		return nil, fmt.Errorf("gitrepo: open %q: %w", w.gitDir, err)
	}
	return repo, nil
}

// RemoteURL returns the first URL of remote "origin", or of the only
// remote when there is exactly one; "" otherwise. The URL is raw: it may
// hold credentials, which the caller must redact.
func (w *Worktree) RemoteURL() string {
	cfg, err := w.Storer().Config()
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

// branchExists reports whether refs/heads/<name> resolves.
func branchExists(repo *git.Repository, name string) bool {
	if name == "" {
		return false
	}
	_, err := repo.Reference(plumbing.NewBranchReferenceName(name), true)
	return err == nil
}

// DetectTrunk guesses the trunk branch, in this order:
//  1. refs/remotes/origin/HEAD's symref target (refs/remotes/origin/<b>) → b,
//     if the local branch b exists;
//  2. for a bare repository, HEAD's symref target, if that branch exists;
//  3. init.defaultBranch from the repository config, then from the user's
//     global git config, if that branch exists;
//  4. "main", then "master", if they exist.
//
// It returns "" when none applies.
func DetectTrunk(repo *git.Repository) string {
	if ref, err := repo.Storer.Reference(plumbing.NewRemoteHEADReferenceName("origin")); err == nil &&
		ref.Type() == plumbing.SymbolicReference {
		if b, ok := strings.CutPrefix(ref.Target().String(), "refs/remotes/origin/"); ok && branchExists(repo, b) {
			return b
		}
	}
	cfg, cfgErr := repo.Config()
	if cfgErr == nil && cfg.Core.IsBare {
		if ref, err := repo.Storer.Reference(plumbing.HEAD); err == nil && ref.Type() == plumbing.SymbolicReference &&
			ref.Target().IsBranch() && branchExists(repo, ref.Target().Short()) {
			return ref.Target().Short()
		}
	}
	var candidates []string
	if cfgErr == nil {
		candidates = append(candidates, cfg.Init.DefaultBranch)
	}
	if g, err := loadGlobalConfig(); err == nil {
		candidates = append(candidates, g)
	}
	candidates = append(candidates, "main", "master")
	for _, c := range candidates {
		if branchExists(repo, c) {
			return c
		}
	}
	return ""
}

// loadGlobalConfig reads init.defaultBranch from the user's global git
// config (XDG and ~/.gitconfig), via go-git.
func loadGlobalConfig() (string, error) {
	cfg, err := config.LoadConfig(config.GlobalScope)
	if err != nil {
		return "", fmt.Errorf("gitrepo: global config: %w", err)
	}
	return cfg.Init.DefaultBranch, nil
}
