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
