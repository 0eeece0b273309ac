// Package events is stackd's server-sent events (SSE) broker: refreshers
// publish per-repository events (sync started/finished/failed, view updated,
// branch switched) and API clients follow them over text/event-stream.
//
// Publish never blocks. Each subscription has a bounded buffer; a subscriber
// that falls so far behind that its buffer is full when the next event
// arrives is closed (not silently thinned): its stream ends, the browser's
// EventSource reconnects, and the fresh "connected" event tells the client
// to refetch state. Dropping individual events instead could lose a
// sync_finished and leave a client showing a sync that never ends.
//
// Connections are limited per client key (typically the remote address) and
// in total; see Limits.
package events

import (
	"errors"
	"sync"
)

// Event type names sent by the server.
const (
	Connected      = "connected"
	SyncStarted    = "sync_started"
	SyncFinished   = "sync_finished"
	SyncFailed     = "sync_failed"
	ViewUpdated    = "view_updated"
	BranchSwitched = "branch_switched"
)

// ContentType is the media type of an event stream.
const ContentType = "text/event-stream"

// Event is one message for the subscribers of a repository. Data is
// JSON-encoded into the event's data line.
type Event struct {
	Type string
	Data any
}

var (
	// ErrTooManyConnections is returned by Subscribe when the client's or
	// the server's connection limit is reached.
	ErrTooManyConnections = errors.New("events: too many connections")
	// ErrClosed is returned by Subscribe after Broker.Close.
	ErrClosed = errors.New("events: broker closed")
	// ErrSlowSubscriber is the reason a subscription was closed by the
	// broker because its buffer was full when an event was published.
	ErrSlowSubscriber = errors.New("events: subscriber too slow, closed")
)

// Default limits used for zero (or negative) Limits fields.
const (
	DefaultPerClient = 8
	DefaultTotal     = 256
	DefaultBuffer    = 64
)

// Limits bounds the broker's subscriptions. Zero fields take the defaults.
type Limits struct {
	// PerClient is the maximum number of open subscriptions per client key.
	PerClient int
	// Total is the maximum number of open subscriptions.
	Total int
	// Buffer is the number of events buffered per subscription before the
	// subscription is closed as too slow.
	Buffer int
}

func (l Limits) withDefaults() Limits {
	if l.PerClient <= 0 {
		l.PerClient = DefaultPerClient
	}
	if l.Total <= 0 {
		l.Total = DefaultTotal
	}
	if l.Buffer <= 0 {
		l.Buffer = DefaultBuffer
	}
	return l
}

// Broker fans events out to the subscribers of each repository. It is safe
// for concurrent use.
type Broker struct {
	limits Limits

	mu      sync.Mutex
	repos   map[string]map[*Subscription]struct{}
	clients map[string]int
	total   int
	closed  bool
}

// NewBroker returns a broker enforcing l.
func NewBroker(l Limits) *Broker {
	return &Broker{
		limits:  l.withDefaults(),
		repos:   make(map[string]map[*Subscription]struct{}),
		clients: make(map[string]int),
	}
}

// Subscription receives the events of one repository until closed.
type Subscription struct {
	b      *Broker
	repo   string
	client string
	ch     chan Event

	// Guarded by b.mu.
	closed bool
	reason error // nil for Close/Broker.Close, ErrSlowSubscriber on overflow
}

// Subscribe opens a subscription to repoID's events for the client with key
// client (an empty key is a key like any other). It returns an error wrapping
// ErrTooManyConnections when the client already holds Limits.PerClient
// subscriptions or the broker holds Limits.Total, and ErrClosed after Close.
// The caller must Close the subscription (Stream and StreamBody do).
func (b *Broker) Subscribe(repoID, client string) (*Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if b.total >= b.limits.Total {
		return nil, ErrTooManyConnections
	}
	if b.clients[client] >= b.limits.PerClient {
		return nil, ErrTooManyConnections
	}
	s := &Subscription{b: b, repo: repoID, client: client, ch: make(chan Event, b.limits.Buffer)}
	subs := b.repos[repoID]
	if subs == nil {
		subs = make(map[*Subscription]struct{})
		b.repos[repoID] = subs
	}
	subs[s] = struct{}{}
	b.clients[client]++
	b.total++
	return s, nil
}

// Publish delivers ev to every current subscriber of repoID without
// blocking. A subscriber whose buffer is full is closed with
// ErrSlowSubscriber (see the package documentation).
func (b *Broker) Publish(repoID string, ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.repos[repoID] {
		select {
		case s.ch <- ev:
		default:
			b.closeLocked(s, ErrSlowSubscriber)
		}
	}
}

// Subscribers returns the number of open subscriptions.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// Close closes every subscription, ending their streams, and makes further
// Subscribe calls fail with ErrClosed. Call it on shutdown: open event
// streams otherwise keep http.Server.Shutdown waiting.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, subs := range b.repos {
		for s := range subs {
			b.closeLocked(s, nil)
		}
	}
}

// closeLocked removes s and closes its channel; b.mu must be held. Sends to
// s.ch also happen under b.mu, so a send never races with the close.
func (b *Broker) closeLocked(s *Subscription, reason error) {
	if s.closed {
		return
	}
	s.closed = true
	s.reason = reason
	close(s.ch)
	subs := b.repos[s.repo]
	delete(subs, s)
	if len(subs) == 0 {
		delete(b.repos, s.repo)
	}
	if b.clients[s.client]--; b.clients[s.client] <= 0 {
		delete(b.clients, s.client)
	}
	b.total--
}

// Events returns the channel of the subscription's events. It is closed when
// the subscription is closed, after any events still buffered.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Close ends the subscription and frees its connection slot. It is
// idempotent and safe to call concurrently with Publish.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.closeLocked(s, nil)
}

// Err returns ErrSlowSubscriber if the broker closed the subscription
// because it fell behind, and nil otherwise.
func (s *Subscription) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.reason
}
