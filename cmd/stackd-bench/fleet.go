package main

// The fleet figures (issue 18, "Fleet scale on one server"): one server
// holding many mirrors, measured against git and a plain Go server on the
// same repositories in the same run.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// fleetOptions are the sizes of the fleet figures.
type fleetOptions struct {
	repos    []int // growth sizes: repositories served
	branches int   // branches of each repository
	streams  []int // growth sizes: concurrent event streams
	storm    stormOptions
}

// stormOptions shape the webhook storm.
type stormOptions struct {
	deliveries int
	repos      int
	span       time.Duration
	debounce   time.Duration // the server's quiet window
	maxDelay   time.Duration
}

func (f *fleetOptions) setStorm(smoke bool) {
	f.storm = stormOptions{deliveries: 2000, repos: 200, span: 10 * time.Second, debounce: 2 * time.Second, maxDelay: 10 * time.Second}
	if smoke {
		f.storm = stormOptions{deliveries: 60, repos: 10, span: time.Second, debounce: 200 * time.Millisecond, maxDelay: time.Second}
	}
}

// fleetParallel is the parallelism of onboarding and sweeps, on both sides
// (the issue's "4 at a time", and the server's default --sync-workers).
const fleetParallel = 4

// fanoutRepos is how many repositories the event streams are spread over.
const fanoutRepos = 100

// stormSecret signs the storm's deliveries.
const stormSecret = "fleet-bench-secret"

var fleetFigures = []figure{
	{key: "fonboard", step: "fleet", sizeUnit: "repos", name: "fleet: onboarding, 4 at a time", unit: unitSeconds, baseline: "`git clone --mirror`, 4 at a time",
		target: always(target{ratioAtMost, 1.5})},
	{key: "fsweep", step: "fleet", sizeUnit: "repos", name: "fleet: sweep, nothing changed (POST sync of each, 4 at a time)", unit: unitSeconds, baseline: "`git ls-remote` of each, 4 at a time",
		target: always(target{ratioAtMost, 1.0})},
	{key: "fcpu", step: "fleet", sizeUnit: "repos", name: "fleet: server CPU per interval", unit: unitSeconds, baseline: "CPU of the `git ls-remote` sweep",
		target: always(target{ratioAtMost, 0.5})},
	// Spread: the share of two whole intervals' listings that fell in
	// their busiest tenth; evenly spread is 10%. The scheduler's first due
	// times are a hash of the id over the interval and later ones the
	// interval ±10% after a run: at most twice the fair share holds for
	// that at 100 repositories and more (a simulation of the hash over
	// r0000..r0999 with the jitter: busiest tenth p99 17% at 100, 12% at
	// 1,000; at 20, 20% is its p99).
	{key: "fspread", step: "fleet", sizeUnit: "repos", name: "fleet: interval listings in the busiest tenth of two intervals", unit: unitShare, noGrowth: true,
		target: always(target{atMost, 2 * 0.1})},
	{key: "frestart", step: "fleet", sizeUnit: "repos", name: "fleet: restart to every view served", unit: unitSeconds,
		target: always(target{atMost, 10})},
	{key: "frss", step: "fleet", sizeUnit: "repos", name: "fleet: RSS, every view served", unit: unitBytes, baseline: "an empty server",
		target: atLeastSize(1000, target{atMost, 1 << 30})},
	{key: "frepomem", step: "fleet", sizeUnit: "repos", name: "fleet: memory per repository beyond its view bytes", unit: unitBytes, baseline: "its view's bytes",
		target: always(target{}), info: true},
	{key: "flist", step: "fleet", sizeUnit: "repos", name: "fleet: `GET /api/v1/repos` p50, 8 clients", unit: unitSeconds, baseline: "plain `net/http`, same bytes, p50",
		target: always(target{atMost, 0.010})},
	{key: "frefused", step: "fleet", sizeUnit: "streams", name: "fleet: event streams refused", unit: unitCount, noGrowth: true,
		target: always(target{atMost, 0})},
	{key: "fdeliver", step: "fleet", sizeUnit: "streams", name: "fleet: `view_updated` p99 after the sync's answer", unit: unitSeconds, baseline: "plain Go SSE fan-out, p99 after the publish",
		target: always(target{atMost, 1})},
	{key: "fstreammem", step: "fleet", sizeUnit: "streams", name: "fleet: server memory per idle stream", unit: unitBytes, baseline: "plain Go SSE fan-out",
		target: always(target{atMost, 16 << 10})},
	{key: "fleftgr", step: "fleet", sizeUnit: "streams", name: "fleet: goroutines left after the clients left", unit: unitCount, noGrowth: true,
		target: always(target{atMost, 0})},
	{key: "fleftfd", step: "fleet", sizeUnit: "streams", name: "fleet: file descriptors left after the clients left", unit: unitCount, noGrowth: true,
		target: always(target{atMost, 0})},
	{key: "fstorm", step: "fleet", sizeUnit: "repos", name: "fleet: webhook storm, answer p99", unit: unitSeconds,
		target: always(target{atMost, 0.050})},
	{key: "fstormfetch", step: "fleet", sizeUnit: "repos", name: "fleet: webhook storm, fetches beyond quiet windows + 1 (worst repository)", unit: unitCount, noGrowth: true,
		target: always(target{atMost, 0})},
	{key: "fstormlost", step: "fleet", sizeUnit: "repos", name: "fleet: webhook storm, pushed tips missing from their views", unit: unitCount, noGrowth: true,
		target: always(target{atMost, 0})},
}

