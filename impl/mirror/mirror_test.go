package mirror

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

func TestValidateURL(t *testing.T) {
	tests := []struct {
		url        string
		allowLocal bool
		want       error
	}{
		{"https://github.com/a/b.git", false, nil},
		{"https://user:pw@github.com/a/b.git", false, nil},
		{"ssh://git@github.com/a/b.git", false, nil},
		{"ssh://git@github.com:2222/a/b.git", false, nil},
		{"git@github.com:a/b.git", false, nil},
		{"github.com:a/b.git", false, nil},
		{"git://127.0.0.1:9418/a.git", false, nil},
		{"http://127.0.0.1:8080/a.git", false, ErrBadURL},
		{"http://127.0.0.1:8080/a.git", true, nil},
		{"file:///srv/a.git", false, ErrLocalRemote},
		{"file:///srv/a.git", true, nil},
		{"/srv/a.git", false, ErrLocalRemote},
		{"./a.git", false, ErrLocalRemote},
		{"a.git", false, ErrLocalRemote},
		{"/srv/a.git", true, nil},
		{"", false, ErrBadURL},
		{"   ", true, ErrBadURL},
		{"ftp://example.com/a.git", true, ErrBadURL},
		{"ext::sh -c evil", true, ErrBadURL},
		{"https:///nohost", false, ErrBadURL},
		{"https://exa mple.com/a", false, ErrBadURL},
		{"https://example.com/a\nb", false, ErrBadURL},
		{"-oProxyCommand=evil", true, ErrBadURL},
		{"ssh://-oProxyCommand=evil/a", false, ErrBadURL},
		{"https://u:%zz@example.com/a", false, ErrBadURL},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/local=%v", tt.url, tt.allowLocal), func(t *testing.T) {
			err := ValidateURL(tt.url, tt.allowLocal)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateURL(%q) = %v, want nil", tt.url, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("ValidateURL(%q) = %v, want %v", tt.url, err, tt.want)
			}
			if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "%zz@") {
				t.Fatalf("credentials in %q", err)
			}
		})
	}
}

// fixture is an upstream with branches, stackit and metadata refs and
// refs that must not be mirrored, served by git daemon.
type fixture struct {
	up   *upstream
	addr string // git daemon host:port
	base string
	main string // commit ids
	feat string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	up := newUpstream(t, base, "up.git")
	c1 := up.commit("", "c1", map[string][]byte{"a.txt": []byte("a\n")})
	f1 := up.commit(c1, "f1", map[string][]byte{"a.txt": []byte("a\n"), "f.txt": []byte("f\n")})
	up.set("refs/heads/main", c1)
	up.set("refs/heads/feature", f1)
	up.set("refs/stackit/feature", f1)
	up.set("refs/branch-metadata/feature", up.blob(`{"parent":"main"}`))
	up.set("refs/remotes/origin/stale", c1)
	up.set("refs/tags/v1", c1)
	up.set("refs/notes/commits", c1)
	return &fixture{up: up, addr: startDaemon(t, base), base: base, main: c1, feat: f1}
}

func (f *fixture) url() string { return "git://" + f.addr + "/up.git" }

func newDir(t *testing.T) (parent, dir string) {
	parent = t.TempDir()
	return parent, filepath.Join(parent, "mirror.git")
}

func assertMirrors(t *testing.T, m *Mirror, up *upstream) {
	t.Helper()
	if got, want := allRefs(t, m), up.mirrored(); !reflect.DeepEqual(got, want) {
		t.Fatalf("mirror refs\n got %v\nwant %v", got, want)
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("left behind in %s: %v", dir, names)
	}
}

