// Package hostiletest replays the attacks of a malicious upstream (package
// hostile) against the built stackd binary, as an allowed user would aim
// them: onboarding (clone) and sync (fetch) through the API, over git://
// and smart HTTP. For each it checks the status and problem type, the
// process's peak memory (VmHWM) growth, that the mirror on disk is byte
// for byte what it was with git fsck --strict clean, and that the last
// good view is served, also after a restart.
package hostiletest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl/mirror/hostile"
	"github.com/stackd/stackd/impl/mirror/mirrortest"
	"github.com/stackd/stackd/impl/stackdbin"
)

// maxGrowth bounds the growth of the server's peak resident memory during
// one attack.
const maxGrowth = 256 << 20

// stackdBinary is cmd/stackd built without the race detector, whose
// shadow memory would hide what the binary as shipped uses.
func stackdBinary(t *testing.T) string { return stackdbin.Path(t, false) }

// server is one `stackd serve` process.
type server struct {
	url  string
	cmd  *exec.Cmd
	logs *strings.Builder
	mu   *sync.Mutex
	done chan struct{}
	c    *client.ClientWithResponses
}

func start(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", mirrortest.FreePort(t))
	args := append([]string{"serve", "--addr", addr, "--data-dir", dataDir, "--log-format", "json",
		"--allow-private-remotes", "--sync-interval", "0", "--sync-timeout", "1m",
		"--rate-limit", "off", "--sync-rate-limit", "off", "--auth-failure-rate-limit", "off"}, extra...)
	cmd := exec.Command(stackdBinary(t), args...)
	cmd.Dir = t.TempDir() // no repository here
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{url: "http://" + addr, cmd: cmd, logs: &strings.Builder{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			s.mu.Lock()
			s.logs.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if strings.Contains(sc.Text(), `"msg":"stackd listening"`) {
				once.Do(func() { close(listening) })
			}
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.log())
		}
	})
	select {
	case <-listening:
	case <-s.done:
		t.Fatalf("stackd exited:\n%s", s.log())
	case <-time.After(time.Minute): // failure guard
		t.Fatalf("stackd not listening:\n%s", s.log())
	}
	if s.c, err = client.NewClientWithResponses(s.url); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// ready waits until /readyz answers 200: every repository had its first
