package mirror

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/mirror/hostile"
)

// The attacks of a malicious upstream (package hostile), replayed against
// clones and syncs over git:// and smart HTTP. Each must end as named
// (refused as too large, refused as invalid, or accepted when the pack is
// valid git), allocate at most maxAttackAllocs in all (the bound of the
// heap's growth: what is never allocated is never resident), leave
// nothing behind when refused, and leave an existing mirror byte for byte
// as it was, with git fsck --strict clean.

// maxAttackAllocs bounds the bytes one attack may make the client
// allocate, garbage included.
const maxAttackAllocs = 256 << 20

// outcome is how an attack must end.
type outcome int

const (
	accepted outcome = iota
	overLimit
	invalid
	failed // any ErrFetch
)

func (o outcome) check(t *testing.T, err error) {
	t.Helper()
	switch o {
	case accepted:
		if err != nil {
			t.Fatalf("refused a valid pack: %v", err)
		}
	case overLimit:
		if !errors.Is(err, ErrFetch) || !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrFetch and ErrTooLarge", err)
		}
	case invalid:
		if !errors.Is(err, ErrFetch) || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v, want ErrFetch and ErrCorrupt", err)
		}
	case failed:
		if !errors.Is(err, ErrFetch) {
			t.Fatalf("err = %v, want ErrFetch", err)
		}
	}
}

// allocated runs fn and returns the bytes the process allocated meanwhile.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

type attack struct {
	name string
	make func(parents ...plumbing.Hash) hostile.Built
	want outcome
}

// packAttacks are the attacks carried by a pack, for clones and syncs
// alike (built on parents, the mirror's tip, for a sync).
func packAttacks(mirrored hostile.Object) []attack {
	return []attack{
		{"header claims 2^32-1 objects", func(...plumbing.Hash) hostile.Built { return hostile.HeaderOnly(hostile.CountMax) }, overLimit},
		{"header claims 2^25 objects", func(...plumbing.Hash) hostile.Built { return hostile.HeaderOnly(hostile.Count32M) }, overLimit},
		{"delta bomb 558 MB", func(p ...plumbing.Hash) hostile.Built { return hostile.DeltaBomb(hostile.Bomb558MB, p...) }, overLimit},
		{"delta bomb 2 GB", func(p ...plumbing.Hash) hostile.Built { return hostile.DeltaBomb(hostile.Bomb2GB, p...) }, overLimit},
		{"delta bomb 1 GiB", func(p ...plumbing.Hash) hostile.Built { return hostile.DeltaBomb(hostile.Bomb1GiB, p...) }, overLimit},
		{"200 chained deltas of 8 MiB", func(p ...plumbing.Hash) hostile.Built {
			return hostile.ChainBomb(hostile.ChainLength, hostile.ChainEach, p...)
		}, accepted},
		{"commit of 64 MiB", func(p ...plumbing.Hash) hostile.Built { return hostile.HugeCommit(hostile.HugeCommit64M, p...) }, overLimit},
		{"commit of 256 MiB", func(p ...plumbing.Hash) hostile.Built { return hostile.HugeCommit(hostile.HugeCommit256M, p...) }, overLimit},
		{"duplicate objects", hostile.DuplicateObjects, invalid},
		{"bytes after the checksum", func(p ...plumbing.Hash) hostile.Built { return hostile.TrailingGarbage([]byte("garbage"), p...) }, invalid},
		{"a tree never sent", hostile.MissingTree, invalid},
		{"a parent that exists nowhere", func(...plumbing.Hash) hostile.Built { return hostile.MissingParent() }, invalid},
		{"bad checksum", hostile.BadChecksum, invalid},
		{"truncated in the header", func(p ...plumbing.Hash) hostile.Built { return hostile.Truncated(10, p...) }, invalid},
		{"truncated in an object", func(p ...plumbing.Hash) hostile.Built { return hostile.Truncated(200, p...) }, invalid},
		{"truncated in the checksum", func(p ...plumbing.Hash) hostile.Built { return hostile.Truncated(-5, p...) }, invalid},
		{"thin pack", func(p ...plumbing.Hash) hostile.Built { return hostile.ThinPack(mirrored, p...) }, invalid},
		{"delta on itself", func(p ...plumbing.Hash) hostile.Built { return hostile.SelfDelta(hostile.BaseIsSelf, p...) }, invalid},
		{"delta before the pack", func(p ...plumbing.Hash) hostile.Built { return hostile.SelfDelta(hostile.BaseBeforePack, p...) }, invalid},
		{"delta into an entry", func(p ...plumbing.Hash) hostile.Built { return hostile.SelfDelta(hostile.BaseMidEntry, p...) }, invalid},
		{"delta on its own result", func(p ...plumbing.Hash) hostile.Built { return hostile.SelfDelta(hostile.BaseIsOwnResult, p...) }, invalid},
		{"size declared larger", func(p ...plumbing.Hash) hostile.Built { return hostile.LyingSize(100, p...) }, invalid},
		{"size declared smaller", func(p ...plumbing.Hash) hostile.Built { return hostile.LyingSize(-100, p...) }, invalid},
		{"delta lies about its base", func(p ...plumbing.Hash) hostile.Built { return hostile.LyingDelta(7, 0, p...) }, invalid},
		{"delta lies about its result", func(p ...plumbing.Hash) hostile.Built { return hostile.LyingDelta(0, 9, p...) }, invalid},
		{"20,000 chained deltas", func(p ...plumbing.Hash) hostile.Built { return hostile.DeepChain(hostile.DeepChainDepth, p...) }, overLimit},
		{"a branch that names a blob", func(...plumbing.Hash) hostile.Built { return hostile.RefToBlob() }, invalid},
		{"a branch that names a tag", hostile.PeeledLie, invalid},
		{"valid", hostile.Valid, accepted},
	}
}

