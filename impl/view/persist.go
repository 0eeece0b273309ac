package view

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/stackd/stackd/gen"
)

// A hollow snapshot can be saved and loaded again by a later process, so
// that a restart serves every mirror's view without building it: the
// saved form is keyed by everything a build reads (Key), and a load with
// any other key is refused.
//
// The file is: the magic line, a 4-byte big-endian header length, the
// header (JSON), the stacks' compressed part, and a SHA-256 of all that.
// A torn or altered file fails the checksum and is not used.

// persistMagic starts a saved hollow snapshot; its last digit is the
// format version.
const persistMagic = "stackd hollow view 1\n"

// ErrStale is LoadHollow's error for a saved view made from other refs,
// another configuration or another stackd binary.
var ErrStale = errors.New("view: the saved view is not of these refs")

// maxSavedHeader bounds the header a load accepts: a repository value and
// the recently merged commits are a few kilobytes.
const maxSavedHeader = 4 << 20

// Key is the key a saved view of repo's current refs, built with in by
// this binary, is stored under: a SHA-256 of the binary (its build), the
// input (repository id, kind, trunk, remote), every ref (HEAD included)
// and the repository's git config (branch tracking).
func Key(repo Repo, in Input) ([32]byte, error) {
	id, err := binaryID()
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	h.Write([]byte(persistMagic))
	h.Write(id[:])
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(in.RepoID)
	field(string(in.Kind))
	field(in.Trunk)
	field(in.Remote)
	all := repo.Refs().All()
	field(fmt.Sprint(len(all)))
	for _, r := range all {
		field(r.Name)
		field(r.Target)
		h.Write(r.Hash[:])
	}
	cfg, err := repo.Config()
	if err != nil {
		return [32]byte{}, fmt.Errorf("view key: %w", err)
	}
	raw, err := cfg.Marshal()
	if err != nil {
		return [32]byte{}, fmt.Errorf("view key: %w", err)
	}
	field(string(raw))
	var k [32]byte
	h.Sum(k[:0])
	return k, nil
}

// binaryID is a SHA-256 of the running executable: a saved view is used
// only by the build that saved it.
var binaryID = sync.OnceValues(func() ([32]byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return [32]byte{}, fmt.Errorf("view key: %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return [32]byte{}, fmt.Errorf("view key: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, fmt.Errorf("view key: %w", err)
	}
	var id [32]byte
	h.Sum(id[:0])
	return id, nil
})

// savedHeader is the JSON header of a saved view.
type savedHeader struct {
	Key        []byte   `json:"key"`
	Repo       gen.Repo `json:"repo"`
	MergedJSON []byte   `json:"merged"`
	Trunk      string   `json:"trunk"`
	Current    string   `json:"current"`
	Counts     Counts   `json:"counts"`
	Hash       string   `json:"hash"`
	CRC        uint32   `json:"crc"`
	Size       int64    `json:"size"`
}

// Save writes the hollow form of s under key (see Key): a later LoadHollow
// with the same key makes a snapshot with the same content hash and view
// bytes (at the version it is published with).
func (s *Snapshot) Save(w io.Writer, key [32]byte) error {
	hs := s.Hollowed()
	hdr := savedHeader{Key: key[:], Repo: hs.repo, MergedJSON: hs.mergedJSON, Trunk: hs.trunk, Current: hs.current,
		Counts: hs.vals.counts, Hash: hs.hash}
	hdr.Repo.ViewVersion = nil
	var body []byte
	if len(hs.chunks) == 1 {
		c := hs.chunks[0]
		hdr.CRC, hdr.Size, body = c.crc, c.size, c.deflated
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("view: save: %w", err)
	}
	sum := sha256.New()
	out := io.MultiWriter(w, sum)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(js)))
	for _, p := range [][]byte{[]byte(persistMagic), n[:], js, body} {
		if _, err := out.Write(p); err != nil {
			return fmt.Errorf("view: save: %w", err)
		}
	}
	if _, err := w.Write(sum.Sum(nil)); err != nil {
		return fmt.Errorf("view: save: %w", err)
	}
	return nil
}

// LoadHollow reads a view saved by Save under key. It is ErrStale when the
// file was saved under another key, and another error when it is not a
// whole saved view. The snapshot is at version 0 (see WithVersion).
func LoadHollow(data []byte, key [32]byte) (*Snapshot, error) {
	bad := func(why string) error { return fmt.Errorf("view: the saved view is damaged: %s", why) }
	if len(data) < len(persistMagic)+4+sha256.Size || string(data[:len(persistMagic)]) != persistMagic {
		return nil, bad("no header")
	}
	sum := sha256.Sum256(data[:len(data)-sha256.Size])
	if !bytes.Equal(sum[:], data[len(data)-sha256.Size:]) {
		return nil, bad("checksum mismatch")
	}
	rest := data[len(persistMagic) : len(data)-sha256.Size]
	n := int64(binary.BigEndian.Uint32(rest[:4]))
	rest = rest[4:]
	if n > maxSavedHeader || n > int64(len(rest)) {
		return nil, bad("header length")
	}
	var hdr savedHeader
	if err := json.Unmarshal(rest[:n], &hdr); err != nil {
		return nil, bad("header")
	}
	if !bytes.Equal(hdr.Key, key[:]) {
		return nil, ErrStale
	}
	body := bytes.Clone(rest[n:])
	if hdr.Size < 0 || (hdr.Size == 0) != (len(body) == 0) || len(hdr.Hash) < 16 {
		return nil, bad("body")
	}
	if !json.Valid(hdr.MergedJSON) {
		return nil, bad("recently merged")
	}
	return newHollow(hollowParts{
		repo:       hdr.Repo,
		mergedJSON: hdr.MergedJSON,
		trunk:      hdr.Trunk,
		current:    hdr.Current,
		counts:     hdr.Counts,
		hash:       hdr.Hash,
		stacks:     &chunk{first: true, deflated: body, crc: hdr.CRC, size: hdr.Size},
	}, 0, time.Time{}), nil
}
