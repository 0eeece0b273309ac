package hostile

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
)

// Checksum says how a PackBuilder ends a pack.
type Checksum int

const (
	// ChecksumCorrect is the SHA-1 of everything before it.
	ChecksumCorrect Checksum = iota
	// ChecksumCorrupt is the correct checksum with every bit of its
	// last byte flipped.
	ChecksumCorrupt
	// ChecksumMissing writes no checksum at all.
	ChecksumMissing
)

// PackBuilder writes a pack (version 2) byte for byte: entries in the
// order added, each with the type, declared size and compressed bytes it
// is given. Every field a reader might trust can be made to lie: the
// header's count (SetCount), an entry's declared size (AddSized, Raw), a
// delta's base (OfsDeltaDistance, RefDelta), the checksum (SetChecksum);
// and bytes can follow the checksum (SetTrailer). The zero value is not
// usable: use NewPack.
type PackBuilder struct {
	entries  []packEntry
	count    *uint32
	version  uint32
	checksum Checksum
	trailer  []byte
	offsets  []int64 // of the last Bytes
}

type packEntry struct {
	typ      byte   // the 3-bit type of the entry header
	declared uint64 // the size in the entry header
	base     int    // for an ofs-delta to another entry, its index; else -1
	distance uint64 // for an ofs-delta given by distance (byDistance)
	byDist   bool
	between  []byte // written between the header and the data (a ref-delta's base id)
	z        []byte // the compressed data
	id       plumbing.Hash
}

// NewPack returns an empty pack builder.
func NewPack() *PackBuilder { return &PackBuilder{version: 2} }

// Add appends a whole object and returns its entry index.
func (p *PackBuilder) Add(o Object) int {
	return p.add(packEntry{typ: byte(o.Type), declared: uint64(len(o.Data)), base: -1, z: Zlib(o.Data), id: o.Hash()})
}

// AddSized appends a whole object whose header declares size declared,
// whatever its real size.
func (p *PackBuilder) AddSized(o Object, declared uint64) int {
	return p.add(packEntry{typ: byte(o.Type), declared: declared, base: -1, z: Zlib(o.Data), id: o.Hash()})
}

// AddCompressed appends a whole object of type t given as compressed
// bytes z (see Zlib), declaring size declared. id is what Hash reports
// for the entry (the caller knows it, or leaves it zero).
func (p *PackBuilder) AddCompressed(t plumbing.ObjectType, declared uint64, z []byte, id plumbing.Hash) int {
	return p.add(packEntry{typ: byte(t), declared: declared, base: -1, z: z, id: id})
}

// OfsDelta appends an ofs-delta whose base is entry base (added before
// it) and whose instructions are delta.
func (p *PackBuilder) OfsDelta(base int, delta []byte) int {
	if base < 0 || base >= len(p.entries) {
		panic(fmt.Sprintf("hostile: ofs-delta base %d is not an earlier entry (use OfsDeltaDistance)", base))
	}
	return p.add(packEntry{typ: byte(plumbing.OFSDeltaObject), declared: uint64(len(delta)), base: base, z: Zlib(delta)})
}

// OfsDeltaCompressed appends an ofs-delta on entry base whose
// instructions are given compressed (z), declaring size declared.
func (p *PackBuilder) OfsDeltaCompressed(base int, declared uint64, z []byte) int {
	if base < 0 || base >= len(p.entries) {
		panic(fmt.Sprintf("hostile: ofs-delta base %d is not an earlier entry", base))
	}
	return p.add(packEntry{typ: byte(plumbing.OFSDeltaObject), declared: declared, base: base, z: z})
}

// OfsDeltaDistance appends an ofs-delta whose base is distance bytes
// before the entry's own offset, whatever is there: 0 is the entry
// itself, more than the entry's offset is before the pack's first byte.
func (p *PackBuilder) OfsDeltaDistance(distance uint64, delta []byte) int {
	return p.add(packEntry{typ: byte(plumbing.OFSDeltaObject), declared: uint64(len(delta)), base: -1, distance: distance, byDist: true, z: Zlib(delta)})
}

// RefDelta appends a ref-delta whose base is the object with id base
// (in the pack, or not: a thin pack).
func (p *PackBuilder) RefDelta(base plumbing.Hash, delta []byte) int {
	return p.add(packEntry{typ: byte(plumbing.REFDeltaObject), declared: uint64(len(delta)), base: -1, between: base[:], z: Zlib(delta)})
}