func init() { figures = append(figures, fleetFigures...) }

// The sizes the issue sets the fleet targets at: 1,000 repositories, and
// 10,000 event streams. A fleet target not measured at its size (a run at
// reduced sizes) counts as not met.
const (
	issueRepos   = 1000
	issueStreams = 10_000
)

// issueSize is the size at which the issue sets f's target.
func issueSize(f figure) int {
	if f.sizeUnit == "streams" {
		return issueStreams
	}
	return issueRepos
}

// targetCheck is one fleet target and whether the run met it.
type targetCheck struct {
	name string
	met  bool
}

// fleetTargets lists the fleet targets of a run: every judged row of the
// fleet table, growth rows included (its result "pass" is met;
// "**FAIL**", "error" or "n/a" is not), then, as not met, every figure
// with a target that has no row at the issue's size (issueSize) and every
// figure with a growth target (all but the noGrowth counts) that has no
// growth row up to that size.
func fleetTargets(rows []row) []targetCheck {
	var out []targetCheck
	have := map[string]bool{}
	for _, r := range rows {
		if r.step != "fleet" {
			continue
		}
		if r.growth {
			have["growth:"+r.key+":"+strconv.Itoa(r.n)] = true
		} else {
			have[r.key+":"+strconv.Itoa(r.n)] = true
		}
		if r.target == "—" || r.target == "" {
			continue
		}
		out = append(out, targetCheck{name: r.figure + " (" + r.size + ")", met: r.result == "pass"})
	}
	for _, f := range figures {
		if f.step != "fleet" {
			continue
		}
		n := issueSize(f)
		label := fmtCount(n) + " " + f.sizeUnit
		if !f.info && f.target(n).kind != noTarget && !have[f.key+":"+strconv.Itoa(n)] {
			out = append(out, targetCheck{name: f.name + " (" + label + ": not measured)"})
		}
		if !f.noGrowth && !have["growth:"+f.key+":"+strconv.Itoa(n)] {
			out = append(out, targetCheck{name: f.name + ": growth (to " + label + ": not measured)"})
		}
	}
	return out
}

// fleetSummary is the line printed after the fleet table: whether every
// fleet target was met, and which were not. A smoke run judges none.
func fleetSummary(rows []row, smoke bool) string {
	if smoke {
		return "fleet targets: not judged (smoke run)"
	}
	checks := fleetTargets(rows)
	var failing []string
	for _, c := range checks {
		if !c.met {
			failing = append(failing, c.name)
		}
	}
	if len(failing) == 0 {
		return fmt.Sprintf("fleet targets: all %d met", len(checks))
	}
	return fmt.Sprintf("fleet targets: %d of %d met; failing: %s", len(checks)-len(failing), len(checks), strings.Join(failing, "; "))
}

// fleetRun is the state of the fleet figures: the upstreams and what the
// sweep measured (the CPU figure's baseline).
type fleetRun struct {
	upDir   string // served by git daemon: upDir/fleet/rNNNN.git
	daemon  string
	tips    *upTips
	emptyRS float64 // RSS of a server with no repository
	dir     string  // scratch
}

// fleetID is the id of fleet repository i; fleetURL its upstream.
func fleetID(i int) string { return fmt.Sprintf("r%04d", i) }

func (fr *fleetRun) url(i int) string {
	return "git://" + fr.daemon + "/fleet/" + fleetID(i) + ".git"
}

func (fr *fleetRun) gitDir(i int) string {
	return filepath.Join(fr.upDir, "fleet", fleetID(i)+".git")
}

