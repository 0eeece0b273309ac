package hostile

import (
	"io"
	"iter"
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// Scenario is what the server does for one repository path. Exactly one
// of three modes applies:
//
//   - passthrough (Passthrough set): the repository at that path is
//     served by the git CLI (git upload-pack), as a git daemon or git
//     http-backend would; every other field is ignored.
//   - hybrid (Base set): the advertisement is Base's refs (git show-ref)
//     with Refs added or replacing those of the same name (a Ref with a
//     zero Hash removes it), MoreRefs after them, Base's HEAD unless Head
//     is set; haves Base holds are acknowledged as common; the answer is
//     scripted as below.
//   - scripted: the advertisement is Refs, then MoreRefs, with a HEAD
//     line when Head names one of Refs; the answer is Pack (or
//     PackStream, or Response).
//
// A Scenario is read when a session starts (for HTTP, at each request):
// Server.Set takes effect for the sessions that start after it.
type Scenario struct {
	Passthrough string
	Base        string

	// Refs are advertised in this order (a hybrid's merged list is
	// sorted by name), each followed by its peeled line if any.
	Refs []Ref
	// MoreRefs are streamed after Refs, never held (see RefStream).
	MoreRefs iter.Seq[Ref]
	// Head is the symref target of HEAD ("": no HEAD line, no symref,
	// except in a hybrid, where it means Base's).
	Head string
	// Caps are the advertised capabilities; nil: DefaultCaps. A
	// symref=HEAD:<Head> is added unless Caps has a symref already.
	Caps []string
	// Advert, when not nil, returns the raw advertisement (pkt-lines and
	// final flush, or anything), which replaces Refs, MoreRefs, Head and
	// Caps. Over HTTP it follows the "# service=git-upload-pack"
	// preamble, which the server always sends.
	Advert func() io.Reader
	// HangUp closes a git:// connection right after the advertisement
	// (over HTTP the advertisement is a response of its own anyway):
	// for a raw Advert that lies about its length, so that the client
	// sees the end of the stream instead of waiting for bytes that never
	// come (a Stall does that).
	HangUp bool
	// Common are the objects a scripted server claims to have: a have
	// naming one is acknowledged.
	Common []plumbing.Hash

	// Pack is the answer to every request that ends with done.
	Pack []byte
	// PackStream, when not nil, replaces Pack: it is called with the
	// request and its reader streamed to the client (for outputs too big
	// to hold).
	PackStream func(Request) io.Reader
	// Response, when not nil, replaces everything the server would send
	// after reading done (the final ACK/NAK, the pack, side-band framing
	// and the closing flush-pkt) with the raw bytes it returns.
	Response func(Request) io.Reader

	// Stall, when not nil, stops the scripted or hybrid answer part way
	// (passthrough ignores it; see mirrortest.Proxy for stalling a real
	// server).
	Stall *Stall
}

// Request is one upload-pack request a client sent: over git://, the
// whole conversation up to done; over HTTP, one POST.
type Request struct {
	Transport string // "git" or "http"
	Wants     []plumbing.Hash
	Haves     []plumbing.Hash
	Caps      []string // of the first want line
	// Other are the other lines of the want section (shallow, deepen,
	// filter, ...).
	Other []string
	// Done reports that the request ended with done (a stateless HTTP
	// negotiation round ends with a flush-pkt instead).
	Done bool
}

// Has reports whether the client asked for capability c (a name, or
// name=value).
func (r Request) Has(c string) bool { return slices.Contains(r.Caps, c) }

// Phase is where a Stall stops.
type Phase int

const (
	// StallAdvert stops within the ref advertisement (over HTTP, after
	// the service preamble).
	StallAdvert Phase = iota
	// StallPack stops within the pack (counting pack bytes, before
	// side-band framing), after the ACK/NAK lines.
	StallPack
)

// Stall makes a session send After bytes of its Phase, flush them, and
// then send nothing more, with the connection open, until Release is
// closed (then it goes on) or the server closes. Reached is closed when
// the first session stalls. Make it with NewStall.
type Stall struct {
	Phase   Phase
	After   int64
	Reached chan struct{}
	Release chan struct{}

	reached, released sync.Once
}

// NewStall returns a Stall of phase after n bytes.
func NewStall(phase Phase, n int64) *Stall {
	return &Stall{Phase: phase, After: n, Reached: make(chan struct{}), Release: make(chan struct{})}
}

// Unblock releases the stalled sessions (and makes later ones pass
// without stalling). It may be called more than once.
func (s *Stall) Unblock() { s.released.Do(func() { close(s.Release) }) }

// wait signals Reached and blocks until the stall is released or quit or
// abort is closed (then it returns errStopped).
func (s *Stall) wait(quit, abort <-chan struct{}) error {
	s.reached.Do(func() { close(s.Reached) })
	select {
	case <-s.Release:
		return nil
	case <-quit:
	case <-abort:
	}
	return errStopped
}
