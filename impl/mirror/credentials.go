package mirror

import (
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Credentials are how a mirror authenticates to its upstream
// (Config.Auth): nil for none, BasicAuth for http(s), SSHKeyFile for ssh.
// Only this package knows go-git's transports: the rest of stackd builds
// credentials with these constructors (the import rule, impl's
// TestImportBoundary).
type Credentials = transport.AuthMethod

// BasicAuth is the credentials of an http(s) upstream: a username and a
// password (or token). They are sent only to the origin of Config.URL.
func BasicAuth(username, password string) Credentials {
	return &githttp.BasicAuth{Username: username, Password: password}
}

// SSHKeyFile reads the private key (without a passphrase) at path: the
// credentials of an ssh upstream, as user git.
func SSHKeyFile(path string) (Credentials, error) {
	return gitssh.NewPublicKeysFromFile("git", path, "")
}
