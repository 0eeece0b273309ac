// Package watch turns changes to a working repository's refs into refresh
// triggers.
//
// It watches, with fsnotify (inotify: nothing is written to the repository),
// the per-worktree git dir for HEAD, the common dir for packed-refs, and the
// refs/heads, refs/stackit and refs/branch-metadata trees recursively (new
// subdirectories, from branch names with slashes, are added as they appear).
// Lock files are ignored: git renames them into place, and the rename is the
// change. Events are debounced: a burst (a commit touches several files)
// yields one trigger after a quiet period (Options.Debounce, 100 ms by
// default), and a steady stream of changes still triggers at least every
// Options.MaxWait. When the kernel's event queue overflows (events were
// lost), the watched trees are scanned again for new directories and a
// trigger follows as for a change: the refresh re-reads every ref.
//
// The watches exist from New on; events that happen before Run are queued
// and processed when it starts. So a caller that creates the watcher before
// it first reads the repository misses no change in between.
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
	o                 Options
}

// Options configure a Watcher.
type Options struct {
	// Debounce is the quiet period after the last change before the
	// trigger. Default 100ms.
	Debounce time.Duration
	// MaxWait bounds the time from the first change of a burst to its
	// trigger, however long the changes go on. Default 10×Debounce.
	MaxWait time.Duration
	// Trigger is called (from Run's goroutine) after each burst of changes.
	Trigger func()
	// Log receives warnings. Default: discarded.
	Log *slog.Logger
	// After makes the timers (tests fire them by hand). Default time.After.
	After func(time.Duration) <-chan time.Time
}

// New starts watching gitDir (the worktree's git dir) and commonDir. Run
// must be called to process events; Close frees the watches if Run never
// runs.
func New(gitDir, commonDir string, o Options) (*Watcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 10 * o.Debounce
	}
	o.MaxWait = max(o.MaxWait, o.Debounce)
	if o.Trigger == nil {
		o.Trigger = func() {}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.After == nil {
		o.After = time.After
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	w := &Watcher{gitDir: gitDir, commonDir: commonDir, fw: fw, o: o}
	dirs := []string{gitDir, commonDir, filepath.Join(commonDir, "refs")}
	for _, d := range dirs {
		if err := fw.Add(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fw.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	if err := w.addTrees(); err != nil {
		fw.Close()
		return nil, err
	}
	return w, nil
}

// Close removes the watches. Run closes them too when it returns.
func (w *Watcher) Close() error { return w.fw.Close() }

// addTrees watches every namespace tree.
func (w *Watcher) addTrees() error {
	for _, ns := range Namespaces {
		if err := w.addTree(filepath.Join(w.commonDir, ns)); err != nil {
			return err
		}
	}
	return nil
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
	w.loop(ctx, w.fw.Events, w.fw.Errors)
}

// loop is Run over the given event and error channels.
func (w *Watcher) loop(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error) {
	// quiet fires Debounce after the latest change, deadline MaxWait after
	// the first change of the burst; either ends the burst. Both are nil
	// between bursts.
	var quiet, deadline <-chan time.Time
	changed := func() {
		quiet = w.o.After(w.o.Debounce)
		if deadline == nil {
			deadline = w.o.After(w.o.MaxWait)
		}
	}
	fire := func() {
		quiet, deadline = nil, nil
		w.o.Trigger()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-errs:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Changes were lost: watch any directory they created and
				// re-read everything.
				w.o.Log.Warn("watcher: event queue overflowed; re-reading the repository")
				if err := w.addTrees(); err != nil {
					w.o.Log.Warn("watcher: cannot watch the ref trees again", "err", err)
				}
				changed()
				continue
			}
			w.o.Log.Warn("watcher error", "err", err)
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() && w.underRefs(ev.Name) {
					if err := w.addTree(ev.Name); err != nil {
						w.o.Log.Warn("watcher: cannot watch new directory", "dir", ev.Name, "err", err)
					}
				}
			}
			if w.relevant(ev.Name) {
				changed()
			}
		case <-quiet:
			fire()
		case <-deadline:
			fire()
		}
	}
}

func (w *Watcher) underRefs(p string) bool {
	refs := filepath.Join(w.commonDir, "refs")
	return strings.HasPrefix(p, refs+string(filepath.Separator))
}
