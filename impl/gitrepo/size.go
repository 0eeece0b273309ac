package gitrepo

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// ObjectSize returns the size in bytes of object h's content without
// reading the content (it implements view.Sizer): from a loose object's
// header, or from a pack's index and the object's entry header in the
// pack; for a deltified object, from the first bytes of the delta, which
// hold the size of the object it makes. go-git's own EncodedObjectSize
// inflates a whole delta to read those bytes, and a delta may be as large
// as its object; this reads at most a few bytes of it.
//
// The repository's object directory and its alternates
// (objects/info/alternates) are searched. An object found in none of them
// (one in a pack whose index this reader could not read) is sized by
// go-git. A missing object wraps plumbing.ErrObjectNotFound.
func (r *Repo) ObjectSize(h plumbing.Hash) (int64, error) {
	size, err := r.objs.sizeIndex().size(h)
	if errors.Is(err, errNotHere) {
		err = r.objs.with(func(s *ReadOnlyStorer) error {
			size, err = s.EncodedObjectSize(h)
			return err
		})
	}
	if err != nil {
		return 0, fmt.Errorf("gitrepo: size of %s: %w", h, err)
	}
	return size, nil
}

// errNotHere: the object is in no pack or loose object of the index.
var errNotHere = errors.New("object not in the object directories")

// errCorrupt reports an object header that cannot be parsed.
var errCorrupt = errors.New("corrupt object header")

// sizeIndex answers ObjectSize for one set of pack files: each pack's
// index, read once, and the pack file, opened on first use and kept open
// (like go-git's storers; a replaced set is closed by the garbage
// collector with its files).
type sizeIndex struct {
	dirs  []string // object directories: the repository's, then its alternates
	packs []*packSizes
}

type packSizes struct {
	idx  *idxfile.MemoryIndex
	path string

	once sync.Once
	f    *os.File
	err  error
}

// sizeIndex returns the pack set's index, loading it on first use.
func (o *objects) sizeIndex() *sizeIndex {
	o.sizesOnce.Do(func() {
		o.sizes = &sizeIndex{}
		o.sizes.add(o.objectsDir, o.packs)
		for _, alt := range alternates(o.objectsDir) {
			o.sizes.add(alt, nil)
		}
	})
	return o.sizes
}

// maxAlternateDepth bounds the chain of alternates followed (git's own
// bound).
const maxAlternateDepth = 5

// alternates lists the object directories dir borrows from, recursively:
// the lines of objects/info/alternates, absolute or relative to the
// object directory, without comments.
func alternates(dir string) []string {
	seen := map[string]bool{filepath.Clean(dir): true}
	var out []string
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		if depth > maxAlternateDepth {
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, "info", "alternates"))
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimRight(line, "\r")
			if line == "" || line[0] == '#' {
				continue
			}
			if line[0] == '"' {
				if u, err := strconv.Unquote(line); err == nil {
					line = u
				}
			}
			if !filepath.IsAbs(line) {
				line = filepath.Join(dir, line)
			}
			line = filepath.Clean(line)
			if seen[line] {
				continue
			}
			seen[line] = true
			if fi, err := os.Stat(line); err != nil || !fi.IsDir() {
				continue
			}
			out = append(out, line)
			walk(line, depth+1)
		}
	}
	walk(dir, 1)
	return out
}

// add adds an object directory: its loose objects and the packs named
// (file names in dir/pack; nil: those there now). A pack whose index
// cannot be read is left out: its objects are sized by go-git.
func (si *sizeIndex) add(dir string, packs []string) {
	si.dirs = append(si.dirs, dir)
	packDir := filepath.Join(dir, "pack")
	if packs == nil {
		entries, _ := os.ReadDir(packDir)
		for _, e := range entries {
			packs = append(packs, e.Name())
		}
	}
	for _, name := range packs {
		base, ok := strings.CutSuffix(name, ".idx")
		if !ok {
			continue
		}
		if _, err := os.Stat(filepath.Join(packDir, base+".pack")); err != nil {
			continue
		}
		idx, err := readIndex(filepath.Join(packDir, name))
		if err != nil {
			continue
		}
		si.packs = append(si.packs, &packSizes{idx: idx, path: filepath.Join(packDir, base+".pack")})
	}
}

func readIndex(path string) (*idxfile.MemoryIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(f).Decode(idx); err != nil {
		return nil, err
	}
	idx.CRC32 = nil // unused here
	return idx, nil
}

// size finds h in the packs, then among the loose objects.
func (si *sizeIndex) size(h plumbing.Hash) (int64, error) {
	for _, p := range si.packs {
		if off, ok := findOffset(p.idx, h); ok {
			return p.sizeAt(off)
		}
	}
	for _, dir := range si.dirs {
		if size, err := looseSize(dir, h); !errors.Is(err, errNotHere) {
			return size, err
		}
	}
	return 0, errNotHere
}

// findOffset looks h up in idx. (MemoryIndex.FindOffset would also
// remember every offset asked about, in a map that only grows.)
func findOffset(idx *idxfile.MemoryIndex, h plumbing.Hash) (int64, bool) {
	k := idx.FanoutMapping[h[0]]
	if k < 0 || k >= len(idx.Names) || k >= len(idx.Offset32) {
		return 0, false
	}
	names, offsets := idx.Names[k], idx.Offset32[k]
	n := min(len(names)/len(h), len(offsets)/4)
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(h[:], names[mid*len(h):(mid+1)*len(h)]); {
		case c == 0:
			return offset(idx, offsets[mid*4:mid*4+4])
		case c < 0:
			hi = mid
		default:
			lo = mid + 1
		}
	}
	return 0, false
}

