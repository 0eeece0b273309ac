package hostile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

var errStopped = errors.New("hostile: session stopped")

// maxRequestLines bounds the lines of one upload-pack request the server
// reads (a client under test that loops must not hang it).
const maxRequestLines = 1 << 20

// readPkt reads one pkt-line: its payload, or flush for a flush-pkt, and
// the raw bytes read.
func readPkt(r *bufio.Reader) (payload []byte, flush bool, raw []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, false, nil, err
	}
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	if err != nil {
		return nil, false, nil, fmt.Errorf("bad pkt-line length %q", hdr[:])
	}
	if n == 0 {
		return nil, true, hdr[:], nil
	}
	if n < 4 || n > maxPktPayload+4 {
		return nil, false, nil, fmt.Errorf("bad pkt-line length %d", n)
	}
	raw = make([]byte, n)
	copy(raw, hdr[:])
	if _, err := io.ReadFull(r, raw[4:]); err != nil {
		return nil, false, nil, err
	}
	return raw[4:], false, raw, nil
}

func parseHash(s string) (plumbing.Hash, error) {
	if !plumbing.IsHash(s) {
		return plumbing.ZeroHash, fmt.Errorf("bad object id %q", s)
	}
	return plumbing.NewHash(s), nil
}

// reqParser follows an upload-pack request line by line.
type reqParser struct {
	req     Request
	inHaves bool // the want section ended
	lines   int
}

// line takes one pkt-line of the request (flush for a flush-pkt). It
// reports the end of the want section (wantsEnd) and done.
func (p *reqParser) line(payload []byte, flush bool) (wantsEnd, done bool, err error) {
	if p.lines++; p.lines > maxRequestLines {
		return false, false, errors.New("request too long")
	}
	if flush {
		if !p.inHaves {
			p.inHaves = true
			return true, false, nil
		}
		return false, false, nil
	}
	s := strings.TrimSuffix(string(payload), "\n")
	if !p.inHaves {
		if rest, ok := strings.CutPrefix(s, "want "); ok {
			id, caps, _ := strings.Cut(rest, " ")
			h, err := parseHash(id)
			if err != nil {
				return false, false, err
			}
			if len(p.req.Wants) == 0 && caps != "" {
				p.req.Caps = strings.Fields(caps)
			}
			p.req.Wants = append(p.req.Wants, h)
		} else {
			p.req.Other = append(p.req.Other, s)
		}
		return false, false, nil
	}
	switch {
	case s == "done":
		p.req.Done = true
		return false, true, nil
	case strings.HasPrefix(s, "have "):
		h, err := parseHash(s[5:])
		if err != nil {
			return false, false, err
		}
		p.req.Haves = append(p.req.Haves, h)
		return false, false, nil
	}
	return false, false, fmt.Errorf("unexpected line %q", s)
}

// conversation is one upload-pack exchange after the advertisement:
// read the request, negotiate, answer.
type conversation struct {
	r         *bufio.Reader
	w         *bufio.Writer
	flush     func() error // flushes w and the transport under it
	stateless bool         // HTTP: the request is one body, one round
	quit      <-chan struct{}
	abort     <-chan struct{}
}

