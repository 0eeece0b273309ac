package mirror

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/stackd/stackd/impl/egress"
	"github.com/stackd/stackd/impl/mirror/mirrortest"
)

func TestConfigCheck(t *testing.T) {
	key := newSSHKey(t).auth
	hosts, err := egress.ParseHosts([]string{"github.com", "*.example.com", "203.0.113.9"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"https", Config{URL: "https://github.com/a/b.git"}, nil},
		{"plain http", Config{URL: "http://github.com/a/b.git"}, ErrPlainHTTP},
		{"plain http, private allowed", Config{URL: "http://127.0.0.1:8080/a.git", AllowPrivate: true}, nil},
		{"loopback literal", Config{URL: "https://127.0.0.1/a.git"}, ErrForbiddenAddress},
		{"loopback literal, private allowed", Config{URL: "https://127.0.0.1/a.git", AllowPrivate: true}, nil},
		{"rfc1918", Config{URL: "git://10.0.0.1/a.git"}, ErrForbiddenAddress},
		{"metadata", Config{URL: "https://169.254.169.254/latest/meta-data"}, ErrForbiddenAddress},
		{"ipv6 loopback", Config{URL: "https://[::1]:8443/a.git"}, ErrForbiddenAddress},
		{"ipv4-mapped loopback", Config{URL: "https://[::ffff:127.0.0.1]/a.git"}, ErrForbiddenAddress},
		{"unique local", Config{URL: "https://[fd00::1]/a.git"}, ErrForbiddenAddress},
		{"cgnat", Config{URL: "https://100.64.1.1/a.git"}, ErrForbiddenAddress},
		{"unspecified", Config{URL: "git://0.0.0.0/a.git"}, ErrForbiddenAddress},
		{"public literal", Config{URL: "https://140.82.112.3/a.git"}, nil},
		{"ssh without key", Config{URL: "ssh://git@github.com/a/b.git"}, ErrSSHKey},
		{"scp-like without key", Config{URL: "git@github.com:a/b.git"}, ErrSSHKey},
		{"ssh with basic auth", Config{URL: "ssh://git@github.com/a/b.git", Auth: &githttp.BasicAuth{Username: "u", Password: "p"}}, ErrSSHKey},
		{"ssh with key", Config{URL: "ssh://git@github.com/a/b.git", Auth: key}, nil},
		{"allowed host", Config{URL: "https://github.com/a/b.git", AllowedHosts: hosts}, nil},
		{"allowed host, other case and port", Config{URL: "https://GitHub.com.:443/a/b.git", AllowedHosts: hosts}, nil},
		{"allowed subdomain", Config{URL: "https://git.example.com/a.git", AllowedHosts: hosts}, nil},
		{"wildcard does not match the apex", Config{URL: "https://example.com/a.git", AllowedHosts: hosts}, ErrHostNotAllowed},
		{"suffix is not a subdomain", Config{URL: "https://evilexample.com/a.git", AllowedHosts: hosts}, ErrHostNotAllowed},
		{"other host", Config{URL: "https://gitlab.com/a.git", AllowedHosts: hosts}, ErrHostNotAllowed},
		{"allowed literal, still not public", Config{URL: "https://203.0.113.9/a.git", AllowedHosts: hosts}, ErrForbiddenAddress},
		{"file without local", Config{URL: "file:///srv/a.git"}, ErrLocalRemote},
		{"file with local", Config{URL: "file:///srv/a.git", AllowLocal: true}, nil},
		{"bad scheme", Config{URL: "ftp://github.com/a.git"}, ErrBadURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Check()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check(%s) = %v", tt.cfg.URL, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check(%s) = %v, want %v", tt.cfg.URL, err, tt.want)
			}
			if !Refused(err) && tt.want != ErrBadURL {
				t.Fatalf("Refused(%v) = false", err)
			}
			// Clone refuses the same before creating anything.
			r := newRoot(t)
			if _, _, err := r.Clone(bg(), "m", tt.cfg); !errors.Is(err, tt.want) {
				t.Fatalf("Clone = %v, want %v", err, tt.want)
			}
			assertEmptyDir(t, r.Path())
		})
	}
}

