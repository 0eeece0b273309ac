package mirror

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// advertFilter is read in place of an upstream's ref advertisement: it
// passes on, pkt-line by pkt-line, only what a mirror uses of it (the
// first line, which carries the capabilities, HEAD, and the refs of the
// namespaces whose names git accepts) and drops the rest (tags, pull
// requests, peeled lines, names git refuses) before go-git decodes and
// keeps any of it. Kept refs are counted against MaxRefs, and their
// names against MaxRefBytes. It never reads past
// the advertisement's end (the flush-pkt after a ref), since the same
// connection then carries the pack, and it checks every pkt-line's length
// before reading it: a malformed line is ErrCorrupt, not whatever go-git
// would make of it.
//
// With collect set (the git:// session, which decodes the advertisement
// itself), a kept ref line of the plain form "<hex> <name>\n" is not
// passed on: its ref goes straight into collect, the References map of
// the advertisement go-git decodes, as go-git would have put it there.
// go-git then only reads the first line, HEAD and what the filter does not
// understand, which halves the CPU of listing an unchanged upstream.
type advertFilter struct {
	r       io.Reader
	lim     Limits // MaxRefs, MaxRefBytes
	collect map[string]plumbing.Hash
	kept    int64
	names   int64 // bytes of the kept refs' names
	refs    int   // ref lines seen
	done    bool
	out     []byte // what is left to pass on
	buf     [65520]byte
	pending error
}

func newAdvertFilter(r io.Reader, lim Limits) *advertFilter { return &advertFilter{r: r, lim: lim} }

func (f *advertFilter) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.pending != nil {
			return 0, f.pending
		}
		if f.done {
			return 0, io.EOF
		}
		if err := f.next(); err != nil {
			f.pending = err
		}
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// next reads one pkt-line and queues it if it is kept.
func (f *advertFilter) next() error {
	var head [4]byte
	if _, err := io.ReadFull(f.r, head[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return corrupt("the ref advertisement is truncated")
		}
		return err // io.EOF: go-git reports an empty answer as it should
	}
	n, err := strconv.ParseUint(string(head[:]), 16, 16)
	if err != nil {
		return corrupt("the ref advertisement has a malformed pkt-line length")
	}
	switch {
	case n == 0: // flush-pkt
		if f.refs > 0 {
			f.done = true
		}
		f.out = append(f.buf[:0], head[:]...)
		return nil
	case n < 4 || n > uint64(len(f.buf)):
		return corrupt("the ref advertisement has a pkt-line of length %d", n)
	}
	line := f.buf[:n]
	copy(line, head[:])
	if _, err := io.ReadFull(f.r, line[4:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return corrupt("the ref advertisement is truncated")
		}
		return err
	}
	payload := line[4:]
	var h plumbing.Hash
	if len(payload) < 41 || payload[40] != ' ' || !parseHash(&h, payload[:40]) {
		f.out = line // the service line of smart HTTP, "shallow", an ERR line: go-git's business
		return nil
	}
	f.refs++
	name := string(payload[41:])
	if i := strings.IndexAny(name, "\x00\n"); i >= 0 {
		name = name[:i]
	}
	if f.refs == 1 || name == "HEAD" {
		f.out = line // the capabilities ride on the first line
		return nil
	}
	if strings.HasSuffix(name, "^{}") || !wanted(name) {
		return nil // peeled values are computed, not taken; other refs are not mirrored
	}
	if f.kept++; f.kept > f.lim.MaxRefs {
		return tooLarge(fmt.Sprintf("the refs in %s", strings.Join(Namespaces, ", ")), "MaxRefs", f.lim.MaxRefs)
	}
	if f.names += int64(len(name)); f.names > f.lim.MaxRefBytes {
		return tooLarge(fmt.Sprintf("the names of the refs in %s", strings.Join(Namespaces, ", ")), "MaxRefBytes", f.lim.MaxRefBytes)
	}
	if f.collect != nil {
		rest := payload[41:]
		if len(rest) > 0 && rest[len(rest)-1] == '\n' {
			rest = rest[:len(rest)-1]
		}
		// Only the plain form: anything else (a NUL, a second line feed)
		// is left to go-git's decoding, as before.
		if len(rest) == len(name) {
			f.collect[name] = h
			return nil
		}
	}
	f.out = line
	return nil
}

// hexVal maps a lowercase hex digit to its value plus one; 0 is not a
// digit (git advertises lowercase hex only).
var hexVal = func() (t [256]byte) {
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c-'0') + 1
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 11
	}
	return t
}()

// parseHash decodes the 40 lowercase hex digits of b into h, and reports
// whether b was that.
func parseHash(h *plumbing.Hash, b []byte) bool {
	if len(b) != 2*len(h) {
		return false
	}
	for i := range h {
		hi, lo := hexVal[b[2*i]], hexVal[b[2*i+1]]
		if hi == 0 || lo == 0 {
			return false
		}
		h[i] = (hi-1)<<4 | (lo - 1)
	}
	return true
}
