package view

import (
	"errors"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/refs"
)

// Cache keeps what never changes for a given object id: decoded commits and
// parsed metadata blobs. A Builder owns one for the life of the process, so
// a rebuild reads only objects it has not seen. It is safe for concurrent
// use.
type Cache struct {
	mu     sync.Mutex
	nodes  map[plumbing.Hash]*node
	metas  map[plumbing.Hash]*metaEntry
	stacks map[plumbing.Hash]*stackEntryMeta
	// tooLarge holds the commits refused by size: an object's size never
	// changes, so each is checked (and, from a Repo that is not a Sizer,
	// read) once per process, not on every build.
	tooLarge map[plumbing.Hash]error
}

// metaEntry is a parsed branch metadata blob, or why it is unusable.
type metaEntry struct {
	meta branchMeta
	pr   *gen.PullRequest // shared by every snapshot using this blob
	err  error
}

type stackEntryMeta struct {
	meta stackMeta
	err  error
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		nodes:  map[plumbing.Hash]*node{},
		metas:  map[plumbing.Hash]*metaEntry{},
		stacks: map[plumbing.Hash]*stackEntryMeta{},

		tooLarge: map[plumbing.Hash]error{},
	}
}

// Len is how many decoded commits and parsed metadata blobs c holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes) + len(c.metas) + len(c.stacks)
}

// node returns commit h, reading it from repo once.
func (c *Cache) node(repo Repo, h plumbing.Hash) (*node, error) {
	c.mu.Lock()
	n, ok := c.nodes[h]
	bad := c.tooLarge[h]
	c.mu.Unlock()
	if ok {
		return n, nil
	}
	if bad != nil {
		return nil, bad
	}
	n, err := loadNode(repo, h)
	if errors.Is(err, ErrObjectTooLarge) {
		c.mu.Lock()
		if len(c.tooLarge) >= maxCachedCommits {
			c.tooLarge = map[plumbing.Hash]error{}
		}
		c.tooLarge[h] = err
		c.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.nodes) >= maxCachedCommits {
		c.nodes = map[plumbing.Hash]*node{}
	}
	c.nodes[h] = n
	c.mu.Unlock()
	return n, nil
}

// Add caches an object that was read elsewhere: a mirror's clone shows the
// objects its refs point at as they arrive (mirror.Config.Seen), so a first
// build need not read them back. Commits are decoded, blobs parsed as branch
// metadata; other objects are ignored. content is not retained. Content
// over MaxCommitSize (a commit) or MaxMetadataSize (a blob) is not
// decoded: a build meets the object, and refuses it, itself.
func (c *Cache) Add(h plumbing.Hash, t plumbing.ObjectType, content []byte) {
	if t == plumbing.CommitObject && len(content) > MaxCommitSize ||
		t == plumbing.BlobObject && len(content) > MaxMetadataSize {
		return
	}
	obj := &plumbing.MemoryObject{}
	obj.SetType(t)
	if _, err := obj.Write(content); err != nil {
		return
	}
	switch t {
	case plumbing.CommitObject:
		n, err := decodeNode(h, obj)
		if err != nil {
			return // read again, and reported, when a build needs it
		}
		c.mu.Lock()
		if len(c.nodes) < maxCachedCommits {
			c.nodes[h] = n
		}
		c.mu.Unlock()
	case plumbing.BlobObject:
		e := parseMeta(h, obj)
		c.mu.Lock()
		if len(c.metas) < maxCachedCommits {
			c.metas[h] = e
		}
		c.mu.Unlock()
	}
}

// Commits answers refs.Classify's questions from the cache, reading
// missing commits from repo.
func (c *Cache) Commits(repo Repo) refs.Commits { return cacheCommits{c: c, repo: repo} }

type cacheCommits struct {
	c    *Cache
	repo Repo
}

// CommitInfo implements refs.Commits.
func (cc cacheCommits) CommitInfo(h plumbing.Hash) ([]plumbing.Hash, int64, bool, error) {
	n, err := cc.c.node(cc.repo, h)
	if errors.Is(err, errNotCommit) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	return n.parents, n.when, true, nil
}
