package diff_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stackd/stackd/impl/diff"
)

// unified compares old and new and returns the hunks.
func unified(t testing.TB, old, new string, o diff.Options, b *diff.Budget) (*diff.Result, []byte) {
	t.Helper()
	if b == nil {
		b = diff.NewBudget(context.Background(), math.MaxInt64)
	}
	r, err := diff.Compare([]byte(old), []byte(new), o, b)
	if err != nil {
		t.Fatalf("Compare: %v", err)
	}
	var w bytes.Buffer
	r.WriteHunks(&w)
	return r, w.Bytes()
}

// check asserts that hunks turn old into new and agree with r's counts.
func check(t testing.TB, r *diff.Result, old, new string, hunks []byte) {
	t.Helper()
	got, err := apply([]byte(old), hunks)
	if err != nil {
		t.Fatalf("the hunks do not apply: %v\nold %q\nnew %q\nhunks:\n%s", err, old, new, hunks)
	}
	if string(got) != new {
		t.Fatalf("applying the hunks gives %q, want %q\nhunks:\n%s", got, new, hunks)
	}
	d, i := r.Changes()
	hd, hi := counts(hunks)
	if d != hd || i != hi {
		t.Fatalf("Changes() = %d, %d; the hunks delete %d and insert %d", d, i, hd, hi)
	}
	if (len(hunks) == 0) != (old == new) {
		t.Fatalf("hunks %q for old %q new %q", hunks, old, new)
	}
}

func TestWriteHunks(t *testing.T) {
	lines := func(from, to int) string {
		var b strings.Builder
		for i := from; i <= to; i++ {
			fmt.Fprintf(&b, "l%d\n", i)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"equal", "a\nb\n", "a\nb\n", ""},
		{"both empty", "", "", ""},
		{"created", "", "a\nb\n", "@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{"emptied", "a\n", "", "@@ -1 +0,0 @@\n-a\n"},
		{"one line replaced", "a\nb\nc\n", "a\nB\nc\n", "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
		{"newline added at the end", "a\nb", "a\nb\n", "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"},
		{"newline removed at the end", "a\n", "a", "@@ -1 +1 @@\n-a\n+a\n\\ No newline at end of file\n"},
		{"both without newline", "x\na", "y\na", "@@ -1,2 +1,2 @@\n-x\n+y\n a\n\\ No newline at end of file\n"},
		{"context is three lines", lines(1, 10), strings.Replace(lines(1, 10), "l5\n", "L5\n", 1),
			"@@ -2,7 +2,7 @@ l1\n l2\n l3\n l4\n-l5\n+L5\n l6\n l7\n l8\n"},
		{"six lines apart: one hunk", lines(1, 20), strings.Replace(strings.Replace(lines(1, 20), "l5\n", "L5\n", 1), "l12\n", "L12\n", 1),
			"@@ -2,14 +2,14 @@ l1\n l2\n l3\n l4\n-l5\n+L5\n l6\n l7\n l8\n l9\n l10\n l11\n-l12\n+L12\n l13\n l14\n l15\n"},
		{"seven lines apart: two hunks", lines(1, 20), strings.Replace(strings.Replace(lines(1, 20), "l5\n", "L5\n", 1), "l13\n", "L13\n", 1),
			"@@ -2,7 +2,7 @@ l1\n l2\n l3\n l4\n-l5\n+L5\n l6\n l7\n l8\n@@ -10,7 +10,7 @@ l9\n l10\n l11\n l12\n-l13\n+L13\n l14\n l15\n l16\n"},
		{"function line", "func a() {\n\t1\n\t2\n\t3\n\t4\n}\n", "func a() {\n\t1\n\t2\n\t3\n\tfour\n}\n",
			"@@ -2,5 +2,5 @@ func a() {\n \t1\n \t2\n \t3\n-\t4\n+\tfour\n }\n"},
		{"function line is cut at 80 bytes and trimmed", "f" + strings.Repeat("x", 100) + "\n \n\n\n\nold\n", "f" + strings.Repeat("x", 100) + "\n \n\n\n\nnew\n",
			"@@ -3,4 +3,4 @@ f" + strings.Repeat("x", 79) + "\n \n \n \n-old\n+new\n"},
		{"insertion slides down to the end of a repeated run", "a\nb\nb\nc\n", "a\nb\nb\nb\nc\n", "@@ -1,4 +1,5 @@\n a\n b\n b\n+b\n c\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, got := unified(t, tc.old, tc.new, diff.Options{}, nil)
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			check(t, r, tc.old, tc.new, got)
		})
	}
}

// gitDiff returns `git diff --no-index` of old and new without its file
// headers (no indent heuristic: this package does not have it).
func gitDiff(t testing.TB, dir, old, new string) string {
	t.Helper()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(a, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte(new), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "-c", "core.quotePath=true", "diff", "--no-index", "--no-color", "--no-indent-heuristic", "--no-ext-diff", "a", "b")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("git diff: %v", err)
	}
	s := string(out)
	if i := strings.Index(s, "\n@@ "); i >= 0 {
		return s[i+1:]
	}
	return ""
}

