// Package events is stackd's server-sent events (SSE) broker: refreshers
// publish per-repository events (sync started/finished/failed, view updated,
// branch switched) and API clients follow them over text/event-stream.
//
// Every published event gets an id from one broker-wide sequence, monotonic
// for the broker's (the server's) lifetime. The sequence starts at the
// broker's creation time in microseconds, so the ids of an earlier run of
// the server are smaller than every id of this one (as long as the clock
// does not step back across a restart). Each repository keeps its latest
// events in a bounded buffer (Limits.Replay events and Limits.ReplayBytes of
// encoded data). A client that reconnects with the id of the last event it
// saw (Last-Event-ID) gets what it missed from that buffer (Resume); when
// the events after that id are no longer all buffered, or the id is not one
// this broker could have issued, it is told to reload instead (a resync
// event).
//
// Publish never blocks. Each subscription has a bounded channel; a
// subscriber that falls so far behind that its channel is full when the
// next event arrives is closed (not silently thinned): its stream ends, the
// browser's EventSource reconnects with Last-Event-ID, and the buffer
// replays what it missed (or tells it to resync). Dropping individual events
// instead could lose a sync_finished and leave a client showing a sync that
// never ends.
//
// Connections are limited per client key (the signed-in principal, else the
// address) and in total; see Limits.
//
// An idle stream costs little: its subscription (a channel of Limits.Buffer
// events) and its connection. Keepalives come from the broker (Keepalive,
// driven by one ticker for the whole server), not a timer per stream. A
// stream is written by a Hub off its request's goroutine (Hub.Serve: the
// connection is taken over after the headers; hub.go), or where that
// cannot be by the request's own goroutine (Stream, or StreamBody's
// WriteTo).
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event type names sent by the server.
const (
	Connected      = "connected"
	Resync         = "resync"
	SyncStarted    = "sync_started"
	SyncFinished   = "sync_finished"
	SyncFailed     = "sync_failed"
	ViewUpdated    = "view_updated"
	BranchSwitched = "branch_switched"
	RepoRemoved    = "repo_removed"
)

// ContentType is the media type of an event stream.
const ContentType = "text/event-stream"

// Event is one message for the subscribers of a repository. Data is
// JSON-encoded into the event's data line; Publish encodes it once, and the
// events a subscription receives carry that encoding (a value whose
// MarshalJSON returns it). ID is set by Publish (any value given is
// ignored).
type Event struct {
	ID   uint64
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
	// ErrBadEvent reports an event that cannot be framed: an empty type, a
	// type containing a line break, or data that does not encode as JSON.
	ErrBadEvent = errors.New("events: bad event")
)

// Default limits used for zero (or negative) Limits fields.
const (
	DefaultPerClient   = 64
	DefaultTotal       = 20000
	DefaultBuffer      = 16
	DefaultReplay      = 256
	DefaultReplayBytes = 1 << 20
)

// Limits bounds the broker's subscriptions and replay buffers. Zero fields
// take the defaults.
type Limits struct {
	// PerClient is the maximum number of open subscriptions per client key.
	PerClient int
	// Total is the maximum number of open subscriptions.
	Total int
	// Buffer is the number of events buffered per subscription before the
	// subscription is closed as too slow. A sync publishes three or four
	// events; a client closed as too slow reconnects and is replayed what
	// it missed, so a small buffer loses nothing.
	Buffer int
	// Replay is the number of a repository's latest events kept for
	// clients that reconnect (Resume).
	Replay int
	// ReplayBytes bounds the encoded data of the events kept per
	// repository; the oldest go first (the latest event is always kept).
	ReplayBytes int
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
	if l.Replay <= 0 {
		l.Replay = DefaultReplay
	}
	if l.ReplayBytes <= 0 {
		l.ReplayBytes = DefaultReplayBytes
	}
	return l
}

// Broker fans events out to the subscribers of each repository and keeps
// each repository's latest events for replay. It is safe for concurrent use.
type Broker struct {
	limits Limits

	start uint64 // ids issued by this broker are above it

	mu      sync.Mutex
	seq     uint64 // the last id issued (start before the first)
	repos   map[string]*repoState
	clients map[string]int
	total   int
	closed  bool
}

// repoState is one repository's subscribers and replay buffer.
type repoState struct {
	subs map[*Subscription]struct{}
	// ring holds the latest events, oldest first; every event of the
	// repository with an id above floor is in it.
	ring  []Event
	bytes int
	floor uint64
}

