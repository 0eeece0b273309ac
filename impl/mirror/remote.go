package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/stackd/stackd/impl/egress"
	"github.com/stackd/stackd/impl/redact"
)

// maxErrorBody bounds how much of an upstream's HTTP error answer (any
// status outside 2xx) is read: go-git reads error bodies whole.
const maxErrorBody = 64 << 10

// maxAdvertisement bounds the ref advertisement read from an upstream over
// git:// and http(s), which is decoded into memory whole: 128 MiB, about
// 1.4 million refs (GitHub advertises every refs/pull/* too; its largest
// repositories advertise a few hundred thousand refs). An upstream that
// sends more is refused with ErrAdvertisementTooLarge instead of
// exhausting the server's memory. A variable for tests.
var maxAdvertisement int64 = 128 << 20

// counted counts what is read through it (Transfers.Received).
type counted struct {
	r io.Reader
	t Transfers
}

func (c counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Received(n)
	return n, err
}

// capReader reads at most n more bytes of r; a read beyond them fails with
// ErrAdvertisementTooLarge.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, fmt.Errorf("%w (more than %d MiB)", ErrAdvertisementTooLarge, maxAdvertisement>>20)
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	return k, err
}

// remote is what a mirror needs to reach its upstream: the raw URL (it
// may hold credentials and is never shown), the redacted one, the auth
// method, the secrets to mask in error text, the connection policy and,
// for http(s), the mirror's own HTTP client.
type remote struct {
	lim     Limits // with defaults
	url     string
	shown   string
	auth    transport.AuthMethod
	secrets []string
	policy  egress.Policy
	log     *slog.Logger
	// httpc is go-git's http transport over an http.Client of this
	// mirror (see newHTTP); nil for other schemes. tr is its connection
	// pool.
	httpc transport.Transport
	tr    *http.Transport
	// transfers counts sessions and pack bytes (nil: nothing).
	transfers Transfers
	// ep is url parsed (transport.NewEndpoint, lowercase scheme) once,
	// not at every session; nil when it did not parse (open reports it).
	ep *transport.Endpoint
}

func newRemote(cfg Config) (remote, error) {
	ep, err := cfg.check()
	if err != nil {
		return remote{}, err
	}
	r := remote{lim: cfg.Limits.orDefault(), url: cfg.URL, shown: redact.URL(cfg.URL), auth: cfg.Auth, secrets: secretsOf(cfg), policy: cfg.policy(), log: cfg.Log, transfers: cfg.Transfers}
	if ep.Protocol == "http" || ep.Protocol == "https" {
		r.httpc, r.tr = newHTTP(cfg, ep)
	}
	if parsed, err := transport.NewEndpoint(r.url); err == nil {
		parsed.Protocol = strings.ToLower(parsed.Protocol)
		r.ep = parsed
	}
	return r, nil
}

// close releases the remote's idle connections.
func (r remote) close() {
	if r.tr != nil {
		r.tr.CloseIdleConnections()
	}
}

// newHTTP builds the HTTP client of one mirror, without global state
// (go-git's client.InstallProtocol is not used):
//
//   - every connection is dialed through the policy's Control hook, so
//     the address is checked after resolution, redirects included;
//   - proxies from the environment (HTTPS_PROXY, HTTP_PROXY) are not
//     used: a proxy would resolve and connect where the check cannot see;
//   - TLS trusts cfg.RootCAs (nil: the system roots);
//   - redirects go-git follows (only the first request's, by default)
//     must stay within cfg.AllowedHosts;
//   - boundTransport drops credentials from any request that leaves the
//     configured URL's origin and limits error bodies to maxErrorBody.
func newHTTP(cfg Config, ep *transport.Endpoint) (transport.Transport, *http.Transport) {
	d := cfg.policy().Dialer()
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   15 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	hosts := cfg.AllowedHosts
	hc := &http.Client{
		Transport: &boundTransport{base: tr, origin: originOf(ep.Protocol, ep.Host, ep.Port), lim: cfg.Limits.orDefault()},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return hosts.Check(req.URL.Host)
		},
	}
	return githttp.NewClientWithOptions(hc, &githttp.ClientOptions{RedirectPolicy: githttp.FollowInitialRedirects}), tr
}

