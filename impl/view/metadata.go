package view

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/gen"
)

// Ref namespaces written by the stacking tools.
const (
	stackitMetaPrefix  = "refs/stackit/metadata/"
	stackitStackPrefix = "refs/stackit/stacks/"
	graphiteMetaPrefix = "refs/branch-metadata/"
)

// prInfo is the pull-request part of stackit and Graphite metadata.
type prInfo struct {
	Number  *int    `json:"number"`
	Title   *string `json:"title"`
	State   *string `json:"state"`
	URL     *string `json:"url"`
	IsDraft *bool   `json:"isDraft"`
	Base    *string `json:"base"`
}

// branchMeta is a stackit (refs/stackit/metadata/<b>) or Graphite
// (refs/branch-metadata/<b>) metadata blob. Unknown fields are ignored.
type branchMeta struct {
	ParentBranchName     string  `json:"parentBranchName"`
	ParentBranchRevision string  `json:"parentBranchRevision"`
	PRInfo               *prInfo `json:"prInfo"`
	Scope                string  `json:"scope"`
	StackID              string  `json:"stackId"`
}

// stackMeta is a stackit stack blob (refs/stackit/stacks/<id>).
type stackMeta struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

var errNotBlob = errors.New("metadata ref does not point to a blob")

// readBlobJSON decodes the blob h as JSON into v. A blob over
// MaxMetadataSize is not read (see readObject).
func readBlobJSON(repo Repo, h plumbing.Hash, v any) error {
	obj, err := readObject(repo, h, MaxMetadataSize)
	if err != nil {
		return fmt.Errorf("read %s: %w", h, err)
	}
	return decodeBlobJSON(h, obj, v)
}

// decodeBlobJSON decodes the blob object obj (id h) as JSON into v,
// reading at most MaxMetadataSize bytes of it.
func decodeBlobJSON(h plumbing.Hash, obj plumbing.EncodedObject, v any) error {
	if obj.Type() != plumbing.BlobObject {
		return fmt.Errorf("%s is a %s: %w", h, obj.Type(), errNotBlob)
	}
	b, err := readAll(h, obj, MaxMetadataSize)
	if err != nil {
		return fmt.Errorf("read %s: %w", h, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", h, err)
	}
	return nil
}

// pr converts prInfo to the API value; nil without a positive number.
func (p *prInfo) pr() *gen.PullRequest {
	if p == nil || p.Number == nil || *p.Number <= 0 {
		return nil
	}
	return &gen.PullRequest{
		Number:  *p.Number,
		Title:   p.Title,
		State:   p.State,
		Url:     p.URL,
		IsDraft: p.IsDraft,
		Base:    p.Base,
	}
}

// branchMeta returns the parsed branch metadata blob h (parsed once).
func (c *Cache) branchMeta(repo Repo, h plumbing.Hash) *metaEntry {
	return cached(c, &c.metas, h, func() *metaEntry {
		obj, err := readObject(repo, h, MaxMetadataSize)
		if err != nil {
			return &metaEntry{err: fmt.Errorf("read %s: %w", h, err)}
		}
		return parseMeta(h, obj)
	})
}

// stackMeta returns the parsed stack blob h (parsed once).
func (c *Cache) stackMeta(repo Repo, h plumbing.Hash) *stackEntryMeta {
	return cached(c, &c.stacks, h, func() *stackEntryMeta {
		e := &stackEntryMeta{}
		e.err = readBlobJSON(repo, h, &e.meta)
		return e
	})
}

// cached returns (*table)[h], made by make outside the lock on a miss.
// A table past maxCachedCommits entries starts over.
func cached[T any](c *Cache, table *map[plumbing.Hash]T, h plumbing.Hash, make func() T) T {
	c.mu.Lock()
	e, ok := (*table)[h]
	c.mu.Unlock()
	if ok {
		return e
	}
	e = make()
	c.mu.Lock()
	if len(*table) >= maxCachedCommits {
		*table = map[plumbing.Hash]T{}
	}
	(*table)[h] = e
	c.mu.Unlock()
	return e
}

// parseMeta parses a branch metadata blob.
func parseMeta(h plumbing.Hash, obj plumbing.EncodedObject) *metaEntry {
	e := &metaEntry{}
	if e.err = decodeBlobJSON(h, obj, &e.meta); e.err == nil {
		e.pr = e.meta.PRInfo.pr()
	}
	return e
}
