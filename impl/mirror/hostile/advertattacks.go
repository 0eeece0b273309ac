package hostile

import (
	"bytes"
	"fmt"
	"io"
	"iter"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Size of ManyRefs' finding: 100,000 refs of 1 KiB names, about 107 MB
// of advertisement, under the mirror's 128 MiB cap.
const (
	ManyRefsCount   = 100_000
	ManyRefsNameLen = 1024
)

// RefStream yields n refs (n < 0: without end) named
// refs/heads/many/<number>-xxx..., each name padded to nameLen bytes (at
// least 32), all pointing at target. Nothing is held: each ref is made
// when it is advertised.
func RefStream(n, nameLen int, target plumbing.Hash) iter.Seq[Ref] {
	return func(yield func(Ref) bool) {
		for i := 0; n < 0 || i < n; i++ {
			name := fmt.Sprintf("refs/heads/many/%012d-", i)
			if pad := nameLen - len(name); pad > 0 {
				name += strings.Repeat("x", pad)
			}
			if !yield(Ref{Name: name, Hash: target}) {
				return
			}
		}
	}
}

// SplitRefStream is RefStream with the padding split into components of
// at most 200 bytes (refs/heads/many/<number>-/xxx.../xxx...), so that
// every name is one git and a file system accept, however long.
func SplitRefStream(n, nameLen int, target plumbing.Hash) iter.Seq[Ref] {
	return func(yield func(Ref) bool) {
		for i := 0; n < 0 || i < n; i++ {
			var b strings.Builder
			b.WriteString(fmt.Sprintf("refs/heads/many/%012d-", i))
			for b.Len() < nameLen {
				b.WriteByte('/')
				b.WriteString(strings.Repeat("x", min(200, max(1, nameLen-b.Len()))))
			}
			if !yield(Ref{Name: b.String(), Hash: target}) {
				return
			}
		}
	}
}

// ManySplitRefs is ManyRefs with SplitRefStream's names: refs a mirror
// keeps, all n of them.
func ManySplitRefs(n, nameLen int, parents ...plumbing.Hash) Built {
	b := Valid(parents...)
	b.MoreRefs = SplitRefStream(n, nameLen, b.Tip)
	return b
}

// ManyRefs returns Valid(parents...) advertised with n more refs of
// nameLen-byte names, all at Tip (RefStream). ManyRefs(ManyRefsCount,
// ManyRefsNameLen) advertises about 107 MB (nameLen+46 bytes a ref): a
// client that keeps the advertisement decoded in memory holds several
// times that, and one that writes every ref writes 100,000 names.
func ManyRefs(n, nameLen int, parents ...plumbing.Hash) Built {
	b := Valid(parents...)
	b.MoreRefs = RefStream(n, nameLen, b.Tip)
	return b
}

// EndlessRefs returns Valid(parents...) advertised with refs that never
// end: the advertisement streams until the client hangs up. A client must
// stop at its cap on the advertisement's size.
func EndlessRefs(parents ...plumbing.Hash) Built {
	b := Valid(parents...)
	b.MoreRefs = RefStream(-1, 64, b.Tip)
	return b
}

// BadRefNames are ref names git refuses (check-ref-format) or that name
// paths outside refs/: traversal, control characters, an escape sequence,
// a NUL, a newline, invalid UTF-8, lock files, components too long for a
// file system, and the like; several in the namespaces a mirror keeps
// (refs/heads, refs/stackit, refs/branch-metadata).
var BadRefNames = []string{
	"refs/heads/../../x",
	"refs/heads/../../../../../../tmp/hostile",
	"refs/stackit/../../../config",
	"refs/branch-metadata/..",
	"refs/heads/a/../../../HEAD",
	"/refs/heads/absolute",
	"refs/heads//double-slash",
	"refs/heads/trailing/",
	"refs/heads/trailing.",
	"refs/heads/a..b",
	"refs/heads/.hidden",
	"refs/heads/x.lock",
	"refs/heads/at@{1}",
	"refs/heads/star*",
	"refs/heads/colon:x",
	"refs/heads/question?",
	"refs/heads/bracket[",
	"refs/heads/caret^",
	"refs/heads/tilde~1",
	"refs/heads/back\\slash",
	"refs/heads/sp ace",
	"refs/heads/tab\there",
	"refs/heads/ctl\x01char",
	"refs/heads/esc\x1b[31mred\x1b[0m",
	"refs/heads/del\x7f",
	"refs/heads/cr\rreturn",
	"refs/heads/nl\nnewline",
	"refs/heads/nul\x00byte",
	"refs/heads/bad-utf8-\xff\xfe",
	"refs/heads/" + strings.Repeat("a", 300),
	"refs/heads/" + strings.Repeat("d/", 200) + "deep",
	"HEAD",
	"refs/heads/HEAD/x",
}

// HostileRefNames returns Valid(parents...) with one more ref for each of
// names (BadRefNames if none), each at Tip. A client must skip or refuse
// them; it must never create a file or directory outside its refs, nor
// print a control character.
func HostileRefNames(names []string, parents ...plumbing.Hash) Built {
	if names == nil {
		names = BadRefNames
	}
	b := Valid(parents...)
	for _, n := range names {
		b.Refs = append(b.Refs, Ref{Name: n, Hash: b.Tip})
	}
	return b
}

// PktLie is how LyingPktLine's pkt-line lies.
type PktLie int

const (
	// PktLongerThanSent: the length says 256 bytes, 20 follow, then the
	// advertisement ends (the connection closes, the HTTP body ends).
	PktLongerThanSent PktLie = iota
	// PktOverMax: "ffff", more than the 65520 bytes a pkt-line may have,
	// and that many bytes.
	PktOverMax
	// PktTooShort: "0003", a length below the 4 bytes of the length itself.
	PktTooShort
	// PktNotHex: a length that is not hexadecimal ("zz12").
	PktNotHex
	// PktShorterThanLine: a ref line whose length stops 10 bytes short,
	// so that the rest of the line is read as the next length.
	PktShorterThanLine
)

// LyingPktLine returns Valid(parents...) whose advertisement (raw,
// Built.Advert) starts correctly (HEAD and refs/heads/main, with
// capabilities) and then carries a pkt-line that lies (see PktLie); the
// server hangs up after it (Built.HangUp). A client must fail cleanly:
// no allocation by the declared length. To make it wait instead (for
// bytes that never come), add a Stall (StallAdvert, after the whole
// advertisement) and clear HangUp.
func LyingPktLine(lie PktLie, parents ...plumbing.Hash) Built {
	b := Valid(parents...)
	var a bytes.Buffer
	caps := strings.Join(capsFor(nil, mainBranch), " ")
	a.Write(PktLine(fmt.Sprintf("%s HEAD\x00%s\n", b.Tip, caps)))
	a.Write(PktLine(fmt.Sprintf("%s %s\n", b.Tip, mainBranch)))
	switch lie {
	case PktLongerThanSent:
		a.WriteString("0100")
		a.WriteString(strings.Repeat("z", 20))
	case PktOverMax:
		a.WriteString("ffff")
		a.WriteString(strings.Repeat("z", 0xffff-4))
		a.WriteString(FlushPkt)
	case PktTooShort:
		a.WriteString("0003")
		a.WriteString(FlushPkt)
	case PktNotHex:
		a.WriteString("zz12")
		a.WriteString(strings.Repeat("z", 0x12))
		a.WriteString(FlushPkt)
	case PktShorterThanLine:
		line := fmt.Sprintf("%s refs/heads/short\n", b.Tip)
		fmt.Fprintf(&a, "%04x%s", len(line)+4-10, line)
		a.WriteString(FlushPkt)
	default:
		panic("hostile: unknown PktLie")
	}
	raw := a.Bytes()
	b.Advert = func() io.Reader { return bytes.NewReader(raw) }
	b.HangUp = true
	return b
}

// PeeledLie returns a pack holding Tip (a commit with parents, on
// refs/heads/main), an annotated tag object "x" pointing at Tip, and a
// decoy commit (a root commit, also in the pack). Refs[1] is
// refs/heads/x: its Hash is the tag object and its advertised peeled
// value (Peeled) is the decoy, though the tag points at Tip. A client
// must peel tags itself (from the objects) or check the advertised value,
// never record the decoy as what x points at.
func PeeledLie(parents ...plumbing.Hash) Built {
	p := NewPack()
	tip := addTip(p, "peeled lie", parents)
	decoy := Commit(EmptyTree.Hash(), nil, DefaultSignature, DefaultSignature, "hostile: peeled lie decoy\n")
	p.Add(decoy) // over the empty tree, which addTip added
	tag := Tag(tip, plumbing.CommitObject, "x", DefaultSignature, "hostile: a tag whose advertised peel lies\n")
	p.Add(tag)
	b := built(p, tip)
	b.Refs = append(b.Refs, Ref{Name: "refs/heads/x", Hash: tag.Hash(), Peeled: decoy.Hash()})
	return b
}
