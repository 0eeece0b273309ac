package view_test

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

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

// BenchmarkDiffRewrite200k is the patch of the 200,000-line rewrite (a
// 446 KB file of numbers from 13, every line changed) with the default
// limits, against `git diff --full-index -M100%` of the same commits, in
// the same run: CPU seconds of each per patch (cpu-s/op, git-cpu-s/op),
// their ratio (x-git) and the patches' sizes. Issue 14's target: at most
// 2 CPU-seconds.
func BenchmarkDiffRewrite200k(b *testing.B) {
	r, base, tip := rewriteFixture(b, 200_000)
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
