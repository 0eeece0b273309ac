package view_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// fiFile is a file of a fast-import commit: its mode ("100644",
// "100755", "120000" or "160000") and content (a submodule's: the commit
// id). A nil *fiFile deletes the path.
type fiFile struct{ mode, content string }

func regular(content string) *fiFile { return &fiFile{"100644", content} }

// fiPath quotes a path for fast-import when it must be.
func fiPath(p string) string {
	if !strings.ContainsAny(p, "\"\n\\") && !strings.HasPrefix(p, " ") {
		return p
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// fiCommit is a fast-import commit on branch (mark n, parent mark from
// unless 0) changing files.
func fiCommit(branch string, n, from int, files map[string]*fiFile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "commit refs/heads/%s\nmark :%d\ncommitter C <c@example.com> %d +0000\ndata 2\nc\n", branch, n, gittest.Epoch+60*n)
	if from > 0 {
		fmt.Fprintf(&b, "from :%d\n", from)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		f := files[p]
		switch {
		case f == nil:
			fmt.Fprintf(&b, "D %s\n", fiPath(p))
		case f.mode == "160000":
			fmt.Fprintf(&b, "M 160000 %s %s\n", f.content, fiPath(p))
		default:
			fmt.Fprintf(&b, "M %s inline %s\ndata %d\n%s\n", f.mode, fiPath(p), len(f.content), f.content)
		}
	}
	return b.String()
}

// twoCommits builds a repository with branch main holding base and branch
// feat changing it by change; it returns the two commits.
func twoCommits(t testing.TB, base, change map[string]*fiFile) (*gittest.Repo, plumbing.Hash, plumbing.Hash) {
	t.Helper()
	r := gittest.New(t)
	r.FastImport(fiCommit("main", 1, 0, base) + fiCommit("feat", 2, 1, change))
	return r, plumbing.NewHash(r.Rev("main")), plumbing.NewHash(r.Rev("feat"))
}

// gitOut runs git in r and returns its stdout, untrimmed.
func gitOut(t testing.TB, r *gittest.Repo, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = r.Env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// gitDiff is git's patch in the format Diff writes.
func gitDiff(t testing.TB, r *gittest.Repo, base, tip plumbing.Hash) []byte {
	return gitOut(t, r, "diff", "--full-index", "-M100%", "--no-indent-heuristic", "--no-color", "--no-ext-diff", base.String(), tip.String())
}

func numbered(n int, prefix string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%s%d\n", prefix, i)
	}
	return b.String()
}

// TestDiffSameAsGit builds a commit with every kind of change (content,
// newline at end of file, creation and deletion, empty files, modes,
// exact renames, symbolic links, a change of file type, binary files,
// submodules, paths git quotes, a file that became a directory) and
// checks the patch byte for byte against `git diff --full-index -M100%`.
func TestDiffSameAsGit(t *testing.T) {
	code := "package x\n\nfunc A() {\n" + numbered(20, "\ta := ") + "}\n\nfunc B() {\n" + numbered(20, "\tb := ") + "}\n"
	base := map[string]*fiFile{
		"modified.txt":       regular(numbered(30, "line ")),
		"code.go":            regular(code),
		"no-eol.txt":         regular("a\nb"),
		"add-eol.txt":        regular("x"),
		"deleted.txt":        regular("gone\n"),
		"empty-deleted":      regular(""),
		"exec.sh":            regular("#!/bin/sh\necho same\n"),
		"exec2.sh":           regular("#!/bin/sh\necho old\n"),
		"renamed-from.txt":   regular("moved as is\n"),
		"rename-mode-from":   regular("moved, made executable\n"),
		"link":               {"120000", "target-a"},
		"typechange":         regular("t"),
		"bin.dat":            regular("\x00\x01binary\x02"),
		"sub":                {"160000", strings.Repeat("1", 40)},
		"sub-gone":           {"160000", strings.Repeat("3", 40)},
		"with space.txt":     regular("space\n"),
		"tab\tname.txt":      regular("tab\n"),
		"na\u00efve.txt":     regular("naive\n"),
		"dir/nested.txt":     regular("nested\n"),
		"x":                  regular("x was a file\n"),
		"back\\slash.txt":    regular("backslash\n"),
		"unchanged/keep.txt": regular("keep\n"),
	}
	change := map[string]*fiFile{
		"modified.txt":     regular(strings.Replace(strings.Replace(numbered(30, "line "), "line 5\n", "line five\n", 1), "line 25\n", "line 25\nline 25 and a half\n", 1)),
		"code.go":          regular(strings.Replace(code, "\tb := 15\n", "\tb := fifteen\n", 1)),
		"no-eol.txt":       regular("a\nB"),
		"add-eol.txt":      regular("x\n"),
		"deleted.txt":      nil,
		"empty-deleted":    nil,
		"added.txt":        regular("new\nfile\n"),
		"empty-added":      regular(""),
		"exec.sh":          {"100755", "#!/bin/sh\necho same\n"},
		"exec2.sh":         {"100755", "#!/bin/sh\necho new\n"},
		"renamed-from.txt": nil,
		"renamed-to.txt":   regular("moved as is\n"),
		"rename-mode-from": nil,
		"rename-mode-to":   {"100755", "moved, made executable\n"},
		"link":             {"120000", "target-b"},
		"link-new":         {"120000", "../elsewhere"},
		"typechange":       {"120000", "t"},
		"bin.dat":          regular("\x00\x01binary, changed\x02"),
		"bin-new.dat":      regular("new\x00binary"),
		"sub":              {"160000", strings.Repeat("2", 40)},
		"sub-new":          {"160000", strings.Repeat("4", 40)},
		"sub-gone":         nil,
		"with space.txt":   regular("space, changed\n"),
		"tab\tname.txt":    regular("tab, changed\n"),
		"quote\"name.txt":  regular("quote\n"),
		"na\u00efve.txt":   regular("na\u00efve\n"),
		"new\nline.txt":    regular("a newline in the name\n"),
		"dir/nested.txt":   regular("nested, changed\n"),
		"dir-x.txt":        regular("dir-x\n"),
		"dir.txt":          regular("dir.txt\n"),
		"dir0":             regular("dir0\n"),
		"x":                nil,
		"x/inner.txt":      regular("now a directory\n"),
		"back\\slash.txt":  regular("backslash, changed\n"),
	}
	r, base0, tip := twoCommits(t, base, change)
	got, err := view.Diff(context.Background(), openRepo(t, r.Dir), base0, tip, view.DiffLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if want := gitDiff(t, r, base0, tip); !bytes.Equal(got, want) {
		t.Fatalf("the patch differs from git's:\n%s", lineDiff(string(want), string(got)))
	}
}

// lineDiff shows where two texts first differ.
func lineDiff(want, got string) string {
	w, g := strings.SplitAfter(want, "\n"), strings.SplitAfter(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			from := max(0, i-5)
			return fmt.Sprintf("line %d:\n want %q\n  got %q\ncontext (git):\n%s", i+1, wl, gl, strings.Join(w[from:min(len(w), i+5)], ""))
		}
	}
	return "(equal)"
}

// applies checks the patch with git apply on a checkout of base, and that
// applying it gives tip's tree.
func applies(t testing.TB, r *gittest.Repo, base, tip plumbing.Hash, patch []byte) {
	t.Helper()
	if err := tryApply(t, r, base, r.Rev(tip.String()+"^{tree}"), patch); err != nil {
		t.Fatal(err)
	}
}

// TestDiffAppliesWithGit applies patches of random edits to random text
// files (some made executable, renamed, created, deleted) with git apply.
func TestDiffAppliesWithGit(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for round := range 8 {
		base, change := map[string]*fiFile{}, map[string]*fiFile{}
		for i := range 12 {
			name := fmt.Sprintf("d%d/f%d.txt", i%3, i)
			text := randomText(rng, rng.IntN(200))
			base[name] = regular(text)
			switch rng.IntN(6) {
			case 0:
				change[name] = nil
			case 1:
				change[name] = nil
				change[name+".moved"] = regular(text)
			case 2:
				change[name] = &fiFile{"100755", editText(rng, text)}
			default:
				change[name] = regular(editText(rng, text))
			}
		}
		change[fmt.Sprintf("created-%d.txt", round)] = regular(randomText(rng, 30))
		r, b, tip := twoCommits(t, base, change)
		patch, err := view.Diff(context.Background(), openRepo(t, r.Dir), b, tip, view.DiffLimits{})
		if err != nil {
			t.Fatal(err)
		}
		applies(t, r, b, tip, patch)
	}
}

// randomText is n lines of code-like text, some of them repeated.
func randomText(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		switch rng.IntN(6) {
		case 0:
			b.WriteString("\n")
		case 1:
			b.WriteString("}\n")
		default:
			fmt.Fprintf(&b, "\tv%d = %d\n", rng.IntN(40), rng.IntN(1000))
		}
	}
	if n > 0 && rng.IntN(6) == 0 {
		return strings.TrimSuffix(b.String(), "\n")
	}
	return b.String()
}

