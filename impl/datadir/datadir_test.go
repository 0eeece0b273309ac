package datadir_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stackd/stackd/impl/datadir"
)

// TestLock: a single server's lock excludes every other; replicas' shared
// locks exclude only a single server; a released lock is free again.
func TestLock(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second bool // shared
		wantInUse     bool
	}{
		{"single then single", false, false, true},
		{"single then replica", false, true, true},
		{"replica then single", true, false, true},
		{"replica then replica", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			release, err := datadir.Lock(dir, tc.first)
			if err != nil {
				t.Fatal(err)
			}
			release2, err := datadir.Lock(dir, tc.second)
			if got := errors.Is(err, datadir.ErrInUse); got != tc.wantInUse {
				t.Fatalf("second lock: %v, want in use %v", err, tc.wantInUse)
			}
			if err == nil {
				release2()
			}
			release()
			again, err := datadir.Lock(dir, false)
			if err != nil {
				t.Fatalf("after release: %v", err)
			}
			again()
		})
	}
}

// TestCheck: a data dir inside one of the repository's directories, or
// reached through a symbolic link into one, is refused with
// ErrInsideRepository; one beside them is not.
func TestCheck(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	if err := os.MkdirAll(filepath.Join(repo, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(filepath.Join(repo, ".git"), link); err != nil {
		t.Fatal(err)
	}
	dirs := []string{repo, filepath.Join(repo, ".git")}
	for _, tc := range []struct {
		data   string
		inside bool
	}{
		{filepath.Join(repo, "data"), true},
		{filepath.Join(repo, ".git", "stackd", "new"), true},
		{filepath.Join(link, "stackd"), true},
		{repo, true},
		{filepath.Join(root, "data"), false},
		{filepath.Join(root, "repo2"), false},
	} {
		err := datadir.Check(tc.data, dirs)
		if got := errors.Is(err, datadir.ErrInsideRepository); got != tc.inside {
			t.Errorf("Check(%s) = %v, want inside %v", tc.data, err, tc.inside)
		}
		if !tc.inside && err != nil {
			t.Errorf("Check(%s) = %v", tc.data, err)
		}
	}
}
