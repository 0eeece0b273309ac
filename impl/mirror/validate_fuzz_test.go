package mirror_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/redact"
)

// FuzzValidateURL: remote-URL validation never panics; what it accepts is
// what go-git will dial (a network scheme with a host that is not an
// option, no whitespace, no leading '-'; http and local remotes only when
// allowed); allowing local remotes never refuses more; errors wrap
// ErrBadURL or ErrLocalRemote and carry neither raw control characters
// nor the URL's password.
func FuzzValidateURL(f *testing.F) {
	for _, seed := range []string{
		"https://github.com/a/b.git", "https://user:pw-secret@github.com/a/b.git", "ssh://git@github.com:2222/a/b.git",
		"git@github.com:a/b.git", "git://127.0.0.1:9418/a.git", "http://127.0.0.1:8080/a.git", "file:///srv/a.git",
		"/srv/a.git", "./a.git", "a.git", "", "   ", "ftp://example.com/a.git", "ext::sh -c evil", "https:///nohost",
		"https://exa mple.com/a", "https://example.com/a\nb", "-oProxyCommand=evil", "ssh://-oProxyCommand=evil/a",
		"https://u:%zz@example.com/a", "https://[::1]:443/x", "git://[fe80::1%25eth0]/x", "ssh://user@host:/~/x",
		"https://u:p@h\x1b[31m/x", "C:\\repos\\x", "\\\\server\\share\\x", "https://h/x\u202e",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, raw string, allowLocal bool) {
		err := mirror.ValidateURL(raw, allowLocal)
		if !allowLocal && err == nil {
			if lerr := mirror.ValidateURL(raw, true); lerr != nil {
				t.Fatalf("%q: accepted without local remotes, refused with them: %v", raw, lerr)
			}
		}
		if err != nil {
			if !errors.Is(err, mirror.ErrBadURL) && !errors.Is(err, mirror.ErrLocalRemote) {
				t.Fatalf("%q: %v wraps neither ErrBadURL nor ErrLocalRemote", raw, err)
			}
			msg := err.Error()
			if strings.ContainsFunc(msg, unicode.IsControl) {
				t.Fatalf("%q: control character in %q", raw, msg)
			}
			if ep, perr := transport.NewEndpoint(raw); perr == nil && len(ep.Password) >= 6 &&
				!strings.Contains(redact.URL(raw), ep.Password) && strings.Contains(msg, ep.Password) {
				t.Fatalf("%q: the password is in %q", raw, msg)
			}
			return
		}
		if strings.ContainsFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) || strings.HasPrefix(raw, "-") {
			t.Fatalf("%q accepted", raw)
		}
		ep, perr := transport.NewEndpoint(raw)
		if perr != nil {
			t.Fatalf("%q accepted but go-git cannot parse it: %v", raw, perr)
		}
		// Plain http is a syntax ValidateURL accepts; whether a server
		// may use it is Config.Check's policy (--allow-private-remotes).
		switch proto := strings.ToLower(ep.Protocol); proto {
		case "https", "http", "ssh", "git":
		case "file":
			if !allowLocal {
				t.Fatalf("%q (%s) accepted without local remotes", raw, proto)
			}
			return
		default:
			t.Fatalf("%q accepted with protocol %q", raw, ep.Protocol)
		}
		if ep.Host == "" || strings.HasPrefix(ep.Host, "-") {
			t.Fatalf("%q accepted with host %q", raw, ep.Host)
		}
	})
}
