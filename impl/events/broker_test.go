package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recvNow returns the next buffered event of s without blocking.
func recvNow(t *testing.T, s *Subscription) (Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		return ev, ok
	default:
		t.Fatal("no event buffered")
		return Event{}, false
	}
}

func assertEmpty(t *testing.T, s *Subscription) {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		t.Fatalf("unexpected receive %+v (open=%v)", ev, ok)
	default:
	}
}

// testBroker is a broker whose ids start at 1.
func testBroker(l Limits) *Broker { return newBroker(l, 0) }

// dataOf is the encoded data of a received event.
func dataOf(ev Event) string {
	e, _ := ev.Data.(encoded)
	return string(e)
}

func mustSubscribe(t *testing.T, b *Broker, repo, client string) *Subscription {
	t.Helper()
	s, err := b.Subscribe(repo, client)
	if err != nil {
		t.Fatalf("Subscribe(%q, %q): %v", repo, client, err)
	}
	return s
}

func TestPublishFanOutPerRepo(t *testing.T) {
	b := testBroker(Limits{})
	a1 := mustSubscribe(t, b, "a", "c1")
	a2 := mustSubscribe(t, b, "a", "c2")
	bb := mustSubscribe(t, b, "b", "c1")

	b.Publish("a", Event{Type: SyncStarted, Data: 1})
	b.Publish("b", Event{Type: ViewUpdated, Data: 2})
	b.Publish("nobody", Event{Type: SyncFailed})

	for _, s := range []*Subscription{a1, a2} {
		if ev, _ := recvNow(t, s); ev.Type != SyncStarted || dataOf(ev) != "1" || ev.ID != 1 {
			t.Fatalf("repo a got %+v", ev)
		}
		assertEmpty(t, s)
	}
	if ev, _ := recvNow(t, bb); ev.Type != ViewUpdated || dataOf(ev) != "2" || ev.ID != 2 {
		t.Fatalf("repo b got %+v", ev)
	}
	assertEmpty(t, bb)

	a1.Close()
	b.Publish("a", Event{Type: SyncFinished})
	if _, ok := recvNow(t, a1); ok {
		t.Fatal("closed subscription still open")
	}
	if ev, _ := recvNow(t, a2); ev.Type != SyncFinished {
		t.Fatalf("a2 got %+v", ev)
	}
}

func TestLimits(t *testing.T) {
	type step struct {
		op      string // "sub" or "close"
		client  string
		idx     int // index into opened subscriptions, for "close"
		wantErr error
	}
	tests := []struct {
		name   string
		limits Limits
		steps  []step
		open   int
	}{
		{
			name:   "per client",
			limits: Limits{PerClient: 2, Total: 10},
			steps: []step{
				{op: "sub", client: "x"}, {op: "sub", client: "x"},
				{op: "sub", client: "x", wantErr: ErrTooManyConnections},
				{op: "sub", client: "y"},
				{op: "close", idx: 0},
				{op: "close", idx: 0}, // idempotent: frees one slot only
				{op: "sub", client: "x"},
				{op: "sub", client: "x", wantErr: ErrTooManyConnections},
			},
			open: 3,
		},
		{
			name:   "total",
			limits: Limits{PerClient: 5, Total: 3},
			steps: []step{
				{op: "sub", client: "x"}, {op: "sub", client: "y"}, {op: "sub", client: "z"},
				{op: "sub", client: "w", wantErr: ErrTooManyConnections},
				{op: "close", idx: 1},
				{op: "sub", client: "w"},
				{op: "sub", client: "x", wantErr: ErrTooManyConnections},
			},
			open: 3,
		},
		{
			name:   "defaults",
			limits: Limits{},
			steps: append(repeat(step{op: "sub", client: "x"}, DefaultPerClient),
				step{op: "sub", client: "x", wantErr: ErrTooManyConnections}),
			open: DefaultPerClient,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBroker(tt.limits)
			var opened []*Subscription
			for i, st := range tt.steps {
				switch st.op {
				case "sub":
					s, err := b.Subscribe("r", st.client)
					if !errors.Is(err, st.wantErr) || (err == nil) != (st.wantErr == nil) {
						t.Fatalf("step %d: Subscribe = %v, want %v", i, err, st.wantErr)
					}
					if s != nil {
						opened = append(opened, s)
					}
				case "close":
					opened[st.idx].Close()
				}
			}
			if n := b.Subscribers(); n != tt.open {
				t.Fatalf("Subscribers = %d, want %d", n, tt.open)
			}
		})
	}
}

