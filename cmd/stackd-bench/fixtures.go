package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// fixtureVersion is part of every cache key: bump it when gittest.BuildStacks
// starts producing different repositories, or delete the -work directory.
const fixtureVersion = 1

// fixtures builds repositories with gittest.BuildStacks and caches them
// under dir, keyed by shape. Callers copy a fixture before mutating it.
type fixtures struct {
	dir string
	git *gitTool
	log func(format string, args ...any)
}

func shapeKey(s gittest.Shape) string {
	kind := "work"
	if s.Bare {
		kind = "bare"
	}
	depth := s.Depth
	if depth <= 0 {
		depth = 3
	}
	return fmt.Sprintf("v%d-b%d-d%d-t%d-spread%t-meta%d-%s", fixtureVersion, s.Branches, depth, max(s.TrunkCommits, 1), s.Spread, s.MetadataEvery, kind)
}

// get returns the cached repository of shape s, building it on first use.
// The build goes to a temporary directory renamed into place, so an
// interrupted build never leaves a half-built fixture behind.
func (f *fixtures) get(s gittest.Shape) (string, error) {
	dir := filepath.Join(f.dir, shapeKey(s))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return "", fmt.Errorf("fixtures: %w", err)
	}
	tmp, err := os.MkdirTemp(f.dir, ".build-")
	if err != nil {
		return "", fmt.Errorf("fixtures: %w", err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	f.log("building fixture %s", shapeKey(s))
	built := filepath.Join(tmp, "repo")
	if err := gittest.BuildStacks(built, s); err != nil {
		return "", fmt.Errorf("fixture %s: %w", shapeKey(s), err)
	}
	if err := os.Rename(built, dir); err != nil {
		return "", fmt.Errorf("fixture %s: %w", shapeKey(s), err)
	}
	f.log("built fixture %s in %s", shapeKey(s), fmtDuration(time.Since(start)))
	return dir, nil
}

// copyTree copies the repository src to dst (which must not exist).
func copyTree(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	out, err := exec.CommandContext(ctx, "cp", "-a", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cp -a %s %s: %w: %s", src, dst, err, bytes.TrimSpace(out))
	}
	return nil
}

// diskUsage is what du reports for dir: allocated blocks, hard links
// counted once.
func diskUsage(dir string) (int64, error) {
	var total int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			total += info.Size()
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("du %s: %w", dir, err)
	}
	return total, nil
}

// gitTool runs the git CLI in an environment isolated from the user's
// configuration, with fixed identities.
type gitTool struct {
	env []string
}

// cleanEnv is the process environment without git's and stackd's own
// variables (a GIT_DIR or STACKD_ADDR of the caller must not leak into the
// measurements), plus an isolated home and git configuration.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "STACKD_") ||
			strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "XDG_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Bench Author",
		"GIT_AUTHOR_EMAIL=bench@example.com",
		"GIT_COMMITTER_NAME=Bench Committer",
		"GIT_COMMITTER_EMAIL=bench@example.com",
		"LC_ALL=C",
	)
}

func (g *gitTool) cmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = g.env
	return cmd
}

// out runs git and returns its trimmed standard output.
func (g *gitTool) out(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := g.cmd(ctx, dir, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", gitErr(ctx, args, err, stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// timed runs git with its standard output discarded (/dev/null) and
// returns the wall time.
func (g *gitTool) timed(ctx context.Context, dir string, args ...string) (time.Duration, error) {
	cmd := g.cmd(ctx, dir, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // stdout stays nil: /dev/null
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, gitErr(ctx, args, err, stderr.Bytes())
	}
	return d, nil
}

func gitErr(ctx context.Context, args []string, err error, stderr []byte) error {
	if ctx.Err() != nil {
		return fmt.Errorf("git %s: %w", strings.Join(args[:min(len(args), 3)], " "), ctx.Err())
	}
	return fmt.Errorf("git %s: %w: %s", strings.Join(args[:min(len(args), 3)], " "), err, bytes.TrimSpace(stderr))
}

// commitOn writes (but does not publish) a new commit on top of branch in
// the repository dir, with the tree of its parent and a fixed date: the
// same run always makes the same commit. It returns the old and new tips;
// updateRef publishes it.
func (g *gitTool) commitOn(ctx context.Context, dir, branch string, seq int) (old, next string, err error) {
	old, err = g.out(ctx, dir, "rev-parse", "--verify", "refs/heads/"+branch)
	if err != nil {
		return "", "", err
	}
	cmd := g.cmd(ctx, dir, "commit-tree", old+"^{tree}", "-p", old, "-m", fmt.Sprintf("bench change %d on %s", seq, branch))
	when := strconv.FormatInt(gittest.Base+10_000_000+int64(seq), 10) + " +0000"
	cmd.Env = append(cmd.Env, "GIT_AUTHOR_DATE="+when, "GIT_COMMITTER_DATE="+when)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", "", gitErr(ctx, []string{"commit-tree"}, err, stderr.Bytes())
	}
	return old, strings.TrimSpace(stdout.String()), nil
}

// updateRef moves refs/heads/branch from old to next.
func (g *gitTool) updateRef(ctx context.Context, dir, branch, old, next string) error {
	_, err := g.out(ctx, dir, "update-ref", "refs/heads/"+branch, next, old)
	return err
}

// changeTarget picks the branch changed by run i of runs in a repository of
// n branches: a different stack each run, spread over the repository, at a
// level that exists.
func changeTarget(n, i, runs int) string {
	const depth = 3
	stacks := (n + depth - 1) / depth
	s := (i + 1) * stacks / (runs + 1)
	s = min(s, stacks-1)
	level := 1 + i%depth
	if s == stacks-1 && n%depth != 0 {
		level = 1 // the last stack may be short
	}
	return gittest.StackBranch(s, level)
}

// notInRepository fails when dir is inside a git working tree or git
// directory: stackd started there without --cwd would serve it.
func (g *gitTool) notInRepository(ctx context.Context, dir string) error {
	out, err := g.out(ctx, dir, "rev-parse", "--absolute-git-dir")
	if err == nil {
		return fmt.Errorf("%s is inside the git repository %s; choose a -work directory outside any repository", dir, out)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