// editText inserts, deletes and replaces a few runs of lines.
func editText(rng *rand.Rand, text string) string {
	ls := strings.SplitAfter(text, "\n")
	for range 1 + rng.IntN(5) {
		at := rng.IntN(len(ls))
		switch rng.IntN(3) {
		case 0:
			ls = append(ls[:at], append([]string{fmt.Sprintf("\tinserted %d\n", rng.IntN(100))}, ls[at:]...)...)
		case 1:
			ls = append(ls[:at], ls[min(len(ls), at+1+rng.IntN(3)):]...)
		default:
			ls[at] = fmt.Sprintf("\treplaced %d\n", rng.IntN(100))
		}
	}
	return strings.Join(ls, "")
}

// recordingRepo records the objects read through it (content or size).
type recordingRepo struct {
	view.Repo
	mu    sync.Mutex
	read  map[plumbing.Hash]int
	sized map[plumbing.Hash]int
}

func (r *recordingRepo) Object(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	r.mu.Lock()
	r.read[h]++
	r.mu.Unlock()
	return r.Repo.Object(t, h)
}

func (r *recordingRepo) ObjectSize(h plumbing.Hash) (int64, error) {
	r.mu.Lock()
	r.sized[h]++
	r.mu.Unlock()
	return r.Repo.(view.Sizer).ObjectSize(h)
}

