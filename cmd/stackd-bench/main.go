// Command stackd-bench measures stackd's refresh path against git on the
// same repositories in the same run, and prints one table of figures,
// baselines, ratios and targets (issue 7, "Refresh path v2"). `make bench`
// runs it; docs/benchmarks.md carries its last table.
//
// It builds its fixtures itself with gittest.BuildStacks (deterministic,
// git fast-import) and caches them in the -work directory: mirror upstreams
// of N branches (each one commit, stackit metadata per branch, stacks of
// depth 3), working repositories of the same shape, and a working
// repository of 2,000 branches over 5,000 trunk commits. Upstreams are
// served by git daemon on loopback; stackd runs as a child process (the
// -stackd binary) with a fresh data directory; git's baselines (clone
// --mirror, ls-remote, fetch --prune into a twin mirror, for-each-ref) run
// against the same upstream, interleaved with stackd's runs. The dashboard
// figures (issue 16, dashboard.go) drive the web app in headless Chromium
// through the DevTools protocol, next to floors measured in the same
// browser. Values are medians of -runs runs.
//
// Usage:
//
//	stackd-bench [-sizes 1000,10000,50000] [-runs 5] [-duration 5s] [-get-rounds 3]
//	             [-stackd bin/stackd] [-work DIR] [-out docs/benchmarks.md]
//	             [-only onboard,noop,changed,get,disk,restart,dashboard,worktree,watcher,diff]
//	             [-chromium /usr/bin/chromium] [-smoke] [-timeout 3m] [-keep]
//
// -smoke runs tiny sizes once, writes no document unless -out is given, and
// judges no timing ("smoke" in the result column). The hidden mode
// `stackd-bench serve-bytes -file F -addr A` is the plain HTTP server of
// the GET throughput baseline.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// options are the command-line flags.
type options struct {
	sizes    []int
	runs     int
	duration time.Duration
	stackd   string
	work     string
	out      string
	only     map[string]bool // steps; empty: all
	smoke    bool
	timeout  time.Duration // of one measured operation
	keep     bool
	clients  int
	// getRounds: GET loads run this many times, stackd and the plain
	// server alternating, so that a drift of the machine weighs on both.
	getRounds int
	command   string // as given, for the document
	chromium  string // the browser of the dashboard figures

	// worktree is the shape of the working-repository figure.
	worktree gittest.Shape

	fleet fleetOptions
}

// steps are what -only selects.
var steps = []string{"onboard", "noop", "changed", "get", "disk", "restart", "dashboard", "worktree", "watcher", "diff", "fleet"}

