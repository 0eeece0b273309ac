package webhook

import (
	"container/list"
	"sync"
	"time"
)

// Defaults used by NewDeduper for non-positive arguments.
const (
	DefaultDedupTTL = time.Hour
	DefaultDedupMax = 10_000
)

// Deduper remembers webhook delivery ids (X-GitHub-Delivery) for a TTL so a
// redelivered or replayed webhook triggers at most one refresh. It holds at
// most max ids, evicting the oldest first. It is safe for concurrent use.
type Deduper struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	order *list.List               // of *entry, oldest first
	ids   map[string]*list.Element // id -> element in order
}

type entry struct {
	id   string
	seen time.Time
}

// NewDeduper returns a Deduper keeping ids for ttl and at most max of them.
// A non-positive ttl or max selects DefaultDedupTTL or DefaultDedupMax; a nil
// now selects time.Now.
func NewDeduper(ttl time.Duration, max int, now func() time.Time) *Deduper {
	if ttl <= 0 {
		ttl = DefaultDedupTTL
	}
	if max <= 0 {
		max = DefaultDedupMax
	}
	if now == nil {
		now = time.Now
	}
	return &Deduper{ttl: ttl, max: max, now: now, order: list.New(), ids: make(map[string]*list.Element)}
}

// Seen reports whether id was recorded within the TTL, and records it if it
// was not. A repeat does not extend the original record's lifetime. An empty
// id is never recorded and reports false, so deliveries without the header
// are always processed.
func (d *Deduper) Seen(id string) bool {
	if id == "" {
		return false
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	// Entries are appended with non-decreasing times under a fixed TTL, so
	// the expired ones are at the front. A clock stepping backwards only
	// delays their expiry.
	for e := d.order.Front(); e != nil; e = d.order.Front() {
		en := e.Value.(*entry)
		if now.Sub(en.seen) < d.ttl {
			break
		}
		d.order.Remove(e)
		delete(d.ids, en.id)
	}
	if _, ok := d.ids[id]; ok {
		return true
	}
	d.ids[id] = d.order.PushBack(&entry{id: id, seen: now})
	for d.order.Len() > d.max {
		e := d.order.Front()
		d.order.Remove(e)
		delete(d.ids, e.Value.(*entry).id)
	}
	return false
}

// Len returns the number of ids currently remembered, including any that
// have expired but not yet been swept by a call to Seen.
func (d *Deduper) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.order.Len()
}
