package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/view"
)

// GET /api/v1/repos with many repositories: each repository's item is
// encoded once and kept, like the view, until what it shows changes (its
// snapshot, its refresher's status); a list is the concatenation of the
// items the caller may see. The item exists in two forms, with and
// without addedBy (registry.Repo.OwnerShownTo), each encoded on first use.
// The bytes are those json.Marshal gives for the gen.Repo repoResource
// makes, so the answer is the one the generated response would encode.

// repoItems caches the encoded items of the repositories served.
type repoItems struct {
	mu    sync.Mutex
	items map[*registry.Repo]*repoItem
}

// repoItem is one repository's encoded item, valid while key holds.
type repoItem struct {
	key        itemKey
	plain, own []byte // without and with addedBy; nil until asked
}

// itemKey is what a repository's item shows that may change: its
// snapshot (description, view version, counts) and its refresher's
// status. A repository's other fields never change (a removed and added
// again repository is another *registry.Repo).
type itemKey struct {
	snap   *view.Snapshot
	status statusKey
	known  bool // the repository has a refresher
}

// statusKey is a refresh.Status compared by value: the times it points to
// instead of the pointers. (A field added to refresh.Status is compared
// as it is: a pointer by identity, which holds as long as the refresher
// sets a new pointer on each change, as it does for the times.)
type statusKey struct {
	st                                    refresh.Status // its time pointers nil
	lastAttempt, lastSuccess, nextPlanned time.Time
	hasAttempt, hasSuccess, hasNext       bool
}

func keyOf(st refresh.Status) statusKey {
	k := statusKey{st: st}
	k.st.LastAttemptAt, k.st.LastSuccessAt, k.st.NextScheduledAt = nil, nil, nil
	if st.LastAttemptAt != nil {
		k.lastAttempt, k.hasAttempt = *st.LastAttemptAt, true
	}
	if st.LastSuccessAt != nil {
		k.lastSuccess, k.hasSuccess = *st.LastSuccessAt, true
	}
	if st.NextScheduledAt != nil {
		k.nextPlanned, k.hasNext = *st.NextScheduledAt, true
	}
	return k
}

// repoState reads what r's item shows now.
func (s *Server) repoState(r *registry.Repo) (*view.Snapshot, *refresh.Status) {
	snap := r.Snapshot()
	rf, ok := s.refreshers.Refresher(r.ID)
	if !ok {
		return snap, nil
	}
	st := rf.Status()
	return snap, &st
}

// item returns r's encoded item, with addedBy when own, encoding it when
// what it shows changed since it was last encoded.
func (s *Server) item(r *registry.Repo, own bool) ([]byte, error) {
	snap, st := s.repoState(r)
	key := itemKey{snap: snap, known: st != nil}
	if st != nil {
		key.status = keyOf(*st)
	}
	c := &s.repoItems
	c.mu.Lock()
	it := c.items[r]
	if it != nil && it.key == key {
		if b := it.form(own); b != nil {
			c.mu.Unlock()
			return b, nil
		}
	}
	c.mu.Unlock()

	b, err := json.Marshal(s.repoResourceOf(r, snap, st, own))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.items == nil {
		c.items = map[*registry.Repo]*repoItem{}
	}
	if it = c.items[r]; it == nil || it.key != key {
		it = &repoItem{key: key}
		c.items[r] = it
	}
	if own {
		it.own = b
	} else {
		it.plain = b
	}
	return b, nil
}

func (it *repoItem) form(own bool) []byte {
	if own {
		return it.own
	}
	return it.plain
}

// prune forgets the items of repositories no longer served.
func (c *repoItems) prune(served []*registry.Repo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.items) <= len(served) {
		return
	}
	keep := make(map[*registry.Repo]bool, len(served))
	for _, r := range served {
		keep[r] = true
	}
	for r := range c.items {
		if !keep[r] {
			delete(c.items, r)
		}
	}
}

// reposList encodes the list of the repositories v may see, in id order:
// their items between brackets, as the generated response would.
func (s *Server) reposList(v registry.Viewer) ([]byte, error) {
	served := s.repos.List()
	defer s.repoItems.prune(served)
	out := make([]byte, 0, 64+len(served)*512)
	out = append(out, '[')
	n := 0
	for _, r := range served {
		if !r.VisibleTo(v) {
			continue
		}
		b, err := s.item(r, r.OwnerShownTo(v))
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
		n++
	}
	return append(out, ']', '\n'), nil
}

// reposResponse is GET /api/v1/repos's 200 answer, encoded in advance.
type reposResponse struct{ body []byte }

var _ gen.ListReposResponseObject = reposResponse{}

func (r reposResponse) VisitListReposResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(r.body)
	return err
}
