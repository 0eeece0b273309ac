package memlimit

import (
	"errors"
	"log/slog"
	"math"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// ErrPressure is the error of work refused because the server is short of
// memory; its text may be shown to clients.
var ErrPressure = errors.New("the server is short of memory; try again shortly")

// DefaultThreshold is the share of the limit in use from which the process
// is short of memory.
const DefaultThreshold = 0.85

// DefaultMaxAge is how long a reading is reused: callers on every request
// cost an atomic load, and the runtime is read at most this often.
const DefaultMaxAge = 100 * time.Millisecond

// Reading is one look at the process's memory.
type Reading struct {
	// InUse is what a collection cannot give back: the heap that survived
	// the last collection plus the runtime's memory outside the heap
	// (goroutine stacks, its metadata, profiling buckets, other).
	InUse uint64
	// Limit is the soft memory limit; 0 or math.MaxInt64: none.
	Limit uint64
}

// Short reports whether InUse is at least threshold of a set Limit.
func (r Reading) Short(threshold float64) bool {
	if r.Limit == 0 || r.Limit >= math.MaxInt64 {
		return false
	}
	return float64(r.InUse) >= threshold*float64(r.Limit)
}

// The runtime/metrics samples ReadRuntime reads, by index.
var runtimeSamples = []string{
	"/gc/gomemlimit:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/unused:bytes",
}

// ReadRuntime reads the process's memory from runtime/metrics, which does
// not stop the world (runtime.ReadMemStats does).
func ReadRuntime() Reading {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	limit, live, total := v(0), v(1), v(2)
	heap := v(3) + v(4) + v(5) + v(6)
	outside := uint64(0)
	if total > heap {
		outside = total - heap
	}
	return Reading{InUse: live + outside, Limit: limit}
}

// Options configure a Monitor; the zero value is production.
type Options struct {
	// Read looks at the process's memory. Default ReadRuntime.
	Read func() Reading
	// Threshold is the share of the limit in use from which the process
	// is short of memory. Default DefaultThreshold.
	Threshold float64
	// MaxAge is how long a reading is reused. Default DefaultMaxAge.
	MaxAge time.Duration
	// Now is the clock of MaxAge. Default time.Now.
	Now func() time.Time
	// Logger hears when the process becomes short of memory and when it
	// no longer is (nil: nothing is logged).
	Logger *slog.Logger
	// Relieve, when set, is asked to let memory go when a new reading is
	// short (at most once per ReliefInterval); it returns whether it let
	// anything go, and then the Monitor collects garbage and reads again,
	// so that what it freed counts before anything is refused.
	Relieve func() bool
	// ReliefInterval is the least time between two Relieve calls.
	// Default DefaultReliefInterval.
	ReliefInterval time.Duration
}

// DefaultReliefInterval is the least time between two reliefs: each one
// costs a full garbage collection.
const DefaultReliefInterval = 5 * time.Second

// Monitor tells whether the process is short of memory, from a reading
// at most MaxAge old. It is safe for concurrent use.
type Monitor struct {
	opts    Options
	last    atomic.Pointer[sample]
	reading sync.Mutex // held by the one caller that reads anew
	relief  time.Time  // the last Relieve call; guarded by reading
}

type sample struct {
	r     Reading
	at    time.Time
	short bool
}

// NewMonitor returns a Monitor.
func NewMonitor(opts Options) *Monitor {
	if opts.Read == nil {
		opts.Read = ReadRuntime
	}
	if opts.Threshold <= 0 {
		opts.Threshold = DefaultThreshold
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReliefInterval <= 0 {
		opts.ReliefInterval = DefaultReliefInterval
	}
	return &Monitor{opts: opts}
}

// Check returns the current reading and whether the process is short of
// memory. Within MaxAge of the last reading it answers from it; after
// that one caller reads anew while the others keep the last answer.
func (m *Monitor) Check() (Reading, bool) {
	s := m.last.Load()
	if s != nil && m.fresh(s) {
		return s.r, s.short
	}
	if s == nil {
		m.reading.Lock() // the first reading: everyone waits for it
	} else if !m.reading.TryLock() {
		return s.r, s.short // another caller is reading
	}
	defer m.reading.Unlock()
	prev := m.last.Load()
	if prev != nil && m.fresh(prev) { // read while this caller waited
		return prev.r, prev.short
	}
	r := m.opts.Read()
	if r.Short(m.opts.Threshold) && m.opts.Relieve != nil && m.opts.Now().Sub(m.relief) >= m.opts.ReliefInterval {
		m.relief = m.opts.Now()
		if m.opts.Relieve() {
			runtime.GC()
			r = m.opts.Read()
		}
	}
	next := &sample{r: r, at: m.opts.Now(), short: r.Short(m.opts.Threshold)}
	m.last.Store(next)
	if log := m.opts.Logger; log != nil && next.short != (prev != nil && prev.short) {
		if next.short {
			log.Warn("short of memory: new fetches are refused until it passes", "inUse", r.InUse, "limit", r.Limit, "threshold", m.opts.Threshold)
		} else {
			log.Info("memory pressure over: fetches resume", "inUse", r.InUse, "limit", r.Limit)
		}
	}
	return next.r, next.short
}

func (m *Monitor) fresh(s *sample) bool { return m.opts.Now().Sub(s.at) < m.opts.MaxAge }

// Short reports whether the process is short of memory (Check).
func (m *Monitor) Short() bool {
	_, short := m.Check()
	return short
}