// mirrorSteps are the steps measured on the onboarded mirror of each size.
var mirrorSteps = []string{"onboard", "noop", "changed", "get", "disk", "restart", "dashboard"}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "serve-bytes" || os.Args[1] == "serve-sse") {
		serve := serveBytes
		if os.Args[1] == "serve-sse" {
			serve = serveSSE
		}
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "stackd-bench:", err)
			os.Exit(1)
		}
		return
	}
	opt, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stackd-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	_, err = run(ctx, opt, []string{os.Args[0]}, os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	if interrupted {
		fmt.Fprintln(os.Stderr, "stackd-bench: interrupted; child processes stopped")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stackd-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("stackd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt options
	sizes := fs.String("sizes", "1000,10000,50000", "branch counts of the mirror and watcher figures (comma-separated)")
	fs.IntVar(&opt.runs, "runs", 5, "runs per timed figure (the median is reported)")
	fs.DurationVar(&opt.duration, "duration", 5*time.Second, "length of each GET load")
	fs.StringVar(&opt.stackd, "stackd", "bin/stackd", "the stackd binary to measure")
	fs.StringVar(&opt.work, "work", filepath.Join(os.TempDir(), "stackd-bench"), "work directory: cached fixtures, scratch copies and logs")
	fs.StringVar(&opt.out, "out", "docs/benchmarks.md", "document to write the table to (empty: none)")
	only := fs.String("only", "", "comma-separated steps to run: "+strings.Join(steps, ", ")+" (default all)")
	fs.BoolVar(&opt.smoke, "smoke", false, "tiny sizes, one run, short loads, no timing judgement, no document unless -out is given")
	fs.DurationVar(&opt.timeout, "timeout", 3*time.Minute, "deadline of one measured operation")
	fs.BoolVar(&opt.keep, "keep", false, "keep the scratch copies and data directories of the run")
	fs.IntVar(&opt.clients, "clients", 8, "concurrent clients of the GET load")
	fs.StringVar(&opt.chromium, "chromium", defaultChromium, "headless Chromium of the dashboard figures (missing: they are n/a)")
	fs.IntVar(&opt.getRounds, "get-rounds", 3, "rounds of GET loads, stackd and the plain server alternating (the medians are reported)")
	fleetRepos := fs.String("fleet-repos", "100,1000", "repository counts of the fleet figures (comma-separated growth sizes)")
	fs.IntVar(&opt.fleet.branches, "fleet-branches", 1000, "branches of each fleet repository")
	fleetStreams := fs.String("fleet-streams", "1000,10000", "concurrent event streams of the fan-out figures (comma-separated growth sizes)")
	if err := fs.Parse(args); err != nil {
		return opt, err
	}
	if fs.NArg() > 0 {
		return opt, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	opt.worktree = gittest.Shape{Branches: 2000, TrunkCommits: 5000, Spread: true, MetadataEvery: 2}
	if opt.smoke {
		if !set["sizes"] {
			*sizes = "30,120"
		}
		if !set["runs"] {
			opt.runs = 1
		}
		if !set["duration"] {
			opt.duration = 300 * time.Millisecond
		}
		if !set["get-rounds"] {
			opt.getRounds = 1
		}
		if !set["out"] {
			opt.out = ""
		}
		if !set["timeout"] {
			opt.timeout = time.Minute
		}
		opt.worktree = gittest.Shape{Branches: 60, TrunkCommits: 150, Spread: true, MetadataEvery: 2}
		if !set["fleet-repos"] {
			*fleetRepos = "10,20"
		}
		if !set["fleet-branches"] {
			opt.fleet.branches = 20
		}
		if !set["fleet-streams"] {
			*fleetStreams = "100,200"
		}
	}
	var err error
	if opt.fleet.repos, err = countList("-fleet-repos", *fleetRepos, 1); err != nil {
		return opt, err
	}
	if opt.fleet.streams, err = countList("-fleet-streams", *fleetStreams, 1); err != nil {
		return opt, err
	}
	if opt.fleet.branches < 3 {
		return opt, errors.New("-fleet-branches must be at least 3")
	}
	opt.fleet.setStorm(opt.smoke)
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 3 {
			return opt, fmt.Errorf("-sizes: %q is not a branch count of at least 3", s)
		}
		opt.sizes = append(opt.sizes, n)
	}
	slices.Sort(opt.sizes)
	opt.sizes = slices.Compact(opt.sizes)
	if opt.runs < 1 {
		return opt, errors.New("-runs must be at least 1")
	}
	if opt.clients < 1 {
		return opt, errors.New("-clients must be at least 1")
	}
	if opt.getRounds < 1 {
		return opt, errors.New("-get-rounds must be at least 1")
	}
	opt.only = map[string]bool{}
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(steps, s) {
				return opt, fmt.Errorf("-only: unknown step %q (steps: %s)", s, strings.Join(steps, ", "))
			}
			opt.only[s] = true
		}
	}
	if opt.stackd, err = filepath.Abs(opt.stackd); err != nil {
		return opt, err
	}
	if opt.work, err = filepath.Abs(opt.work); err != nil {
		return opt, err
	}
	opt.command = commandLine(args)
	return opt, nil
}

