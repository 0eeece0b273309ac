package hostile

import (
	"bufio"
	"fmt"
	"io"
	"iter"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Ref is an advertised ref. A non-zero Peeled is advertised as the
// "<peeled> <name>^{}" line that follows it (what an annotated tag points
// at, or a lie).
type Ref struct {
	Name   string
	Hash   plumbing.Hash
	Peeled plumbing.Hash
}

// DefaultCaps are the capabilities a scripted advertisement offers when
// Scenario.Caps is nil: what both go-git's client and git's handle with
// wants, haves and done sent in one go. No multi_ack (go-git refuses to
// negotiate it), no thin-pack, no shallow. A "symref=HEAD:<target>"
// capability is added when the scenario names a HEAD.
func DefaultCaps() []string {
	return []string{"side-band-64k", "side-band", "ofs-delta", "no-progress", "agent=hostile/1"}
}

// maxPktPayload is the largest payload of one pkt-line.
const maxPktPayload = 65516

// PktLine returns payload framed as a pkt-line (its length as 4 hex
// digits, then payload). It does not check the length: a payload of more
// than 65516 bytes gives a line git refuses, and one of more than 65531
// bytes a length that does not fit.
func PktLine(payload string) []byte {
	return append([]byte(fmt.Sprintf("%04x", len(payload)+4)), payload...)
}

// FlushPkt is the flush-pkt, "0000".
const FlushPkt = "0000"

// writeAdvert writes a protocol v0 ref advertisement: the HEAD line when
// head names one of refs, refs in the order given (each followed by its
// peeled line), then more, then a flush-pkt. The capabilities ride on
// the first line; with no line at all, on the "capabilities^{}" line.
func writeAdvert(w io.Writer, head string, refs []Ref, more iter.Seq[Ref], caps []string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	capLine := strings.Join(caps, " ")
	first := true
	var err error
	line := func(h plumbing.Hash, name string) bool {
		payload := h.String() + " " + name
		if first {
			payload += "\x00" + capLine
			first = false
		}
		payload += "\n"
		if len(payload) > maxPktPayload {
			err = fmt.Errorf("hostile: advertised line of %d bytes does not fit a pkt-line", len(payload))
			return false
		}
		_, err = bw.Write(PktLine(payload))
		return err == nil
	}
	emit := func(r Ref) bool {
		if !line(r.Hash, r.Name) {
			return false
		}
		return r.Peeled.IsZero() || line(r.Peeled, r.Name+"^{}")
	}
	if head != "" {
		for _, r := range refs {
			if r.Name == head {
				if !line(r.Hash, "HEAD") {
					return err
				}
				break
			}
		}
	}
	for _, r := range refs {
		if !emit(r) {
			return err
		}
	}
	if more != nil {
		for r := range more {
			if !emit(r) {
				break
			}
		}
		if err != nil {
			return err
		}
	}
	if first && !line(plumbing.ZeroHash, "capabilities^{}") {
		return err
	}
	if _, err := bw.WriteString(FlushPkt); err != nil {
		return err
	}
	return bw.Flush()
}

// capsFor returns the capabilities of a scenario's advertisement.
func capsFor(caps []string, head string) []string {
	if caps == nil {
		caps = DefaultCaps()
	}
	if head == "" {
		return caps
	}
	for _, c := range caps {
		if strings.HasPrefix(c, "symref=") {
			return caps
		}
	}
	return append(append([]string(nil), caps...), "symref=HEAD:"+head)
}