func repeat[T any](v T, n int) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestDefaultTotal(t *testing.T) {
	b := testBroker(Limits{})
	for i := range DefaultTotal {
		mustSubscribe(t, b, "r", fmt.Sprint(i))
	}
	if _, err := b.Subscribe("r", "one-more"); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("Subscribe past total = %v", err)
	}
}

// TestSlowSubscriberDoesNotBlockPublish fills a subscriber that never reads:
// Publish must keep returning, the slow subscription must be closed with its
// buffered (oldest) events intact and its slot freed, and a subscriber that
// keeps up must get everything.
func TestSlowSubscriberDoesNotBlockPublish(t *testing.T) {
	const buffer, total = 4, 50
	b := testBroker(Limits{Buffer: buffer, PerClient: 2, Total: 2})
	slow := mustSubscribe(t, b, "r", "c")
	fast := mustSubscribe(t, b, "r", "c")

	got := make(chan int, total)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			b.Publish("r", Event{Type: ViewUpdated, Data: i})
			got <- int((<-fast.Events()).ID) - 1 // keep up: drain what was just sent
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // safety net only; never expected
		t.Fatal("Publish blocked on a slow subscriber")
	}
	close(got)
	want := 0
	for i := range got {
		if i != want {
			t.Fatalf("fast subscriber got %d, want %d", i, want)
		}
		want++
	}
	if want != total {
		t.Fatalf("fast subscriber got %d events, want %d", want, total)
	}

	for i := range buffer {
		ev, ok := <-slow.Events()
		if !ok || dataOf(ev) != fmt.Sprint(i) {
			t.Fatalf("slow event %d = %+v, %v", i, ev, ok)
		}
	}
	if _, ok := <-slow.Events(); ok {
		t.Fatal("slow subscription not closed on overflow")
	}
	if err := slow.Err(); !errors.Is(err, ErrSlowSubscriber) {
		t.Fatalf("slow.Err() = %v", err)
	}
	if fast.Err() != nil {
		t.Fatalf("fast.Err() = %v", fast.Err())
	}
	// The slot of the slow subscriber is free again.
	mustSubscribe(t, b, "r", "c")
	slow.Close() // idempotent after an overflow close
	if n := b.Subscribers(); n != 2 {
		t.Fatalf("Subscribers = %d, want 2", n)
	}
}

// TestConcurrentPublishSubscribeClose is for the race detector.
func TestConcurrentPublishSubscribeClose(t *testing.T) {
	b := testBroker(Limits{Buffer: 2, PerClient: 100, Total: 100})
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			<-start
			for i := range 100 {
				b.Publish("r", Event{Type: ViewUpdated, Data: i})
			}
		})
		wg.Go(func() {
			<-start
			for range 50 {
				s, err := b.Subscribe("r", fmt.Sprint(w))
				if err != nil {
					t.Error(err)
					return
				}
				select {
				case <-s.Events():
				default:
				}
				s.Close()
			}
		})
	}
	close(start)
	wg.Wait()
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("Subscribers = %d after all closed", n)
	}
}

func TestBrokerClose(t *testing.T) {
	b := testBroker(Limits{})
	s := mustSubscribe(t, b, "r", "c")
	b.Publish("r", Event{Type: SyncStarted})
	b.Close()
	if ev, ok := <-s.Events(); !ok || ev.Type != SyncStarted {
		t.Fatalf("buffered event lost on Close: %+v %v", ev, ok)
	}
	if _, ok := <-s.Events(); ok {
		t.Fatal("subscription open after Broker.Close")
	}
	if s.Err() != nil {
		t.Fatalf("Err = %v, want nil", s.Err())
	}
	if _, err := b.Subscribe("r", "c"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close = %v", err)
	}
	b.Publish("r", Event{Type: SyncFinished}) // no panic, no-op
	s.Close()
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("Subscribers = %d", n)
	}
}

