package view_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// logBuffer collects slog output safely.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func openRepo(t testing.TB, dir string) view.Repo {
	t.Helper()
	w, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := w.Read()
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// build opens r read-only and builds its view; warnings go to the
// returned buffer.
func build(t testing.TB, r *gittest.Repo, in view.Input) (*view.Snapshot, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if in.RepoID == "" {
		in.RepoID = "local"
	}
	if in.Kind == "" {
		in.Kind = gen.Local
	}
	in.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := view.Build(context.Background(), openRepo(t, r.Dir), in)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s, logs
}

// meta is a metadata blob naming parent, with optional extra fields.
func meta(t testing.TB, parent string, extra map[string]any) string {
	t.Helper()
	m := map[string]any{"parentBranchName": parent}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func names(bs []gen.Branch) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Name
	}
	return out
}

func subjects(cs []gen.Commit) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Subject
	}
	return out
}

func mustBranch(t testing.TB, s *view.Snapshot, name string) gen.Branch {
	t.Helper()
	b, ok := s.Branch(name)
	if !ok {
		t.Fatalf("branch %q missing; have %v", name, names(s.Branches()))
	}
	return b
}

func parentOf(b gen.Branch) string {
	if b.Parent == nil {
		return "<nil>"
	}
	return *b.Parent
}

// wantParent asserts a branch's parent and source.
func wantParent(t testing.TB, s *view.Snapshot, name, parent string, src gen.BranchParentSource) {
	t.Helper()
	b := mustBranch(t, s, name)
	if parentOf(b) != parent || b.ParentSource != src {
		t.Errorf("%s: parent %s (%s), want %s (%s)", name, parentOf(b), b.ParentSource, parent, src)
	}
}

func wantEqual[T comparable](t testing.TB, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
