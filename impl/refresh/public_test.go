package refresh

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/store"
)

func TestPublic(t *testing.T) {
	disk := &fs.PathError{Op: "open", Path: "/srv/stackd/mirrors/api.git/objects/pack/tmp_pack_1", Err: syscall.ENOSPC}
	fetch := &mirror.FetchError{Op: "fetch", URL: "https://github.com/acme/api.git", Msg: "authentication required"}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"disk error", fmt.Errorf("build view: %w", disk), InternalText},
		{"local repository vanished", fmt.Errorf("gitrepo: read refs of /home/me/work/.git: %w", fs.ErrNotExist), InternalText},
		{"storage failure reported as a fetch", fmt.Errorf("%w: %w", ErrStorage, &mirror.FetchError{Op: "fetch", URL: "https://h/x", Msg: disk.Error()}), InternalText},
		{"upstream failure", fmt.Errorf("%w: %w", ErrFetch, fetch), "fetch failed: could not fetch: authentication required"},
		{"credentials removed", fmt.Errorf("%w: %w", ErrFetch, &mirror.FetchError{Op: "clone", URL: "https://u:tok@h/x.git", Msg: "bad"}), "fetch failed: could not clone: bad"},
		{"a path in a fetch error", fmt.Errorf("%w: %w", ErrFetch, &mirror.FetchError{Op: "fetch", URL: "https://h/x", Msg: "open /var/lib/stackd/x: permission denied"}), "fetch failed: could not fetch: open …: permission denied"},
		{"a file URL", fmt.Errorf("%w: %w", ErrFetch, &mirror.FetchError{Op: "fetch", URL: "file:///srv/git/x.git", Msg: "repository not found"}), "fetch failed: could not fetch: repository not found"},
		{"quoted path", fmt.Errorf("%w: %w", ErrTimeout, errors.New(`read "/home/me/x": context deadline exceeded`)), `refresh timed out: read "…": context deadline exceeded`},
		{"bad URL", fmt.Errorf("%w: %q", mirror.ErrLocalRemote, "/etc"), `local remotes are disabled: "…"`},
		{"scp-like remote kept", fmt.Errorf("%w: %w", ErrFetch, &mirror.FetchError{Op: "fetch", URL: "github.com:acme/x.git", Msg: "ssh: handshake failed"}), "fetch failed: could not fetch: ssh: handshake failed"},
		{"cancelled", fmt.Errorf("mirror: fetch https://h/x: %w", context.Canceled), "mirror: fetch https://h/x: context canceled"},
		{"closed", ErrClosed, "refresher closed"},
		{"panic", ErrPanic, "refresh failed unexpectedly"},
		{"database unreachable for the lease", fmt.Errorf("refresh lease of api: %w: dial unix /tmp/pg/.s.PGSQL.5432: connect: refused", store.ErrUnavailable), DatabaseText},
		{"short of memory", fmt.Errorf("fetch postponed: %w", memlimit.ErrPressure), "fetch postponed: the server is short of memory; try again shortly"},
		{"lease lost", ErrLeaseLost, "the refresh lease was lost (its database connection broke): store: database unavailable"},
	}
	for _, tc := range cases {
		if got := Public(tc.err); got != tc.want {
			t.Errorf("%s: Public = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestScrubPaths(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"no paths here", "no paths here"},
		{"/abs/at/start: x", "…: x"},
		{"open /a/b c", "open … c"},
		{"path=/a/b", "path=…"},
		{"(/a/b)", "(…)"},
		{"https://host/a/b stays", "https://host/a/b stays"},
		{"git://127.0.0.1:9418/acme/x.git stays", "git://127.0.0.1:9418/acme/x.git stays"},
		{"see FILE:///x and file:/y", "see file:… and file:…"},
		{"profile: kept", "profile: kept"},
		{"two /a and /b", "two … and …"},
	}
	for _, tc := range cases {
		if got := ScrubPaths(tc.in); got != tc.want {
			t.Errorf("ScrubPaths(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// No absolute path survives, whatever surrounds it.
	for _, pre := range []string{"", " ", "\t", `"`, "'", "(", "[", "="} {
		if got := ScrubPaths("x" + pre + "/secret/dir"); strings.Contains(got, "/secret") && pre != "" {
			t.Errorf("prefix %q: %q", pre, got)
		}
	}
}
