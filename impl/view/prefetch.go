package view

import (
	"runtime"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/refs"
)

// prefetchMin is the number of missing objects below which a build reads
// them one by one as it goes.
const prefetchMin = 256

// prefetch reads, in parallel, the branch tips and metadata blobs of table
// that the cache lacks: on a first build of a large repository reading
// objects is most of the work, and a Repo serves reads concurrently.
// Failures are left for the build to meet and report.
func (bd *build) prefetch(table *refs.Table) {
	c := bd.b.cache
	var commits, metas []plumbing.Hash
	c.mu.Lock()
	for _, r := range table.Prefix("refs/heads/") {
		if _, ok := c.nodes[r.Hash]; !ok && !r.Symbolic() {
			commits = append(commits, r.Hash)
		}
	}
	for _, prefix := range []string{stackitMetaPrefix, graphiteMetaPrefix} {
		for _, r := range table.Prefix(prefix) {
			if _, ok := c.metas[r.Hash]; !ok && !r.Symbolic() {
				metas = append(metas, r.Hash)
			}
		}
	}
	c.mu.Unlock()
	if len(commits)+len(metas) < prefetchMin {
		return
	}
	jobs := make(chan func())
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				job()
			}
		}()
	}
	for _, h := range commits {
		if bd.g.ctx.Err() != nil {
			break
		}
		jobs <- func() { _, _ = c.node(bd.repo, h) }
	}
	for _, h := range metas {
		if bd.g.ctx.Err() != nil {
			break
		}
		jobs <- func() { c.branchMeta(bd.repo, h) }
	}
	close(jobs)
	wg.Wait()
}