// hostileWork is a real repository with one commit over a README, and
// that README as a blob object.
func hostileWork(t *testing.T) (string, plumbing.Hash, hostile.Object) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "work")
	runGit(t, "", nil, "init", "-q", "-b", "main", dir)
	readme := []byte(strings.Repeat("a line of the readme\n", 40))
	if err := os.WriteFile(filepath.Join(dir, "README"), readme, 0o644); err != nil {
		t.Fatal(err)
	}
	runGit(t, dir, nil, "add", "README")
	runGit(t, dir, nil, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", "initial")
	return dir, plumbing.NewHash(runGit(t, dir, nil, "rev-parse", "HEAD")), hostile.Blob(readme)
}

func TestHostileClone(t *testing.T) {
	srv := hostile.Start(t)
	_, _, readme := hostileWork(t)
	for _, tr := range []string{"git", "http"} {
		for i, a := range packAttacks(readme) {
			t.Run(tr+"/"+a.name, func(t *testing.T) {
				repo := fmt.Sprintf("c%d.git", i)
				srv.Set(repo, a.make().Scenario())
				url := srv.GitURL(repo)
				if tr == "http" {
					url = srv.HTTPURL(repo)
				}
				r := newRoot(t)
				var err error
				var m *Mirror
				n := allocated(func() { m, _, err = r.Clone(bg(), "m", Config{URL: url, AllowPrivate: true}) })
				a.want.check(t, err)
				if n > maxAttackAllocs {
					t.Errorf("allocated %d MiB", n>>20)
				}
				if err != nil {
					if left, _ := os.ReadDir(r.Path()); len(left) != 0 {
						t.Fatalf("a refused clone left %v", left)
					}
					return
				}
				defer m.Close()
				fsck(t, m.Dir())
			})
		}
	}
}

func TestHostileSync(t *testing.T) {
	srv := hostile.Start(t)
	work, tip, readme := hostileWork(t)
	for _, tr := range []string{"git", "http"} {
		t.Run(tr, func(t *testing.T) {
			repo := "s-" + tr + ".git"
			srv.Set(repo, hostile.Scenario{Passthrough: work})
			url := srv.GitURL(repo)
			if tr == "http" {
				url = srv.HTTPURL(repo)
			}
			r := newRoot(t)
			m := cloneOK(t, r, "m", url)
			before := hostile.Digest(t, m.Dir())
			refsBefore := m.Refs()
			for _, a := range packAttacks(readme) {
				if a.want == accepted {
					continue // would move the mirror; TestHostileSyncAccepts
				}
				t.Run(a.name, func(t *testing.T) {
					srv.Set(repo, a.make(tip).Hybrid(work))
					var err error
					n := allocated(func() { _, err = m.Sync(bg()) })
					a.want.check(t, err)
					if n > maxAttackAllocs {
						t.Errorf("allocated %d MiB", n>>20)
					}
					hostile.SameDigest(t, before, hostile.Digest(t, m.Dir()))
					if m.Refs() != refsBefore {
						t.Fatal("the refs in memory moved")
					}
					fsck(t, m.Dir())
				})
			}
			// The mirror still follows its upstream.
			srv.Set(repo, hostile.Scenario{Passthrough: work})
			if res, err := m.Sync(bg()); err != nil || len(res.Changes) != 0 {
				t.Fatalf("sync after the attacks: %+v %v", res, err)
			}
		})
	}
}

