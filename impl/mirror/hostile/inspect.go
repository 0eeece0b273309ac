package hostile

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
)

// PackInfo is what Inspect read of a pack.
type PackInfo struct {
	Version, Count uint32 // as the header declares them
	Entries        []EntryInfo
	// HasChecksum reports that 20 bytes followed the entries; ChecksumOK
	// that they are the SHA-1 of the bytes before them.
	HasChecksum, ChecksumOK bool
	Trailing                int // bytes after the checksum
}

// EntryInfo describes one entry of a pack.
type EntryInfo struct {
	Offset   int64
	Type     plumbing.ObjectType // the header's type, valid or not
	Declared uint64              // the size the header declares
	Inflated int64               // the size of what the entry's zlib stream holds
	// Hash is the id of a whole object of at most maxInspectHash bytes
	// (of what was inflated, with its real size); zero otherwise.
	Hash plumbing.Hash
	// BaseOffset is an ofs-delta's base offset (it may be negative, this
	// entry's own offset, or not an entry's offset at all).
	BaseOffset int64
	BaseHash   plumbing.Hash // a ref-delta's base
	// Depth is the number of deltas from this entry down to a whole
	// object through ofs-deltas (and ref-deltas to whole objects of the
	// pack); 0 for a whole object or when the chain breaks.
	Depth int
	Delta *DeltaInfo // for deltas
}

// DeltaInfo is what a delta's instructions say, computed without
// applying them.
type DeltaInfo struct {
	SrcSize, DstSize uint64 // declared by the delta header
	ResultSize       uint64 // the sum of the sizes the ops produce
	Copies, Inserts  int
	Err              error // a malformed op, if any (the sums stop there)
}

// maxInspectHash bounds the whole objects Inspect hashes, and the delta
// data it parses.
const maxInspectHash = 16 << 20

// Inspect reads a pack without trusting it: no allocation follows a
// declared count or size, deltas are measured and never applied. It
// returns what it could read and, when the pack is malformed or
// truncated, an error saying where.
func Inspect(pack []byte) (*PackInfo, error) {
	if len(pack) < 12 {
		return &PackInfo{}, fmt.Errorf("pack of %d bytes has no header", len(pack))
	}
	info := &PackInfo{Version: binary.BigEndian.Uint32(pack[4:8]), Count: binary.BigEndian.Uint32(pack[8:12])}
	if string(pack[:4]) != "PACK" {
		return info, fmt.Errorf("no PACK signature: %q", pack[:4])
	}
	byOffset := map[int64]int{}
	byHash := map[plumbing.Hash]int{}
	pos := int64(12)
	for i := uint32(0); i < info.Count; i++ {
		e, next, err := inspectEntry(pack, pos)
		if err != nil {
			return info, fmt.Errorf("entry %d at offset %d: %w", i, pos, err)
		}
		if e.Type == plumbing.OFSDeltaObject {
			if b, ok := byOffset[e.BaseOffset]; ok && b != len(info.Entries) {
				e.Depth = info.Entries[b].Depth + 1
			}
		} else if e.Type == plumbing.REFDeltaObject {
			if _, ok := byHash[e.BaseHash]; ok {
				e.Depth = 1
			}
		}
		byOffset[pos] = len(info.Entries)
		if !e.Hash.IsZero() {
			byHash[e.Hash] = len(info.Entries)
		}
		info.Entries = append(info.Entries, e)
		pos = next
	}
	rest := int64(len(pack)) - pos
	if rest >= 20 {
		info.HasChecksum = true
		sum := sha1.Sum(pack[:pos])
		info.ChecksumOK = bytes.Equal(sum[:], pack[pos:pos+20])
		info.Trailing = int(rest - 20)
	} else if rest > 0 {
		info.Trailing = int(rest)
	}
	return info, nil
}