// Raw appends an entry of any 3-bit type (0 and 5 are invalid), declared
// size, bytes written between the header and the data (a ref-delta's base
// id, an ofs-delta's offset, or anything), and compressed data z (valid
// zlib or not).
func (p *PackBuilder) Raw(typ byte, declared uint64, between, z []byte) int {
	return p.add(packEntry{typ: typ & 7, declared: declared, base: -1, between: between, z: z})
}

func (p *PackBuilder) add(e packEntry) int {
	p.entries = append(p.entries, e)
	return len(p.entries) - 1
}

// SetCount makes the header claim n objects instead of the number of
// entries.
func (p *PackBuilder) SetCount(n uint32) { p.count = &n }

// SetVersion sets the header's version (2 by default; git reads 2 and 3).
func (p *PackBuilder) SetVersion(v uint32) { p.version = v }

// SetChecksum chooses how the pack ends.
func (p *PackBuilder) SetChecksum(c Checksum) { p.checksum = c }

// SetTrailer sets bytes written after the checksum.
func (p *PackBuilder) SetTrailer(b []byte) { p.trailer = append([]byte(nil), b...) }

// Len returns the number of entries.
func (p *PackBuilder) Len() int { return len(p.entries) }

// Hash returns the id of entry i when it is a whole object added with
// Add or AddSized (or AddCompressed with an id), else the zero hash.
func (p *PackBuilder) Hash(i int) plumbing.Hash { return p.entries[i].id }

// Offset returns the offset of entry i in the pack (the same whatever
// the checksum and trailer).
func (p *PackBuilder) Offset(i int) int64 {
	if len(p.offsets) != len(p.entries) {
		p.Bytes()
	}
	return p.offsets[i]
}

// Bytes writes the pack.
func (p *PackBuilder) Bytes() []byte {
	count := uint32(len(p.entries))
	if p.count != nil {
		count = *p.count
	}
	b := []byte("PACK")
	b = binary.BigEndian.AppendUint32(b, p.version)
	b = binary.BigEndian.AppendUint32(b, count)
	p.offsets = p.offsets[:0]
	for _, e := range p.entries {
		off := int64(len(b))
		p.offsets = append(p.offsets, off)
		b = entryHeader(b, e.typ, e.declared)
		switch {
		case e.typ == byte(plumbing.OFSDeltaObject) && e.base >= 0:
			b = ofsDistance(b, uint64(off-p.offsets[e.base]))
		case e.byDist:
			b = ofsDistance(b, e.distance)
		}
		b = append(b, e.between...)
		b = append(b, e.z...)
	}
	sum := sha1.Sum(b)
	switch p.checksum {
	case ChecksumCorrect:
		b = append(b, sum[:]...)
	case ChecksumCorrupt:
		sum[len(sum)-1] ^= 0xff
		b = append(b, sum[:]...)
	}
	return append(b, p.trailer...)
}

// entryHeader appends an entry header: type and size, 4 bits of size in
// the first byte, then 7 bits a byte.
func entryHeader(b []byte, typ byte, size uint64) []byte {
	c := typ<<4 | byte(size&0x0f)
	size >>= 4
	for size > 0 {
		b = append(b, c|0x80)
		c = byte(size & 0x7f)
		size >>= 7
	}
	return append(b, c)
}

// ofsDistance appends an ofs-delta's base distance in git's encoding
// (big-endian 7-bit groups, each continued group biased by one).
func ofsDistance(b []byte, d uint64) []byte {
	var buf [10]byte
	i := len(buf) - 1
	buf[i] = byte(d & 0x7f)
	for d >>= 7; d > 0; d >>= 7 {
		d--
		i--
		buf[i] = 0x80 | byte(d&0x7f)
	}
	return append(b, buf[i:]...)
}

// Truncate returns the first n bytes of pack (a copy); a negative n
// counts from the end: Truncate(p, -1) drops the last byte.
func Truncate(pack []byte, n int) []byte {
	if n < 0 {
		n += len(pack)
	}
	n = max(0, min(n, len(pack)))
	return append([]byte(nil), pack[:n]...)
}