func recording(repo view.Repo) *recordingRepo {
	return &recordingRepo{Repo: repo, read: map[plumbing.Hash]int{}, sized: map[plumbing.Hash]int{}}
}

func blobID(t testing.TB, r *gittest.Repo, rev string) plumbing.Hash {
	return plumbing.NewHash(r.Rev(rev))
}

// TestDiffLimits checks each limit: a file over the per-file limit, the
// files past the read limit and past the patch limit are shown "too
// large" with their sizes, their blobs unread (their sizes looked up);
// once not even that fits, the patch ends with a count of the files left
// out. git apply gives the tip's tree from such a patch where the objects
// named by its index lines are at hand, and refuses it elsewhere, or when
// files were left out: never a wrong result.
func TestDiffLimits(t *testing.T) {
	big := numbered(200, "0123456789 ")                   // 2,892 bytes
	bigChanged := strings.ReplaceAll(big, "1\n", "one\n") // 20 lines
	mid := numbered(100, "abcdefghij ")
	created := numbered(200, "9876543210 ")
	base := map[string]*fiFile{"a-small.txt": regular("small\n"), "b-big.txt": regular(big), "c-mid.txt": regular(mid)}
	change := map[string]*fiFile{"a-small.txt": regular("small, changed\n"), "b-big.txt": regular(bigChanged), "c-mid.txt": regular(mid + "more\n"), "d-new.txt": regular(created)}
	r, b, tip := twoCommits(t, base, change)
	tipTree := r.Rev(tip.String() + "^{tree}")
	// The same base in a repository without the tip's objects.
	bare := gittest.New(t)
	bare.FastImport(fiCommit("main", 1, 0, base))
	n := func(s string) string { return strconv.Itoa(len(s)) }
	bigOld, bigNew := blobID(t, r, "main:b-big.txt"), blobID(t, r, "feat:b-big.txt")
	midOld, midNew := blobID(t, r, "main:c-mid.txt"), blobID(t, r, "feat:c-mid.txt")
	newBlob := blobID(t, r, "feat:d-new.txt")
	z := plumbing.ZeroHash.String()

	for _, tc := range []struct {
		name   string
		limits view.DiffLimits
		want   []string // parts of the patch
		unread []plumbing.Hash
	}{
		{"file limit", view.DiffLimits{FileBytes: 2000},
			[]string{
				"diff --git a/b-big.txt b/b-big.txt\nindex " + bigOld.String() + ".." + bigNew.String() + " 100644\nBinary files a/b-big.txt and b/b-big.txt differ\nstackd: diff not shown, file larger than 2000 bytes: old " + n(big) + " bytes; new " + n(bigChanged) + " bytes\n",
				"+++ b/c-mid.txt\n",
				"diff --git a/d-new.txt b/d-new.txt\nnew file mode 100644\nindex " + z + ".." + newBlob.String() + "\nBinary files /dev/null and b/d-new.txt differ\nstackd: diff not shown, file larger than 2000 bytes: new " + n(created) + " bytes\n",
			},
			[]plumbing.Hash{bigOld, bigNew, newBlob}},
		{"read limit", view.DiffLimits{ReadBytes: 6000},
			[]string{
				"+++ b/b-big.txt\n",
				"index " + midOld.String() + ".." + midNew.String() + " 100644\nBinary files a/c-mid.txt and b/c-mid.txt differ\nstackd: diff not shown, patch reads more than 6000 bytes of files: old " + n(mid) + " bytes; new " + n(mid+"more\n") + " bytes\n",
				"stackd: diff not shown, patch reads more than 6000 bytes of files: new " + n(created) + " bytes\n",
			},
			[]plumbing.Hash{midOld, midNew, newBlob}},
		{"patch limit", view.DiffLimits{PatchBytes: 2000},
			[]string{
				"+++ b/a-small.txt\n",
				"Binary files a/b-big.txt and b/b-big.txt differ\nstackd: diff not shown, patch larger than 2000 bytes: old " + n(big) + " bytes, 200 lines; new " + n(bigChanged) + " bytes, 200 lines\n",
				"+++ b/c-mid.txt\n",
				"Binary files /dev/null and b/d-new.txt differ\nstackd: diff not shown, patch larger than 2000 bytes: new " + n(created) + " bytes, 200 lines\n",
			},
			nil},
		{"patch limit leaves files out", view.DiffLimits{PatchBytes: 400},
			[]string{
				"+++ b/a-small.txt\n",
				"+small, changed\ndiff --git a/b-big.txt b/b-big.txt\nindex " + bigOld.String() + ".." + bigNew.String() + "\nstackd: diff not shown, 3 more changed files, patch larger than 400 bytes\n",
			},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := recording(openRepo(t, r.Dir))
			patch, err := view.Diff(context.Background(), repo, b, tip, tc.limits)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(patch), w) {
					t.Errorf("the patch lacks %q:\n%s", w, patch)
				}
			}
			if limit := tc.limits.PatchBytes; limit > 0 && int64(len(patch)) > limit+300 {
				t.Errorf("patch of %d bytes, limit %d (and one last section)", len(patch), limit)
			}
			for _, h := range tc.unread {
				if repo.read[h] > 0 {
					t.Errorf("blob %s was read", h)
				}
				if repo.sized[h] == 0 {
					t.Errorf("the size of blob %s was not looked up", h)
				}
			}
			truncated := bytes.Contains(patch, []byte("more changed files"))
			if err := tryApply(t, r, b, tipTree, patch); truncated != (err != nil) {
				t.Errorf("git apply where the objects are: %v (files left out: %v)\n%s", err, truncated, patch)
			}
			if err := tryApply(t, bare, b, tipTree, patch); err == nil {
				t.Errorf("git apply accepts the patch where the tip's objects are missing:\n%s", patch)
			}
		})
	}
}

