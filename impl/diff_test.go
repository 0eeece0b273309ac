package impl_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/diff"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// diffDeadline bounds a wait for something that takes milliseconds: a
// generous bound against a hang, not a measurement.
const diffDeadline = 60 * time.Second

// rewriteRepo has numbers.txt (gittest.NumberRewrite's 200,000 lines) on
// main and branch "rewrite" changing every line of it.
func rewriteRepo(t *testing.T) *gittest.Repo {
	old, new := gittest.NumberRewrite(200_000)
	r := gittest.New(t)
	r.Commit("numbers", map[string]string{"numbers.txt": old})
	r.Branch("rewrite", "main")
	r.Commit("rewrite every line", map[string]string{"numbers.txt": new})
	return r
}

// gitApplies applies patch with git apply on a checkout of main and
// checks that it gives the tree of branch.
func gitApplies(t *testing.T, r *gittest.Repo, branch string, patch []byte) {
	t.Helper()
	wt := filepath.Join(t.TempDir(), "wt")
	r.Git("worktree", "add", "-q", "--detach", wt, "main")
	w := r.Sibling(wt)
	file := filepath.Join(t.TempDir(), "p.patch")
	if err := os.WriteFile(file, patch, 0o644); err != nil {
		t.Fatal(err)
	}
	w.Git("apply", "--index", file)
	if got, want := w.Git("write-tree"), r.Rev(branch+"^{tree}"); got != want {
		t.Fatalf("the patch gives tree %s, want %s", got, want)
	}
}

// TestBranchDiffLargeRewrite: the 200,000-line rewrite (446 KB, every
// line changed) is answered whole with the default limits, and applies.
func TestBranchDiffLargeRewrite(t *testing.T) {
	r := rewriteRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	resp, err := s.c.GetBranchDiffWithResponse(ctx(t), "local", "rewrite", nil)
	if err != nil || resp.StatusCode() != http.StatusOK {
		t.Fatalf("diff: %v %d", err, resp.StatusCode())
	}
	if bytes.Contains(resp.Body, []byte(view.TooLargePrefix)) {
		t.Fatalf("within the limits, yet: %.300s", resp.Body)
	}
	gitApplies(t, r, "rewrite", resp.Body)
}

// TestBranchDiffCancelledWhenClientsLeave: two clients ask for a patch
// whose computation would take minutes (a minimal diff of the rewrite,
// no budget), then hang up; the computation, shared by both, returns
// with the cancellation.
func TestBranchDiffCancelledWhenClientsLeave(t *testing.T) {
	r := rewriteRepo(t)
	joined := make(chan int, 10)
	started := make(chan struct{}, 10)
	done := make(chan error, 10)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{
		DiffLimits: view.DiffLimits{Work: math.MaxInt64, Options: diff.Options{Minimal: true}},
		DiffHooks: view.DiffHooks{
			Joined:  func(_, _ plumbing.Hash, n int) { joined <- n },
			Started: func(context.Context, plumbing.Hash, plumbing.Hash) { started <- struct{}{} },
			Done:    func(_, _ plumbing.Hash, err error) { done <- err },
		},
	})
	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	errs := make(chan error, 2)
	for range 2 {
		c, cancel := context.WithCancel(ctx(t))
		cancels = append(cancels, cancel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.c.GetBranchDiffWithResponse(c, "local", "rewrite", nil)
			errs <- err
		}()
	}
	for waiters := 0; waiters < 2; {
		select {
		case waiters = <-joined:
		case <-time.After(diffDeadline):
			t.Fatal("the two requests did not join one computation")
		}
	}
	select {
	case <-started:
	case <-time.After(diffDeadline):
		t.Fatal("the computation did not start")
	}
	for _, cancel := range cancels {
		cancel()
	}
	wg.Wait()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("client: %v, want its cancellation", err)
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the computation returned %v, want context.Canceled", err)
		}
	case <-time.After(diffDeadline):
		t.Fatal("the computation did not stop after both clients left")
	}
	if n := len(done); n != 0 {
		t.Errorf("%d more computations", n)
	}
}

// TestBranchDiffSharedByConcurrentRequests: four clients asking at once
// get the same patch from one computation; a fifth is answered from the
// cache.
func TestBranchDiffSharedByConcurrentRequests(t *testing.T) {
	r := stackRepo(t)
	const clients = 4
	hold := make(chan struct{})
	joined := make(chan int, clients+1)
	var starts atomic.Int32
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{DiffHooks: view.DiffHooks{
		Joined: func(_, _ plumbing.Hash, n int) { joined <- n },
		Started: func(ctx context.Context, _, _ plumbing.Hash) {
			starts.Add(1)
			select {
			case <-hold:
			case <-ctx.Done():
			}
		},
	}})
	bodies := make(chan []byte, clients)
	for range clients {
		go func() {
			resp, err := s.c.GetBranchDiffWithResponse(ctx(t), "local", "c", nil)
			if err != nil || resp.StatusCode() != http.StatusOK {
				t.Errorf("diff: %v", err)
				bodies <- nil
				return
			}
			bodies <- resp.Body
		}()
	}
	for waiters := 0; waiters < clients; {
		select {
		case waiters = <-joined:
		case <-time.After(diffDeadline):
			t.Fatalf("the requests did not all join one computation")
		}
	}
	close(hold)
	var first []byte
	for i := range clients {
		b := <-bodies
		if i == 0 {
			first = b
		}
		if !bytes.Contains(b, []byte("+++ b/c.txt\n")) || !bytes.Equal(b, first) {
			t.Fatalf("answer %d: %q", i, b)
		}
	}
	resp, err := s.c.GetBranchDiffWithResponse(ctx(t), "local", "c", nil)
	if err != nil || !bytes.Equal(resp.Body, first) {
		t.Fatalf("cached answer: %v %q", err, resp.Body)
	}
	if n := starts.Load(); n != 1 {
		t.Errorf("%d computations, want 1", n)
	}
}

// TestBranchDiffTooLargeFile: a file over the per-file limit is answered
// "too large" with its sizes.
func TestBranchDiffTooLargeFile(t *testing.T) {
	r := gittest.New(t)
	big := strings.Repeat("0123456789abcdef\n", 70_000) // 1,190,000 bytes
	r.Commit("big", map[string]string{"big.txt": big, "small.txt": "a\n"})
	r.Branch("grow", "main")
	r.Commit("grow", map[string]string{"big.txt": big + "more\n", "small.txt": "b\n"})
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	resp, err := s.c.GetBranchDiffWithResponse(ctx(t), "local", "grow", nil)
	if err != nil || resp.StatusCode() != http.StatusOK {
		t.Fatalf("diff: %v %d", err, resp.StatusCode())
	}
	want := fmt.Sprintf("Binary files a/big.txt and b/big.txt differ\nstackd: diff not shown, file larger than 1048576 bytes: old %d bytes; new %d bytes\n", len(big), len(big)+5)
	if !strings.Contains(string(resp.Body), want) || !strings.Contains(string(resp.Body), "-a\n+b\n") {
		t.Fatalf("patch:\n%s\nwant it to hold %q and small.txt's hunk", resp.Body, want)
	}
	// The tip's objects are here: git apply takes big.txt from them.
	gitApplies(t, r, "grow", resp.Body)
}
