package view_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// hugeSize is the size of the hostile objects: 64 times MaxCommitSize.
const hugeSize = 64 << 20

// allocBudget is what a build over a huge object may allocate in all: an
// eighth of the object. A build that read the object, or decoded it, or
// copied its subject, would allocate at least the object's size.
const allocBudget = hugeSize / 8

// allocated is how many bytes the heap allocated while f ran.
// runtime.MemStats.TotalAlloc only grows, so whatever f allocated and
// freed again is counted, however briefly it lived.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// bigFile writes head, n bytes fill and tail to a new file, a chunk at a
// time (the test does not hold n bytes either).
func bigFile(t *testing.T, head string, n int64, fill byte, tail string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString(head)
	chunk := strings.Repeat(string(fill), 1<<16)
	for left := n; left > 0; left -= int64(len(chunk)) {
		w.WriteString(chunk[:min(left, int64(len(chunk)))])
	}
	w.WriteString(tail)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// hugeCommit makes a commit of more than hugeSize bytes on top of parent,
// stored loose (git commit-tree) or as a delta in a pack (see
// gittest.DeltaPack). Its subject is the huge part when loose.
func hugeCommit(t *testing.T, r *gittest.Repo, parent string, packed bool) string {
	t.Helper()
	r.Tick()
	if !packed {
		msg := bigFile(t, "", hugeSize, 'x', "\n\nbody\n")
		return r.Git("commit-tree", parent+"^{tree}", "-p", parent, "-F", msg)
	}
	base := fmt.Sprintf("tree %s\nparent %s\nauthor Ada Author <ada@example.com> %d +0000\ncommitter Ada Author <ada@example.com> %d +0000\n\nhuge\n",
		r.Rev(parent+"^{tree}"), r.Rev(parent), gittest.Epoch+3600, gittest.Epoch+3600)
	_, id := r.DeltaPack("commit", []byte(base), hugeSize, 'x')
	return id
}

// plainRepo hides a Repo's ObjectSize: a Repo that is not a view.Sizer.
type plainRepo struct{ view.Repo }

// TestHugeCommitFailsTheBuild: a walk that meets a commit over
// MaxCommitSize fails the build with ErrObjectTooLarge, naming the commit
// and the limit; the build reads nothing of it (with a Sizer) whether the
// commit is loose or a delta in a pack, and without a Sizer it is still
// refused before it is decoded.
func TestHugeCommitFailsTheBuild(t *testing.T) {
	for _, packed := range []bool{false, true} {
		t.Run(fmt.Sprintf("packed %v", packed), func(t *testing.T) {
			r := stackRepo(t)
			huge := hugeCommit(t, r, "main", packed)
			r.Tick()
			r.Git("update-ref", "refs/heads/d", r.Git("commit-tree", "main^{tree}", "-p", huge, "-m", "on top"))

			check := func(err error) {
				t.Helper()
				var tooLarge *view.ObjectTooLargeError
				if !errors.Is(err, view.ErrObjectTooLarge) || !errors.As(err, &tooLarge) {
					t.Fatalf("Build: %v; want ErrObjectTooLarge", err)
				}
				if tooLarge.ID.String() != huge || tooLarge.Limit != view.MaxCommitSize || tooLarge.Size <= view.MaxCommitSize {
					t.Errorf("error = %+v; want id %s, limit %d", tooLarge, huge, view.MaxCommitSize)
				}
				if strings.Contains(err.Error(), "xxxx") {
					t.Errorf("error carries the content: %.200s", err)
				}
			}
			repo := openRepo(t, r.Dir)
			var err error
			alloc := allocated(func() { _, err = view.Build(context.Background(), repo, view.Input{Trunk: "main"}) })
			check(err)
			t.Logf("build over a %d MiB commit allocated %d KiB", hugeSize>>20, alloc>>10)
			if alloc > allocBudget {
				t.Errorf("build allocated %d bytes; budget %d", alloc, allocBudget)
			}

			_, err = view.Build(context.Background(), plainRepo{repo}, view.Input{Trunk: "main"})
			check(err)
		})
	}
}

// TestHugeTipIsLeftOut: a branch whose tip is over MaxCommitSize is left
// out with a warning, like any tip that is not a readable commit, and the
// rest of the view builds. The refusal is remembered: a rebuild from a
// Repo that is not a Sizer does not read the object again.
func TestHugeTipIsLeftOut(t *testing.T) {
	r := stackRepo(t)
	r.Git("update-ref", "refs/heads/d", hugeCommit(t, r, "main", false))
	logs := &logBuffer{}
	b := view.NewBuilder(view.Input{RepoID: "local", Kind: gen.Local, Trunk: "main", Logger: slog.New(slog.NewTextHandler(logs, nil))}, nil)
	repo := plainRepo{openRepo(t, r.Dir)}
	s, _, err := b.Build(context.Background(), repo, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "branches", names(s.Branches()), []string{"main", "a", "b", "c"})
	if l := logs.String(); !containsAll(l, "level=WARN", "branch=d", "too large") {
		t.Errorf("no warning about d:\n%s", l)
	}
	if strings.Contains(logs.String(), "xxxx") {
		t.Error("the warning carries the content")
	}
	alloc := allocated(func() { _, _, err = b.Build(context.Background(), repo, nil) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rebuild allocated %d KiB", alloc>>10)
	if alloc > allocBudget {
		t.Errorf("rebuild allocated %d bytes (budget %d): it read the huge tip again", alloc, allocBudget)
	}
}

// TestHugeMetadataIsIgnored: a metadata blob over MaxMetadataSize is not
// read; it counts as malformed metadata (a warning, and the branch falls
// back), even though, read whole, it would be valid JSON naming a parent.
func TestHugeMetadataIsIgnored(t *testing.T) {
	for _, ref := range []string{"refs/stackit/metadata/c", "refs/branch-metadata/c"} {
		t.Run(ref, func(t *testing.T) {
			r := stackRepo(t)
			blob := r.Git("hash-object", "-w", bigFile(t, `{"parentBranchName":"a"`, hugeSize, ' ', "}"))
			r.Git("update-ref", ref, blob)
			var s *view.Snapshot
			var logs *logBuffer
			alloc := allocated(func() { s, logs = build(t, r, view.Input{Trunk: "main"}) })
			wantParent(t, s, "c", "b", gen.BranchParentSourceAncestry)
			if l := logs.String(); !containsAll(l, "level=WARN", "malformed branch metadata", "branch=c", "too large") {
				t.Errorf("no warning about c's metadata:\n%s", l)
			}
			t.Logf("build with a %d MiB metadata blob allocated %d KiB", hugeSize>>20, alloc>>10)
			if alloc > allocBudget {
				t.Errorf("build allocated %d bytes; budget %d", alloc, allocBudget)
			}
		})
	}
	t.Run("stack blob", func(t *testing.T) {
		r := stackRepo(t)
		r.BlobRef("refs/stackit/metadata/a", meta(t, "main", map[string]any{"stackId": "s-1"}))
		blob := r.Git("hash-object", "-w", bigFile(t, `{"title":"T"`, hugeSize, ' ', "}"))
		r.Git("update-ref", "refs/stackit/stacks/s-1", blob)
		s, logs := build(t, r, view.Input{Trunk: "main"})
		if st := s.Stacks(); len(st) != 1 || st[0].Id != "s-1" || st[0].Title != "a" {
			t.Errorf("stacks = %+v; want stack s-1 titled by its root", st)
		}
		if l := logs.String(); !containsAll(l, "level=WARN", "malformed stack metadata", "too large") {
			t.Errorf("no warning about the stack blob:\n%s", l)
		}
	})
	t.Run("just under the limit", func(t *testing.T) {
		r := stackRepo(t)
		head := `{"parentBranchName":"a"`
		r.Git("update-ref", "refs/stackit/metadata/c",
			r.Git("hash-object", "-w", bigFile(t, head, view.MaxMetadataSize-int64(len(head))-1, ' ', "}")))
		s, _ := build(t, r, view.Input{Trunk: "main"})
		wantParent(t, s, "c", "a", gen.BranchParentSourceStackit)
	})
}

// TestCacheAddSkipsHugeCommits: content over MaxCommitSize handed to
// Cache.Add (a mirror's clone shows what arrives) is not decoded into the
// cache: the build meets the commit and refuses it.
func TestCacheAddSkipsHugeCommits(t *testing.T) {
	r := stackRepo(t)
	r.Tick()
	big := r.Git("commit-tree", "main^{tree}", "-p", "main", "-F", bigFile(t, "big\n\n", 2*view.MaxCommitSize, 'x', "\n"))
	r.Tick()
	r.Git("update-ref", "refs/heads/d", r.Git("commit-tree", "main^{tree}", "-p", big, "-m", "on top"))
	content, err := r.RunStdin(r.Dir, "", "cat-file", "commit", big)
	if err != nil {
		t.Fatal(err)
	}
	c := view.NewCache()
	c.Add(plumbing.NewHash(big), plumbing.CommitObject, []byte(content+"\n"))
	_, _, err = view.NewBuilder(view.Input{Trunk: "main"}, c).Build(context.Background(), openRepo(t, r.Dir), nil)
	if !errors.Is(err, view.ErrObjectTooLarge) {
		t.Fatalf("Build: %v; want ErrObjectTooLarge", err)
	}
}

// TestLongSubjectsAreCut: subjects over MaxSubjectBytes are cut on a
// UTF-8 boundary and end with the ellipsis, flagged subjectTruncated;
// author names over MaxAuthorBytes are cut the same way.
func TestLongSubjectsAreCut(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name, subject, want string
		cut                 bool
	}{
		{"short", "fix the build", "fix the build", false},
		{"exactly the limit", a(view.MaxSubjectBytes), a(view.MaxSubjectBytes), false},
		{"one byte over", a(view.MaxSubjectBytes + 1), a(view.MaxSubjectBytes-3) + "…", true},
		{"3-byte character across the cut", a(508) + strings.Repeat("€", 10), a(508) + "…", true},
		{"4-byte character across the cut", a(507) + strings.Repeat("😀", 5), a(507) + "…", true},
		{"characters end at the cut", a(506) + strings.Repeat("é", 20), a(506) + "é…", true},
		{"huge", a(200_000), a(view.MaxSubjectBytes-3) + "…", true},
	}
	longName := strings.Repeat("Ñ", 200) // 400 bytes
	r := stackRepo(t)
	var stream strings.Builder
	for i, tt := range tests {
		msg := tt.subject + "\n\nthe body\n"
		author := "Ada Author"
		if i == 0 {
			author = longName
		}
		fmt.Fprintf(&stream, "commit refs/heads/s%d\nauthor %s <ada@example.com> %d +0000\ncommitter Carl <carl@example.com> %d +0000\ndata %d\n%s\nfrom %s\n\n",
			i, author, gittest.Epoch+3600, gittest.Epoch+3600, len(msg), msg, r.Rev("main"))
	}
	r.FastImport(stream.String())
	s, _ := build(t, r, view.Input{Trunk: "main"})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("s%d", i)
			b := mustBranch(t, s, name)
			if len(b.Commits) != 1 {
				t.Fatalf("%s has %d commits", name, len(b.Commits))
			}
			c := b.Commits[0]
			if c.Subject != tt.want || (c.SubjectTruncated != nil) != tt.cut || c.SubjectTruncated != nil && !*c.SubjectTruncated {
				t.Errorf("subject %q (%d bytes), truncated %v; want %q, %v", c.Subject, len(c.Subject), deref(c.SubjectTruncated), tt.want, tt.cut)
			}
			if len(c.Subject) > view.MaxSubjectBytes || !utf8.ValidString(c.Subject) {
				t.Errorf("subject of %d bytes, valid UTF-8 %v", len(c.Subject), utf8.ValidString(c.Subject))
			}
			js, _ := s.BranchJSON(name)
			if got := strings.Contains(string(js), `"subjectTruncated":true`); got != tt.cut {
				t.Errorf("JSON has subjectTruncated: %v, want %v: %.300s", got, tt.cut, js)
			}
			if i == 0 {
				want := strings.Repeat("Ñ", (view.MaxAuthorBytes-3)/2) + "…"
				if c.Author != want || len(c.Author) > view.MaxAuthorBytes {
					t.Errorf("author %q (%d bytes), want %q", c.Author, len(c.Author), want)
				}
			} else if c.Author != "Ada Author" {
				t.Errorf("author %q", c.Author)
			}
		})
	}
}