// tryApply applies patch with git apply --index on a checkout of base in
// r: an error when git refuses it, a test failure when it applies to
// another tree than tipTree.
func tryApply(t testing.TB, r *gittest.Repo, base plumbing.Hash, tipTree string, patch []byte) error {
	t.Helper()
	wt := filepath.Join(t.TempDir(), "wt")
	git := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = r.Env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := git(r.Dir, "worktree", "add", "-q", "--detach", wt, base.String()); err != nil {
		t.Fatal(err)
	}
	defer git(r.Dir, "worktree", "remove", "--force", wt)
	file := filepath.Join(t.TempDir(), "p.patch")
	if err := os.WriteFile(file, patch, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := git(wt, "apply", "--index", file); err != nil {
		return err
	}
	got, err := git(wt, "write-tree")
	if err != nil {
		t.Fatal(err)
	}
	if got != tipTree {
		t.Fatalf("git apply gives tree %s, want the tip's %s", got, tipTree)
	}
	return nil
}

// TestDiffWithinLimitsApplies gives the comparison of two unrelated
// 3,000-line texts a work budget that runs out at once: the patch is
// coarser (more changed lines than with the default budget) but whole (no
// marker), and git applies it.
func TestDiffWithinLimitsApplies(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	old := randomText(rng, 3000)
	r, b, tip := twoCommits(t, map[string]*fiFile{"f.txt": regular(old)}, map[string]*fiFile{"f.txt": regular(randomText(rng, 3000))})
	repo := openRepo(t, r.Dir)
	patch, err := view.Diff(context.Background(), repo, b, tip, view.DiffLimits{Work: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(patch, []byte(view.TooLargePrefix)) {
		t.Fatalf("a marker in a patch within its limits:\n%.500s", patch)
	}
	applies(t, r, b, tip, patch)
	full, err := view.Diff(context.Background(), repo, b, tip, view.DiffLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if changed(patch) <= changed(full) {
		t.Errorf("%d changed lines with a spent budget, %d with the default one", changed(patch), changed(full))
	}
}

// changed counts the deleted and inserted lines of a patch.
func changed(patch []byte) int {
	n := 0
	for _, l := range bytes.Split(patch, []byte("\n")) {
		if (bytes.HasPrefix(l, []byte("-")) || bytes.HasPrefix(l, []byte("+"))) && !bytes.HasPrefix(l, []byte("---")) && !bytes.HasPrefix(l, []byte("+++")) {
			n++
		}
	}
	return n
}

// sizeless hides a Repo's ObjectSize.
type sizeless struct{ view.Repo }

// TestDiffWithoutSizeLookup: on a Repo that cannot look a size up alone,
// the limits hold all the same (the object is opened for its size).
func TestDiffWithoutSizeLookup(t *testing.T) {
	big := numbered(300, "line ")
	r, b, tip := twoCommits(t, map[string]*fiFile{"big.txt": regular(big), "s.txt": regular("a\n")}, map[string]*fiFile{"big.txt": regular(big + "x\n"), "s.txt": regular("b\n")})
	var repo view.Repo = sizeless{openRepo(t, r.Dir)}
	if _, ok := repo.(view.Sizer); ok {
		t.Fatal("the wrapper still has ObjectSize")
	}
	patch, err := view.Diff(context.Background(), repo, b, tip, view.DiffLimits{FileBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("stackd: diff not shown, file larger than 1000 bytes: old %d bytes; new %d bytes\n", len(big), len(big)+2)
	if !bytes.Contains(patch, []byte(want)) || !bytes.Contains(patch, []byte("-a\n+b\n")) {
		t.Fatalf("patch:\n%s\nwant %q and s.txt's hunk", patch, want)
	}
}

func TestDiffCancelled(t *testing.T) {
	r, b, tip := twoCommits(t, map[string]*fiFile{"f": regular("a\n")}, map[string]*fiFile{"f": regular("b\n")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := view.Diff(ctx, openRepo(t, r.Dir), b, tip, view.DiffLimits{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Diff(cancelled) = %v", err)
	}
}

// rewriteFixture commits gittest.NumberRewrite's text on main and its
// rewrite on feat.
func rewriteFixture(t testing.TB, lines int) (*gittest.Repo, plumbing.Hash, plumbing.Hash) {
	t.Helper()
	a, b := gittest.NumberRewrite(lines)
	return twoCommits(t, map[string]*fiFile{"numbers.txt": regular(a)}, map[string]*fiFile{"numbers.txt": regular(b)})
}

// TestDiffLargeRewrite diffs the 200,000-line rewrite with the default
// limits: a whole patch (the budget makes the search coarser, not the
// patch partial) that git applies.
func TestDiffLargeRewrite(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a 446 KB rewrite")
	}
	r, b, tip := rewriteFixture(t, 200_000)
	patch, err := view.Diff(context.Background(), openRepo(t, r.Dir), b, tip, view.DiffLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(patch, []byte(view.TooLargePrefix)) {
		t.Fatalf("the rewrite is within the limits, yet:\n%.500s", patch)
	}
	applies(t, r, b, tip, patch)
}
