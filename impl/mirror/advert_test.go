package mirror

import (
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"

	"github.com/stackd/stackd/impl/mirror/hostile"
	"github.com/stackd/stackd/impl/refs"
)

// TestAdvertFilter: the advertisement reaches go-git with the first line,
// HEAD and the refs a mirror keeps only, stops at its end, and malformed
// pkt-lines and too many refs are refused.
func TestAdvertFilter(t *testing.T) {
	pkt := func(s string) string { return string(hostile.PktLine(s)) }
	first := pkt(idA + " HEAD\x00side-band-64k symref=HEAD:refs/heads/main\n")
	tests := []struct {
		name, in, out string
		max           int64
		err           error
	}{
		{"keeps what a mirror uses", first + pkt(idA+" refs/heads/main\n") + pkt(idB+" refs/tags/v1\n") + pkt(idA+" refs/tags/v1^{}\n") +
			pkt(idB+" refs/pull/1/head\n") + pkt(idB+" refs/stackit/metadata/main\n") + pkt(idB+" refs/heads/bad name\n") + "0000",
			first + pkt(idA+" refs/heads/main\n") + pkt(idB+" refs/stackit/metadata/main\n") + "0000", 10, nil},
		{"smart HTTP preamble", pkt("# service=git-upload-pack\n") + "0000" + first + "0000" + "0032NAK-what-follows-is-not-read",
			pkt("# service=git-upload-pack\n") + "0000" + first + "0000", 10, nil},
		{"empty answer", "", "", 10, io.EOF},
		{"too many refs", first + pkt(idA+" refs/heads/a\n") + pkt(idA+" refs/heads/b\n") + "0000", "", 1, ErrTooLarge},
		{"names too long", first + pkt(idA+" refs/heads/"+strings.Repeat("a", 40)+"\n") + pkt(idA+" refs/heads/"+strings.Repeat("b", 40)+"\n") + "0000", "", 10, ErrTooLarge},
		{"length not hex", first + "00zz", "", 10, ErrCorrupt},
		{"length too short", first + "0003", "", 10, ErrCorrupt},
		{"length over the maximum", first + "fff5", "", 10, ErrCorrupt},
		{"truncated", first + "0040" + idA, "", 10, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := io.ReadAll(newAdvertFilter(strings.NewReader(tt.in), Limits{MaxRefs: tt.max, MaxRefBytes: 64}))
			if tt.err == io.EOF {
				if err != nil || len(got) != 0 {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || string(got) != tt.out {
				t.Fatalf("got %q, %v\nwant %q", got, err, tt.out)
			}
		})
	}
}

// TestAdvertFilterCollect: a filter that collects the plain ref lines
// into the References map go-git decodes into yields the advertisement
// go-git decodes from the filter that passes every kept line on.
func TestAdvertFilterCollect(t *testing.T) {
	pkt := func(s string) string { return string(hostile.PktLine(s)) }
	// streams: the table of the advertisement's refs is found the same as
	// it streams (no invalid name, duplicate or odd line in the namespaces).
	// relists: a table with a ref renamed (its length and hash kept) is
	// matched by hash and length up to a point where the names' hash is
	// checked, and found different (errRelist).
	tests := []struct {
		name, in         string
		streams, relists bool
	}{
		{"plain", pkt(idA+" HEAD\x00side-band-64k symref=HEAD:refs/heads/main\n") + pkt(idA+" refs/heads/main\n") +
			pkt(idB+" refs/heads/side\n") + pkt(idB+" refs/pull/1/head\n") + pkt(idB+" refs/stackit/metadata/main\n") +
			pkt(idB+" refs/tags/v1\n") + pkt(idA+" refs/tags/v1^{}\n") + "0000", true, true},
		{"plain, a branch first", pkt(idA+" refs/heads/a\x00ofs-delta\n") + pkt(idB+" refs/heads/b\n") + "0000", true, true},
		{"HEAD first", pkt(idA+" HEAD\x00side-band-64k symref=HEAD:refs/heads/main\n") + pkt(idA+" refs/heads/main\n") +
			pkt(idB+" refs/heads/side\n") + pkt(idB+" refs/tags/v1\n") + pkt(idA+" refs/tags/v1^{}\n") +
			pkt(idB+" refs/stackit/metadata/main\n") + pkt(idA+" refs/heads/bad name\n") + "0000", false, true},
		{"a branch first", pkt(idA+" refs/heads/main\x00ofs-delta\n") + pkt(idB+" refs/heads/main\n") + pkt(idB+" refs/heads/x") + "0000", false, false},
		{"duplicates, last wins", pkt(idA+" HEAD\x00ofs-delta\n") + pkt(idA+" refs/heads/a\n") + pkt(idB+" refs/heads/a\n") + "0000", false, false},
		{"odd lines left to go-git", pkt(idA+" HEAD\x00ofs-delta\n") + pkt(idA+" refs/heads/a\x00junk\n") +
			pkt(idB+" refs/heads/b\n\n") + pkt(idB+" refs/heads/c\n") + "0000", false, false},
		{"shallow after the refs", pkt(idA+" HEAD\x00shallow\n") + pkt(idA+" refs/heads/a\n") + pkt("shallow "+idB) + "0000", true, true},
		{"malformed line after collected ones", pkt(idA+" HEAD\x00ofs-delta\n") + pkt(idA+" refs/heads/a\n") + pkt(idB+" refs/heads/b c\n") + "0000", false, true},
	}
	lim := Limits{MaxRefs: 100, MaxRefBytes: 1 << 10}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := packp.NewAdvRefs()
			wantErr := want.Decode(newAdvertFilter(strings.NewReader(tt.in), lim))
			got := packp.NewAdvRefs()
			f := newAdvertFilter(strings.NewReader(tt.in), lim)
			f.collect = got.References
			gotErr := got.Decode(f)
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("err = %v, want %v", gotErr, wantErr)
			}
			if wantErr != nil {
				return
			}
			if !maps.Equal(got.References, want.References) || !maps.Equal(got.Peeled, want.Peeled) ||
				!slices.Equal(got.Shallows, want.Shallows) || got.Capabilities.String() != want.Capabilities.String() ||
				(got.Head == nil) != (want.Head == nil) || (got.Head != nil && *got.Head != *want.Head) {
				t.Fatalf("collected %+v\nwant %+v", got, want)
			}
			if len(want.References) == 0 {
				t.Fatal("the case decodes no ref: it tests nothing")
			}
			if relisted := checkExpect(t, tt.in, lim, want.References, tt.streams); tt.relists != relisted {
				t.Errorf("a renamed table asked for a second listing: %v, want %v", relisted, tt.relists)
			}
		})
	}
}

