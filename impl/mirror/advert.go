package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/refs"
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
//
// With expect set as well (the mirror's ref table), the filter first
// compares the advertisement, as it streams, with the table's direct refs
// in the namespaces, which are sorted by name as git advertises them: a
// kept ref equal to the next expected one is neither copied nor put in
// collect. When the whole advertisement matched, same is set and collect
// holds none of those refs (listing.same and listing.fill use the table
// instead). At the first difference (another ref, another hash, an order
// git does not use, a line of another form) the refs matched so far go
// into collect and the rest is read as without expect.
//
// A line is taken for the next expected ref on its hash and the length of
// its name: the names themselves are not compared one by one (reading
// each of a table's names, scattered over the heap, was most of the cost
// of listing an unchanged upstream among a thousand mirrors). They are
// hashed instead, in order, with a per-process secret key (digest), and
// the hash is checked where the comparison ends: at the advertisement's
// end against the table's own (namesDigest, which the mirror keeps per
// table: expectation), or at the first difference against the same hash
// of the table's names matched so far. A mismatch there (a ref renamed with
// its hash and length kept) is errRelist: the session lists the upstream
// again without a table, and nothing the filter decided is used.
type advertFilter struct {
	r       io.Reader
	lim     Limits // MaxRefs, MaxRefBytes
	collect map[string]plumbing.Hash
	// expect: the direct refs of the table in each namespace, a
	// contiguous run of the sorted table each, in name order (git's).
	expect [][]refs.Ref
	seg    int // expect[seg][at] is the next ref to match (matching)
	at     int
	// expectSum is namesDigest of expect, and digest
	// the same hash of the names of the lines matched so far.
	expectSum uint64
	digest    maphash.Hash
	// matching: every kept ref so far was the next one of expect.
	matching bool
	same     bool // the advertisement ended, and it matched the whole of expect
	kept     int64
	names    int64 // bytes of the kept refs' names
	refs     int   // ref lines seen
	done     bool
	out      []byte // what is left to pass on
	buf      []byte // maxPktLine bytes
	pending  error
}

// maxPktLine is the longest pkt-line, its length included.
const maxPktLine = 65520

