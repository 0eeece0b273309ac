package mirror

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestCloneShowsWhatRefsPointAt: Clone hands Config.Seen every object a
// ref points at (branch tips and metadata blobs, whole or delta-compressed
// in the pack) with its exact content, and nothing else.
func TestCloneShowsWhatRefsPointAt(t *testing.T) {
	base := t.TempDir()
	up := newUpstream(t, base, "up.git")
	long := strings.Repeat(`"padding so that git stores these blobs as deltas of each other",`, 20)
	parent := up.commit("", "root", map[string][]byte{"r.txt": []byte("r\n")})
	up.set("refs/heads/main", parent)
	for i := range 12 {
		c := up.commit(parent, fmt.Sprintf("c%d", i), map[string][]byte{"f.txt": []byte(fmt.Sprintf("%d\n", i))})
		up.set(fmt.Sprintf("refs/heads/b%02d", i), c)
		up.set(fmt.Sprintf("refs/stackit/metadata/b%02d", i), up.blob(fmt.Sprintf(`{"pad":[%s""],"parentBranchName":"main","n":%d}`, long, i)))
		parent = c
	}
	runGit(t, up.dir, nil, "repack", "-adq", "--depth=50", "--window=50")
	if stats := runGit(t, up.dir, nil, "verify-pack", "-v", packs(t, up.dir)[0]); !strings.Contains(stats, "chain length") {
		t.Fatalf("the upstream pack holds no deltas:\n%s", stats)
	}
	url := "git://" + startDaemon(t, base) + "/up.git"

	var mu sync.Mutex
	seen := map[plumbing.Hash][]byte{}
	cfg := Config{AllowPrivate: true, URL: url, Seen: func(h plumbing.Hash, typ plumbing.ObjectType, content []byte) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := seen[h]; dup {
			t.Errorf("%s shown twice", h)
		}
		seen[h] = bytes.Clone(content)
	}}
	m, _, err := newRoot(t).Clone(bg(), "seen", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if stats := runGit(t, m.Dir(), nil, "verify-pack", "-v", packs(t, m.Dir())[0]); !strings.Contains(stats, "chain length") {
		t.Fatalf("the received pack holds no deltas:\n%s", stats)
	}
	want := map[plumbing.Hash]bool{}
	for _, r := range m.Refs().All() {
		if !r.Symbolic() {
			want[r.Hash] = true
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("shown %d objects, want the %d that refs point at", len(seen), len(want))
	}
	for h := range want {
		got, ok := seen[h]
		if !ok {
			t.Fatalf("%s was not shown", h)
		}
		obj, err := m.Reader().Object(plumbing.AnyObject, h)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := obj.Reader()
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Fatalf("%s shown with other content", h)
		}
	}
}