// fleetFigures measures the fleet at every -fleet-repos size, then the
// event fan-out at every -fleet-streams size on the largest fleet.
func (b *bench) fleetFigures(ctx context.Context) error {
	fo := b.opt.fleet
	largest := slices.Max(fo.repos)
	b.logf("== fleet figures at %v repositories of %s branches", fo.repos, fmtCount(fo.branches))
	raiseNoFile(b)
	fr := &fleetRun{dir: filepath.Join(b.runDir, "fleet")}
	var err error
	if fr.upDir, fr.tips, err = b.fleetUpstreams(ctx, largest); err != nil {
		return err
	}
	defer func() {
		if !b.opt.keep {
			_ = os.RemoveAll(fr.dir)
		}
	}()
	if fr.daemon, err = b.procs.startDaemon(ctx, b.git.env, fr.upDir); err != nil {
		return fmt.Errorf("git daemon (fleet): %w", err)
	}
	b.logf("fleet git daemon on %s", fr.daemon)
	if err := b.emptyServer(ctx, fr); err != nil {
		return err
	}
	for _, n := range fo.repos {
		if err := b.fleetAt(ctx, fr, n, n == largest); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// emptyServer reads the RSS of a server that serves no repository: the
// baseline of the fleet's RSS.
func (b *bench) emptyServer(ctx context.Context, fr *fleetRun) error {
	dir, err := b.stackdDir("fleet", "empty")
	if err != nil {
		return err
	}
	sd, err := b.startStackd(ctx, stackdOpts{label: "fleet-empty", dataDir: filepath.Join(dir, "data"), dir: dir}, true)
	if err != nil {
		return fmt.Errorf("empty server: %w", err)
	}
	defer sd.kill()
	fr.emptyRS, err = procRSS(sd.cmd.Process.Pid)
	if err != nil {
		return err
	}
	b.logf("empty server: RSS %s", fmtValue(unitBytes, fr.emptyRS))
	return nil
}

// fleetServer is the fleet's server, started with the metrics listener
// and the webhook secret.
func (b *bench) fleetServer(ctx context.Context, label, dir string, interval time.Duration) (*stackd, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	metrics := "127.0.0.1:" + strconv.Itoa(port)
	st := b.opt.fleet.storm
	args := []string{"--metrics-addr", metrics, "--metrics-pprof", "--sync-interval", interval.String(),
		"--webhook-debounce", st.debounce.String(), "--webhook-max-delay", st.maxDelay.String()}
	args = append(args, b.streamLimitFlags()...)
	sd, err := b.startStackd(ctx, stackdOpts{label: label, dataDir: filepath.Join(dir, "data"), dir: dir,
		args: args, env: []string{"STACKD_WEBHOOK_SECRET=" + stormSecret}}, true)
	if err != nil {
		return nil, "", err
	}
	return sd, "http://" + metrics, nil
}

// streamLimitFlags raises the server's event-stream limits to the largest
// -fleet-streams when the binary has the flags (issue 18's other part);
// without them the refusals are the figure.
func (b *bench) streamLimitFlags() []string {
	if b.streamFlags != nil {
		return *b.streamFlags
	}
	out, _ := exec.Command(b.opt.stackd, "serve", "-h").CombinedOutput()
	var flags []string
	most := slices.Max(b.opt.fleet.streams)
	if bytes.Contains(out, []byte("-max-event-streams ")) || bytes.Contains(out, []byte("-max-event-streams\n")) {
		flags = append(flags, "--max-event-streams", strconv.Itoa(most+1000))
	}
	if bytes.Contains(out, []byte("-max-event-streams-per-client")) {
		flags = append(flags, "--max-event-streams-per-client", strconv.Itoa(64))
	}
	if len(flags) == 0 {
		b.fleetNotes = append(b.fleetNotes, "the server has no --max-event-streams flag: its built-in stream limits apply, and the refusals are reported")
	}
	b.streamFlags = &flags
	return flags
}

// fleetAt measures the fleet figures at n repositories.
func (b *bench) fleetAt(ctx context.Context, fr *fleetRun, n int, fanout bool) error {
	b.logf("== fleet at %s repositories", fmtCount(n))
	dir, err := b.stackdDir("fleet", "n"+strconv.Itoa(n))
	if err != nil {
		return err
	}
	sd, metrics, err := b.fleetServer(ctx, fmt.Sprintf("fleet-%d", n), dir, 0)
	if err != nil {
		return fmt.Errorf("fleet server: %w", err)
	}
	defer func() { sd.kill() }()
	api, err := newAPI(sd.base)
	if err != nil {
		return err
	}
	defer api.close()

	// Onboarding: the server, then git clone --mirror of the same URLs.
	res := b.res.at("fonboard", n)
	start := time.Now()
	err = forEach(ctx, n, fleetParallel, func(ctx context.Context, i int) error {
		octx, cancel := b.opCtx(ctx)
		defer cancel()
		_, err := api.onboard(octx, fr.url(i), fleetID(i))
		return err
	})
	d := time.Since(start)
	if err != nil {
		res.stackd.fail(err)
		b.res.fact("fleet onboarded", n, false, err.Error())
		b.logf("fleet onboarding: %v", err)
		return ctx.Err()
	}
	res.stackd.add(d.Seconds())
	b.res.fact("fleet onboarded", n, true, "")
	clones := filepath.Join(dir, "clones")
	start = time.Now()
	err = forEach(ctx, n, fleetParallel, func(ctx context.Context, i int) error {
		octx, cancel := b.opCtx(ctx)
		defer cancel()
		_, err := b.git.timed(octx, "", "clone", "--mirror", "--quiet", fr.url(i), filepath.Join(clones, fleetID(i)+".git"))
		return err
	})
	gd := time.Since(start)
	if err != nil {
		res.base.fail(err)
	} else {
		res.base.add(gd.Seconds())
	}
	_ = os.RemoveAll(clones)
	b.logf("fleet onboarding: stackd %s, git clone --mirror %s", fmtDuration(d), fmtDuration(gd))

	sweepCPU := b.fleetSweep(ctx, api, fr, n)
	b.fleetList(ctx, api, n)
	if fanout {
		for _, k := range b.opt.fleet.streams {
			if err := b.fanout(ctx, sd, api, metrics, fr, n, k); err != nil {
				return err
			}
		}
	}
	b.storm(ctx, sd, api, metrics, fr, n)

	// Restart on the same data directory, now with the interval loop on.
	interval := b.fleetInterval(sweepCPU.wall)
	if err := sd.stop(30 * time.Second); err != nil {
		b.logf("fleet restart: %v", err)
	}
	api.close()
	b.fleetRestart(ctx, fr, dir, n, interval, sweepCPU.cpu)
	return ctx.Err()
}

// sweepCost is what the git ls-remote sweep cost.
type sweepCost struct {
	wall time.Duration // median
	cpu  float64       // seconds, median
}

// fleetSweep times one sweep over every repository with nothing changed
// upstream: the server has no sweep trigger, so the sweep is POST .../sync
// of each repository, fleetParallel at a time, against git ls-remote of
// each at the same parallelism. It returns the ls-remote sweep's cost.
func (b *bench) fleetSweep(ctx context.Context, api *apiClient, fr *fleetRun, n int) sweepCost {
	res := b.res.at("fsweep", n)
	var walls, cpus []float64
	for run := range b.opt.runs {
		for k := range 2 {
			if (k == 0) == (run%2 == 0) {
				start := time.Now()
				err := forEach(ctx, n, fleetParallel, func(ctx context.Context, i int) error {
					octx, cancel := b.opCtx(ctx)
					defer cancel()
					sr, err := api.sync(octx, fleetID(i))
					if err == nil && len(sr.UpdatedRefs) != 0 {
						err = fmt.Errorf("%s: no-op sync reported %d updated refs", fleetID(i), len(sr.UpdatedRefs))
					}
					return err
				})
				d := time.Since(start)
				if err != nil {
					res.stackd.fail(err)
					b.res.fact("fleet sweep updated nothing", n, false, err.Error())
					b.logf("fleet sweep run %d: stackd: %v", run+1, err)
					continue
				}
				res.stackd.add(d.Seconds())
				b.res.fact("fleet sweep updated nothing", n, true, "")
				b.logf("fleet sweep run %d: stackd %s", run+1, fmtDuration(d))
			} else {
				var cpu atomic.Int64 // microseconds
				start := time.Now()
				err := forEach(ctx, n, fleetParallel, func(ctx context.Context, i int) error {
					octx, cancel := b.opCtx(ctx)
					defer cancel()
					c, err := b.git.cpu(octx, "ls-remote", fr.url(i))
					cpu.Add(c.Microseconds())
					return err
				})
				d := time.Since(start)
				if err != nil {
					res.base.fail(err)
					continue
				}
				res.base.add(d.Seconds())
				walls = append(walls, d.Seconds())
				cpus = append(cpus, float64(cpu.Load())/1e6)
				b.logf("fleet sweep run %d: git ls-remote %s (CPU %s)", run+1, fmtDuration(d), fmtDuration(time.Duration(cpu.Load())*time.Microsecond))
			}
		}
	}
	if len(walls) == 0 {
		return sweepCost{}
	}
	return sweepCost{wall: time.Duration(median(walls) * float64(time.Second)), cpu: median(cpus)}
}

// fleetInterval is the --sync-interval of the CPU figure: long enough for
// a sweep to fit several times.
func (b *bench) fleetInterval(sweep time.Duration) time.Duration {
	if b.opt.smoke {
		return time.Second
	}
	return max(5*time.Second, 4*sweep).Round(time.Second)
}

// fleetList drives GET /api/v1/repos with -clients clients against the
// plain byte server serving the same bytes, and reports the p50s.
func (b *bench) fleetList(ctx context.Context, api *apiClient, n int) {
	res := b.res.at("flist", n)
	octx, cancel := b.opCtx(ctx)
	status, _, body, err := api.rawGet(octx, "/api/v1/repos", "")
	cancel()
	if err == nil && status != http.StatusOK {
		err = statusErr("GET /api/v1/repos", status, body)
	}
	if err == nil && bytes.Count(body, []byte(`"id":`)) < n {
		err = fmt.Errorf("GET /api/v1/repos lists fewer than %d repositories", n)
	}
	if err != nil {
		res.stackd.fail(err)
		return
	}
	file := filepath.Join(b.runDir, "fleet", fmt.Sprintf("repos-%d.json", n))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		res.base.fail(err)
		return
	}
	if err := os.WriteFile(file, body, 0o644); err != nil {
		res.base.fail(err)
		return
	}
	bs, plainURL, err := b.startByteServer(ctx, file, "")
	if err != nil {
		res.base.fail(err)
	}
	if bs != nil {
		defer bs.kill()
	}
	measure := func(c *cell, url, who string) {
		lr, err := runLoad(ctx, loadSpec{url: url, clients: b.opt.clients, duration: b.opt.duration, wantBytes: len(body), timeout: b.opt.timeout})
		if err != nil {
			c.fail(err)
			b.logf("GET /api/v1/repos %s: %v", who, err)
			return
		}
		c.add(lr.p50.Seconds())
		c.extra = fmt.Sprintf("p99 %s, %.0f req/s", fmtDuration(lr.p99), lr.rps())
		b.logf("GET /api/v1/repos %s: %.0f req/s, %s, %d failed", who, lr.rps(), lr.extra(), lr.failures)
	}
	for range b.opt.getRounds {
		measure(&res.stackd, api.base+"/api/v1/repos", "stackd")
		if bs != nil {
			measure(&res.base, plainURL+"/api/v1/repos", "plain")
		}
	}
	b.logf("GET /api/v1/repos: %d bytes for %d repositories", len(body), n)
}

// fleetRestart starts the server again on the data directory with the
// interval loop on and times process start to every view answering 200;
// then reads its RSS, and its CPU time over whole intervals.
func (b *bench) fleetRestart(ctx context.Context, fr *fleetRun, dir string, n int, interval time.Duration, lsRemoteCPU float64) {
	res := b.res.at("frestart", n)
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	sd, metrics, err := b.fleetServer(octx, fmt.Sprintf("fleet-%d-restart", n), dir, interval)
	if err != nil {
		res.stackd.fail(err)
		return
	}
	defer sd.kill()
	api, err := newAPI(sd.base)
	if err != nil {
		res.stackd.fail(err)
		return
	}
	defer api.close()
	viewBytes, err := b.everyView(octx, api, n)
	d := time.Since(sd.started)
	if err != nil {
		res.stackd.fail(err)
		b.res.fact("fleet restart served every view", n, false, err.Error())
		b.logf("fleet restart: %v", err)
		return
	}
	res.stackd.add(d.Seconds())
	b.res.fact("fleet restart served every view", n, true, "")
	b.logf("fleet restart: every view after %s (interval %s)", fmtDuration(d), interval)

	rss, mem := b.res.at("frss", n), b.res.at("frepomem", n)
	if v, err := procRSS(sd.cmd.Process.Pid); err != nil {
		rss.stackd.fail(err)
		mem.stackd.fail(err)
	} else {
		rss.stackd.add(v)
		rss.base.add(fr.emptyRS)
		per := (v - fr.emptyRS) / float64(n)
		if n < 1000 {
			rss.stackd.extra = "on track for " + fmtValue(unitBytes, fr.emptyRS+1000*per) + " at 1,000"
		}
		mem.stackd.add(per - viewBytes)
		mem.base.add(viewBytes)
		b.logf("fleet RSS: %s with %d repositories (empty server %s; %s per repository, view %s)",
			fmtValue(unitBytes, v), n, fmtValue(unitBytes, fr.emptyRS), fmtValue(unitBytes, per), fmtValue(unitBytes, viewBytes))
	}
	b.intervalCPU(ctx, sd, api, metrics, n, interval, lsRemoteCPU)
	b.idleMemory(ctx, sd, metrics, fr, n)
}

// idleMemory logs the server's RSS, and its Go heap and stacks in use
// after a collection, once the interval window has passed: every
// repository then had no-op runs only, and an idle repository lets its
// caches go (README, Memory). The figures are for reading, not targets.
func (b *bench) idleMemory(ctx context.Context, sd *stackd, metrics string, fr *fleetRun, n int) {
	rss, err := procRSS(sd.cmd.Process.Pid)
	if err != nil {
		b.logf("fleet idle memory: %v", err)
		return
	}
	heap, err := goMemInUse(ctx, metrics)
	if err != nil {
		b.logf("fleet idle memory: %v", err)
		return
	}
	b.logf("fleet RSS after the interval window (idle repositories): %s (%s per repository beyond the empty server); Go heap and stacks in use after a collection %s (%s per repository)",
		fmtValue(unitBytes, rss), fmtValue(unitBytes, (rss-fr.emptyRS)/float64(n)), fmtValue(unitBytes, heap), fmtValue(unitBytes, heap/float64(n)))
}

// everyView waits until every fleet repository's view answers 200 with
// every branch and returns the mean size of a view's (identity) body.
// Between passes over the repositories that have not answered yet it waits
// 20 ms, as a readiness probe does.
func (b *bench) everyView(ctx context.Context, api *apiClient, n int) (float64, error) {
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	var total atomic.Int64
	want := b.opt.fleet.branches + 1
	for {
		var mu sync.Mutex
		var next []int
		err := forEach(ctx, len(pending), 8, func(ctx context.Context, k int) error {
			i := pending[k]
			status, _, body, err := api.rawGet(ctx, "/api/v1/repos/"+fleetID(i)+"/view", "")
			if err != nil && ctx.Err() != nil {
				return err
			}
			if err != nil || status != http.StatusOK {
				mu.Lock()
				next = append(next, i)
				mu.Unlock()
				return nil
			}
			// A view served before the mirror's refs are read may hold
			// fewer branches: it counts once it holds them all. Every
			// branch of a stack has a "children" key (a byte count, not a
			// parse: the check must not cost the server's time); the
			// first and last views are parsed as well.
			full := bytes.Count(body, []byte(`"children":`)) >= want-1
			if full && (i == 0 || i == n-1) {
				got, err := viewBranches(body)
				if err != nil {
					return err
				}
				full = got >= want
			}
			if !full {
				mu.Lock()
				next = append(next, i)
				mu.Unlock()
				return nil
			}
			total.Add(int64(len(body)))
			return nil
		})
		if err != nil {
			return 0, err
		}
		if len(next) == 0 {
			return float64(total.Load()) / float64(n), nil
		}
		pending = next
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%d views not served: %w", len(pending), context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// intervalCPU waits for the restart's start-up runs to end (startupDone),
// then reads the server's CPU time (procCPUFine) over two whole intervals
// and the interval runs that ended in them, and reports the CPU of one
// interval's worth of runs (n of them) against the CPU of the git
// ls-remote sweep: the steady state, not the start-up. Nothing asks the
// server anything during the window: the run counter is scraped just
// before and just after it, and the runs are then counted per tenth of
// the window from the sync history (their end times): the busiest tenth's
// share is the spread figure (fspread).
func (b *bench) intervalCPU(ctx context.Context, sd *stackd, api *apiClient, metrics string, n int, interval time.Duration, lsRemoteCPU float64) {
	res, spread := b.res.at("fcpu", n), b.res.at("fspread", n)
	if lsRemoteCPU > 0 {
		res.base.add(lsRemoteCPU)
	} else {
		res.base.fail(errors.New("no ls-remote sweep"))
	}
	fail := func(err error) {
		res.stackd.fail(err)
		spread.stackd.fail(err)
	}
	if err := b.startupDone(ctx, metrics, n, interval); err != nil {
		fail(err)
		b.logf("fleet interval CPU: %v", err)
		return
	}
	pid := sd.cmd.Process.Pid
	intervalRuns := func() (float64, error) {
		text, err := scrape(ctx, metrics)
		if err != nil {
			return 0, err
		}
		return metricSum(text, "stackd_sync_runs_total", `trigger="interval"`), nil
	}
	runs0, err := intervalRuns()
	if err != nil {
		fail(err)
		return
	}
	window := 2 * interval
	start := time.Now()
	cpu0, err := procCPUFine(pid)
	if err != nil {
		fail(err)
		return
	}
	select {
	case <-ctx.Done():
		fail(ctx.Err())
		return
	case <-time.After(window):
	}
	cpu1, err := procCPUFine(pid)
	end := time.Now()
	if err != nil {
		fail(err)
		return
	}
	runs1, err := intervalRuns()
	if err != nil {
		fail(err)
		return
	}
	runs := runs1 - runs0
	if runs < 1 {
		fail(fmt.Errorf("no interval run in %s (interval %s)", window, interval))
		return
	}
	perInterval := (cpu1 - cpu0) * float64(n) / runs
	res.stackd.add(perInterval)
	res.stackd.extra = fmt.Sprintf("%.0f runs in %s", runs, window)
	tenths, err := b.runsPerTenth(ctx, api, n, start, end)
	switch {
	case err != nil:
		spread.stackd.fail(fmt.Errorf("the runs per tenth are unknown: %w", err))
		b.logf("fleet interval CPU: the runs per tenth are unknown: %v", err)
	case sumInts(tenths) < 20 && !b.opt.smoke:
		// A share of fewer than two runs per tenth says nothing about the
		// schedule: not judged (a smoke run, which judges nothing, shows it).
		spread.stackd.na = fmt.Sprintf("%d interval runs in %s: too few to judge their spread", sumInts(tenths), window)
	default:
		busiest := float64(slices.Max(tenths)) / max(1, float64(sumInts(tenths)))
		spread.stackd.add(busiest)
		spread.stackd.extra = fmt.Sprintf("%d of %d runs in %s", slices.Max(tenths), sumInts(tenths), window)
	}
	b.logf("fleet interval CPU: %s for %.0f runs in %s (per interval of %d runs: %s); runs per tenth %v",
		fmtDuration(time.Duration((cpu1-cpu0)*float64(time.Second))), runs, window, n, fmtDuration(time.Duration(perInterval*float64(time.Second))), tenths)
}

// runsPerTenth counts the interval runs of the n repositories that ended
// between start and end, per tenth of that window, from their sync
// histories (read after the window: the reads cost the server nothing
// within it).
func (b *bench) runsPerTenth(ctx context.Context, api *apiClient, n int, start, end time.Time) ([]int, error) {
	tenths := make([]int, 10)
	var mu sync.Mutex
	span := end.Sub(start)
	err := forEach(ctx, n, 8, func(ctx context.Context, i int) error {
		status, _, body, err := api.rawGet(ctx, "/api/v1/repos/"+fleetID(i)+"/syncs?limit=100", "")
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return statusErr("GET .../syncs", status, body)
		}
		var list []struct {
			Trigger    string     `json:"trigger"`
			FinishedAt *time.Time `json:"finishedAt"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return fmt.Errorf("GET .../syncs: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, sy := range list {
			if sy.Trigger != "interval" || sy.FinishedAt == nil || sy.FinishedAt.Before(start) || !sy.FinishedAt.Before(end) {
				continue
			}
			tenths[min(9, int(10*sy.FinishedAt.Sub(start)/span))]++
		}
		return nil
	})
	return tenths, err
}

func sumInts(v []int) (s int) {
	for _, x := range v {
		s += x
	}
	return s
}

// startupDone waits until the restart's start-up runs have ended: every
// repository's (trigger startup: the load from disk, and the refresh that
// follows it) counted in stackd_sync_runs_total, that count unchanged
// between two scrapes, and no run queued or running. Interval runs also
// run meanwhile; waiting for a moment with none running costs little
// (each takes milliseconds). It gives up after four intervals.
func (b *bench) startupDone(ctx context.Context, metrics string, n int, interval time.Duration) error {
	began := time.Now()
	deadline := began.Add(4 * interval)
	poll := min(100*time.Millisecond, interval/20)
	prev := -1.0
	for {
		text, err := scrape(ctx, metrics)
		if err != nil {
			return err
		}
		startup := metricSum(text, "stackd_sync_runs_total", `trigger="startup"`)
		busy := metricSum(text, "stackd_sync_runs_queued") + metricSum(text, "stackd_sync_runs_running")
		if startup >= float64(n) && startup == prev && busy == 0 {
			b.logf("fleet: the restart's %.0f start-up runs ended %s after the views were served", startup, fmtDuration(time.Since(began)))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("start-up runs not over after %s: %.0f ended for %d repositories, %.0f queued or running", time.Since(began).Round(time.Millisecond), startup, n, busy)
		}
		prev = startup
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// forEach calls fn for 0..n-1, par at a time, and returns the first error
// (the others still run).
func forEach(ctx context.Context, n, par int, fn func(context.Context, int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(par, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// cpu runs git and returns the CPU time (user+system) it used.
func (g *gitTool) cpu(ctx context.Context, args ...string) (time.Duration, error) {
	cmd := g.cmd(ctx, "", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, gitErr(ctx, args, err, stderr.Bytes())
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// procRSS is a process's VmRSS in bytes.
func procRSS(pid int) (float64, error) { return procStatusBytes(pid, "VmRSS") }

// procCPU is a process's utime+stime in seconds.
func procCPU(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("CPU time: short /proc/<pid>/stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64) // field 14
	st, err2 := strconv.ParseFloat(f[12], 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("CPU time: %w", err)
	}
	return (ut + st) / clockTicks, nil
}

// procCPUFine is a process's CPU time to the nanosecond: the sum of its
// threads' time on a CPU (/proc/<pid>/task/*/schedstat, first field),
// where procCPU counts clock ticks (10 ms): a window of a few hundred
// milliseconds of CPU needs better. A thread that exits takes its time
// with it (the Go runtime keeps its threads); when the tasks cannot be
// read, it is procCPU.
func procCPUFine(pid int) (float64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return procCPU(pid)
	}
	var ns float64
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(raw))
		if len(f) < 1 {
			return procCPU(pid)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return procCPU(pid)
		}
		ns += v
	}
	return ns / 1e9, nil
}

// procFDs counts a process's open file descriptors.
func procFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("fds: %w", err)
	}
	return len(ents), nil
}

// procNoFile is a process's soft and hard RLIMIT_NOFILE, as
// /proc/<pid>/limits shows them.
func procNoFile(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return "soft " + f[0] + ", hard " + f[1]
			}
		}
	}
	return "unknown"
}

// scrape reads the metrics endpoint.
func scrape(ctx context.Context, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	return buf.String(), nil
}

// metricSum adds the samples of the series name whose labels contain
// every one of match (`key="value"`).
func metricSum(text, name string, match ...string) float64 {
	total := 0.0
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		if !all(match, func(m string) bool { return strings.Contains(labels, m) }) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil && !math.IsNaN(v) {
			total += v
		}
	}
	return total
}

// metricByLabel returns the samples of name by the value of label.
func metricByLabel(text, name, label string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	key := label + `="`
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			continue
		}
		labels := rest[:end]
		i := strings.Index(labels, key)
		if i < 0 {
			continue
		}
		val := labels[i+len(key):]
		val = val[:max(strings.IndexByte(val, '"'), 0)]
		f := strings.Fields(rest[end+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[val] += v
		}
	}
	return out
}

func all[T any](xs []T, f func(T) bool) bool {
	for _, x := range xs {
		if !f(x) {
			return false
		}
	}
	return true
}

// stackBranchK is the k-th non-trunk branch of a fleet repository
// (k < branches).
func stackBranchK(k int) string { return gittest.StackBranch(k/3, k%3+1) }

// goMemInUse is the Go heap and stacks in use of a server, after a
// garbage collection: for stackd through its metrics listener (a heap
// profile with gc=1 collects first; then go_memstats_heap_inuse_bytes +
// go_memstats_stack_inuse_bytes), for serve-sse through its /memstats.
func goMemInUse(ctx context.Context, metricsBase string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsBase+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("heap profile: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("heap profile: status %d (no --metrics-pprof?)", resp.StatusCode)
	}
	text, err := scrape(ctx, metricsBase)
	if err != nil {
		return 0, err
	}
	if !strings.Contains(text, "go_memstats_heap_inuse_bytes") {
		return 0, errors.New("no go_memstats_heap_inuse_bytes metric")
	}
	return metricSum(text, "go_memstats_heap_inuse_bytes") + metricSum(text, "go_memstats_stack_inuse_bytes"), nil
}
