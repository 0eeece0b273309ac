package view

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// node is the part of a commit the view needs. Commits never change, so a
// node is cached by id for the life of the process (see Cache).
type node struct {
	parents []plumbing.Hash
	when    int64 // committer time (unix seconds), orders the walks
	author  string
	date    time.Time // author date, UTC
	subject string
	// subjectCut: the subject was cut to MaxSubjectBytes.
	subjectCut bool
}

// errNotCommit reports an object that exists but is not a commit.
var errNotCommit = errors.New("not a commit")

// maxCachedCommits bounds a Cache's commit table; past it the table starts
// over (commits are cheap to read again, and a bound keeps memory flat).
const maxCachedCommits = 1 << 20

// loadNode reads and decodes commit h, refusing an object over
// MaxCommitSize before reading it (see readObject).
func loadNode(repo Repo, h plumbing.Hash) (*node, error) {
	obj, err := readObject(repo, h, MaxCommitSize)
	if err != nil {
		return nil, fmt.Errorf("view: commit %s: %w", h, err)
	}
	if obj.Type() != plumbing.CommitObject {
		return nil, fmt.Errorf("view: %s is a %s: %w", h, obj.Type(), errNotCommit)
	}
	return decodeNode(h, obj)
}

// decodeNode decodes commit h (whose content is read only up to
// MaxCommitSize bytes). The node keeps the subject and author name cut to
// MaxSubjectBytes and MaxAuthorBytes, in strings of their own.
func decodeNode(h plumbing.Hash, obj plumbing.EncodedObject) (*node, error) {
	var c object.Commit
	if err := c.Decode(capped{obj, h, MaxCommitSize}); err != nil {
		return nil, fmt.Errorf("view: decode commit %s: %w", h, err)
	}
	subject, _, _ := strings.Cut(c.Message, "\n")
	subject, cut := clip(strings.TrimRight(subject, "\r"), MaxSubjectBytes)
	author, authorCut := clip(c.Author.Name, MaxAuthorBytes)
	// Clones: the node outlives the decoded commit, whose message it must
	// not keep alive (a cut string is already a copy).
	if !cut {
		subject = strings.Clone(subject)
	}
	if !authorCut {
		author = strings.Clone(author)
	}
	return &node{
		parents:    c.ParentHashes,
		when:       c.Committer.When.Unix(),
		author:     author,
		date:       c.Author.When.UTC(),
		subject:    subject,
		subjectCut: cut,
	}, nil
}

// graph is one build's access to commits: the Cache's table over the Repo
// being built, plus the build's reachability memo.
type graph struct {
	ctx   context.Context
	repo  Repo
	cache *Cache
	reach map[plumbing.Hash]*reachSet
	steps int
}

func (g *graph) get(h plumbing.Hash) (*node, error) {
	return g.cache.node(g.repo, h)
}

// tick checks the context every 1024 steps of any walk.
func (g *graph) tick() error {
	if g.steps++; g.steps%1024 == 0 {
		if err := g.ctx.Err(); err != nil {
			return fmt.Errorf("view: walk: %w", err)
		}
	}
	return nil
}

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

// push adds it. (Typed, unlike container/heap, whose any boxes every
// item: an allocation per commit of every walk.)
func (q *pqueue) push(it qitem) {
	*q = append(*q, it)
	h := *q
	for i := len(h) - 1; i > 0; {
		up := (i - 1) / 2
		if !h.Less(i, up) {
			break
		}
		h[i], h[up] = h[up], h[i]
		i = up
	}
}

// pop removes and returns the first item.
func (q *pqueue) pop() qitem {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h.Less(l, m) {
			m = l
		}
		if r < len(h) && h.Less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}

// hashSet is a set of commits that needs no map while it is small: most
// walks of a build visit a few commits each (a branch of a stack, down to
// its parent's tip). A new map per walk, in a build of 50,000 branches,
// was allocated and probed in memory no cache held: the walks cost three
// times as much per branch as in a build of 1,000.
type hashSet struct {
	few [4]plumbing.Hash
	n   int
	m   map[plumbing.Hash]struct{} // past len(few)
}

func (s *hashSet) has(h plumbing.Hash) bool {
	if s.m != nil {
		_, ok := s.m[h]
		return ok
	}
	for i := range s.n {
		if s.few[i] == h {
			return true
		}
	}
	return false
}

func (s *hashSet) add(h plumbing.Hash) {
	switch {
	case s.m != nil:
		s.m[h] = struct{}{}
	case s.n < len(s.few):
		s.few[s.n] = h
		s.n++
	default:
		s.m = make(map[plumbing.Hash]struct{}, 4*len(s.few))
		for _, x := range s.few[:s.n] {
			s.m[x] = struct{}{}
		}
		s.m[h] = struct{}{}
	}
}

