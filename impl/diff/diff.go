// Package diff compares two texts line by line, with a bounded worst case,
// and writes the result as unified-diff hunks in git's format.
//
// The comparison is Myers' O(ND) algorithm in linear space (divide and
// conquer on the middle snake) over lines interned to integers, after the
// common prefix and suffix are set aside and the lines found on one side
// only are marked changed (no alignment could match them). Like git's
// xdiff, it stops insisting on a shortest script when one gets expensive:
// a split whose edit cost passes a limit (about the square root of the
// number of lines, at least 256, and lower when the Budget is short) is
// cut at a long common run found on the way, or at the furthest point
// either search reached, and each half is compared on its own. The script
// stays correct; it is only longer than the shortest one.
//
// Every step of the search is charged to a Budget, which the files of one
// patch share. When the Budget runs out, whatever is left of a file is
// reported as replaced whole (a correct, coarse script, found in linear
// time), so the total work is bounded by the Budget plus linear passes.
// The Budget's context is checked every 16,384 steps (tens of
// microseconds): a cancelled comparison returns at once.
//
// Changed runs are then slid as git does (down as far as they go, merging
// with the runs they meet, then back up to line up with a change on the
// other side), so hunks read like git's.
package diff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
)

// Options tune one comparison. The zero value is git's default.
type Options struct {
	// Minimal finds a shortest edit script however much it costs (git's
	// --minimal): no heuristic split. The Budget still bounds the work.
	Minimal bool
	// MaxCost is the edit cost at which a split stops looking for the
	// shortest script. Zero means about the square root of the number of
	// lines compared, at least 256 (xdiff's rule), lowered to what half
	// of the Budget left affords.
	MaxCost int
}

// Heuristic constants (xdiff's values, but minAffordedCost).
const (
	minMaxCost = 256 // the least MaxCost, budget allowing
	// minAffordedCost is the least MaxCost when the budget is short.
	minAffordedCost = 8
	heurMin         = 256 // cost from which a long common run may end a split
	snakeLen        = 20  // what "long" means
	heurK           = 4   // how much progress a run must have made per unit of cost
)

// checkEvery is how many steps pass between two looks at the context: tens
// of microseconds of work.
const checkEvery = 1 << 14

// errExhausted stops a search when the Budget is spent.
var errExhausted = errors.New("diff: budget spent")

// Budget is the work the comparisons of one patch may do, in steps (a
// step is one diagonal, or one line of a common run, visited by the
// search; a few nanoseconds each), and the context that cancels
// them. It is not safe for concurrent use: one goroutine compares the
// files of a patch one after the other.
type Budget struct {
	ctx   context.Context
	left  int64
	since int64 // steps since the context was last looked at
}

// NewBudget returns a budget of steps (math.MaxInt64: unbounded) under ctx.
func NewBudget(ctx context.Context, steps int64) *Budget {
	return &Budget{ctx: ctx, left: steps}
}

// Left is what remains of the budget (negative once overspent).
func (b *Budget) Left() int64 { return b.left }

// Err is the context's error.
func (b *Budget) Err() error { return b.ctx.Err() }

// spend charges n steps, and returns the context's error when it is time
// to look at it and it is done.
func (b *Budget) spend(n int) error {
	b.left -= int64(n)
	b.since += int64(n)
	if b.since >= checkEvery {
		b.since = 0
		return b.ctx.Err()
	}
	return nil
}

func (b *Budget) spent() bool { return b.left <= 0 }

// side is one of the two texts: its lines and which of them changed.
type side struct {
	data   []byte
	starts []int32 // line i is data[starts[i]:starts[i+1]]
	ids    []int32 // interned line contents (nil when not compared)
	chg    []bool  // chg[i+1]: line i changed; chg[0] and chg[n+1] stay false
}

func (s *side) n() int                   { return len(s.starts) - 1 }
func (s *side) line(i int) []byte        { return s.data[s.starts[i]:s.starts[i+1]] }
func (s *side) changed(i int) bool       { return s.chg[i+1] }
func (s *side) setChanged(i int, c bool) { s.chg[i+1] = c }

// Result is the comparison of two texts.
type Result struct {
	a, b side
	// Coarse tells that the Budget ran out: some region is reported as
	// replaced whole rather than compared.
	Coarse bool
}

// Lines returns the number of lines of the old and the new text.
func (r *Result) Lines() (old, new int) { return r.a.n(), r.b.n() }

// Changes returns the number of deleted and inserted lines.
func (r *Result) Changes() (deleted, inserted int) {
	for i := range r.a.n() {
		if r.a.changed(i) {
			deleted++
		}
	}
	for i := range r.b.n() {
		if r.b.changed(i) {
			inserted++
		}
	}
	return deleted, inserted
}

// CountLines returns the number of lines of data, a last line without a
// newline included.
func CountLines(data []byte) int {
	n := bytes.Count(data, []byte{'\n'})
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return n
}

