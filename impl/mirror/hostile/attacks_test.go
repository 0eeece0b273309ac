package hostile

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// upstream returns a bare clone of a work repository (so that packs with
// its tip as parent can be indexed strictly) and the tip.
func upstream(t *testing.T) (string, plumbing.Hash) {
	t.Helper()
	work, tip := workRepo(t)
	bare := filepath.Join(t.TempDir(), "up.git")
	git(t, "", "clone", "-q", "--bare", work, bare)
	return bare, tip
}

// The valid packs of the kit are accepted by git index-pack --strict
// (which checks every object with fsck and that every link resolves), as
// root commits and on top of a real repository.
func TestValidPacksAcceptedByGit(t *testing.T) {
	base, tip := upstream(t)
	for _, tc := range []struct {
		name string
		b    func(parents ...plumbing.Hash) Built
		typ  string
	}{
		{"Valid", Valid, "commit"},
		{"DeltaBomb 4 MiB", func(p ...plumbing.Hash) Built { return DeltaBomb(4<<20+5, p...) }, "commit"},
		{"ChainBomb small", func(p ...plumbing.Hash) Built { return ChainBomb(3, 1<<20, p...) }, "commit"},
		{"DeepChain", func(p ...plumbing.Hash) Built { return DeepChain(DeepChainDepth, p...) }, "commit"},
		{"PeeledLie", PeeledLie, "commit"},
		{"RefToBlob", func(...plumbing.Hash) Built { return RefToBlob() }, "blob"},
		{"HostileRefNames", func(p ...plumbing.Hash) Built { return HostileRefNames(nil, p...) }, "commit"},
		{"TrailingGarbage (pack part)", func(p ...plumbing.Hash) Built {
			b := TrailingGarbage([]byte("junk"), p...)
			b.Pack = b.Pack[:len(b.Pack)-4]
			return b
		}, "commit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, parents := range [][]plumbing.Hash{nil, {tip}} {
				repo := bareRepo(t)
				if parents != nil {
					repo = filepath.Join(t.TempDir(), "clone.git")
					git(t, "", "clone", "-q", "--bare", base, repo)
				}
				b := tc.b(parents...)
				mustIndex(t, repo, b.Pack)
				if got := git(t, repo, "cat-file", "-t", b.Tip.String()); got != tc.typ {
					t.Errorf("Tip is a %s, want a %s", got, tc.typ)
				}
				if tc.typ == "commit" && parents != nil {
					// Valid's Tip (and so HostileRefNames') is the child of
					// its first commit, whose parent is tip.
					if _, _, err := gitRun(repo, nil, "merge-base", "--is-ancestor", tip.String(), b.Tip.String()); err != nil {
						t.Errorf("tip is not an ancestor of Tip: %v", err)
					}
				}
				for _, r := range b.Refs {
					if _, _, err := gitRun(repo, nil, "cat-file", "-e", r.Hash.String()); err != nil {
						t.Errorf("ref %q points at %s, not in the pack", r.Name, r.Hash)
					}
				}
			}
		})
	}
}