// NewBroker returns a broker enforcing l. Its ids start above the current
// time in microseconds.
func NewBroker(l Limits) *Broker {
	return newBroker(l, uint64(time.Now().UnixMicro()))
}

func newBroker(l Limits, start uint64) *Broker {
	return &Broker{
		limits:  l.withDefaults(),
		start:   start,
		seq:     start,
		repos:   make(map[string]*repoState),
		clients: make(map[string]int),
	}
}

// Subscription receives the events of one repository until closed.
type Subscription struct {
	b      *Broker
	repo   string
	client string
	ch     chan Event

	// Set at subscription, read only by the streamer.
	position uint64  // the stream's position: every event after it is delivered
	replay   []Event // buffered events after the client's last id, sent first
	resync   bool    // the client's last id could not be honoured: reload

	// Guarded by b.mu.
	closed bool
	reason error  // nil for Close/Broker.Close, ErrSlowSubscriber on overflow
	notify func() // set by Hub.Adopt: called after each send to ch and its close
}

func (b *Broker) state(repoID string) *repoState {
	st := b.repos[repoID]
	if st == nil {
		// No event of repoID was published before: all of them (none)
		// are buffered.
		st = &repoState{subs: make(map[*Subscription]struct{}), floor: b.start}
		b.repos[repoID] = st
	}
	return st
}

// Subscribe opens a subscription to repoID's events for the client with key
// client (an empty key is a key like any other), starting with the next
// event published. It returns an error wrapping ErrTooManyConnections when
// the client already holds Limits.PerClient subscriptions or the broker
// holds Limits.Total, and ErrClosed after Close. The caller must Close the
// subscription (Stream and StreamBody do).
func (b *Broker) Subscribe(repoID, client string) (*Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.subscribeLocked(repoID, client)
	if err != nil {
		return nil, err
	}
	s.position = b.seq
	return s, nil
}

// Resume is Subscribe for a client that reconnects: lastID is the id of the
// last event it received (the Last-Event-ID header; "" for none, which is
// plain Subscribe). When every event of repoID published after lastID is
// still buffered, the stream replays them before the live events and its
// position is lastID. Otherwise (an id that does not parse, that this
// broker has not issued, or whose successors were dropped from the buffer)
// the stream starts live and tells the client to resync.
func (b *Broker) Resume(repoID, client, lastID string) (*Subscription, error) {
	if strings.TrimSpace(lastID) == "" {
		return b.Subscribe(repoID, client)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.subscribeLocked(repoID, client)
	if err != nil {
		return nil, err
	}
	s.position = b.seq
	last, perr := strconv.ParseUint(strings.TrimSpace(lastID), 10, 64)
	st := b.repos[repoID]
	switch {
	case perr != nil, last > b.seq, last < st.floor:
		s.resync = true
	default:
		s.position = last
		for i, ev := range st.ring {
			if ev.ID > last {
				s.replay = append([]Event(nil), st.ring[i:]...)
				break
			}
		}
	}
	return s, nil
}

func (b *Broker) subscribeLocked(repoID, client string) (*Subscription, error) {
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
	b.state(repoID).subs[s] = struct{}{}
	b.clients[client]++
	b.total++
	return s, nil
}

// Publisher publishes a repository's events: the Broker, or a wrapper of
// it (package replica relays the events of syncs to the other replicas).
type Publisher interface {
	Publish(repoID string, ev Event) error
}

var _ Publisher = (*Broker)(nil)

// Publish encodes ev once, gives it the next id, keeps it in repoID's
// replay buffer and delivers it to every current subscriber of repoID
// without blocking. A subscriber whose channel is full is closed with
// ErrSlowSubscriber (see the package documentation). An event that cannot
// be framed is refused with an error wrapping ErrBadEvent: nothing is
// delivered and no id is used.
func (b *Broker) Publish(repoID string, ev Event) error {
	ev, err := prepare(ev)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publishLocked(repoID, ev)
	return nil
}

// End publishes ev (encoded as by Publish) as the last event of repoID's
// streams, then closes every subscription of repoID: each stream ends
// after delivering it. The repository's replay buffer starts afresh, so
// that a repository of the same id served later replays none of the
// ended one's events (a client that resumes with an earlier id is told
// to resync).
func (b *Broker) End(repoID string, ev Event) error {
	ev, err := prepare(ev)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publishLocked(repoID, ev)
	st := b.repos[repoID]
	for s := range st.subs {
		b.closeLocked(s, nil)
	}
	b.repos[repoID] = &repoState{subs: make(map[*Subscription]struct{}), floor: b.seq}
	return nil
}

// publishLocked gives ev (its data encoded) the next id, buffers it and
// delivers it; b.mu must be held.
func (b *Broker) publishLocked(repoID string, ev Event) {
	b.seq++
	ev.ID = b.seq
	st := b.state(repoID)
	st.ring = append(st.ring, ev)
	st.bytes += len(ev.Data.(encoded))
	for len(st.ring) > 1 && (len(st.ring) > b.limits.Replay || st.bytes > b.limits.ReplayBytes) {
		old := st.ring[0]
		st.ring[0] = Event{}
		st.ring = st.ring[1:]
		st.bytes -= len(old.Data.(encoded))
		st.floor = old.ID
	}
	for s := range st.subs {
		select {
		case s.ch <- ev:
			if s.notify != nil {
				s.notify()
			}
		default:
			b.closeLocked(s, ErrSlowSubscriber)
		}
	}
}

// Keepalive asks every open stream to write a keepalive comment. It never
// blocks: a subscription whose buffer is full has events to write anyway
// and is skipped (never closed for it). One ticker calls it for the whole
// server (KeepaliveEvery), instead of a timer per stream.
func (b *Broker) Keepalive() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, st := range b.repos {
		for s := range st.subs {
			select {
			case s.ch <- Event{}: // no type: the keepalive (Publish refuses it)
				if s.notify != nil {
					s.notify()
				}
			default:
			}
		}
	}
}

