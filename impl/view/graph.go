package view

import (
	"container/heap"
	"context"
	"fmt"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// node is the part of a commit the view needs, cached per build.
type node struct {
	parents []plumbing.Hash
	when    int64 // committer time (unix seconds), orders the walks
	author  string
	date    time.Time // author date, UTC
	subject string
}

// graph is a lazily loaded commit-graph cache over one go-git repository.
// It is used by a single Build (not safe for concurrent use).
type graph struct {
	repo  *git.Repository
	nodes map[plumbing.Hash]*node
}

func newGraph(repo *git.Repository) *graph {
	return &graph{repo: repo, nodes: make(map[plumbing.Hash]*node)}
}

// get loads (once) the commit h.
func (g *graph) get(h plumbing.Hash) (*node, error) {
	if n, ok := g.nodes[h]; ok {
		return n, nil
	}
	c, err := g.repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("view: commit %s: %w", h, err)
	}
	subject, _, _ := strings.Cut(c.Message, "\n")
	n := &node{
		parents: c.ParentHashes,
		when:    c.Committer.When.Unix(),
		author:  c.Author.Name,
		date:    c.Author.When.UTC(),
		subject: strings.TrimRight(subject, "\r"),
	}
	g.nodes[h] = n
	return n, nil
}

// Paint flags, as in git's merge-base machinery.
const (
	flagOne    uint8 = 1 << iota // reachable from the first side
	flagTwo                      // reachable from the second side
	flagStale                    // reachable from both through a common commit
	flagResult                   // a merge-base candidate
)

type qitem struct {
	h    plumbing.Hash
	when int64
	seq  uint64
}

// pqueue is a max-heap by commit time; ties pop in insertion order.
type pqueue []qitem

func (q pqueue) Len() int { return len(q) }
func (q pqueue) Less(i, j int) bool {
	if q[i].when != q[j].when {
		return q[i].when > q[j].when
	}
	return q[i].seq < q[j].seq
}
func (q pqueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pqueue) Push(x any)   { *q = append(*q, x.(qitem)) }
func (q *pqueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// paintResult is the outcome of one painting walk.
type paintResult struct {
	flags map[plumbing.Hash]uint8
	order []plumbing.Hash // commits in first-pop order (newest first)
	bases []plumbing.Hash // merge bases (results that did not go stale)
}

// paint walks down from one (flagOne) and two (flagTwo) together, newest
// commit first, like git's paint_down_to_common: a commit reached from
// both sides is a merge-base candidate and everything below it is stale;
// the walk stops when every queued commit is stale. Afterwards a visited
// commit whose flags are exactly flagOne is reachable from one but not
// from two (and vice versa). As in git without a commit-graph file, this
// relies on commit dates being roughly monotonic along history.
func (g *graph) paint(ctx context.Context, one, two plumbing.Hash) (*paintResult, error) {
	res := &paintResult{flags: make(map[plumbing.Hash]uint8)}
	var q pqueue
	var seq uint64
	nonStale := 0 // queued entries pushed without flagStale
	push := func(h plumbing.Hash, f uint8) error {
		n, err := g.get(h)
		if err != nil {
			return err
		}
		seq++
		heap.Push(&q, qitem{h: h, when: n.when, seq: seq})
		if f&flagStale == 0 {
			nonStale++
		}
		return nil
	}
	res.flags[one] |= flagOne
	if err := push(one, flagOne); err != nil {
		return nil, err
	}
	if res.flags[two]&flagTwo == 0 {
		res.flags[two] |= flagTwo
		if err := push(two, flagTwo); err != nil {
			return nil, err
		}
	}
	seen := make(map[plumbing.Hash]bool)
	var results []plumbing.Hash
	steps := 0
	// queueHasNonStale rescans only when the cheap counter says so.
	queueHasNonStale := func() bool {
		if nonStale <= 0 {
			return false
		}
		for _, it := range q {
			if res.flags[it.h]&flagStale == 0 {
				return true
			}
		}
		nonStale = 0
		return false
	}
	for q.Len() > 0 && queueHasNonStale() {
		if steps++; steps%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("view: walk: %w", err)
			}
		}
		it := heap.Pop(&q).(qitem)
		f := res.flags[it.h] & (flagOne | flagTwo | flagStale)
		if !seen[it.h] {
			seen[it.h] = true
			res.order = append(res.order, it.h)
		}
		if f == flagOne|flagTwo {
			if res.flags[it.h]&flagResult == 0 {
				res.flags[it.h] |= flagResult
				results = append(results, it.h)
			}
			f |= flagStale
		}
		n, err := g.get(it.h)
		if err != nil {
			return nil, err
		}
		for _, p := range n.parents {
			if res.flags[p]&f == f {
				continue
			}
			res.flags[p] |= f
			if err := push(p, f); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range results {
		if res.flags[r]&flagStale == 0 {
			res.bases = append(res.bases, r)
		}
	}
	return res, nil
}

// only returns the commits with exactly flag f (in first-pop order).
func (r *paintResult) only(f uint8) []plumbing.Hash {
	var out []plumbing.Hash
	for _, h := range r.order {
		if r.flags[h]&(flagOne|flagTwo|flagStale) == f {
			out = append(out, h)
		}
	}
	return out
}

// isAncestor reports whether a is b or an ancestor of b.
func (g *graph) isAncestor(ctx context.Context, a, b plumbing.Hash) (bool, error) {
	if a == b {
		return true, nil
	}
	r, err := g.paint(ctx, a, b)
	if err != nil {
		return false, err
	}
	return r.flags[a]&flagTwo != 0, nil
}

// mergeBase returns the best merge base of a and b (the newest; ties by
// walk order), and false when they share no history.
func (g *graph) mergeBase(ctx context.Context, a, b plumbing.Hash) (plumbing.Hash, bool, error) {
	if a == b {
		return a, true, nil
	}
	r, err := g.paint(ctx, a, b)
	if err != nil {
		return plumbing.ZeroHash, false, err
	}
	if len(r.bases) == 0 {
		return plumbing.ZeroHash, false, nil
	}
	return r.bases[0], true, nil
}

// log returns up to limit commits reachable from tip, newest first.
func (g *graph) log(ctx context.Context, tip plumbing.Hash, limit int) ([]plumbing.Hash, error) {
	var q pqueue
	var seq uint64
	seen := map[plumbing.Hash]bool{tip: true}
	n, err := g.get(tip)
	if err != nil {
		return nil, err
	}
	heap.Push(&q, qitem{h: tip, when: n.when})
	var out []plumbing.Hash
	for q.Len() > 0 && len(out) < limit {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("view: log: %w", err)
		}
		it := heap.Pop(&q).(qitem)
		out = append(out, it.h)
		n, err := g.get(it.h)
		if err != nil {
			return nil, err
		}
		for _, p := range n.parents {
			if seen[p] {
				continue
			}
			seen[p] = true
			pn, err := g.get(p)
			if err != nil {
				return nil, err
			}
			seq++
			heap.Push(&q, qitem{h: p, when: pn.when, seq: seq})
		}
	}
	return out, nil
}

// firstParents returns up to limit commits of tip's first-parent chain,
// tip first.
func (g *graph) firstParents(ctx context.Context, tip plumbing.Hash, limit int) ([]plumbing.Hash, error) {
	var out []plumbing.Hash
	h := tip
	for len(out) < limit {
		if len(out)%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("view: first-parent walk: %w", err)
			}
		}
		n, err := g.get(h)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
		if len(n.parents) == 0 {
			break
		}
		h = n.parents[0]
	}
	return out, nil
}
