package view

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestTipIndexMatchesAPlainMap moves random branches among a few commits,
// patch after patch, and compares every lookup with a map rebuilt from
// scratch (crossing the flattening threshold on the way).
func TestTipIndexMatchesAPlainMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	commit := func(i int) plumbing.Hash { return plumbing.NewHash(fmt.Sprintf("%040x", i+1)) }
	const branches, commits = 6000, 40
	tips := map[string]plumbing.Hash{}
	for b := range branches {
		tips[fmt.Sprintf("b%05d", b)] = commit(r.IntN(commits))
	}
	plain := func() map[plumbing.Hash][]string {
		m := map[plumbing.Hash][]string{}
		for name, h := range tips {
			m[h] = append(m[h], name)
		}
		for h := range m {
			slices.Sort(m[h])
		}
		return m
	}
	idx := &tipIndex{base: plain()}
	for round := range 60 {
		moves := map[string]plumbing.Hash{}
		for range 1 + r.IntN(200) {
			name := fmt.Sprintf("b%05d", r.IntN(branches))
			moves[name] = commit(r.IntN(commits + 5))
		}
		maps.Copy(tips, moves)
		idx = idx.with(moves)
		want := plain()
		for c := range commits + 5 {
			if got := idx.at(commit(c)); !slices.Equal(got, want[commit(c)]) {
				t.Fatalf("round %d commit %d: %d branches, want %d", round, c, len(got), len(want[commit(c)]))
			}
		}
	}
}