// TestDialRefusesPrivateAddresses: names are checked where the connection
// is made, after resolution, for every transport; the refused connection
// never reaches the listener.
func TestDialRefusesPrivateAddresses(t *testing.T) {
	ln := mirrortest.Listen(t, "127.0.0.1:0")
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	key := newSSHKey(t).auth
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"git", Config{URL: "git://localhost:" + port + "/up.git"}},
		{"https", Config{URL: "https://localhost:" + port + "/up.git"}},
		{"ssh", Config{URL: "ssh://git@localhost:" + port + "/up.git", Auth: key}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRoot(t)
			_, _, err := r.Clone(bg(), "m", tt.cfg)
			var fe *FetchError
			if !errors.As(err, &fe) || !errors.Is(err, ErrForbiddenAddress) || !errors.Is(err, ErrFetch) {
				t.Fatalf("Clone = %v, want a FetchError matching ErrForbiddenAddress", err)
			}
			if strings.Contains(err.Error(), "127.0.0.1") {
				t.Fatalf("the resolved address is shown: %v", err)
			}
			mirrortest.NoConnection(t, ln)
			assertEmptyDir(t, r.Path())
		})
	}
}

// TestDNSRebinding: a name the operator allowed that resolves to loopback
// when the connection is made is refused then, whatever it resolved to
// before; with private remotes allowed the same name is fetched (so the
// refusal is the check's, not the resolver's).
func TestDNSRebinding(t *testing.T) {
	f := newFixture(t)
	_, port, _ := net.SplitHostPort(f.addr)
	resolver, queries := mirrortest.DNS(t, netip.MustParseAddr("127.0.0.1"))
	hosts, _ := egress.ParseHosts([]string{"*.rebind.test"})
	url := "git://git.rebind.test:" + port + "/up.git"
	cfg := Config{URL: url, AllowedHosts: hosts, Resolver: resolver}
	if err := cfg.Check(); err != nil {
		t.Fatalf("Check = %v: the name itself is allowed", err)
	}
	r := newRoot(t)
	if _, _, err := r.Clone(bg(), "m", cfg); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("Clone = %v, want ErrForbiddenAddress", err)
	}
	if queries.Load() == 0 {
		t.Fatal("the name was never resolved")
	}
	assertEmptyDir(t, r.Path())

	cfg.AllowPrivate = true
	m, _, err := r.Clone(bg(), "m", cfg)
	if err != nil {
		t.Fatalf("Clone with private remotes allowed: %v", err)
	}
	defer m.Close()
	assertMirrors(t, m, f.up)
}

// TestUpstreamErrorsNeverQuoted: what an upstream says in an error answer
// only reaches FetchError.Detail (the log), truncated; the message names
// the failure.
func TestUpstreamErrorsNeverQuoted(t *testing.T) {
	const secret = "UPSTREAM-SECRET-7f3a"
	for _, tt := range []struct {
		status int
		msg    string
		kind   error
	}{
		{401, "could not clone: authentication required (HTTP 401)", transport.ErrAuthenticationRequired},
		{403, "could not clone: access denied (HTTP 403)", transport.ErrAuthorizationFailed},
		{404, "could not clone: repository not found (HTTP 404)", transport.ErrRepositoryNotFound},
		{500, "could not clone: the upstream answered HTTP 500", ErrFetch},
	} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, "%s\n%s", secret, strings.Repeat("x", 4000))
			}))
			defer srv.Close()
			var logs bytes.Buffer
			cfg := Config{URL: srv.URL + "/r.git", AllowPrivate: true, Log: slog.New(slog.NewTextHandler(&logs, nil))}
			_, _, err := newRoot(t).Clone(bg(), "m", cfg)
			var fe *FetchError
			if !errors.As(err, &fe) || !errors.Is(err, tt.kind) {
				t.Fatalf("Clone = %v", err)
			}
			if err.Error() != tt.msg {
				t.Fatalf("message %q, want %q", err.Error(), tt.msg)
			}
			if s := fmt.Sprintf("%v %+v", err, err); strings.Contains(s, secret) {
				t.Fatalf("upstream text in the error: %s", s)
			}
			if !strings.Contains(fe.Detail, secret) || len(fe.Detail) > maxDetail+len("…") {
				t.Fatalf("Detail (%d bytes) = %q", len(fe.Detail), fe.Detail)
			}
			if !strings.Contains(logs.String(), secret) || !strings.Contains(logs.String(), "upstream failed") {
				t.Fatalf("the log lacks the detail:\n%s", logs.String())
			}
		})
	}
}

