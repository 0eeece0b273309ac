package impl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	formatcfg "github.com/go-git/go-git/v5/plumbing/format/config"

	"github.com/stackd/stackd/impl/gitrepo"
)

// dataDirLock is the file in the data directory that lockDataDir locks.
const dataDirLock = "stackd.lock"

// ErrDataDirInUse marks a start-up refused because another stackd process
// uses the data directory in a way that excludes this one: a single
// server (without --database-url) alongside any other process, or a
// replica alongside a single server. Replicas on one database share it.
var ErrDataDirInUse = errors.New("the data directory is in use by another stackd process: give this one its own --data-dir (only replicas that share a database, --database-url, share one)")

// errLocksUnsupported: the data directory's filesystem has no file locks.
var errLocksUnsupported = errors.New("the data directory cannot be locked")

// checkDataDir refuses (wrapping ErrPosture: exit code 2) a data dir that
// is, or would be created, inside any directory of the served repository
// (see repositoryDirs). Both sides are compared with symbolic links
// resolved, so neither a link to .git nor a path through a linked
// directory gets in.
func checkDataDir(dataDir string, wt *gitrepo.Worktree) error {
	data, err := resolvePath(dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	for _, d := range repositoryDirs(wt) {
		dir, err := resolvePath(d)
		if err != nil {
			return fmt.Errorf("resolve %s of the served repository: %w", d, err)
		}
		if within(data, dir) {
			shown := dataDir
			if data != filepath.Clean(dataDir) {
				shown += " (" + data + ")"
			}
			return fmt.Errorf("%w: --data-dir %s is inside the served repository %s; stackd never writes into a working repository: choose another --data-dir",
				ErrPosture, shown, dir)
		}
	}
	return nil
}

// repositoryDirs lists the directories of the served repository that
// stackd must never write into: its work tree, its git dir, the common git
// dir, the main worktree (which differs from the work tree when a linked
// worktree is served) and every linked worktree recorded in
// <common>/worktrees/*/gitdir. Unresolved; duplicates are harmless.
func repositoryDirs(wt *gitrepo.Worktree) []string {
	common := wt.CommonDir()
	dirs := []string{wt.WorkDir(), wt.GitDir(), common, mainWorktree(common)}
	dirs = append(dirs, linkedWorktrees(common)...)
	out := dirs[:0]
	for _, d := range dirs {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// mainWorktree returns the work tree of the repository whose common git
// dir is common: core.worktree when set, else the parent of a common dir
// named .git, else "" (a bare repository).
func mainWorktree(common string) string {
	if f, err := os.Open(filepath.Join(common, "config")); err == nil {
		cfg := formatcfg.New()
		derr := formatcfg.NewDecoder(f).Decode(cfg)
		_ = f.Close()
		if derr == nil {
			if w := cfg.Section("core").Option("worktree"); w != "" {
				if !filepath.IsAbs(w) {
					w = filepath.Join(common, w)
				}
				return filepath.Clean(w)
			}
		}
	}
	if filepath.Base(common) == ".git" {
		return filepath.Dir(common)
	}
	return ""
}

// linkedWorktrees reads <common>/worktrees/*/gitdir: each names the .git
// file at the root of a linked worktree (absolute, or relative to its own
// directory when git writes relative paths).
func linkedWorktrees(common string) []string {
	entries, err := os.ReadDir(filepath.Join(common, "worktrees"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		admin := filepath.Join(common, "worktrees", e.Name())
		b, err := os.ReadFile(filepath.Join(admin, "gitdir"))
		if err != nil {
			continue
		}
		p := strings.TrimSpace(string(b))
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(admin, p)
		}
		out = append(out, filepath.Dir(filepath.Clean(p)))
	}
	return out
}

// maxLinks bounds the symbolic links resolvePath follows.
const maxLinks = 255

// resolvePath returns p absolute, cleaned and with every symbolic link
// resolved. For a path that does not exist (yet), its nearest existing
// ancestor is resolved and the rest appended; a dangling link is followed
// to where its target would be created.
func resolvePath(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for range maxLinks {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if target, lerr := os.Readlink(p); lerr == nil {
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(p), target)
			}
			p = filepath.Clean(target)
			continue
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...), nil
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", p)
}
