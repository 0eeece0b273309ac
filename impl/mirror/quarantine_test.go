package mirror

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestPublishRegistersThePack: a fetched pack is moved out of its
// quarantine and made readable by registering its index alone (the other
// packs' indexes are not read again); the borrowed go-git pack writer
// leaves no temporary file, and nothing is left of the quarantine.
func TestPublishRegistersThePack(t *testing.T) {
	f := newFixture(t)
	m := cloneOK(t, newRoot(t), "m", f.url())
	c2 := f.up.commit(f.main, "c2", map[string][]byte{"a.txt": []byte("a2\n")})
	f.up.set("refs/heads/main", c2)
	p, err := m.Fetch(bg())
	if err != nil || p == nil || p.q == nil {
		t.Fatalf("Fetch = %v, %v", p, err)
	}
	// Pending: readable through the quarantine only.
	if _, err := p.Reader().Object(plumbing.CommitObject, plumbing.NewHash(c2)); err != nil {
		t.Fatalf("the pending reader cannot read the new commit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.Dir(), "objects", "pack", "pack-"+p.q.pack.hash.String()+".pack")); err == nil {
		t.Fatal("the pack is in place before Commit")
	}
	if err := m.objs.publish(p.q); err != nil {
		t.Fatal(err)
	}
	p.finished = true
	if m.objs.incoming != nil {
		t.Fatal("the quarantine's storage is still read")
	}
	if _, err := m.objs.object(plumbing.CommitObject, plumbing.NewHash(c2)); err != nil {
		t.Fatalf("the published pack is not readable: %v", err)
	}
	// Registered again (as publish did): the hook must work, not fall back.
	m.objs.mu.Lock()
	err = m.objs.registerLocked(p.q.pack.hash)
	m.objs.mu.Unlock()
	if err != nil {
		t.Fatalf("registerLocked: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(m.Dir(), "objects", "pack"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "tmp_") {
			t.Fatalf("left %s", e.Name())
		}
	}
	objs, _ := os.ReadDir(filepath.Join(m.Dir(), "objects"))
	for _, e := range objs {
		if strings.HasPrefix(e.Name(), quarantinePrefix) {
			t.Fatalf("left the quarantine %s", e.Name())
		}
	}
}
