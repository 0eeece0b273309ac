package hostile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// Server is a git server on loopback, for git:// (the git daemon
// protocol, protocol v0) and smart HTTP (stateless-rpc, protocol v0),
// whose every repository path answers as its Scenario says. Make it with
// Start.
type Server struct {
	t     testing.TB
	ln    net.Listener
	web   *httptest.Server
	quit  chan struct{}
	wg    sync.WaitGroup
	close sync.Once

	mu        sync.Mutex
	scenarios map[string]Scenario
	requests  map[string][]Request
	adverts   map[string]int
	conns     map[net.Conn]struct{}
}

// Start starts a server with no repository; t.Cleanup closes it.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("hostile: listen: %v", err)
	}
	s := &Server{t: t, ln: ln, quit: make(chan struct{}),
		scenarios: map[string]Scenario{}, requests: map[string][]Request{},
		adverts: map[string]int{}, conns: map[net.Conn]struct{}{}}
	s.web = httptest.NewServer(s.httpHandler())
	s.wg.Add(1)
	go s.acceptGit()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server: stalled sessions end, connections are closed,
// passthrough processes are killed. It returns when every session has
// ended.
func (s *Server) Close() {
	s.close.Do(func() {
		close(s.quit)
		_ = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.web.CloseClientConnections()
		s.web.Close()
		s.wg.Wait()
	})
}

func repoKey(repo string) string { return strings.Trim(repo, "/") }

// Set makes repo (a path such as "team/app.git") answer as sc, from the
// next session on.
func (s *Server) Set(repo string, sc Scenario) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scenarios[repoKey(repo)] = sc
}

// Remove makes repo unknown again: git:// answers "ERR no such
// repository", HTTP 404.
func (s *Server) Remove(repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.scenarios, repoKey(repo))
}

// scenario returns repo's scenario, counting an advertisement served if
// advert.
func (s *Server) scenario(repo string, advert bool) (Scenario, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.scenarios[repo]
	if ok && advert {
		s.adverts[repo]++
	}
	return sc, ok
}

// GitURL returns the git:// URL of repo.
func (s *Server) GitURL(repo string) string {
	return "git://" + s.ln.Addr().String() + "/" + repoKey(repo)
}

// HTTPURL returns the http:// URL of repo.
func (s *Server) HTTPURL(repo string) string { return s.web.URL + "/" + repoKey(repo) }

// Requests returns the upload-pack requests received for repo so far, in
// order. A request is recorded before its answer is sent.
func (s *Server) Requests(repo string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests[repoKey(repo)]...)
}

// Adverts returns how many sessions (git://) or info/refs requests
// (HTTP) for repo were served an advertisement (started, at least).
func (s *Server) Adverts(repo string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adverts[repoKey(repo)]
}

func (s *Server) record(repo string, r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[repo] = append(s.requests[repo], r)
}

func (s *Server) acceptGit() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.quit:
			s.mu.Unlock()
			_ = conn.Close()
			return
		default:
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				_ = conn.Close()
			}()
			if err := s.serveGit(conn); err != nil && !expectedEnd(err) {
				s.t.Logf("hostile: git:// session: %v", err)
			}
		}()
	}
}

// expectedEnd reports errors that end a session because the client or
// the server went away, which attacks cause all the time.
func expectedEnd(err error) bool {
	var ne net.Error
	return errors.Is(err, errStopped) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &ne) || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "broken pipe")
}

// serveGit serves one git:// connection: the daemon's request line
// ("git-upload-pack /path\0host=...\0", maybe with extra parameters,
// which are ignored: protocol v0 only), then upload-pack.
func (s *Server) serveGit(conn net.Conn) error {
	br := bufio.NewReaderSize(conn, 64<<10)
	payload, flush, _, err := readPkt(br)
	if err != nil || flush {
		return err
	}
	cmd, rest, _ := strings.Cut(string(payload), " ")
	path, _, _ := strings.Cut(rest, "\x00")
	if cmd != "git-upload-pack" {
		return nil // git daemon hangs up too
	}
	repo := repoKey(path)
	sc, ok := s.scenario(repo, true)
	if !ok {
		// As git daemon --informative-errors does (without it, the
		// daemon hangs up without a word: Advert returning nothing).
		_, err := conn.Write(PktLine("ERR no such repository: " + path))
		return err
	}
	if sc.Passthrough != "" {
		return s.passGit(conn, br, repo, sc.Passthrough)
	}
	bw := bufio.NewWriterSize(conn, 64<<10)
	c := &conversation{r: br, w: bw, flush: bw.Flush, quit: s.quit}
	h, err := s.hybrid(sc)
	if err != nil {
		_, _ = conn.Write(PktLine("ERR hostile: hybrid base unreadable"))
		return err
	}
	defer h.close()
	if err := s.advertise(advertWriter(bw, bw.Flush, sc.Stall, s.quit, nil), h.sc); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil || sc.HangUp {
		return err
	}
	p := &reqParser{req: Request{Transport: "git"}}
	ok, err = c.readWants(p)
	if !ok || err != nil {
		return err
	}
	done, commons, err := c.negotiate(p, h.common)
	if err != nil {
		return err
	}
	s.record(repo, p.req)
	if !done {
		return bw.Flush()
	}
	return c.finish(sc, p.req, commons)
}

// advertise writes sc's advertisement (raw, or encoded).
func (s *Server) advertise(w io.Writer, sc Scenario) error {
	if sc.Advert != nil {
		_, err := io.Copy(w, sc.Advert())
		return err
	}
	return writeAdvert(w, sc.Head, sc.Refs, sc.MoreRefs, capsFor(sc.Caps, sc.Head))
}

// resolved is a scenario ready to advertise: a hybrid's refs merged with
// its base's, and the test for common objects.
type resolved struct {
	sc     Scenario
	common func(plumbing.Hash) bool
	close  func()
}

// hybrid resolves sc: for a hybrid, reads Base's refs and HEAD and opens
// a checker of Base's objects.
func (s *Server) hybrid(sc Scenario) (*resolved, error) {
	known := map[plumbing.Hash]bool{}
	for _, h := range sc.Common {
		known[h] = true
	}
	r := &resolved{sc: sc, common: func(h plumbing.Hash) bool { return known[h] }, close: func() {}}
	if sc.Base == "" {
		return r, nil
	}
	refs, head, err := baseRefs(sc.Base)
	if err != nil {
		return nil, fmt.Errorf("hybrid base %s: %w", sc.Base, err)
	}
	r.sc.Refs = mergeRefs(refs, sc.Refs)
	if r.sc.Head == "" {
		r.sc.Head = head
	}
	chk := &objChecker{dir: sc.Base}
	r.common = func(h plumbing.Hash) bool { return known[h] || chk.has(h) }
	r.close = chk.close
	return r, nil
}

// mergeRefs returns base with over applied (replacing by name, a zero
// hash removing), sorted by name.
func mergeRefs(base, over []Ref) []Ref {
	out := append([]Ref(nil), base...)
	for _, o := range over {
		i := 0
		for i < len(out) && out[i].Name != o.Name {
			i++
		}
		switch {
		case i < len(out) && o.Hash.IsZero():
			out = append(out[:i], out[i+1:]...)
		case i < len(out):
			out[i] = o
		case !o.Hash.IsZero():
			out = append(out, o)
		}
	}
	sortRefs(out)
	return out
}

// sortRefs sorts refs by name, in byte order as git does.
func sortRefs(r []Ref) {
	slices.SortStableFunc(r, func(a, b Ref) int { return strings.Compare(a.Name, b.Name) })
}