// TestHostileSyncAccepts: the valid packs among the attacks (a chain of
// 200 deltas of 8 MiB) are fetched within the allocation bound, and the
// mirror stays a valid repository.
func TestHostileSyncAccepts(t *testing.T) {
	srv := hostile.Start(t)
	work, tip, _ := hostileWork(t)
	srv.Set("up.git", hostile.Scenario{Passthrough: work})
	m := cloneOK(t, newRoot(t), "m", srv.GitURL("up.git"))
	srv.Set("up.git", hostile.ChainBomb(hostile.ChainLength, hostile.ChainEach, tip).Hybrid(work))
	var err error
	n := allocated(func() { _, err = m.Sync(bg()) })
	accepted.check(t, err)
	if n > maxAttackAllocs {
		t.Errorf("allocated %d MiB", n>>20)
	}
	fsck(t, m.Dir())
}

// TestPeeledValuesAreComputed: an upstream that advertises a false peeled
// value for a ref that names an annotated tag does not get it into
// packed-refs: the value is the tag's own target. (A branch may not name a
// tag at all: git fsck reports it, and the clone is refused, see
// packAttacks.)
func TestPeeledValuesAreComputed(t *testing.T) {
	srv := hostile.Start(t)
	b := hostile.PeeledLie()
	for i := range b.Refs {
		if b.Refs[i].Name == "refs/heads/x" {
			b.Refs[i].Name = "refs/stackit/x"
		}
	}
	srv.Set("p.git", b.Scenario())
	m := cloneOK(t, newRoot(t), "m", srv.GitURL("p.git"))
	var lied, tag plumbing.Hash
	for _, r := range b.Refs {
		if !r.Peeled.IsZero() && r.Name == "refs/stackit/x" {
			lied, tag = r.Peeled, r.Hash
		}
	}
	if lied.IsZero() {
		t.Fatal("the attack advertises no peeled value")
	}
	peeled := runGit(t, m.Dir(), nil, "show-ref", "-d")
	if strings.Contains(peeled, lied.String()) {
		t.Fatalf("the advertised peel reached packed-refs:\n%s", peeled)
	}
	want := runGit(t, m.Dir(), nil, "rev-parse", tag.String()+"^{}")
	if !strings.Contains(peeled, want+" refs/stackit/x^{}") {
		t.Fatalf("show-ref -d:\n%s\nwant %s refs/stackit/x^{}", peeled, want)
	}
	fsck(t, m.Dir())
}

// rawAdvert writes an advertisement of tip as HEAD and refs/heads/main,
// then n refs of nameLen-byte names at tip, to a file, and returns how to
// serve it: read from the file, so that the server allocates nothing
// while it streams (allocations are counted process-wide).
func rawAdvert(t *testing.T, tip plumbing.Hash, n, nameLen int) (func() io.Reader, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "advert")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	caps := strings.Join(append(hostile.DefaultCaps(), "symref=HEAD:refs/heads/main"), " ")
	w.Write(hostile.PktLine(tip.String() + " HEAD\x00" + caps + "\n"))
	w.Write(hostile.PktLine(tip.String() + " refs/heads/main\n"))
	for ref := range hostile.SplitRefStream(n, nameLen, tip) {
		w.Write(hostile.PktLine(tip.String() + " " + ref.Name + "\n"))
	}
	w.WriteString(hostile.FlushPkt)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	f.Close()
	return func() io.Reader {
		f, err := os.Open(path)
		if err != nil {
			return strings.NewReader("")
		}
		return f
	}, size
}

// endlessAdvert is an advertisement that never ends, made without
// allocating: the same ref line, numbered, again and again.
type endlessAdvert struct {
	line []byte
	n    int
	off  int
}

func newEndlessAdvert(tip plumbing.Hash) *endlessAdvert {
	caps := strings.Join(append(hostile.DefaultCaps(), "symref=HEAD:refs/heads/main"), " ")
	first := hostile.PktLine(tip.String() + " HEAD\x00" + caps + "\n")
	line := hostile.PktLine(tip.String() + " refs/heads/endless/000000000000\n")
	return &endlessAdvert{line: append(first, line...), off: 0, n: 0}
}

