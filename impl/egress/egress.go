// Package egress decides where stackd may open network connections to
// upstreams: which IP addresses are global (public) and which host names an
// operator allowed.
//
// The address check runs where the connection is made, after DNS
// resolution: [Policy.Control] is a net.Dialer Control hook, called with
// the resolved address of every connection attempt, so a name that
// resolves to a public address when a URL is validated and to 127.0.0.1
// when it is fetched is still refused. A refused attempt never leaves the
// machine (Control runs before connect(2)). Where a transport cannot take
// a dialer (go-git's ssh transport), [Policy.Resolve] returns the checked
// addresses and the caller connects to one of them as a literal.
//
// Non-global addresses are refused unless Policy.AllowPrivate is set:
// loopback, RFC 1918, CGNAT (100.64.0.0/10), link-local (169.254.0.0/16,
// fe80::/10), unique-local (fc00::/7), multicast, unspecified,
// documentation, benchmarking and reserved ranges, and every IPv6 address
// outside 2000::/3 or inside a range that embeds or tunnels IPv4 (6to4,
// Teredo, NAT64) or is otherwise not globally reachable (see [Global]).
// IPv4-mapped IPv6 addresses are judged as the IPv4 address they map.
//
// Host patterns ([Hosts]) restrict which host names a URL may name at all:
// "github.com" matches that host only, "*.example.com" any host below
// example.com (not example.com itself); an IP literal matches itself.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

var (
	// ErrForbiddenAddress reports a connection refused because its
	// destination address is not global (see Global) and private
	// destinations are not allowed.
	ErrForbiddenAddress = errors.New("destination address not allowed")
	// ErrHostNotAllowed reports a host name outside the allowed host
	// patterns.
	ErrHostNotAllowed = errors.New("host not allowed")
)

// AddressError is a refused destination. It wraps ErrForbiddenAddress.
type AddressError struct {
	Addr netip.Addr
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("%v: %s is not a public address", ErrForbiddenAddress, e.Addr)
}

func (e *AddressError) Unwrap() error { return ErrForbiddenAddress }

// special lists the non-global ranges that netip's predicates do not
// cover (loopback, private, link-local, multicast and unspecified are
// checked with them). Sources: the IANA IPv4 and IPv6 special-purpose
// address registries (RFC 6890 and updates).
var special = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"100.64.0.0/10",   // shared address space (CGNAT), RFC 6598
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // TEST-NET-1
		"192.88.99.0/24",  // 6to4 relay anycast (deprecated)
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // TEST-NET-2
		"203.0.113.0/24",  // TEST-NET-3
		"240.0.0.0/4",     // reserved, and 255.255.255.255 broadcast
		"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, ...)
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4: embeds an IPv4 address
		"3fff::/20",       // documentation (RFC 9637)
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// globalUnicast6 is the only IPv6 space handed out for global unicast.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// Global reports whether ip is a globally reachable unicast address:
// not loopback, private (RFC 1918, fc00::/7), link-local, multicast,
// unspecified, CGNAT, documentation, benchmarking or reserved, and for
// IPv6 inside 2000::/3 and outside the ranges that tunnel IPv4.
func Global(ip netip.Addr) bool {
	if !ip.IsValid() || ip.Zone() != "" {
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	if ip.Is6() && !globalUnicast6.Contains(ip) {
		return false
	}
	for _, p := range special {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Policy is where connections may go.
type Policy struct {
	// AllowPrivate permits non-global destinations (see Global).
	AllowPrivate bool
	// Resolver resolves host names; nil is net.DefaultResolver.
	Resolver *net.Resolver
}

// CheckAddr returns nil when ip may be connected to, else an
// *AddressError.
func (p Policy) CheckAddr(ip netip.Addr) error {
	if p.AllowPrivate || Global(ip) {
		return nil
	}
	return &AddressError{Addr: ip.Unmap()}
}

// Control is a net.Dialer Control hook: it refuses (before connecting) a
// resolved address that CheckAddr refuses. address is "ip:port".
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// The dialer always passes a resolved literal; anything else is
		// refused rather than guessed at.
		return fmt.Errorf("%w: unparsable destination %q", ErrForbiddenAddress, address)
	}
	return p.CheckAddr(ap.Addr())
}

// Dialer returns a dialer whose every connection attempt goes through
// Control, resolving with p.Resolver.
func (p Policy) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Resolver: p.Resolver, Control: p.Control}
}

// Resolve returns the addresses of host (a name or an IP literal) that
// CheckAddr accepts, in the resolver's order. When it resolves only to
// refused addresses the error wraps ErrForbiddenAddress.
func (p Policy) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		r := p.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
	}
	var ok []netip.Addr
	var first error
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		ok = append(ok, a.Unmap())
	}
	if len(ok) == 0 {
		if first == nil {
			first = fmt.Errorf("%w: %s has no address", ErrForbiddenAddress, host)
		}
		return nil, first
	}
	return ok, nil
}

// Hosts is a validated list of host patterns; empty allows every host.
type Hosts []string

// ParseHosts validates and normalises host patterns: "github.com",
// "*.example.com" (any host below example.com) or an IP literal; case is
// ignored, ports and other wildcards are refused.
func ParseHosts(patterns []string) (Hosts, error) {
	var out Hosts
	for _, raw := range patterns {
		p := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(raw), "."))
		if p == "" {
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(p, "[]")); err == nil {
			out = append(out, ip.String())
			continue
		}
		name := strings.TrimPrefix(p, "*.")
		if !validName(name) || strings.Contains(name, "*") {
			return nil, fmt.Errorf("host pattern %q: want a host name such as github.com, *.example.com or an IP address (no port, no scheme)", raw)
		}
		out = append(out, p)
	}
	return out, nil
}

// validName reports whether s is a DNS name of letters, digits, '-' and
// '_' in dot-separated labels.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Allow reports whether host (a URL's host, with or without port or IPv6
// brackets) matches one of the patterns; every host matches an empty
// list.
func (h Hosts) Allow(host string) bool {
	if len(h) == 0 {
		return true
	}
	host = normalHost(host)
	if host == "" {
		return false
	}
	for _, p := range h {
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
			continue
		}
		if host == p {
			return true
		}
	}
	return false
}

// Check returns nil when host is allowed, else an error wrapping
// ErrHostNotAllowed.
func (h Hosts) Check(host string) error {
	if h.Allow(host) {
		return nil
	}
	return fmt.Errorf("%w: the host is not in the allowed remote hosts", ErrHostNotAllowed)
}

// normalHost lowercases host and strips a port, IPv6 brackets and a
// trailing dot; IP literals are returned in canonical form.
func normalHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.String()
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
