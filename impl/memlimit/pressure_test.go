package memlimit

import (
	"bytes"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadingShort(t *testing.T) {
	for _, tc := range []struct {
		r    Reading
		want bool
	}{
		{Reading{InUse: 84, Limit: 100}, false},
		{Reading{InUse: 85, Limit: 100}, true},
		{Reading{InUse: 200, Limit: 100}, true},
		{Reading{InUse: 1 << 40, Limit: 0}, false},             // no limit
		{Reading{InUse: 1 << 40, Limit: math.MaxInt64}, false}, // no limit (GOMEMLIMIT=off)
		{Reading{InUse: 0, Limit: 100}, false},
	} {
		if got := tc.r.Short(DefaultThreshold); got != tc.want {
			t.Errorf("%+v.Short(%v) = %v", tc.r, DefaultThreshold, got)
		}
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestMonitorReusesAReading: within MaxAge the reading is not taken
// again; after it, it is, and the answer follows the new reading.
func TestMonitorReusesAReading(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	var inUse atomic.Uint64
	var reads atomic.Int64
	m := NewMonitor(Options{
		Read:      func() Reading { reads.Add(1); return Reading{InUse: inUse.Load(), Limit: 1000} },
		Now:       clock.Now,
		Threshold: 0.85,
	})
	inUse.Store(100)
	for range 5 {
		if m.Short() {
			t.Fatal("short at 10% of the limit")
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d readings within MaxAge, want 1", n)
	}
	inUse.Store(900)
	clock.advance(DefaultMaxAge / 2)
	if m.Short() {
		t.Fatal("the reading was taken again within MaxAge")
	}
	clock.advance(DefaultMaxAge / 2)
	r, short := m.Check()
	if !short || r.InUse != 900 || r.Limit != 1000 {
		t.Fatalf("after MaxAge: %+v short=%v, want 900/1000 short", r, short)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d readings, want 2", n)
	}
	inUse.Store(849)
	clock.advance(DefaultMaxAge)
	if m.Short() {
		t.Fatal("short at 84.9%")
	}
}

// TestMonitorReadsOnceAtATime: while one caller reads, the others answer
// at once from the last reading instead of waiting or reading too.
func TestMonitorReadsOnceAtATime(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	var reads atomic.Int64
	var held atomic.Bool
	started, release := make(chan struct{}), make(chan struct{})
	m := NewMonitor(Options{
		Read: func() Reading {
			reads.Add(1)
			if held.Load() {
				close(started)
				<-release
				return Reading{InUse: 900, Limit: 1000}
			}
			return Reading{InUse: 100, Limit: 1000}
		},
		Now: clock.Now,
	})
	if m.Short() {
		t.Fatal("short at 10%")
	}
	held.Store(true)
	clock.advance(time.Hour)
	slow := make(chan bool)
	go func() { slow <- m.Short() }()
	<-started // the goroutine is reading, and holds the read lock
	for range 10 {
		if m.Short() {
			t.Fatal("a caller waited for the reading in progress (or read again)")
		}
	}
	close(release)
	if !<-slow {
		t.Fatal("the reader's answer is not its reading's")
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d readings, want 2", n)
	}
	if !m.Short() {
		t.Fatal("the new reading was not kept")
	}
}

// TestMonitorLogsChanges: entering and leaving memory pressure are
// logged once each, not every check.
func TestMonitorLogsChanges(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	var inUse atomic.Uint64
	var buf bytes.Buffer
	m := NewMonitor(Options{
		Read:   func() Reading { return Reading{InUse: inUse.Load(), Limit: 1000} },
		Now:    clock.Now,
		Logger: slog.New(slog.NewTextHandler(&buf, nil)),
	})
	for _, v := range []uint64{100, 100, 900, 950, 900, 100, 100} {
		inUse.Store(v)
		clock.advance(DefaultMaxAge)
		m.Short()
	}
	logs := buf.String()
	if n := strings.Count(logs, "short of memory"); n != 1 {
		t.Errorf("%d lines about entering pressure, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, "memory pressure over"); n != 1 {
		t.Errorf("%d lines about leaving pressure, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "inUse=900 limit=1000") {
		t.Errorf("the warning does not give the numbers:\n%s", logs)
	}
}

// sink keeps TestMonitorUnderARealLimit's allocation reachable.
var sink []byte

// TestMonitorUnderARealLimit: the process's own memory, read through
// runtime/metrics, crosses a small limit set with debug.SetMemoryLimit
// when a large buffer is live, and no longer does once it is collected.
// The test process's limit is put back.
func TestMonitorUnderARealLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	runtime.GC()
	base := ReadRuntime()
	limit := max(int64(256<<20), int64(base.InUse)*4)
	debug.SetMemoryLimit(limit)

	r, short := NewMonitor(Options{}).Check()
	if r.Limit != uint64(limit) {
		t.Fatalf("reading's limit %d, set %d", r.Limit, limit)
	}
	if short {
		t.Fatalf("short of memory before allocating: %+v", r)
	}
	// Live memory at about 95% of the limit.
	sink = make([]byte, int64(float64(limit)*0.95)-int64(base.InUse))
	for i := 0; i < len(sink); i += 4096 {
		sink[i] = 1
	}
	runtime.GC() // the live heap is measured by a collection
	r, short = NewMonitor(Options{}).Check()
	if !short {
		t.Fatalf("not short of memory with %d bytes live of a %d limit: %+v", len(sink), limit, r)
	}
	sink = nil
	runtime.GC()
	r, short = NewMonitor(Options{}).Check()
	if short {
		t.Fatalf("still short of memory once the buffer was collected: %+v", r)
	}
}

// TestMonitorRelievesBeforeItRefuses: a short reading first asks Relieve
// to let memory go and reads again, so what it freed counts; Relieve is
// asked at most once per ReliefInterval, and not when nothing is short.
func TestMonitorRelievesBeforeItRefuses(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	var inUse atomic.Uint64
	var reliefs atomic.Int64
	freed := true // what Relieve reports (and frees: down to 100)
	m := NewMonitor(Options{
		Read: func() Reading { return Reading{InUse: inUse.Load(), Limit: 1000} },
		Now:  clock.Now,
		Relieve: func() bool {
			reliefs.Add(1)
			if freed {
				inUse.Store(100)
			}
			return freed
		},
		ReliefInterval: time.Minute,
	})
	inUse.Store(100)
	if m.Short() || reliefs.Load() != 0 {
		t.Fatalf("not short: relieved %d times", reliefs.Load())
	}
	inUse.Store(900)
	clock.advance(DefaultMaxAge)
	if m.Short() {
		t.Fatal("short although Relieve freed enough")
	}
	if reliefs.Load() != 1 {
		t.Fatalf("relieved %d times, want 1", reliefs.Load())
	}
	// Within the relief interval: short, and Relieve is not asked.
	inUse.Store(900)
	clock.advance(DefaultMaxAge)
	if !m.Short() || reliefs.Load() != 1 {
		t.Fatalf("within the relief interval: relieved %d times", reliefs.Load())
	}
	// After it: asked again; it frees nothing, so the answer is short.
	freed = false
	clock.advance(time.Minute)
	if !m.Short() || reliefs.Load() != 2 {
		t.Fatalf("after the relief interval: relieved %d times", reliefs.Load())
	}
}
