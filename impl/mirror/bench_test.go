package mirror

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// The benchmarks compare the mirror with the git CLI doing the same job on
// the same upstream (gittest.BuildStacks: one commit and one stackit
// metadata ref per branch, served by git daemon on loopback), in the same
// run, alternating the two. Each reports the medians of both ("ms" and
// "git-ms"), their ratio ("x-git", the targets: no-op <= 1.0,
// one change <= 0.6, clone <= 1.5) and the slowest run of stackd
// ("max-ms"). STACKD_BENCH_BRANCHES sets the number
// of branches (default 10000). Run with a fixed count, e.g.
//
//	STACKD_BENCH_BRANCHES=10000 go test -run '^$' -bench . -benchtime 7x ./impl/mirror/

func benchBranches(b *testing.B) int {
	n := 10000
	if s := os.Getenv("STACKD_BENCH_BRANCHES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("STACKD_BENCH_BRANCHES=%q", s)
		}
		n = v
	}
	return n
}

type benchFixture struct {
	up   *upstream
	url  string
	root *Root
	home string // scratch for git baselines
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	n := benchBranches(b)
	up, url := stacksFixture(b, gittest.Shape{Branches: n, MetadataEvery: 1, Bare: true})
	root, err := NewRoot(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	return &benchFixture{up: up, url: url, root: root, home: b.TempDir()}
}

// git runs the git CLI in dir and returns how long it took.
func (f *benchFixture) git(b *testing.B, dir string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(f.home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = nil
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, stderr.String())
	}
	return time.Since(start)
}

// timings collects the durations of stackd and of git.
type timings struct{ ours, git []time.Duration }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func (tm *timings) report(b *testing.B) {
	if len(tm.ours) == 0 {
		return
	}
	ours, git := median(tm.ours), median(tm.git)
	b.ReportMetric(float64(ours.Microseconds())/1000, "ms")
	b.ReportMetric(float64(slices.Max(tm.ours).Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(git.Microseconds())/1000, "git-ms")
	b.ReportMetric(float64(ours)/float64(git), "x-git")
}

// BenchmarkNoopSync: Sync of an unchanged upstream vs git ls-remote.
func BenchmarkNoopSync(b *testing.B) {
	f := newBenchFixture(b)
	m, _, err := f.root.Clone(bg(), "m", Config{AllowPrivate: true, URL: f.url})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	var tm timings
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		res, err := m.Sync(bg())
		tm.ours = append(tm.ours, time.Since(start))
		if err != nil || res.Changes != nil {
			b.Fatalf("Sync = %+v, %v", res, err)
		}
		b.StopTimer()
		tm.git = append(tm.git, f.git(b, f.home, "ls-remote", f.url))
		b.StartTimer()
	}
	b.StopTimer()
	tm.report(b)
}

// BenchmarkOneChange: one branch gets a new commit; Sync vs git fetch
// --prune into a twin made by git clone --mirror.
func BenchmarkOneChange(b *testing.B) {
	f := newBenchFixture(b)
	m, _, err := f.root.Clone(bg(), "m", Config{AllowPrivate: true, URL: f.url})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	twin := filepath.Join(b.TempDir(), "twin.git")
	f.git(b, f.home, "clone", "-q", "--mirror", f.url, twin)
	stacks := gittest.Shape{Branches: benchBranches(b)}.Stacks()
	var tm timings
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		branch := "refs/heads/" + gittest.StackBranch((i*7919)%stacks, 1)
		tip := runGit(b, f.up.dir, nil, "rev-parse", branch)
		next := runGit(b, f.up.dir, nil, "commit-tree", tip+"^{tree}", "-p", tip, "-m", fmt.Sprintf("bench %d", i))
		f.up.set(branch, next)
		b.StartTimer()

		start := time.Now()
		res, err := m.Sync(bg())
		tm.ours = append(tm.ours, time.Since(start))
		if err != nil || len(res.Changes) != 1 || !res.Fetched {
			b.Fatalf("Sync = %+v, %v", res, err)
		}
		b.StopTimer()
		tm.git = append(tm.git, f.git(b, twin, "fetch", "-q", "--prune", "origin"))
		b.StartTimer()
	}
	b.StopTimer()
	tm.report(b)
	b.ReportMetric(float64(len(packs(b, m.Dir()))), "packs")
}

// BenchmarkClone: Root.Clone vs git clone --mirror.
func BenchmarkClone(b *testing.B) {
	f := newBenchFixture(b)
	scratch := b.TempDir()
	var tm timings
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("m%d", i)
		start := time.Now()
		m, changes, err := f.root.Clone(bg(), id, Config{AllowPrivate: true, URL: f.url})
		tm.ours = append(tm.ours, time.Since(start))
		if err != nil || len(changes) == 0 {
			b.Fatalf("Clone: %d changes, %v", len(changes), err)
		}
		b.StopTimer()
		dir := filepath.Join(scratch, id+".git")
		tm.git = append(tm.git, f.git(b, f.home, "clone", "-q", "--mirror", f.url, dir))
		_ = m.Close()
		if err := f.root.Remove(id); err != nil {
			b.Fatal(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	tm.report(b)
}
