package mirror

import (
	"bufio"
	"compress/flate"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"hash"
	"hash/crc32"
	"io"
	"sort"

	"github.com/go-git/go-git/v5/plumbing"
)

// This file reads a pack as it streams in, once, without trusting any
// number in it (see Limits): the header's object count is checked against
// MaxObjects before anything is read and objects are recorded as they
// arrive; every object must inflate to exactly the size its header
// declares, and its zlib stream must end there; commits, trees and tags
// are refused over MaxMetaSize before they are inflated, and a delta whose
// declared result is over its limit before it is applied; whole objects
// are hashed as they stream, never held; the pack's checksum is verified
// and nothing may follow it.
//
// The pack format (git's Documentation/gitformat-pack.txt):
//
//	"PACK" version(2 or 3, 4 bytes) count(4 bytes)
//	entry* sha1(everything before)
//	entry = type+size varint, [ofs varint | base id], zlib(content or delta)

// entry kinds.
const (
	kindWhole uint8 = iota
	kindOfs
	kindRef
)

// entry is what the index and the resolver need of one object of a pack.
type entry struct {
	off  uint64
	hash plumbing.Hash // zero until known (deltas: once resolved)
	crc  uint32
	base int32               // kindOfs: the index of the base entry; -1 otherwise
	typ  plumbing.ObjectType // for deltas, the chain's type once known
	kind uint8
}

// entries is a pack's table of objects, stored in chunks so that it grows
// with the objects that arrive without copying, and without ever being
// sized by a count the pack declares.
type entries struct {
	chunks [][]entry
	n      int
}

const (
	chunkBits = 16
	chunkSize = 1 << chunkBits
)

func (e *entries) add(x entry) int32 {
	last := len(e.chunks) - 1
	if last < 0 || len(e.chunks[last]) == chunkSize {
		e.chunks = append(e.chunks, make([]entry, 0, min(chunkSize, 64)))
		last++
	}
	e.chunks[last] = append(e.chunks[last], x)
	e.n++
	return int32(e.n - 1)
}

func (e *entries) at(i int32) *entry { return &e.chunks[i>>chunkBits][i&(chunkSize-1)] }

func (e *entries) len() int { return e.n }

// byOffset returns the index of the entry that starts at off, if any.
func (e *entries) byOffset(off uint64) (int32, bool) {
	i := sort.Search(e.n, func(i int) bool { return e.at(int32(i)).off >= off })
	if i < e.n && e.at(int32(i)).off == off {
		return int32(i), true
	}
	return -1, false
}

// refBase is the base of a REF_DELTA entry, named by id.
type refBase struct {
	idx  int32
	base plumbing.Hash
}

// scanned is a pack after its one streaming read.
type scanned struct {
	objs     entries
	refs     []refBase // the REF_DELTA entries
	checksum plumbing.Hash
	size     int64 // bytes, checksum included
}

// packIn reads a pack stream and keeps account of what was consumed: the
// pack checksum, the current entry's CRC and the copy in the pack file
// are fed a chunk at a time, from the buffer, never byte by byte. It is
// the io.ByteReader that zlib reads from, so that zlib consumes exactly
// its stream and nothing after it.
type packIn struct {
	src     io.Reader
	buf     []byte
	h, r, w int // buf[h:r] consumed, not yet accounted; buf[r:w] unread
	sum     hash.Hash
	crc     uint32
	out     io.Writer
	total   int64 // bytes consumed
	max     int64
	hashing bool
}

func newPackIn(src io.Reader, out io.Writer, max int64) *packIn {
	return &packIn{src: src, buf: make([]byte, 64<<10), sum: sha1.New(), out: out, max: max, hashing: true}
}

// account feeds the consumed bytes to the checksum, the CRC and the file.
func (p *packIn) account() error {
	if p.h == p.r {
		return nil
	}
	b := p.buf[p.h:p.r]
	if p.hashing {
		p.sum.Write(b)
	}
	p.crc = crc32.Update(p.crc, crc32.IEEETable, b)
	p.h = p.r
	if _, err := p.out.Write(b); err != nil {
		return err
	}
	return nil
}