func TestClone(t *testing.T) {
	f := newFixture(t)
	parent, dir := newDir(t)
	m, updates, err := Clone(bg(), Config{Dir: dir, URL: f.url()})
	if err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, m, f.up) // no tags, refs/remotes or notes
	want := []RefUpdate{}
	for _, ref := range []string{"refs/branch-metadata/feature", "refs/heads/feature", "refs/heads/main", "refs/stackit/feature"} {
		want = append(want, RefUpdate{Ref: ref, NewSha: f.up.mirrored()[ref], Change: Created})
	}
	if !reflect.DeepEqual(updates, want) {
		t.Fatalf("updates\n got %+v\nwant %+v", updates, want)
	}
	if got := headTarget(t, m); got != "refs/heads/main" {
		t.Fatalf("HEAD -> %s", got)
	}
	if m.Dir() != dir || m.URL() != f.url() {
		t.Fatalf("Dir/URL = %s %s", m.Dir(), m.URL())
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Fatalf("parent holds %d entries, want only the mirror", len(entries))
	}
	// The on-disk mirror is reusable.
	if _, err := Open(Config{Dir: dir, URL: f.url()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Clone(bg(), Config{Dir: dir, URL: f.url()}); !errors.Is(err, ErrExists) {
		t.Fatalf("second clone: %v, want ErrExists", err)
	}
}

func TestFetchChanges(t *testing.T) {
	f := newFixture(t)
	_, dir := newDir(t)
	m, _, err := Clone(bg(), Config{Dir: dir, URL: f.url()})
	if err != nil {
		t.Fatal(err)
	}
	up := f.up
	main2 := up.commit(f.main, "c2", map[string][]byte{"a.txt": []byte("a2\n")})
	rewritten := up.commit(f.main, "f1 rewritten", map[string][]byte{"f.txt": []byte("g\n")})
	newBranch := up.commit(f.main, "n1", nil)
	meta2 := up.blob(`{"parent":"main","pr":7}`)

	steps := []struct {
		name   string
		mutate func()
		want   func(old map[string]string) []RefUpdate
		head   string
	}{
		{
			name:   "nothing changed",
			mutate: func() {},
			want:   func(map[string]string) []RefUpdate { return []RefUpdate{} },
			head:   "refs/heads/main",
		},
		{
			name:   "push to main",
			mutate: func() { up.set("refs/heads/main", main2) },
			want: func(old map[string]string) []RefUpdate {
				return []RefUpdate{{Ref: "refs/heads/main", OldSha: old["refs/heads/main"], NewSha: main2, Change: Updated}}
			},
			head: "refs/heads/main",
		},
		{
			name: "new branch and its stackit ref",
			mutate: func() {
				up.set("refs/heads/new", newBranch)
				up.set("refs/stackit/new", newBranch)
			},
			want: func(map[string]string) []RefUpdate {
				return []RefUpdate{
					{Ref: "refs/heads/new", NewSha: newBranch, Change: Created},
					{Ref: "refs/stackit/new", NewSha: newBranch, Change: Created},
				}
			},
			head: "refs/heads/main",
		},
		{
			name: "force-push feature, metadata blob replaced",
			mutate: func() {
				up.set("refs/heads/feature", rewritten)
				up.set("refs/branch-metadata/feature", meta2)
			},
			want: func(old map[string]string) []RefUpdate {
				return []RefUpdate{
					{Ref: "refs/branch-metadata/feature", OldSha: old["refs/branch-metadata/feature"], NewSha: meta2, Change: Updated},
					{Ref: "refs/heads/feature", OldSha: f.feat, NewSha: rewritten, Change: Forced},
				}
			},
			head: "refs/heads/main",
		},
		{
			name: "delete branch and stackit ref, new default branch",
			mutate: func() {
				up.del("refs/heads/feature")
				up.del("refs/stackit/feature")
				up.symref("refs/heads/new")
			},
			want: func(old map[string]string) []RefUpdate {
				return []RefUpdate{
					{Ref: "refs/heads/feature", OldSha: rewritten, Change: Deleted},
					{Ref: "refs/stackit/feature", OldSha: f.feat, Change: Deleted},
				}
			},
			head: "refs/heads/new",
		},
		{
			name:   "tags and remotes still ignored",
			mutate: func() { up.set("refs/tags/v2", main2); up.set("refs/remotes/origin/x", main2) },
			want:   func(map[string]string) []RefUpdate { return []RefUpdate{} },
			head:   "refs/heads/new",
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			old := allRefs(t, m)
			st.mutate()
			updates, err := m.Fetch(bg())
			if err != nil {
				t.Fatal(err)
			}
			if want := st.want(old); !reflect.DeepEqual(updates, want) {
				t.Fatalf("updates\n got %+v\nwant %+v", updates, want)
			}
			assertMirrors(t, m, up)
			if got := headTarget(t, m); got != st.head {
				t.Fatalf("HEAD -> %s, want %s", got, st.head)
			}
		})
	}
}

