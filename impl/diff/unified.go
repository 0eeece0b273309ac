package diff

import (
	"bytes"
	"strconv"
)

// Context is the number of unchanged lines shown around a change (git's
// default).
const Context = 3

// funcNameMax is how much of a function line a hunk header shows.
const funcNameMax = 80

// change is a run of deleted lines a[i:i+del] replaced by b[j:j+ins].
type change struct{ i, del, j, ins int }

// script lists the changes in order.
func (r *Result) script() []change {
	var out []change
	a, b := &r.a, &r.b
	i, j := 0, 0
	for i < a.n() || j < b.n() {
		if (i < a.n() && a.changed(i)) || (j < b.n() && b.changed(j)) {
			c := change{i: i, j: j}
			for i < a.n() && a.changed(i) {
				i++
			}
			for j < b.n() && b.changed(j) {
				j++
			}
			c.del, c.ins = i-c.i, j-c.j
			out = append(out, c)
			continue
		}
		i++
		j++
	}
	return out
}

// WriteHunks writes the unified-diff hunks of r to w, as git does: Context
// lines around each change, changes at most 2*Context unchanged lines
// apart in one hunk, each hunk header followed by the nearest line above
// the hunk that starts with a letter, '_' or '$' (its first 80 bytes,
// trailing white space trimmed), and "\ No newline at end of file" after
// a last line without one. It writes nothing when the texts are equal.
func (r *Result) WriteHunks(w *bytes.Buffer) {
	changes := r.script()
	a, b := &r.a, &r.b
	var fn []byte      // the function line of the last hunk
	searchedDown := -1 // lines above this one were searched for it
	for k := 0; k < len(changes); {
		// The changes of this hunk: changes[k:e].
		e := k + 1
		for e < len(changes) && changes[e].i-(changes[e-1].i+changes[e-1].del) <= 2*Context {
			e++
		}
		first, last := changes[k], changes[e-1]
		pre := min(Context, first.i)
		s1, s2 := first.i-pre, first.j-pre
		end1 := min(last.i+last.del+Context, a.n())
		post := end1 - (last.i + last.del)
		end2 := last.j + last.ins + post

		// The function line: search upwards from the line above the
		// hunk, down to where the previous hunk's search started.
		for l := s1 - 1; l > searchedDown; l-- {
			if f, ok := funcLine(a.line(l)); ok {
				fn = f
				break
			}
		}
		searchedDown = s1 - 1

		w.WriteString("@@ -")
		writeRange(w, s1, end1-s1)
		w.WriteString(" +")
		writeRange(w, s2, end2-s2)
		w.WriteString(" @@")
		if len(fn) > 0 {
			w.WriteByte(' ')
			w.Write(fn)
		}
		w.WriteByte('\n')

		i := s1
		for _, c := range changes[k:e] {
			for ; i < c.i; i++ {
				writeLine(w, ' ', a, i)
			}
			for x := c.i; x < c.i+c.del; x++ {
				writeLine(w, '-', a, x)
			}
			for y := c.j; y < c.j+c.ins; y++ {
				writeLine(w, '+', b, y)
			}
			i = c.i + c.del
		}
		for ; i < end1; i++ {
			writeLine(w, ' ', a, i)
		}
		k = e
	}
}

// writeRange writes a hunk range: the first line (the one before, for an
// empty range) and the count, which is left out when it is 1.
func writeRange(w *bytes.Buffer, start, count int) {
	if count > 0 {
		start++
	}
	w.WriteString(strconv.Itoa(start))
	if count != 1 {
		w.WriteByte(',')
		w.WriteString(strconv.Itoa(count))
	}
}

func writeLine(w *bytes.Buffer, prefix byte, s *side, i int) {
	l := s.line(i)
	w.WriteByte(prefix)
	w.Write(l)
	if len(l) == 0 || l[len(l)-1] != '\n' {
		w.WriteString("\n\\ No newline at end of file\n")
	}
}

// funcLine tells whether a line can name the function a hunk is in (git's
// default rule), and returns what the header shows of it.
func funcLine(l []byte) ([]byte, bool) {
	if len(l) == 0 {
		return nil, false
	}
	c := l[0]
	if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '$') {
		return nil, false
	}
	if len(l) > funcNameMax {
		l = l[:funcNameMax]
	}
	for len(l) > 0 && isSpace(l[len(l)-1]) {
		l = l[:len(l)-1]
	}
	return l, true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
