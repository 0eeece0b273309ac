package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// mirrorRun is the state of the mirror figures at one size: the upstream,
// the server holding the onboarded mirror and git's twin of it.
type mirrorRun struct {
	n       int
	dir     string // scratch of this size
	upDir   string // the served upstream (a copy of the fixture: it is changed)
	url     string
	sd      *stackd
	api     *apiClient
	twin    string
	version int64 // the view version the server last reported
}

const benchID = "bench"

// mirrorFigures measures onboarding, no-op and one-branch syncs, GET
// throughput, peak RSS, mirror size, restart and the view build times at
// n branches.
func (b *bench) mirrorFigures(ctx context.Context, n int) error {
	b.logf("== mirror figures at %s branches", fmtCount(n))
	fixture, err := b.fx.get(gittest.Shape{Branches: n, MetadataEvery: 1, Bare: true})
	if err != nil {
		return err
	}
	m := &mirrorRun{n: n, dir: filepath.Join(b.runDir, "mirror-"+strconv.Itoa(n))}
	rel := filepath.Join(strconv.Itoa(n), "up.git")
	m.upDir = filepath.Join(b.upBase, rel)
	if err := copyTree(ctx, fixture, m.upDir); err != nil {
		return err
	}
	m.url = "git://" + b.daemon + "/" + filepath.ToSlash(rel)
	defer func() {
		if m.sd != nil {
			m.sd.kill()
		}
		if m.api != nil {
			m.api.close()
		}
		if !b.opt.keep {
			_ = os.RemoveAll(m.dir)
			_ = os.RemoveAll(m.upDir)
		}
	}()

	if err := b.onboarding(ctx, m); err != nil {
		return err
	}
	if m.sd == nil {
		b.logf("no server holds the mirror at %s branches; skipping its other figures", fmtCount(n))
		skipped := errors.New("skipped: no onboarded mirror")
		for _, f := range figures {
			if f.step != "onboard" && slices.Contains(mirrorSteps, f.step) && b.opt.wants(f.step) &&
				(f.step != "dashboard" || b.dashAt(n)) {
				b.res.at(f.key, n).stackd.fail(skipped)
			}
		}
		return ctx.Err()
	}
	for _, step := range []struct {
		name string
		fn   func(context.Context, *mirrorRun) error
	}{
		{"noop", b.noopSync},
		{"changed", b.changedSync},
		{"get", b.getLoad},
		{"disk", b.mirrorDisk},
		{"restart", b.restart},
		{"dashboard", b.dashboard},
	} {
		if !b.opt.wants(step.name) {
			continue
		}
		if err := step.fn(ctx, m); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// mirrorsAt reports whether a selected mirror step runs at size n (the
// dashboard runs at some sizes only): else the size needs no mirror.
func (b *bench) mirrorsAt(n int) bool {
	for _, s := range mirrorSteps {
		if b.opt.wants(s) && (s != "dashboard" || b.dashAt(n)) {
			return true
		}
	}
	return false
}

// onboarding times POST /api/v1/repos on a fresh server and data directory
// per run against git clone --mirror of the same URL, alternating which
// goes first. The last run's server and clone stay for the other figures.
func (b *bench) onboarding(ctx context.Context, m *mirrorRun) error {
	runs := b.opt.runs
	// Results of runs that only provide a mirror for the other figures
	// are not reported.
	res, full := &result{}, &result{}
	if b.opt.wants("onboard") {
		res, full = b.res.at("onboard", m.n), b.res.at("fullbuild", m.n)
	} else {
		runs = 1
	}
	for i := range runs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if m.sd != nil {
			m.sd.kill()
			m.api.close()
			m.sd, m.api = nil, nil
		}
		procDir, err := b.stackdDir("mirror-"+strconv.Itoa(m.n), "stackd-"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		twin := filepath.Join(m.dir, "twin-"+strconv.Itoa(i)+".git")
		_ = os.RemoveAll(twin)

		stackdFirst := i%2 == 0
		for k := range 2 {
			if (k == 0) == stackdFirst {
				b.onboardStackd(ctx, m, i, procDir, res, full)
			} else {
				b.cloneTwin(ctx, m, i, twin, res)
			}
		}
		// Keep only the last run's mirror and clone: at 50,000 branches
		// each is large.
		if i > 0 && !b.opt.keep {
			_ = os.RemoveAll(filepath.Join(m.dir, "stackd-"+strconv.Itoa(i-1)))
			_ = os.RemoveAll(filepath.Join(m.dir, "twin-"+strconv.Itoa(i-1)+".git"))
		}
	}
	return ctx.Err()
}

func (b *bench) onboardStackd(ctx context.Context, m *mirrorRun, i int, procDir string, res, full *result) {
	fail := func(err error) {
		res.stackd.fail(err)
		full.stackd.fail(err)
		b.res.fact("onboard answered 201", m.n, false, err.Error())
		b.logf("onboarding run %d: stackd: %v", i+1, err)
	}
	sd, err := b.startStackd(ctx, stackdOpts{label: fmt.Sprintf("%d-onboard-%d", m.n, i), dataDir: filepath.Join(procDir, "data"), dir: procDir}, true)
	if err != nil {
		fail(err)
		return
	}
	api, err := newAPI(sd.base)
	if err != nil {
		sd.kill()
		fail(err)
		return
	}
	octx, cancel := b.opCtx(ctx)
	since := sd.buildCount()
	start := time.Now()
	repo, err := api.onboard(octx, m.url, benchID)
	d := time.Since(start)
	cancel()
	if err != nil {
		sd.kill()
		api.close()
		fail(err)
		return
	}
	m.sd, m.api, m.version = sd, api, viewVersion(repo.ViewVersion)
	b.res.fact("onboard answered 201", m.n, true, "")
	res.stackd.add(d.Seconds())
	msg := fmt.Sprintf("onboarding run %d: stackd %s", i+1, fmtDuration(d))
	if vb, ok := b.buildLine(sd, since, benchID); ok {
		full.stackd.add(vb.MS / 1000)
		msg += fmt.Sprintf(" (view build %.1f ms, full %t, %d branches)", vb.MS, vb.Full, vb.Branches)
	} else {
		full.stackd.na = noBuildLog
	}
	b.logf("%s", msg)
}

func (b *bench) cloneTwin(ctx context.Context, m *mirrorRun, i int, twin string, res *result) {
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	d, err := b.git.timed(octx, "", "clone", "--mirror", "--quiet", m.url, twin)
	if err != nil {
		res.base.fail(err)
		b.logf("onboarding run %d: git clone --mirror: %v", i+1, err)
		return
	}
	m.twin = twin
	res.base.add(d.Seconds())
	b.logf("onboarding run %d: git clone --mirror %s", i+1, fmtDuration(d))
}

// noopSync times POST .../sync with nothing changed upstream against git
// ls-remote of the same URL.
func (b *bench) noopSync(ctx context.Context, m *mirrorRun) error {
	res := b.res.at("noop", m.n)
	stackdDone := false
	for i := range b.opt.runs {
		for k := range 2 {
			if (k == 0) == (i%2 == 0) {
				if stackdDone {
					continue
				}
				octx, cancel := b.opCtx(ctx)
				start := time.Now()
				sr, err := m.api.sync(octx, benchID)
				d := time.Since(start)
				cancel()
				if err == nil && (len(sr.UpdatedRefs) != 0 || viewVersion(sr.ViewVersion) != m.version) {
					err = fmt.Errorf("no-op sync reported %d updated refs, view version %d -> %d", len(sr.UpdatedRefs), m.version, viewVersion(sr.ViewVersion))
					m.version = viewVersion(sr.ViewVersion)
				}
				if err != nil {
					res.stackd.fail(err)
					b.res.fact("no-op sync updated nothing", m.n, false, err.Error())
					b.logf("no-op sync run %d: stackd: %v", i+1, err)
					// A sync that timed out would time out again: the
					// remaining runs are skipped.
					stackdDone = errors.Is(err, errTimeout)
					continue
				}
				res.stackd.add(d.Seconds())
				b.res.fact("no-op sync updated nothing", m.n, true, "")
				b.logf("no-op sync run %d: stackd %s", i+1, fmtDuration(d))
			} else {
				octx, cancel := b.opCtx(ctx)
				d, err := b.git.timed(octx, "", "ls-remote", m.url)
				cancel()
				if err != nil {
					res.base.fail(err)
					continue
				}
				res.base.add(d.Seconds())
				b.logf("no-op sync run %d: git ls-remote %s", i+1, fmtDuration(d))
			}
		}
	}
	return ctx.Err()
}

// changedSync changes one branch upstream per run (a new commit on top of
// it, a different branch each run) and times stackd's sync and git fetch
// --prune into the twin against that same change. The server's "view
// built" line of the sync gives the incremental rebuild.
func (b *bench) changedSync(ctx context.Context, m *mirrorRun) error {
	res, inc := b.res.at("changed", m.n), b.res.at("incbuild", m.n)
	stackdDone := false
	for i := range b.opt.runs {
		branch := changeTarget(m.n, i, b.opt.runs)
		old, next, err := b.git.commitOn(ctx, m.upDir, branch, i)
		if err == nil {
			err = b.git.updateRef(ctx, m.upDir, branch, old, next)
		}
		if err != nil {
			return fmt.Errorf("change %s upstream: %w", branch, err)
		}
		for k := range 2 {
			if (k == 0) == (i%2 == 0) {
				if stackdDone {
					continue
				}
				since := m.sd.buildCount()
				octx, cancel := b.opCtx(ctx)
				start := time.Now()
				sr, err := m.api.sync(octx, benchID)
				d := time.Since(start)
				cancel()
				if err == nil {
					m.version = viewVersion(sr.ViewVersion)
					if len(sr.UpdatedRefs) != 1 || sr.UpdatedRefs[0].Ref != "refs/heads/"+branch ||
						sr.UpdatedRefs[0].NewSha == nil || *sr.UpdatedRefs[0].NewSha != next {
						err = fmt.Errorf("sync reported %s, want exactly refs/heads/%s -> %.8s", refList(sr.UpdatedRefs), branch, next)
					}
				}
				if err != nil {
					res.stackd.fail(err)
					inc.stackd.fail(err)
					b.res.fact("changed branch reported", m.n, false, err.Error())
					b.logf("changed-branch run %d: stackd: %v", i+1, err)
					stackdDone = errors.Is(err, errTimeout)
					continue
				}
				res.stackd.add(d.Seconds())
				b.res.fact("changed branch reported", m.n, true, "")
				msg := fmt.Sprintf("changed-branch run %d (%s): stackd %s", i+1, branch, fmtDuration(d))
				// A server that rebuilt in full after all is measured as
				// such: its "incremental" rebuild is the full one.
				if vb, ok := b.buildLine(m.sd, since, benchID); ok {
					inc.stackd.add(vb.MS / 1000)
					msg += fmt.Sprintf(" (view build %.2f ms, full %t, %d recomputed)", vb.MS, vb.Full, vb.Recomputed)
				} else {
					inc.stackd.na = noBuildLog
				}
				b.logf("%s", msg)
			} else {
				if m.twin == "" {
					res.base.fail(errors.New("no twin mirror"))
					continue
				}
				octx, cancel := b.opCtx(ctx)
				d, err := b.git.timed(octx, m.twin, "fetch", "--prune", "--quiet")
				cancel()
				if err != nil {
					res.base.fail(err)
					continue
				}
				res.base.add(d.Seconds())
				b.logf("changed-branch run %d: git fetch --prune %s", i+1, fmtDuration(d))
			}
		}
	}
	// The incremental rebuild's baseline is the full build at this size.
	full := b.res.peek("fullbuild", m.n).stackd
	if !full.ok() && full.na == "" && full.err == "" {
		full.na = "onboarding not measured"
	}
	inc.base = full
	return ctx.Err()
}

func refList(ups []client.RefUpdate) string {
	if len(ups) == 0 {
		return "no updated refs"
	}
	var s []string
	for _, u := range ups[:min(len(ups), 3)] {
		s = append(s, string(u.Change)+" "+u.Ref)
	}
	if len(ups) > 3 {
		s = append(s, fmt.Sprintf("and %d more", len(ups)-3))
	}
	return fmt.Sprint(s)
}

// getLoad fetches the view once (identity and gzip), serves the same bytes
// from the plain byte server, and drives the same load against both; then
// reads stackd's peak RSS.
func (b *bench) getLoad(ctx context.Context, m *mirrorRun) error {
	defer b.peakRSS(m)
	res, gz := b.res.at("get", m.n), b.res.at("getgz", m.n)
	path := "/api/v1/repos/" + benchID + "/view"
	octx, cancel := b.opCtx(ctx)
	status, _, body, err := m.api.rawGet(octx, path, "")
	if err == nil && status != 200 {
		err = statusErr("GET view", status, body)
	}
	var gzBody []byte
	if err == nil {
		var enc string
		status, enc, gzBody, err = m.api.rawGet(octx, path, "gzip")
		if err == nil && (status != 200 || enc != "gzip") {
			gzBody = nil
		}
	}
	cancel()
	if err != nil {
		res.stackd.fail(err)
		gz.stackd.fail(err)
		return nil
	}
	file := filepath.Join(m.dir, "view.json")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		return fmt.Errorf("view bytes: %w", err)
	}
	gzFile := ""
	if gzBody != nil {
		gzFile = filepath.Join(m.dir, "view.json.gz")
		if err := os.WriteFile(gzFile, gzBody, 0o644); err != nil {
			return fmt.Errorf("view bytes: %w", err)
		}
	}
	bs, plainURL, err := b.startByteServer(ctx, file, gzFile)
	if err != nil {
		res.base.fail(err)
		return nil
	}
	defer bs.kill()
	b.logf("GET view: %d bytes (gzip: %d bytes)", len(body), len(gzBody))

	measure := func(c *cell, url string, gzip bool, want int, who string) {
		lr, err := runLoad(ctx, loadSpec{url: url, gzip: gzip, clients: b.opt.clients, duration: b.opt.duration, wantBytes: want, timeout: b.opt.timeout})
		if err != nil {
			c.fail(err)
			b.logf("GET load %s: %v", who, err)
			return
		}
		c.add(lr.rps())
		c.extra = lr.extra()
		if lr.failures > 0 {
			c.extra += fmt.Sprintf(", %d failed: %s", lr.failures, lr.firstFailure)
		}
		b.logf("GET load %s: %.0f req/s, %s, %d failed", who, lr.rps(), lr.extra(), lr.failures)
	}
	// Rounds alternate stackd and the plain server, so that a drift of
	// the machine during the step weighs on both; each cell reports the
	// median of its rounds.
	for range b.opt.getRounds {
		measure(&res.stackd, m.sd.base+path, false, len(body), "stackd")
		measure(&res.base, plainURL+path, false, len(body), "plain")
	}
	if gzBody == nil {
		gz.stackd.na = "no gzip answer"
		return nil
	}
	for range b.opt.getRounds {
		measure(&gz.stackd, m.sd.base+path, true, len(gzBody), "stackd gzip")
		measure(&gz.base, plainURL+path, true, len(gzBody), "plain gzip")
	}
	return nil
}

func (b *bench) peakRSS(m *mirrorRun) {
	res := b.res.at("rss", m.n)
	v, err := m.sd.peakRSS()
	if err != nil {
		res.stackd.fail(err)
		return
	}
	res.stackd.add(float64(v))
	b.logf("peak RSS: %s", fmtValue(unitBytes, v))
}

// mirrorDisk compares the server's mirror directory with git's twin.
func (b *bench) mirrorDisk(ctx context.Context, m *mirrorRun) error {
	res := b.res.at("disk", m.n)
	v, err := diskUsage(filepath.Join(m.sd.dataDir, "mirrors", benchID+".git"))
	if err != nil {
		res.stackd.fail(err)
	} else {
		res.stackd.add(float64(v))
	}
	if m.twin == "" {
		res.base.fail(errors.New("no twin mirror"))
		return nil
	}
	t, err := diskUsage(m.twin)
	if err != nil {
		res.base.fail(err)
	} else {
		res.base.add(float64(t))
	}
	b.logf("mirror on disk: stackd %s, git %s", fmtValue(unitBytes, float64(v)), fmtValue(unitBytes, float64(t)))
	return nil
}

// restart stops the server (SIGTERM) and starts it again on the same data
// directory with the mirror configured in a --config file, timing process
// start to the first GET of the view that answers 200 with all n+1
// branches. It waits on the repository's events, not on a timer: after
// subscribing it reads the view, and reads it again after each
// view_updated, sync_finished or sync_failed event.
func (b *bench) restart(ctx context.Context, m *mirrorRun) error {
	res := b.res.at("restart", m.n)
	procDir := filepath.Dir(m.sd.dataDir)
	cfg := filepath.Join(procDir, "stackd.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "repos:\n  - id: %s\n    url: %s\n", benchID, m.url), 0o644); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dataDir := m.sd.dataDir
	for i := range b.opt.runs {
		if err := m.sd.stop(30 * time.Second); err != nil {
			b.logf("restart run %d: %v", i+1, err)
		}
		m.api.close()
		m.sd, m.api = nil, nil
		d, sd, err := b.restartOnce(ctx, m, dataDir, procDir, cfg, i)
		if sd != nil {
			m.sd = sd
			m.api, _ = newAPI(sd.base)
		}
		if err != nil {
			res.stackd.fail(err)
			b.res.fact("restart served the full view", m.n, false, err.Error())
			b.logf("restart run %d: %v", i+1, err)
			if sd == nil || errors.Is(err, errTimeout) {
				return nil
			}
			continue
		}
		res.stackd.add(d.Seconds())
		b.res.fact("restart served the full view", m.n, true, "")
		b.logf("restart run %d: full view after %s", i+1, fmtDuration(d))
	}
	return nil
}

func (b *bench) restartOnce(ctx context.Context, m *mirrorRun, dataDir, procDir, cfg string, i int) (time.Duration, *stackd, error) {
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	sd, err := b.spawnStackd(stackdOpts{label: fmt.Sprintf("%d-restart-%d", m.n, i), dataDir: dataDir, config: cfg, dir: procDir})
	if err != nil {
		return 0, nil, err
	}
	start := sd.started
	if err := sd.waitHealthy(octx, b.opt.timeout, false); err != nil {
		return 0, sd, err
	}
	api, err := newAPI(sd.base)
	if err != nil {
		return 0, sd, err
	}
	defer api.close()
	ev, err := api.subscribe(octx, benchID, b.opt.timeout)
	if err != nil {
		return 0, sd, err
	}
	defer ev.close()
	want := m.n + 1
	last := ""
	for {
		status, _, body, err := api.rawGet(octx, "/api/v1/repos/"+benchID+"/view", "")
		d := time.Since(start) // the view has arrived; counting it is the client's work
		if err != nil {
			return 0, sd, err
		}
		if status == 200 {
			got, err := viewBranches(body)
			if err != nil {
				return 0, sd, err
			}
			if got == want {
				return d, sd, nil
			}
			last = fmt.Sprintf("view has %d branches, want %d", got, want)
		} else {
			last = fmt.Sprintf("view answered %d: %s", status, compactJSON(body))
		}
		if _, err := ev.waitFor(octx, isType("view_updated", "sync_finished", "sync_failed")); err != nil {
			return 0, sd, fmt.Errorf("%s; %w", last, err)
		}
	}
}

// viewVersion reads a nullable viewVersion (null, no view yet, is 0).
func viewVersion(v *int64) int64 {
	if v == nil {
		return 0
	}
	return *v
}