// readWants reads the want section. ok is false when the client wants
// nothing (a lone flush-pkt, or nothing at all).
func (c *conversation) readWants(p *reqParser) (ok bool, err error) {
	for {
		payload, flush, _, err := readPkt(c.r)
		if err == io.EOF && len(p.req.Wants) == 0 {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		end, _, err := p.line(payload, flush)
		if err != nil {
			return false, err
		}
		if end {
			return len(p.req.Wants) > 0, nil
		}
	}
}

// ackMode is the client's negotiation capability: 0 none, 1 multi_ack,
// 2 multi_ack_detailed.
func ackMode(r Request) int {
	switch {
	case r.Has("multi_ack_detailed"):
		return 2
	case r.Has("multi_ack"):
		return 1
	}
	return 0
}

// negotiate reads haves until done (true) or, stateless, the end of the
// round (false), answering as git upload-pack does: without multi_ack,
// "ACK <id>" for the first common have and NAK at a flush while none is
// common; with multi_ack, "ACK <id> continue" (or "common" when
// detailed) for each common have and NAK at every flush. The final
// ACK/NAK after done is left to finish.
func (c *conversation) negotiate(p *reqParser, common func(plumbing.Hash) bool) (done bool, commons []plumbing.Hash, err error) {
	mode := ackMode(p.req)
	for {
		payload, flush, _, err := readPkt(c.r)
		if err == io.EOF && c.stateless {
			return false, commons, nil
		}
		if err != nil {
			return false, commons, err
		}
		_, done, err := p.line(payload, flush)
		if err != nil {
			return false, commons, err
		}
		switch {
		case done:
			return true, commons, nil
		case flush:
			if len(commons) == 0 || mode > 0 {
				c.w.WriteString(string(PktLine("NAK\n")))
			}
			if c.stateless {
				return false, commons, nil
			}
			if err := c.flush(); err != nil {
				return false, commons, err
			}
		default: // a have
			h := p.req.Haves[len(p.req.Haves)-1]
			if common == nil || !common(h) {
				continue
			}
			commons = append(commons, h)
			switch {
			case mode == 2:
				c.w.Write(PktLine("ACK " + h.String() + " common\n"))
			case mode == 1:
				c.w.Write(PktLine("ACK " + h.String() + " continue\n"))
			case len(commons) == 1:
				c.w.Write(PktLine("ACK " + h.String() + "\n"))
			}
		}
	}
}

// finish answers a request that ended with done: the final ACK/NAK and
// the pack (side-band framed as the client asked), or sc.Response.
func (c *conversation) finish(sc Scenario, req Request, commons []plumbing.Hash) error {
	if sc.Response != nil {
		if _, err := io.Copy(c.w, sc.Response(req)); err != nil {
			return err
		}
		return c.flush()
	}
	switch {
	case len(commons) == 0:
		c.w.Write(PktLine("NAK\n"))
	case ackMode(req) > 0:
		c.w.Write(PktLine("ACK " + commons[len(commons)-1].String() + "\n"))
	}
	var src io.Reader
	switch {
	case sc.PackStream != nil:
		src = sc.PackStream(req)
	default:
		src = strings.NewReader(string(sc.Pack))
	}
	maxPkt := 0
	switch {
	case req.Has("side-band-64k"):
		maxPkt = 65520
	case req.Has("side-band"):
		maxPkt = 1000
	}
	var st *Stall
	if sc.Stall != nil && sc.Stall.Phase == StallPack {
		st = sc.Stall
	}
	return c.sendPack(src, maxPkt, st)
}

// sendPack copies the pack, in side-band pkt-lines of at most maxPkt
// bytes on band 1 (0: raw), then a flush-pkt when framed.
func (c *conversation) sendPack(src io.Reader, maxPkt int, st *Stall) error {
	size := 64 << 10
	if maxPkt > 0 {
		size = maxPkt - 5
	}
	buf := make([]byte, 5+size)
	stallAt := int64(-1)
	if st != nil {
		stallAt = st.After
	}
	var sent int64
	for {
		if sent == stallAt {
			if err := c.flush(); err != nil {
				return err
			}
			if err := st.wait(c.quit, c.abort); err != nil {
				return err
			}
			stallAt = -1
		}
		want := size
		if stallAt > sent {
			want = int(min(int64(want), stallAt-sent))
		}
		n, err := src.Read(buf[5 : 5+want])
		if n > 0 {
			sent += int64(n)
			out := buf[5 : 5+n]
			if maxPkt > 0 {
				copy(buf, fmt.Sprintf("%04x\x01", n+5))
				out = buf[:5+n]
			}
			if _, werr := c.w.Write(out); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if maxPkt > 0 {
		c.w.WriteString(FlushPkt)
	}
	return c.flush()
}

// stallWriter passes writes on, and stops once, after st.After bytes:
// it flushes, then waits for the stall to be released.
type stallWriter struct {
	w     io.Writer
	flush func() error
	st    *Stall
	left  int64 // bytes before the stall; <0 once passed
	quit  <-chan struct{}
	abort <-chan struct{}
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if s.left < 0 || int64(len(p)) <= s.left {
		if s.left >= 0 {
			s.left -= int64(len(p))
		}
		return s.w.Write(p)
	}
	n, err := s.w.Write(p[:s.left])
	if err != nil {
		return n, err
	}
	if err := s.flush(); err != nil {
		return n, err
	}
	if err := s.st.wait(s.quit, s.abort); err != nil {
		return n, err
	}
	s.left = -1
	k, err := s.w.Write(p[n:])
	return n + k, err
}

// advertWriter returns w wrapped to stall as sc asks during the
// advertisement.
func advertWriter(w io.Writer, flush func() error, st *Stall, quit, abort <-chan struct{}) io.Writer {
	if st == nil || st.Phase != StallAdvert {
		return w
	}
	return &stallWriter{w: w, flush: flush, st: st, left: st.After, quit: quit, abort: abort}
}
