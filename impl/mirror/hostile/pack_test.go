package hostile

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"hash/adler32"
	"io"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

func TestDeltaOps(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"copy 64 KiB from 0 is one byte", CopyOp(0, 0x10000), []byte{0x80}},
		{"copy, all bytes", CopyOp(0x04030201, 0x070605), []byte{0xff, 1, 2, 3, 4, 5, 6, 7}},
		{"copy, sparse", CopyOp(0x00010000, 0x000100), []byte{0x80 | 0x04 | 0x20, 0x01, 0x01}},
		{"insert", InsertOp([]byte("ab")), []byte{2, 'a', 'b'}},
		{"header", DeltaHeader(0x80, 1), []byte{0x80, 0x01, 0x01}},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, tc.want)
		}
	}
	long := bytes.Repeat([]byte("z"), 300)
	if ops := InsertOp(long); len(ops) != 300+3 || ops[0] != 127 || ops[128] != 127 || ops[256] != 46 {
		t.Errorf("a 300-byte insert: %d bytes, ops %d %d %d", len(ops), ops[0], ops[128], ops[256])
	}

	// go-git applies them as git would.
	base := make([]byte, 0x20000)
	for i := range base {
		base[i] = byte(i)
	}
	d := Delta(uint64(len(base)), 0x10000+3+0x100,
		CopyOp(0, 0x10000), InsertOp([]byte("xyz")), CopyOp(0x10000, 0x100))
	out, err := packfile.PatchDelta(base, d)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte(nil), base[:0x10000]...), "xyz"...), base[0x10000:0x10100]...)
	if !bytes.Equal(out, want) {
		t.Errorf("patched delta differs")
	}
	di := measureDelta(d)
	if di.Err != nil || di.SrcSize != uint64(len(base)) || di.DstSize != uint64(len(want)) || di.ResultSize != uint64(len(want)) || di.Copies != 2 || di.Inserts != 1 {
		t.Errorf("measured %+v", di)
	}
}

func TestPackBuilderLies(t *testing.T) {
	blob := Blob([]byte("one\n"))
	build := func(f func(p *PackBuilder)) ([]byte, *PackBuilder) {
		p := NewPack()
		p.Add(blob)
		p.AddSized(Blob([]byte("two\n")), 1000)
		p.OfsDelta(0, Delta(4, 4, CopyOp(0, 4)))
		p.RefDelta(blob.Hash(), Delta(4, 1, InsertOp([]byte("!"))))
		p.Raw(5, 3, nil, []byte("not zlib"))
		f(p)
		return p.Bytes(), p
	}

	pack, p := build(func(p *PackBuilder) {})
	info, err := Inspect(pack)
	if err == nil {
		t.Fatalf("the invalid type-5 entry with bad zlib was read: %+v", info)
	}
	if info.Count != 5 || info.Version != 2 || len(info.Entries) != 4 {
		t.Fatalf("header %d/%d, %d entries read", info.Version, info.Count, len(info.Entries))
	}
	e := info.Entries
	for i := range e {
		if e[i].Offset != p.Offset(i) {
			t.Errorf("entry %d at %d, builder says %d", i, e[i].Offset, p.Offset(i))
		}
	}
	if e[0].Hash != blob.Hash() || e[0].Declared != 4 || e[0].Inflated != 4 {
		t.Errorf("entry 0: %+v", e[0])
	}
	if e[1].Declared != 1000 || e[1].Inflated != 4 {
		t.Errorf("lying entry: declared %d inflated %d", e[1].Declared, e[1].Inflated)
	}
	if e[2].Type != plumbing.OFSDeltaObject || e[2].BaseOffset != e[0].Offset || e[2].Depth != 1 || e[2].Delta.ResultSize != 4 {
		t.Errorf("ofs-delta: %+v %+v", e[2], e[2].Delta)
	}
	if e[3].Type != plumbing.REFDeltaObject || e[3].BaseHash != blob.Hash() || e[3].Depth != 1 {
		t.Errorf("ref-delta: %+v", e[3])
	}

	// Without the bad entry: count, checksum, trailer.
	clean := func(f func(p *PackBuilder)) []byte {
		p := NewPack()
		p.Add(blob)
		f(p)
		return p.Bytes()
	}
	for _, tc := range []struct {
		name              string
		pack              []byte
		count             uint32
		version           uint32
		hasSum, sumOK     bool
		trailing, entries int
		fails             bool
	}{
		{"correct", clean(func(p *PackBuilder) {}), 1, 2, true, true, 0, 1, false},
		{"count", clean(func(p *PackBuilder) { p.SetCount(7) }), 7, 2, false, false, 0, 1, true},
		{"version", clean(func(p *PackBuilder) { p.SetVersion(9) }), 1, 9, true, true, 0, 1, false},
		{"corrupt", clean(func(p *PackBuilder) { p.SetChecksum(ChecksumCorrupt) }), 1, 2, true, false, 0, 1, false},
		{"missing", clean(func(p *PackBuilder) { p.SetChecksum(ChecksumMissing) }), 1, 2, false, false, 0, 1, false},
		{"trailer", clean(func(p *PackBuilder) { p.SetTrailer([]byte("junk")) }), 1, 2, true, true, 4, 1, false},
	} {
		info, err := Inspect(tc.pack)
		if (err != nil) != tc.fails || info.Count != tc.count || info.Version != tc.version || info.HasChecksum != tc.hasSum ||
			info.ChecksumOK != tc.sumOK || info.Trailing != tc.trailing || len(info.Entries) != tc.entries {
			t.Errorf("%s: %+v, %v", tc.name, info, err)
		}
	}
	correct := clean(func(p *PackBuilder) {})
	sum := sha1.Sum(correct[:len(correct)-20])
	if !bytes.Equal(sum[:], correct[len(correct)-20:]) {
		t.Error("the checksum is not the SHA-1 of the pack")
	}
	if got := Truncate(correct, -20); !bytes.Equal(got, correct[:len(correct)-20]) {
		t.Error("Truncate(-20)")
	}
	if got := Truncate(correct, 5); string(got) != "PACK\x00" {
		t.Errorf("Truncate(5) = %q", got)
	}
}

