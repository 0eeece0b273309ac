package diff

// group is a run of changed lines of one side, [start, end); between two
// unchanged lines there is exactly one group, maybe empty, so the groups
// of the two sides correspond one to one, in order.
type group struct{ start, end int }

func firstGroup(s *side) group {
	g := group{}
	for s.changed(g.end) {
		g.end++
	}
	return g
}

// next moves g to the following group; false at the last one.
func (s *side) next(g *group) bool {
	if g.end == s.n() {
		return false
	}
	g.start = g.end + 1
	g.end = g.start
	for s.changed(g.end) {
		g.end++
	}
	return true
}

// previous moves g to the preceding group; false at the first one.
func (s *side) previous(g *group) bool {
	if g.start == 0 {
		return false
	}
	g.end = g.start - 1
	g.start = g.end
	for s.changed(g.start - 1) {
		g.start--
	}
	return true
}

// slideDown moves the non-empty group g one line down when the line after
// it equals its first line (the script stays correct: the unchanged lines
// keep the same contents in the same order), merging it with the group it
// then touches.
func (s *side) slideDown(g *group) bool {
	if g.end >= s.n() || s.ids[g.start] != s.ids[g.end] {
		return false
	}
	s.setChanged(g.start, false)
	s.setChanged(g.end, true)
	g.start++
	g.end++
	for s.changed(g.end) {
		g.end++
	}
	return true
}

// slideUp is slideDown upwards.
func (s *side) slideUp(g *group) bool {
	if g.start == 0 || s.ids[g.start-1] != s.ids[g.end-1] {
		return false
	}
	g.start--
	g.end--
	s.setChanged(g.start, true)
	s.setChanged(g.end, false)
	for s.changed(g.start - 1) {
		g.start--
	}
	return true
}

// compact slides each group of changed lines of s as git's xdiff does:
// up, then down as far as it goes, merging with the groups it meets, then
// back up to end where a group of the other side o is not empty, when
// there is such a place, so that deletions and insertions sit together.
// Each move is charged to the budget; a spent budget stops the sliding
// (every intermediate state is a correct script).
func compact(s, o *side, budget *Budget) error {
	g, og := firstGroup(s), firstGroup(o)
	for {
		if g.end > g.start {
			var earliestEnd int
			endMatchingOther := -1
			for {
				size := g.end - g.start
				endMatchingOther = -1
				moves := 0
				for s.slideUp(&g) {
					o.previous(&og)
					moves++
				}
				earliestEnd = g.end
				if og.end > og.start {
					endMatchingOther = g.end
				}
				for s.slideDown(&g) {
					o.next(&og)
					moves++
					if og.end > og.start {
						endMatchingOther = g.end
					}
				}
				if err := budget.spend(1 + moves); err != nil {
					return err
				}
				if budget.spent() {
					return nil
				}
				if size == g.end-g.start {
					break
				}
			}
			if g.end != earliestEnd && endMatchingOther != -1 {
				for og.end == og.start {
					s.slideUp(&g)
					o.previous(&og)
				}
			}
		}
		if !s.next(&g) {
			return nil
		}
		o.next(&og)
	}
}