// countList parses a comma-separated list of counts of at least least,
// sorted and without repeats.
func countList(flagName, s string, least int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < least {
			return nil, fmt.Errorf("%s: %q is not a count of at least %d", flagName, f, least)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// commandLine is how the document names the command that produced it.
func commandLine(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.TrimSpace("go run ./cmd/stackd-bench " + strings.Join(q, " "))
}

func (o options) wants(step string) bool { return len(o.only) == 0 || o.only[step] }

// bench is one run of the harness.
type bench struct {
	opt     options
	git     *gitTool
	fx      *fixtures
	procs   *procGroup
	res     *results
	runDir  string   // scratch of this run
	logDir  string   // child logs of this run (kept)
	self    []string // command line prefix of this program (serve-bytes)
	daemon  string   // git daemon host:port
	upBase  string   // git daemon's base path
	stderr  io.Writer
	logsVB  *bool  // whether the server logs "view built" lines (nil: unknown yet)
	browser string // the dashboard's browser version, once started
	started time.Time

	fleetNotes  []string  // lines of the fleet section's header
	streamFlags *[]string // the server's stream-limit flags, once known
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// run runs the whole harness and prints the table to stdout. self is the
// command that runs this program's serve-bytes mode (os.Args[0], or a test
// binary).
func run(ctx context.Context, opt options, self []string, stdout, stderr io.Writer) (*results, error) {
	if _, err := os.Stat(opt.stackd); err != nil {
		return nil, fmt.Errorf("-stackd: %w (make bench builds bin/stackd)", err)
	}
	b := &bench{opt: opt, res: newResults(), self: self, stderr: stderr, started: time.Now()}
	stamp := time.Now().UTC().Format("20060102-150405")
	b.runDir = filepath.Join(opt.work, "runs", fmt.Sprintf("%s-%d", stamp, os.Getpid()))
	b.logDir = filepath.Join(b.runDir, "logs")
	if err := os.MkdirAll(b.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	home := filepath.Join(b.runDir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	b.git = &gitTool{env: cleanEnv(home)}
	if err := b.git.notInRepository(ctx, b.runDir); err != nil {
		return nil, err
	}
	b.fx = &fixtures{dir: filepath.Join(opt.work, "fixtures"), git: b.git, log: b.logf}
	b.procs = newProcGroup(b.logDir)
	defer b.cleanScratch()  // second: nothing uses the scratch any more
	defer b.procs.killAll() // first
	sizes := fmt.Sprint(opt.sizes)
	if len(opt.only) == 1 && opt.only["fleet"] {
		sizes = fmt.Sprintf("fleet %v repositories, %v streams", opt.fleet.repos, opt.fleet.streams)
	}
	b.logf("stackd-bench: sizes %s, %d runs, loads of %s; logs in %s", sizes, opt.runs, opt.duration, b.logDir)

	err := b.measure(ctx)
	rows := b.res.rows(opt.smoke)
	if len(rows) > 0 {
		fmt.Fprintln(stdout)
		if err != nil {
			fmt.Fprintln(stdout, "(incomplete: the run stopped early)")
		}
		fmt.Fprint(stdout, plain(rows))
		if slices.ContainsFunc(rows, func(r row) bool { return r.step == "fleet" }) {
			fmt.Fprintln(stdout, fleetSummary(rows, opt.smoke))
		}
	}
	if err != nil {
		return b.res, err
	}
	if opt.out != "" {
		// The fleet rows have a section of their own: a run of only
		// one part leaves the other's table as it was.
		var single, fleet []row
		for _, r := range rows {
			if r.step == "fleet" {
				fleet = append(fleet, r)
			} else {
				single = append(single, r)
			}
		}
		if len(single) > 0 {
			if err := writeDoc(opt.out, b.docSection(single)); err != nil {
				return b.res, err
			}
		}
		if len(fleet) > 0 {
			if err := writeFleetDoc(opt.out, b.fleetSection(fleet)); err != nil {
				return b.res, err
			}
		}
		b.logf("wrote %s", opt.out)
	}
	b.logf("done; child logs in %s", b.logDir)
	return b.res, nil
}

// measure runs the selected steps: per size the mirror figures and the
// watcher, then the working repository. A measurement that fails or times
// out is recorded in its cell; an error here (a fixture that cannot be
// built, an interrupt) ends the run.
func (b *bench) measure(ctx context.Context) error {
	mirrors := slices.ContainsFunc(mirrorSteps, b.opt.wants)
	if mirrors {
		b.upBase = filepath.Join(b.runDir, "upstreams")
		if err := os.MkdirAll(b.upBase, 0o755); err != nil {
			return fmt.Errorf("work directory: %w", err)
		}
		addr, err := b.procs.startDaemon(ctx, b.git.env, b.upBase)
		if err != nil {
			return fmt.Errorf("git daemon: %w", err)
		}
		b.daemon = addr
		b.logf("git daemon on %s", addr)
	}
	for _, n := range b.opt.sizes {
		if mirrors && b.mirrorsAt(n) {
			if err := b.mirrorFigures(ctx, n); err != nil {
				return err
			}
		}
		if b.opt.wants("watcher") {
			if err := b.watcherFigure(ctx, n); err != nil {
				return err
			}
		}
	}
	if b.opt.wants("worktree") {
		if err := b.worktreeFigures(ctx); err != nil {
			return err
		}
	}
	if b.opt.wants("diff") {
		if err := b.diffFigure(ctx); err != nil {
			return err
		}
	}
	if b.opt.wants("fleet") {
		if err := b.fleetFigures(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// cleanScratch removes the run's scratch copies (not its logs) unless -keep.
func (b *bench) cleanScratch() {
	if b.opt.keep {
		return
	}
	entries, err := os.ReadDir(b.runDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != "logs" {
			_ = os.RemoveAll(filepath.Join(b.runDir, e.Name()))
		}
	}
}

// opCtx is the deadline of one measured operation.
func (b *bench) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, b.opt.timeout, fmt.Errorf("no answer within %s: %w", b.opt.timeout, errTimeout))
}

// stackdDir is a fresh directory under the run for one stackd process:
// its data directory and working directory (outside any repository).
func (b *bench) stackdDir(parts ...string) (string, error) {
	dir := filepath.Join(append([]string{b.runDir}, parts...)...)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("work directory: %w", err)
	}
	return dir, nil
}

// logGrace is how long to wait for a "view built" log line that a server
// may not write at all; once one was seen, lines are awaited up to
// logWait (they are written before the answer, so they come at once).
const (
	logGrace = time.Second
	logWait  = 10 * time.Second
)

// buildLine waits for the "view built" line of a build that happened since
// index since, or reports that the server does not log them.
func (b *bench) buildLine(s *stackd, since int, repo string) (viewBuilt, bool) {
	if b.logsVB != nil && !*b.logsVB {
		return viewBuilt{}, false
	}
	grace := logWait
	if b.logsVB == nil {
		grace = logGrace
	}
	vb, ok := s.waitBuild(since, repo, grace)
	if b.logsVB == nil {
		b.logsVB = &ok
		if !ok {
			b.logf(`the server logs no "view built" lines: the view build figures are n/a`)
		}
	}
	return vb, ok
}

const noBuildLog = `no "view built" log line`
