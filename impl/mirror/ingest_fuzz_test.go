package mirror

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
)

// fuzzLimits are small, so that a fuzzed input cannot make an iteration
// expensive: what the limits are for.
var fuzzLimits = Limits{MaxPackSize: 1 << 20, MaxObjects: 4096, MaxInflated: 8 << 20, MaxMetaSize: 64 << 10, MaxDeltaSize: 1 << 20, MaxDeltaDepth: 64}

// receiveFuzzed runs receivePack on data and checks what every outcome
// must satisfy: an error is ErrCorrupt or ErrTooLarge and leaves nothing
// in the pack directory; a success leaves exactly one pack and an index
// that go-git reads, with as many objects as the pack.
func receiveFuzzed(t *testing.T, r io.Reader) {
	packDir := filepath.Join(t.TempDir(), "objects", "pack")
	if err := os.MkdirAll(packDir, 0o755); err != nil {
		t.Fatal(err)
	}
	np, err := receivePack(packDir, r, receiveOpts{lim: fuzzLimits, verify: true})
	entries, _ := os.ReadDir(packDir)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("receivePack: %v is neither ErrCorrupt nor ErrTooLarge", err)
		}
		if len(entries) != 0 {
			t.Fatalf("a refused pack left %d files", len(entries))
		}
		return
	}
	if len(entries) != 2 {
		t.Fatalf("an accepted pack left %d files, want .pack and .idx", len(entries))
	}
	f, err := os.Open(filepath.Join(packDir, "pack-"+np.hash.String()+".idx"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(f).Decode(idx); err != nil {
		t.Fatalf("the index does not decode: %v", err)
	}
	pf, err := os.Open(filepath.Join(packDir, "pack-"+np.hash.String()+".pack"))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	_, count, err := packfile.NewScanner(pf).Header()
	if n, _ := idx.Count(); err != nil || n != int64(count) {
		t.Fatalf("the index holds %d objects, the pack %d (%v)", n, count, err)
	}
}

// FuzzReceivePack: no pack, however malformed, panics the parser, makes
// it exceed its limits, or leaves anything behind when refused.
func FuzzReceivePack(f *testing.F) {
	f.Add([]byte("PACK\x00\x00\x00\x02\xff\xff\xff\xff"))
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) { receiveFuzzed(t, bytes.NewReader(data)) })
}

// FuzzApplyDelta: the delta applier never panics, never writes more or
// other than the header declares, and agrees with go-git's where both
// accept a delta.
func FuzzApplyDelta(f *testing.F) {
	f.Add([]byte("hello, world\n"), []byte{13, 13, 0x90, 13})                         // copy all
	f.Add([]byte("hello, world\n"), []byte{13, 5, 4, 'a', 'b', 'c', 'd', 0x91, 1, 1}) // insert, copy at 1
	f.Add([]byte("abc"), []byte{3, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, base, delta []byte) {
		br := bufio.NewReader(bytes.NewReader(delta))
		src, dst, err := deltaHeader(br)
		if err != nil {
			return
		}
		if src != uint64(len(base)) || dst > 1<<20 {
			return // refused before applying: the caller's checks
		}
		var out bytes.Buffer
		err = applyDelta(base, br, dst, &out)
		if err != nil {
			if !errors.Is(err, errBadDelta) {
				t.Fatalf("applyDelta: %v is not errBadDelta", err)
			}
			return
		}
		if uint64(out.Len()) != dst {
			t.Fatalf("wrote %d bytes, the header declares %d", out.Len(), dst)
		}
		if theirs, gerr := packfile.PatchDelta(base, delta); gerr == nil && !bytes.Equal(theirs, out.Bytes()) {
			t.Fatalf("go-git applies the delta to %q, this applier to %q", theirs, out.Bytes())
		}
	})
}

// FuzzAdvertisement: a ref advertisement, however malformed, read as a
// session reads it (through advertFilter, then go-git's decoder), never
// panics; the table made from it holds only refs in the namespaces with
// names git accepts, at most the filter's maximum, and HEAD only a branch.
func FuzzAdvertisement(f *testing.F) {
	f.Add([]byte("00a3" + idA + " HEAD\x00multi_ack side-band-64k ofs-delta symref=HEAD:refs/heads/main agent=git/2.39\n" +
		"003f" + idA + " refs/heads/main\n" + "0041" + idB + " refs/tags/v1^{}\n" + "0000"))
	f.Add([]byte("0000"))
	f.Add([]byte("ffff"))
	f.Add([]byte("0045" + idA + " refs/heads/../../../etc\x00\n0000"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ar := packp.NewAdvRefs()
		if err := ar.Decode(newAdvertFilter(&capReader{r: bytes.NewReader(data), n: 1 << 20}, Limits{MaxRefs: 1000, MaxRefBytes: 1 << 20})); err != nil {
			return
		}
		ls := &listing{refs: ar.References, headHash: ar.Head, caps: ar.Capabilities}
		for _, v := range ar.Capabilities.Get(capability.SymRef) {
			ls.head = v
		}
		head := ls.headTarget("")
		if head != "" && !(validRefName(head) && len(head) > len("refs/heads/") && head[:len("refs/heads/")] == "refs/heads/") {
			t.Fatalf("HEAD target %q", head)
		}
		if n := len(ls.refs); n > 1002 { // the kept refs, HEAD and the first line
			t.Fatalf("%d refs decoded", n)
		}
		for _, r := range ls.table(head, nil).All() {
			if r.Symbolic() {
				continue
			}
			if !InNamespaces(r.Name) || !validRefName(r.Name) {
				t.Fatalf("the table holds %q", r.Name)
			}
		}
	})
}

// FuzzUploadPackResponse: the answer to an upload-pack request, pkt-lines
// (NAK or ACK) then the pack in side-band-64k frames, read as a fetch
// reads it, never panics, and what it yields is received as any pack is.
func FuzzUploadPackResponse(f *testing.F) {
	f.Add([]byte("0008NAK\n" + "0011\x01PACK\x00\x00\x00\x02\x00\x00\x00\x00" + "0000"))
	f.Add([]byte("0031ACK " + idA + "\n0006\x01P0005\x02x0000"))
	f.Add([]byte("0008NAK\n0009\x03boom0000"))
	f.Fuzz(func(t *testing.T, data []byte) {
		caps := capability.NewList()
		_ = caps.Set(capability.Sideband64k)
		_ = caps.Set(capability.OFSDelta)
		req := packp.NewUploadPackRequestFromCapabilities(caps)
		_ = req.Capabilities.Set(capability.Sideband64k)
		res := packp.NewUploadPackResponse(req)
		if err := res.Decode(io.NopCloser(bytes.NewReader(data))); err != nil {
			return
		}
		receiveFuzzed(t, sideband.NewDemuxer(sideband.Sideband64k, res))
	})
}