// TestSameHunksAsGit compares the hunks of edits to source-like text (most
// lines distinct) with git's, byte for byte.
func TestSameHunksAsGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 150 {
		old := sourceLike(rng, 5+rng.IntN(120))
		new := edit(rng, old, 1+rng.IntN(6))
		_, got := unified(t, old, new, diff.Options{}, nil)
		if want := gitDiff(t, dir, old, new); string(got) != want {
			t.Fatalf("case %d: got\n%s\nwant (git)\n%s\nold %q\nnew %q", i, got, want, old, new)
		}
	}
}

// sourceLike is n lines that look like code: mostly distinct, with some
// blank lines, braces and repeated statements.
func sourceLike(rng *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		switch rng.IntN(10) {
		case 0:
			b.WriteString("\n")
		case 1:
			b.WriteString("}\n")
		case 2:
			b.WriteString("\treturn nil\n")
		case 3:
			fmt.Fprintf(&b, "func f%d() {\n", i)
		default:
			fmt.Fprintf(&b, "\tx%d := %d\n", i, rng.IntN(1000))
		}
	}
	return b.String()
}

// edit applies k random line edits to text: insertions, deletions,
// replacements and moves of short runs, and sometimes drops or adds the
// final newline.
func edit(rng *rand.Rand, text string, k int) string {
	ls := strings.SplitAfter(text, "\n")
	if ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	for range k {
		at := rng.IntN(len(ls) + 1)
		n := 1 + rng.IntN(4)
		switch rng.IntN(4) {
		case 0:
			var ins []string
			for range n {
				ins = append(ins, fmt.Sprintf("new %d\n", rng.IntN(50)))
			}
			ls = append(ls[:at], append(ins, ls[at:]...)...)
		case 1:
			ls = append(ls[:at], ls[min(at+n, len(ls)):]...)
		case 2:
			for i := at; i < min(at+n, len(ls)); i++ {
				ls[i] = fmt.Sprintf("changed %d\n", rng.IntN(50))
			}
		case 3:
			end := min(at+n, len(ls))
			moved := append([]string(nil), ls[at:end]...)
			rest := append(append([]string(nil), ls[:at]...), ls[end:]...)
			to := rng.IntN(len(rest) + 1)
			ls = append(rest[:to], append(moved, rest[to:]...)...)
		}
	}
	out := strings.Join(ls, "")
	if rng.IntN(8) == 0 {
		if strings.HasSuffix(out, "\n") {
			out = strings.TrimSuffix(out, "\n")
		} else {
			out += "\n"
		}
	}
	return out
}

// lcs is the length of a longest common subsequence of the lines of a
// and b (quadratic: small texts only).
func lcs(a, b string) int {
	x, y := splitKeep(a), splitKeep(b)
	prev, cur := make([]int, len(y)+1), make([]int, len(y)+1)
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			switch {
			case x[i-1] == y[j-1]:
				cur[j] = prev[j-1] + 1
			default:
				cur[j] = max(prev[j], cur[j-1])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(y)]
}

func splitKeep(s string) []string {
	ls := strings.SplitAfter(s, "\n")
	if ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	return ls
}

