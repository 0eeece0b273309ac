// Package watch turns changes to a working repository's refs into refresh
// triggers.
//
// It watches, with fsnotify (inotify: nothing is written to the repository),
// the per-worktree git dir for HEAD, the common dir for packed-refs, and the
// refs/heads, refs/stackit and refs/branch-metadata trees recursively (new
// subdirectories, from branch names with slashes, are added as they appear).
// Lock files are ignored: git renames them into place, and the rename is the
// change. Events are debounced: a burst (a commit touches several files)
// yields one trigger after a quiet period of about 100 ms.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Namespaces are the ref trees watched under the common dir.
var Namespaces = []string{"refs/heads", "refs/stackit", "refs/branch-metadata"}

// Watcher watches one repository.
type Watcher struct {
	gitDir, commonDir string
	fw                *fsnotify.Watcher
	debounce          time.Duration
	trigger           func()
	log               *slog.Logger
}

// New starts watching. trigger is called (from the watcher's goroutine) after
// each debounced burst of changes; Run must be called to process events.
func New(gitDir, commonDir string, debounce time.Duration, trigger func(), log *slog.Logger) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	w := &Watcher{gitDir: gitDir, commonDir: commonDir, fw: fw, debounce: debounce, trigger: trigger, log: log}
	dirs := []string{gitDir, commonDir, filepath.Join(commonDir, "refs")}
	for _, d := range dirs {
		if err := fw.Add(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fw.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	for _, ns := range Namespaces {
		if err := w.addTree(filepath.Join(commonDir, ns)); err != nil {
			fw.Close()
			return nil, err
		}
	}
	return w, nil
}

// addTree watches dir and every directory below it, if dir exists.
func (w *Watcher) addTree(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if err := w.fw.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("watch %s: %w", p, err)
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// relevant reports whether a changed path matters for the view.
func (w *Watcher) relevant(p string) bool {
	if strings.HasSuffix(p, ".lock") {
		return false
	}
	switch filepath.Dir(p) {
	case w.gitDir:
		if filepath.Base(p) == "HEAD" {
			return true
		}
		if w.gitDir != w.commonDir {
			return false
		}
	}
	if filepath.Dir(p) == w.commonDir {
		return filepath.Base(p) == "packed-refs"
	}
	for _, ns := range Namespaces {
		root := filepath.Join(w.commonDir, ns)
		if p == root || strings.HasPrefix(p, root+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// Run processes events until ctx ends, then closes the watcher.
func (w *Watcher) Run(ctx context.Context) {
	defer w.fw.Close()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			w.log.Warn("watcher error", "err", err)
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() && w.underRefs(ev.Name) {
					if err := w.addTree(ev.Name); err != nil {
						w.log.Warn("watcher: cannot watch new directory", "dir", ev.Name, "err", err)
					}
				}
			}
			if !w.relevant(ev.Name) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(w.debounce)
			} else {
				timer.Reset(w.debounce)
			}
			fire = timer.C
		case <-fire:
			fire = nil
			w.trigger()
		}
	}
}

func (w *Watcher) underRefs(p string) bool {
	refs := filepath.Join(w.commonDir, "refs")
	return strings.HasPrefix(p, refs+string(filepath.Separator))
}