// TestErrorBodyLimited: boundTransport reads at most maxErrorBody of an
// error answer and drops the connection; the server stops early.
func TestErrorBodyLimited(t *testing.T) {
	written := make(chan int64, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		buf := bytes.Repeat([]byte("y"), 32<<10)
		var n int64
		for n < 300<<20 {
			k, err := w.Write(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		written <- n
	}))
	defer srv.Close()
	_, _, err := newRoot(t).Clone(bg(), "m", Config{URL: srv.URL + "/r.git", AllowPrivate: true})
	if !errors.Is(err, transport.ErrAuthorizationFailed) {
		t.Fatalf("Clone = %v", err)
	}
	if n := <-written; n >= 300<<20 {
		t.Fatalf("the whole body (%d bytes) was sent: the client read it all", n)
	}
}

// TestCredentialsBoundToOrigin: credentials go to the configured URL's
// origin only, never to another origin: not after a redirect, not when a
// request carries them (boundTransport strips them whatever go-git does).
func TestCredentialsBoundToOrigin(t *testing.T) {
	root := t.TempDir()
	up := newUpstream(t, root, "up.git")
	c := up.commit("", "c1", nil)
	up.set("refs/heads/main", c)
	other := mirrortest.ServeHTTP(t, root, true, nil)
	declared := mirrortest.ServeHTTP(t, root, true, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, ok := strings.CutPrefix(r.URL.Path, "/moved.git"); ok {
				http.Redirect(w, r, other.URL+"/up.git"+p+"?"+r.URL.RawQuery, http.StatusMovedPermanently)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	pool := mirrortest.Pool(declared.Server, other.Server)
	auth := &githttp.BasicAuth{Username: "x-access-token", Password: "tok-declared"}

	m, _, err := newRoot(t).Clone(bg(), "m", Config{URL: declared.URL + "/up.git", Auth: auth, AllowPrivate: true, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if got := declared.Auths(); len(got) == 0 || !strings.HasPrefix(got[0], "Basic ") {
		t.Fatalf("the declared host got %q", got)
	}

	// A redirect to another origin: followed, without the credentials.
	m, _, err = newRoot(t).Clone(bg(), "m", Config{URL: declared.URL + "/moved.git", Auth: auth, AllowPrivate: true, RootCAs: pool})
	if err != nil {
		t.Fatalf("clone through the redirect: %v", err)
	}
	m.Close()
	if other.Requests() == 0 {
		t.Fatal("the redirect was not followed")
	}
	for _, a := range other.Auths() {
		if a != "" {
			t.Fatalf("the other host received Authorization %q", a)
		}
	}

	// The transport itself, below go-git: a request to another origin
	// loses its credentials.
	rem, err := newRemote(Config{URL: declared.URL + "/up.git", AllowPrivate: true, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.close()
	u, _ := neturl.Parse(declared.URL)
	hc := &http.Client{Transport: &boundTransport{base: rem.tr, origin: originOfURL(u)}}
	for _, target := range []string{other.URL, declared.URL} {
		req, _ := http.NewRequest("GET", target+"/up.git/info/refs?service=git-upload-pack", nil)
		req.SetBasicAuth("x-access-token", "tok-declared")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if a := other.Auths(); a[len(a)-1] != "" {
		t.Fatalf("boundTransport forwarded %q to another origin", a[len(a)-1])
	}
	if a := declared.Auths(); a[len(a)-1] == "" {
		t.Fatal("boundTransport dropped the credentials of the declared origin")
	}
}

func TestAllowedHostsOnRedirect(t *testing.T) {
	root := t.TempDir()
	up := newUpstream(t, root, "up.git")
	up.set("refs/heads/main", up.commit("", "c1", nil))
	other := mirrortest.ServeHTTP(t, root, false, nil)
	first := mirrortest.ServeHTTP(t, root, false, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// 127.0.0.1 is allowed below; localhost is not.
			target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
			http.Redirect(w, r, target+r.URL.Path+"?"+r.URL.RawQuery, http.StatusFound)
		})
	})
	hosts, _ := egress.ParseHosts([]string{"127.0.0.1"})
	_, _, err := newRoot(t).Clone(bg(), "m", Config{URL: first.URL + "/up.git", AllowPrivate: true, AllowedHosts: hosts})
	if !errors.Is(err, ErrHostNotAllowed) {
		t.Fatalf("Clone = %v, want ErrHostNotAllowed", err)
	}
	if other.Requests() != 0 {
		t.Fatal("the redirect target was contacted")
	}
}

// TestSSH: ssh with a configured key, the host key checked for the URL's
// host name although the session is pinned to the checked address; never
// the agent; private addresses refused before connecting.
func TestSSH(t *testing.T) {
	f := newFixture(t)
	key := newSSHKey(t)
	srv := startSSH(t, f.base, key.pub)
	knownHosts(t, "localhost:"+srv.port, srv.hostKey)
	url := "ssh://git@localhost:" + srv.port + "/up.git"

	// The agent is never asked: a socket that fails the test when used.
	agent := filepath.Join(t.TempDir(), "agent.sock")
	al, err := net.Listen("unix", agent)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	var agentUsed atomic.Bool
	go func() {
		for {
			c, err := al.Accept()
			if err != nil {
				return
			}
			agentUsed.Store(true)
			c.Close()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", agent)

	r := newRoot(t)
	if _, _, err := r.Clone(bg(), "m", Config{URL: url, AllowPrivate: true}); !errors.Is(err, ErrSSHKey) {
		t.Fatalf("Clone without key = %v, want ErrSSHKey", err)
	}
	if _, _, err := r.Clone(bg(), "m", Config{URL: url, Auth: key.auth}); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("Clone to loopback = %v, want ErrForbiddenAddress", err)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Fatalf("%d connections reached the ssh server", n)
	}

	m, _, err := r.Clone(bg(), "m", Config{URL: url, Auth: key.auth, AllowPrivate: true})
	if err != nil {
		t.Fatalf("Clone over ssh: %v", err)
	}
	assertMirrors(t, m, f.up)
	c := f.up.commit(f.main, "c2", nil)
	f.up.set("refs/heads/main", c)
	if res, err := m.Sync(bg()); err != nil || len(res.Changes) != 1 {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	m.Close()

	// Another host key for the name: refused, and not for the address.
	knownHosts(t, "localhost:"+srv.port, newSSHKey(t).pub)
	_, _, err = newRoot(t).Clone(bg(), "m", Config{URL: url, Auth: key.auth, AllowPrivate: true})
	if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "host key") {
		t.Fatalf("Clone with a changed host key = %v", err)
	}
	if agentUsed.Load() {
		t.Fatal("the ssh agent was used")
	}
}

type sshKey struct {
	auth *gitssh.PublicKeys
	pub  ssh.PublicKey
}

func newSSHKey(t testing.TB) sshKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return sshKey{auth: &gitssh.PublicKeys{User: "git", Signer: s}, pub: s.PublicKey()}
}

// knownHosts points SSH_KNOWN_HOSTS at a file holding key for hostPort.
func knownHosts(t *testing.T, hostPort string, key ssh.PublicKey) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(knownhosts.Line([]string{knownhosts.Normalize(hostPort)}, key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSH_KNOWN_HOSTS", p)
}

type sshServer struct {
	port    string
	hostKey ssh.PublicKey
	conns   atomic.Int64
}

// startSSH serves git upload-pack over ssh for the repositories under
// root, to the holder of authorized, on 127.0.0.1.
func startSSH(t *testing.T, root string, authorized ssh.PublicKey) *sshServer {
	t.Helper()
	host := newSSHKey(t)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), authorized.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(host.auth.Signer)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after the listener's cleanup (registered later) closed it
	ln := mirrortest.Listen(t, "127.0.0.1:0")
	s := &sshServer{port: strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), hostKey: host.pub}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveSSH(c, cfg, root)
			}()
		}
	}()
	return s
}

