package registry

import (
	"errors"
	"testing"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/view"
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
		id, url, fullName string
		want              error
	}{
		{"API", "https://example.com/other.git", "", ErrDuplicateID},
		{"other", "https://github.com/acme/api", "", ErrDuplicateURL},
		{"other", "https://github.com/ACME/api.git/", "", ErrDuplicateURL},
		{"other", "https://user:secret@github.com/acme/api.git", "", ErrDuplicateURL},
		{"other", "https://gitlab.com/acme/api.git", "ACME/Api", ErrDuplicateFullName},
		{"other", "https://github.com/acme/api2.git", "", nil},
		{"third", "https://github.com/acme/api3.git", "", nil}, // no full name: no clash
	}
	for _, tc := range cases {
		if err := g.Check(tc.id, tc.url, tc.fullName); !errors.Is(err, tc.want) {
			t.Errorf("Check(%q, %q, %q) = %v, want %v", tc.id, tc.url, tc.fullName, err, tc.want)
		}
		if err := g.Add(NewMirror(root, spec(tc.id, tc.url, tc.fullName))); !errors.Is(err, tc.want) {
			t.Errorf("Add(%q, %q, %q) = %v, want %v", tc.id, tc.url, tc.fullName, err, tc.want)
		}
	}
	if r, ok := g.Get("Api"); !ok || r.ID != "api" {
		t.Fatal("lookup is not case-insensitive")
	}
	if r, ok := g.ByFullName(" ACME/Api "); !ok || r.ID != "api" {
		t.Fatal("full-name lookup is not case-insensitive")
	}
	api, _ := g.Get("api")
	// Remove forgets only the repository it is given: one added again
	// under the same id stays.
	g.Remove(api)
	again := NewMirror(root, spec("API", "https://github.com/acme/api.git", "acme/api"))
	if err := g.Add(again); err != nil {
		t.Fatal(err)
	}
	g.Remove(api)
	if r, ok := g.Get("api"); !ok || r != again {
		t.Fatal("Remove of a stale repository forgot the new one")
	}
	for _, r := range g.List() {
		g.Remove(r)
	}
	if len(g.List()) != 0 {
		t.Fatal("Remove left the repositories")
	}
}

// TestPublishAt: a snapshot published at a version another replica chose
// takes that version and build time; versions never go back; the same
// version with the same content changes nothing, with other content (a
// replica that published early) replaces it.
func TestPublishAt(t *testing.T) {
	r := NewMirror(nil, MirrorSpec{ID: "m", Config: mirror.Config{URL: "https://example.com/a.git"}})
	a := view.Empty(view.Input{RepoID: "m", Kind: gen.Mirror, Trunk: "main"})
	b := view.Empty(view.Input{RepoID: "m", Kind: gen.Mirror, Trunk: "dev"})
	if a.ContentHash() == b.ContentHash() {
		t.Fatal("the fixtures have one content")
	}
	t0 := time.Unix(1700000000, 0).UTC()
	steps := []struct {
		name    string
		snap    *view.Snapshot
		v       int64
		changed bool
		want    int64
		hash    string
	}{
		{"first", a, 3, true, 3, a.ContentHash()},
		{"same version, same content", a, 3, false, 3, a.ContentHash()},
		{"same version, other content", b, 3, true, 3, b.ContentHash()},
		{"older version", a, 2, false, 3, b.ContentHash()},
		{"newer version, same content", b, 5, true, 5, b.ContentHash()},
		{"no version", a, 0, false, 5, b.ContentHash()},
	}
	for i, st := range steps {
		at := t0.Add(time.Duration(i) * time.Second)
		cur, changed := r.PublishAt(st.snap, st.v, at)
		if changed != st.changed || cur.Version() != st.want || cur.ContentHash() != st.hash || r.Snapshot() != cur {
			t.Fatalf("%s: version %d changed=%v hash %s", st.name, cur.Version(), changed, cur.ContentHash()[:8])
		}
		if changed && !cur.BuiltAt().Equal(at) {
			t.Fatalf("%s: built at %v, want %v", st.name, cur.BuiltAt(), at)
		}
	}
}
