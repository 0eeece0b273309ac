package mirror

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/refs"
)

func TestValidRefName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"refs/heads/main", true},
		{"refs/heads/feature/login-2", true},
		{"refs/stackit/metadata/st00001-1", true},
		{"refs/heads/a.b", true},
		{"refs/heads/", false},
		{"refs/heads/a..b", false},
		{"refs/heads/../../config", false},
		{"refs/heads/a//b", false},
		{"refs/heads/.hidden", false},
		{"refs/heads/a/.b", false},
		{"refs/heads/x.lock", false},
		{"refs/heads/x.lock/y", false},
		{"refs/heads/x.", false},
		{"refs/heads/a b", false},
		{"refs/heads/a\nb", false},
		{"refs/heads/a\x7f", false},
		{"refs/heads/a~1", false},
		{"refs/heads/a^", false},
		{"refs/heads/a:b", false},
		{"refs/heads/a?", false},
		{"refs/heads/a*", false},
		{"refs/heads/a[b", false},
		{"refs/heads/a\\b", false},
		{"refs/heads/a@{1}", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := validRefName(tt.name); got != tt.ok {
			t.Errorf("validRefName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestPackedRefsRoundTrip(t *testing.T) {
	h := func(c byte) plumbing.Hash { return plumbing.NewHash(strings.Repeat(string(c), 40)) }
	dir := t.TempDir()
	// Written by someone else: unsorted, CRLF, a peeled line, refs outside
	// the namespaces and a namespace ref with a name git refuses.
	in := "# pack-refs with: peeled \r\n" +
		h('b').String() + " refs/tags/v1\r\n" +
		"^" + h('c').String() + "\r\n" +
		h('a').String() + " refs/heads/z\n" +
		h('d').String() + " refs/heads/a\n" +
		h('e').String() + " refs/stackit/t\n" +
		"^" + h('f').String() + "\n" +
		h('1').String() + " refs/heads/bad..name\n" +
		h('2').String() + " refs/notes/commits\n"
	if err := os.WriteFile(filepath.Join(dir, "packed-refs"), []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "HEAD"), []byte("ref: refs/heads/a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	disk, err := readRefs(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := refs.NewTable([]refs.Ref{
		{Name: "HEAD", Target: "refs/heads/a"},
		{Name: "refs/heads/a", Hash: h('d')},
		{Name: "refs/heads/z", Hash: h('a')},
		{Name: "refs/stackit/t", Hash: h('e')},
	})
	if !refs.Equal(disk.table, want) {
		t.Fatalf("table %v", disk.table.All())
	}
	if disk.peeled["refs/stackit/t"] != h('f') || len(disk.peeled) != 1 || len(disk.extra) != 3 {
		t.Fatalf("peeled %v, extra %v", disk.peeled, disk.extra)
	}
	out := string(encodePackedRefs(disk.table, disk.peeled, disk.extra))
	wantOut := packedRefsHeader +
		h('d').String() + " refs/heads/a\n" +
		h('1').String() + " refs/heads/bad..name\n" +
		h('a').String() + " refs/heads/z\n" +
		h('2').String() + " refs/notes/commits\n" +
		h('e').String() + " refs/stackit/t\n" +
		"^" + h('f').String() + "\n" +
		h('b').String() + " refs/tags/v1\n" +
		"^" + h('c').String() + "\n"
	if out != wantOut {
		t.Fatalf("encoded\n%s\nwant\n%s", out, wantOut)
	}

	for _, bad := range []string{"xyz refs/heads/a\n", h('a').String() + "\n", "^" + h('a').String() + "\n", h('a').String()[:39] + "  refs/heads/a\n"} {
		if err := os.WriteFile(filepath.Join(dir, "packed-refs"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readRefs(dir); err == nil {
			t.Errorf("readRefs accepted %q", bad)
		}
	}
}

func TestWriteLocked(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "packed-refs")
	if err := writeLocked(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".lock", []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeLocked(p, []byte("two")); !errors.Is(err, ErrLocked) {
		t.Fatalf("writeLocked over a held lock: %v", err)
	}
	if raw, _ := os.ReadFile(p + ".lock"); string(raw) != "theirs" {
		t.Fatal("someone else's lock was touched")
	}
	if raw, _ := os.ReadFile(p); string(raw) != "one" {
		t.Fatal("file changed under a held lock")
	}
	// A failure after the lock was taken removes our lock.
	if err := os.Remove(p + ".lock"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeLocked(filepath.Join(dir, "sub"), []byte("x")); err == nil { // rename over a non-empty directory fails
		t.Fatal("rename over a directory succeeded")
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub.lock")); !os.IsNotExist(err) {
		t.Fatalf("our lock left behind: %v", err)
	}
}

// encodePackedRefs returns what writePackedRefs writes: renders the namespace refs of t (with their peeled
// values) merged with the extra refs, sorted, in git's packed-refs format.
func encodePackedRefs(t *refs.Table, peeled map[string]plumbing.Hash, extra []packedRef) []byte {
	var b bytes.Buffer
	_ = writePackedRefs(&b, t, peeled, extra)
	return b.Bytes()
}
