package mirror

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"unicode"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/stackd/stackd/impl/egress"
	"github.com/stackd/stackd/impl/redact"
)

var (
	// ErrBadURL reports a remote URL that cannot be parsed or uses a
	// scheme that is not allowed.
	ErrBadURL = errors.New("bad remote URL")
	// ErrLocalRemote reports a file:// URL or a plain path while local
	// remotes are disabled.
	ErrLocalRemote = errors.New("local remotes are disabled")
	// ErrPlainHTTP reports a plain http:// URL while private remotes are
	// disabled.
	ErrPlainHTTP = errors.New("plain http remotes are disabled")
	// ErrForbiddenAddress reports an upstream whose address (an IP literal
	// in the URL, or what its name resolved to when connecting) is not
	// public while private remotes are disabled. It is egress's sentinel.
	ErrForbiddenAddress = egress.ErrForbiddenAddress
	// ErrHostNotAllowed reports a URL host, or an http redirect target,
	// outside Config.AllowedHosts. It is egress's sentinel.
	ErrHostNotAllowed = egress.ErrHostNotAllowed
	// ErrSSHKey reports an ssh remote without a private key (Config.Auth
	// a *ssh.PublicKeys): the ssh agent is never used.
	ErrSSHKey = errors.New("ssh remote without a configured private key")
	// ErrBadID reports a mirror id that is not 1-64 characters of
	// [A-Za-z0-9._-] or that starts with '.' or '-'.
	ErrBadID = errors.New("bad mirror id")
	// ErrExists reports a Clone into a directory that already exists.
	ErrExists = errors.New("mirror directory already exists")
	// ErrNoMirror reports an Open or Remove of a mirror that does not exist.
	ErrNoMirror = errors.New("no such mirror")
	// ErrNotMirror reports a directory that is not a mirror stackd created:
	// a symbolic link, a working checkout or other non-bare repository, or
	// a bare repository without stackd's marker (or with another id's).
	ErrNotMirror = errors.New("not a stackd mirror")
	// ErrStorage reports a failure to write the mirror on this machine's
	// disk during a clone or fetch (not the upstream's fault; its text may
	// name local paths and is for the log).
	ErrStorage = errors.New("mirror storage failed")
	// ErrLocked reports a lock file (packed-refs.lock, HEAD.lock, ...) held
	// by another writer, typically a git process run in the mirror.
	ErrLocked = errors.New("mirror file is locked")
	// ErrClosed reports a read from a mirror after Close.
	ErrClosed = errors.New("mirror is closed")
	// ErrAdvertisementTooLarge reports an upstream whose ref advertisement
	// (the listing that starts every fetch) is larger than
	// maxAdvertisement: it is refused rather than held in memory. It
	// matches ErrTooLarge too.
	ErrAdvertisementTooLarge = fmt.Errorf("%w: the ref advertisement is too large", ErrTooLarge)
	// ErrFetch matches (via errors.Is) every *FetchError.
	ErrFetch = errors.New("fetch from remote failed")
)

// Refused reports whether err is a refusal of the remote by policy, not a
// malformed URL or a failure: a local remote, plain http, a non-public
// address, a host outside the allowed hosts, or ssh without a key.
func Refused(err error) bool {
	for _, s := range []error{ErrLocalRemote, ErrPlainHTTP, ErrForbiddenAddress, ErrHostNotAllowed, ErrSSHKey} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FetchError is a failure of the remote or of the transport (unreachable
// host, refused destination, authentication, missing repository, protocol
// error, a pack that cannot be stored). Its message says what failed in
// words of this package, never in the upstream's: it is safe to show to
// API clients. The upstream's own text (an error body, a daemon or ssh
// message), sanitized and truncated, is only in Detail, for the log.
type FetchError struct {
	// Op is the operation that failed: "clone" (Root.Clone) or "fetch"
	// (Mirror.Sync).
	Op string
	// URL is the redacted remote URL.
	URL string
	// Msg says what failed, for example "repository not found (HTTP 404)".
	Msg string
	// Detail is the sanitized underlying error text, at most maxDetail
	// bytes: for logs only, as it may quote what the upstream sent.
	Detail string
	// kind is a credential-free sentinel when one is recognised (for
	// example transport.ErrAuthenticationRequired or
	// ErrForbiddenAddress), else nil.
	kind error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("could not %s: %s", e.Op, e.Msg)
}

// Unwrap exposes ErrFetch and, when recognised, a sentinel: one of go-git's
// transport errors (transport.ErrRepositoryNotFound,
// ErrAuthenticationRequired, ErrAuthorizationFailed, ErrInvalidAuthMethod,
// ErrEmptyRemoteRepository) or ErrForbiddenAddress, ErrHostNotAllowed,
// ErrSSHKey, ErrAdvertisementTooLarge, ErrTooLarge, ErrCorrupt. The raw
// go-git error is
// deliberately not exposed: its text
// may carry credentials and the upstream's words.
func (e *FetchError) Unwrap() []error {
	if e.kind == nil {
		return []error{ErrFetch}
	}
	return []error{ErrFetch, e.kind}
}

// maxDetail bounds FetchError.Detail.
const maxDetail = 512

// ValidateURL checks the syntax and scheme of a remote URL.
//
// Allowed: https://, http://, ssh:// (and the scp-like form
// user@host:path) and git://, each with a non-empty host; file:// URLs
// and plain paths only with allowLocal (else ErrLocalRemote). Raw
// whitespace and control characters are refused (percent-encode them).
// Everything else wraps ErrBadURL. URLs are classified exactly as go-git
// classifies them, so what is validated is what is fetched. Where the URL
// may lead (plain http, addresses, hosts, ssh keys) is Config.Check's
// business.
func ValidateURL(raw string, allowLocal bool) error {
	_, err := parseURL(raw, allowLocal)
	return err
}

// parseURL is ValidateURL returning go-git's endpoint.
func parseURL(raw string, allowLocal bool) (*transport.Endpoint, error) {
	shown := redact.URL(raw)
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadURL)
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return nil, fmt.Errorf("%w: whitespace or control character in %q (percent-encode it)", ErrBadURL, shown)
	}
	if strings.HasPrefix(raw, "-") {
		return nil, fmt.Errorf("%w: %q starts with '-'", ErrBadURL, shown)
	}
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		// The parse error echoes the URL; do not pass it on.
		return nil, fmt.Errorf("%w: cannot parse %q", ErrBadURL, shown)
	}
	ep.Protocol = strings.ToLower(ep.Protocol)
	switch ep.Protocol {
	case "https", "http", "ssh", "git":
	case "file":
		if !allowLocal {
			return nil, fmt.Errorf("%w: %q", ErrLocalRemote, shown)
		}
		return ep, nil
	default:
		return nil, fmt.Errorf("%w: unsupported scheme %q in %q", ErrBadURL, ep.Protocol, shown)
	}
	if ep.Host == "" || strings.HasPrefix(ep.Host, "-") {
		return nil, fmt.Errorf("%w: missing or invalid host in %q", ErrBadURL, shown)
	}
	return ep, nil
}

