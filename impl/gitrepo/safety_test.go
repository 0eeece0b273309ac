package gitrepo_test

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"

	"github.com/stackd/stackd/impl/gitrepo"
)

// TestFetchIntoWorkingRepositoryDoesNotCompile builds small programs that
// try to fetch into the working repository through everything this package
// hands out, and checks that the compiler refuses each of them (and accepts
// the control program that only reads).
func TestFetchIntoWorkingRepositoryDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs with the go command")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	build := func(dir string) (string, error) {
		cmd := exec.Command(gobin, "build", "-o", filepath.Join(t.TempDir(), "out"), "./testdata/nofetch/"+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := build("ok"); err != nil {
		t.Fatalf("the control program does not build: %v\n%s", err, out)
	}
	for dir, want := range map[string]string{
		"repofetch":     "r.Fetch undefined (type *gitrepo.Repo has no field or method Fetch)",
		"worktreefetch": "w.Fetch undefined (type *gitrepo.Worktree has no field or method Fetch)",
		"asrepository":  "impossible type assertion",
		"asstorer":      "does not implement storage.Storer",
	} {
		out, err := build(dir)
		if err == nil {
			t.Errorf("%s compiled: a fetch into the working repository must not", dir)
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s: compiler said\n%s\nwant it to say %q", dir, out, want)
		}
	}
}

// TestNothingHandedOutCanWrite walks the methods of every type this package
// hands out for the working repository, and of every type those methods
// return, and checks that none can fetch, push or write: no method has
// such a name, and none returns a go-git repository, remote, worktree or
// storer.
func TestNothingHandedOutCanWrite(t *testing.T) {
	forbiddenTypes := []reflect.Type{
		reflect.TypeFor[*git.Repository](),
		reflect.TypeFor[*git.Remote](),
		reflect.TypeFor[*git.Worktree](),
		reflect.TypeFor[storage.Storer](),
		reflect.TypeFor[storer.EncodedObjectStorer](),
		reflect.TypeFor[storer.ReferenceStorer](),
		reflect.TypeFor[*gitrepo.ReadOnlyStorer](),
	}
	forbiddenNames := []string{"Fetch", "Push", "Pull", "Set", "Write", "Remove", "Delete", "Create", "Pack", "Commit", "Checkout", "Storer"}
	seen := map[reflect.Type]bool{}
	var visit func(t reflect.Type, path string)
	check := func(tt reflect.Type, path string) {
		for _, f := range forbiddenTypes {
			if tt == f {
				t.Errorf("%s returns %s", path, tt)
			}
		}
	}
	visit = func(tt reflect.Type, path string) {
		if seen[tt] || tt.PkgPath() != "" && !strings.HasPrefix(tt.PkgPath(), "github.com/stackd/") && tt.Kind() != reflect.Pointer {
			return
		}
		seen[tt] = true
		for i := range tt.NumMethod() {
			m := tt.Method(i)
			for _, bad := range forbiddenNames {
				if strings.HasPrefix(m.Name, bad) {
					t.Errorf("%s.%s: a method that may write or fetch", path, m.Name)
				}
			}
			for j := range m.Type.NumOut() {
				out := m.Type.Out(j)
				check(out, path+"."+m.Name)
				if strings.HasPrefix(out.String(), "*gitrepo.") || strings.HasPrefix(out.String(), "*refs.") {
					visit(out, path+"."+m.Name+"()")
				}
			}
		}
	}
	visit(reflect.TypeFor[*gitrepo.Worktree](), "Worktree")
	visit(reflect.TypeFor[*gitrepo.Repo](), "Repo")
	if !seen[reflect.TypeFor[*gitrepo.Repo]()] {
		t.Fatal("the walk did not reach Repo")
	}
}
