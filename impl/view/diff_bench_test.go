package view_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// cpuTime is the CPU time this process used so far (user and system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPatch measures view.Diff (default limits) from base to tip against
// `git diff --full-index -M100%` of the same commits, in the same run: the
// CPU seconds of each per patch (cpu-s/op, git-cpu-s/op), their ratio
// (x-git) and the patches' sizes.
func benchPatch(b *testing.B, r *gittest.Repo, base, tip plumbing.Hash) {
	repo := openRepo(b, r.Dir)
	var ours, theirs time.Duration
	var size, gitSize int
	for b.Loop() {
		start := cpuTime(b)
		patch, err := view.Diff(context.Background(), repo, base, tip, view.DiffLimits{})
		if err != nil {
			b.Fatal(err)
		}
		ours += cpuTime(b) - start
		size = len(patch)

		cmd := exec.Command("git", "diff", "--full-index", "-M100%", "--no-color", "--no-ext-diff", base.String(), tip.String())
		cmd.Dir, cmd.Env = r.Dir, r.Env()
		out, err := cmd.Output()
		if err != nil {
			b.Fatal(err)
		}
		theirs += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		gitSize = len(out)
	}
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()/n, "cpu-s/op")
	b.ReportMetric(theirs.Seconds()/n, "git-cpu-s/op")
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "x-git")
	b.ReportMetric(float64(size), "patch-bytes")
	b.ReportMetric(float64(gitSize), "git-patch-bytes")
}

// BenchmarkDiffRewrite200k is the patch of issue 14's rewrite: a 446 KB
// file of 200,000 lines (numbers from 13), every line changed. Target: at
// most 2 CPU-seconds.
func BenchmarkDiffRewrite200k(b *testing.B) {
	r, base, tip := rewriteFixture(b, 200_000)
	benchPatch(b, r, base, tip)
}

// BenchmarkDiffWorstCase is a patch at every limit: more files than the
// read limit lets in, each just under 1 MiB per side, every line
// rewritten from a two-line alphabet (the most comparison work per byte).
func BenchmarkDiffWorstCase(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 3))
	base, change := map[string]*fiFile{}, map[string]*fiFile{}
	text := func() string {
		var s strings.Builder
		for s.Len() < 1<<20-2 {
			s.WriteString([]string{"a\n", "b\n"}[rng.IntN(2)])
		}
		return s.String()
	}
	for i := range 6 {
		base[fmt.Sprintf("f%d", i)] = regular(text())
		change[fmt.Sprintf("f%d", i)] = regular(text())
	}
	r, bc, tc := twoCommits(b, base, change)
	benchPatch(b, r, bc, tc)
}

// BenchmarkDiffManyFiles is 40,000 small files changed: the patch stops at
// its size limit; the cost is per file (object lookups).
func BenchmarkDiffManyFiles(b *testing.B) {
	base, change := map[string]*fiFile{}, map[string]*fiFile{}
	for i := range 40000 {
		base[fmt.Sprintf("d%d/f%d.txt", i%100, i)] = regular(fmt.Sprintf("file %d\nsecond line\n", i))
		change[fmt.Sprintf("d%d/f%d.txt", i%100, i)] = regular(fmt.Sprintf("file %d changed\nsecond line\n", i))
	}
	r, bc, tc := twoCommits(b, base, change)
	benchPatch(b, r, bc, tc)
}