// TestEnd: End delivers its event to every subscriber of the repository
// as the last one, then closes their subscriptions (nil reason), frees
// their connection slots and leaves other repositories alone; the
// repository's buffer starts afresh: a later repository of the same id
// replays nothing of the ended one, and an id from before End is told to
// resync.
func TestEnd(t *testing.T) {
	b := testBroker(Limits{PerClient: 2, Total: 3})
	s1 := mustSubscribe(t, b, "gone", "c1")
	s2 := mustSubscribe(t, b, "gone", "c1")
	other := mustSubscribe(t, b, "kept", "c2")
	if err := b.Publish("gone", Event{Type: ViewUpdated, Data: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.End("gone", Event{Type: RepoRemoved, Data: map[string]string{"id": "gone"}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Subscription{s1, s2} {
		if ev, ok := recvNow(t, s); !ok || ev.Type != ViewUpdated || ev.ID != 1 {
			t.Fatalf("first event = %+v, %v", ev, ok)
		}
		if ev, ok := recvNow(t, s); !ok || ev.Type != RepoRemoved || ev.ID != 2 || dataOf(ev) != `{"id":"gone"}` {
			t.Fatalf("last event = %+v, %v", ev, ok)
		}
		if _, ok := recvNow(t, s); ok {
			t.Fatal("the subscription is still open after End")
		}
		if s.Err() != nil {
			t.Fatalf("reason = %v, want nil", s.Err())
		}
	}
	assertEmpty(t, other)
	if n := b.Subscribers(); n != 1 {
		t.Fatalf("subscribers after End = %d, want 1", n)
	}
	// c1's slots are free again.
	mustSubscribe(t, b, "gone", "c1").Close()

	fresh, err := b.Resume("gone", "c3", "2") // the id of the last event
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if fresh.NeedsResync() || len(fresh.Replay()) != 0 {
		t.Fatalf("resume at End's id: resync %v, replay %+v", fresh.NeedsResync(), fresh.Replay())
	}
	early, err := b.Resume("gone", "c3", "1")
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if !early.NeedsResync() {
		t.Fatal("resume at an id from before End: no resync")
	}
	if err := b.End("gone", Event{Type: ""}); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("End with a bad event: %v", err)
	}
}

// TestKeepalive: Keepalive reaches every subscription of every repository
// as an event without a type, skips (never closes) one whose buffer is
// full, and KeepaliveEvery calls it on each tick until its context ends.
func TestKeepalive(t *testing.T) {
	b := testBroker(Limits{Buffer: 1})
	a := mustSubscribe(t, b, "r1", "a")
	c := mustSubscribe(t, b, "r2", "c")
	full := mustSubscribe(t, b, "r3", "full")
	if err := b.Publish("r3", Event{Type: ViewUpdated, Data: 1}); err != nil {
		t.Fatal(err)
	}
	b.Keepalive()
	for _, s := range []*Subscription{a, c} {
		if ev, ok := recvNow(t, s); !ok || ev.Type != "" || ev.ID != 0 {
			t.Fatalf("keepalive = %+v, %v", ev, ok)
		}
	}
	if ev, ok := recvNow(t, full); !ok || ev.Type != ViewUpdated {
		t.Fatalf("full subscription's event = %+v, %v", ev, ok)
	}
	assertEmpty(t, full)
	if full.Err() != nil || b.Subscribers() != 3 {
		t.Fatalf("a full subscription was closed by a keepalive: %v, %d open", full.Err(), b.Subscribers())
	}
	if err := b.Publish("r1", Event{}); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("Publish of an event without a type = %v", err)
	}

	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.KeepaliveEvery(ctx, tick); close(done) }()
	tick <- time.Time{}
	if ev := <-a.Events(); ev.Type != "" {
		t.Fatalf("ticked keepalive = %+v", ev)
	}
	cancel()
	<-done
}