func TestChanged(t *testing.T) {
	f := newFixture(t)
	_, dir := newDir(t)
	m, _, err := Clone(bg(), Config{Dir: dir, URL: f.url()})
	if err != nil {
		t.Fatal(err)
	}
	check := func(want bool) {
		t.Helper()
		got, err := m.Changed(bg())
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("Changed() = %v, want %v", got, want)
		}
	}
	check(false)
	f.up.set("refs/tags/v9", f.feat) // outside the namespaces
	check(false)
	f.up.set("refs/stackit/main", f.main)
	check(true)
	if _, err := m.Fetch(bg()); err != nil {
		t.Fatal(err)
	}
	check(false)
	f.up.del("refs/heads/feature")
	check(true)

	remote, err := m.RemoteRefs(bg())
	if err != nil {
		t.Fatal(err)
	}
	want := f.up.mirrored()
	if len(remote) != len(want) {
		t.Fatalf("RemoteRefs = %v, want %v", remote, want)
	}
	for name, id := range want {
		if remote[name].String() != id {
			t.Fatalf("RemoteRefs[%s] = %s, want %s", name, remote[name], id)
		}
	}
}

func TestEmptyUpstream(t *testing.T) {
	base := t.TempDir()
	up := newUpstream(t, base, "empty.git")
	addr := startDaemon(t, base)
	_, dir := newDir(t)
	m, updates, err := Clone(bg(), Config{Dir: dir, URL: "git://" + addr + "/empty.git"})
	if err != nil {
		t.Fatal(err)
	}
	if len(updates) != 0 {
		t.Fatalf("updates = %v", updates)
	}
	c := up.commit("", "first", nil)
	up.set("refs/heads/main", c)
	updates, err = m.Fetch(bg())
	if err != nil {
		t.Fatal(err)
	}
	if want := []RefUpdate{{Ref: "refs/heads/main", NewSha: c, Change: Created}}; !reflect.DeepEqual(updates, want) {
		t.Fatalf("updates = %+v", updates)
	}
	up.del("refs/heads/main")
	updates, err = m.Fetch(bg())
	if err != nil {
		t.Fatal(err)
	}
	if want := []RefUpdate{{Ref: "refs/heads/main", OldSha: c, Change: Deleted}}; !reflect.DeepEqual(updates, want) {
		t.Fatalf("updates = %+v", updates)
	}
}

func TestUnreachableUpstream(t *testing.T) {
	f := newFixture(t)
	_, dir := newDir(t)
	m, _, err := Clone(bg(), Config{Dir: dir, URL: f.url()})
	if err != nil {
		t.Fatal(err)
	}
	before := allRefs(t, m)
	f.up.set("refs/heads/main", f.feat)

	dead := fmt.Sprintf("git://127.0.0.1:%d/up.git", freePort(t))
	broken, err := Open(Config{Dir: dir, URL: dead})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, op string
		call     func() error
	}{
		{"fetch", "fetch", func() error { _, err := broken.Fetch(bg()); return err }},
		{"changed", "ls-remote", func() error { _, err := broken.Changed(bg()); return err }},
		{"remote refs", "ls-remote", func() error { _, err := broken.RemoteRefs(bg()); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var fe *FetchError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFetch) {
				t.Fatalf("err = %v (%T), want *FetchError", err, err)
			}
			if fe.Msg == "" || fe.URL != dead || fe.Op != tt.op {
				t.Fatalf("FetchError = %+v", fe)
			}
		})
	}
	again, err := Open(Config{Dir: dir, URL: f.url()})
	if err != nil {
		t.Fatal(err)
	}
	if got := allRefs(t, again); !reflect.DeepEqual(got, before) {
		t.Fatalf("refs changed by failed fetch: %v", got)
	}
	if _, err := again.Fetch(bg()); err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, again, f.up)
}

