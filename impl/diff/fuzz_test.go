package diff_test

import (
	"bytes"
	"context"
	"math"
	"testing"

	"github.com/stackd/stackd/impl/diff"
)

// FuzzLineDiff compares two texts under one of several options and checks
// that the hunks turn the old text into the new one, that their counts
// agree with the result, and that a minimal comparison is as short as a
// longest common subsequence allows.
//
// mode picks the options (bits 0-1: default, minimal, a cost limit of 1,
// a budget of 30 steps) and, with bit 2, turns each byte of the inputs
// into a line of its own from a 5-line alphabet (many equal lines).
func FuzzLineDiff(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), []byte("a\nB\nc\n"), uint8(0))
	f.Add([]byte("a\nb"), []byte("a\nb\n"), uint8(1))
	f.Add([]byte(""), []byte("x\ny\n"), uint8(2))
	f.Add([]byte("x\ny\n"), []byte(""), uint8(3))
	f.Add([]byte("abracadabra"), []byte("cadabraabra"), uint8(4))
	f.Add([]byte("0123401234012340123401234"), []byte("4321043210432104321043210"), uint8(5))
	f.Add([]byte("aaaaabbbbbaaaaabbbbb"), []byte("bbbbbaaaaabbbbbaaaaa"), uint8(6))
	f.Add([]byte("hello world, hello"), []byte("world hello, world"), uint8(7))
	f.Add([]byte("func a() {\n\treturn 1\n}\n\nfunc b() {\n\treturn 2\n}\n"), []byte("func a() {\n\treturn 1\n}\n\nfunc c() {\n}\n\nfunc b() {\n\treturn 2\n}\n"), uint8(0))
	f.Fuzz(func(t *testing.T, old, new []byte, mode uint8) {
		if mode&4 != 0 {
			old, new = lineify(old), lineify(new)
		}
		var o diff.Options
		budget := int64(math.MaxInt64)
		switch mode & 3 {
		case 1:
			o.Minimal = true
		case 2:
			o.MaxCost = 1
		case 3:
			budget = 30
		}
		r, err := diff.Compare(old, new, o, diff.NewBudget(context.Background(), budget))
		if err != nil {
			t.Fatal(err)
		}
		var w bytes.Buffer
		r.WriteHunks(&w)
		check(t, r, string(old), string(new), w.Bytes())
		n1, n2 := r.Lines()
		if o.Minimal && n1*n2 <= 1<<20 {
			d, i := r.Changes()
			if shortest := n1 + n2 - 2*lcs(string(old), string(new)); d+i != shortest {
				t.Fatalf("minimal: %d changes, the shortest script has %d", d+i, shortest)
			}
		}
	})
}

// lineify makes each byte a line of its own, one of five.
func lineify(in []byte) []byte {
	out := make([]byte, 0, 2*len(in))
	for _, c := range in {
		out = append(out, 'a'+c%5, '\n')
	}
	return out
}
