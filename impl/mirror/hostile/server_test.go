package hostile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
)

type transportCase struct {
	name string
	url  func(*Server, string) string
}

var transports = []transportCase{{"git", (*Server).GitURL}, {"http", (*Server).HTTPURL}}

// rawSession opens a git:// connection to repo and sends the daemon's
// request line.
func rawSession(t *testing.T, srv *Server, repo string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(PktLine("git-upload-pack /" + repo + "\x00host=example.com\x00")); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readAdvert reads pkt-lines up to a flush-pkt.
func readAdvert(t *testing.T, r *bufio.Reader) []string {
	t.Helper()
	var lines []string
	for {
		payload, flush, _, err := readPkt(r)
		if err != nil {
			t.Fatalf("advertisement: %v", err)
		}
		if flush {
			return lines
		}
		lines = append(lines, string(payload))
	}
}

// response splits an upload-pack answer into its pkt-lines before the
// pack, the pack, and what follows the pack's frames.
func response(t *testing.T, r io.Reader, sideband bool) (lines []string, pack []byte) {
	t.Helper()
	br := bufio.NewReader(r)
	for {
		if !sideband {
			if head, _ := br.Peek(4); string(head) == "PACK" {
				rest, err := io.ReadAll(br)
				if err != nil {
					t.Fatal(err)
				}
				return lines, rest
			}
		}
		payload, flush, _, err := readPkt(br)
		if err == io.EOF {
			return lines, pack
		}
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
		switch {
		case flush:
			lines = append(lines, FlushPkt)
		case sideband && len(payload) > 0 && payload[0] == 1:
			pack = append(pack, payload[1:]...)
		case sideband && len(payload) > 0 && payload[0] <= 3:
			t.Fatalf("side-band %d: %q", payload[0], payload[1:])
		default:
			lines = append(lines, string(payload))
		}
	}
}

// The answers to wants, haves and done are what git upload-pack sends.
func TestNegotiationAnswers(t *testing.T) {
	srv := Start(t)
	b := Valid()
	common, other := plumbing.NewHash(strings.Repeat("c", 40)), plumbing.NewHash(strings.Repeat("d", 40))
	sc := b.Scenario()
	sc.Common = []plumbing.Hash{common}
	srv.Set("r.git", sc)

	want := func(caps string) string { return string(PktLine("want " + b.Tip.String() + caps + "\n")) }
	have := func(h plumbing.Hash) string { return string(PktLine("have " + h.String() + "\n")) }
	done := string(PktLine("done\n"))
	for _, tc := range []struct {
		name     string
		request  string
		sideband bool
		lines    []string
	}{
		{"no haves", want(" side-band-64k") + FlushPkt + done, true, []string{"NAK\n", FlushPkt}},
		{"a common have, no multi_ack", want(" side-band-64k ofs-delta") + FlushPkt + have(other) + have(common) + have(b.Tip) + done, true,
			[]string{"ACK " + common.String() + "\n", FlushPkt}},
		{"no common have", want(" side-band") + FlushPkt + have(other) + done, true, []string{"NAK\n", FlushPkt}},
		{"no side-band", want("") + FlushPkt + have(common) + done, false, []string{"ACK " + common.String() + "\n"}},
		{"rounds, no multi_ack", want(" side-band-64k") + FlushPkt + have(other) + FlushPkt + have(common) + FlushPkt + done, true,
			[]string{"NAK\n", "ACK " + common.String() + "\n", FlushPkt}},
		{"multi_ack_detailed", want(" multi_ack_detailed side-band-64k") + FlushPkt + have(common) + have(other) + FlushPkt + done, true,
			[]string{"ACK " + common.String() + " common\n", "NAK\n", "ACK " + common.String() + "\n", FlushPkt}},
		{"multi_ack", want(" multi_ack side-band-64k") + FlushPkt + have(common) + FlushPkt + done, true,
			[]string{"ACK " + common.String() + " continue\n", "NAK\n", "ACK " + common.String() + "\n", FlushPkt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, r := rawSession(t, srv, "r.git")
			readAdvert(t, r)
			if _, err := io.WriteString(conn, tc.request); err != nil {
				t.Fatal(err)
			}
			lines, pack := response(t, r, tc.sideband)
			if !slices.Equal(lines, tc.lines) {
				t.Errorf("lines %q, want %q", lines, tc.lines)
			}
			if !bytes.Equal(pack, b.Pack) {
				t.Errorf("pack of %d bytes, want the %d of the scenario", len(pack), len(b.Pack))
			}
		})
	}

	t.Run("nothing wanted", func(t *testing.T) {
		conn, r := rawSession(t, srv, "r.git")
		readAdvert(t, r)
		if _, err := io.WriteString(conn, FlushPkt); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
			t.Errorf("after a lone flush: %q %v", rest, err)
		}
	})

	t.Run("stateless round without done", func(t *testing.T) {
		for _, tc := range []struct {
			haves []plumbing.Hash
			want  string
		}{{[]plumbing.Hash{other}, "NAK\n"}, {[]plumbing.Hash{other, common}, "ACK " + common.String() + "\n"}} {
			body := want(" side-band-64k") + FlushPkt
			for _, h := range tc.haves {
				body += have(h)
			}
			body += FlushPkt
			resp, err := http.Post(srv.HTTPURL("r.git")+"/git-upload-pack", "application/x-git-upload-pack-request", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != string(PktLine(tc.want)) {
				t.Errorf("haves %v: %q, want only %q", tc.haves, got, tc.want)
			}
		}
		reqs := srv.Requests("r.git")
		if last := reqs[len(reqs)-1]; last.Done || last.Transport != "http" || len(last.Haves) != 2 || !last.Has("side-band-64k") {
			t.Errorf("recorded %+v", last)
		}
	})

	if reqs := srv.Requests("r.git"); len(reqs) < 7 || reqs[1].Transport != "git" || !slices.Equal(reqs[1].Haves, []plumbing.Hash{other, common, b.Tip}) ||
		!slices.Equal(reqs[1].Wants, []plumbing.Hash{b.Tip}) || !reqs[1].Done || !slices.Equal(reqs[1].Caps, []string{"side-band-64k", "ofs-delta"}) {
		t.Errorf("requests %+v", reqs)
	}
}

// goGitClone clones url with go-git as a bare mirror.
func goGitClone(ctx context.Context, t *testing.T, url string) (*gogit.Repository, error) {
	return gogit.PlainCloneContext(ctx, filepath.Join(t.TempDir(), "gogit.git"), true, &gogit.CloneOptions{URL: url, Mirror: true})
}

func checkRefs(t *testing.T, repo *gogit.Repository, want []Ref) {
	t.Helper()
	for _, r := range want {
		ref, err := repo.Reference(plumbing.ReferenceName(r.Name), false)
		if err != nil || ref.Hash() != r.Hash {
			t.Errorf("ref %s: %v %v, want %s", r.Name, ref, err, r.Hash)
		}
	}
}

// go-git's client and git's clone a scripted repository over both
// transports, with and without side-band.
func TestScriptedClone(t *testing.T) {
	srv := Start(t)
	b := Valid()
	srv.Set("scripted.git", b.Scenario())
	noSideband := b.Scenario()
	noSideband.Caps = []string{"ofs-delta", "agent=hostile/1"}
	srv.Set("plain.git", noSideband)
	for _, tr := range transports {
		for _, repo := range []string{"scripted.git", "plain.git"} {
			t.Run(tr.name+"/"+repo, func(t *testing.T) {
				url := tr.url(srv, repo)
				r, err := goGitClone(context.Background(), t, url)
				if err != nil {
					t.Fatalf("go-git clone: %v", err)
				}
				checkRefs(t, r, b.Refs)
				head, err := r.Head()
				if err != nil || head.Hash() != b.Tip {
					t.Errorf("go-git HEAD %v %v", head, err)
				}
				reqs := srv.Requests(repo)
				last := reqs[len(reqs)-1]
				if last.Transport != tr.name || !last.Done || !slices.Contains(last.Wants, b.Tip) || last.Has("side-band-64k") != (repo == "scripted.git") {
					t.Errorf("go-git's request %+v", last)
				}

				dir := filepath.Join(t.TempDir(), "cli.git")
				git(t, "", "clone", "-q", "--mirror", url, dir)
				git(t, dir, "fsck", "--strict")
				for _, ref := range b.Refs {
					if got := git(t, dir, "rev-parse", ref.Name); got != ref.Hash.String() {
						t.Errorf("git clone: %s at %s, want %s", ref.Name, got, ref.Hash)
					}
				}
				if got := git(t, dir, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
					t.Errorf("git clone: HEAD -> %s", got)
				}
			})
		}
	}
}

// A real repository served by the git CLI: git and go-git clone and fetch
// it over both transports, and the requests are recorded.
func TestPassthrough(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv := Start(t)
			work, tip := workRepo(t)
			srv.Set("team/app.git", Scenario{Passthrough: work})
			url := tr.url(srv, "team/app.git")

			var want []string
			for _, line := range strings.Split(git(t, work, "show-ref", "--head", "-d"), "\n") {
				want = append(want, strings.Replace(line, " ", "\t", 1))
			}
			got := strings.Split(git(t, "", "ls-remote", url), "\n")
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("ls-remote:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			mirror := filepath.Join(t.TempDir(), "m.git")
			git(t, "", "clone", "-q", "--mirror", url, mirror)
			git(t, mirror, "fsck", "--strict")
			if got := git(t, mirror, "rev-parse", "main"); got != tip.String() {
				t.Errorf("clone: main at %s", got)
			}

			if err := os.WriteFile(filepath.Join(work, "d.txt"), []byte("d\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			git(t, work, "add", "d.txt")
			git(t, work, "commit", "-q", "-m", "add d")
			newTip := git(t, work, "rev-parse", "main")
			git(t, mirror, "fetch", "-q")
			if got := git(t, mirror, "rev-parse", "main"); got != newTip {
				t.Errorf("fetch: main at %s, want %s", got, newTip)
			}
			reqs := srv.Requests("team/app.git")
			last := reqs[len(reqs)-1]
			if last.Transport != tr.name || !slices.Contains(last.Wants, plumbing.NewHash(newTip)) || !slices.Contains(last.Haves, tip) || !last.Done {
				t.Errorf("fetch request %+v", last)
			}

			r, err := goGitClone(context.Background(), t, url)
			if err != nil {
				t.Fatalf("go-git clone: %v", err)
			}
			if head, err := r.Head(); err != nil || head.Hash().String() != newTip {
				t.Errorf("go-git HEAD %v %v", head, err)
			}
			if n := srv.Adverts("team/app.git"); n < 4 {
				t.Errorf("%d advertisements counted", n)
			}
		})
	}
}

// A hybrid answers an existing clone's fetch with a crafted pack on top
// of the real repository: haves the real repository holds are common.
func TestHybridFetch(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv := Start(t)
			work, tip := workRepo(t)
			srv.Set("app.git", Scenario{Passthrough: work})
			url := tr.url(srv, "app.git")
			mirror := filepath.Join(t.TempDir(), "m.git")
			git(t, "", "clone", "-q", "--mirror", url, mirror)
			gg, err := goGitClone(context.Background(), t, url)
			if err != nil {
				t.Fatal(err)
			}
			feature := git(t, work, "rev-parse", "feature")

			b := Valid(tip)
			srv.Set("app.git", b.Hybrid(work))
			before := len(srv.Requests("app.git"))

			git(t, mirror, "fetch", "-q")
			git(t, mirror, "fsck", "--strict")
			for ref, want := range map[string]string{"main": b.Tip.String(), "feature": feature, "v1": b.Refs[1].Hash.String()} {
				if got := git(t, mirror, "rev-parse", ref); got != want {
					t.Errorf("git fetch: %s at %s, want %s", ref, got, want)
				}
			}
			err = gg.Fetch(&gogit.FetchOptions{RefSpecs: []config.RefSpec{"+refs/*:refs/*"}})
			if err != nil {
				t.Fatalf("go-git fetch: %v", err)
			}
			checkRefs(t, gg, b.Refs)

			reqs := srv.Requests("app.git")[before:]
			if len(reqs) == 0 {
				t.Fatal("no request recorded")
			}
			for _, r := range reqs {
				if !slices.Contains(r.Wants, b.Tip) {
					t.Errorf("request without the new tip: %+v", r)
				}
			}
			if last := reqs[len(reqs)-1]; !slices.Contains(last.Haves, tip) || !last.Done {
				t.Errorf("go-git's fetch %+v", last)
			}
		})
	}
}

