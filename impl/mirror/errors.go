package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"unicode"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/stackd/stackd/impl/redact"
)

var (
	// ErrBadURL reports a remote URL that cannot be parsed or uses a
	// scheme that is not allowed.
	ErrBadURL = errors.New("bad remote URL")
	// ErrLocalRemote reports a file:// URL or a plain path while local
	// remotes are disabled.
	ErrLocalRemote = errors.New("local remotes are disabled")
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
	// ErrLocked reports a lock file (packed-refs.lock, HEAD.lock, ...) held
	// by another writer, typically a git process run in the mirror.
	ErrLocked = errors.New("mirror file is locked")
	// ErrClosed reports a read from a mirror after Close.
	ErrClosed = errors.New("mirror is closed")
	// ErrFetch matches (via errors.Is) every *FetchError.
	ErrFetch = errors.New("fetch from remote failed")
)

// FetchError is a failure of the remote or of the transport (unreachable
// host, authentication, missing repository, protocol error, a pack that
// cannot be stored). Its message is sanitized and safe to show to API
// clients.
type FetchError struct {
	// Op is the operation that failed: "clone" (Root.Clone) or "fetch"
	// (Mirror.Sync).
	Op string
	// URL is the redacted remote URL.
	URL string
	// Msg is the sanitized error text from go-git.
	Msg string
	// kind is a credential-free go-git sentinel when one is recognised
	// (for example transport.ErrAuthenticationRequired), else nil.
	kind error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("mirror: %s %s: %s", e.Op, e.URL, e.Msg)
}

// Unwrap exposes ErrFetch and, when recognised, the go-git transport
// sentinel (transport.ErrRepositoryNotFound, ErrAuthenticationRequired,
// ErrAuthorizationFailed, ErrInvalidAuthMethod, ErrEmptyRemoteRepository).
// The raw go-git error is deliberately not exposed: its text may carry
// credentials.
func (e *FetchError) Unwrap() []error {
	if e.kind == nil {
		return []error{ErrFetch}
	}
	return []error{ErrFetch, e.kind}
}

var transportSentinels = []error{
	transport.ErrRepositoryNotFound,
	transport.ErrEmptyRemoteRepository,
	transport.ErrAuthenticationRequired,
	transport.ErrAuthorizationFailed,
	transport.ErrInvalidAuthMethod,
}

// ValidateURL checks that raw is a remote URL a mirror may use.
//
// Always allowed: https://, ssh:// (and the scp-like form user@host:path)
// and git://, each with a non-empty host. Plain http:// is refused unless
// allowLocal is set: credentials and content would travel in clear text,
// and the only legitimate use is a test or development server on loopback.
// file:// URLs and plain paths are allowed only with allowLocal (else
// ErrLocalRemote). Raw whitespace and control characters are refused
// (percent-encode them). Everything else wraps ErrBadURL. URLs are classified
// exactly as go-git classifies them, so what is validated is what is
// fetched.
func ValidateURL(raw string, allowLocal bool) error {
	shown := redact.URL(raw)
	if strings.TrimSpace(raw) == "" {
		return fmt.Errorf("%w: empty", ErrBadURL)
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("%w: whitespace or control character in %q (percent-encode it)", ErrBadURL, shown)
	}
	if strings.HasPrefix(raw, "-") {
		return fmt.Errorf("%w: %q starts with '-'", ErrBadURL, shown)
	}
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		// The parse error echoes the URL; do not pass it on.
		return fmt.Errorf("%w: cannot parse %q", ErrBadURL, shown)
	}
	switch strings.ToLower(ep.Protocol) {
	case "https", "ssh", "git":
	case "http":
		if !allowLocal {
			return fmt.Errorf("%w: plain http is only allowed with local remotes enabled: %q", ErrBadURL, shown)
		}
	case "file":
		if !allowLocal {
			return fmt.Errorf("%w: %q", ErrLocalRemote, shown)
		}
		return nil
	default:
		return fmt.Errorf("%w: unsupported scheme %q in %q", ErrBadURL, ep.Protocol, shown)
	}
	if ep.Host == "" || strings.HasPrefix(ep.Host, "-") {
		return fmt.Errorf("%w: missing or invalid host in %q", ErrBadURL, shown)
	}
	return nil
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

// remote is what a mirror needs to reach its upstream: the raw URL (it
// may hold credentials and is never shown), the redacted one, the auth
// method and the secrets to mask in error text.
type remote struct {
	url     string
	shown   string
	auth    transport.AuthMethod
	secrets []string
}

func newRemote(cfg Config) (remote, error) {
	if err := ValidateURL(cfg.URL, cfg.AllowLocal); err != nil {
		return remote{}, err
	}
	return remote{url: cfg.URL, shown: redact.URL(cfg.URL), auth: cfg.Auth, secrets: secretsOf(cfg)}, nil
}

// sanitize returns err's message without credentials.
func (r remote) sanitize(err error) string {
	s := redact.Error(err)
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	return s
}

// fail converts a failure while talking to the remote (or storing what it
// sent) into the package's error types: the context's error when it has
// ended, else a *FetchError.
func (r remote) fail(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("mirror: %s %s: %w", op, r.shown, ctxErr)
	}
	fe := &FetchError{Op: op, URL: r.shown, Msg: r.sanitize(err)}
	for _, s := range transportSentinels {
		if errors.Is(err, s) {
			fe.kind = s
			break
		}
	}
	return fe
}
