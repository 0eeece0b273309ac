package mirror

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// This file applies git's delta format (pack objects of type OFS_DELTA and
// REF_DELTA) without trusting a single number in it:
//
//	delta  = size(src) size(dst) op*
//	size   = little-endian base-128 varint
//	op     = 1xxxxxxx [offset bytes] [size bytes]   copy from the base
//	       | 0nnnnnnn n bytes                        insert (n = 1..127)
//
// The declared source size must equal the base's length and the declared
// result size must fit the caller's limit before anything is allocated;
// every copy must lie inside the base; the ops must produce exactly the
// declared result size. The result is written to a writer as it is made,
// so a caller that only needs its hash never holds it.

// errBadDelta wraps every malformed delta.
var errBadDelta = errors.New("malformed delta")

// maxVarintBytes bounds a delta header's size varints: 64-bit sizes take
// at most 10 bytes.
const maxVarintBytes = 10

// deltaHeader reads the two sizes at the start of a delta.
func deltaHeader(r io.ByteReader) (src, dst uint64, err error) {
	if src, err = deltaVarint(r); err != nil {
		return 0, 0, err
	}
	if dst, err = deltaVarint(r); err != nil {
		return 0, 0, err
	}
	return src, dst, nil
}

func deltaVarint(r io.ByteReader) (uint64, error) {
	var v uint64
	for i := 0; i < maxVarintBytes; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("%w: truncated header", errBadDelta)
		}
		if i == maxVarintBytes-1 && c > 1 {
			return 0, fmt.Errorf("%w: size overflows 64 bits", errBadDelta)
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: size overflows 64 bits", errBadDelta)
}

// applyDelta reads the ops of a delta (after its header) from r and writes
// the result, exactly dst bytes, to out. base is the source object. The
// ops are read to the end of r: anything after the last op that does not
// belong to one is an error, as are ops that write past dst or stop short
// of it.
func applyDelta(base []byte, r *bufio.Reader, dst uint64, out io.Writer) error {
	var written uint64
	var lit [127]byte
	for {
		op, err := r.ReadByte()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch {
		case op&0x80 != 0: // copy from base
			var off, n uint64
			for i := uint(0); i < 4; i++ {
				if op&(1<<i) != 0 {
					b, err := r.ReadByte()
					if err != nil {
						return fmt.Errorf("%w: truncated copy", errBadDelta)
					}
					off |= uint64(b) << (8 * i)
				}
			}
			for i := uint(0); i < 3; i++ {
				if op&(0x10<<i) != 0 {
					b, err := r.ReadByte()
					if err != nil {
						return fmt.Errorf("%w: truncated copy", errBadDelta)
					}
					n |= uint64(b) << (8 * i)
				}
			}
			if n == 0 {
				n = 0x10000
			}
			if off+n > uint64(len(base)) {
				return fmt.Errorf("%w: copy of %d bytes at %d outside a base of %d", errBadDelta, n, off, len(base))
			}
			if written+n > dst {
				return fmt.Errorf("%w: ops write more than the declared %d bytes", errBadDelta, dst)
			}
			if _, err := out.Write(base[off : off+n]); err != nil {
				return err
			}
			written += n
		case op != 0: // insert
			n := uint64(op)
			if written+n > dst {
				return fmt.Errorf("%w: ops write more than the declared %d bytes", errBadDelta, dst)
			}
			if _, err := io.ReadFull(r, lit[:n]); err != nil {
				return fmt.Errorf("%w: truncated insert", errBadDelta)
			}
			if _, err := out.Write(lit[:n]); err != nil {
				return err
			}
			written += n
		default:
			return fmt.Errorf("%w: reserved op 0", errBadDelta)
		}
	}
	if written != dst {
		return fmt.Errorf("%w: ops write %d bytes, the header declares %d", errBadDelta, written, dst)
	}
	return nil
}
