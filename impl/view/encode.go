package view

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"hash/fnv"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"
)

// The gzip form of a view is assembled, not compressed whole: the stacks
// are grouped into chunks, each chunk is DEFLATE-compressed on its own and
// ended with a sync flush (a byte-aligned empty stored block), and the
// compressed chunks are concatenated between the compressed head and tail
// of the view, inside one gzip member. A chunk is compressed once and
// reused by every later snapshot in which its stacks are unchanged, so a
// rebuild after one changed branch compresses a few kilobytes.
//
// Chunk boundaries are chosen by content (after a stack whose root name
// hashes to 0 mod chunkEvery), so inserting or removing a stack disturbs
// only its own chunk.
const chunkEvery = 16

// chunk is a run of consecutive stacks and their compressed bytes.
type chunk struct {
	first    bool // holds the view's first stack (no leading comma)
	stacks   []*stackRec
	deflated []byte
	crc      uint32 // CRC-32 of the uncompressed bytes
	size     int64  // length of the uncompressed bytes
}

// patchChunks is prepareChunks for a snapshot whose stacks are prev's, in
// the same order, some of them replaced: the chunk boundaries are prev's,
// and only chunks holding a replaced stack are compressed again.
func (s *Snapshot) patchChunks(prev *Snapshot) {
	s.chunks = make([]*chunk, len(prev.chunks))
	var todo []*chunk
	k := 0
	for i, old := range prev.chunks {
		n := len(old.stacks)
		cur := s.stackRecs[k : k+n : k+n]
		k += n
		if slices.Equal(cur, old.stacks) {
			s.chunks[i] = old
			continue
		}
		c := &chunk{first: old.first, stacks: cur}
		s.chunks[i] = c
		todo = append(todo, c)
	}
	compressChunks(todo)
}

// prepareChunks groups the stacks into chunks, reusing prev's compressed
// chunks where their stacks are the same, and compresses the others.
func (s *Snapshot) prepareChunks(prev *Snapshot) {
	reuse := map[string]*chunk{}
	if prev != nil {
		for _, c := range prev.chunks {
			reuse[c.stacks[0].root] = c
		}
	}
	var todo []*chunk
	var cur []*stackRec
	flush := func() {
		if len(cur) == 0 {
			return
		}
		c := &chunk{first: len(s.chunks) == 0, stacks: slices.Clip(cur)}
		if old, ok := reuse[cur[0].root]; ok && old.first == c.first && slices.Equal(old.stacks, c.stacks) {
			c = old
		} else {
			todo = append(todo, c)
		}
		s.chunks = append(s.chunks, c)
		cur = nil
	}
	for _, sr := range s.stackRecs {
		cur = append(cur, sr)
		h := fnv.New32a()
		h.Write([]byte(sr.root))
		if h.Sum32()%chunkEvery == 0 {
			flush()
		}
	}
	flush()
	compressChunks(todo)
}

// compressChunks deflates chunks in parallel, one compressor per worker.
func compressChunks(todo []*chunk) {
	if len(todo) == 0 {
		return
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	next := make(chan *chunk)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			fw := deflaters.Get().(*flate.Writer)
			defer deflaters.Put(fw)
			for c := range next {
				buf.Reset()
				fw.Reset(&buf)
				var crc uint32
				var size int64
				write := func(p []byte) {
					fw.Write(p)
					crc = crc32.Update(crc, crc32.IEEETable, p)
					size += int64(len(p))
				}
				for i, sr := range c.stacks {
					if i > 0 || !c.first {
						write(comma)
					}
					sr.write(write)
				}
				fw.Flush()
				c.deflated, c.crc, c.size = bytes.Clone(buf.Bytes()), crc, size
			}
		}()
	}
	for _, c := range todo {
		next <- c
	}
	close(next)
	wg.Wait()
}

// Prepare makes the view's gzip now rather than on the first request (the
// registry calls it before publishing); its JSON is made on the first
// request that wants it (ViewJSON: clients that do not take gzip, the
// stack list), so a sync's answer does not wait for a copy of the whole
// view.
func (s *Snapshot) Prepare() { s.gzipOutputs() }

// frame is the view's JSON around its stacks: head ends with `"stacks":`,
// tail starts with the array's closing bracket.
func (s *Snapshot) frame() (head, tail []byte) {
	builtAt, _ := json.Marshal(s.builtAt) // a time in range: cannot fail
	repo, _ := json.Marshal(s.repo)       // plain values: cannot fail
	head = make([]byte, 0, 64+len(builtAt)+len(s.mergedJSON)+len(repo))
	head = append(head, `{"builtAt":`...)
	head = append(head, builtAt...)
	head = append(head, `,"recentlyMerged":`...)
	head = append(head, s.mergedJSON...)
	head = append(head, `,"repo":`...)
	head = append(head, repo...)
	head = append(head, `,"stacks":`...)
	tail = []byte(`],"version":` + strconv.FormatInt(s.version, 10) + "}\n")
	return head, tail
}