func (e *endlessAdvert) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if e.off == len(e.line) {
			// The next line: the same, with the next number.
			e.n++
			e.line = e.line[len(e.line)-len("0039")-40-len(" refs/heads/endless/000000000000\n"):]
			digits := e.line[len(e.line)-13 : len(e.line)-1]
			for i, v := len(digits)-1, e.n; i >= 0; i, v = i-1, v/10 {
				digits[i] = byte('0' + v%10)
			}
			e.off = 0
		}
		c := copy(p[n:], e.line[e.off:])
		e.off += c
		n += c
	}
	return n, nil
}

// TestHostileAdvertisements: an endless advertisement stops at its cap,
// within the allocation bound; one of 100,000 refs of 1 KiB names (about
// 107 MB) is refused by the bound on the names' bytes (MaxRefBytes), a
// large one within the limits costs a small multiple of its size (the
// allocations in all, garbage included, at most 8 times); refs
// whose names git refuses never reach the mirror (skipped, or the fetch
// fails); lying pkt-lines fail the fetch.
func TestHostileAdvertisements(t *testing.T) {
	srv := hostile.Start(t)
	valid := hostile.Valid()
	many, _ := rawAdvert(t, valid.Tip, hostile.ManyRefsCount, hostile.ManyRefsNameLen)
	large, largeSize := rawAdvert(t, valid.Tip, 50_000, 150)
	cases := []struct {
		name string
		sc   hostile.Scenario
		want outcome
		max  uint64
	}{
		{"endless", hostile.Scenario{Advert: func() io.Reader { return newEndlessAdvert(valid.Tip) }, Pack: valid.Pack}, overLimit, maxAttackAllocs},
		{"100,000 refs of 1 KiB", hostile.Scenario{Advert: many, Pack: valid.Pack}, overLimit, maxAttackAllocs},
		{"50,000 refs of 150 bytes", hostile.Scenario{Advert: large, Pack: valid.Pack}, accepted, 8 * uint64(largeSize)},
		{"pkt-line longer than sent", hostile.LyingPktLine(hostile.PktLongerThanSent).Scenario(), failed, maxAttackAllocs},
		{"pkt-line over the maximum", hostile.LyingPktLine(hostile.PktOverMax).Scenario(), failed, maxAttackAllocs},
		{"pkt-line too short", hostile.LyingPktLine(hostile.PktTooShort).Scenario(), failed, maxAttackAllocs},
		{"pkt-line length not hex", hostile.LyingPktLine(hostile.PktNotHex).Scenario(), failed, maxAttackAllocs},
		{"pkt-line shorter than its line", hostile.LyingPktLine(hostile.PktShorterThanLine).Scenario(), failed, maxAttackAllocs},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := fmt.Sprintf("a%d.git", i)
			srv.Set(repo, c.sc)
			r := newRoot(t)
			ctx, cancel := context.WithTimeout(bg(), time.Minute)
			defer cancel()
			var err error
			var m *Mirror
			n := allocated(func() { m, _, err = r.Clone(ctx, "m", Config{URL: srv.GitURL(repo), AllowPrivate: true}) })
			c.want.check(t, err)
			if n > c.max {
				t.Errorf("allocated %d MiB, more than %d MiB", n>>20, c.max>>20)
			}
			if err != nil {
				return
			}
			defer m.Close()
			fsck(t, m.Dir())
		})
	}
	for i, name := range hostile.BadRefNames {
		t.Run(fmt.Sprintf("bad name %q", name), func(t *testing.T) {
			repo := fmt.Sprintf("n%d.git", i)
			srv.Set(repo, hostile.HostileRefNames([]string{name}).Scenario())
			r := newRoot(t)
			m, _, err := r.Clone(bg(), "m", Config{URL: srv.GitURL(repo), AllowPrivate: true})
			if err != nil {
				failed.check(t, err)
				if strings.ContainsFunc(err.Error(), unicode.IsControl) {
					t.Fatalf("a control character in %q", err)
				}
				return
			}
			defer m.Close()
			for _, ref := range m.Refs().All() {
				if !ref.Symbolic() && !validRefName(ref.Name) {
					t.Fatalf("kept %q", ref.Name)
				}
			}
			fsck(t, m.Dir())
		})
	}
}
