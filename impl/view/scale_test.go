package view_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// scaleRepo builds (once per benchmark) a working repository of n branches
// in stacks of three, each with stackit metadata.
func scaleRepo(b *testing.B, n int) (*gitrepo.Worktree, string) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "repo")
	if err := gittest.BuildStacks(dir, gittest.Shape{Branches: n, MetadataEvery: 1}); err != nil {
		b.Fatal(err)
	}
	w, err := gitrepo.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	return w, dir
}

// BenchmarkFullBuild10000 is a first build of 10,000 branches with a cold
// cache (as at start-up). Its "x-for-each-ref" metric is the ratio to `git
// for-each-ref` with subjects over the same repository, timed in the same
// run.
func BenchmarkFullBuild10000(b *testing.B) {
	w, dir := scaleRepo(b, 10000)
	baseline := timeForEachRef(b, dir)
	b.ResetTimer()
	for b.Loop() {
		repo, err := w.Read()
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := view.NewBuilder(view.Input{RepoID: "x", Kind: gen.Local}, nil).Build(context.Background(), repo, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N))/float64(baseline), "x-for-each-ref")
}

// BenchmarkIncrementalBuild10000 rebuilds 10,000 branches after one branch
// moved, from the previous snapshot. Its "x-full" metric is the ratio to a
// full build timed in the same run (the target is at most 0.05).
func BenchmarkIncrementalBuild10000(b *testing.B) {
	w, dir := scaleRepo(b, 10000)
	in := view.Input{RepoID: "x", Kind: gen.Local}
	repo, err := w.Read()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	bl := view.NewBuilder(in, nil)
	base, _, err := bl.Build(context.Background(), repo, nil)
	if err != nil {
		b.Fatal(err)
	}
	full := time.Since(start)
	br := gittest.StackBranch(7, 2)
	env := gittest.GitEnv(b.TempDir())
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			b.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	git("update-ref", "refs/heads/"+br, git("commit-tree", "-p", br, "-m", "moved", br+"^{tree}"))
	moved, err := w.Read()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s, st, err := bl.Build(context.Background(), moved, base)
		if err != nil || !st.Patched {
			b.Fatalf("incremental build: %v %+v", err, st)
		}
		s.WithVersion(2, time.Now()).Prepare() // as the registry publishes it
	}
	b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N))/float64(full), "x-full")
}

func timeForEachRef(b *testing.B, dir string) time.Duration {
	b.Helper()
	const runs = 5
	start := time.Now()
	for range runs {
		cmd := exec.Command("git", "-C", dir, "for-each-ref", "--format=%(objectname) %(refname) %(subject)")
		if out, err := cmd.Output(); err != nil || len(out) == 0 {
			b.Fatalf("for-each-ref: %v", err)
		}
	}
	return time.Since(start) / runs
}