// A stalled session sends part of its advertisement or pack and then
// nothing, the connection open, until the test releases it.
func TestStall(t *testing.T) {
	b := Valid()
	for _, tr := range transports {
		for _, tc := range []struct {
			name  string
			stall *Stall
		}{
			{"advert", NewStall(StallAdvert, 60)},
			{"pack", NewStall(StallPack, 100)},
			{"pack start", NewStall(StallPack, 0)},
		} {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				srv := Start(t)
				sc := b.Scenario()
				sc.Stall = tc.stall
				srv.Set("r.git", sc)
				res := make(chan error, 1)
				go func() {
					r, err := goGitClone(context.Background(), t, tr.url(srv, "r.git"))
					if err == nil {
						var head *plumbing.Reference
						if head, err = r.Head(); err == nil && head.Hash() != b.Tip {
							err = fmt.Errorf("HEAD at %s", head.Hash())
						}
					}
					res <- err
				}()
				<-tc.stall.Reached
				select {
				case err := <-res:
					t.Fatalf("the clone ended during the stall: %v", err)
				default:
				}
				tc.stall.Unblock()
				if err := <-res; err != nil {
					t.Errorf("clone after the stall: %v", err)
				}
			})
		}
		t.Run(tr.name+"/close", func(t *testing.T) {
			srv := Start(t)
			sc := b.Scenario()
			sc.Stall = NewStall(StallPack, 10)
			srv.Set("r.git", sc)
			res := make(chan error, 1)
			go func() {
				_, err := goGitClone(context.Background(), t, tr.url(srv, "r.git"))
				res <- err
			}()
			<-sc.Stall.Reached
			srv.Close()
			if err := <-res; err == nil {
				t.Error("the clone succeeded though the server closed mid-pack")
			}
		})
	}
}