// origin is a URL's scheme, canonical host and effective port.
type origin struct {
	scheme, host, port string
}

func originOf(scheme, host string, port int) origin {
	p := ""
	if port > 0 {
		p = strconv.Itoa(port)
	}
	return originOfURL(&url.URL{Scheme: scheme, Host: joinHost(host, p)})
}

func joinHost(host, port string) string {
	host = strings.Trim(host, "[]")
	if port == "" {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, port)
}

func originOfURL(u *url.URL) origin {
	scheme := strings.ToLower(u.Scheme)
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	} else {
		host = strings.ToLower(host)
	}
	port := strings.TrimLeft(u.Port(), "0")
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return origin{scheme, host, port}
}

// boundTransport is the RoundTripper of a mirror's HTTP client. Credentials
// are bound to the origin of the configured URL: a request to any other
// origin (after a redirect, say) is sent without an Authorization header
// and without URL userinfo, whatever go-git decided. Answers outside 2xx
// are read through a limit of maxErrorBody bytes, then the connection is
// dropped.
type boundTransport struct {
	base   http.RoundTripper
	origin origin
	lim    Limits // with defaults
}

func (t *boundTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if originOfURL(req.URL) != t.origin && (req.URL.User != nil || req.Header.Get("Authorization") != "" || req.Header.Get("Proxy-Authorization") != "") {
		req = req.Clone(req.Context())
		req.URL.User = nil
		req.Header.Del("Authorization")
		req.Header.Del("Proxy-Authorization")
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		resp.Body = &limitedBody{r: io.LimitReader(resp.Body, maxErrorBody), c: resp.Body}
	case req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/info/refs"):
		// The ref advertisement: decoded whole, so bounded, and only what
		// a mirror keeps of it reaches the decoder.
		resp.Body = &limitedBody{r: newAdvertFilter(&capReader{r: resp.Body, n: maxAdvertisement}, t.lim), c: resp.Body}
	}
	return resp, nil
}

// limitedBody reads at most a limit of a body and closes the original.
type limitedBody struct {
	r io.Reader
	c io.Closer
}

func (b *limitedBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *limitedBody) Close() error               { return b.c.Close() }

// session opens an upload-pack session with the upstream: the mirror's
// HTTP client for http(s), gitSession for git://, a pinned ssh session for
// ssh, go-git's file transport for local remotes.
//
// refsHint is the number of refs the upstream is expected to advertise.
func (r remote) session(ctx context.Context, refsHint int) (transport.UploadPackSession, error) {
	sess, err := r.open(ctx, refsHint)
	if err == nil && r.transfers != nil {
		r.transfers.SessionOpened()
	}
	return sess, err
}

func (r remote) open(ctx context.Context, refsHint int) (transport.UploadPackSession, error) {
	if r.ep == nil {
		_, err := transport.NewEndpoint(r.url)
		if err == nil {
			err = fmt.Errorf("%w: %q does not parse", ErrBadURL, r.shown)
		}
		return nil, err
	}
	e := *r.ep // a copy: the transports may change theirs
	ep := &e
	switch ep.Protocol {
	case "git":
		return openGitSession(ctx, r.policy.Dialer(), ep, r.auth, refsHint, r.lim)
	case "http", "https":
		if r.httpc == nil {
			return nil, fmt.Errorf("%w: no http client", ErrBadURL)
		}
		return r.httpc.NewUploadPackSession(ep, r.auth)
	case "ssh":
		return r.sshSession(ctx, ep)
	case "file":
		c, err := client.NewClient(ep)
		if err != nil {
			return nil, err
		}
		return c.NewUploadPackSession(ep, r.auth)
	}
	return nil, fmt.Errorf("%w: unsupported scheme %q", ErrBadURL, ep.Protocol)
}