func inspectEntry(pack []byte, pos int64) (EntryInfo, int64, error) {
	e := EntryInfo{Offset: pos}
	p := pos
	next := func() (byte, error) {
		if p >= int64(len(pack)) {
			return 0, io.ErrUnexpectedEOF
		}
		p++
		return pack[p-1], nil
	}
	c, err := next()
	if err != nil {
		return e, 0, err
	}
	e.Type = plumbing.ObjectType(c >> 4 & 7)
	e.Declared = uint64(c & 0x0f)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if c, err = next(); err != nil {
			return e, 0, err
		}
		if shift > 63 {
			return e, 0, errors.New("entry size overflows 64 bits")
		}
		e.Declared |= uint64(c&0x7f) << shift
	}
	switch e.Type {
	case plumbing.OFSDeltaObject:
		if c, err = next(); err != nil {
			return e, 0, err
		}
		d := uint64(c & 0x7f)
		for c&0x80 != 0 {
			if c, err = next(); err != nil {
				return e, 0, err
			}
			d = (d+1)<<7 | uint64(c&0x7f)
		}
		e.BaseOffset = pos - int64(d)
	case plumbing.REFDeltaObject:
		if p+20 > int64(len(pack)) {
			return e, 0, io.ErrUnexpectedEOF
		}
		copy(e.BaseHash[:], pack[p:p+20])
		p += 20
	}
	br := bytes.NewReader(pack[p:])
	zr, err := zlib.NewReader(br)
	if err != nil {
		return e, 0, fmt.Errorf("zlib: %w", err)
	}
	delta := e.Type == plumbing.OFSDeltaObject || e.Type == plumbing.REFDeltaObject
	var keep bytes.Buffer
	n, err := io.Copy(&capWriter{w: &keep, left: maxInspectHash}, zr)
	e.Inflated = n
	if err != nil {
		return e, 0, fmt.Errorf("zlib: %w", err)
	}
	switch {
	case delta && n <= maxInspectHash:
		e.Delta = measureDelta(keep.Bytes())
	case delta:
		e.Delta = &DeltaInfo{Err: fmt.Errorf("delta data of %d bytes not measured", n)}
	case n <= maxInspectHash && e.Type >= plumbing.CommitObject && e.Type <= plumbing.TagObject:
		e.Hash = plumbing.ComputeHash(e.Type, keep.Bytes())
	}
	return e, p + int64(len(pack[p:])-br.Len()), nil
}

// capWriter keeps at most left bytes and counts (and discards) the rest.
type capWriter struct {
	w    io.Writer
	left int64
}

func (c *capWriter) Write(b []byte) (int, error) {
	if c.left > 0 {
		k := min(int64(len(b)), c.left)
		c.left -= k
		if _, err := c.w.Write(b[:k]); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// measureDelta reads a delta's header and ops.
func measureDelta(d []byte) *DeltaInfo {
	di := &DeltaInfo{}
	p := 0
	uv := func() (uint64, bool) {
		var v uint64
		for shift := 0; p < len(d) && shift < 64; shift += 7 {
			c := d[p]
			p++
			v |= uint64(c&0x7f) << shift
			if c&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	var ok bool
	if di.SrcSize, ok = uv(); !ok {
		di.Err = errors.New("truncated delta header")
		return di
	}
	if di.DstSize, ok = uv(); !ok {
		di.Err = errors.New("truncated delta header")
		return di
	}
	for p < len(d) {
		cmd := d[p]
		p++
		switch {
		case cmd&0x80 != 0:
			var off, size uint64
			for i := range 4 {
				if cmd&(1<<i) != 0 {
					if p >= len(d) {
						di.Err = errors.New("truncated copy op")
						return di
					}
					off |= uint64(d[p]) << (8 * i)
					p++
				}
			}
			for i := range 3 {
				if cmd&(0x10<<i) != 0 {
					if p >= len(d) {
						di.Err = errors.New("truncated copy op")
						return di
					}
					size |= uint64(d[p]) << (8 * i)
					p++
				}
			}
			if size == 0 {
				size = 0x10000
			}
			if off+size > di.SrcSize && di.Err == nil {
				di.Err = fmt.Errorf("copy op %d+%d beyond the declared base of %d bytes", off, size, di.SrcSize)
			}
			di.ResultSize += size
			di.Copies++
		case cmd != 0:
			if p+int(cmd) > len(d) {
				di.Err = errors.New("truncated insert op")
				return di
			}
			p += int(cmd)
			di.ResultSize += uint64(cmd)
			di.Inserts++
		default:
			di.Err = errors.New("reserved delta op 0")
			return di
		}
	}
	return di
}
