package refs

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Commits answers the questions force detection asks about commits.
type Commits interface {
	// CommitInfo returns the parents and committer time (unix seconds) of
	// commit h. ok is false when h is not a commit (a metadata blob, say);
	// err reports a commit that cannot be read.
	CommitInfo(h plumbing.Hash) (parents []plumbing.Hash, when int64, ok bool, err error)
}

// DefaultWalkLimit bounds the commits one force check visits.
const DefaultWalkLimit = 10000

// clockSlop is how far (seconds) a descendant's committer time may lie
// before its ancestor's before a walk gives up on reaching the ancestor.
const clockSlop = 24 * 60 * 60

// Classify marks as Forced each Updated change whose old commit is not an
// ancestor of its new one. The check is a walk from the new commit, newest
// committer time first, that stops when it reaches the old commit (Updated),
// when every queued commit is more than a day older than the old commit, or
// after limit commits (<= 0: DefaultWalkLimit); a walk that cannot show
// ancestry within these bounds reports Forced. Changes whose old or new
// object is not a commit stay Updated. Commits unreadable on either side
// count as Forced. The walks share what they read and honour ctx.
func Classify(ctx context.Context, changes []Change, commits Commits, limit int) error {
	if limit <= 0 {
		limit = DefaultWalkLimit
	}
	w := &walker{commits: commits, limit: limit, infos: map[plumbing.Hash]info{}}
	for i := range changes {
		c := &changes[i]
		if c.Kind != Updated {
			continue
		}
		ff, err := w.fastForward(ctx, c.Old, c.New)
		if err != nil {
			return fmt.Errorf("refs: classify %s: %w", c.Ref, err)
		}
		if !ff {
			c.Kind = Forced
		}
	}
	return nil
}

type info struct {
	parents []plumbing.Hash
	when    int64
	commit  bool
	bad     bool
}

type walker struct {
	commits Commits
	limit   int
	infos   map[plumbing.Hash]info
}

func (w *walker) info(h plumbing.Hash) info {
	if in, ok := w.infos[h]; ok {
		return in
	}
	parents, when, ok, err := w.commits.CommitInfo(h)
	in := info{parents: parents, when: when, commit: ok && err == nil, bad: err != nil}
	w.infos[h] = in
	return in
}

// fastForward reports whether old is new or an ancestor of it, within the
// walk's bounds. Non-commits count as fast-forwards (see Classify).
func (w *walker) fastForward(ctx context.Context, old, nw plumbing.Hash) (bool, error) {
	if old == nw {
		return true, nil
	}
	oi, ni := w.info(old), w.info(nw)
	if oi.bad || ni.bad {
		return false, nil
	}
	if !oi.commit || !ni.commit {
		return true, nil
	}
	q := &timeQueue{}
	seen := map[plumbing.Hash]bool{nw: true}
	heap.Push(q, timed{h: nw, when: ni.when})
	for steps := 0; q.Len() > 0; steps++ {
		if steps%256 == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		if steps >= w.limit {
			return false, nil
		}
		top := heap.Pop(q).(timed)
		if top.h == old {
			return true, nil
		}
		if top.when < oi.when-clockSlop {
			return false, nil // everything left is older still
		}
		for _, p := range w.info(top.h).parents {
			if seen[p] {
				continue
			}
			seen[p] = true
			pi := w.info(p)
			if pi.bad || !pi.commit {
				continue // a missing parent (shallow or partial history) ends that line
			}
			heap.Push(q, timed{h: p, when: pi.when})
		}
	}
	return false, nil
}

type timed struct {
	h    plumbing.Hash
	when int64
}

// timeQueue is a max-heap by committer time; ties by hash for determinism.
type timeQueue []timed

func (q timeQueue) Len() int { return len(q) }
func (q timeQueue) Less(i, j int) bool {
	if q[i].when != q[j].when {
		return q[i].when > q[j].when
	}
	return bytes.Compare(q[i].h[:], q[j].h[:]) < 0
}
func (q timeQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *timeQueue) Push(x any)   { *q = append(*q, x.(timed)) }
func (q *timeQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// Sort orders changes by ref name (Diff already returns them so).
func Sort(changes []Change) {
	slices.SortFunc(changes, func(a, b Change) int { return strings.Compare(a.Ref, b.Ref) })
}
