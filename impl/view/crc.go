package view

// CRC-32 (IEEE) of a concatenation from the CRCs of its parts, so that the
// gzip trailer of a view is computed from per-chunk CRCs kept with the
// compressed chunks instead of by reading the whole view again. The
// arithmetic is over GF(2) polynomials modulo the CRC polynomial, in the
// reflected bit order of CRC-32: appending n zero bytes to a message
// multiplies its CRC register by x^(8n).

const crcPoly = 0xedb88320 // x^32 + ... + 1, reflected

// multModP multiplies a and b modulo the CRC polynomial (reflected: bit 31
// is x^0).
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// x2n[k] is x^(2^k) modulo the polynomial.
var x2n = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	for k := range t {
		t[k] = p
		p = multModP(p, p)
	}
	return t
}()

// xPow8n is x^(8n) modulo the polynomial.
func xPow8n(n int64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; k, n = k+1, n>>1 {
		if n&1 != 0 {
			p = multModP(x2n[k%32], p)
		}
	}
	return p
}

// crcCombine returns the CRC-32 of a ++ b from crcA = CRC-32(a), crcB =
// CRC-32(b) and lenB = len(b).
func crcCombine(crcA, crcB uint32, lenB int64) uint32 {
	return multModP(xPow8n(lenB), crcA) ^ crcB
}