func serveSSH(c net.Conn, cfg *ssh.ServerConfig, root string) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				if req.Type != "exec" {
					_ = req.Reply(false, nil)
					continue
				}
				var p struct{ Cmd string }
				if err := ssh.Unmarshal(req.Payload, &p); err != nil {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				name, arg, _ := strings.Cut(p.Cmd, " ")
				status := uint32(1)
				if name == "git-upload-pack" {
					dir := filepath.Join(root, filepath.Clean("/"+strings.Trim(arg, "'")))
					cmd := exec.Command("git", "upload-pack", dir)
					cmd.Env = gitEnv(root)
					cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
					stdin, err := cmd.StdinPipe()
					if err == nil && cmd.Start() == nil {
						go func() { _, _ = io.Copy(stdin, ch); stdin.Close() }()
						if cmd.Wait() == nil {
							status = 0
						}
					}
				}
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
				return
			}
		}()
	}
}

// endlessAdvertisement writes a valid ref advertisement that never ends
// (one ref after another, no flush) until w fails or stop is closed, and
// returns how many bytes it wrote.
func endlessAdvertisement(w io.Writer, stop <-chan struct{}) int64 {
	const tip = "1111111111111111111111111111111111111111"
	var n int64
	pkt := func(s string) error {
		k, err := fmt.Fprintf(w, "%04x%s", len(s)+4, s)
		n += int64(k)
		return err
	}
	if pkt(tip+" HEAD\x00multi_ack ofs-delta side-band-64k\n") != nil {
		return n
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return n
		default:
		}
		if pkt(fmt.Sprintf("%s refs/heads/b%09d\n", tip, i)) != nil {
			return n
		}
	}
}

