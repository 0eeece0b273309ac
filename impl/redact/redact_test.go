package redact

import (
	"errors"
	"fmt"
	"testing"
)

func TestURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"https user and password", "https://alice:s3cret@example.com/a/b.git", "https://example.com/a/b.git"},
		{"https token as user", "https://ghp_TOKEN@github.com/a/b", "https://github.com/a/b"},
		{"password with at and colon", "https://bob:p@ss:w@rd@example.com:8443/r.git", "https://example.com:8443/r.git"},
		{"percent-encoded password", "https://bob:p%40ss%3Aw%2Frd@example.com/r", "https://example.com/r"},
		{"raw hash and question mark in password", "https://bob:pa#s?s@example.com/r", "https://example.com/r"},
		{"no userinfo", "https://example.com/a@b", "https://example.com/a@b"},
		{"at in query kept", "https://example.com/r?x=a@b", "https://example.com/r?x=a@b"},
		{"ssh scheme", "ssh://git@example.com:2222/r.git", "ssh://example.com:2222/r.git"},
		{"ipv6 host", "ssh://u:p@[::1]:22/r", "ssh://[::1]:22/r"},
		{"git scheme", "git://127.0.0.1:9418/r.git", "git://127.0.0.1:9418/r.git"},
		{"file scheme", "file:///srv/r.git", "file:///srv/r.git"},
		{"scp-like", "git@github.com:a/b.git", "github.com:a/b.git"},
		{"scp-like with password", "u:secret@host:a/b", "host:a/b"},
		{"scp-like at and colon in user", "u:s@x@host:path", "host:path"},
		{"scp-like ipv6", "git@[::1]:a/b", "[::1]:a/b"},
		{"scp-like without user", "github.com:a/b", "github.com:a/b"},
		{"scp-like at in path kept", "host:dir/a@b", "host:dir/a@b"},
		{"plain path", "/srv/git/r@1.git", "/srv/git/r@1.git"},
		{"relative path with colon", "./a@b:c", "./a@b:c"},
		{"empty", "", ""},
		{"unparseable still redacted", "https://u:%zz@host/%zz", "https://host/%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := URL(tt.in); got != tt.want {
				t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"none", "connection refused", "connection refused"},
		{"quoted", `Get "https://u:secret@h/x/info/refs": dial tcp: refused`, `Get "https://h/x/info/refs": dial tcp: refused`},
		{"two urls", "from https://a:b@h1/x to ssh://c@h2/y", "from https://h1/x to ssh://h2/y"},
		{"password with at and colon", "fetch http://u:p@:x@@127.0.0.1:1/r failed", "fetch http://127.0.0.1:1/r failed"},
		{"percent-encoded", "bad url https://u:p%40%3A@h", "bad url https://h"},
		{"end of string", "x https://u:p@", "x https://"},
		{"angle brackets", "<https://u:p@h>", "<https://h>"},
		{"scheme without userinfo", "see https://h/a@b", "see https://h/a@b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Text(tt.in); got != tt.want {
				t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestError(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"plain", base, "boom"},
		{"wrapped url", fmt.Errorf("clone https://u:secret@h/r: %w", base), "clone https://h/r: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Error(tt.err); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}
