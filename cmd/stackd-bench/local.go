package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

const localID = "local"

// forEachRef is the git baseline of a re-read: every ref with its subject.
var forEachRef = []string{"for-each-ref", "--format=%(objectname) %(refname) %(subject)"}

// worktreeFigures measures the working repository of many branches over a
// long history: the cold re-read (the first view build of a fresh server,
// from its "view built" log line) and the re-read after a commit (POST
// .../sync), each against git for-each-ref over the same repository.
func (b *bench) worktreeFigures(ctx context.Context) error {
	shape := b.opt.worktree
	n := shape.Branches
	b.logf("== working repository: %s branches, %s commits", fmtCount(n), fmtCount(shape.TrunkCommits))
	label := fmt.Sprintf("%s branches, %s commits", fmtCount(n), fmtCount(shape.TrunkCommits))
	b.res.label("wtcold", label)
	b.res.label("wtreread", label)
	fixture, err := b.fx.get(shape)
	if err != nil {
		return err
	}
	cold, reread := b.res.at("wtcold", n), b.res.at("wtreread", n)
	dir := filepath.Join(b.runDir, "worktree")
	defer func() {
		if !b.opt.keep {
			_ = os.RemoveAll(dir)
		}
	}()

	var sd *stackd
	var repo string
	defer func() {
		if sd != nil {
			sd.kill()
		}
	}()
	for i := range b.opt.runs {
		if sd != nil {
			sd.kill()
			sd = nil
			if !b.opt.keep {
				_ = os.RemoveAll(filepath.Join(dir, "run-"+strconv.Itoa(i-1)))
			}
		}
		procDir, err := b.stackdDir("worktree", "run-"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		repo = filepath.Join(procDir, "repo")
		if err := copyTree(ctx, fixture, repo); err != nil {
			return err
		}
		for k := range 2 {
			if (k == 0) == (i%2 == 0) {
				s, err := b.startStackd(ctx, stackdOpts{label: fmt.Sprintf("worktree-%d", i), dataDir: filepath.Join(procDir, "data"), cwd: repo, dir: procDir}, true)
				if err != nil {
					cold.stackd.fail(err)
					b.logf("cold re-read run %d: %v", i+1, err)
					continue
				}
				sd = s
				if vb, ok := b.buildLine(sd, 0, localID); ok {
					cold.stackd.add(vb.MS / 1000)
					b.logf("cold re-read run %d: first view build %.1f ms (%d branches)", i+1, vb.MS, vb.Branches)
				} else {
					cold.stackd.na = noBuildLog
					b.logf("cold re-read run %d: server started in %s (no view build line)", i+1, fmtDuration(time.Since(sd.started)))
				}
			} else {
				b.timeGit(ctx, &cold.base, repo, "cold re-read", i, forEachRef...)
			}
		}
	}
	if sd == nil {
		return ctx.Err()
	}
	return b.rereads(ctx, sd, repo, reread)
}

// timeGit adds one timed git run to c.
func (b *bench) timeGit(ctx context.Context, c *cell, dir, what string, i int, args ...string) {
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	d, err := b.git.timed(octx, dir, args...)
	if err != nil {
		c.fail(err)
		b.logf("%s run %d: git %s: %v", what, i+1, args[0], err)
		return
	}
	c.add(d.Seconds())
	b.logf("%s run %d: git %s %s", what, i+1, args[0], fmtDuration(d))
}

// rereads times POST .../sync after a commit on one branch (a different
// one each run). The server's watcher sees the same commit and refreshes
// too; before the next run the harness waits for that watcher run to
// finish (its sync_finished event), so the runs do not overlap.
func (b *bench) rereads(ctx context.Context, sd *stackd, repo string, reread *result) error {
	api, err := newAPI(sd.base)
	if err != nil {
		return err
	}
	defer api.close()
	ev, err := api.subscribe(ctx, localID, b.opt.timeout)
	if err != nil {
		reread.stackd.fail(err)
		return nil
	}
	defer ev.close()
	n := b.opt.worktree.Branches
	for i := range b.opt.runs {
		branch := changeTarget(n, i, b.opt.runs)
		for k := range 2 {
			if (k == 0) != (i%2 == 0) {
				b.timeGit(ctx, &reread.base, repo, "re-read", i, forEachRef...)
				continue
			}
			// The watcher may (rarely) refresh before the POST arrives;
			// such a run measures nothing and is made again.
			d, err := b.rereadRetrying(ctx, api, ev, repo, branch, i)
			if err != nil {
				reread.stackd.fail(err)
				b.res.fact("re-read reported the commit", n, false, err.Error())
				b.logf("re-read run %d: stackd: %v", i+1, err)
				if errors.Is(err, errTimeout) || ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			reread.stackd.add(d.Seconds())
			b.res.fact("re-read reported the commit", n, true, "")
			b.logf("re-read run %d (%s): stackd %s", i+1, branch, fmtDuration(d))
		}
	}
	return ctx.Err()
}

// rereadRetrying is rereadOnce, made again (up to three times) when the
// watcher refreshed before the POST arrived (rare: its quiet period is
// about 100 ms).
func (b *bench) rereadRetrying(ctx context.Context, api *apiClient, ev *events, repo, branch string, run int) (time.Duration, error) {
	for attempt := range 3 {
		d, raced, err := b.rereadOnce(ctx, api, ev, repo, branch, attempt*1000+run)
		if !raced {
			return d, err
		}
		b.logf("re-read run %d: the watcher refreshed first; again", run+1)
	}
	return 0, errors.New("the watcher refreshed before every POST")
}

// rereadOnce commits on branch with the git CLI and times POST .../sync,
// which must report the commit; then it waits for the watcher's run of
// the same commit. raced reports that the watcher's run came first and
// took the change (the POST then measured a re-read with nothing new).
func (b *bench) rereadOnce(ctx context.Context, api *apiClient, ev *events, repo, branch string, seq int) (d time.Duration, raced bool, err error) {
	old, next, err := b.git.commitOn(ctx, repo, branch, seq)
	if err == nil {
		ev.discardBuffered() // stale events of earlier runs
		err = b.git.updateRef(ctx, repo, branch, old, next)
	}
	if err != nil {
		return 0, false, fmt.Errorf("commit on %s: %w", branch, err)
	}
	octx, cancel := b.opCtx(ctx)
	start := time.Now()
	sr, err := api.sync(octx, localID)
	d = time.Since(start)
	cancel()
	if err != nil {
		return 0, false, err
	}
	// The watcher's own run for the same commit: queued behind the POST's,
	// started after it, or (raced) finished before it. Bounded, in case a
	// server coalesces it away.
	wctx, wcancel := context.WithTimeout(ctx, 2*d+5*time.Second)
	wev, werr := ev.waitFor(wctx, func(e sseEvent) bool {
		if e.typ != "sync_finished" && e.typ != "sync_failed" {
			return false
		}
		r, err := e.syncResult()
		return err == nil && r.Trigger == "watcher"
	})
	wcancel()
	if hasUpdate(sr.UpdatedRefs, branch, next) {
		if werr != nil && ctx.Err() == nil {
			b.logf("re-read of %s: the watcher's run was not seen (%v); going on", branch, werr)
		}
		return d, false, nil
	}
	if werr == nil {
		if w, err := wev.syncResult(); err == nil && hasUpdate(w.UpdatedRefs, branch, next) {
			return 0, true, nil
		}
	}
	return 0, false, fmt.Errorf("re-read reported %s, want refs/heads/%s -> %.8s", refList(sr.UpdatedRefs), branch, next)
}

func hasUpdate(ups []client.RefUpdate, branch, sha string) bool {
	for _, u := range ups {
		if u.Ref == "refs/heads/"+branch && u.NewSha != nil && *u.NewSha == sha {
			return true
		}
	}
	return false
}

// watcherFigure serves a working repository of n branches and times a
// commit made with the git CLI until the view shows it: the view_updated
// event, then GET .../branches/<b> with the new tip.
func (b *bench) watcherFigure(ctx context.Context, n int) error {
	b.logf("== watcher at %s branches", fmtCount(n))
	res := b.res.at("watcher", n)
	fixture, err := b.fx.get(gittest.Shape{Branches: n, MetadataEvery: 1})
	if err != nil {
		return err
	}
	procDir, err := b.stackdDir("watch-" + strconv.Itoa(n))
	if err != nil {
		return err
	}
	defer func() {
		if !b.opt.keep {
			_ = os.RemoveAll(procDir)
		}
	}()
	repo := filepath.Join(procDir, "repo")
	if err := copyTree(ctx, fixture, repo); err != nil {
		return err
	}
	sd, err := b.startStackd(ctx, stackdOpts{label: fmt.Sprintf("%d-watcher", n), dataDir: filepath.Join(procDir, "data"), cwd: repo, dir: procDir}, true)
	if err != nil {
		res.stackd.fail(err)
		b.res.fact("watcher saw the commit", n, false, err.Error())
		return nil
	}
	defer sd.kill()
	api, err := newAPI(sd.base)
	if err != nil {
		return err
	}
	defer api.close()
	ev, err := api.subscribe(ctx, localID, b.opt.timeout)
	if err != nil {
		res.stackd.fail(err)
		return nil
	}
	defer ev.close()
	for i := range b.opt.runs {
		branch := changeTarget(n, i, b.opt.runs)
		old, next, err := b.git.commitOn(ctx, repo, branch, i)
		if err != nil {
			return fmt.Errorf("commit on %s: %w", branch, err)
		}
		d, err := b.watchOnce(ctx, api, ev, repo, branch, old, next)
		if err != nil {
			res.stackd.fail(err)
			b.res.fact("watcher saw the commit", n, false, err.Error())
			b.logf("watcher run %d: %v", i+1, err)
			if errors.Is(err, errTimeout) {
				return nil
			}
			continue
		}
		res.stackd.add(d.Seconds())
		b.res.fact("watcher saw the commit", n, true, "")
		b.logf("watcher run %d (%s): %s", i+1, branch, fmtDuration(d))
	}
	return ctx.Err()
}

func (b *bench) watchOnce(ctx context.Context, api *apiClient, ev *events, repo, branch, old, next string) (time.Duration, error) {
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	start := time.Now()
	if err := b.git.updateRef(octx, repo, branch, old, next); err != nil {
		return 0, err
	}
	for {
		if _, err := ev.waitFor(octx, isType("view_updated")); err != nil {
			return 0, fmt.Errorf("no view_updated with %s at %.8s: %w", branch, next, err)
		}
		sha, err := api.branchSha(octx, localID, branch)
		if err != nil {
			return 0, err
		}
		if sha == next {
			return time.Since(start), nil
		}
	}
}