// offset decodes a 4-byte offset entry, following it to the 8-byte table
// when its high bit is set.
func offset(idx *idxfile.MemoryIndex, b []byte) (int64, bool) {
	o := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if o&(1<<31) == 0 {
		return int64(o), true
	}
	i := uint64(o&^(1<<31)) * 8
	if i+8 > uint64(len(idx.Offset64)) {
		return 0, false
	}
	var v uint64
	for _, c := range idx.Offset64[i : i+8] {
		v = v<<8 | uint64(c)
	}
	if v > 1<<62 {
		return 0, false
	}
	return int64(v), true
}

// Pack entry types (gitformat-pack).
const (
	packOfsDelta = 6
	packRefDelta = 7
)

// sizeAt reads the entry header at off: the object's size, or for a
// delta the size recorded at the start of the delta.
func (p *packSizes) sizeAt(off int64) (int64, error) {
	p.once.Do(func() { p.f, p.err = os.Open(p.path) })
	if p.err != nil {
		return 0, p.err
	}
	// Type and size: at most 10 bytes; a delta's base: at most 10 bytes
	// (an offset) or 20 (an object id).
	var buf [32]byte
	n, err := p.f.ReadAt(buf[:], off)
	if n == 0 {
		return 0, fmt.Errorf("read pack entry at %d: %w", off, err)
	}
	hdr := buf[:n]
	c, i := hdr[0], 1
	typ := (c >> 4) & 7
	size := int64(c & 15)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if i >= len(hdr) || shift > 56 {
			return 0, errCorrupt
		}
		c = hdr[i]
		i++
		size |= int64(c&0x7f) << shift
	}
	switch typ {
	case 1, 2, 3, 4: // commit, tree, blob, tag
		return size, nil
	case packOfsDelta:
		for {
			if i >= len(hdr) {
				return 0, errCorrupt
			}
			c = hdr[i]
			i++
			if c&0x80 == 0 {
				break
			}
		}
	case packRefDelta:
		i += len(plumbing.ZeroHash)
		if i > len(hdr) {
			return 0, errCorrupt
		}
	default:
		return 0, errCorrupt
	}
	return deltaTargetSize(io.NewSectionReader(p.f, off+int64(i), 1<<62))
}

// inflaters are reusable zlib readers over a small buffer: a delta's or a
// loose object's header is a few bytes into its stream.
var inflaters sync.Pool

type inflater struct {
	br *bufio.Reader
	zr io.ReadCloser
}

// inflate runs f over the inflated stream read from r.
func inflate(r io.Reader, f func(io.ByteReader) (int64, error)) (int64, error) {
	in, _ := inflaters.Get().(*inflater)
	if in == nil {
		in = &inflater{br: bufio.NewReaderSize(r, 512)}
	} else {
		in.br.Reset(r)
	}
	var err error
	if in.zr == nil {
		in.zr, err = zlib.NewReader(in.br)
	} else {
		err = in.zr.(zlib.Resetter).Reset(in.br, nil)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	defer inflaters.Put(in)
	return f(byteReader{in.zr})
}

// byteReader reads one byte at a time from r (only a header's few bytes
// are read this way).
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var c [1]byte
	if _, err := io.ReadFull(b.r, c[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return c[0], nil
}

// deltaTargetSize reads the two sizes that start a delta (its base's, then
// its result's) and returns the second.
func deltaTargetSize(r io.Reader) (int64, error) {
	return inflate(r, func(br io.ByteReader) (int64, error) {
		if _, err := uvarint(br); err != nil {
			return 0, err
		}
		return uvarint(br)
	})
}

// uvarint reads a delta header size: 7 bits a byte, least significant
// first.
func uvarint(br io.ByteReader) (int64, error) {
	var v int64
	for shift := 0; ; shift += 7 {
		if shift > 56 {
			return 0, errCorrupt
		}
		c, err := br.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
}

// looseSize reads the header ("<type> <size>\x00") of loose object h.
func looseSize(objectsDir string, h plumbing.Hash) (int64, error) {
	hex := h.String()
	f, err := os.Open(filepath.Join(objectsDir, hex[:2], hex[2:]))
	if errors.Is(err, os.ErrNotExist) {
		return 0, errNotHere
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return inflate(f, func(br io.ByteReader) (int64, error) {
		// "commit 1234\x00": a type word and at most 19 digits.
		var hdr []byte
		for len(hdr) < 32 {
			c, err := br.ReadByte()
			if err != nil {
				return 0, fmt.Errorf("%w: %w", errCorrupt, err)
			}
			if c == 0 {
				typ, size, ok := strings.Cut(string(hdr), " ")
				if !ok || objectType(typ) == 0 {
					return 0, errCorrupt
				}
				n, err := strconv.ParseInt(size, 10, 64)
				if err != nil || n < 0 {
					return 0, errCorrupt
				}
				return n, nil
			}
			hdr = append(hdr, c)
		}
		return 0, errCorrupt
	})
}

// objectType is the object type named typ, or 0 for none.
func objectType(typ string) plumbing.ObjectType {
	t, err := plumbing.ParseObjectType(typ)
	if err != nil {
		return 0
	}
	switch t {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
		return t
	}
	return 0
}
