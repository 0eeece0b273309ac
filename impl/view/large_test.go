package view_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// Shape of the large fixture: 500 stacks of 4 branches on a 300-commit
// trunk. Even stacks carry stackit metadata, odd ones rely on ancestry.
const (
	largeTrunk     = 300
	largeStacks    = 500
	largeStackSize = 4
)

func largeBranch(stack, part int) string { return fmt.Sprintf("stack%03d/part%d", stack, part) }

// largeRepo writes the fixture with one `git fast-import` (commits and
// metadata blobs) and one `git update-ref --stdin` (metadata refs).
func largeRepo(tb testing.TB) *gittest.Repo {
	tb.Helper()
	r := gittest.New(tb)
	var sb strings.Builder
	clock := int64(gittest.Epoch)
	commit := func(ref string, mark int, from int, msg string) {
		clock++
		fmt.Fprintf(&sb, "commit %s\nmark :%d\nauthor Ada Author <ada@example.com> %d +0000\ncommitter Carl Committer <carl@example.com> %d +0000\ndata %d\n%s\n",
			ref, mark, clock, clock, len(msg), msg)
		if from > 0 {
			fmt.Fprintf(&sb, "from :%d\n", from)
		}
		fmt.Fprintf(&sb, "M 644 inline %s\ndata %d\n%s\n\n", "f.txt", len(msg), msg)
	}
	for i := 1; i <= largeTrunk; i++ {
		commit("refs/heads/main", i, i-1, fmt.Sprintf("trunk %d", i))
	}
	mark := largeTrunk
	type metaRef struct {
		branch string
		mark   int
	}
	var metas []metaRef
	for s := range largeStacks {
		parentMark := (s*7)%largeTrunk + 1
		for p := range largeStackSize {
			name := largeBranch(s, p)
			mark++
			commit("refs/heads/"+name, mark, parentMark, fmt.Sprintf("%s commit 1", name))
			if p%2 == 1 { // every other branch has two commits
				mark++
				commit("refs/heads/"+name, mark, mark-1, fmt.Sprintf("%s commit 2", name))
			}
			parentMark = mark
			if s%2 == 0 {
				parent := "main"
				if p > 0 {
					parent = largeBranch(s, p-1)
				}
				body := fmt.Sprintf(`{"parentBranchName":%q,"stackId":"id-%d"}`, parent, s)
				mark++
				fmt.Fprintf(&sb, "blob\nmark :%d\ndata %d\n%s\n", mark, len(body), body)
				metas = append(metas, metaRef{name, mark})
			}
		}
	}
	marksFile := filepath.Join(tb.TempDir(), "marks")
	if _, err := r.RunStdin(r.Dir, sb.String(), "fast-import", "--quiet", "--export-marks="+marksFile); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(marksFile)
	if err != nil {
		tb.Fatal(err)
	}
	marks := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		m, h, _ := strings.Cut(line, " ")
		marks[m] = h
	}
	var upd strings.Builder
	for _, m := range metas {
		fmt.Fprintf(&upd, "create refs/stackit/metadata/%s %s\n", m.branch, marks[fmt.Sprintf(":%d", m.mark)])
	}
	if _, err := r.RunStdin(r.Dir, upd.String(), "update-ref", "--stdin"); err != nil {
		tb.Fatal(err)
	}
	r.Git("checkout", "-q", largeBranch(3, 2))
	return r
}

