package mirror

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Limits bound what receiving one pack (a clone or a fetch) may cost. No
// size or count an upstream declares is trusted: each is checked against
// what has actually arrived and against these budgets before anything is
// allocated for it. A zero field takes its default (DefaultLimits). Over a
// limit, the transfer fails with ErrTooLarge and nothing is kept.
type Limits struct {
	// MaxPackSize bounds the bytes of one received pack (git's
	// --max-input-size). Default 4 GiB.
	MaxPackSize int64
	// MaxObjects bounds the objects of one pack: the count in the pack's
	// header is checked against it before the first object is read, and
	// every object costs about 40 bytes of memory while the pack is
	// indexed. Default 2,000,000.
	MaxObjects int64
	// MaxInflated bounds the bytes inflated and produced by deltas while
	// one pack is received and checked: a bound on its CPU cost. Default
	// 32 GiB.
	MaxInflated int64
	// MaxMetaSize bounds the size of every commit, tree and tag,
	// checked before the object is inflated or its delta applied. Default
	// 4 MiB.
	MaxMetaSize int64
	// MaxDeltaSize bounds every object that is held in memory to resolve
	// a delta: a delta's result, and any object a delta is based on.
	// Objects that are not deltas and no delta's base, such as most large
	// files, are hashed as they stream in and never held whole. Delta
	// chains are resolved within a memory budget of twice this size.
	// Default 64 MiB.
	MaxDeltaSize int64
	// MaxDeltaDepth bounds the length of a delta chain. Default 10,000.
	MaxDeltaDepth int
	// MaxRefs bounds the refs of the mirrored namespaces an upstream may
	// advertise (the others are dropped as the advertisement is read,
	// before anything keeps them). A repository's view costs memory in
	// proportion to its branches (about 4 KiB each, measured at 50,000
	// branches). Default 150,000: half again the largest repository
	// stackd is measured with (50,000 branches, each with its metadata
	// ref).
	MaxRefs int64
	// MaxRefBytes bounds the bytes of the names of those refs. Every
	// byte of a branch name is held several times over by the view built
	// from it (its JSON, its stack's id, root and title), about 15 bytes
	// in all: this bound keeps long names from multiplying memory.
	// Default 8 MiB: 100,000 refs of 80-byte names.
	MaxRefBytes int64
}

// DefaultLimits are the limits a zero Limits field takes.
var DefaultLimits = Limits{
	MaxPackSize:   4 << 30,
	MaxObjects:    2_000_000,
	MaxInflated:   32 << 30,
	MaxMetaSize:   4 << 20,
	MaxDeltaSize:  64 << 20,
	MaxDeltaDepth: 10_000,
	MaxRefs:       150_000,
	MaxRefBytes:   8 << 20,
}

// orDefault returns l with every zero (or negative) field set to its
// default.
func (l Limits) orDefault() Limits {
	d := DefaultLimits
	return Limits{
		MaxPackSize:   positive(l.MaxPackSize, d.MaxPackSize),
		MaxObjects:    positive(l.MaxObjects, d.MaxObjects),
		MaxInflated:   positive(l.MaxInflated, d.MaxInflated),
		MaxMetaSize:   positive(l.MaxMetaSize, d.MaxMetaSize),
		MaxDeltaSize:  positive(l.MaxDeltaSize, d.MaxDeltaSize),
		MaxDeltaDepth: positive(l.MaxDeltaDepth, d.MaxDeltaDepth),
		MaxRefs:       positive(l.MaxRefs, d.MaxRefs),
		MaxRefBytes:   positive(l.MaxRefBytes, d.MaxRefBytes),
	}
}

// positive returns v when it is positive, else def.
func positive[T int | int64](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// unlimited are the limits of packs this package encodes itself from
// objects it already holds (compaction, collection): they were checked
// when they arrived.
var unlimited = Limits{
	MaxPackSize:   1 << 62,
	MaxObjects:    1 << 31,
	MaxInflated:   1 << 62,
	MaxMetaSize:   1 << 40,
	MaxDeltaSize:  1 << 40,
	MaxDeltaDepth: 1 << 20,
	MaxRefs:       1 << 40,
	MaxRefBytes:   1 << 62,
}

var (
	// ErrTooLarge reports a pack or an object of it over one of the
	// Limits (or an advertisement over its cap, ErrAdvertisementTooLarge,
	// which also matches). The error names the limit.
	ErrTooLarge = errors.New("the upstream sent more than the limits allow")
	// ErrCorrupt reports a pack or objects that git would refuse: a bad
	// checksum, a malformed object, objects that do not match their
	// declared sizes, duplicates, data after the pack, an object that
	// names another one that was neither sent nor stored (a missing
	// tree, parent or delta base).
	ErrCorrupt = errors.New("the upstream sent an invalid pack")
)

// limitError is an ErrTooLarge naming the limit that was exceeded.
type limitError struct {
	what  string // e.g. "a commit, tree or tag"
	limit string // the Limits field, e.g. "MaxMetaSize"
	max   int64
}

func (e *limitError) Error() string {
	return fmt.Sprintf("%s: %s exceeds %s", ErrTooLarge, e.what, e.describe())
}

// describe names the limit as an operator sets it: "4 MiB
// (--fetch-max-commit-size)".
func (e *limitError) describe() string {
	s := formatBytes(e.limit, e.max)
	if f := limitFlags[e.limit]; f != "" {
		s += " (" + f + ")"
	}
	return s
}

// limitFlags are the stackd serve flags that set each limit.
var limitFlags = map[string]string{
	"MaxPackSize":   "--fetch-max-pack-size",
	"MaxObjects":    "--fetch-max-objects",
	"MaxInflated":   "--fetch-max-inflated",
	"MaxMetaSize":   "--fetch-max-commit-size",
	"MaxDeltaSize":  "--fetch-max-delta-size",
	"MaxDeltaDepth": "",
	"MaxRefs":       "--fetch-max-refs",
	"MaxRefBytes":   "--fetch-max-ref-bytes",
}

func (e *limitError) Unwrap() error { return ErrTooLarge }

// Limit names the limit that was exceeded (a field of Limits).
func (e *limitError) Limit() string { return e.limit }

func tooLarge(what, limit string, max int64) error {
	return &limitError{what: what, limit: limit, max: max}
}

// formatBytes shows a limit: counts as numbers, sizes in MiB or GiB.
func formatBytes(limit string, n int64) string {
	switch {
	case limit == "MaxObjects" || limit == "MaxDeltaDepth" || limit == "MaxRefs":
		return fmt.Sprintf("%d", n)
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// corrupt is an ErrCorrupt with what is wrong.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// budget is a shared count of bytes that may still be spent (inflated),
// safe for concurrent use.
type budget struct {
	left atomic.Int64
	max  int64
}

func newBudget(max int64) *budget {
	b := &budget{max: max}
	b.left.Store(max)
	return b
}

// take spends n bytes, failing once the budget is exhausted.
func (b *budget) take(n uint64) error {
	if n > uint64(b.max) || b.left.Add(-int64(n)) < 0 {
		b.left.Store(-1)
		return tooLarge("the bytes inflated to receive the pack", "MaxInflated", b.max)
	}
	return nil
}
