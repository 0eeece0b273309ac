package replica

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/cluster"
	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
)

// What the other replicas say is queued (enqueue) and handled in order,
// off the listener's goroutine (runInbox).

// handler hands the listener's messages to the inbox.
type handler struct{ r *Replica }

// connected is the inbox's own message kind: the listening connection is
// (again) ready; Version is 1 the first time.
const connected = "connected"

func (h handler) Connected(first bool) {
	m := cluster.Message{Kind: connected}
	if first {
		m.Version = 1
	}
	h.r.enqueue(m)
}

func (h handler) Message(m cluster.Message) { h.r.enqueue(m) }

// enqueue queues m for the inbox. When the inbox is full, m is dropped
// and a catch-up is queued once there is room (as after a lost
// connection).
func (r *Replica) enqueue(m cluster.Message) {
	select {
	case r.inbox <- m:
	default:
		r.log.Warn("cluster notice dropped: the inbox is full; catching up later", "kind", m.Kind, "repo", m.Repo)
		r.catchUpLater.Store(true)
	}
}

// runInbox handles what the other replicas say, in order, until ctx ends.
func (r *Replica) runInbox(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-r.inbox:
			r.handle(ctx, m)
			if len(r.inbox) == 0 && r.catchUpLater.CompareAndSwap(true, false) {
				r.catchUp(ctx, false)
			}
		}
	}
}

func (r *Replica) handle(ctx context.Context, m cluster.Message) {
	switch m.Kind {
	case connected:
		r.catchUp(ctx, m.Version == 1)
	case cluster.KindView:
		if rf, ok := r.served.Refresher(m.Repo); ok {
			rf.Follow()
		}
	case cluster.KindEvent:
		r.relayed(ctx, m)
	case cluster.KindAdded:
		r.adopt(ctx, m.Repo)
	case cluster.KindRemoved:
		r.served.Drop(ctx, m.Repo)
	}
}

// adopt serves a repository another replica onboarded; when the database
// does not answer, the replica catches up later.
func (r *Replica) adopt(ctx context.Context, id string) {
	if err := r.served.Adopt(ctx, id); err != nil {
		r.catchUpLater.Store(true)
	}
}

// relayed publishes another replica's sync event to this server's event
// streams. A finished sync updates the repository's status here; when it
// names a view version this replica does not serve yet, the replica
// catches up first, so that a client that reads the view when told the
// sync finished gets that version.
func (r *Replica) relayed(ctx context.Context, m cluster.Message) {
	rf, ok := r.served.Refresher(m.Repo)
	if !ok {
		return
	}
	data := m.Data
	if data == nil { // too large for the notice: the store has it
		res, err := rf.Lookup(ctx, m.Sync)
		if err != nil {
			r.log.Warn("relayed sync event lost: the sync is not readable", "repo", m.Repo, "sync", m.Sync, "err", redact.Error(err))
			return
		}
		if data, err = json.Marshal(res.API()); err != nil {
			return
		}
	}
	var sr gen.SyncResult
	if err := json.Unmarshal(data, &sr); err != nil {
		r.log.Warn("unreadable relayed sync event", "repo", m.Repo, "err", err)
		return
	}
	if m.Event == events.SyncFinished || m.Event == events.SyncFailed {
		res := refresh.Result{State: refresh.State(sr.State), StartedAt: sr.StartedAt, FinishedAt: sr.FinishedAt}
		if sr.Error != nil {
			res.Error = *sr.Error
		}
		rf.Observe(res)
		if sr.ViewVersion != nil && *sr.ViewVersion > rf.Repo().Snapshot().Version() {
			rf.CatchUp()
		}
	}
	if err := r.streams.Publish(rf.Repo().ID, events.Event{Type: m.Event, Data: json.RawMessage(data)}); err != nil {
		r.log.Error("event not published", "repo", m.Repo, "err", err)
	}
}

// catchUp brings this replica in line with the database after its
// listening connection was (re)established: the onboarded repositories
// another replica stored are served, those no longer stored are
// forgotten, and (after a reconnection, when notices may have been lost)
// every mirror follows the cluster's current view.
func (r *Replica) catchUp(ctx context.Context, first bool) {
	stored, err := r.st.Repos(ctx)
	if err != nil {
		r.log.Warn("cannot catch up with the other replicas: the database did not answer", "err", redact.Error(err))
		r.catchUpLater.Store(true)
		return
	}
	storedIDs := map[string]bool{}
	for _, sr := range stored {
		storedIDs[strings.ToLower(sr.ID)] = true
		if _, ok := r.served.Get(sr.ID); !ok {
			r.adopt(ctx, sr.ID)
		}
	}
	for _, repo := range r.served.List() {
		if _, onboarding := r.served.Onboarding(repo.ID); repo.Origin == registry.OriginAPI && !storedIDs[strings.ToLower(repo.ID)] && !onboarding {
			r.served.Drop(ctx, repo.ID)
		}
	}
	if first {
		return // the start-up runs read every mirror
	}
	for _, repo := range r.served.List() {
		if rf, ok := r.served.Refresher(repo.ID); ok {
			rf.Follow()
		}
	}
}
