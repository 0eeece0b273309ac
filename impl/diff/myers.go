package diff

import "math"

// myers is the search over two sequences of ids: it marks which elements
// of each are not part of the common subsequence it finds.
type myers struct {
	a, b    []int32 // the sequences
	ca, cb  []bool  // changed elements
	kf, kb  []int32 // furthest x reached on each diagonal k = x-y (index k+off), forward and backward
	off     int
	maxCost int
	minimal bool
	budget  *Budget
	coarse  bool // a region was marked changed whole because the budget ran out
}

// box is a region still to compare: a[x0:x1] against b[y0:y1].
type box struct {
	x0, x1, y0, y1 int
	minimal        bool
}

func newMyers(keepA []int32, a []int32, keepB []int32, b []int32, o Options, budget *Budget) *myers {
	m := &myers{
		a:       make([]int32, len(keepA)),
		b:       make([]int32, len(keepB)),
		ca:      make([]bool, len(keepA)),
		cb:      make([]bool, len(keepB)),
		minimal: o.Minimal,
		budget:  budget,
	}
	for i, x := range keepA {
		m.a[i] = a[x]
	}
	for j, y := range keepB {
		m.b[j] = b[y]
	}
	n := len(m.a) + len(m.b) + 3
	m.kf = make([]int32, n)
	m.kb = make([]int32, n)
	m.off = len(m.b) + 1
	m.maxCost = o.MaxCost
	if m.maxCost <= 0 {
		m.maxCost = defaultMaxCost(n, budget.Left())
	}
	return m
}

// defaultMaxCost is the cost limit of a split for a search over n
// elements with left steps of budget: about the square root of n, at
// least 256 (xdiff's rule), but no more than half of the budget affords:
// a search costs about n times its limit, and a lower limit makes a script
// only a little longer (on 200,000 lines from 13 distinct ones, a limit of
// 64 instead of 633 finds 3% more changes for a ninth of the work).
func defaultMaxCost(n int, left int64) int {
	c := max(int(math.Ceil(math.Sqrt(float64(n)))), minMaxCost)
	if afford := left / int64(2*n); afford < int64(c) {
		c = int(max(afford, minAffordedCost))
	}
	return c
}

// run compares the whole sequences. Regions wait on an explicit stack
// (a split's halves), so a long chain of splits costs no call depth.
func (m *myers) run() error {
	stack := []box{{0, len(m.a), 0, len(m.b), m.minimal}}
	for len(stack) > 0 {
		bx := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		x0, x1, y0, y1 := bx.x0, bx.x1, bx.y0, bx.y1
		start := x1 - x0 + y1 - y0
		for x0 < x1 && y0 < y1 && m.a[x0] == m.b[y0] {
			x0++
			y0++
		}
		for x0 < x1 && y0 < y1 && m.a[x1-1] == m.b[y1-1] {
			x1--
			y1--
		}
		if err := m.budget.spend(1 + start - (x1 - x0 + y1 - y0)); err != nil {
			return err
		}
		switch {
		case x0 == x1:
			mark(m.cb[y0:y1])
			continue
		case y0 == y1:
			mark(m.ca[x0:x1])
			continue
		case m.budget.spent():
			m.giveUp(x0, x1, y0, y1)
			continue
		}
		sx, sy, minLo, minHi, err := m.split(x0, x1, y0, y1, bx.minimal)
		if err == errExhausted {
			m.giveUp(x0, x1, y0, y1)
			continue
		}
		if err != nil {
			return err
		}
		stack = append(stack, box{sx, x1, sy, y1, minHi}, box{x0, sx, y0, sy, minLo})
	}
	return nil
}

// giveUp reports a region as replaced whole.
func (m *myers) giveUp(x0, x1, y0, y1 int) {
	mark(m.ca[x0:x1])
	mark(m.cb[y0:y1])
	m.coarse = true
}

func mark(c []bool) {
	for i := range c {
		c[i] = true
	}
}

