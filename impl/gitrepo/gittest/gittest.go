// Package gittest builds real git repositories for tests with the git CLI,
// isolated from the user's and the system's git configuration, with fixed
// identities and strictly increasing, deterministic commit dates.
package gittest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Epoch is the author/committer date of the first commit; each commit made
// through a Repo is one minute later than the previous one.
const Epoch = 1_700_000_000

// Repo is a git repository in a temporary directory.
type Repo struct {
	t     testing.TB
	Dir   string
	home  string
	clock *int64
}

// New runs `git init` (initial branch main) in a fresh temporary directory.
// Extra init arguments (e.g. "--bare") may be given.
func New(t testing.TB, initArgs ...string) *Repo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	r := At(t, dir)
	args := append([]string{"-c", "init.defaultBranch=main", "init", "-q"}, initArgs...)
	args = append(args, dir)
	r.Run(filepath.Dir(dir), args...)
	return r
}

// At returns a Repo for an existing (or about to be created) directory,
// with its own isolated HOME and clock.
func At(t testing.TB, dir string) *Repo {
	t.Helper()
	home := t.TempDir()
	clock := int64(Epoch)
	return &Repo{t: t, Dir: dir, home: home, clock: &clock}
}

// Sibling returns a Repo for another directory that shares this one's
// HOME and clock (for clones and linked worktrees).
func (r *Repo) Sibling(dir string) *Repo {
	return &Repo{t: r.t, Dir: dir, home: r.home, clock: r.clock}
}

// Home is the isolated HOME used for git commands (its .gitconfig is not
// read by git, since GIT_CONFIG_GLOBAL is /dev/null).
func (r *Repo) Home() string { return r.home }

// Env is the environment every git command runs with.
func (r *Repo) Env() []string {
	date := fmt.Sprintf("@%d +0000", *r.clock)
	return append(GitEnv(r.home), "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
}

// Run runs git in dir and returns its trimmed stdout; it fails the test on
// error.
func (r *Repo) Run(dir string, args ...string) string {
	r.t.Helper()
	out, err := r.RunStdin(dir, "", args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// RunStdin runs git in dir with stdin and returns trimmed stdout.
func (r *Repo) RunStdin(dir, stdin string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = r.Env()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Git runs git in the repository directory.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	return r.Run(r.Dir, args...)
}

// Tick advances the clock by one minute.
func (r *Repo) Tick() { *r.clock += 60 }

// Commit writes files (path → content, relative to Dir), stages them and
// commits with msg at the next clock tick; it returns the new commit hash.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	for p, c := range files {
		full := filepath.Join(r.Dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.Git("add", "-A")
	r.Tick()
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}

// EmptyCommit commits nothing but msg.
func (r *Repo) EmptyCommit(msg string) string {
	r.t.Helper()
	return r.Commit(msg, nil)
}

// Branch creates (or resets) branch name at rev and checks it out.
func (r *Repo) Branch(name, rev string) {
	r.t.Helper()
	r.Git("checkout", "-q", "-B", name, rev)
}

// Rev resolves rev to a hash.
func (r *Repo) Rev(rev string) string {
	r.t.Helper()
	return r.Git("rev-parse", rev)
}

// BlobRef writes content as a blob and points ref at it.
func (r *Repo) BlobRef(ref, content string) string {
	r.t.Helper()
	h, err := r.RunStdin(r.Dir, content, "hash-object", "-w", "--stdin")
	if err != nil {
		r.t.Fatal(err)
	}
	r.Git("update-ref", ref, h)
	return h
}

// FastImport feeds a fast-import stream to `git fast-import`.
func (r *Repo) FastImport(stream string) {
	r.t.Helper()
	if _, err := r.RunStdin(r.Dir, stream, "fast-import", "--quiet"); err != nil {
		r.t.Fatal(err)
	}
}

// TreeSnapshot records every file and directory under root (mode, and the
// SHA-256 of the content or the symlink target), .git included, so two
// snapshots show whether anything under root was written.
func TreeSnapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		h := sha256.New()
		h.Write([]byte(info.Mode().String()))
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Write([]byte(" -> " + target))
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		out[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TreeChanges lists what differs between two snapshots ("created x",
// "changed x", "removed x"), sorted; nil when nothing does.
func TreeChanges(before, after map[string]string) []string {
	var out []string
	for p, v := range before {
		if w, ok := after[p]; !ok {
			out = append(out, "removed "+p)
		} else if w != v {
			out = append(out, "changed "+p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			out = append(out, "created "+p)
		}
	}
	sort.Strings(out)
	return out
}

// NumberRewrite returns a text of n lines, each one of 13 numbers drawn at
// random (a fixed seed: 446,282 bytes for 200,000 lines), and the same
// text with every line changed to another of the 13: the hard case of a
// line diff, where every line changed yet each equals thousands of others.
func NumberRewrite(n int) (old, new string) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b strings.Builder
	for range n {
		v := rng.IntN(13)
		a.WriteString(strconv.Itoa(v) + "\n")
		b.WriteString(strconv.Itoa((v+1+rng.IntN(12))%13) + "\n")
	}
	return a.String(), b.String()
}