// sshSession connects to the upstream's checked addresses as literals:
// go-git's ssh transport dials by itself and cannot take a dialer, so the
// host name is resolved here (egress.Policy.Resolve) and the session is
// opened to one of the accepted addresses in turn. The host key is still
// verified for the host name (known_hosts, or the key's own callback). The
// only credential is the configured private key: the ssh agent is never
// asked.
func (r remote) sshSession(ctx context.Context, ep *transport.Endpoint) (transport.UploadPackSession, error) {
	pk, ok := r.auth.(*gitssh.PublicKeys)
	if !ok || pk == nil || pk.Signer == nil {
		return nil, ErrSSHKey
	}
	port := ep.Port
	if port <= 0 {
		port = gitssh.DefaultPort
	}
	named := net.JoinHostPort(strings.Trim(ep.Host, "[]"), strconv.Itoa(port))
	addrs, err := r.policy.Resolve(ctx, ep.Host)
	if err != nil {
		return nil, err
	}
	check, algos := pk.HostKeyCallback, pk.HostKeyAlgorithms
	if check == nil {
		db, err := gitssh.NewKnownHostsDb()
		if err != nil {
			return nil, fmt.Errorf("ssh known hosts: %w", err)
		}
		check = db.HostKeyCallback()
		if len(algos) == 0 {
			algos = db.HostKeyAlgorithms(named)
		}
	}
	user := ep.User
	if user == "" {
		user = pk.User
	}
	if user == "" {
		user = "git"
	}
	auth := &pinnedKey{user: user, signer: pk.Signer, algos: algos,
		check: func(_ string, remote net.Addr, key ssh.PublicKey) error { return check(named, remote, key) }}
	var last error
	for _, a := range addrs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pinned := *ep
		pinned.Host, pinned.Port = a.String(), port
		sess, err := gitssh.NewClient(nil).NewUploadPackSession(&pinned, auth)
		if err == nil {
			return sess, nil
		}
		last = err
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			break // connected, and failed after that: do not try elsewhere
		}
	}
	return nil, last
}

// pinnedKey is an ssh public-key auth method whose host key check is
// bound to the host name of the URL, whatever address was dialed.
type pinnedKey struct {
	user   string
	signer ssh.Signer
	check  ssh.HostKeyCallback
	algos  []string
}

func (a *pinnedKey) Name() string   { return gitssh.PublicKeysName }
func (a *pinnedKey) String() string { return "user: " + a.user + ", name: " + a.Name() }
func (a *pinnedKey) ClientConfig() (*ssh.ClientConfig, error) {
	return &ssh.ClientConfig{
		User:              a.user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(a.signer)},
		HostKeyCallback:   a.check,
		HostKeyAlgorithms: a.algos,
		Timeout:           30 * time.Second,
	}, nil
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
// ended, else a *FetchError whose message says what failed (classify) and
// whose Detail, logged here, holds the sanitized and truncated text.
func (r remote) fail(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("mirror: %s %s: %w", op, r.shown, ctxErr)
	}
	// A failure to write this machine's disk (the pack, its index) is not
	// the upstream's: it is reported as ErrStorage, never as a FetchError.
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return fmt.Errorf("mirror: %s %s: %w: %w", op, r.shown, ErrStorage, err)
	}
	ep, _ := transport.NewEndpoint(r.url)
	proto := ""
	if ep != nil {
		proto = strings.ToLower(ep.Protocol)
	}
	msg, kind := classify(err, proto == "http" || proto == "https")
	detail := r.sanitize(err)
	if he := httpErr(err); he != nil && he.Reason != "" {
		detail += ": " + r.sanitize(errors.New(he.Reason))
	}
	fe := &FetchError{Op: op, URL: r.shown, Msg: msg, Detail: truncate(detail, maxDetail), kind: kind}
	if r.log != nil {
		r.log.Warn("upstream failed", "op", op, "url", r.shown, "reason", msg, "detail", fe.Detail)
	}
	return fe
}

