package hostile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
)

// maxRequestBody bounds an upload-pack request body the server reads.
const maxRequestBody = 64 << 20

func (s *Server) httpHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs"):
			s.infoRefs(w, r, repoKey(strings.TrimSuffix(r.URL.Path, "/info/refs")))
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			s.uploadPackHTTP(w, r, repoKey(strings.TrimSuffix(r.URL.Path, "/git-upload-pack")))
		default:
			http.NotFound(w, r)
		}
	})
}

// httpFlush flushes bw and then the response.
func httpFlush(w http.ResponseWriter, bw *bufio.Writer) func() error {
	return func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return http.NewResponseController(w).Flush()
	}
}

// infoRefs answers GET <repo>/info/refs?service=git-upload-pack: the
// service preamble, a flush-pkt, then the advertisement. Without the
// service parameter (a dumb client) it answers 404.
func (s *Server) infoRefs(w http.ResponseWriter, r *http.Request, repo string) {
	if r.URL.Query().Get("service") != "git-upload-pack" {
		http.NotFound(w, r)
		return
	}
	sc, ok := s.scenario(repo, true)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var h *resolved
	if sc.Passthrough == "" {
		var err error
		if h, err = s.hybrid(sc); err != nil {
			s.t.Logf("hostile: %v", err)
			http.Error(w, "hybrid base unreadable", http.StatusInternalServerError)
			return
		}
		defer h.close()
	}
	w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
	w.Header().Set("Cache-Control", "no-cache")
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(PktLine("# service=git-upload-pack\n"))
	bw.WriteString(FlushPkt)
	if sc.Passthrough != "" {
		ctx, cancel := s.quitContext()
		defer cancel()
		cmd := s.uploadPack(ctx, sc.Passthrough, "--stateless-rpc", "--advertise-refs")
		cmd.Stdout = bw
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil && ctx.Err() == nil {
			s.t.Logf("hostile: git upload-pack --advertise-refs %s: %v: %s", sc.Passthrough, err, stderr.String())
		}
		_ = bw.Flush()
		return
	}
	flush := httpFlush(w, bw)
	if err := s.advertise(advertWriter(bw, flush, sc.Stall, s.quit, r.Context().Done()), h.sc); err != nil {
		if !expectedEnd(err) && r.Context().Err() == nil {
			s.t.Logf("hostile: advertisement of %s: %v", repo, err)
		}
		return
	}
	_ = bw.Flush()
}

// uploadPackHTTP answers POST <repo>/git-upload-pack: one stateless
// request (wants, haves, and done or a flush-pkt ending a negotiation
// round).
func (s *Server) uploadPackHTTP(w http.ResponseWriter, r *http.Request, repo string) {
	sc, ok := s.scenario(repo, false)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "bad gzip body", http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(io.LimitReader(body, maxRequestBody+1))
	if err != nil || len(raw) > maxRequestBody {
		http.Error(w, "request body unreadable or too large", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
	w.Header().Set("Cache-Control", "no-cache")
	bw := bufio.NewWriterSize(w, 64<<10)
	c := &conversation{r: bufio.NewReader(bytes.NewReader(raw)), w: bw, flush: httpFlush(w, bw), stateless: true,
		quit: s.quit, abort: r.Context().Done()}
	p := &reqParser{req: Request{Transport: "http"}}

	if sc.Passthrough != "" {
		// Record what the body asks, then hand it to git as it is.
		if ok, err := c.readWants(p); ok && err == nil {
			for {
				payload, flush, _, err := readPkt(c.r)
				if err != nil {
					break
				}
				if _, done, err := p.line(payload, flush); done || err != nil {
					break
				}
			}
			s.record(repo, p.req)
		}
		ctx, cancel := s.quitContext()
		defer cancel()
		cmd := s.uploadPack(ctx, sc.Passthrough, "--stateless-rpc")
		cmd.Stdin = bytes.NewReader(raw)
		cmd.Stdout = bw
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil && ctx.Err() == nil && r.Context().Err() == nil {
			s.t.Logf("hostile: git upload-pack --stateless-rpc %s: %v: %s", sc.Passthrough, err, stderr.String())
		}
		_ = bw.Flush()
		return
	}

	h, err := s.hybrid(sc)
	if err != nil {
		s.t.Logf("hostile: %v", err)
		http.Error(w, "hybrid base unreadable", http.StatusInternalServerError)
		return
	}
	defer h.close()
	ok, err = c.readWants(p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !ok {
		return
	}
	done, commons, err := c.negotiate(p, h.common)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.record(repo, p.req)
	if !done {
		_ = c.flush()
		return
	}
	if err := c.finish(sc, p.req, commons); err != nil && !expectedEnd(err) && r.Context().Err() == nil {
		s.t.Logf("hostile: answer of %s: %v", repo, err)
	}
}
