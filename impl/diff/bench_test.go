package diff_test

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/diff"
)

// BenchmarkCancelLatency measures how long a comparison goes on after its
// context is cancelled from another goroutine, mid-search (a minimal
// comparison of 100,000 lines from 13, which would take minutes, cancelled
// after 20 ms): latency-µs per cancellation (mean) and max-latency-µs.
func BenchmarkCancelLatency(b *testing.B) {
	rng := rand.New(rand.NewPCG(8, 9))
	old, new := []byte(smallAlphabet(rng, 100000, 13)), []byte(smallAlphabet(rng, 100000, 13))
	var total, worst time.Duration
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		var at atomic.Int64
		time.AfterFunc(20*time.Millisecond, func() {
			at.Store(time.Now().UnixNano())
			cancel()
		})
		_, err := diff.Compare(old, new, diff.Options{Minimal: true}, diff.NewBudget(ctx, math.MaxInt64))
		d := time.Duration(time.Now().UnixNano() - at.Load())
		if err == nil || at.Load() == 0 {
			b.Fatal("not cancelled")
		}
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "latency-µs")
	b.ReportMetric(float64(worst.Microseconds()), "max-latency-µs")
}
