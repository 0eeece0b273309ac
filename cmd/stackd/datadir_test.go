package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// TestDataDirInsideRepositoryExitsTwo: a data dir inside the served
// repository, reached directly or through a symbolic link into .git, is a
// refused posture: one line on stderr, exit code 2, nothing created.
func TestDataDirInsideRepositoryExitsTwo(t *testing.T) {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "hi\n"})
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(filepath.Join(r.Dir, ".git"), link); err != nil {
		t.Fatal(err)
	}
	for _, dataDir := range []string{filepath.Join(r.Dir, ".git", "stackd"), link} {
		t.Setenv("XDG_DATA_HOME", t.TempDir())
		before := gittest.TreeSnapshot(t, r.Dir)
		var out, errb bytes.Buffer
		code := run([]string{"serve", "--cwd", r.Dir, "--data-dir", dataDir, "--addr", "127.0.0.1:0"}, &out, &errb)
		if code != 2 {
			t.Fatalf("--data-dir %s: exit %d, want 2; stderr %q", dataDir, code, errb.String())
		}
		if msg := strings.TrimSpace(errb.String()); !strings.Contains(msg, "inside the served repository") || strings.Contains(msg, "\n") {
			t.Fatalf("--data-dir %s: stderr %q", dataDir, errb.String())
		}
		if d := gittest.TreeChanges(before, gittest.TreeSnapshot(t, r.Dir)); len(d) > 0 {
			t.Fatalf("--data-dir %s: the repository changed: %v", dataDir, d)
		}
	}
}
