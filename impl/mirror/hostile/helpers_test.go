package hostile

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// testEnv isolates the git commands of the tests from the machine's
// configuration and makes commits reproducible.
func testEnv(home string) []string {
	return append(gitEnv(), "HOME="+home, "NO_PROXY=*", "no_proxy=*",
		"GIT_AUTHOR_NAME=Fixture", "GIT_AUTHOR_EMAIL=fixture@example.com", "GIT_AUTHOR_DATE=2020-01-01T00:00:00Z",
		"GIT_COMMITTER_NAME=Fixture", "GIT_COMMITTER_EMAIL=fixture@example.com", "GIT_COMMITTER_DATE=2020-01-01T00:00:00Z")
}

// gitRun runs git in dir and returns its output and error, with stderr
// in the error's text.
func gitRun(dir string, stdin []byte, args ...string) (string, string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = testEnv(dir)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// git runs git in dir and fails the test if it fails.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, stderr, err := gitRun(dir, nil, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(out)
}

// bareRepo returns a new empty bare repository.
func bareRepo(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bare.git")
	git(t, "", "init", "-q", "--bare", dir)
	return dir
}

// workRepo returns a repository with a few commits on main, a feature
// branch and an annotated tag, and main's tip.
func workRepo(t testing.TB) (string, plumbing.Hash) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "work")
	git(t, "", "init", "-q", "-b", "main", dir)
	for i, f := range []string{"a.txt", "b.txt", "c.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(strings.Repeat(f, i+1)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git(t, dir, "add", f)
		git(t, dir, "commit", "-q", "-m", "add "+f)
	}
	git(t, dir, "tag", "-a", "-m", "release", "v1.0")
	git(t, dir, "branch", "feature", "HEAD~1")
	return dir, plumbing.NewHash(git(t, dir, "rev-parse", "main"))
}

// indexPack feeds pack to git index-pack --strict --stdin in repo (which
// stores it there on success) and returns git's error output and error.
func indexPack(repo string, pack []byte) (string, error) {
	_, stderr, err := gitRun(repo, pack, "index-pack", "--strict", "--stdin")
	return stderr, err
}

// mustIndex stores pack in repo with git index-pack --strict, failing
// the test if git refuses it.
func mustIndex(t testing.TB, repo string, pack []byte) {
	t.Helper()
	if stderr, err := indexPack(repo, pack); err != nil {
		t.Fatalf("git index-pack --strict refused the pack: %v\n%s", err, stderr)
	}
}
