package mirror

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/refname"
	"github.com/stackd/stackd/impl/refs"
)

// This file holds everything the package writes or reads on disk outside
// the object store: packed-refs, loose refs (read, and deleted when they
// go stale), HEAD, and git's lock-file protocol for atomic writes.

const (
	packedRefsFile   = "packed-refs"
	packedRefsHeader = "# pack-refs with: peeled fully-peeled sorted \n"
	lockSuffix       = ".lock"
)

// packedRef is one entry of packed-refs; peeled is the ^ line that follows
// it (zero when absent).
type packedRef struct {
	name   string
	hash   plumbing.Hash
	peeled plumbing.Hash
}

// diskRefs is what Open reads from a mirror's refs.
type diskRefs struct {
	table  *refs.Table
	peeled map[string]plumbing.Hash // namespace refs with a ^ line
	extra  []packedRef              // packed refs outside the namespaces, kept verbatim, sorted
	loose  map[string]bool          // namespace refs that exist as loose files
}

// fileStamp identifies a version of a file without reading it: a file
// replaced by a rename has another inode, and a rewritten one another
// size or modification time.
type fileStamp struct {
	exists bool
	ino    uint64
	size   int64
	mtime  int64
}

func stampFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st
}

// refStamps identify the files that hold a mirror's refs as stackd writes
// them: packed-refs and HEAD.
type refStamps struct {
	packed, head fileStamp
}

func stampRefs(dir string) refStamps {
	return refStamps{packed: stampFile(filepath.Join(dir, packedRefsFile)), head: stampFile(filepath.Join(dir, "HEAD"))}
}

// walkLooseRefs calls fn with the name (relative to dir, with slashes)
// and the value of every loose ref file under root, a directory of dir,
// that holds an object id: lock files, symbolic refs and garbage are
// skipped, and a missing root holds no ref.
func walkLooseRefs(dir, root string, fn func(name string, h plumbing.Hash)) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() || strings.HasSuffix(d.Name(), lockSuffix) {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if h, ok := parseHex(bytes.TrimSpace(raw)); ok {
			fn(filepath.ToSlash(rel), h)
		}
		return nil
	})
}

// readRefs loads the mirror's refs in the namespaces (packed-refs, then
// loose refs, which win) and HEAD.
func readRefs(dir string) (diskRefs, error) {
	out := diskRefs{peeled: map[string]plumbing.Hash{}, loose: map[string]bool{}}
	packed, err := readPackedRefs(filepath.Join(dir, packedRefsFile))
	if err != nil {
		return out, err
	}
	head, err := readHead(dir)
	if err != nil {
		return out, err
	}
	list := make([]refs.Ref, 0, len(packed)+1)
	if head.Name != "" {
		list = append(list, head) // "HEAD" sorts before every "refs/..."
	}
	for _, p := range packed {
		if !InNamespaces(p.name) || !validRefName(p.name) {
			out.extra = append(out.extra, p) // kept as it is
			continue
		}
		list = append(list, refs.Ref{Name: p.name, Hash: p.hash})
		if !p.peeled.IsZero() {
			out.peeled[p.name] = p.peeled
		}
	}
	// encodePackedRefs merges them by name; a file written without the
	// "sorted" trait may list them in any order.
	slices.SortStableFunc(out.extra, func(a, b packedRef) int { return strings.Compare(a.name, b.name) })
	for _, ns := range Namespaces {
		root := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(ns, "/")))
		err := walkLooseRefs(dir, root, func(name string, h plumbing.Hash) {
			if !validRefName(name) {
				return
			}
			list = append(list, refs.Ref{Name: name, Hash: h})
			out.loose[name] = true
			delete(out.peeled, name) // the packed ^ line belonged to the packed value
		})
		if err != nil {
			return out, fmt.Errorf("mirror: read loose refs: %w", err)
		}
	}
	if len(out.loose) == 0 && sortedRefs(list) {
		out.table = refs.NewSortedTable(list)
	} else {
		out.table = refs.NewTable(list) // loose refs override packed ones (last wins)
	}
	return out, nil
}

func sortedRefs(list []refs.Ref) bool {
	for i := 1; i < len(list); i++ {
		if list[i-1].Name >= list[i].Name {
			return false
		}
	}
	return true
}

// readPackedRefs parses a packed-refs file; a missing file is empty.
func readPackedRefs(path string) ([]packedRef, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mirror: read packed-refs: %w", err)
	}
	var out []packedRef
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case len(line) == 0 || line[0] == '#':
		case line[0] == '^':
			h, ok := parseHex(line[1:])
			if !ok || len(out) == 0 {
				return nil, fmt.Errorf("mirror: packed-refs: bad peeled line %q", line)
			}
			out[len(out)-1].peeled = h
		default:
			if len(line) < 42 || line[40] != ' ' {
				return nil, fmt.Errorf("mirror: packed-refs: bad line %q", line)
			}
			h, ok := parseHex(line[:40])
			if !ok {
				return nil, fmt.Errorf("mirror: packed-refs: bad line %q", line)
			}
			out = append(out, packedRef{name: string(line[41:]), hash: h})
		}
	}
	return out, nil
}

// parseHex parses a 40-digit lowercase or uppercase hex object id.
func parseHex(b []byte) (plumbing.Hash, bool) {
	var h plumbing.Hash
	if len(b) != 2*len(h) {
		return h, false
	}
	if _, err := hex.Decode(h[:], b); err != nil {
		return h, false
	}
	return h, true
}