// checkExpect decodes the advertisement in again with a ref table to
// compare it with (advertFilter.expect): the table of what it holds, and
// tables that differ from it by one ref each way, by a hash, or are empty.
// Each time, the refs (filled from the table when the filter found them
// the same) equal want, the refs decoded without a table, and same is
// what listing.same says of want.
//
// It reports whether a table asked for a second listing (errRelist):
// only a renamed one may.
func checkExpect(t *testing.T, in string, lim Limits, want map[string]plumbing.Hash, streams bool) (relisted bool) {
	t.Helper()
	var list []refs.Ref
	for name, h := range want {
		if wanted(name) {
			list = append(list, refs.Ref{Name: name, Hash: h})
		}
	}
	slices.SortFunc(list, func(a, b refs.Ref) int { return strings.Compare(a.Name, b.Name) })
	head := refs.Ref{Name: refs.HEAD, Target: "refs/heads/main"}
	other := plumbing.NewHash(strings.Repeat("c", 40))
	tables := map[string]*refs.Table{
		"equal": refs.NewTable(append([]refs.Ref{head}, list...)),
		"one more": refs.NewTable(append(append([]refs.Ref{head}, list...),
			refs.Ref{Name: "refs/heads/zzz", Hash: other})),
		"one less":        refs.NewTable(append([]refs.Ref{head}, list[:len(list)-1]...)),
		"first one moved": refs.NewTable(append([]refs.Ref{head, {Name: list[0].Name, Hash: other}}, list[1:]...)),
		"outside the namespaces": refs.NewTable(append(append([]refs.Ref{head}, list...),
			refs.Ref{Name: "refs/tags/v9", Hash: other})),
		"empty": nil,
	}
	// Renamed: a name replaced by another of its length, its hash kept;
	// the filter only finds it at the end of its comparison (the names
	// are hashed, see advertFilter), and asks for a second listing.
	renamed := map[string]bool{}
	if len(list) > 0 {
		rename := func(name string) string {
			b := []byte(name)
			b[len(b)-1] ^= 1 // another byte git accepts in a name
			if b[len(b)-1] == '.' || b[len(b)-1] == '/' {
				b[len(b)-1] = 'q'
			}
			return string(b)
		}
		last := len(list) - 1
		tables["last one renamed"] = refs.NewTable(append(append([]refs.Ref{head}, list[:last]...),
			refs.Ref{Name: rename(list[last].Name), Hash: list[last].Hash}))
		renamed["last one renamed"] = true
		if len(list) > 1 {
			// Renamed, then a difference: found where the comparison ends.
			tables["renamed, then moved"] = refs.NewTable(append([]refs.Ref{head,
				{Name: rename(list[0].Name), Hash: list[0].Hash}, {Name: list[1].Name, Hash: other}}, list[2:]...))
			renamed["renamed, then moved"] = true
		}
	}
	sawSame, relisted := false, false
	for name, table := range tables {
		got := packp.NewAdvRefs()
		f := newAdvertFilter(strings.NewReader(in), lim)
		f.collect = got.References
		f.expectTable(table, expect(table))
		err := got.Decode(f)
		if errors.Is(f.pending, errRelist) {
			if !renamed[name] {
				t.Fatalf("%s table: a second listing asked for", name)
			}
			relisted = true
			// What the session does: list again, without a table.
			got = packp.NewAdvRefs()
			f = newAdvertFilter(strings.NewReader(in), lim)
			f.collect = got.References
			err = got.Decode(f)
		}
		if err != nil {
			t.Fatalf("%s table: %v", name, err)
		}
		ls := &listing{refs: got.References}
		if f.same {
			ls.matched = table
			sawSame = true
		}
		oldWay := (&listing{refs: maps.Clone(want)}).same(table)
		if same := ls.same(table); same != oldWay || (f.same && !oldWay) {
			t.Errorf("%s table: same %v (streamed %v), want %v", name, same, f.same, oldWay)
		}
		ls.fill()
		if !maps.Equal(ls.refs, want) {
			t.Errorf("%s table: refs %v, want %v", name, ls.refs, want)
		}
	}
	if sawSame != streams {
		t.Errorf("a table matched as the advertisement streamed: %v, want %v", sawSame, streams)
	}
	return relisted
}

// TestParseHash: 40 lowercase hex digits decode as encoding/hex does;
// anything else is refused.
func TestParseHash(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{idA, true},
		{"0123456789abcdef0123456789abcdef01234567", true},
		{"0123456789ABCDEF0123456789abcdef01234567", false},
		{"0123456789abcdeg0123456789abcdef01234567", false},
		{"0123456789abcdef0123456789abcdef0123456", false},
		{"0123456789abcdef0123456789abcdef012345678", false},
		{"0123456789abcdef0123456789abcdef0123456 ", false},
	}
	for _, tt := range tests {
		var h plumbing.Hash
		if ok := parseHash(&h, []byte(tt.in)); ok != tt.ok {
			t.Fatalf("parseHash(%q) = %v, want %v", tt.in, ok, tt.ok)
		}
		if tt.ok && h != plumbing.NewHash(tt.in) {
			t.Fatalf("parseHash(%q) = %s", tt.in, h)
		}
	}
}