func TestLargeRepository(t *testing.T) {
	r := largeRepo(t)
	start := time.Now()
	s, logs := build(t, r, view.Input{Trunk: "main"})
	elapsed := time.Since(start)
	t.Logf("built %d branches in %v", len(s.Branches()), elapsed)
	if elapsed > 30*time.Second { // generous: -race on a slow machine
		t.Errorf("build took %v", elapsed)
	}
	if l := logs.String(); l != "" {
		t.Errorf("unexpected warnings: %.500s", l)
	}
	if got := len(s.Branches()); got != largeStacks*largeStackSize+1 {
		t.Fatalf("branches = %d", got)
	}
	if got := len(s.Stacks()); got != largeStacks {
		t.Fatalf("stacks = %d", got)
	}
	for _, st := range []int{0, 1, 2, 3, 250, 499} {
		src := gen.BranchParentSourceStackit
		if st%2 == 1 {
			src = gen.BranchParentSourceAncestry
		}
		for p := range largeStackSize {
			parent := "main"
			if p > 0 {
				parent = largeBranch(st, p-1)
			}
			wantParent(t, s, largeBranch(st, p), parent, src)
			b := mustBranch(t, s, largeBranch(st, p))
			wantCommits := 1 + p%2
			if b.Depth != p+1 || len(b.Commits) != wantCommits || b.Commits[0].Subject != largeBranch(st, p)+fmt.Sprintf(" commit %d", wantCommits) {
				t.Errorf("%s: depth %d commits %v", b.Name, b.Depth, subjects(b.Commits))
			}
			// part0 forks from an old trunk commit (except when it
			// happens to be the tip), so it needs a restack.
			wantRestack := p == 0 && (st*7)%largeTrunk+1 != largeTrunk
			if b.NeedsRestack != wantRestack {
				t.Errorf("%s: needsRestack %v", b.Name, b.NeedsRestack)
			}
		}
		stack, ok := s.Stack(largeBranch(st, 0))
		if !ok || len(stack.Branches) != largeStackSize {
			t.Errorf("stack %d = %+v", st, stack)
		}
		if st%2 == 0 && stack.Id != fmt.Sprintf("id-%d", st) {
			t.Errorf("stack %d id %q", st, stack.Id)
		}
	}
	if deref(s.Repo().CurrentBranch) != largeBranch(3, 2) || !mustBranch(t, s, largeBranch(3, 2)).IsCurrent {
		t.Errorf("current = %v", deref(s.Repo().CurrentBranch))
	}
	if subjects(s.View().RecentlyMerged)[0] != fmt.Sprintf("trunk %d", largeTrunk) {
		t.Errorf("recentlyMerged[0] = %v", s.View().RecentlyMerged[0])
	}
}

// forEachRef is the baseline: listing the refs with the git CLI.
func forEachRef(b *testing.B, r *gittest.Repo) {
	cmd := exec.Command("git", "for-each-ref", "--format=%(refname) %(objectname) %(subject)")
	cmd.Dir = r.Dir
	cmd.Env = r.Env()
	if out, err := cmd.Output(); err != nil || len(out) == 0 {
		b.Fatalf("for-each-ref: %v", err)
	}
}

// BenchmarkBuild2000 opens the repository read-only (fresh, as a refresh
// does) and builds the view of 2,000 branches. It also reports the ratio
// to BenchmarkForEachRef2000's work, measured in the same run, as
// "x-for-each-ref" (a full view build costs that many CLI ref listings).
func BenchmarkBuild2000(b *testing.B) {
	r := largeRepo(b)
	const baselineRuns = 5
	start := time.Now()
	for range baselineRuns {
		forEachRef(b, r)
	}
	baseline := time.Since(start) / baselineRuns
	b.ResetTimer()
	for b.Loop() {
		if _, err := view.Build(context.Background(), openRepo(b, r.Dir), view.Input{RepoID: "x", Kind: gen.Local, Trunk: "main"}); err != nil {
			b.Fatal(err)
		}
	}
	perOp := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perOp)/float64(baseline), "x-for-each-ref")
}

// BenchmarkForEachRef2000 is the baseline: `git for-each-ref` (refs,
// hashes and subjects) over the same repository.
func BenchmarkForEachRef2000(b *testing.B) {
	r := largeRepo(b)
	b.ResetTimer()
	for b.Loop() {
		forEachRef(b, r)
	}
}