// smallAlphabet is n lines drawn from k distinct ones: many equal lines,
// the hard case for a line diff.
func smallAlphabet(rng *rand.Rand, n, k int) string {
	var b strings.Builder
	for range n {
		b.WriteString(strconv.Itoa(rng.IntN(k)))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestRandomEditsApply checks, on random texts and edits, that the hunks
// turn the old text into the new one under every option, with a budget
// that runs out too, and that a minimal comparison is as short as a
// longest common subsequence allows.
func TestRandomEditsApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	options := []struct {
		name   string
		o      diff.Options
		budget int64
	}{
		{"default", diff.Options{}, math.MaxInt64},
		{"minimal", diff.Options{Minimal: true}, math.MaxInt64},
		{"cost 1", diff.Options{MaxCost: 1}, math.MaxInt64},
		{"cost 3", diff.Options{MaxCost: 3}, math.MaxInt64},
		{"budget 50", diff.Options{}, 50},
		{"budget 0", diff.Options{}, 0},
	}
	for i := range 400 {
		var old, new string
		switch i % 3 {
		case 0:
			old = sourceLike(rng, rng.IntN(80))
			new = edit(rng, old, rng.IntN(8))
		case 1:
			old = smallAlphabet(rng, rng.IntN(120), 1+rng.IntN(4))
			new = edit(rng, old, rng.IntN(8))
		default:
			old = smallAlphabet(rng, rng.IntN(120), 1+rng.IntN(6))
			new = smallAlphabet(rng, rng.IntN(120), 1+rng.IntN(6))
		}
		for _, opt := range options {
			r, hunks := unified(t, old, new, opt.o, diff.NewBudget(context.Background(), opt.budget))
			check(t, r, old, new, hunks)
			d, ins := r.Changes()
			n1, n2 := r.Lines()
			shortest := n1 + n2 - 2*lcs(old, new)
			if d+ins < shortest {
				t.Fatalf("case %d %s: %d changes, fewer than the shortest script's %d", i, opt.name, d+ins, shortest)
			}
			if opt.name == "minimal" && d+ins != shortest {
				t.Fatalf("case %d: minimal gives %d changes, the shortest script has %d\nold %q\nnew %q", i, d+ins, shortest, old, new)
			}
			if opt.budget == math.MaxInt64 && r.Coarse {
				t.Fatalf("case %d %s: coarse with an unbounded budget", i, opt.name)
			}
		}
	}
}

// TestHeuristicsOnLargeTexts compares texts whose shortest script costs far
// more than the cost limit (thousands of lines from a small alphabet, and
// long common runs between noise) and checks that the hunks apply.
func TestHeuristicsOnLargeTexts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	blocks := func() string {
		var b strings.Builder
		for i := range 200 {
			if rng.IntN(2) == 0 {
				for j := range 30 {
					fmt.Fprintf(&b, "run %d %d\n", i, j)
				}
			}
			b.WriteString(smallAlphabet(rng, 20, 3))
		}
		return b.String()
	}
	// Distinct lines, with pairs swapped every 25 lines: the changes are
	// lines both sides have, between long common runs.
	swapped := func(n, every int) (string, string) {
		var a, b strings.Builder
		for i := 0; i < n; i += every {
			for j := i; j < min(i+every, n); j++ {
				fmt.Fprintf(&a, "line %d\n", j)
				k := j
				if j == i {
					k = j + 1
				} else if j == i+1 {
					k = j - 1
				}
				fmt.Fprintf(&b, "line %d\n", k)
			}
		}
		return a.String(), b.String()
	}
	sa, sb := swapped(100000, 25)
	ta, tb := swapped(100000, 23)
	for i, tc := range [][2]string{
		{sa, sb},
		{tb, ta},
		// Noise first: the forward search makes little progress, the
		// backward one finds the long runs.
		{smallAlphabet(rng, 3000, 13) + sa, smallAlphabet(rng, 3000, 13) + sb},
		{smallAlphabet(rng, 5000, 13), smallAlphabet(rng, 5000, 13)},
		{smallAlphabet(rng, 4000, 2), smallAlphabet(rng, 3000, 2)},
		{blocks(), blocks()},
	} {
		r, hunks := unified(t, tc[0], tc[1], diff.Options{}, nil)
		check(t, r, tc[0], tc[1], hunks)
		if r.Coarse {
			t.Errorf("case %d: coarse with an unbounded budget", i)
		}
	}
}

// TestBudgetBoundsWork gives a hard comparison a small budget: it answers
// a correct, coarse script, having overspent by at most one context
// check's worth of steps and one common run.
func TestBudgetBoundsWork(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	old, new := smallAlphabet(rng, 20000, 13), smallAlphabet(rng, 20000, 13)
	const steps = 100_000
	b := diff.NewBudget(context.Background(), steps)
	r, hunks := unified(t, old, new, diff.Options{}, b)
	check(t, r, old, new, hunks)
	if !r.Coarse {
		t.Fatal("not coarse: the budget did not run out")
	}
	// Linear passes (interning, trimming, classifying) are charged too.
	if over, bound := -b.Left(), int64(1<<14+6*40000); over > bound {
		t.Errorf("overspent by %d steps, more than %d", over, bound)
	}
}

// cancelAfter is a context that cancels itself at the n-th call of Err,
// and counts the calls made after that.
type cancelAfter struct {
	context.Context
	cancel context.CancelFunc
	n      int64
	calls  atomic.Int64
}

func (c *cancelAfter) Err() error {
	if c.calls.Add(1) == c.n {
		c.cancel()
	}
	return c.Context.Err()
}

// TestCancelStopsTheSearch cancels a minimal comparison that would take
// minutes, at its 20th look at the context (well into the search): it
// returns the context's error at its next look.
func TestCancelStopsTheSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	old, new := smallAlphabet(rng, 100000, 13), smallAlphabet(rng, 100000, 13)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &cancelAfter{Context: ctx, cancel: cancel, n: 20}
	_, err := diff.Compare([]byte(old), []byte(new), diff.Options{Minimal: true}, diff.NewBudget(c, math.MaxInt64))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Compare = %v, want context.Canceled", err)
	}
	if got := c.calls.Load(); got != c.n {
		t.Errorf("the context was looked at %d times, want %d (stop at the first look after the cancellation)", got, c.n)
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := diff.Compare([]byte("a\n"), []byte("b\n"), diff.Options{}, diff.NewBudget(ctx, math.MaxInt64)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Compare = %v, want context.Canceled", err)
	}
}

func TestCountLines(t *testing.T) {
	for in, want := range map[string]int{"": 0, "a": 1, "a\n": 1, "a\nb": 2, "\n\n": 2} {
		if got := diff.CountLines([]byte(in)); got != want {
			t.Errorf("CountLines(%q) = %d, want %d", in, got, want)
		}
	}
}
