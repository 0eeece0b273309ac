package auth

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/stackd/stackd/impl/problem"
)

// Hosts returns next wrapped with the Host check of the local posture
// (Config.Loopback): a request is served only when its Host names this
// machine — `localhost`, a loopback address (127.0.0.0/8, ::1), with any
// port — or the host of BaseURL. Anything else answers 421
// /problems/misdirected-request.
//
// A web page on a name its owner points at 127.0.0.1 (DNS rebinding) is
// same-origin with itself, so the browser sends its requests, cookies of
// that name and an Origin equal to the Host; the Host check refuses them
// all, and Origins are compared with the same local set (never with the
// request's Host). Other postures are reached through names stackd cannot
// know (proxies) and are not checked.
func (a *Auth) Hosts(next http.Handler) http.Handler {
	if !a.cfg.Loopback {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.localHost(r.Host) {
			problem.Write(w, r, http.StatusMisdirectedRequest, problem.Misdirected,
				"this server runs on a loopback address and answers only to localhost, loopback addresses and its base URL; the Host header names another host")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localHost reports whether hostport (a Host header or an origin's host,
// port optional) is localhost, a loopback address or BaseURL's host.
func (a *Auth) localHost(hostport string) bool {
	h := hostName(hostport)
	if h == "" {
		return false
	}
	if h == "localhost" || a.baseHost != "" && h == a.baseHost {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// hostName returns the host of hostport without port or IPv6 brackets,
// lower case and without one trailing dot; "" when it is malformed.
func hostName(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || strings.ContainsAny(h, "/@ \t[]") {
		return ""
	}
	return h
}
