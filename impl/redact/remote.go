package redact

import "strings"

// networkSchemes are the URL schemes whose remotes are network addresses.
var networkSchemes = map[string]bool{
	"https": true, "http": true, "ssh": true, "git": true, "git+ssh": true, "ssh+git": true,
}

// PublicRemote returns the form of a remote URL that clients may see: the
// URL without credentials (see URL) when it is a network address (an
// https, http, ssh or git URL with a host, or an scp-like "[user@]host:path"),
// and "" for everything else: filesystem paths (absolute or relative),
// file:// URLs, remote-helper addresses ("transport::address") and text
// that is not a URL at all. The server's own paths are never shown.
func PublicRemote(raw string) string {
	s := strings.TrimSpace(raw)
	if s == "" {
		return ""
	}
	if i := strings.Index(s, "::"); i >= 0 && !strings.ContainsAny(s[:i], "/[") {
		return "" // a remote helper: "transport::address"
	}
	out := URL(s)
	if scheme, rest, ok := strings.Cut(out, "://"); ok {
		if !networkSchemes[strings.ToLower(scheme)] || !validHost(rest[:authorityEnd(rest)], true) {
			return ""
		}
		return out
	}
	// git's rule: "host:path" is scp-like when no '/' comes before the
	// first ':'; otherwise it is a path.
	// What is left of a user part that URL could not strip is refused.
	host, _, ok := strings.Cut(out, ":")
	if !ok || !validHost(host, false) || strings.Contains(out, "@") {
		return ""
	}
	return out
}

// validHost reports whether the authority left after redaction names a
// host: not empty, no user part left, no path or space characters, and
// not a one-letter Windows drive ("C:\repo"). withPort allows a ":port".
func validHost(h string, withPort bool) bool {
	if withPort {
		if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
			h = h[:i]
		}
	}
	if len(h) < 2 || strings.ContainsAny(h, "@/\\ \t\"'<>") {
		return false
	}
	return true
}