// reachSet is the set of commits reachable from one tip, expanded lazily,
// newest committer time first, only as far as the questions asked need.
// One build keeps one reachSet per tip it asked about, so every branch
// stacked on trunk shares the one walk down trunk's history.
type reachSet struct {
	seen  hashSet
	queue pqueue
	seq   uint64
}

func (g *graph) reachOf(tip plumbing.Hash) (*reachSet, error) {
	if r, ok := g.reach[tip]; ok {
		return r, nil
	}
	n, err := g.get(tip)
	if err != nil {
		return nil, err
	}
	r := &reachSet{}
	r.seen.add(tip)
	r.queue.push(qitem{h: tip, when: n.when})
	g.reach[tip] = r
	return r, nil
}

// contains reports whether c (whose committer time is when) is reachable
// from the set's tip. Like git without a commit-graph file, it relies on
// committer times that do not decrease along history: every unexpanded
// commit older than c is taken not to reach it.
func (g *graph) contains(r *reachSet, c plumbing.Hash, when int64) (bool, error) {
	for len(r.queue) > 0 && r.queue[0].when >= when {
		if r.seen.has(c) {
			return true, nil
		}
		if err := g.tick(); err != nil {
			return false, err
		}
		it := r.queue.pop()
		n, err := g.get(it.h)
		if err != nil {
			return false, err
		}
		for _, p := range n.parents {
			if r.seen.has(p) {
				continue
			}
			pn, err := g.get(p)
			if err != nil {
				return false, err
			}
			r.seen.add(p)
			r.seq++
			r.queue.push(qitem{h: p, when: pn.when, seq: r.seq})
		}
	}
	return r.seen.has(c), nil
}

// exclusion is the result of walking from one commit down to the commits
// reachable from another.
type exclusion struct {
	own      []plumbing.Hash // reachable from the first, not the second; newest first
	boundary []plumbing.Hash // first commits reachable from both, newest first
	complete bool            // the walk ended within its limit
}

// exclude walks from tip, newest first, and stops at commits reachable
// from other: the commits it passes are tip's own (git's other..tip), the
// ones it stops at the boundary (the newest is the merge base). The walk
// visits at most limit own commits.
func (g *graph) exclude(tip, other plumbing.Hash, limit int) (*exclusion, error) {
	r, err := g.reachOf(other)
	if err != nil {
		return nil, err
	}
	res := &exclusion{}
	n, err := g.get(tip)
	if err != nil {
		return nil, err
	}
	var q pqueue
	var seq uint64
	var seen hashSet
	seen.add(tip)
	q.push(qitem{h: tip, when: n.when})
	for len(q) > 0 {
		if len(res.own) >= limit {
			return res, nil
		}
		if err := g.tick(); err != nil {
			return nil, err
		}
		it := q.pop()
		in, err := g.contains(r, it.h, it.when)
		if err != nil {
			return nil, err
		}
		if in {
			res.boundary = append(res.boundary, it.h)
			continue
		}
		res.own = append(res.own, it.h)
		n, err := g.get(it.h)
		if err != nil {
			return nil, err
		}
		for _, p := range n.parents {
			if seen.has(p) {
				continue
			}
			seen.add(p)
			pn, err := g.get(p)
			if err != nil {
				return nil, err
			}
			seq++
			q.push(qitem{h: p, when: pn.when, seq: seq})
		}
	}
	res.complete = true
	return res, nil
}

// log returns up to limit commits reachable from tip, newest first.
func (g *graph) log(tip plumbing.Hash, limit int) ([]plumbing.Hash, error) {
	var q pqueue
	var seq uint64
	var seen hashSet
	seen.add(tip)
	n, err := g.get(tip)
	if err != nil {
		return nil, err
	}
	q.push(qitem{h: tip, when: n.when})
	var out []plumbing.Hash
	for q.Len() > 0 && len(out) < limit {
		if err := g.tick(); err != nil {
			return nil, err
		}
		it := q.pop()
		out = append(out, it.h)
		n, err := g.get(it.h)
		if err != nil {
			return nil, err
		}
		for _, p := range n.parents {
			if seen.has(p) {
				continue
			}
			seen.add(p)
			pn, err := g.get(p)
			if err != nil {
				return nil, err
			}
			seq++
			q.push(qitem{h: p, when: pn.when, seq: seq})
		}
	}
	return out, nil
}

// firstParents returns up to limit commits of tip's first-parent chain,
// tip first.
func (g *graph) firstParents(tip plumbing.Hash, limit int) ([]plumbing.Hash, error) {
	var out []plumbing.Hash
	h := tip
	for len(out) < limit {
		if err := g.tick(); err != nil {
			return nil, err
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
