package redact

import "testing"

func TestPublicRemote(t *testing.T) {
	cases := []struct{ in, want string }{
		{"https://github.com/acme/api.git", "https://github.com/acme/api.git"},
		{"https://user:tok@github.com/acme/api.git", "https://github.com/acme/api.git"},
		{"http://127.0.0.1:8080/x.git", "http://127.0.0.1:8080/x.git"},
		{"ssh://git@github.com/acme/api.git", "ssh://github.com/acme/api.git"},
		{"ssh://git@[::1]:22/x.git", "ssh://[::1]:22/x.git"},
		{"git://example.com/x.git", "git://example.com/x.git"},
		{"GIT+SSH://host/x", "GIT+SSH://host/x"},
		{"git@github.com:acme/api.git", "github.com:acme/api.git"},
		{"github.com:acme/api.git", "github.com:acme/api.git"},
		{"  https://h.example/x  ", "https://h.example/x"},

		{"", ""},
		{"/home/me/src/upstream.git", ""},
		{"../upstream", ""},
		{"./a:b", ""},
		{"upstream", ""},
		{"~/x.git", ""},
		{"file:///srv/git/x.git", ""},
		{"FILE:///srv/git/x.git", ""},
		{"file://localhost/srv/x.git", ""},
		{"C:\\repos\\x", ""},
		{"c:/repos/x", ""},
		{"https:///no-host", ""},
		{"https://:443/x", ""},
		{"ftp://example.com/x", ""},
		{"ext::ssh -i key host", ""},
		{"persistent-https://host/x", ""},
		{"user:pass@/abs/path", ""},
		{"a b:c", ""},
	}
	for _, tc := range cases {
		if got := PublicRemote(tc.in); got != tc.want {
			t.Errorf("PublicRemote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