// readHead reads HEAD: symbolic ("ref: <target>") or detached (a hash).
// A missing or unreadable HEAD yields a zero Ref.
func readHead(dir string) (refs.Ref, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "HEAD"))
	if errors.Is(err, fs.ErrNotExist) {
		return refs.Ref{}, nil
	}
	if err != nil {
		return refs.Ref{}, fmt.Errorf("mirror: read HEAD: %w", err)
	}
	s := bytes.TrimSpace(raw)
	if target, ok := bytes.CutPrefix(s, []byte("ref:")); ok {
		return refs.Ref{Name: refs.HEAD, Target: string(bytes.TrimSpace(target))}, nil
	}
	if h, ok := parseHex(s); ok {
		return refs.Ref{Name: refs.HEAD, Hash: h}, nil
	}
	return refs.Ref{}, nil
}

// writePackedRefs writes the namespace refs of t (with their peeled
// values) merged with the extra refs, sorted, in git's packed-refs
// format, to w as it goes: a table of long ref names is never held twice.
func writePackedRefs(w io.Writer, t *refs.Table, peeled map[string]plumbing.Hash, extra []packedRef) error {
	all := t.All()
	b := bufio.NewWriterSize(w, 256<<10)
	b.WriteString(packedRefsHeader)
	var hexbuf [40]byte
	line := func(p packedRef) {
		hex.Encode(hexbuf[:], p.hash[:])
		b.Write(hexbuf[:])
		b.WriteByte(' ')
		b.WriteString(p.name)
		b.WriteByte('\n')
		if !p.peeled.IsZero() {
			hex.Encode(hexbuf[:], p.peeled[:])
			b.WriteByte('^')
			b.Write(hexbuf[:])
			b.WriteByte('\n')
		}
	}
	i, j := 0, 0
	for i < len(all) || j < len(extra) {
		if i < len(all) && (all[i].Symbolic() || !InNamespaces(all[i].Name)) {
			i++ // HEAD and any other symbolic entry never go to packed-refs
			continue
		}
		if j >= len(extra) || (i < len(all) && all[i].Name < extra[j].name) {
			line(packedRef{name: all[i].Name, hash: all[i].Hash, peeled: peeled[all[i].Name]})
			i++
		} else {
			line(extra[j])
			j++
		}
	}
	return b.Flush()
}

// writePackedRefsLocked replaces path's packed-refs as writeLocked does,
// writing the refs as they are rendered.
func writePackedRefsLocked(path string, t *refs.Table, peeled map[string]plumbing.Hash, extra []packedRef) error {
	return writeLockedFunc(path, func(w io.Writer) error { return writePackedRefs(w, t, peeled, extra) })
}

// writeLocked replaces path atomically with git's lock-file protocol:
// create path.lock exclusively (an existing lock is someone else's:
// ErrLocked, and it is left alone), write, fsync, rename over path. On
// failure the lock this call created is removed.
func writeLocked(path string, data []byte) error {
	return writeLockedFunc(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeLockedFunc is writeLocked with the content written by write.
func writeLockedFunc(path string, write func(io.Writer) error) (err error) {
	lock := path + lockSuffix
	f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mirror: %s: %w (remove it if no git process is running)", lock, ErrLocked)
	}
	if err != nil {
		return fmt.Errorf("mirror: lock %s: %w", filepath.Base(path), err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(lock)
		}
	}()
	if err = write(f); err != nil {
		return fmt.Errorf("mirror: write %s: %w", lock, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("mirror: sync %s: %w", lock, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("mirror: close %s: %w", lock, err)
	}
	if err = os.Rename(lock, path); err != nil {
		return fmt.Errorf("mirror: rename %s: %w", lock, err)
	}
	return nil
}

// syncDir fsyncs a directory, so that renames and new entries in it are
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mirror: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("mirror: sync %s: %w", dir, err)
	}
	return nil
}

// removeLoose deletes the loose file of ref name (if it is a regular
// file), then the directories above it that became empty, up to the
// namespace directory.
func removeLoose(dir, name string) error {
	path := filepath.Join(dir, filepath.FromSlash(name))
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mirror: remove loose ref %s: %w", name, err)
	}
	stop := filepath.Join(dir, "refs")
	for p := filepath.Dir(path); len(p) > len(stop) && strings.Count(p[len(stop):], string(filepath.Separator)) > 1; p = filepath.Dir(p) {
		if os.Remove(p) != nil {
			break // not empty (or gone): stop climbing
		}
	}
	return nil
}

// validRefName reports whether name is a ref name git accepts (the rules
// of git check-ref-format, and git branch's for refs/heads/*), so that it
// can be written to packed-refs and mapped to a path inside the
// repository, and that stackd can serve: valid UTF-8 (for JSON), each
// component a file name (at most 255 bytes). Refs with other names are
// ignored, as git itself refuses them.
func validRefName(name string) bool {
	if len(name) == 0 || len(name) > 1024 || name[len(name)-1] == '/' || name[len(name)-1] == '.' ||
		strings.Contains(name, "..") || strings.Contains(name, "@{") || !utf8.ValidString(name) {
		return false
	}
	if branch, ok := strings.CutPrefix(name, "refs/heads/"); ok && !refname.Valid(branch) {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c < 0x20 || c == 0x7f:
			return false
		case c == ' ' || c == '~' || c == '^' || c == ':' || c == '?' || c == '*' || c == '[' || c == '\\':
			return false
		}
	}
	for comp := range strings.SplitSeq(name, "/") {
		if comp == "" || comp[0] == '.' || strings.HasSuffix(comp, lockSuffix) || len(comp) > 255 {
			return false
		}
	}
	return true
}
