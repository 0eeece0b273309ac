package refresh

import (
	"testing"
	"time"
)

func TestScheduleDelay(t *testing.T) {
	fixed := func(v float64) func() float64 { return func() float64 { return v } }
	cases := []struct {
		name     string
		s        Schedule
		failures int
		want     time.Duration
	}{
		{"no failures, no jitter draw", Schedule{Interval: 5 * time.Minute, Rand: fixed(0.5)}, 0, 5 * time.Minute},
		{"one failure doubles", Schedule{Interval: 5 * time.Minute, Rand: fixed(0.5)}, 1, 10 * time.Minute},
		{"three failures", Schedule{Interval: 5 * time.Minute, Rand: fixed(0.5)}, 3, 40 * time.Minute},
		{"capped at an hour", Schedule{Interval: 5 * time.Minute, Rand: fixed(0.5)}, 10, time.Hour},
		{"explicit cap", Schedule{Interval: time.Minute, MaxBackoff: 4 * time.Minute, Rand: fixed(0.5)}, 5, 4 * time.Minute},
		{"cap never below the interval", Schedule{Interval: 2 * time.Hour, Rand: fixed(0.5)}, 3, 2 * time.Hour},
		{"jitter low end", Schedule{Interval: 10 * time.Minute, Rand: fixed(0)}, 0, 9 * time.Minute},
		{"jitter high end", Schedule{Interval: 10 * time.Minute, Rand: fixed(1)}, 0, 11 * time.Minute},
		{"custom jitter", Schedule{Interval: 10 * time.Minute, Jitter: 0.5, Rand: fixed(0)}, 0, 5 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Delay(tc.failures); got != tc.want {
				t.Fatalf("Delay(%d) = %s, want %s", tc.failures, got, tc.want)
			}
		})
	}
}

// TestScheduleNext: without failures a repository stays in its phase (an
// interval with its jitter after the due time it ran for, or a whole
// number of intervals after it when the run ended later than that);
// after failures the backoff counts from the run's end.
func TestScheduleNext(t *testing.T) {
	const iv = 10 * time.Minute
	due := time.Date(2026, 1, 1, 0, 3, 0, 0, time.UTC)
	fixed := func(v float64) func() float64 { return func() float64 { return v } }
	cases := []struct {
		name     string
		s        Schedule
		ranFor   time.Duration // from due to the run's end
		failures int
		want     time.Duration // from due
	}{
		{"short run: an interval after its due time", Schedule{Interval: iv, Rand: fixed(0.5)}, time.Minute, 0, iv},
		{"short run, low jitter", Schedule{Interval: iv, Rand: fixed(0)}, time.Minute, 0, 9 * time.Minute},
		{"short run, high jitter", Schedule{Interval: iv, Rand: fixed(1)}, time.Minute, 0, 11 * time.Minute},
		{"ran past its jittered due time: the next whole interval", Schedule{Interval: iv, Rand: fixed(0)}, 9*time.Minute + time.Second, 0, iv},
		{"ended on its phase: the interval after", Schedule{Interval: iv, Rand: fixed(0.5)}, iv, 0, 2 * iv},
		{"ran three and a half intervals", Schedule{Interval: iv, Rand: fixed(0.5)}, 3*iv + iv/2, 0, 4 * iv},
		{"ran long, jitter draw ignored", Schedule{Interval: iv, Rand: fixed(1)}, 3*iv + iv/2, 0, 4 * iv},
		{"one failure: backoff from the end", Schedule{Interval: iv, Rand: fixed(0.5)}, 3 * time.Minute, 1, 3*time.Minute + 2*iv},
		{"failures after a long run", Schedule{Interval: iv, Rand: fixed(0.5)}, 3*iv + time.Minute, 2, 3*iv + time.Minute + 4*iv},
		{"backoff capped", Schedule{Interval: iv, MaxBackoff: 25 * time.Minute, Rand: fixed(0.5)}, 0, 3, 25 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Next(due, due.Add(tc.ranFor), tc.failures).Sub(due); got != tc.want {
				t.Fatalf("Next = due + %s, want due + %s", got, tc.want)
			}
		})
	}
}
