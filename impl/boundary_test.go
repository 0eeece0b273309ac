package impl_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The safety boundary around git, as a rule over imports: of the packages
// the server is built from, only impl/gitrepo imports go-git's root
// package (which opens repositories, and so could open the working
// repository writable), and only impl/mirror imports go-git's transports
// (which fetch). Everything else reaches the working repository through
// gitrepo's read-only types and fetches through mirror.

const module = "github.com/stackd/stackd"

// boundary is, for each guarded import path (or path prefix ending in
// "/"), the one package allowed to import it.
var boundary = []struct{ guarded, allowed string }{
	{"github.com/go-git/go-git/v5", module + "/impl/gitrepo"},
	{"github.com/go-git/go-git/v5/plumbing/transport", module + "/impl/mirror"},
	{"github.com/go-git/go-git/v5/plumbing/transport/", module + "/impl/mirror"},
}

type listedPackage struct {
	ImportPath string
	Imports    []string
}

// boundaryViolations lists "<package> imports <path>" for every import of
// the module's packages that the boundary forbids.
func boundaryViolations(pkgs []listedPackage) []string {
	var out []string
	for _, p := range pkgs {
		if !strings.HasPrefix(p.ImportPath, module+"/") && p.ImportPath != module {
			continue
		}
		for _, imp := range p.Imports {
			for _, b := range boundary {
				guarded := imp == b.guarded || strings.HasSuffix(b.guarded, "/") && strings.HasPrefix(imp, b.guarded)
				if guarded && p.ImportPath != b.allowed {
					out = append(out, p.ImportPath+" imports "+imp)
				}
			}
		}
	}
	return out
}

// TestImportBoundary checks the rule over the packages of the server
// binary (go list -deps ./cmd/stackd), and checks that the check finds a
// violation and sees the imports it allows.
func TestImportBoundary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Imports", module+"/cmd/stackd").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if v := boundaryViolations(pkgs); len(v) > 0 {
		t.Errorf("imports across the git boundary:\n%s", strings.Join(v, "\n"))
	}
	// Not vacuous: the allowed packages are there, and import what the
	// rule guards.
	seen := map[string]bool{}
	for _, p := range pkgs {
		for _, b := range boundary {
			if p.ImportPath == b.allowed && slices.ContainsFunc(p.Imports, func(imp string) bool {
				return imp == b.guarded || strings.HasSuffix(b.guarded, "/") && strings.HasPrefix(imp, b.guarded)
			}) {
				seen[b.guarded] = true
			}
		}
	}
	for _, b := range boundary {
		if !seen[b.guarded] {
			t.Errorf("%s was not seen importing %s: the listing is not what the rule expects", b.allowed, b.guarded)
		}
	}
	// And the check itself finds what it must.
	bad := []listedPackage{
		{ImportPath: module + "/impl/repos", Imports: []string{"github.com/go-git/go-git/v5/plumbing/transport/http"}},
		{ImportPath: module + "/impl/source", Imports: []string{"github.com/go-git/go-git/v5"}},
		{ImportPath: module + "/impl/view", Imports: []string{"github.com/go-git/go-git/v5/plumbing"}},
		{ImportPath: "example.com/other", Imports: []string{"github.com/go-git/go-git/v5"}},
	}
	want := []string{
		module + "/impl/repos imports github.com/go-git/go-git/v5/plumbing/transport/http",
		module + "/impl/source imports github.com/go-git/go-git/v5",
	}
	if got := boundaryViolations(bad); !slices.Equal(got, want) {
		t.Errorf("violations of the sample: %q, want %q", got, want)
	}
}
