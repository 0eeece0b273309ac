package diff_test

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var hunkHeader = regexp.MustCompile(`^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(?: .*)?\n$`)

// apply applies unified-diff hunks (no file headers) to old, strictly:
// every context and deleted line must match, every count must add up, and
// both start lines must be where the hunk lands.
func apply(old []byte, hunks []byte) ([]byte, error) {
	oldLines := strings.SplitAfter(string(old), "\n")
	if oldLines[len(oldLines)-1] == "" {
		oldLines = oldLines[:len(oldLines)-1]
	}
	lines := strings.SplitAfter(string(hunks), "\n")
	if lines[len(lines)-1] != "" {
		return nil, fmt.Errorf("hunks do not end with a newline")
	}
	lines = lines[:len(lines)-1]
	var out []string
	pos := 0
	for k := 0; k < len(lines); {
		m := hunkHeader.FindStringSubmatch(lines[k])
		if m == nil {
			return nil, fmt.Errorf("line %d: not a hunk header: %q", k+1, lines[k])
		}
		k++
		num := func(s string, def int) int {
			if s == "" {
				return def
			}
			v, _ := strconv.Atoi(s)
			return v
		}
		s1, c1, s2, c2 := num(m[1], 0), num(m[2], 1), num(m[3], 0), num(m[4], 1)
		start1, start2 := s1-1, s2-1
		if c1 == 0 {
			start1 = s1
		}
		if c2 == 0 {
			start2 = s2
		}
		if start1 < pos || start1 > len(oldLines) {
			return nil, fmt.Errorf("hunk at old line %d overlaps or is out of range (at %d of %d)", s1, pos, len(oldLines))
		}
		out = append(out, oldLines[pos:start1]...)
		pos = start1
		if len(out) != start2 {
			return nil, fmt.Errorf("hunk lands at new line %d, header says %d", len(out), start2)
		}
		n1, n2 := 0, 0
		for k < len(lines) && (n1 < c1 || n2 < c2) {
			l := lines[k]
			k++
			if l == "" || l == "\n" {
				return nil, fmt.Errorf("empty line in hunk")
			}
			text := l[1:]
			if k < len(lines) && lines[k] == "\\ No newline at end of file\n" {
				text = strings.TrimSuffix(text, "\n")
				k++
			}
			switch l[0] {
			case ' ', '-':
				if pos >= len(oldLines) || oldLines[pos] != text {
					return nil, fmt.Errorf("old line %d does not match %q", pos+1, l)
				}
				pos++
				n1++
				if l[0] == ' ' {
					out = append(out, text)
					n2++
				}
			case '+':
				out = append(out, text)
				n2++
			default:
				return nil, fmt.Errorf("bad hunk line %q", l)
			}
		}
		if n1 != c1 || n2 != c2 {
			return nil, fmt.Errorf("hunk counts %d,%d, header says %d,%d", n1, n2, c1, c2)
		}
	}
	out = append(out, oldLines[pos:]...)
	return []byte(strings.Join(out, "")), nil
}

// counts returns the numbers of deleted and inserted lines of hunks.
func counts(hunks []byte) (del, ins int) {
	for _, l := range bytes.SplitAfter(hunks, []byte("\n")) {
		switch {
		case bytes.HasPrefix(l, []byte("-")):
			del++
		case bytes.HasPrefix(l, []byte("+")):
			ins++
		}
	}
	return del, ins
}
