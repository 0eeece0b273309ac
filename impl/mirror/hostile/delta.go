package hostile

import "fmt"

// Delta instructions, as git's patch-delta reads them. A delta is
// DeltaHeader(source size, result size) followed by ops: CopyOp copies a
// range of the base, InsertOp inserts literal bytes. Nothing here checks
// that the ops agree with the header: that is the point.

// varint appends v as a delta-header size: 7 bits at a time, least
// significant first, the high bit set on every byte but the last.
func varint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// DeltaHeader returns the header of a delta: the size of its base and
// the size of its result.
func DeltaHeader(src, dst uint64) []byte { return varint(varint(nil, src), dst) }

// MaxCopy is the largest size one copy op can carry.
const MaxCopy = 0xffffff

// CopyOp returns the op copying size bytes of the base from offset.
// Only the non-zero bytes of offset and size are written, as git does;
// a size of 0x10000 is written with no size byte at all (git reads size 0
// as 0x10000), so CopyOp(0, 0x10000) is the single byte 0x80. size must
// be in 1..MaxCopy.
func CopyOp(offset uint32, size uint32) []byte {
	if size == 0 || size > MaxCopy {
		panic(fmt.Sprintf("hostile: copy size %d out of 1..%d", size, MaxCopy))
	}
	op := []byte{0x80}
	for i := range 4 {
		if c := byte(offset >> (8 * i)); c != 0 {
			op[0] |= 1 << i
			op = append(op, c)
		}
	}
	if size != 0x10000 {
		for i := range 3 {
			if c := byte(size >> (8 * i)); c != 0 {
				op[0] |= 0x10 << i
				op = append(op, c)
			}
		}
	}
	return op
}

// InsertOp returns ops inserting data: one op per 127 bytes (an insert
// op carries 1 to 127 bytes). Empty data gives no op (the byte 0 is
// reserved; write it by hand to test that).
func InsertOp(data []byte) []byte {
	var out []byte
	for len(data) > 0 {
		n := min(len(data), 0x7f)
		out = append(out, byte(n))
		out = append(out, data[:n]...)
		data = data[n:]
	}
	return out
}

// Delta concatenates a header and ops.
func Delta(src, dst uint64, ops ...[]byte) []byte {
	d := DeltaHeader(src, dst)
	for _, op := range ops {
		d = append(d, op...)
	}
	return d
}
