package gittest

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os/exec"
	"strconv"
)

// Pack entry types (gitformat-pack).
const (
	packCommit   = 1
	packBlob     = 3
	packOfsDelta = 6
)

// DeltaPack stores a pack (with `git index-pack --stdin`) of two objects
// of type typ ("commit" or "blob"): base, and target, which is base
// followed by n bytes fill. target is stored as a delta on base that
// copies base and then inserts fill 127 bytes at a time, so the delta is
// a little larger than target itself while the pack stays small (fill
// compresses). git's own packer never writes such a delta (it keeps a
// delta only when it is much smaller than its object); a remote may send
// one, and git keeps it as sent. It returns the two object ids. Nothing
// of size n is held in memory.
func (r *Repo) DeltaPack(typ string, base []byte, n int64, fill byte) (baseID, targetID string) {
	r.t.Helper()
	var code byte
	switch typ {
	case "commit":
		code = packCommit
	case "blob":
		code = packBlob
	default:
		r.t.Fatalf("DeltaPack: type %q", typ)
	}
	if n <= 0 || len(base) == 0 || len(base) >= 1<<16 {
		r.t.Fatalf("DeltaPack: n=%d, base of %d bytes", n, len(base))
	}

	cmd := exec.Command("git", "index-pack", "--stdin")
	cmd.Dir = r.Dir
	cmd.Env = r.Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	sum := sha1.New()
	w := io.MultiWriter(stdin, sum)
	write := func(p []byte) {
		if _, err := w.Write(p); err != nil {
			r.t.Fatalf("DeltaPack: write: %v\n%s", err, stderr.String())
		}
	}
	write([]byte("PACK"))
	write(binary.BigEndian.AppendUint32(nil, 2))
	write(binary.BigEndian.AppendUint32(nil, 2))

	// The base, whole, at offset 12 (right after the pack header).
	baseHeader := entryHeader(code, int64(len(base)))
	baseData := deflate(r, func(zw io.Writer) { zw.Write(base) })
	write(baseHeader)
	write(baseData)

	// The target, as an offset delta on the base.
	targetSize := int64(len(base)) + n
	var delta bytes.Buffer
	delta.Write(leb128(int64(len(base))))
	delta.Write(leb128(targetSize))
	delta.Write([]byte{0x80 | 0x10 | 0x20, byte(len(base)), byte(len(base) >> 8)}) // copy base[0:len(base)]
	inserts := (n + 126) / 127
	deltaSize := int64(delta.Len()) + inserts + n
	write(entryHeader(packOfsDelta, deltaSize))
	write(ofsDelta(int64(len(baseHeader) + len(baseData))))
	write(deflate(r, func(zw io.Writer) {
		zw.Write(delta.Bytes())
		chunk := append([]byte{127}, bytes.Repeat([]byte{fill}, 127)...)
		for left := n; left > 0; left -= 127 {
			if left < 127 {
				chunk = chunk[:1+left]
				chunk[0] = byte(left)
			}
			zw.Write(chunk)
		}
	}))
	if _, err := stdin.Write(sum.Sum(nil)); err != nil {
		r.t.Fatal(err)
	}
	if err := stdin.Close(); err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		r.t.Fatalf("git index-pack: %v\n%s", err, stderr.String())
	}

	baseID = objectID(typ, int64(len(base)), func(h io.Writer) { h.Write(base) })
	targetID = objectID(typ, targetSize, func(h io.Writer) {
		h.Write(base)
		chunk := bytes.Repeat([]byte{fill}, 1<<16)
		for left := n; left > 0; left -= int64(len(chunk)) {
			h.Write(chunk[:min(left, int64(len(chunk)))])
		}
	})
	for _, id := range []string{baseID, targetID} {
		if got := r.Git("cat-file", "-t", id); got != typ {
			r.t.Fatalf("DeltaPack: %s is a %q, want %q", id, got, typ)
		}
	}
	if got := r.Git("cat-file", "-s", targetID); got != strconv.FormatInt(targetSize, 10) {
		r.t.Fatalf("DeltaPack: %s has %s bytes, want %d", targetID, got, targetSize)
	}
	if got, err := r.RunStdin(r.Dir, targetID+"\n", "cat-file", "--batch-check=%(deltabase)"); err != nil || got != baseID {
		r.t.Fatalf("DeltaPack: %s is stored as a delta on %q (%v), want on %s", targetID, got, err, baseID)
	}
	return baseID, targetID
}

// entryHeader is a pack entry's type and size.
func entryHeader(typ byte, size int64) []byte {
	b := []byte{typ<<4 | byte(size&15)}
	size >>= 4
	for size > 0 {
		b[len(b)-1] |= 0x80
		b = append(b, byte(size&0x7f))
		size >>= 7
	}
	return b
}

// ofsDelta encodes an offset delta's distance back to its base.
func ofsDelta(d int64) []byte {
	b := []byte{byte(d & 0x7f)}
	for d >>= 7; d > 0; d >>= 7 {
		d--
		b = append([]byte{0x80 | byte(d&0x7f)}, b...)
	}
	return b
}

// leb128 is a delta header's size: 7 bits a byte, least significant first.
func leb128(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// deflate returns what f writes, zlib-compressed.
func deflate(r *Repo, f func(io.Writer)) []byte {
	var buf bytes.Buffer
	zw, err := zlib.NewWriterLevel(&buf, zlib.BestSpeed)
	if err != nil {
		r.t.Fatal(err)
	}
	f(zw)
	if err := zw.Close(); err != nil {
		r.t.Fatal(err)
	}
	return buf.Bytes()
}

// objectID is git's id of an object of type typ and size whose content f
// writes.
func objectID(typ string, size int64, f func(io.Writer)) string {
	var h hash.Hash = sha1.New()
	fmt.Fprintf(h, "%s %d\x00", typ, size)
	f(h)
	return hex.EncodeToString(h.Sum(nil))
}