// refresh (from disk) since the start.
func (s *server) ready(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // failure guard
	for {
		res, err := http.Get(s.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v\n%s", err, s.log())
		}
		select {
		case <-s.done:
			t.Fatalf("stackd died:\n%s", s.log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// loaded waits until repository id serves a view: /readyz does not wait
// for repositories onboarded through the API.
func (s *server) loaded(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // failure guard
	for {
		r, err := s.c.GetRepoWithResponse(context.Background(), id)
		if err == nil && r.JSON200 != nil && r.JSON200.ViewVersion != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s serves no view: %v\n%s", id, err, s.log())
		}
		select {
		case <-s.done:
			t.Fatalf("stackd died:\n%s", s.log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// alive fails the test when the process is gone.
func (s *server) alive(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
		t.Fatalf("stackd died:\n%s", s.log())
	default:
	}
}

// procStatus reads a field of /proc/<pid>/status, in bytes.
func (s *server) procStatus(t *testing.T, field string) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, s.cmd.Process.Pid)
	return 0
}

// peakGrowth runs fn and returns how far the process's peak resident
// memory rose above what it was resident before: the kernel's high-water
// mark is reset first (clear_refs 5).
func (s *server) peakGrowth(t *testing.T, fn func()) int64 {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.cmd.Process.Pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak: %v", err)
	}
	before := s.procStatus(t, "VmRSS")
	fn()
	return s.procStatus(t, "VmHWM") - before
}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // failure guard
	t.Cleanup(cancel)
	return ctx
}

// problem is what the tests read of a problem body.
type problem struct {
	Type   string  `json:"type"`
	Status int     `json:"status"`
	Detail string  `json:"detail"`
	SyncID *string `json:"syncId"`
}

func problemOf(t *testing.T, body []byte) problem {
	t.Helper()
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("not a problem: %s", body)
	}
	return p
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func fsck(t *testing.T, dir string) {
	t.Helper()
	out := git(t, dir, "fsck", "--full", "--strict", "--no-dangling")
	if strings.Contains(out, "error") || strings.Contains(out, "missing") {
		t.Fatalf("git fsck: %s", out)
	}
}

// attack is one malicious answer and what it must get.
type attack struct {
	name  string
	make  func(parents ...plumbing.Hash) hostile.Built
	prob  string // the problem type; "" for a success
	clone bool   // replayed against onboarding too
}

var attacks = []attack{
	{"header claims 2^32-1 objects", func(...plumbing.Hash) hostile.Built { return hostile.HeaderOnly(hostile.CountMax) }, "upstream-too-large", true},
	{"header claims 2^25 objects", func(...plumbing.Hash) hostile.Built { return hostile.HeaderOnly(hostile.Count32M) }, "upstream-too-large", true},
	{"delta bomb 558 MB", func(p ...plumbing.Hash) hostile.Built { return hostile.DeltaBomb(hostile.Bomb558MB, p...) }, "upstream-too-large", true},
	{"delta bomb 2 GB", func(p ...plumbing.Hash) hostile.Built { return hostile.DeltaBomb(hostile.Bomb2GB, p...) }, "upstream-too-large", true},
	{"delta bomb 1 GiB", func(p ...plumbing.Hash) hostile.Built { return hostile.DeltaBomb(hostile.Bomb1GiB, p...) }, "upstream-too-large", false},
	{"commit of 64 MiB", func(p ...plumbing.Hash) hostile.Built { return hostile.HugeCommit(hostile.HugeCommit64M, p...) }, "upstream-too-large", true},
	{"commit of 256 MiB", func(p ...plumbing.Hash) hostile.Built { return hostile.HugeCommit(hostile.HugeCommit256M, p...) }, "upstream-too-large", true},
	{"duplicate objects", hostile.DuplicateObjects, "upstream-invalid", true},
	{"bytes after the checksum", func(p ...plumbing.Hash) hostile.Built { return hostile.TrailingGarbage([]byte("junk"), p...) }, "upstream-invalid", true},
	{"a tree never sent", hostile.MissingTree, "upstream-invalid", true},
	{"a parent that exists nowhere", func(...plumbing.Hash) hostile.Built { return hostile.MissingParent() }, "upstream-invalid", false},
	{"a branch that names a blob", func(...plumbing.Hash) hostile.Built { return hostile.RefToBlob() }, "upstream-invalid", true},
	{"bad checksum", hostile.BadChecksum, "upstream-invalid", false},
	{"truncated", func(p ...plumbing.Hash) hostile.Built { return hostile.Truncated(200, p...) }, "upstream-invalid", false},
	{"lying size", func(p ...plumbing.Hash) hostile.Built { return hostile.LyingSize(100, p...) }, "upstream-invalid", false},
	{"20,000 chained deltas", func(p ...plumbing.Hash) hostile.Built { return hostile.DeepChain(hostile.DeepChainDepth, p...) }, "upstream-too-large", false},
	{"a branch whose history holds a commit over the view's limit", hugeAncestor, "view-build-failed", false},
}

// hugeAncestor is a valid pack the mirror accepts (every commit within
// the fetch limit) but whose view cannot be built: a branch whose parent
// is a commit of 2 MiB, over the view's commit limit.
func hugeAncestor(parents ...plumbing.Hash) hostile.Built {
	p := hostile.NewPack()
	p.Add(hostile.EmptyTree)
	big := hostile.Commit(hostile.EmptyTree.Hash(), parents, hostile.DefaultSignature, hostile.DefaultSignature,
		"hostile: a long message\n\n"+strings.Repeat("a", 2<<20)+"\n")
	p.Add(big)
	tip := hostile.Commit(hostile.EmptyTree.Hash(), []plumbing.Hash{big.Hash()}, hostile.DefaultSignature, hostile.DefaultSignature, "hostile: on top\n")
	p.Add(tip)
	return hostile.Built{Pack: p.Bytes(), Tip: tip.Hash(), Refs: []hostile.Ref{{Name: "refs/heads/main", Hash: tip.Hash()}}}
}

// withoutBuildTime is a view without its build time, which a restart's
// rebuild changes.
func withoutBuildTime(t *testing.T, view []byte) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(view, &v); err != nil {
		t.Fatal(err)
	}
	delete(v, "builtAt")
	out, _ := json.Marshal(v)
	return string(out)
}

// work is the real repository the good mirror follows: main and a
// stacked branch with stackit metadata.
func work(t *testing.T) (string, plumbing.Hash) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "work")
	git(t, "", "init", "-q", "-b", "main", dir)
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", "README")
	git(t, dir, "commit", "-q", "-m", "initial")
	git(t, dir, "checkout", "-q", "-b", "feature")
	git(t, dir, "commit", "-q", "--allow-empty", "-m", "feature work")
	meta := exec.Command("git", "hash-object", "-w", "--stdin")
	meta.Dir = dir
	meta.Stdin = strings.NewReader(`{"parentBranchName":"main"}`)
	out, err := meta.Output()
	if err != nil {
		t.Fatal(err)
	}
	git(t, dir, "update-ref", "refs/stackit/metadata/feature", strings.TrimSpace(string(out)))
	git(t, dir, "checkout", "-q", "main")
	return dir, plumbing.NewHash(git(t, dir, "rev-parse", "main"))
}

func TestAttacksAgainstTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stackd binary against every attack; skipped with -short")
	}
	srv := hostile.Start(t)
	dir, tip := work(t)
	data := t.TempDir()
	s := start(t, data)
	ctx := bg(t)

	srv.Set("h/good.git", hostile.Scenario{Passthrough: dir})
	id, full := "good", "hostile/good"
	res, err := s.c.CreateRepoWithResponse(ctx, client.RepoCreate{Id: &id, Url: srv.HTTPURL("h/good.git"), FullName: &full})
	if err != nil || res.StatusCode() != http.StatusCreated {
		t.Fatalf("onboarding the good repository: %v %s", err, res.Body)
	}
	goodView := func() (string, []byte) {
		t.Helper()
		v, err := s.c.GetViewWithResponse(ctx, "good", nil)
		if err != nil || v.StatusCode() != http.StatusOK {
			t.Fatalf("view of the good repository: %v", err)
		}
		return v.HTTPResponse.Header.Get("ETag"), v.Body
	}
	etag, view := goodView()
	if !strings.Contains(string(view), `"feature"`) {
		t.Fatalf("the good view lacks its branch: %s", view)
	}
	mirrorDir := filepath.Join(data, "mirrors", "good.git")
	before := hostile.Digest(t, mirrorDir)

	for i, a := range attacks {
		if !a.clone {
			continue
		}
		for _, tr := range []string{"git", "http"} {
			t.Run("onboard/"+tr+"/"+a.name, func(t *testing.T) {
				repo := fmt.Sprintf("h/a%d-%s.git", i, tr)
				srv.Set(repo, a.make().Scenario())
				url := srv.GitURL(repo)
				if tr == "http" {
					url = srv.HTTPURL(repo)
				}
				id, full := fmt.Sprintf("a%d-%s", i, tr), fmt.Sprintf("hostile/a%d-%s", i, tr)
				var res *client.CreateRepoResponse
				growth := s.peakGrowth(t, func() {
					var err error
					if res, err = s.c.CreateRepoWithResponse(ctx, client.RepoCreate{Id: &id, Url: url, FullName: &full}); err != nil {
						t.Fatal(err)
					}
				})
				s.alive(t)
				p := problemOf(t, res.Body)
				if res.StatusCode() != http.StatusBadGateway || p.Type != "/problems/"+a.prob {
					t.Fatalf("onboarding: %d %s, want 502 /problems/%s", res.StatusCode(), res.Body, a.prob)
				}
				if growth > maxGrowth {
					t.Errorf("peak memory grew by %d MiB", growth>>20)
				}
				t.Logf("%s: peak memory grew by %d MiB", p.Detail, growth>>20)
				if _, err := os.Stat(filepath.Join(data, "mirrors", id+".git")); err == nil {
					t.Fatal("a refused onboarding left its mirror")
				}
				if r, err := s.c.GetRepoWithResponse(ctx, id); err != nil || r.StatusCode() != http.StatusNotFound {
					t.Fatalf("a refused onboarding is served: %v %d", err, r.StatusCode())
				}
			})
		}
	}

	adverts := []struct {
		name   string
		built  hostile.Built
		status int
		prob   string
	}{
		{"endless advertisement", hostile.EndlessRefs(), http.StatusBadGateway, "upstream-too-large"},
		{"100,000 refs of 1 KiB names", hostile.ManyRefs(hostile.ManyRefsCount, hostile.ManyRefsNameLen), http.StatusCreated, ""},
		{"100,000 refs of 1 KiB names a mirror keeps", hostile.ManySplitRefs(hostile.ManyRefsCount, hostile.ManyRefsNameLen), http.StatusBadGateway, "upstream-too-large"},
		{"50,000 refs of 150-byte names", hostile.ManySplitRefs(50_000, 150), http.StatusCreated, ""},
		{"lying pkt-line", hostile.LyingPktLine(hostile.PktOverMax), http.StatusBadGateway, "upstream-invalid"},
	}
	for i, a := range adverts {
		t.Run("onboard/"+a.name, func(t *testing.T) {
			repo := fmt.Sprintf("h/ad%d.git", i)
			srv.Set(repo, a.built.Scenario())
			id, full := fmt.Sprintf("ad%d", i), fmt.Sprintf("hostile/ad%d", i)
			var res *client.CreateRepoResponse
			growth := s.peakGrowth(t, func() {
				var err error
				if res, err = s.c.CreateRepoWithResponse(ctx, client.RepoCreate{Id: &id, Url: srv.GitURL(repo), FullName: &full}); err != nil {
					t.Fatal(err)
				}
			})
			s.alive(t)
			if res.StatusCode() != a.status || (a.prob != "" && problemOf(t, res.Body).Type != "/problems/"+a.prob) {
				t.Fatalf("onboarding: %d %.300s, want %d %s", res.StatusCode(), res.Body, a.status, a.prob)
			}
			t.Logf("peak memory grew by %d MiB", growth>>20)
			if growth > maxGrowth {
				t.Errorf("peak memory grew by %d MiB", growth>>20)
			}
		})
	}

	for _, a := range attacks {
		t.Run("sync/"+a.name, func(t *testing.T) {
			srv.Set("h/good.git", a.make(tip).Hybrid(dir))
			var res *client.SyncRepoResponse
			growth := s.peakGrowth(t, func() {
				var err error
				if res, err = s.c.SyncRepoWithResponse(ctx, "good", nil); err != nil {
					t.Fatal(err)
				}
			})
			s.alive(t)
			p := problemOf(t, res.Body)
			if res.StatusCode() != http.StatusBadGateway || p.Type != "/problems/"+a.prob || p.SyncID == nil {
				t.Fatalf("sync: %d %s, want 502 /problems/%s with a syncId", res.StatusCode(), res.Body, a.prob)
			}
			if growth > maxGrowth {
				t.Errorf("peak memory grew by %d MiB", growth>>20)
			}
			t.Logf("%s: peak memory grew by %d MiB", p.Detail, growth>>20)
			hostile.SameDigest(t, before, hostile.Digest(t, mirrorDir))
			fsck(t, mirrorDir)
			if e, v := goodView(); e != etag || string(v) != string(view) {
				t.Fatalf("the view changed: %s\n%s", e, v)
			}
		})
	}

	// A restart serves the last good view, and the repository's status
	// says its last sync failed.
	s.stop()
	s = start(t, data)
	s.ready(t)
	s.loaded(t, "good")
	if _, v := goodView(); withoutBuildTime(t, v) != withoutBuildTime(t, view) {
		t.Fatalf("after a restart the view is\n%s\nwas\n%s", v, view)
	}
	r, err := s.c.GetRepoWithResponse(ctx, "good")
	if err != nil || r.JSON200 == nil {
		t.Fatalf("repository after the restart: %v", err)
	}
	// And once the upstream is sane again, the next sync succeeds.
	srv.Set("h/good.git", hostile.Scenario{Passthrough: dir})
	if res, err := s.c.SyncRepoWithResponse(ctx, "good", nil); err != nil || res.StatusCode() != http.StatusOK {
		t.Fatalf("sync after the attacks: %v %s", err, res.Body)
	}
	fsck(t, mirrorDir)
}
