package registry

import (
	"errors"
	"testing"

	"github.com/stackd/stackd/impl/mirror"
)

func TestAddRefusesDuplicates(t *testing.T) {
	root, err := mirror.NewRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := func(id, url, fullName string) MirrorSpec {
		return MirrorSpec{ID: id, Config: mirror.Config{URL: url}, FullName: fullName}
	}
	g := New()
	if err := g.Add(NewMirror(root, spec("api", "https://github.com/Acme/API.git", "acme/api"))); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		id, url string
		want    error
	}{
		{"API", "https://example.com/other.git", ErrDuplicateID},
		{"other", "https://github.com/acme/api", ErrDuplicateURL},
		{"other", "https://github.com/ACME/api.git/", ErrDuplicateURL},
		{"other", "https://user:secret@github.com/acme/api.git", ErrDuplicateURL},
		{"other", "https://github.com/acme/api2.git", nil},
	}
	for _, tc := range cases {
		if err := g.Add(NewMirror(root, spec(tc.id, tc.url, ""))); !errors.Is(err, tc.want) {
			t.Errorf("Add(%q, %q) = %v, want %v", tc.id, tc.url, err, tc.want)
		}
	}
	if r, ok := g.Get("Api"); !ok || r.ID != "api" {
		t.Fatal("lookup is not case-insensitive")
	}
	if r, ok := g.ByFullName(" ACME/Api "); !ok || r.ID != "api" {
		t.Fatal("full-name lookup is not case-insensitive")
	}
	g.Remove("api")
	g.Remove("other")
	if len(g.List()) != 0 {
		t.Fatal("Remove left the repositories")
	}
}
