package webhook

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock for Deduper tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestDeduperTTL(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d := NewDeduper(time.Hour, 100, clk.Now)

	steps := []struct {
		advance time.Duration
		id      string
		want    bool
	}{
		{0, "a", false},
		{0, "a", true},
		{0, "", false},
		{0, "", false}, // empty ids are never recorded
		{30 * time.Minute, "b", false},
		{29*time.Minute + 59*time.Second, "a", true}, // 59m59s after a
		{time.Second, "a", false},                    // exactly the TTL: expired, re-recorded
		{0, "a", true},
		{0, "b", true}, // b was recorded at +30m, now +60m
		{30 * time.Minute, "b", false},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if got := d.Seen(s.id); got != s.want {
			t.Fatalf("step %d: Seen(%q) = %v, want %v", i, s.id, got, s.want)
		}
	}
}

func TestDeduperRepeatDoesNotExtend(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	d := NewDeduper(time.Minute, 10, clk.Now)
	d.Seen("x")
	clk.Advance(50 * time.Second)
	if !d.Seen("x") {
		t.Fatal("repeat within TTL not detected")
	}
	clk.Advance(10 * time.Second)
	if d.Seen("x") {
		t.Fatal("repeat extended the record's lifetime")
	}
}

func TestDeduperBound(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	d := NewDeduper(time.Hour, 3, clk.Now)
	for _, id := range []string{"1", "2", "3", "4"} { // "1" is evicted by "4"
		clk.Advance(time.Second)
		if d.Seen(id) {
			t.Fatalf("fresh id %q reported seen", id)
		}
	}
	if n := d.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	tests := []struct {
		id   string
		want bool
	}{
		{"2", true},
		{"3", true},
		{"4", true},
		{"1", false}, // evicted as oldest; re-recording it evicts "2"
		{"2", false},
	}
	for _, tt := range tests {
		if got := d.Seen(tt.id); got != tt.want {
			t.Fatalf("Seen(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
	if n := d.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
}

func TestDeduperDefaults(t *testing.T) {
	d := NewDeduper(0, 0, nil)
	if d.ttl != DefaultDedupTTL || d.max != DefaultDedupMax || d.now == nil {
		t.Fatalf("defaults not applied: ttl=%v max=%d", d.ttl, d.max)
	}
	if d.Seen("x") || !d.Seen("x") {
		t.Fatal("default deduper does not remember ids")
	}
}

// TestDeduperConcurrent races many goroutines on the same and on distinct
// ids: each id must be reported fresh exactly once.
func TestDeduperConcurrent(t *testing.T) {
	const workers, ids = 16, 200
	clk := &fakeClock{t: time.Unix(0, 0)}
	d := NewDeduper(time.Hour, (workers+1)*ids, clk.Now)

	start := make(chan struct{})
	fresh := make(chan string, 2*workers*ids) // room for every possible send
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range ids {
				if !d.Seen(fmt.Sprintf("shared-%d", i)) {
					fresh <- fmt.Sprintf("shared-%d", i)
				}
				if !d.Seen(fmt.Sprintf("own-%d-%d", w, i)) {
					fresh <- "own"
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(fresh)

	counts := map[string]int{}
	for id := range fresh {
		counts[id]++
	}
	if counts["own"] != workers*ids {
		t.Errorf("own ids fresh %d times, want %d", counts["own"], workers*ids)
	}
	for i := range ids {
		if n := counts[fmt.Sprintf("shared-%d", i)]; n != 1 {
			t.Errorf("shared-%d reported fresh %d times, want 1", i, n)
		}
	}
}