// Check reports whether the mirror may use c's upstream, before any
// connection: the URL (ValidateURL), plain http only with AllowPrivate
// (ErrPlainHTTP), an IP literal host only when public or with
// AllowPrivate (ErrForbiddenAddress), the host within AllowedHosts when
// set (ErrHostNotAllowed), and an ssh remote only with a private key in
// Auth (ErrSSHKey). Clone and Open check the same; names are checked
// again, after resolution, on every connection.
func (c Config) Check() error {
	_, err := c.check()
	return err
}

func (c Config) check() (*transport.Endpoint, error) {
	ep, err := parseURL(c.URL, c.AllowLocal)
	if err != nil || ep.Protocol == "file" {
		return ep, err
	}
	shown := redact.URL(c.URL)
	if ep.Protocol == "http" && !c.AllowPrivate {
		return nil, fmt.Errorf("%w: %q (plain http is for development servers on a private network)", ErrPlainHTTP, shown)
	}
	if err := c.AllowedHosts.Check(ep.Host); err != nil {
		return nil, err
	}
	if ip, perr := netip.ParseAddr(strings.Trim(ep.Host, "[]")); perr == nil {
		if err := c.policy().CheckAddr(ip); err != nil {
			return nil, err
		}
	}
	if _, isHTTP := c.Auth.(githttp.AuthMethod); c.Auth != nil && !isHTTP && (ep.Protocol == "http" || ep.Protocol == "https") {
		return nil, fmt.Errorf("mirror: %q: %w: http(s) takes a username and password, not a key", shown, transport.ErrInvalidAuthMethod)
	}
	if ep.Protocol == "ssh" {
		if _, ok := c.Auth.(*gitssh.PublicKeys); !ok {
			return nil, fmt.Errorf("%w: %q (stackd never uses the ssh agent)", ErrSSHKey, shown)
		}
	}
	return ep, nil
}

// policy is the connection policy of c.
func (c Config) policy() egress.Policy {
	return egress.Policy{AllowPrivate: c.AllowPrivate, Resolver: c.Resolver}
}

// CheckID reports (wrapping ErrBadID) whether id cannot name a mirror: ids
// are 1-64 characters of [A-Za-z0-9._-] that do not start with '.' or '-',
// so that <root>/<id>.git is always a direct child of the root.
func CheckID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: %q (1-64 characters)", ErrBadID, id)
	}
	if id[0] == '.' || id[0] == '-' {
		return fmt.Errorf("%w: %q starts with %q", ErrBadID, id, id[0])
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %q (only letters, digits, '.', '_' and '-')", ErrBadID, id)
		}
	}
	return nil
}

// secretsOf lists the credential strings of cfg that must never appear in
// an error message, in the forms they might be printed.
func secretsOf(cfg Config) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if esc := url.QueryEscape(s); esc != s {
			out = append(out, esc)
		}
		if esc := url.PathEscape(s); esc != s {
			out = append(out, esc)
		}
	}
	if ba, ok := cfg.Auth.(*githttp.BasicAuth); ok && ba != nil {
		add(ba.Password)
	}
	if ep, err := transport.NewEndpoint(cfg.URL); err == nil {
		add(ep.Password)
		// A user without password on http(s) is usually a token.
		if p := strings.ToLower(ep.Protocol); ep.Password == "" && (p == "https" || p == "http") {
			add(ep.User)
		}
	}
	// Longest first, so that a secret containing another is masked whole.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}