func (p *packIn) fill() error {
	if err := p.account(); err != nil {
		return err
	}
	if p.r == p.w {
		p.h, p.r, p.w = 0, 0, 0
	}
	for {
		n, err := p.src.Read(p.buf[p.w:])
		p.w += n
		if n > 0 {
			return nil
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
}

func (p *packIn) ReadByte() (byte, error) {
	if p.r == p.w {
		if err := p.fill(); err != nil {
			return 0, err
		}
	}
	if p.total >= p.max {
		return 0, tooLarge("the pack", "MaxPackSize", p.max)
	}
	c := p.buf[p.r]
	p.r++
	p.total++
	return c, nil
}

func (p *packIn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if p.r == p.w {
		if err := p.fill(); err != nil {
			return 0, err
		}
	}
	if p.total >= p.max {
		return 0, tooLarge("the pack", "MaxPackSize", p.max)
	}
	avail := p.w - p.r
	if rem := p.max - p.total; int64(avail) > rem {
		avail = int(rem)
	}
	n := copy(b, p.buf[p.r:p.r+avail])
	p.r += n
	p.total += int64(n)
	return n, nil
}

// startEntry begins an entry's CRC.
func (p *packIn) startEntry() error {
	if err := p.account(); err != nil {
		return err
	}
	p.crc = 0
	return nil
}

// endEntry returns the CRC of the bytes read since startEntry.
func (p *packIn) endEntry() (uint32, error) {
	if err := p.account(); err != nil {
		return 0, err
	}
	return p.crc, nil
}

// inflater reads one object's zlib stream: exactly size bytes, then the
// stream's end (and its checksum). More or fewer bytes than declared, or a
// stream that goes on, are ErrCorrupt. Every byte is charged to spend.
type inflater struct {
	z     io.ReadCloser
	left  uint64
	spend *budget
	err   error
}

// reset starts reading a stream of size bytes from src (an io.ByteReader,
// so that zlib reads no further than its stream).
func (f *inflater) reset(src io.Reader, size uint64) error {
	f.left, f.err = size, nil
	var err error
	if f.z == nil {
		f.z, err = zlib.NewReader(src)
	} else {
		err = f.z.(zlib.Resetter).Reset(src, nil)
	}
	if err != nil {
		return f.fail(err)
	}
	return nil
}

func (f *inflater) fail(err error) error {
	var le *limitError
	switch {
	case errors.As(err, &le), errors.Is(err, ErrCorrupt):
	case errors.Is(err, zlib.ErrHeader), errors.Is(err, zlib.ErrChecksum), errors.Is(err, zlib.ErrDictionary),
		errors.Is(err, io.ErrUnexpectedEOF), isFlateError(err):
		err = corrupt("bad compressed data: %v", err)
	}
	f.err = err
	return err
}

func isFlateError(err error) bool {
	var ce flate.CorruptInputError
	var ie flate.InternalError
	return errors.As(err, &ce) || errors.As(err, &ie)
}

func (f *inflater) Read(b []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.left == 0 {
		var one [1]byte
		n, err := f.z.Read(one[:])
		switch {
		case n > 0:
			return 0, f.fail(corrupt("an object is larger than its header declares"))
		case errors.Is(err, io.EOF):
			f.err = io.EOF
			return 0, io.EOF
		case err == nil:
			return 0, nil
		}
		return 0, f.fail(err)
	}
	if uint64(len(b)) > f.left {
		b = b[:f.left]
	}
	n, err := f.z.Read(b)
	f.left -= uint64(n)
	if n > 0 {
		if berr := f.spend.take(uint64(n)); berr != nil {
			return n, f.fail(berr)
		}
	}
	if errors.Is(err, io.EOF) {
		if f.left > 0 {
			return n, f.fail(corrupt("an object is smaller than its header declares"))
		}
		return n, nil // the stream's end is confirmed by the next Read
	}
	if err != nil {
		return n, f.fail(err)
	}
	return n, nil
}

// drain reads the rest of the stream into w (io.Discard to skip it), up
// to and including its end.
func (f *inflater) drain(w io.Writer, scratch []byte) error {
	_, err := io.CopyBuffer(w, onlyReader{f}, scratch)
	return err
}

// onlyReader hides a reader's other methods from io.Copy.
type onlyReader struct{ io.Reader }

// objectHeader reads an entry's type and declared size.
func objectHeader(r io.ByteReader) (plumbing.ObjectType, uint64, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	t := plumbing.ObjectType((c >> 4) & 7)
	size := uint64(c & 0x0f)
	shift := uint(4)
	for c&0x80 != 0 {
		if shift > 57 {
			return 0, 0, corrupt("an object size overflows 64 bits")
		}
		if c, err = r.ReadByte(); err != nil {
			return 0, 0, err
		}
		size |= uint64(c&0x7f) << shift
		shift += 7
	}
	switch t {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject, plumbing.OFSDeltaObject, plumbing.REFDeltaObject:
	default:
		return 0, 0, corrupt("an object has the unknown type %d", t)
	}
	return t, size, nil
}

// ofsDistance reads an OFS_DELTA's distance back to its base.
func ofsDistance(r io.ByteReader) (uint64, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	d := uint64(c & 0x7f)
	for c&0x80 != 0 {
		if d > 1<<56 {
			return 0, corrupt("a delta's base offset overflows")
		}
		if c, err = r.ReadByte(); err != nil {
			return 0, err
		}
		d = ((d + 1) << 7) | uint64(c&0x7f)
	}
	return d, nil
}

// isMeta reports whether t is a commit, tree or tag: the objects that are
// parsed, and bounded by MaxMetaSize.
func isMeta(t plumbing.ObjectType) bool {
	return t == plumbing.CommitObject || t == plumbing.TreeObject || t == plumbing.TagObject
}

// sizeLimit checks a declared size against the limit of its type: held
// says the object will be held in memory (a delta's result or base).
func (l *Limits) sizeLimit(t plumbing.ObjectType, size uint64, held bool) error {
	switch {
	case isMeta(t) && size > uint64(l.MaxMetaSize):
		return tooLarge("a commit, tree or tag", "MaxMetaSize", l.MaxMetaSize)
	case held && size > uint64(l.MaxDeltaSize):
		return tooLarge("an object that is a delta or a delta's base", "MaxDeltaSize", l.MaxDeltaSize)
	}
	return nil
}

// scanPack reads the pack from r once, in order, writing it to out as it
// is read: it records every entry (offset, CRC, the base of each delta),
// hashes every whole object as it streams, checks every size and the
// checksum, and refuses data after the pack. obs, when not nil, is shown
// the whole objects it wants; chk, when not nil, checks every whole
// commit, tree and tag (see verify.go).
func scanPack(r io.Reader, out io.Writer, lim Limits, spend *budget, obs *observer, chk *checker) (*scanned, error) {
	in := newPackIn(r, out, lim.MaxPackSize)
	var hdr [12]byte
	if _, err := io.ReadFull(in, hdr[:]); err != nil {
		return nil, corrupt("the pack header is missing or truncated")
	}
	if string(hdr[:4]) != "PACK" {
		return nil, corrupt("not a pack")
	}
	if v := binary.BigEndian.Uint32(hdr[4:8]); v != 2 && v != 3 {
		return nil, corrupt("unsupported pack version %d", v)
	}
	count := int64(binary.BigEndian.Uint32(hdr[8:12]))
	if count > lim.MaxObjects {
		return nil, tooLarge("the pack's object count", "MaxObjects", lim.MaxObjects)
	}
	s := &scanned{}
	f := &inflater{spend: spend}
	scratch := make([]byte, 32<<10)
	var deltaHdr bufio.Reader
	var content []byte
	for range count {
		if err := in.startEntry(); err != nil {
			return nil, err
		}
		off := uint64(in.total)
		t, size, err := objectHeader(in)
		if err != nil {
			return nil, truncated(err)
		}
		e := entry{off: off, base: -1, typ: t}
		switch t {
		case plumbing.OFSDeltaObject:
			d, err := ofsDistance(in)
			if err != nil {
				return nil, truncated(err)
			}
			if d == 0 || d > off {
				return nil, corrupt("a delta at offset %d names a base outside the pack", off)
			}
			b, ok := s.objs.byOffset(off - d)
			if !ok {
				return nil, corrupt("a delta at offset %d names no object as its base", off)
			}
			e.kind, e.base, e.typ = kindOfs, b, s.objs.at(b).typ
		case plumbing.REFDeltaObject:
			var h plumbing.Hash
			if _, err := io.ReadFull(in, h[:]); err != nil {
				return nil, truncated(err)
			}
			e.kind, e.typ = kindRef, plumbing.InvalidObject
			s.refs = append(s.refs, refBase{idx: int32(s.objs.len()), base: h})
		default:
			e.kind = kindWhole
			if err := lim.sizeLimit(t, size, false); err != nil {
				return nil, err
			}
		}
		if err := f.reset(in, size); err != nil {
			return nil, truncated(err)
		}
		if e.kind == kindWhole {
			h := plumbing.NewHasher(t, int64(size))
			var w io.Writer = h
			show := obs.wants(t, int64(size))
			check := chk != nil && isMeta(t)
			if show || check {
				content = content[:0]
				w = io.MultiWriter(h, appender{&content})
			}
			if err := f.drain(w, scratch); err != nil {
				return nil, truncated(err)
			}
			e.hash = h.Sum()
			if show {
				obs.show(e.hash, t, content)
			}
			if check {
				if err := chk.check(chk.log, t, content, e.hash); err != nil {
					return nil, err
				}
			}
		} else {
			// The delta's header says what it makes: refuse an
			// oversized result before it is ever applied.
			deltaHdr.Reset(onlyReader{f})
			_, dst, err := deltaHeader(&deltaHdr)
			if err != nil {
				return nil, truncated(err)
			}
			if err := lim.sizeLimit(e.typ, dst, false); err != nil {
				return nil, err
			}
			if dst > uint64(lim.MaxDeltaSize) {
				return nil, tooLarge("a delta's result", "MaxDeltaSize", lim.MaxDeltaSize)
			}
			if _, err := io.CopyBuffer(io.Discard, onlyReader{&deltaHdr}, scratch); err != nil {
				return nil, truncated(err)
			}
		}
		if e.crc, err = in.endEntry(); err != nil {
			return nil, err
		}
		s.objs.add(e)
	}
	if err := in.account(); err != nil {
		return nil, err
	}
	copy(s.checksum[:], in.sum.Sum(nil))
	in.hashing = false
	var trailer plumbing.Hash
	if _, err := io.ReadFull(in, trailer[:]); err != nil {
		return nil, corrupt("the pack's checksum is missing")
	}
	if trailer != s.checksum {
		return nil, corrupt("the pack's checksum does not match its content")
	}
	if err := in.account(); err != nil {
		return nil, err
	}
	s.size = in.total
	// Whatever follows the checksum (nothing, from a sane server) would
	// be stored too: refuse it.
	if in.r < in.w {
		return nil, corrupt("data follows the pack")
	}
	var one [1]byte
	if n, err := io.ReadFull(r, one[:]); n > 0 {
		return nil, corrupt("data follows the pack")
	} else if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return s, nil
}

// truncated maps the end of the stream inside an object to ErrCorrupt.
func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return corrupt("the pack is truncated")
	}
	return err
}

// appender is an io.Writer that appends to a slice.
type appender struct{ b *[]byte }

func (a appender) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}
