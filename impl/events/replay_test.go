package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
)

func TestPublishRefusesBadEvents(t *testing.T) {
	b := testBroker(Limits{})
	sub := mustSubscribe(t, b, "r", "c")
	for _, ev := range []Event{
		{},
		{Type: "x\ndata: injected"},
		{Type: "x\rdata: injected"},
		{Type: ViewUpdated, Data: make(chan int)},
	} {
		if err := b.Publish("r", ev); !errors.Is(err, ErrBadEvent) {
			t.Fatalf("Publish(%+v) = %v, want ErrBadEvent", ev, err)
		}
	}
	assertEmpty(t, sub)
	if id := b.LastID(); id != 0 {
		t.Fatalf("refused events used ids: LastID = %d", id)
	}
	if err := b.Publish("r", Event{Type: ViewUpdated, Data: map[string]string{"a": "line\nbreak"}}); err != nil {
		t.Fatal(err)
	}
	if ev, _ := recvNow(t, sub); ev.ID != 1 || dataOf(ev) != `{"a":"line\nbreak"}` {
		t.Fatalf("got %+v %s", ev, dataOf(ev))
	}
}

// TestIDsAreBrokerWide: one sequence for every repository, starting above
// the broker's start value; NewBroker starts at the clock.
func TestIDsAreBrokerWide(t *testing.T) {
	b := newBroker(Limits{}, 1000)
	a := mustSubscribe(t, b, "a", "c")
	z := mustSubscribe(t, b, "z", "c")
	if a.Position() != 1000 {
		t.Fatalf("position = %d", a.Position())
	}
	for i := range 3 {
		mustPublish(t, b, "a", Event{Type: SyncStarted, Data: i})
		mustPublish(t, b, "z", Event{Type: SyncStarted, Data: i})
	}
	var ids []uint64
	for range 3 {
		ea, _ := recvNow(t, a)
		ez, _ := recvNow(t, z)
		ids = append(ids, ea.ID, ez.ID)
	}
	for i, id := range ids {
		if id != uint64(1001+i) {
			t.Fatalf("ids = %v, want 1001..1006 in publication order", ids)
		}
	}
	if p := NewBroker(Limits{}).LastID(); p < 1_700_000_000_000_000 {
		t.Fatalf("NewBroker starts at %d, want the clock in microseconds", p)
	}
}

func mustPublish(t *testing.T, b *Broker, repo string, ev Event) {
	t.Helper()
	if err := b.Publish(repo, ev); err != nil {
		t.Fatal(err)
	}
}