// PackStream and Response replace the answer.
func TestAnswerOverrides(t *testing.T) {
	srv := Start(t)
	b := Valid()
	streamed := b.Scenario()
	streamed.Pack = nil
	var mu sync.Mutex
	var asked []plumbing.Hash
	streamed.PackStream = func(r Request) io.Reader {
		mu.Lock()
		defer mu.Unlock()
		asked = r.Wants
		return bytes.NewReader(b.Pack)
	}
	srv.Set("stream.git", streamed)
	raw := b.Scenario()
	raw.Response = func(Request) io.Reader {
		return strings.NewReader(string(PktLine("NAK\n")) + "0010\x03hostile err")
	}
	srv.Set("raw.git", raw)
	for _, tr := range transports {
		if _, err := goGitClone(context.Background(), t, tr.url(srv, "stream.git")); err != nil {
			t.Errorf("%s: clone of a streamed pack: %v", tr.name, err)
		}
		mu.Lock()
		if !slices.Contains(asked, b.Tip) {
			t.Errorf("%s: PackStream saw wants %v", tr.name, asked)
		}
		mu.Unlock()
		_, err := goGitClone(context.Background(), t, tr.url(srv, "raw.git"))
		if err == nil || !strings.Contains(err.Error(), "hostile err") {
			t.Errorf("%s: clone of a raw error answer: %v", tr.name, err)
		}
	}
}