// Every malformed pack is refused by git index-pack for the reason it is
// built for.
func TestMalformedPacksRefusedByGit(t *testing.T) {
	base, tip := upstream(t)
	for _, tc := range []struct {
		name string
		b    Built
		msg  string // in git's error
	}{
		{"HeaderOnly(CountMax)", HeaderOnly(CountMax), "overflow"},
		{"HeaderOnly(3)", HeaderOnly(3), "early EOF"},
		{"DuplicateObjects", DuplicateObjects(), "appears twice in the pack"},
		{"MissingTree", MissingTree(), "did not receive expected object"},
		{"MissingTree on a real parent", MissingTree(tip), "did not receive expected object"},
		{"MissingParent", MissingParent(), "did not receive expected object"},
		{"BadChecksum", BadChecksum(), "SHA1 mismatch"},
		{"ThinPack, unknown base", ThinPack(Blob([]byte("nowhere\n"))), "unresolved delta"},
		{"SelfDelta BaseIsSelf", SelfDelta(BaseIsSelf), "delta base offset is out of bound"},
		{"SelfDelta BaseBeforePack", SelfDelta(BaseBeforePack), "delta base offset is out of bound"},
		{"SelfDelta BaseMidEntry", SelfDelta(BaseMidEntry), "unresolved delta"},
		{"SelfDelta BaseIsOwnResult", SelfDelta(BaseIsOwnResult), "unresolved delta"},
		{"LyingSize +100", LyingSize(100), "inflate returned"},
		{"LyingSize -10", LyingSize(-10), "inflate returned"},
		{"LyingDelta source", LyingDelta(5, 0), "failed to apply delta"},
		{"LyingDelta result", LyingDelta(0, 5), "failed to apply delta"},
		{"LyingDelta result smaller", LyingDelta(0, -5), "failed to apply delta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr, err := indexPack(bareRepo(t), tc.b.Pack)
			if err == nil || !strings.Contains(stderr, tc.msg) {
				t.Errorf("git index-pack --strict: %v %q, want a refusal with %q", err, stderr, tc.msg)
			}
		})
	}

	t.Run("TrailingGarbage", func(t *testing.T) {
		// index-pack --stdin (what git fetch runs) stops at the checksum;
		// on a file it says what is wrong.
		b := TrailingGarbage([]byte("hostile garbage after the checksum"))
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "p.pack"), b.Pack, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := gitRun(dir, nil, "index-pack", "--strict", "p.pack")
		if err == nil || !strings.Contains(stderr, "junk at the end") {
			t.Errorf("git index-pack: %v %q", err, stderr)
		}
		info, ierr := Inspect(b.Pack)
		if ierr != nil || !info.ChecksumOK || info.Trailing != len("hostile garbage after the checksum") {
			t.Errorf("Inspect: %+v %v", info, ierr)
		}
	})

	t.Run("Truncated", func(t *testing.T) {
		full := len(Valid().Pack)
		for _, n := range []int{0, 4, 11, 12, 13, 40, full / 2, full - 21, full - 20, full - 1, -1, -19} {
			b := Truncated(n)
			if len(b.Pack) >= full {
				t.Fatalf("Truncated(%d) is %d bytes of %d", n, len(b.Pack), full)
			}
			if stderr, err := indexPack(bareRepo(t), b.Pack); err == nil {
				t.Errorf("Truncated(%d) (%d bytes) accepted: %q", n, len(b.Pack), stderr)
			}
		}
	})

	t.Run("ThinPack against a blob the client has", func(t *testing.T) {
		// A genuine thin pack: refused by index-pack as is, completed by
		// --fix-thin in a repository that holds the base.
		blobID := git(t, base, "rev-parse", "main:a.txt")
		content := git(t, base, "cat-file", "blob", blobID) + "\n"
		baseBlob := Blob([]byte(content))
		if baseBlob.Hash().String() != blobID {
			t.Fatalf("base blob %s, want %s", baseBlob.Hash(), blobID)
		}
		b := ThinPack(baseBlob, tip)
		repo := filepath.Join(t.TempDir(), "clone.git")
		git(t, "", "clone", "-q", "--bare", base, repo)
		if stderr, err := indexPack(repo, b.Pack); err == nil || !strings.Contains(stderr, "unresolved delta") {
			t.Errorf("thin pack without --fix-thin: %v %q", err, stderr)
		}
		if _, stderr, err := gitRun(repo, b.Pack, "index-pack", "--strict", "--stdin", "--fix-thin"); err != nil {
			t.Fatalf("--fix-thin: %v %s", err, stderr)
		}
		if got := git(t, repo, "cat-file", "blob", b.Tip.String()+":THIN"); got != strings.TrimSpace(content+"hostile: thin pack\n") {
			t.Errorf("thin result %q", got)
		}
	})
}