func TestFailedCloneLeavesNothing(t *testing.T) {
	f := newFixture(t)
	dead := fmt.Sprintf("git://127.0.0.1:%d/up.git", freePort(t))
	expired, cancel := context.WithDeadline(bg(), time.Now().Add(-time.Second))
	defer cancel()
	cancelled, cancel2 := context.WithCancel(bg())
	cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		url  string
		want []error
	}{
		{"unreachable", bg(), dead, []error{ErrFetch}},
		{"no such repository", bg(), "git://" + f.addr + "/nope.git", []error{ErrFetch, transport.ErrRepositoryNotFound}},
		{"bad url", bg(), "ftp://" + f.addr + "/up.git", []error{ErrBadURL}},
		{"local path refused", bg(), f.up.dir, []error{ErrLocalRemote}},
		{"deadline exceeded", expired, f.url(), []error{context.DeadlineExceeded}},
		{"cancelled before start", cancelled, f.url(), []error{context.Canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, dir := newDir(t)
			m, updates, err := Clone(tt.ctx, Config{Dir: dir, URL: tt.url})
			if err == nil || m != nil || updates != nil {
				t.Fatalf("Clone = %v, %v, %v", m, updates, err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want errors.Is %v", err, w)
				}
			}
			assertEmptyDir(t, parent)
		})
	}
}

// bigCommit adds a commit with 1 MiB of incompressible data, so that a
// transfer of it can be interrupted after the pack has started.
func bigCommit(up *upstream, parent, msg string) string {
	return up.commit(parent, msg, map[string][]byte{msg + ".bin": noiseFile(1 << 20)})
}

func TestCancelledCloneLeavesNothing(t *testing.T) {
	f := newFixture(t)
	f.up.set("refs/heads/big", bigCommit(f.up, f.main, "big"))
	p := startProxy(t, f.addr)
	p.armed.Store(true)
	parent, dir := newDir(t)

	ctx, cancel := context.WithCancel(bg())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, _, err := Clone(ctx, Config{Dir: dir, URL: "git://" + p.Addr() + "/up.git"})
		errc <- err
	}()
	waitStalled(t, p)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertEmptyDir(t, parent)
}

func TestCancelledFetchThenFetch(t *testing.T) {
	f := newFixture(t)
	p := startProxy(t, f.addr)
	_, dir := newDir(t)
	url := "git://" + p.Addr() + "/up.git"
	m, _, err := Clone(bg(), Config{Dir: dir, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	before := allRefs(t, m)
	big := bigCommit(f.up, f.main, "big")
	f.up.set("refs/heads/main", big)
	f.up.set("refs/stackit/big", big)

	p.armed.Store(true)
	ctx, cancel := context.WithCancel(bg())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := m.Fetch(ctx)
		errc <- err
	}()
	waitStalled(t, p)
	cancel()
	err = <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var fe *FetchError
	if errors.As(err, &fe) {
		t.Fatalf("cancellation reported as FetchError: %v", err)
	}
	if got := allRefs(t, m); !reflect.DeepEqual(got, before) {
		t.Fatalf("refs moved by cancelled fetch: %v", got)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "tmp_*"))
	if len(packs) != 0 {
		t.Fatalf("temporary packs left: %v", packs)
	}

	p.armed.Store(false)
	updates, err := m.Fetch(bg())
	if err != nil {
		t.Fatal(err)
	}
	want := []RefUpdate{
		{Ref: "refs/heads/main", OldSha: f.main, NewSha: big, Change: Updated},
		{Ref: "refs/stackit/big", NewSha: big, Change: Created},
	}
	if !reflect.DeepEqual(updates, want) {
		t.Fatalf("updates\n got %+v\nwant %+v", updates, want)
	}
	assertMirrors(t, m, f.up)
	repo, err := m.Repository()
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(plumbingHash(big))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.File("big.bin"); err != nil {
		t.Fatalf("big blob missing: %v", err)
	}
}

