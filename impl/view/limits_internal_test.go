package view

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
)

func TestClip(t *testing.T) {
	a := strings.Repeat
	tests := []struct {
		name, in string
		max      int
		want     string
		cut      bool
	}{
		{"fits", "abc", 10, "abc", false},
		{"exactly", a("a", 10), 10, a("a", 10), false},
		{"ascii", a("a", 11), 10, a("a", 7) + Ellipsis, true},
		{"2-byte across the cut", a("a", 6) + a("é", 4), 10, a("a", 6) + Ellipsis, true},
		{"2-byte ends at the cut", a("a", 5) + a("é", 4), 10, a("a", 5) + "é" + Ellipsis, true},
		{"3-byte across the cut", a("a", 6) + a("€", 3), 10, a("a", 6) + Ellipsis, true},
		{"4-byte across the cut", a("a", 5) + a("😀", 2), 10, a("a", 5) + Ellipsis, true},
		{"4-byte starting at the cut", a("a", 7) + a("😀", 2), 10, a("a", 7) + Ellipsis, true},
		// Invalid UTF-8: no character start within 4 bytes of the bound;
		// cut where it falls (the JSON encoder shows the stray bytes as
		// U+FFFD).
		{"invalid", "ab" + a("\x80", 12), 10, "ab" + a("\x80", 5) + Ellipsis, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := clip(tt.in, tt.max)
			if got != tt.want || cut != tt.cut {
				t.Errorf("clip(%q, %d) = %q, %v; want %q, %v", tt.in, tt.max, got, cut, tt.want, tt.cut)
			}
			if len(got) > tt.max {
				t.Errorf("%d bytes, over %d", len(got), tt.max)
			}
			if utf8.ValidString(tt.in) && !utf8.ValidString(got) {
				t.Errorf("%q is not valid UTF-8", got)
			}
		})
	}
}

// TestDeclaredSizeIsNotTrusted: an object whose declared size is small
// but whose content is not is refused once its content passes the limit,
// by the commit decoder and the metadata reader alike.
func TestDeclaredSizeIsNotTrusted(t *testing.T) {
	lying := func(typ plumbing.ObjectType, content string) *plumbing.MemoryObject {
		obj := &plumbing.MemoryObject{}
		obj.SetType(typ)
		if _, err := obj.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		obj.SetSize(10) // what the store says; the reader yields it all
		return obj
	}
	h := plumbing.NewHash(strings.Repeat("12", 20))
	commit := "tree " + strings.Repeat("0", 40) + "\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\n" + strings.Repeat("x", MaxCommitSize)
	if _, err := decodeNode(h, lying(plumbing.CommitObject, commit)); !errors.Is(err, ErrObjectTooLarge) {
		t.Errorf("decodeNode: %v; want ErrObjectTooLarge", err)
	}
	var v branchMeta
	blob := `{"parentBranchName":"a"` + strings.Repeat(" ", MaxMetadataSize) + "}"
	if err := decodeBlobJSON(h, lying(plumbing.BlobObject, blob), &v); !errors.Is(err, ErrObjectTooLarge) {
		t.Errorf("decodeBlobJSON: %v; want ErrObjectTooLarge", err)
	}
	// Content of exactly the limit passes.
	exact := `{"parentBranchName":"a"` + strings.Repeat(" ", MaxMetadataSize-len(`{"parentBranchName":"a"}`)) + "}"
	if err := decodeBlobJSON(h, lying(plumbing.BlobObject, exact), &v); err != nil || v.ParentBranchName != "a" {
		t.Errorf("decodeBlobJSON at the limit: %v, %+v", err, v)
	}
}
