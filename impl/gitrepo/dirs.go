package gitrepo

import (
	"os"
	"path/filepath"
	"strings"

	format "github.com/go-git/go-git/v5/plumbing/format/config"
)

// Dirs lists the directories of the repository that stackd must never
// write into (the data directory may be inside none of them: package
// datadir): its work tree, its git dir, the common git dir, the main
// worktree (which differs from the work tree when a linked worktree is
// served) and every linked worktree recorded in
// <common>/worktrees/*/gitdir. Unresolved; duplicates are harmless.
func (w *Worktree) Dirs() []string {
	dirs := []string{w.workDir, w.gitDir, w.commonDir, mainWorktree(w.commonDir)}
	dirs = append(dirs, linkedWorktrees(w.commonDir)...)
	out := dirs[:0]
	for _, d := range dirs {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// RefDirs are where a worktree's refs live on disk, for a watcher of
// their changes (package watch): Head holds HEAD (the per-worktree git
// dir), Common holds packed-refs and refs/ (the common git dir).
type RefDirs struct{ Head, Common string }

// RefDirs says where the worktree's refs live. These are places to be
// told about, never a repository to open: only this package opens
// repositories (the import rule, impl's TestImportBoundary).
func (w *Worktree) RefDirs() RefDirs { return RefDirs{Head: w.gitDir, Common: w.commonDir} }

// mainWorktree returns the work tree of the repository whose common git
// dir is common: core.worktree when set, else the parent of a common dir
// named .git, else "" (a bare repository).
func mainWorktree(common string) string {
	if f, err := os.Open(filepath.Join(common, "config")); err == nil {
		cfg := format.New()
		derr := format.NewDecoder(f).Decode(cfg)
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