func TestZlibRepeat(t *testing.T) {
	prefix := []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nmessage ")
	for _, n := range []int64{0, 1, 4096, 4097, repeatChunk + 4096, 3*repeatChunk + 4101} {
		z := zlibRepeat(prefix, 'a', n)
		zr, err := zlib.NewReader(bytes.NewReader(z)) // verifies the Adler-32 at the end
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		want := append(append([]byte(nil), prefix...), bytes.Repeat([]byte("a"), int(n))...)
		if !bytes.Equal(got, want) {
			t.Fatalf("n=%d: inflated %d bytes, want %d", n, len(got), len(want))
		}
		if h := hashRepeat(plumbing.CommitObject, prefix, 'a', n); h != plumbing.ComputeHash(plumbing.CommitObject, want) {
			t.Errorf("n=%d: hashRepeat %s", n, h)
		}
	}
	for _, n := range []int64{0, 1, 2, 65520, 65521, 65522, 1 << 20, 1<<20 + 1, 5_000_001} {
		data := append([]byte("prefix"), bytes.Repeat([]byte{0xfe}, int(n))...)
		if got, want := adlerRepeat(adler32.Checksum([]byte("prefix")), 0xfe, n), adler32.Checksum(data); got != want {
			t.Errorf("adlerRepeat n=%d: %08x, want %08x", n, got, want)
		}
	}
	// Stored blocks, for small data.
	for _, n := range []int{0, 1, storedMax} {
		data := bytes.Repeat([]byte{7}, n)
		zr, err := zlib.NewReader(bytes.NewReader(Zlib(data)))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, data) {
			t.Errorf("stored %d bytes: %v", n, err)
		}
	}
}

func TestEntryHeaderAndOfsEncoding(t *testing.T) {
	for _, size := range []uint64{0, 15, 16, 1 << 20, 1<<35 + 3} {
		b := entryHeader(nil, byte(plumbing.BlobObject), size)
		info, _, err := inspectEntry(append(b, Zlib(nil)...), 0)
		if err != nil || info.Declared != size || info.Type != plumbing.BlobObject {
			t.Errorf("size %d read back as %d (% x): %v", size, info.Declared, b, err)
		}
	}
	for _, d := range []uint64{0, 1, 127, 128, 16511, 16512, 1 << 30} {
		entry := append(entryHeader(nil, byte(plumbing.OFSDeltaObject), 1), ofsDistance(nil, d)...)
		info, _, err := inspectEntry(append(entry, Zlib([]byte{0})...), 0)
		if err != nil || info.BaseOffset != -int64(d) {
			t.Errorf("distance %d read back as %d (%v)", d, -info.BaseOffset, err)
		}
	}
}
