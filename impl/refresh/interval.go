package refresh

import (
	"math/rand/v2"
	"time"
)

// Schedule times the interval runs of every mirror (Scheduler).
type Schedule struct {
	// Interval between runs; the loop does nothing when it is 0.
	Interval time.Duration
	// MaxBackoff caps the delay after consecutive failures. Default: 16
	// intervals, but at most an hour (never less than Interval).
	MaxBackoff time.Duration
	// Jitter spreads runs by up to ±this fraction of the delay. Default 0.1.
	Jitter float64
	// After makes the timer (tests fire it by hand). Default time.After.
	After func(time.Duration) <-chan time.Time
	// Rand returns a float in [0,1) for the jitter. Default math/rand/v2.
	Rand func() float64
	// Tick groups the runs: the scheduler's timer fires on whole
	// multiples of Tick (from the Unix epoch), and every repository due
	// by then runs, each up to a Tick late. A process woken for each run
	// on its own spent more CPU on waking up (thread switches, the Go
	// runtime's monitor thread) than on listing its upstream; runs that
	// start together share those costs. A tick is a small part of the
	// interval, so the runs stay spread over it. Default: Interval/64, at
	// most DefaultMaxTick; negative: none (exact due times).
	Tick time.Duration
}

// DefaultMaxTick bounds the default Schedule.Tick.
const DefaultMaxTick = 2 * time.Second

// tickAfter is t rounded up to a whole multiple of Tick.
func (s Schedule) tickAfter(t time.Time) time.Time {
	if s.Tick <= 0 {
		return t
	}
	if r := time.Duration(t.UnixNano() % int64(s.Tick)); r > 0 {
		return t.Add(s.Tick - r)
	}
	return t
}

func (s *Schedule) defaults() {
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = min(16*s.Interval, time.Hour)
	}
	s.MaxBackoff = max(s.MaxBackoff, s.Interval)
	if s.Jitter == 0 {
		s.Jitter = 0.1
	}
	if s.After == nil {
		s.After = time.After
	}
	if s.Rand == nil {
		s.Rand = rand.Float64
	}
	if s.Tick == 0 {
		s.Tick = min(s.Interval/64, DefaultMaxTick)
	}
}

// Delay is the wait before the next run after the given number of
// consecutive failures: Interval doubled per failure, capped, with jitter.
func (s Schedule) Delay(failures int) time.Duration {
	s.defaults()
	d := s.Interval
	for i := 0; i < failures && d < s.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.MaxBackoff)
	j := 1 + s.Jitter*(2*s.Rand()-1)
	return time.Duration(float64(d) * j)
}

// Next is when a repository's next interval run is due after the run
// that was due at prev ended at end, with the given consecutive failures
// after it.
//
//   - Without failures the repository keeps its phase: prev + Delay(0)
//     (the interval with its jitter) when that is still ahead of end,
//     else the first prev + k×Interval after end. A run that started late
//     (no free slot) or ran long (it joined a start-up run) thus does not
//     move the repository's listings to where its run ended; runs of many
//     repositories that end together stay spread as their due times were.
//   - After failures the backoff is timed from the run's end, as ever:
//     end + Delay(failures).
func (s Schedule) Next(prev, end time.Time, failures int) time.Time {
	s.defaults()
	if failures > 0 || s.Interval <= 0 {
		return end.Add(s.Delay(failures))
	}
	if next := prev.Add(s.Delay(0)); next.After(end) {
		return next
	}
	k := end.Sub(prev)/s.Interval + 1
	return prev.Add(k * s.Interval)
}
