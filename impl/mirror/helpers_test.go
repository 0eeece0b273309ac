package mirror

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/mirror/mirrortest"
	"github.com/stackd/stackd/impl/refs"
)

// gitEnv isolates fixture git commands from the machine's configuration
// and makes commits reproducible.
func gitEnv(home string) []string {
	return append(os.Environ(),
		"HOME="+home,
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Fixture",
		"GIT_AUTHOR_EMAIL=fixture@example.com",
		"GIT_AUTHOR_DATE=2020-01-01T00:00:00Z",
		"GIT_COMMITTER_NAME=Fixture",
		"GIT_COMMITTER_EMAIL=fixture@example.com",
		"GIT_COMMITTER_DATE=2020-01-01T00:00:00Z",
	)
}

func runGit(t testing.TB, dir string, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(dir)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// runGitBytes runs git and returns its raw standard output.
func runGitBytes(t testing.TB, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(dir)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// upstream is a bare repository served to the code under test. It is
// edited with plumbing commands only, so HEAD never moves by accident.
type upstream struct {
	t    testing.TB
	dir  string
	name string
}

func newUpstream(t testing.TB, base, name string) *upstream {
	t.Helper()
	dir := filepath.Join(base, name)
	runGit(t, base, nil, "init", "-q", "--bare", "-b", "main", dir)
	return &upstream{t: t, dir: dir, name: name}
}

// commit creates a commit with the given files (name -> content) on top of
// parent ("" for a root commit) and returns its id.
func (u *upstream) commit(parent, msg string, files map[string][]byte) string {
	u.t.Helper()
	var tree strings.Builder
	for name, content := range files {
		blob := runGit(u.t, u.dir, content, "hash-object", "-w", "--stdin")
		fmt.Fprintf(&tree, "100644 blob %s\t%s\n", blob, name)
	}
	treeID := runGit(u.t, u.dir, []byte(tree.String()), "mktree")
	args := []string{"commit-tree", treeID, "-m", msg}
	if parent != "" {
		args = append(args, "-p", parent)
	}
	return runGit(u.t, u.dir, nil, args...)
}

func (u *upstream) blob(content string) string {
	u.t.Helper()
	return runGit(u.t, u.dir, []byte(content), "hash-object", "-w", "--stdin")
}

func (u *upstream) set(ref, id string) {
	u.t.Helper()
	runGit(u.t, u.dir, nil, "update-ref", ref, id)
}

func (u *upstream) del(ref string) {
	u.t.Helper()
	runGit(u.t, u.dir, nil, "update-ref", "-d", ref)
}

func (u *upstream) symref(target string) {
	u.t.Helper()
	runGit(u.t, u.dir, nil, "symbolic-ref", "HEAD", target)
}

// mirrored returns the upstream refs in the mirrored namespaces.
func (u *upstream) mirrored() map[string]string {
	u.t.Helper()
	out := runGit(u.t, u.dir, nil, "for-each-ref", "--format=%(objectname) %(refname)",
		"refs/heads", "refs/stackit", "refs/branch-metadata")
	refs := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if id, name, ok := strings.Cut(line, " "); ok {
			refs[name] = id
		}
	}
	return refs
}

// gitRefs returns every ref of the repository in dir (any namespace), as
// git itself sees them.
func gitRefs(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := runGit(t, dir, nil, "for-each-ref", "--format=%(objectname) %(refname)")
	refs := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if id, name, ok := strings.Cut(line, " "); ok {
			refs[name] = id
		}
	}
	return refs
}

// tableRefs returns the direct refs of a table.
func tableRefs(tbl *refs.Table) map[string]string {
	out := map[string]string{}
	for _, r := range tbl.All() {
		if !r.Symbolic() {
			out[r.Name] = r.Hash.String()
		}
	}
	return out
}

// gitHead returns the target of HEAD in dir, as git reads it.
func gitHead(t *testing.T, dir string) string {
	t.Helper()
	return runGit(t, dir, nil, "symbolic-ref", "HEAD")
}

// fsck runs git fsck --full in dir and fails on any problem.
func fsck(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("git", "fsck", "--full", "--strict", "--no-dangling")
	cmd.Dir = dir
	cmd.Env = gitEnv(dir)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "error") || strings.Contains(string(out), "missing") {
		t.Fatalf("git fsck in %s: %v\n%s", dir, err, out)
	}
}

// looseRefs lists the loose ref files under dir/refs.
func looseRefs(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, "refs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// packs lists the pack files (pack-*.pack) of the mirror in dir.
func packs(t testing.TB, dir string) []string {
	t.Helper()
	out, err := filepath.Glob(filepath.Join(dir, "objects", "pack", "pack-*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// idxObjects lists the objects of a pack, read from its .idx by git.
func idxObjects(t *testing.T, pack string) []string {
	t.Helper()
	raw, err := os.ReadFile(strings.TrimSuffix(pack, ".pack") + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(runGit(t, filepath.Dir(pack), raw, "show-index"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			ids = append(ids, f[1])
		}
	}
	return ids
}

// fileState is what a write would change about a file.
type fileState struct {
	ino   uint64
	size  int64
	mtime int64
	mode  fs.FileMode
}

// treeState records every entry under dir.
func treeState(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fileState{size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode()}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.ino = sys.Ino
		}
		if fi.IsDir() {
			st.size = 0 // directory sizes are not content
		}
		out[p] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func freePort(t *testing.T) int { return mirrortest.FreePort(t) }

func startDaemon(t testing.TB, base string) string { return mirrortest.StartDaemon(t, base) }

func startProxy(t *testing.T, target string) *mirrortest.Proxy {
	return mirrortest.StartProxy(t, target)
}

// startHTTP serves the repositories under root with git http-backend via
// CGI. If user is not empty, requests must carry that basic auth.
func startHTTP(t *testing.T, root, user, pass string) string {
	t.Helper()
	execPath := runGit(t, root, nil, "--exec-path")
	backend := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Dir:  root,
		Env: append(gitEnv(root),
			"GIT_PROJECT_ROOT="+root,
			"GIT_HTTP_EXPORT_ALL=1",
		),
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// noiseFile returns n deterministic, incompressible bytes.
func noiseFile(n int) []byte { return xorshiftBytes(0x9e3779b97f4a7c15, n) }

// xorshiftBytes returns n bytes of the xorshift sequence from state x.
func xorshiftBytes(x uint64, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		out[i] = byte(x)
	}
	return out
}

// waitStalled waits for the proxy to stall; the timeout is a failure
// guard only.
func waitStalled(t *testing.T, p *mirrortest.Proxy) {
	t.Helper()
	select {
	case <-p.Stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("transfer never reached the pack")
	}
}

func bg() context.Context { return context.Background() }
