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
