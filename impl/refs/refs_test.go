package refs_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/refs"
)

func h(s string) plumbing.Hash { return plumbing.NewHash(s) }

const (
	h1 = "1111111111111111111111111111111111111111"
	h2 = "2222222222222222222222222222222222222222"
	h3 = "3333333333333333333333333333333333333333"
)

func TestTable(t *testing.T) {
	tb := refs.NewTable([]refs.Ref{
		{Name: "refs/heads/b", Hash: h(h2)},
		{Name: "HEAD", Target: "refs/heads/a"},
		{Name: "refs/heads/a", Hash: h(h1)},
		{Name: "refs/heads/b", Hash: h(h3)}, // the last occurrence wins
		{Name: "refs/stackit/metadata/a", Hash: h(h3)},
	})
	if got := tb.Len(); got != 4 {
		t.Fatalf("Len = %d", got)
	}
	if hb, ok := tb.Hash("refs/heads/b"); !ok || hb != h(h3) {
		t.Errorf("Hash(b) = %s %v", hb, ok)
	}
	if _, ok := tb.Hash("HEAD"); ok {
		t.Error("Hash of a symbolic ref")
	}
	if hh, ok := tb.Resolve("HEAD"); !ok || hh != h(h1) {
		t.Errorf("Resolve(HEAD) = %s %v", hh, ok)
	}
	if target, _, ok := tb.Head(); !ok || target != "refs/heads/a" {
		t.Errorf("Head = %q %v", target, ok)
	}
	var names []string
	for _, r := range tb.Prefix("refs/heads/") {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"refs/heads/a", "refs/heads/b"}) {
		t.Errorf("Prefix = %v", names)
	}
	if len(tb.Prefix("refs/nothing/")) != 0 || len(tb.Prefix("zzz")) != 0 {
		t.Error("Prefix of an absent namespace is not empty")
	}
	var nilTable *refs.Table
	if nilTable.Len() != 0 || len(nilTable.Prefix("refs/")) != 0 {
		t.Error("a nil table is not empty")
	}
	if _, ok := nilTable.Ref("x"); ok {
		t.Error("a nil table has refs")
	}
}

func TestNewSortedTableRefusesDisorder(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("unsorted input accepted")
		}
	}()
	refs.NewSortedTable([]refs.Ref{{Name: "b"}, {Name: "a"}})
}

func TestDiffAndApply(t *testing.T) {
	old := refs.NewTable([]refs.Ref{
		{Name: "HEAD", Target: "refs/heads/main"},
		{Name: "refs/heads/gone", Hash: h(h1)},
		{Name: "refs/heads/main", Hash: h(h1)},
		{Name: "refs/heads/moved", Hash: h(h1)},
		{Name: "refs/heads/same", Hash: h(h2)},
		{Name: "refs/remotes/origin/HEAD", Target: "refs/remotes/origin/main"},
		{Name: "refs/tags/v1", Hash: h(h1)},
	})
	nw := refs.NewTable([]refs.Ref{
		{Name: "HEAD", Target: "refs/heads/moved"},
		{Name: "refs/heads/main", Hash: h(h1)},
		{Name: "refs/heads/moved", Hash: h(h2)},
		{Name: "refs/heads/new", Hash: h(h3)},
		{Name: "refs/heads/same", Hash: h(h2)},
		{Name: "refs/remotes/origin/HEAD", Hash: h(h3)}, // symbolic became direct
		{Name: "refs/tags/v1", Hash: h(h2)},
	})
	heads := func(n string) bool { return len(n) > 11 && n[:11] == "refs/heads/" }
	got := refs.Diff(old, nw, heads)
	want := []refs.Change{
		{Ref: "refs/heads/gone", Old: h(h1), Kind: refs.Deleted},
		{Ref: "refs/heads/moved", Old: h(h1), New: h(h2), Kind: refs.Updated},
		{Ref: "refs/heads/new", New: h(h3), Kind: refs.Created},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Diff = %+v\nwant %+v", got, want)
	}
	all := refs.Diff(old, nw, nil)
	if len(all) != 5 { // + origin/HEAD created (direct), tag updated
		t.Fatalf("Diff(all) = %+v", all)
	}
	// Apply is the inverse of Diff on direct refs.
	applied := refs.Apply(old, all)
	if d := refs.Diff(applied, nw, nil); len(d) != 0 {
		t.Fatalf("Apply(old, Diff(old, new)) differs from new: %+v", d)
	}
	if refs.Diff(nil, nil, nil) != nil || len(refs.Diff(nil, nw, nil)) != 6 || len(refs.Diff(old, nil, nil)) != 5 {
		t.Fatal("diffs against an empty table")
	}
	// A ref changed twice in one Apply takes the last change, in any order.
	twice := refs.Apply(old, []refs.Change{
		{Ref: "refs/heads/z", New: h(h1), Kind: refs.Created},
		{Ref: "refs/heads/a", New: h(h2), Kind: refs.Created},
		{Ref: "refs/heads/z", Old: h(h1), New: h(h3), Kind: refs.Updated},
	})
	if hz, _ := twice.Hash("refs/heads/z"); hz != h(h3) {
		t.Fatalf("z = %s", hz)
	}
	if ha, _ := twice.Hash("refs/heads/a"); ha != h(h2) || twice.Len() != old.Len()+2 {
		t.Fatalf("a = %s, len %d", ha, twice.Len())
	}
	if !refs.Equal(refs.Apply(old, nil), old) {
		t.Fatal("Apply of nothing changed the table")
	}
}

// graph is a commit graph for Classify: parents and committer times.
type graph map[plumbing.Hash]struct {
	parents []plumbing.Hash
	when    int64
}

