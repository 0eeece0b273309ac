package hostile

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"hash/adler32"

	"github.com/go-git/go-git/v5/plumbing"
)

// Zlib compresses data as a pack entry is compressed: zlib, best
// compression; data of at most storedMax bytes is stored in one
// uncompressed deflate block instead (as small, and far cheaper than
// setting up a compressor: DeepChain has 20,000 such entries).
func Zlib(data []byte) []byte {
	if len(data) <= storedMax {
		return zlibStored(data)
	}
	var b bytes.Buffer
	w, err := zlib.NewWriterLevel(&b, zlib.BestCompression)
	if err != nil {
		panic(err)
	}
	_, _ = w.Write(data)
	if err := w.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

const storedMax = 64

// zlibStored returns the zlib stream of data (at most 65535 bytes) as one
// final stored block.
func zlibStored(data []byte) []byte {
	n := uint16(len(data))
	b := []byte{0x78, 0x01, 0x01, byte(n), byte(n >> 8), byte(^n), byte(^n >> 8)}
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, adler32.Checksum(data))
}

// repeatChunk is the size of the pieces zlibRepeat compresses.
const repeatChunk = 1 << 20

// zlibRepeat returns the zlib stream of prefix followed by n bytes c,
// without compressing n bytes: a piece of repeatChunk bytes c, compressed
// once with the byte c as its dictionary (so its matches reach back only
// over bytes c), is repeated as often as needed. Each piece ends with a
// sync flush, so pieces are byte-aligned deflate blocks; the last one is
// final. The Adler-32 of the whole is computed in closed form. 64 MiB of
// one byte come out at about 64 KiB, like zlib's own best compression.
func zlibRepeat(prefix []byte, c byte, n int64) []byte {
	var out bytes.Buffer
	out.Write([]byte{0x78, 0xda}) // zlib header: deflate, 32 KiB window, best compression
	head := min(n, 4096)
	w, _ := flate.NewWriter(&out, flate.BestCompression)
	_, _ = w.Write(prefix)
	_, _ = w.Write(bytes.Repeat([]byte{c}, int(head)))
	rest := n - head
	if rest == 0 {
		_ = w.Close()
	} else {
		_ = w.Flush()
		if full := rest / repeatChunk; full > 0 {
			var piece bytes.Buffer
			pw, _ := flate.NewWriterDict(&piece, flate.BestCompression, []byte{c})
			_, _ = pw.Write(bytes.Repeat([]byte{c}, repeatChunk))
			_ = pw.Flush()
			for range full {
				out.Write(piece.Bytes())
			}
		}
		tw, _ := flate.NewWriterDict(&out, flate.BestCompression, []byte{c})
		_, _ = tw.Write(bytes.Repeat([]byte{c}, int(rest%repeatChunk)))
		_ = tw.Close()
	}
	out.Write(binary.BigEndian.AppendUint32(nil, adlerRepeat(adler32.Checksum(prefix), c, n)))
	return out.Bytes()
}

const adlerMod = 65521

// adlerRepeat extends the Adler-32 sum of some data by n bytes c.
func adlerRepeat(sum uint32, c byte, n int64) uint32 {
	a, b := uint64(sum&0xffff), uint64(sum>>16)
	nm := uint64(n) % adlerMod
	// n(n+1)/2 mod M, without overflow.
	var tri uint64
	if n%2 == 0 {
		tri = (uint64(n/2) % adlerMod) * (uint64(n+1) % adlerMod) % adlerMod
	} else {
		tri = nm * (uint64((n+1)/2) % adlerMod) % adlerMod
	}
	b = (b + nm*a + uint64(c)*tri) % adlerMod
	a = (a + nm*uint64(c)) % adlerMod
	return uint32(b<<16 | a)
}

// hashRepeat returns the id of an object of type t whose content is
// prefix followed by n bytes c, hashing it in pieces (crypto/sha1: git's
// SHA-1, without holding the content).
func hashRepeat(t plumbing.ObjectType, prefix []byte, c byte, n int64) plumbing.Hash {
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", t, int64(len(prefix))+n)
	h.Write(prefix)
	piece := bytes.Repeat([]byte{c}, int(min(n, repeatChunk)))
	for left := n; left > 0; left -= int64(len(piece)) {
		if left < int64(len(piece)) {
			piece = piece[:left]
		}
		h.Write(piece)
	}
	var id plumbing.Hash
	copy(id[:], h.Sum(nil))
	return id
}