// TestHugeAdvertisementRefused: an upstream whose ref advertisement never
// ends (over http and git://) is refused once it passed maxAdvertisement:
// a FetchError matching ErrAdvertisementTooLarge that says so, after
// reading about that much, and nothing is left behind.
func TestHugeAdvertisementRefused(t *testing.T) {
	defer func(n int64) { maxAdvertisement = n }(maxAdvertisement)
	maxAdvertisement = 1 << 20
	stop := make(chan struct{})
	defer close(stop)

	written := make(chan int64, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/info/refs") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		fmt.Fprintf(w, "001e# service=git-upload-pack\n0000")
		written <- endlessAdvertisement(w, stop)
	}))
	defer srv.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n [4]byte // the request's pkt-line: its length, then itself
				if _, err := io.ReadFull(c, n[:]); err != nil {
					return
				}
				size, _ := strconv.ParseUint(string(n[:]), 16, 16)
				if _, err := io.CopyN(io.Discard, c, int64(size)-4); err != nil {
					return
				}
				written <- endlessAdvertisement(c, stop)
			}()
		}
	}()

	for _, url := range []string{srv.URL + "/r.git", "git://" + ln.Addr().String() + "/r.git"} {
		t.Run(url[:strings.Index(url, ":")], func(t *testing.T) {
			r := newRoot(t)
			m, _, err := r.Clone(bg(), "m", Config{URL: url, AllowPrivate: true})
			var fe *FetchError
			if m != nil || !errors.As(err, &fe) || !errors.Is(err, ErrAdvertisementTooLarge) {
				t.Fatalf("Clone = %v, %v", m, err)
			}
			if !strings.Contains(fe.Msg, "advertises more than 1 MiB of refs") {
				t.Fatalf("message %q", fe.Msg)
			}
			// The server writes until the client hangs up: about the limit
			// (plus what the connection buffers), never without end.
			if n := <-written; n > 16<<20 {
				t.Fatalf("the upstream wrote %d bytes before the client hung up", n)
			}
			assertEmptyDir(t, r.Path())
		})
	}
}