func TestResume(t *testing.T) {
	const start = 100
	// setup publishes r:1..4 and other:1 interleaved: ids 101 r1, 102 r2,
	// 103 other, 104 r3, 105 r4.
	setup := func(l Limits) *Broker {
		b := newBroker(l, start)
		mustPublish(t, b, "r", Event{Type: ViewUpdated, Data: 1})
		mustPublish(t, b, "r", Event{Type: ViewUpdated, Data: 2})
		mustPublish(t, b, "other", Event{Type: ViewUpdated, Data: "x"})
		mustPublish(t, b, "r", Event{Type: ViewUpdated, Data: 3})
		mustPublish(t, b, "r", Event{Type: ViewUpdated, Data: 4})
		return b
	}
	tests := []struct {
		name     string
		limits   Limits
		repo     string
		last     string
		position uint64
		replay   []uint64
		resync   bool
	}{
		{name: "no last id: live only", repo: "r", last: "", position: 105},
		{name: "missed two", repo: "r", last: "102", position: 102, replay: []uint64{104, 105}},
		{name: "last id of another repository", repo: "r", last: "103", position: 103, replay: []uint64{104, 105}},
		{name: "missed nothing", repo: "r", last: "105", position: 105},
		{name: "everything since start", repo: "r", last: "100", position: 100, replay: []uint64{101, 102, 104, 105}},
		{name: "spaces around", repo: "r", last: " 104 ", position: 104, replay: []uint64{105}},
		{name: "repository without events", repo: "quiet", last: "101", position: 101},
		{name: "earlier server run", repo: "r", last: "99", position: 105, resync: true},
		{name: "never issued", repo: "r", last: "106", position: 105, resync: true},
		{name: "not a number", repo: "r", last: "abc", position: 105, resync: true},
		{name: "negative", repo: "r", last: "-1", position: 105, resync: true},
		{name: "evicted by count", limits: Limits{Replay: 2}, repo: "r", last: "101", position: 105, resync: true},
		{name: "evicted event was the last seen", limits: Limits{Replay: 2}, repo: "r", last: "102", position: 102, replay: []uint64{104, 105}},
		{name: "kept by count", limits: Limits{Replay: 2}, repo: "r", last: "103", position: 103, replay: []uint64{104, 105}},
		// Each datum is one byte: 3 bytes keep the latest three.
		{name: "evicted by bytes", limits: Limits{ReplayBytes: 3}, repo: "r", last: "100", position: 105, resync: true},
		{name: "kept by bytes", limits: Limits{ReplayBytes: 3}, repo: "r", last: "101", position: 101, replay: []uint64{102, 104, 105}},
		{name: "the latest event is always kept", limits: Limits{ReplayBytes: 1, Replay: 1}, repo: "r", last: "104", position: 104, replay: []uint64{105}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(tt.limits)
			s, err := b.Resume(tt.repo, "c", tt.last)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []uint64
			for _, ev := range s.Replay() {
				got = append(got, ev.ID)
			}
			if s.Position() != tt.position || s.NeedsResync() != tt.resync || fmt.Sprint(got) != fmt.Sprint(tt.replay) {
				t.Fatalf("position %d, resync %v, replay %v; want %d, %v, %v", s.Position(), s.NeedsResync(), got, tt.position, tt.resync, tt.replay)
			}
			// What follows the replay is live.
			mustPublish(t, b, tt.repo, Event{Type: SyncStarted})
			if ev, _ := recvNow(t, s); ev.ID != 106 {
				t.Fatalf("live event id %d", ev.ID)
			}
		})
	}
}

// TestResumeAfterSlowClose: a subscriber closed for falling behind resumes
// from the last event it wrote and gets every later one, in order, once.
func TestResumeAfterSlowClose(t *testing.T) {
	b := testBroker(Limits{Buffer: 2})
	sub := mustSubscribe(t, b, "r", "c")
	for i := range 5 {
		mustPublish(t, b, "r", Event{Type: ViewUpdated, Data: i})
	}
	// The client wrote events 1 and 2 (its channel's capacity), then the
	// broker closed it.
	var last uint64
	for ev := range sub.Events() {
		last = ev.ID
	}
	if !errors.Is(sub.Err(), ErrSlowSubscriber) || last != 2 {
		t.Fatalf("slow close: %v, last id %d", sub.Err(), last)
	}
	again, err := b.Resume("r", "c", strconv.FormatUint(last, 10))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	br, done := pipeStream(ctx, again)
	expectMessage(t, br, "id: 2\nevent: connected\ndata: {\"repoID\":\"r1\"}\n\n")
	for id := 3; id <= 5; id++ {
		expectMessage(t, br, fmt.Sprintf("id: %d\nevent: view_updated\ndata: %d\n\n", id, id-1))
	}
	mustPublish(t, b, "r", Event{Type: ViewUpdated, Data: 5})
	expectMessage(t, br, "id: 6\nevent: view_updated\ndata: 5\n\n")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStreamResync: an id that cannot be honoured gets connected, then
// resync, both at the stream's position, then live events.
func TestStreamResync(t *testing.T) {
	b := newBroker(Limits{Replay: 1}, 10)
	mustPublish(t, b, "r", Event{Type: ViewUpdated, Data: 1})
	mustPublish(t, b, "r", Event{Type: ViewUpdated, Data: 2})
	sub, err := b.Resume("r", "c", "10") // id 11 was evicted
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	br, done := pipeStream(ctx, sub)
	expectMessage(t, br, "id: 12\nevent: connected\ndata: {\"repoID\":\"r1\"}\n\n")
	expectMessage(t, br, "id: 12\nevent: resync\ndata: {\"repoID\":\"r1\"}\n\n")
	mustPublish(t, b, "r", Event{Type: SyncStarted, Data: "s"})
	expectMessage(t, br, "id: 13\nevent: sync_started\ndata: \"s\"\n\n")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