// An unknown repository: git:// answers ERR, HTTP 404; both clients
// call it not found.
func TestUnknownRepository(t *testing.T) {
	srv := Start(t)
	srv.Set("known.git", Valid().Scenario())
	srv.Remove("known.git")
	for _, tr := range transports {
		for _, repo := range []string{"nowhere.git", "known.git"} {
			if _, stderr, err := gitRun("", nil, "ls-remote", tr.url(srv, repo)); err == nil {
				t.Errorf("%s %s: ls-remote succeeded: %s", tr.name, repo, stderr)
			}
			ep, err := transport.NewEndpoint(tr.url(srv, repo))
			if err != nil {
				t.Fatal(err)
			}
			c, err := client.NewClient(ep)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := c.NewUploadPackSession(ep, nil)
			if err == nil {
				_, err = sess.AdvertisedReferences()
				sess.Close()
			}
			if !errors.Is(err, transport.ErrRepositoryNotFound) {
				t.Errorf("%s %s: go-git: %v", tr.name, repo, err)
			}
		}
	}
}

// goGitAdvert reads url's advertisement with go-git's client.
func goGitAdvert(t *testing.T, url string) (*packp.AdvRefs, error) {
	t.Helper()
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewClient(ep)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewUploadPackSession(ep, nil)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	return sess.AdvertisedReferences()
}

// A hybrid's advertisement is its base's refs (peeled tags included),
// with the scenario's refs replacing, adding or (zero hash) removing
// refs by name, and its base's HEAD.
func TestHybridAdvertisement(t *testing.T) {
	work, tip := workRepo(t)
	b := Valid(tip).Branch("feature")
	sc := b.Hybrid(work)
	sc.Refs = append(sc.Refs, Ref{Name: "refs/heads/main"}, Ref{Name: "refs/heads/new", Hash: b.Tip})
	srv := Start(t)
	srv.Set("h.git", sc)
	srv.Set("notarepo.git", Valid().Hybrid(t.TempDir()))
	tag := plumbing.NewHash(git(t, work, "rev-parse", "v1.0"))
	for _, tr := range transports {
		ar, err := goGitAdvert(t, tr.url(srv, "h.git"))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]plumbing.Hash{"refs/heads/feature": b.Tip, "refs/heads/new": b.Tip, "refs/tags/v1.0": tag, "refs/tags/v1": b.Refs[1].Hash}
		if len(ar.References) != len(want) || ar.Peeled["refs/tags/v1.0"] != tip || ar.Peeled["refs/tags/v1"] != b.Refs[1].Peeled {
			t.Errorf("%s: refs %v, peeled %v", tr.name, ar.References, ar.Peeled)
		}
		for name, h := range want {
			if ar.References[name] != h {
				t.Errorf("%s: %s at %s, want %s", tr.name, name, ar.References[name], h)
			}
		}
		if !slices.Equal(ar.Capabilities.Get("symref"), []string{"HEAD:refs/heads/main"}) {
			t.Errorf("%s: symref %v", tr.name, ar.Capabilities.Get("symref"))
		}
		if _, err := goGitAdvert(t, tr.url(srv, "notarepo.git")); err == nil {
			t.Errorf("%s: a hybrid over a directory that is no repository advertised", tr.name)
		}
	}
}
