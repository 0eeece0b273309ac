package gitrepo_test

import (
	"errors"
	"path/filepath"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

func TestReadOnlyStorerRefusesWrites(t *testing.T) {
	r := basicRepo(t)
	w, err := gitrepo.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	s := gitrepo.StorerOf(w)
	head := plumbing.NewHashReference("refs/heads/x", plumbing.NewHash(r.Rev("main")))
	writes := map[string]func() error{
		"SetConfig":            func() error { return s.SetConfig(config.NewConfig()) },
		"SetReference":         func() error { return s.SetReference(head) },
		"CheckAndSetReference": func() error { return s.CheckAndSetReference(head, nil) },
		"RemoveReference":      func() error { return s.RemoveReference("refs/heads/main") },
		"PackRefs":             func() error { return s.PackRefs() },
		"SetEncodedObject": func() error {
			o := s.NewEncodedObject()
			o.SetType(plumbing.BlobObject)
			_, err := s.SetEncodedObject(o)
			return err
		},
		"SetIndex":       func() error { return s.SetIndex(&index.Index{Version: 2}) },
		"SetShallow":     func() error { return s.SetShallow([]plumbing.Hash{head.Hash()}) },
		"Module":         func() error { _, err := s.Module("sub"); return err },
		"AddAlternate":   func() error { return s.AddAlternate("/tmp") },
		"PackfileWriter": func() error { _, err := s.PackfileWriter(); return err },
		"PackfileWriter via assertion": func() error {
			var st any = s
			pw, ok := st.(storer.PackfileWriter)
			if !ok {
				return nil
			}
			_, err := pw.PackfileWriter()
			return err
		},
	}
	before := snapshotTree(t, r.Dir)
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			if err := write(); !errors.Is(err, gitrepo.ErrReadOnly) {
				t.Errorf("%s = %v, want ErrReadOnly", name, err)
			}
		})
	}
	// Interfaces whose methods delete or write must not be reachable.
	var st any = s
	if _, ok := st.(storer.LooseObjectStorer); ok {
		t.Error("ReadOnlyStorer exposes LooseObjectStorer (DeleteLooseObject)")
	}
	if _, ok := st.(storer.PackedObjectStorer); ok {
		t.Error("ReadOnlyStorer exposes PackedObjectStorer (DeleteOldObjectPackAndIndex)")
	}
	if _, ok := st.(storer.Transactioner); ok {
		t.Error("ReadOnlyStorer exposes Transactioner")
	}
	assertSameTree(t, before, snapshotTree(t, r.Dir))
}

func TestExtensions(t *testing.T) {
	tests := []struct {
		name    string
		version string
		ext     map[string]string
		wantErr error
	}{
		{"worktreeConfig", "1", map[string]string{"worktreeConfig": "true"}, nil},
		{"partialClone", "1", map[string]string{"partialClone": "origin"}, nil},
		{"preciousObjects", "1", map[string]string{"preciousObjects": "true"}, nil},
		{"noop", "0", map[string]string{"noop": "true"}, nil},
		{"all harmless", "1", map[string]string{"worktreeConfig": "true", "partialClone": "origin", "preciousObjects": "true"}, nil},
		{"made-up", "1", map[string]string{"foo": "bar"}, git.ErrUnknownExtension},
		{"objectFormat sha256", "1", map[string]string{"objectFormat": "sha256"}, git.ErrUnknownExtension},
		{"harmless plus unknown", "1", map[string]string{"worktreeConfig": "true", "refStorage": "reftable"}, git.ErrUnknownExtension},
		{"unknown format version", "2", nil, git.ErrUnsupportedRepositoryFormatVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := basicRepo(t)
			r.Git("config", "core.repositoryformatversion", tt.version)
			// -f: git itself refuses to run in a repository with an
			// extension it does not know.
			cfgFile := filepath.Join(r.Dir, ".git", "config")
			for k, v := range tt.ext {
				r.Git("config", "-f", cfgFile, "extensions."+k, v)
			}
			w, err := gitrepo.Open(r.Dir)
			if err != nil {
				t.Fatal(err)
			}
			repo, err := w.Read()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Read = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if got := branchNames(t, repo); len(got) != 2 {
				t.Errorf("branches = %v", got)
			}
		})
	}
}

// TestPlainOpenRefusesExtensions documents why the package builds its own
// storage: go-git's own open refuses these real-world repositories.
func TestPlainOpenRefusesExtensions(t *testing.T) {
	r := basicRepo(t)
	r.Git("config", "core.repositoryformatversion", "1")
	r.Git("config", "extensions.worktreeConfig", "true")
	if _, err := git.PlainOpen(r.Dir); !errors.Is(err, git.ErrUnknownExtension) {
		t.Skipf("go-git now accepts worktreeConfig (%v); the wrapper is still correct", err)
	}
	w, err := gitrepo.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Read(); err != nil {
		t.Fatalf("gitrepo Read: %v", err)
	}
}

func TestConfigCopyKeepsOtherSettings(t *testing.T) {
	r := basicRepo(t)
	r.Git("config", "core.repositoryformatversion", "1")
	r.Git("config", "extensions.worktreeConfig", "true")
	r.Git("remote", "add", "origin", "https://example.com/x.git")
	w, err := gitrepo.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := w.Read()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := repo.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Raw.HasSection("extensions") {
		t.Errorf("extensions section still present: %+v", cfg.Raw.Section("extensions").Options)
	}
	if got := cfg.Raw.Section("remote").Subsection("origin").Option("url"); got != "https://example.com/x.git" {
		t.Errorf("remote url = %q", got)
	}
	if cfg.Remotes["origin"] == nil {
		t.Error("parsed remotes lost")
	}
}

// snapshotTree maps every path under root (including .git) to its mode and
// content (symlinks: their target).
func snapshotTree(t *testing.T, root string) map[string]string { return gittest.TreeSnapshot(t, root) }

func assertSameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	for _, c := range gittest.TreeChanges(before, after) {
		t.Error(c)
	}
}
