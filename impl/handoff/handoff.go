// Package handoff lets a handler hand its response over to other code and
// return before the response ends (an event stream whose connection is
// taken over, http.Hijacker): the middleware that records the request
// (the access log, the HTTP metrics and their in-flight gauge) then
// records it when the response really ends, not when the handler returns.
//
// The recording middleware puts a Tracker in the request's context (New)
// and, once the handler has returned, calls Returned with what records
// the request. A handler that hands its response over calls Take first and
// the function Take returns when the response has ended. Whichever of the
// two comes last runs the record, exactly once.
package handoff

import (
	"context"
	"sync"
)

// Tracker is one request's rendezvous between the recording middleware
// and a handler that hands its response over.
type Tracker struct {
	mu     sync.Mutex
	taken  bool              // Take was called
	ended  bool              // the handed-over response ended
	extra  int64             // bytes written after the hand-over
	record func(extra int64) // set by Returned when the response had not ended
}

type trackerKey struct{}

// New returns ctx with a new Tracker, and the Tracker.
func New(ctx context.Context) (context.Context, *Tracker) {
	t := &Tracker{}
	return context.WithValue(ctx, trackerKey{}, t), t
}

// From returns the Tracker of ctx (nil when no middleware put one there).
func From(ctx context.Context) *Tracker {
	t, _ := ctx.Value(trackerKey{}).(*Tracker)
	return t
}

// Take marks the response as handed over and returns the function to call
// (once) when it ends, with the bytes written after the hand-over. On a
// nil Tracker (no recording middleware) it returns a function that does
// nothing.
func (t *Tracker) Take() (ended func(extra int64)) {
	if t == nil {
		return func(int64) {}
	}
	t.mu.Lock()
	t.taken = true
	t.mu.Unlock()
	return t.end
}

func (t *Tracker) end(extra int64) {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.ended, t.extra = true, extra
	record := t.record
	t.record = nil
	t.mu.Unlock()
	if record != nil {
		record(extra)
	}
}

// Returned is called by the middleware after the handler returned. When
// the handler did not hand its response over it returns false and the
// middleware records the request itself. Otherwise it returns true and
// record runs once the response has ended: now when it already has, else
// from the function Take returned. record must not hold on to the request
// (a handed-over stream may stay open for hours): it should capture the
// few values it logs.
func (t *Tracker) Returned(record func(extra int64)) bool {
	t.mu.Lock()
	if !t.taken {
		t.mu.Unlock()
		return false
	}
	if !t.ended {
		t.record = record
		t.mu.Unlock()
		return true
	}
	extra := t.extra
	t.mu.Unlock()
	record(extra)
	return true
}