// gzipOutputs makes the view's gzip (and size) once per version.
func (s *Snapshot) gzipOutputs() *outputs {
	o := s.out.p.Load()
	o.gzipOnce.Do(func() {
		head, tail := s.frame()
		o.size = len(head) + 1 + len(tail)
		for _, c := range s.chunks {
			o.size += int(c.size) // the stacks and the commas between them
		}
		o.gzip = s.gzipView(append(head, '['), tail, o.size)
	})
	return o
}

// viewOutputs makes the view's JSON once per version (of a full
// snapshot: a hollow one inflates its gzip, inflateView).
func (s *Snapshot) viewOutputs() *outputs {
	o := s.out.p.Load()
	o.viewOnce.Do(func() {
		head, tail := s.frame()
		n := len(head) + 1 + len(tail)
		for _, sr := range s.stackRecs {
			n += sr.size + 1
		}
		view := make([]byte, 0, n)
		view = append(view, head...)
		o.stacksFrom = len(view)
		view = append(view, '[')
		for i, sr := range s.stackRecs {
			if i > 0 {
				view = append(view, ',')
			}
			view = sr.appendJSON(view)
		}
		o.stacksTo = len(view) + 1 // the closing bracket starts tail
		o.view = append(view, tail...)
	})
	return o
}

// deflaters are reusable compressors (a compressor's state is large).
var deflaters = sync.Pool{New: func() any {
	fw, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // a valid level: cannot fail
	return fw
}}

// gzipView assembles the gzip member of the view from its compressed parts;
// its CRC is combined from theirs.
func (s *Snapshot) gzipView(head, tail []byte, size int) []byte {
	var buf bytes.Buffer
	n := 10 + 8 + 64 + len(head) + len(tail)
	for _, c := range s.chunks {
		n += len(c.deflated)
	}
	buf.Grow(n)
	buf.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // gzip header: deflate, no mtime, unknown OS
	fw := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(fw)
	fw.Reset(&buf)
	fw.Write(head)
	fw.Flush()
	for _, c := range s.chunks {
		buf.Write(c.deflated)
	}
	fw.Reset(&buf)
	fw.Write(tail)
	fw.Close()
	crc := crc32.ChecksumIEEE(head)
	for _, c := range s.chunks {
		crc = crcCombine(crc, c.crc, c.size)
	}
	crc = crcCombine(crc, crc32.ChecksumIEEE(tail), int64(len(tail)))
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], crc)
	binary.LittleEndian.PutUint32(trailer[4:], uint32(size))
	buf.Write(trailer[:])
	return buf.Bytes()
}

// ViewJSON is the JSON of View() followed by a newline (shared, read-only).
// A hollow snapshot decompresses it from its gzip on each call (not
// kept: see WriteView).
func (s *Snapshot) ViewJSON() []byte {
	if s.hollow {
		return s.inflateView()
	}
	return s.viewOutputs().view
}

// ViewGzip is ViewJSON compressed with gzip (shared, read-only).
func (s *Snapshot) ViewGzip() []byte { return s.gzipOutputs().gzip }

// StacksJSON is the JSON array of Stacks(), without a newline: a part of
// ViewJSON (shared, read-only).
func (s *Snapshot) StacksJSON() []byte {
	s.mustFull()
	o := s.viewOutputs()
	return o.view[o.stacksFrom:o.stacksTo:o.stacksTo]
}

// StackJSON is the JSON of one stack, without a newline (made from the
// branches' bytes on each call).
func (s *Snapshot) StackJSON(root string) ([]byte, bool) {
	s.mustFull()
	i, ok := s.byRoot[root]
	if !ok {
		return nil, false
	}
	return s.stackRecs[i].appendJSON(nil), true
}

// BranchJSON is the JSON of one branch, without a newline (shared,
// read-only).
func (s *Snapshot) BranchJSON(name string) ([]byte, bool) {
	s.mustFull()
	i, ok := s.byName[name]
	if !ok {
		return nil, false
	}
	return s.recs[i].json, true
}

// BranchesJSON is the JSON array of Branches() followed by a newline
// (made on first use, shared, read-only).
func (s *Snapshot) BranchesJSON() []byte {
	s.mustFull()
	o := s.out.p.Load()
	o.branchesOnce.Do(func() {
		n := 3
		for _, r := range s.recs {
			n += len(r.json) + 1
		}
		out := make([]byte, 0, n)
		out = append(out, '[')
		for i, r := range s.recs {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, r.json...)
		}
		o.branches = append(out, "]\n"...)
	})
	return o.branches
}
