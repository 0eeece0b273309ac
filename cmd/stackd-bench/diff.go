package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// diffLines is the size of the diff figure's file: the hostile-input
// finding's 200,000-line rewrite (446 KB).
const diffLines = 200_000

// clockTicks is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTicks = 100

// diffFigure measures the CPU time stackd spends on GET
// .../branches/{b}/diff for a branch that rewrites every line of a
// 200,000-line file, against the CPU time of `git diff` on the same two
// commits. Each run starts a fresh server (the patch of a commit pair is
// cached once computed).
func (b *bench) diffFigure(ctx context.Context) error {
	b.logf("== branch diff: a %s-line rewrite", fmtCount(diffLines))
	b.res.label("diff", fmtCount(diffLines)+" lines rewritten")
	res := b.res.at("diff", diffLines)
	dir, err := b.stackdDir("diff")
	if err != nil {
		return err
	}
	repo := filepath.Join(dir, "repo")
	if err := b.diffRepo(ctx, repo); err != nil {
		return err
	}
	for i := range b.opt.runs {
		b.timeGitCPU(ctx, &res.base, repo, "diff", i, "diff", "main", "rewrite")
		s, err := b.startStackd(ctx, stackdOpts{label: "diff-" + strconv.Itoa(i), dataDir: filepath.Join(dir, "data-"+strconv.Itoa(i)), cwd: repo, dir: dir}, true)
		if err != nil {
			res.stackd.fail(err)
			b.logf("diff run %d: %v", i+1, err)
			continue
		}
		cpu, n, err := b.diffCPU(ctx, s)
		s.kill()
		if err != nil {
			res.stackd.fail(err)
			b.logf("diff run %d: stackd: %v", i+1, err)
			continue
		}
		b.res.fact("the diff was answered", diffLines, n > 0, fmt.Sprintf("%d bytes", n))
		res.stackd.add(cpu)
		b.logf("diff run %d: stackd %.2f CPU-s for %d bytes of patch", i+1, cpu, n)
	}
	return ctx.Err()
}

// diffRepo builds the working repository: main with the file, branch
// rewrite with every line of it changed.
func (b *bench) diffRepo(ctx context.Context, repo string) error {
	old, rewritten := gittest.NumberRewrite(diffLines)
	if _, err := b.git.out(ctx, "", "init", "-q", "-b", "main", repo); err != nil {
		return err
	}
	file := filepath.Join(repo, "numbers.txt")
	for _, step := range []struct {
		content string
		args    [][]string
	}{
		{old, [][]string{{"add", "numbers.txt"}, {"commit", "-q", "-m", "numbers"}, {"checkout", "-q", "-b", "rewrite"}}},
		{rewritten, [][]string{{"commit", "-q", "-am", "rewrite every line"}, {"checkout", "-q", "main"}}},
	} {
		if err := os.WriteFile(file, []byte(step.content), 0o644); err != nil {
			return fmt.Errorf("diff fixture: %w", err)
		}
		for _, args := range step.args {
			if _, err := b.git.out(ctx, repo, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// diffCPU asks s for the rewrite branch's patch and returns the CPU time
// the process spent meanwhile and the patch's size.
func (b *bench) diffCPU(ctx context.Context, s *stackd) (float64, int, error) {
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	before, err := processCPU(s.cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	req, err := http.NewRequestWithContext(octx, http.MethodGet, s.base+"/api/v1/repos/"+localID+"/branches/rewrite/diff", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, statusErr("diff", resp.StatusCode, body)
	}
	after, err := processCPU(s.cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	return after - before, len(body), nil
}

// processCPU returns the user and system CPU time process pid has used,
// in seconds (/proc/<pid>/stat, fields 14 and 15).
func processCPU(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from after it.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad CPU times", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// timeGitCPU adds the CPU time of one git run to c.
func (b *bench) timeGitCPU(ctx context.Context, c *cell, dir, what string, i int, args ...string) {
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	cmd := b.git.cmd(octx, dir, args...)
	if err := cmd.Run(); err != nil {
		c.fail(gitErr(octx, args, err, nil))
		b.logf("%s run %d: git %s: %v", what, i+1, args[0], err)
		return
	}
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	c.add(cpu)
	b.logf("%s run %d: git %s %.2f CPU-s", what, i+1, args[0], cpu)
}
