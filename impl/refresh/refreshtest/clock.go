// Package refreshtest holds test helpers for code that drives refresh
// timers: a clock the test moves by hand.
package refreshtest

import (
	"sync"
	"time"
)

// Clock is a refresh.Clock the test moves by hand. Each After is reported
// on Armed (buffered), so a test knows when a timer exists.
type Clock struct {
	// Armed receives the duration of every timer After makes.
	Armed chan time.Duration

	mu     sync.Mutex
	now    time.Time
	timers []timer
}

type timer struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a clock at 2026-01-01 00:00 UTC.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Armed: make(chan time.Duration, 1000)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives once the clock has been advanced
// by d.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, timer{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	c.Armed <- d
	return ch
}

// Advance moves the clock and fires the timers that are due; it returns
// how many fired.
func (c *Clock) Advance(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	n := 0
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			kept = append(kept, tm)
			continue
		}
		tm.ch <- c.now
		n++
	}
	c.timers = kept
	return n
}