func newAdvertFilter(r io.Reader, lim Limits) *advertFilter {
	return &advertFilter{r: r, lim: lim, buf: make([]byte, maxPktLine)}
}

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
	head := f.buf[:4] // not a local array: it would escape to the heap
	if _, err := io.ReadFull(f.r, head); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return corrupt("the ref advertisement is truncated")
		}
		return err // io.EOF: go-git reports an empty answer as it should
	}
	n, err := strconv.ParseUint(string(head), 16, 16)
	if err != nil {
		return corrupt("the ref advertisement has a malformed pkt-line length")
	}
	switch {
	case n == 0: // flush-pkt
		if f.refs > 0 {
			f.done = true
			if err := f.end(); err != nil {
				return err
			}
		}
		f.out = head
		return nil
	case n < 4 || n > uint64(len(f.buf)):
		return corrupt("the ref advertisement has a pkt-line of length %d", n)
	}
	line := f.buf[:n] // head is its first four bytes
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
	rest := payload[41:]
	if f.matching && f.refs > 1 && f.seg < len(f.expect) {
		// The common case first: the next expected ref, in the plain form
		// (its name is checked through digest, see the type).
		e := &f.expect[f.seg][f.at]
		if n := len(e.Name); e.Hash == h && (len(rest) == n || (len(rest) == n+1 && rest[n] == '\n')) {
			f.matched(rest[:n])
			return f.count(n)
		}
	}
	nb := rest
	if i := bytes.IndexAny(nb, "\x00\n"); i >= 0 {
		nb = nb[:i]
	}
	if f.refs == 1 || string(nb) == "HEAD" {
		// The capabilities ride on the first line: go-git decodes it
		// (into collect, when it is a ref).
		if f.refs == 1 && string(nb) != "HEAD" && f.matching && !f.match(nb, h) && inNamespaces(nb) {
			if err := f.diverge(); err != nil {
				return err
			}
		}
		f.out = line
		return nil
	}
	if bytes.HasSuffix(nb, peeledSuffix) {
		return nil // peeled values are computed, not taken
	}
	if f.matching {
		plain := len(rest) == len(nb) || (len(rest) == len(nb)+1 && rest[len(nb)] == '\n')
		switch {
		case plain && f.match(nb, h):
			// A ref of the table (so a wanted one), unchanged.
			return f.count(len(nb))
		case !inNamespaces(nb):
			return nil // not mirrored
		}
		if err := f.diverge(); err != nil {
			return err
		}
	}
	name := string(nb)
	if !wanted(name) {
		return nil // other refs are not mirrored
	}
	if err := f.count(len(name)); err != nil {
		return err
	}
	if f.collect != nil {
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

var peeledSuffix = []byte("^{}")

// count counts a kept ref whose name has n bytes against the limits.
func (f *advertFilter) count(n int) error {
	if f.kept++; f.kept > f.lim.MaxRefs {
		return tooLarge(fmt.Sprintf("the refs in %s", strings.Join(Namespaces, ", ")), "MaxRefs", f.lim.MaxRefs)
	}
	if f.names += int64(n); f.names > f.lim.MaxRefBytes {
		return tooLarge(fmt.Sprintf("the names of the refs in %s", strings.Join(Namespaces, ", ")), "MaxRefBytes", f.lim.MaxRefBytes)
	}
	return nil
}

// errRelist: the names of the refs an advertisement matched were not the
// table's (see advertFilter); the upstream is listed again without one.
var errRelist = errors.New("the advertised names differ from the table's: list again")

// namesSeed keys namesDigest for the process's life: the digests are
// never stored, and an upstream cannot aim at a collision it cannot
// compute.
var namesSeed = maphash.MakeSeed()

// expectation is what the filter compares an advertisement with, worked
// out once per table (Mirror.expectation): where the table's runs in the
// namespaces are, and namesDigest of their names. Per listing, finding the
// runs again cost more than the comparison itself with a thousand mirrors:
// a binary search reads names scattered over a large heap.
type expectation struct {
	runs [][2]int // [start, end) in t.All() of each namespace's refs, in name order
	sum  uint64   // namesDigest
}

// expect works out the expectation of t.
func expect(t *refs.Table) expectation {
	var e expectation
	for _, p := range Namespaces {
		if lo, hi := t.PrefixBounds(p); lo < hi {
			e.runs = append(e.runs, [2]int{lo, hi})
		}
	}
	slices.SortFunc(e.runs, func(a, b [2]int) int { return a[0] - b[0] })
	e.sum = namesDigest(e.refs(t))
	return e
}

// refs returns the runs of t in each namespace (see expectation.runs);
// within them, only the direct refs are compared.
func (e expectation) refs(t *refs.Table) [][]refs.Ref {
	all := t.All()
	out := make([][]refs.Ref, len(e.runs))
	for i, r := range e.runs {
		out[i] = all[r[0]:r[1]:r[1]]
	}
	return out
}

// namesDigest is the hash the filter checks names with: the name of every
// direct ref of runs, in order, each followed by a NUL (which no ref name
// holds).
func namesDigest(runs [][]refs.Ref) uint64 {
	var h maphash.Hash
	h.SetSeed(namesSeed)
	for _, run := range runs {
		for i := range run {
			if !run[i].Symbolic() {
				h.WriteString(run[i].Name)
				h.WriteByte(0)
			}
		}
	}
	return h.Sum64()
}

// expectTable starts the comparison with the direct refs in the
// namespaces of t (see advertFilter), as e (expect(t)) finds them. Every
// such ref of a mirror's table is one wanted takes (readRefs and
// listing.table keep no other).
func (f *advertFilter) expectTable(t *refs.Table, e expectation) {
	f.expect, f.seg, f.at, f.matching = e.refs(t), 0, 0, f.collect != nil
	f.expectSum = e.sum
	f.digest.SetSeed(namesSeed)
	f.skip()
}

// skip moves past the refs of expect that are not compared (symbolic
// ones) and past the ends of its runs.
func (f *advertFilter) skip() {
	for f.seg < len(f.expect) {
		if run := f.expect[f.seg]; f.at >= len(run) {
			f.seg, f.at = f.seg+1, 0
		} else if run[f.at].Symbolic() {
			f.at++
		} else {
			return
		}
	}
}

// matched records that a line named name was the next expected ref.
func (f *advertFilter) matched(name []byte) {
	f.digest.Write(name)
	f.digest.WriteByte(0)
	f.at++
	f.skip()
}

// match reports whether name and h are the next expected ref, and moves
// past it when they are.
func (f *advertFilter) match(name []byte, h plumbing.Hash) bool {
	if f.seg >= len(f.expect) {
		return false
	}
	if e := &f.expect[f.seg][f.at]; e.Hash != h || e.Name != string(name) {
		return false
	}
	f.matched(name)
	return true
}

// diverge ends the comparison: once the names matched so far are found
// to be the table's, those refs go into collect.
func (f *advertFilter) diverge() error {
	f.matching = false
	done := slices.Clone(f.expect[:min(f.seg, len(f.expect))])
	if f.seg < len(f.expect) {
		done = append(done, f.expect[f.seg][:f.at])
	}
	if namesDigest(done) != f.digest.Sum64() {
		return errRelist
	}
	for _, run := range done {
		for _, r := range run {
			if !r.Symbolic() {
				f.collect[r.Name] = r.Hash
			}
		}
	}
	return nil
}

// end is called at the advertisement's end: it matched the whole of
// expect (same), or what it matched goes into collect.
func (f *advertFilter) end() error {
	if !f.matching {
		return nil
	}
	if f.seg >= len(f.expect) {
		if f.digest.Sum64() != f.expectSum {
			return errRelist
		}
		f.same = true
		return nil
	}
	return f.diverge()
}

// inNamespaces is InNamespaces of a name in bytes.
func inNamespaces(name []byte) bool {
	for _, p := range Namespaces {
		if len(name) >= len(p) && string(name[:len(p)]) == p {
			return true
		}
	}
	return false
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
