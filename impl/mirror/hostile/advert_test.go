package hostile

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
)

// A scripted advertisement is what go-git's client decodes: HEAD, its
// symref, the refs and the peeled tag.
func TestAdvertisementDecodes(t *testing.T) {
	srv := Start(t)
	b := Valid()
	srv.Set("r.git", b.Scenario())
	empty := Scenario{}
	srv.Set("empty.git", empty)
	for _, tr := range transports {
		ar, err := goGitAdvert(t, tr.url(srv, "r.git"))
		if err != nil {
			t.Fatalf("%s: %v", tr.name, err)
		}
		if ar.Head == nil || *ar.Head != b.Tip || !slices.Equal(ar.Capabilities.Get("symref"), []string{"HEAD:refs/heads/main"}) {
			t.Errorf("%s: HEAD %v, symref %v", tr.name, ar.Head, ar.Capabilities.Get("symref"))
		}
		if len(ar.References) != 2 || ar.References["refs/heads/main"] != b.Tip || ar.References["refs/tags/v1"] != b.Refs[1].Hash ||
			ar.Peeled["refs/tags/v1"] != b.Refs[1].Peeled {
			t.Errorf("%s: refs %v, peeled %v", tr.name, ar.References, ar.Peeled)
		}
		for _, c := range []string{"side-band-64k", "ofs-delta", "no-progress"} {
			if !ar.Capabilities.Supports(capability.Capability(c)) {
				t.Errorf("%s: no %s in %v", tr.name, c, ar.Capabilities)
			}
		}
		if _, err := goGitAdvert(t, tr.url(srv, "empty.git")); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("%s: empty repository: %v", tr.name, err)
		}
	}
}

// ManyRefs' advertisement is about 107 MB, under the mirror's 128 MiB
// cap, and every line is a well-formed pkt-line.
func TestManyRefs(t *testing.T) {
	b := ManyRefs(ManyRefsCount, ManyRefsNameLen)
	sc := b.Scenario()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeAdvert(pw, sc.Head, sc.Refs, sc.MoreRefs, capsFor(sc.Caps, sc.Head)))
	}()
	r := bufio.NewReaderSize(pr, 64<<10)
	var size, many int64
	for {
		payload, flush, raw, err := readPkt(r)
		if err != nil {
			t.Fatal(err)
		}
		size += int64(len(raw))
		if flush {
			break
		}
		if bytes.Contains(payload, []byte(" refs/heads/many/")) {
			many++
			if len(payload) != 41+ManyRefsNameLen+1 {
				t.Fatalf("a line of %d bytes", len(payload))
			}
		}
	}
	if many != ManyRefsCount || size < 100e6 || size >= 128<<20 {
		t.Errorf("%d many refs in %d bytes", many, size)
	}
	t.Logf("ManyRefs: %d bytes of advertisement", size)

	// A smaller one, through the server, as go-git decodes it.
	srv := Start(t)
	srv.Set("many.git", ManyRefs(1000, 200).Scenario())
	for _, tr := range transports {
		ar, err := goGitAdvert(t, tr.url(srv, "many.git"))
		if err != nil || len(ar.References) != 1002 {
			t.Errorf("%s: %d refs, %v", tr.name, len(ar.References), err)
		}
	}
}

// EndlessRefs never ends: 16 MiB of well-formed ref lines are read over
// both transports, and more follow.
func TestEndlessRefs(t *testing.T) {
	srv := Start(t)
	srv.Set("endless.git", EndlessRefs().Scenario())
	read := func(t *testing.T, r *bufio.Reader) {
		var n int
		for n < 16<<20 {
			_, flush, raw, err := readPkt(r)
			if err != nil || flush {
				t.Fatalf("after %d bytes: flush %v, %v", n, flush, err)
			}
			n += len(raw)
		}
	}
	t.Run("git", func(t *testing.T) {
		_, r := rawSession(t, srv, "endless.git")
		read(t, r)
	})
	t.Run("http", func(t *testing.T) {
		resp, err := http.Get(srv.HTTPURL("endless.git") + "/info/refs?service=git-upload-pack")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		if lines := readAdvert(t, r); len(lines) != 1 || lines[0] != "# service=git-upload-pack\n" {
			t.Fatalf("preamble %q", lines)
		}
		read(t, r)
	})
}