// truncate cuts s to at most n bytes on a character boundary, flattened
// to one line.
func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// classify says in this package's words what err means, and which
// sentinel it matches. The words never quote the upstream: an HTTP error
// body, a daemon's ERR line or an ssh server's message only reach
// FetchError.Detail.
func classify(err error, overHTTP bool) (string, error) {
	status := func(code int) string {
		if overHTTP {
			return fmt.Sprintf(" (HTTP %d)", code)
		}
		return ""
	}
	var (
		dnsErr  *net.DNSError
		opErr   *net.OpError
		keyErr  *knownhosts.KeyError
		revoked *knownhosts.RevokedError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		badName x509.HostnameError
		tlsErr  *tls.CertificateVerificationError
		limit   *limitError
	)
	switch {
	case errors.Is(err, ErrForbiddenAddress):
		return "the upstream's address is not public (loopback, private, link-local or reserved) and private remotes are not allowed (--allow-private-remotes allows them)", ErrForbiddenAddress
	case errors.Is(err, ErrHostNotAllowed):
		return "redirected to a host that is not in the allowed remote hosts (--allowed-remote-hosts)", ErrHostNotAllowed
	case errors.Is(err, ErrSSHKey):
		return "ssh needs a configured private key", ErrSSHKey
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return "authentication required" + status(401), transport.ErrAuthenticationRequired
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return "access denied" + status(403), transport.ErrAuthorizationFailed
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return "repository not found" + status(404), transport.ErrRepositoryNotFound
	case errors.Is(err, transport.ErrInvalidAuthMethod):
		return "the configured credentials do not suit this transport", transport.ErrInvalidAuthMethod
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return "the repository is empty", transport.ErrEmptyRemoteRepository
	case errors.Is(err, ErrAdvertisementTooLarge):
		return fmt.Sprintf("the upstream advertises more than %d MiB of refs", maxAdvertisement>>20), ErrAdvertisementTooLarge
	case errors.As(err, &limit):
		return fmt.Sprintf("the upstream sent more than the limits allow: %s exceeds %s", limit.what, limit.describe()), ErrTooLarge
	case errors.Is(err, ErrCorrupt):
		return fmt.Sprintf("the upstream sent an invalid pack: %s", strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")), ErrCorrupt
	case httpStatus(err) != 0:
		return fmt.Sprintf("the upstream answered HTTP %d", httpStatus(err)), nil
	case strings.Contains(err.Error(), "http redirect"):
		return "the upstream redirected to a place that is not followed", nil
	case errors.As(err, &keyErr), errors.As(err, &revoked), strings.Contains(err.Error(), "known hosts"):
		return "the ssh host key is unknown, changed or revoked (known_hosts)", nil
	case strings.Contains(err.Error(), "ssh: unable to authenticate"):
		return "ssh authentication failed", transport.ErrAuthenticationRequired
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &badName), errors.As(err, &tlsErr):
		return "the upstream's TLS certificate is not trusted", nil
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "host not found", nil
	case errors.As(err, &dnsErr):
		return "host name lookup failed", nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", nil
	case isTimeout(err):
		return "connection timed out", nil
	case errors.As(err, &opErr):
		return "connection failed", nil
	}
	return "the upstream's answer could not be read or stored (the server log has details)", nil
}

// httpStatus digs the status out of go-git's error for an unexpected HTTP
// answer (a *githttp.Err inside a *plumbing.UnexpectedError, which does
// not unwrap); 0 if err is not one.
func httpStatus(err error) int {
	if he := httpErr(err); he != nil && he.Response != nil {
		return he.StatusCode()
	}
	return 0
}

// httpErr returns go-git's *githttp.Err in err, nil if none.
func httpErr(err error) *githttp.Err {
	var he *githttp.Err
	if errors.As(err, &he) {
		return he
	}
	var ue *plumbing.UnexpectedError
	if errors.As(err, &ue) && errors.As(ue.Err, &he) {
		return he
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