// split finds where to cut a[x0:x1] against b[y0:y1] (both not empty,
// first and last elements differing): the middle of a shortest script
// when the two searches meet, else (not minimal, once the cost is high)
// the end of a long common run or the furthest point reached. It tells
// which halves must then be compared minimally: a half the search already
// crossed at a known cost is cheap to finish exactly.
func (m *myers) split(x0, x1, y0, y1 int, minimal bool) (sx, sy int, minLo, minHi bool, err error) {
	a, b, kf, kb, off := m.a, m.b, m.kf, m.kb, m.off
	dmin, dmax := x0-y1, x1-y0
	fmid, bmid := x0-y0, x1-y1
	odd := (fmid-bmid)&1 != 0
	fmin, fmax, bmin, bmax := fmid, fmid, bmid, bmid
	kf[fmid+off] = int32(x0)
	kb[bmid+off] = int32(x1)
	// The forward search reads a[x] for x < x1, the backward one a[x-1]
	// for x > x0 (and b alike): slices the compiler can check once.
	fa, fb := a[:x1], b[:y1]
	ba, bb := a[x0:x1], b[y0:y1]
	for cost := 1; ; cost++ {
		steps := 0
		bigSnake := false

		// Forward: extend each d-path by one edit, then along its snake.
		if fmin > dmin {
			fmin--
			kf[fmin-1+off] = -1
		} else {
			fmin++
		}
		if fmax < dmax {
			fmax++
			kf[fmax+1+off] = -1
		} else {
			fmax--
		}
		// kf[d+1] of the next diagonal is this one's kf[d-1].
		up := kf[fmax+1+off]
		for d := fmax; d >= fmin; d -= 2 {
			down := kf[d-1+off]
			var x int
			if down >= up {
				x = int(down) + 1
			} else {
				x = int(up)
			}
			up = down
			from := x
			y := x - d
			for uint(x) < uint(len(fa)) && uint(y) < uint(len(fb)) && fa[x] == fb[y] {
				x++
				y++
			}
			steps += 1 + x - from
			if x-from > snakeLen {
				bigSnake = true
			}
			kf[d+off] = int32(x)
			if odd && bmin <= d && d <= bmax && int(kb[d+off]) <= x {
				return x, y, true, true, m.budget.spend(steps)
			}
			if steps >= checkEvery {
				if err := m.charge(steps); err != nil {
					return 0, 0, false, false, err
				}
				steps = 0
			}
		}

		// Backward, the same from the far corner.
		if bmin > dmin {
			bmin--
			kb[bmin-1+off] = math.MaxInt32
		} else {
			bmin++
		}
		if bmax < dmax {
			bmax++
			kb[bmax+1+off] = math.MaxInt32
		} else {
			bmax--
		}
		up = kb[bmax+1+off]
		for d := bmax; d >= bmin; d -= 2 {
			down := kb[d-1+off]
			var x int
			if down < up {
				x = int(down)
			} else {
				x = int(up) - 1
			}
			up = down
			from := x
			y := x - d
			// ba[x-x0-1] is a[x-1].
			for uint(x-x0-1) < uint(len(ba)) && uint(y-y0-1) < uint(len(bb)) && ba[x-x0-1] == bb[y-y0-1] {
				x--
				y--
			}
			steps += 1 + from - x
			if from-x > snakeLen {
				bigSnake = true
			}
			kb[d+off] = int32(x)
			if !odd && fmin <= d && d <= fmax && x <= int(kf[d+off]) {
				return x, y, true, true, m.budget.spend(steps)
			}
			if steps >= checkEvery {
				if err := m.charge(steps); err != nil {
					return 0, 0, false, false, err
				}
				steps = 0
			}
		}
		if err := m.charge(steps); err != nil {
			return 0, 0, false, false, err
		}
		if minimal {
			continue
		}

		// A long common run that made good progress for its cost: cut
		// at its end (forward) or start (backward).
		if bigSnake && cost > heurMin {
			best := 0
			for d := fmax; d >= fmin; d -= 2 {
				x := int(kf[d+off])
				y := x - d
				v := (x - x0) + (y - y0) - abs(d-fmid)
				if v > heurK*cost && v > best && x0+snakeLen <= x && x < x1 && y0+snakeLen <= y && y < y1 && runBefore(a, b, x, y) {
					best, sx, sy = v, x, y
				}
			}
			if best > 0 {
				return sx, sy, true, false, nil
			}
			for d := bmax; d >= bmin; d -= 2 {
				x := int(kb[d+off])
				y := x - d
				v := (x1 - x) + (y1 - y) - abs(d-bmid)
				if v > heurK*cost && v > best && x0 < x && x <= x1-snakeLen && y0 < y && y <= y1-snakeLen && runAfter(a, b, x, y) {
					best, sx, sy = v, x, y
				}
			}
			if best > 0 {
				return sx, sy, false, true, nil
			}
		}

		// Too expensive: cut at the point furthest from its corner, of
		// either search.
		if cost >= m.maxCost {
			fbest, fx := -1, 0
			for d := fmax; d >= fmin; d -= 2 {
				x := min(int(kf[d+off]), x1)
				y := x - d
				if y > y1 {
					x, y = y1+d, y1
				}
				if x+y > fbest {
					fbest, fx = x+y, x
				}
			}
			bbest, bx := math.MaxInt, 0
			for d := bmax; d >= bmin; d -= 2 {
				x := max(int(kb[d+off]), x0)
				y := x - d
				if y < y0 {
					x, y = y0+d, y0
				}
				if x+y < bbest {
					bbest, bx = x+y, x
				}
			}
			if (x1+y1)-bbest < fbest-(x0+y0) {
				return fx, fbest - fx, true, false, nil
			}
			return bx, bbest - bx, false, true, nil
		}
	}
}

// charge spends steps and tells when the search must stop: the context is
// done (its error) or the budget is spent (errExhausted).
func (m *myers) charge(steps int) error {
	if err := m.budget.spend(steps); err != nil {
		return err
	}
	if m.budget.spent() {
		return errExhausted
	}
	return nil
}

// runBefore tells whether the snakeLen elements before (x, y) match.
func runBefore(a, b []int32, x, y int) bool {
	for k := 1; k <= snakeLen; k++ {
		if a[x-k] != b[y-k] {
			return false
		}
	}
	return true
}

// runAfter tells whether the snakeLen elements from (x, y) match.
func runAfter(a, b []int32, x, y int) bool {
	for k := range snakeLen {
		if a[x+k] != b[y+k] {
			return false
		}
	}
	return true
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