// Every hostile name is advertised byte for byte.
func TestHostileRefNames(t *testing.T) {
	srv := Start(t)
	b := HostileRefNames(nil)
	srv.Set("names.git", b.Scenario())
	_, r := rawSession(t, srv, "names.git")
	var got []string
	for _, line := range readAdvert(t, r) {
		id, name, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		name, _, _ = strings.Cut(name, "\x00capabilities")
		if id != b.Tip.String() && !strings.HasSuffix(name, "^{}") && name != "refs/tags/v1" {
			t.Errorf("%q at %s", name, id)
		}
		got = append(got, name)
	}
	for _, n := range BadRefNames {
		// The first line carries the capabilities after a NUL: the name
		// with a NUL in it is compared up to it there.
		if !slices.Contains(got, n) {
			t.Errorf("%q not advertised", n)
		}
	}
}

// Each lying pkt-line makes go-git's decoder and git's client fail.
func TestLyingPktLine(t *testing.T) {
	srv := Start(t)
	for lie := PktLongerThanSent; lie <= PktShorterThanLine; lie++ {
		b := LyingPktLine(lie)
		raw, _ := io.ReadAll(b.Advert())
		ar := packp.NewAdvRefs()
		if err := ar.Decode(bytes.NewReader(raw)); err == nil {
			t.Errorf("lie %d: go-git decoded %v", lie, ar.References)
		}
		repo := "lie.git"
		srv.Set(repo, b.Scenario())
		for _, tr := range transports {
			if out, stderr, err := gitRun("", nil, "ls-remote", tr.url(srv, repo)); err == nil {
				t.Errorf("lie %d, %s: git ls-remote succeeded: %q %q", lie, tr.name, out, stderr)
			}
			if _, err := goGitAdvert(t, tr.url(srv, repo)); err == nil {
				t.Errorf("lie %d, %s: go-git read the advertisement", lie, tr.name)
			}
		}
	}
}

// The advertised peel of refs/heads/x names the decoy; the tag object in
// the pack points at Tip.
func TestPeeledLie(t *testing.T) {
	srv := Start(t)
	b := PeeledLie()
	srv.Set("peel.git", b.Scenario())
	x := b.Refs[1]
	if x.Name != "refs/heads/x" || x.Peeled == b.Tip || x.Peeled.IsZero() {
		t.Fatalf("refs %+v", b.Refs)
	}
	repo := bareRepo(t)
	mustIndex(t, repo, b.Pack)
	if got := git(t, repo, "rev-parse", x.Hash.String()+"^{commit}"); got != b.Tip.String() {
		t.Errorf("the tag peels to %s, want %s", got, b.Tip)
	}
	if got := git(t, repo, "cat-file", "-t", x.Peeled.String()); got != "commit" {
		t.Errorf("the decoy is a %s", got)
	}
	for _, tr := range transports {
		ar, err := goGitAdvert(t, tr.url(srv, "peel.git"))
		if err != nil || ar.References["refs/heads/x"] != x.Hash || ar.Peeled["refs/heads/x"] != x.Peeled {
			t.Errorf("%s: %v %v, %v", tr.name, ar.References, ar.Peeled, err)
		}
	}
}

// HeaderOnly and the other packs reach a client whole: the server sends
// the pack bytes unchanged.
func TestAttackPacksServedUnchanged(t *testing.T) {
	srv := Start(t)
	for _, b := range []Built{HeaderOnly(CountMax), DeltaBomb(Bomb2GB), TrailingGarbage([]byte("x")), BadChecksum(), Truncated(30)} {
		srv.Set("a.git", b.Scenario())
		conn, r := rawSession(t, srv, "a.git")
		readAdvert(t, r)
		if _, err := io.WriteString(conn, string(PktLine("want "+b.Tip.String()+" side-band-64k\n"))+FlushPkt+string(PktLine("done\n"))); err != nil {
			t.Fatal(err)
		}
		if _, pack := response(t, r, true); !bytes.Equal(pack, b.Pack) {
			t.Errorf("%d bytes sent of %d", len(pack), len(b.Pack))
		}
	}
}