var errBroken = errors.New("broken")

func (g graph) CommitInfo(x plumbing.Hash) ([]plumbing.Hash, int64, bool, error) {
	if x == h("dddddddddddddddddddddddddddddddddddddddd") {
		return nil, 0, false, errBroken
	}
	c, ok := g[x]
	if !ok {
		return nil, 0, false, nil // not a commit
	}
	return c.parents, c.when, true, nil
}

func TestClassify(t *testing.T) {
	// a ← b ← c (linear), d' rewritten from a, m merges c and x.
	id := func(c byte) plumbing.Hash {
		var out plumbing.Hash
		for i := range out {
			out[i] = c
		}
		return out
	}
	a, b, c, x, m, r := id(0xa), id(0xb), id(0xc), id(0x1), id(0xe), id(0xf)
	blob := id(0x77)
	g := graph{
		a: {nil, 100},
		b: {[]plumbing.Hash{a}, 200},
		c: {[]plumbing.Hash{b}, 300},
		x: {[]plumbing.Hash{a}, 250},
		m: {[]plumbing.Hash{c, x}, 400},
		r: {[]plumbing.Hash{a}, 500}, // a rewrite of b and c
	}
	changes := []refs.Change{
		{Ref: "ff", Old: a, New: c, Kind: refs.Updated},
		{Ref: "merge", Old: x, New: m, Kind: refs.Updated},
		{Ref: "rewrite", Old: c, New: r, Kind: refs.Updated},
		{Ref: "backwards", Old: c, New: a, Kind: refs.Updated},
		{Ref: "blob", Old: blob, New: c, Kind: refs.Updated},
		{Ref: "unreadable", Old: a, New: h("dddddddddddddddddddddddddddddddddddddddd"), Kind: refs.Updated},
		{Ref: "created", New: c, Kind: refs.Created},
	}
	if err := refs.Classify(context.Background(), changes, g, 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]refs.Kind{
		"ff": refs.Updated, "merge": refs.Updated, "rewrite": refs.Forced, "backwards": refs.Forced,
		"blob": refs.Updated, "unreadable": refs.Forced, "created": refs.Created,
	}
	for _, ch := range changes {
		if ch.Kind != want[ch.Ref] {
			t.Errorf("%s: %s, want %s", ch.Ref, ch.Kind, want[ch.Ref])
		}
	}
}

func TestClassifyIsBounded(t *testing.T) {
	// A linear history of 50 commits: with a limit of 10 the walk cannot
	// reach the old tip and reports forced; with no limit it can.
	g := graph{}
	var prev plumbing.Hash
	var first, last plumbing.Hash
	for i := range 50 {
		var c plumbing.Hash
		c[0], c[1] = byte(i), 1
		if i == 0 {
			first = c
			g[c] = struct {
				parents []plumbing.Hash
				when    int64
			}{nil, int64(i)}
		} else {
			g[c] = struct {
				parents []plumbing.Hash
				when    int64
			}{[]plumbing.Hash{prev}, int64(i)}
		}
		prev, last = c, c
	}
	bounded := []refs.Change{{Ref: "x", Old: first, New: last, Kind: refs.Updated}}
	if err := refs.Classify(context.Background(), bounded, g, 10); err != nil || bounded[0].Kind != refs.Forced {
		t.Fatalf("bounded walk: %v %s", err, bounded[0].Kind)
	}
	full := []refs.Change{{Ref: "x", Old: first, New: last, Kind: refs.Updated}}
	if err := refs.Classify(context.Background(), full, g, 0); err != nil || full[0].Kind != refs.Updated {
		t.Fatalf("full walk: %v %s", err, full[0].Kind)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	again := []refs.Change{{Ref: "x", Old: first, New: last, Kind: refs.Updated}}
	if err := refs.Classify(ctx, again, g, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestPrefix: Prefix is the contiguous run of the names that start with
// the prefix, next to names that sort just before and after it (a byte
// below or above its last one, or the prefix itself without its slash).
func TestPrefix(t *testing.T) {
	var list []refs.Ref
	for _, n := range []string{"refs/heads", "refs/heads.x", "refs/heads/", "refs/heads/a", "refs/heads/a/b", "refs/heads/\xff",
		"refs/heads0", "refs/headsx", "refs/stackit/x", "\xff", "\xff\xffz"} {
		list = append(list, refs.Ref{Name: n, Hash: plumbing.NewHash("1")})
	}
	tb := refs.NewTable(list)
	tests := []struct {
		prefix string
		want   []string
	}{
		{"refs/heads/", []string{"refs/heads/", "refs/heads/a", "refs/heads/a/b", "refs/heads/\xff"}},
		{"refs/heads", []string{"refs/heads", "refs/heads.x", "refs/heads/", "refs/heads/a", "refs/heads/a/b", "refs/heads/\xff", "refs/heads0", "refs/headsx"}},
		{"refs/heads/a", []string{"refs/heads/a", "refs/heads/a/b"}},
		{"refs/stackit/", []string{"refs/stackit/x"}},
		{"refs/tags/", nil},
		{"\xff", []string{"\xff", "\xff\xffz"}},
		{"\xff\xff", []string{"\xff\xffz"}},
		{"", []string{"refs/heads", "refs/heads.x", "refs/heads/", "refs/heads/a", "refs/heads/a/b", "refs/heads/\xff", "refs/heads0", "refs/headsx", "refs/stackit/x", "\xff", "\xff\xffz"}},
	}
	for _, tt := range tests {
		var got []string
		for _, r := range tb.Prefix(tt.prefix) {
			got = append(got, r.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Prefix(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}