// splitLines returns the offsets where each line of data starts, and
// len(data) last.
func splitLines(data []byte) []int32 {
	starts := make([]int32, 1, CountLines(data)+1)
	for off := 0; off < len(data); {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			off = len(data)
		} else {
			off += i + 1
		}
		starts = append(starts, int32(off))
	}
	return starts
}

// Compare compares old and new line by line (a line ends after its
// newline; a last line without one differs from the same text with one),
// charging the work to budget. It fails only with the budget's context
// error, or for texts of 2 GiB or more.
func Compare(old, new []byte, o Options, budget *Budget) (*Result, error) {
	if len(old) >= math.MaxInt32 || len(new) >= math.MaxInt32 {
		return nil, fmt.Errorf("diff: texts of 2 GiB or more are not compared")
	}
	if err := budget.Err(); err != nil {
		return nil, err
	}
	r := &Result{a: newSide(old), b: newSide(new)}
	if budget.spent() {
		r.Coarse = r.replaceMiddle()
		return r, budget.spend(r.a.n() + r.b.n())
	}
	intern(&r.a, &r.b)
	// Splitting and interning cost a few steps' worth per line.
	if err := budget.spend(4 * (r.a.n() + r.b.n())); err != nil {
		return nil, err
	}
	coarse, err := r.compare(o, budget)
	if err != nil {
		return nil, err
	}
	r.Coarse = coarse
	if err := compact(&r.a, &r.b, budget); err != nil {
		return nil, err
	}
	if err := compact(&r.b, &r.a, budget); err != nil {
		return nil, err
	}
	return r, nil
}

func newSide(data []byte) side {
	starts := splitLines(data)
	return side{data: data, starts: starts, chg: make([]bool, len(starts)+1)}
}

// intern gives each distinct line of a and b an id.
func intern(a, b *side) {
	ids := make(map[string]int32, a.n()/2+b.n()/2+1)
	for _, s := range []*side{a, b} {
		s.ids = make([]int32, s.n())
		for i := range s.ids {
			l := s.line(i)
			id, ok := ids[string(l)]
			if !ok {
				id = int32(len(ids))
				ids[string(l)] = id
			}
			s.ids[i] = id
		}
	}
}

// replaceMiddle marks everything between the common prefix and suffix
// changed, comparing lines as bytes (no ids: it is what a comparison is
// left with when the budget is spent before it starts). It tells whether
// anything changed.
func (r *Result) replaceMiddle() bool {
	a, b := &r.a, &r.b
	x0, y0, x1, y1 := 0, 0, a.n(), b.n()
	for x0 < x1 && y0 < y1 && bytes.Equal(a.line(x0), b.line(y0)) {
		x0++
		y0++
	}
	for x0 < x1 && y0 < y1 && bytes.Equal(a.line(x1-1), b.line(y1-1)) {
		x1--
		y1--
	}
	for i := x0; i < x1; i++ {
		a.setChanged(i, true)
	}
	for j := y0; j < y1; j++ {
		b.setChanged(j, true)
	}
	return x0 < x1 || y0 < y1
}

// compare marks the changed lines of r: the common prefix and suffix are
// set aside, lines whose content the other side lacks are changes, and
// the rest goes to the search. It tells whether the budget ran out.
func (r *Result) compare(o Options, budget *Budget) (bool, error) {
	a, b := r.a.ids, r.b.ids
	x0, y0, x1, y1 := 0, 0, len(a), len(b)
	for x0 < x1 && y0 < y1 && a[x0] == b[y0] {
		x0++
		y0++
	}
	for x0 < x1 && y0 < y1 && a[x1-1] == b[y1-1] {
		x1--
		y1--
	}
	// Occurrences of each id in the middle of each side.
	count := func(ids []int32) map[int32]int32 {
		m := make(map[int32]int32)
		for _, id := range ids {
			m[id]++
		}
		return m
	}
	inA, inB := count(a[x0:x1]), count(b[y0:y1])
	// The lines the search sees, by their index in the text.
	keepA, keepB := make([]int32, 0, x1-x0), make([]int32, 0, y1-y0)
	for i := x0; i < x1; i++ {
		if inB[a[i]] == 0 {
			r.a.setChanged(i, true)
		} else {
			keepA = append(keepA, int32(i))
		}
	}
	for j := y0; j < y1; j++ {
		if inA[b[j]] == 0 {
			r.b.setChanged(j, true)
		} else {
			keepB = append(keepB, int32(j))
		}
	}
	if err := budget.spend(2 * (x1 - x0 + y1 - y0)); err != nil {
		return false, err
	}
	if len(keepA) == 0 && len(keepB) == 0 {
		return false, nil
	}
	m := newMyers(keepA, a, keepB, b, o, budget)
	if err := m.run(); err != nil {
		return false, err
	}
	for i, c := range m.ca {
		if c {
			r.a.setChanged(int(keepA[i]), true)
		}
	}
	for j, c := range m.cb {
		if c {
			r.b.setChanged(int(keepB[j]), true)
		}
	}
	return m.coarse, nil
}