// KeepaliveEvery calls Keepalive on every receive from tick until ctx
// ends (production: a time.Ticker of 25 s).
func (b *Broker) KeepaliveEvery(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			b.Keepalive()
		}
	}
}

// prepare checks ev's type and encodes its data.
func prepare(ev Event) (Event, error) {
	if ev.Type == "" || strings.ContainsAny(ev.Type, "\r\n") {
		return ev, fmt.Errorf("%w: type %q", ErrBadEvent, ev.Type)
	}
	data, err := encode(ev.Data)
	if err != nil {
		return ev, fmt.Errorf("%w: %s data: %w", ErrBadEvent, ev.Type, err)
	}
	ev.Data = data
	return ev, nil
}

// encoded is event data as Publish encoded it: one line of JSON.
type encoded []byte

// MarshalJSON returns the encoding itself.
func (e encoded) MarshalJSON() ([]byte, error) { return e, nil }

// encode returns data as one line of JSON: what Publish encoded as it is,
// anything else through json.Marshal (which never emits raw line breaks;
// a json.RawMessage is checked and compacted by it).
func encode(data any) (encoded, error) {
	if e, ok := data.(encoded); ok {
		return e, nil
	}
	b, err := json.Marshal(data)
	return encoded(b), err
}

// LastID returns the id of the latest event published (the start value
// before the first).
func (b *Broker) LastID() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
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
	for _, st := range b.repos {
		for s := range st.subs {
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
	if s.notify != nil {
		s.notify()
	}
	if st := b.repos[s.repo]; st != nil {
		delete(st.subs, s)
	}
	if b.clients[s.client]--; b.clients[s.client] <= 0 {
		delete(b.clients, s.client)
	}
	b.total--
}

// onReady makes f be called (under b.mu, so f must not block nor call
// into the broker) after every event sent to s's channel and after its
// close, and calls it once now for what the channel holds already.
func (s *Subscription) onReady(f func()) {
	s.b.mu.Lock()
	s.notify = f
	s.replay = nil // written by now
	s.b.mu.Unlock()
	f()
}

// Events returns the channel of the subscription's live events. It is
// closed when the subscription is closed, after any events still buffered.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Position is the id the stream starts after: the client's last id when
// Resume replays, else the latest id at subscription.
func (s *Subscription) Position() uint64 { return s.position }

// Replay returns the buffered events Resume found after the client's last
// id, oldest first (they precede every event of Events).
func (s *Subscription) Replay() []Event { return s.replay }

// NeedsResync reports whether Resume could not honour the client's last id.
func (s *Subscription) NeedsResync() bool { return s.resync }

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