// What the attacks claim about themselves, read back with Inspect.
func TestAttacksAreWhatTheyClaim(t *testing.T) {
	t.Run("HeaderOnly", func(t *testing.T) {
		for _, n := range []uint32{CountMax, Count32M} {
			b := HeaderOnly(n)
			if len(b.Pack) != 12 || string(b.Pack[:4]) != "PACK" || binary.BigEndian.Uint32(b.Pack[4:]) != 2 || binary.BigEndian.Uint32(b.Pack[8:]) != n {
				t.Errorf("HeaderOnly(%d) = % x", n, b.Pack)
			}
		}
	})

	t.Run("DeltaBomb", func(t *testing.T) {
		for _, tc := range []struct {
			size    int64
			maxPack int
		}{{Bomb558MB, 400}, {Bomb2GB, 400}, {Bomb1GiB, 400}, {Bomb1GiB + 12345, 400}} {
			b := DeltaBomb(tc.size)
			info, err := Inspect(b.Pack)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Pack) > tc.maxPack || !info.ChecksumOK {
				t.Errorf("bomb of %d: pack of %d bytes (checksum ok %v)", tc.size, len(b.Pack), info.ChecksumOK)
			}
			e := info.Entries
			if len(e) != 4 || e[0].Type != plumbing.BlobObject || e[0].Inflated != bombBase || e[1].Type != plumbing.OFSDeltaObject || e[1].BaseOffset != e[0].Offset {
				t.Fatalf("bomb of %d: entries %+v", tc.size, e)
			}
			d := e[1].Delta
			if d.Err != nil || d.SrcSize != bombBase || d.DstSize != uint64(tc.size) || d.ResultSize != uint64(tc.size) {
				t.Errorf("bomb of %d: delta %+v", tc.size, d)
			}
			t.Logf("DeltaBomb(%d): %d-byte pack, delta of %d bytes", tc.size, len(b.Pack), e[1].Inflated)
		}
		// A small one expands for real, to the blob of that many zeros.
		repo := bareRepo(t)
		size := 4<<20 + 5
		mustIndex(t, repo, DeltaBomb(int64(size)).Pack)
		id := Blob(make([]byte, size)).Hash()
		if got := git(t, repo, "cat-file", "-s", id.String()); got != strconv.Itoa(size) {
			t.Errorf("expanded blob of %s bytes", got)
		}
	})

	t.Run("ChainBomb", func(t *testing.T) {
		b := ChainBomb(ChainLength, ChainEach)
		info, err := Inspect(b.Pack)
		if err != nil {
			t.Fatal(err)
		}
		deltas, depth := 0, 0
		for _, e := range info.Entries {
			if e.Delta == nil {
				continue
			}
			deltas++
			depth = max(depth, e.Depth)
			if e.Delta.Err != nil || e.Delta.DstSize != ChainEach || e.Delta.ResultSize != ChainEach {
				t.Errorf("delta at %d: %+v", e.Offset, e.Delta)
			}
		}
		if deltas != ChainLength || depth != ChainLength || len(b.Pack) > 8<<10 {
			t.Errorf("%d deltas, depth %d, %d bytes", deltas, depth, len(b.Pack))
		}
		t.Logf("ChainBomb: %d-byte pack, %d deltas of %d bytes", len(b.Pack), deltas, ChainEach)
		// A small chain resolves, in git, to distinct blobs of that size.
		repo := bareRepo(t)
		mustIndex(t, repo, ChainBomb(4, 1<<20).Pack)
		out := git(t, repo, "cat-file", "--batch-check", "--batch-all-objects")
		if n := strings.Count(out, " blob 1048576"); n != 4 {
			t.Errorf("%d distinct 1 MiB blobs:\n%s", n, out)
		}
	})

	t.Run("HugeCommit", func(t *testing.T) {
		sizes := []int64{HugeCommit64M, HugeCommit256M}
		if testing.Short() {
			sizes = sizes[:1]
		}
		for _, size := range sizes {
			b := HugeCommit(size)
			if len(b.Pack) > int(size/900) {
				t.Errorf("huge commit of %d: pack of %d bytes", size, len(b.Pack))
			}
			repo := bareRepo(t)
			mustIndex(t, repo, b.Pack)
			if got := git(t, repo, "cat-file", "-s", b.Tip.String()); got != strconv.FormatInt(size, 10) {
				t.Errorf("commit of %s bytes, want %d", got, size)
			}
			if got := git(t, repo, "cat-file", "-t", b.Tip.String()); got != "commit" {
				t.Errorf("Tip is a %s", got)
			}
			t.Logf("HugeCommit(%d): %d-byte pack", size, len(b.Pack))
		}
	})

	t.Run("DuplicateObjects", func(t *testing.T) {
		info, err := Inspect(DuplicateObjects().Pack)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[plumbing.Hash]int{}
		for _, e := range info.Entries {
			ids[e.Hash]++
		}
		if info.Count != 6 || len(info.Entries) != 6 || len(ids) != 3 {
			t.Errorf("count %d, %d entries, %d distinct ids", info.Count, len(info.Entries), len(ids))
		}
		for id, n := range ids {
			if n != 2 || id.IsZero() {
				t.Errorf("%s appears %d times", id, n)
			}
		}
	})

	t.Run("DeepChain", func(t *testing.T) {
		info, err := Inspect(DeepChain(DeepChainDepth).Pack)
		if err != nil {
			t.Fatal(err)
		}
		depth := 0
		for _, e := range info.Entries {
			depth = max(depth, e.Depth)
		}
		if depth != DeepChainDepth {
			t.Errorf("depth %d", depth)
		}
	})

	t.Run("LyingSize", func(t *testing.T) {
		for _, by := range []int64{100, -10} {
			info, err := Inspect(LyingSize(by).Pack)
			if err != nil {
				t.Fatal(err)
			}
			e := info.Entries[0]
			if int64(e.Declared)-e.Inflated != by {
				t.Errorf("declared %d, inflated %d", e.Declared, e.Inflated)
			}
		}
	})

	t.Run("LyingDelta", func(t *testing.T) {
		info, err := Inspect(LyingDelta(5, -3).Pack)
		if err != nil {
			t.Fatal(err)
		}
		base, d := info.Entries[0], info.Entries[1].Delta
		if d.SrcSize != uint64(base.Inflated)+5 || d.DstSize+3 != d.ResultSize {
			t.Errorf("base %d, delta %+v", base.Inflated, d)
		}
	})

	t.Run("SelfDelta", func(t *testing.T) {
		for kind, check := range map[BadBase]func(e EntryInfo) bool{
			BaseIsSelf:      func(e EntryInfo) bool { return e.BaseOffset == e.Offset },
			BaseBeforePack:  func(e EntryInfo) bool { return e.BaseOffset < 0 },
			BaseMidEntry:    func(e EntryInfo) bool { return e.BaseOffset == 13 },
			BaseIsOwnResult: func(e EntryInfo) bool { return e.BaseHash == Blob([]byte("hostile: self delta\n")).Hash() },
		} {
			info, err := Inspect(SelfDelta(kind).Pack)
			if err != nil {
				t.Fatal(err)
			}
			if e := info.Entries[1]; !check(e) || e.Depth != 0 {
				t.Errorf("kind %d: %+v", kind, e)
			}
		}
	})

	t.Run("RefToBlob", func(t *testing.T) {
		b := RefToBlob()
		info, err := Inspect(b.Pack)
		if err != nil || len(info.Entries) != 1 || info.Entries[0].Type != plumbing.BlobObject || info.Entries[0].Hash != b.Tip || b.Refs[0].Hash != b.Tip {
			t.Errorf("%+v %v", info, err)
		}
	})

	t.Run("MissingTree and MissingParent", func(t *testing.T) {
		for _, b := range []Built{MissingTree(), MissingParent()} {
			info, err := Inspect(b.Pack)
			if err != nil || !info.ChecksumOK {
				t.Errorf("%+v %v", info, err)
			}
		}
	})
}
