// Package datadir guards stackd's data directory (--data-dir): the lock
// that keeps two servers from writing one directory at once (Lock), the
// refusal of a data directory inside the served repository (Check), and
// the path resolution both sides of that check go through (Resolve).
//
// It knows nothing of git: the repository's directories come from
// gitrepo.Worktree.Dirs, as plain paths.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrInsideRepository marks a data directory that is, or would be
// created, inside a directory of the served repository.
var ErrInsideRepository = errors.New("the data directory is inside the served repository")

// insideError is the refusal of Check: its text names both directories
// (one line); it is ErrInsideRepository.
type insideError struct{ msg string }

func (e insideError) Error() string        { return e.msg }
func (e insideError) Is(target error) bool { return target == ErrInsideRepository }

// Check refuses (ErrInsideRepository) a data dir that is, or would be
// created, inside any of repoDirs: the directories of the served
// repository that stackd must never write into (gitrepo.Worktree.Dirs).
// Both sides are compared with symbolic links resolved (Resolve), so
// neither a link to .git nor a path through a linked directory gets in.
func Check(dataDir string, repoDirs []string) error {
	data, err := Resolve(dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	for _, d := range repoDirs {
		dir, err := Resolve(d)
		if err != nil {
			return fmt.Errorf("resolve %s of the served repository: %w", d, err)
		}
		if Within(data, dir) {
			shown := dataDir
			if data != filepath.Clean(dataDir) {
				shown += " (" + data + ")"
			}
			return insideError{fmt.Sprintf("--data-dir %s is inside the served repository %s; stackd never writes into a working repository: choose another --data-dir",
				shown, dir)}
		}
	}
	return nil
}

// Within reports whether path is dir or inside it, lexically: resolve
// both first (Resolve).
func Within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// maxLinks bounds the symbolic links Resolve follows.
const maxLinks = 255

// Resolve returns p absolute, cleaned and with every symbolic link
// resolved. For a path that does not exist (yet), its nearest existing
// ancestor is resolved and the rest appended; a dangling link is followed
// to where its target would be created.
func Resolve(p string) (string, error) {
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
