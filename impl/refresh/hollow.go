package refresh

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/source"
	"github.com/stackd/stackd/impl/view"
)

// An idle mirror (idleRuns runs in a row that built nothing, or just
// onboarded or started: nobody asked for its records yet) keeps only the
// hollow copy of its view (view.Snapshot.Hollowed: the view's compressed
// bytes and its summary) and its builder forgets its decoded commits; a
// request that needs the view's records (a stack, a branch, a diff) has
// them built again from the mirror's refs (Full), and a change is built in
// full. A mirror's view is also saved in its directory after each new one
// (source.ViewKeeper), so that a start-up serves it without building it
// when the refs on disk are those it was built from (view.Key).
//
// Working repositories (their refs move under stackd) and the shared
// mirrors of replicas keep their records.

// maxSavedView bounds the saved view a start-up reads: a view of 50,000
// branches saves a few megabytes.
const maxSavedView = 256 << 20

// hollowable reports whether this repository's view may be hollow: a
// mirror of this process alone.
func (r *Refresher) hollowable() bool {
	return r.repo.Source().Mode() == ModeMirrorFetch && !r.shared()
}

// viewFile is the file of the saved view ("" for none).
func (r *Refresher) viewFile() string {
	if !r.hollowable() {
		return ""
	}
	k, ok := r.repo.Source().(source.ViewKeeper)
	if !ok {
		return ""
	}
	return k.ViewFile()
}

// lockBusy takes busy, or fails when ctx ends or the Refresher stops.
func (r *Refresher) lockBusy(ctx context.Context) error {
	select {
	case r.busy <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return r.stopErr()
	}
}

// Full returns the repository's snapshot with its records (see
// registry.Repo.Full). A hollow one is built again, in full, from the
// mirror's refs on disk: while no run is in progress (Full holds busy, as
// runs do) they are the refs of the published view, since a run moves
// them only when it publishes the view of what it fetched. The full
// snapshot then replaces the hollow one at the same version; the
// repository counts as busy again (it is made hollow after idleRuns more
// runs that build nothing).
func (r *Refresher) Full(ctx context.Context) (*view.Snapshot, error) {
	if err := r.lockBusy(ctx); err != nil {
		return nil, err
	}
	defer func() { <-r.busy }()
	h := r.repo.Snapshot()
	if !h.Hollow() {
		return h, nil
	}
	repo, _, err := r.repo.Source().Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("refresh: read the mirror for the view's records: %w", r.wrap(err))
	}
	snap, _, err := r.buildView(ctx, repo, nil)
	if err != nil {
		return nil, err
	}
	r.quiet = 0
	if cur, ok := r.repo.Fill(h, snap); ok {
		return cur, nil
	}
	// Not the refs of the hollow view (a run that moved the refs and
	// failed to publish, which runs do not do): serve them as a new view.
	r.log.Warn("the mirror's refs are not those of its view: publishing their view")
	cur, changed := r.repo.Publish(snap, r.m.opts.Now().UTC())
	if changed {
		r.announce(h, cur)
		r.save(cur, repo)
	}
	return cur, nil
}

// hollow makes the current snapshot hollow and lets the builder forget
// its decoded commits, for an idle repository, and reports whether it
// did. Called under busy.
func (r *Refresher) hollow() bool {
	if !r.hollowable() {
		return false
	}
	s := r.repo.Snapshot()
	if s.Version() == 0 || s.Hollow() {
		return false
	}
	if !r.repo.Hollow(s) {
		return false
	}
	r.builder.Forget()
	return true
}

// Relieve makes the views of the mirrors not in a run hollow, whether
// idle or not, for a server short of memory (memlimit.Options.Relieve),
// and reports whether it made any. A mirror whose records are asked for
// again builds them (Full); one that changes builds its view in full.
func (m *Manager) Relieve() bool {
	n := 0
	for _, r := range m.all() {
		select {
		case r.busy <- struct{}{}:
			if r.hollow() {
				n++
			}
			<-r.busy
		default: // in a run: it keeps its view
		}
	}
	if n > 0 {
		m.opts.Logger.Warn("short of memory: the views of mirrors not in a run keep only their bytes", "mirrors", n)
	}
	return n > 0
}

// restore returns the saved view of repo's refs (nil when there is none,
// or it is of other refs, or damaged: the view is then built).
func (r *Refresher) restore(repo view.Repo) *view.Snapshot {
	file := r.viewFile()
	if file == "" {
		return nil
	}
	fi, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		r.log.Warn("the saved view cannot be read: building it", "err", redact.Error(err))
		return nil
	}
	if fi.Size() > maxSavedView {
		r.log.Warn("the saved view is too large: building it", "bytes", fi.Size())
		return nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		r.log.Warn("the saved view cannot be read: building it", "err", redact.Error(err))
		return nil
	}
	key, err := view.Key(repo, r.repo.Input())
	if err != nil {
		r.log.Warn("the saved view cannot be checked: building it", "err", redact.Error(err))
		return nil
	}
	s, err := view.LoadHollow(data, key)
	switch {
	case errors.Is(err, view.ErrStale):
		r.log.Debug("the saved view is of other refs: building it")
		return nil
	case err != nil:
		r.log.Warn("the saved view is damaged: building it", "err", err)
		return nil
	}
	return s
}

// save writes the view s of repo's refs to the view file (atomically: a
// temporary file renamed). A failure is logged: the next start-up builds
// the view instead.
func (r *Refresher) save(s *view.Snapshot, repo view.Repo) {
	file := r.viewFile()
	if file == "" || repo == nil {
		return
	}
	if err := saveView(file, s, repo, r.repo.Input()); err != nil {
		r.log.Warn("the view could not be saved (a start-up will build it)", "err", redact.Error(err))
	}
}

func saveView(file string, s *view.Snapshot, repo view.Repo, in view.Input) error {
	key, err := view.Key(repo, in)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".stackd-view-*")
	if err != nil {
		return fmt.Errorf("save view: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	if err := s.Save(tmp, key); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save view: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("save view: %w", err)
	}
	return nil
}