func TestHTTPBasicAuth(t *testing.T) {
	root := t.TempDir()
	up := newUpstream(t, root, "up.git")
	c := up.commit("", "c1", nil)
	up.set("refs/heads/main", c)
	up.set("refs/stackit/main", c)
	addr := startHTTP(t, root, "alice", "s3cret-pw")
	url := "http://" + addr + "/up.git"

	tests := []struct {
		name    string
		url     string
		auth    transport.AuthMethod
		wantErr error
	}{
		{"basic auth", url, &githttp.BasicAuth{Username: "alice", Password: "s3cret-pw"}, nil},
		{"credentials in url", "http://alice:s3cret-pw@" + addr + "/up.git", nil, nil},
		{"wrong password", url, &githttp.BasicAuth{Username: "alice", Password: "wrong-pw-123"}, ErrFetch},
		{"wrong password in url", "http://alice:wrong-pw-123@" + addr + "/up.git", nil, ErrFetch},
		{"no credentials", url, nil, transport.ErrAuthenticationRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, dir := newDir(t)
			m, _, err := Clone(bg(), Config{Dir: dir, URL: tt.url, Auth: tt.auth, AllowLocal: true})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				for _, secret := range []string{"wrong-pw-123", "s3cret-pw"} {
					if strings.Contains(fmt.Sprintf("%v %+v", err, err), secret) {
						t.Fatalf("secret in error: %v", err)
					}
				}
				assertEmptyDir(t, parent)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertMirrors(t, m, up)
			if strings.Contains(m.URL(), "s3cret") {
				t.Fatalf("URL() = %s", m.URL())
			}
			cfg, err := os.ReadFile(filepath.Join(dir, "config"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(cfg), "s3cret") {
				t.Fatalf("credentials written to disk:\n%s", cfg)
			}
			if changed, err := m.Changed(bg()); err != nil || changed {
				t.Fatalf("Changed = %v, %v", changed, err)
			}
		})
	}
}

func TestCredentialsNeverInErrors(t *testing.T) {
	port := freePort(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"https", Config{URL: fmt.Sprintf("https://user:secret@127.0.0.1:%d/r.git", port)}},
		{"https token", Config{URL: fmt.Sprintf("https://secret@127.0.0.1:%d/r.git", port)}},
		{"https at and colon", Config{URL: fmt.Sprintf("https://user:se:cr@et-secret@127.0.0.1:%d/r.git", port)}},
		{"https percent-encoded", Config{URL: fmt.Sprintf("https://user:secret%%40x@127.0.0.1:%d/r.git", port)}},
		{"http", Config{URL: fmt.Sprintf("http://user:secret@127.0.0.1:%d/r.git", port), AllowLocal: true}},
		{"ssh", Config{URL: fmt.Sprintf("ssh://user:secret@127.0.0.1:%d/r.git", port)}},
		{"git", Config{URL: fmt.Sprintf("git://user:secret@127.0.0.1:%d/r.git", port)}},
		{"basic auth", Config{URL: fmt.Sprintf("https://127.0.0.1:%d/r.git", port),
			Auth: &githttp.BasicAuth{Username: "user", Password: "secret"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, dir := newDir(t)
			tt.cfg.Dir = dir
			_, _, err := Clone(bg(), tt.cfg)
			if err == nil {
				t.Fatal("clone from a dead port succeeded")
			}
			if !errors.Is(err, ErrFetch) {
				t.Errorf("err = %v, want ErrFetch", err)
			}
			if s := fmt.Sprintf("%v|%+v|%#v", err, err, err); strings.Contains(s, "secret") {
				t.Fatalf("secret in error: %s", s)
			}
			assertEmptyDir(t, parent)
		})
	}
}
