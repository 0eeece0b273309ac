// Package redact removes credentials from git remote URLs and from text
// (typically error messages) that may embed such URLs.
//
// Two URL shapes are understood:
//
//   - scheme URLs ("https://user:pass@host/path", "ssh://git@host/x",
//     "git://...", "file://..."): everything between "://" and the last '@'
//     of the authority is userinfo and is removed, so
//     "https://u:p@host/x" becomes "https://host/x".
//   - scp-like ssh addresses ("user@host:path"): everything before the
//     last '@' that precedes the host/path colon is removed, so
//     "git@github.com:a/b" becomes "github.com:a/b". The user name of an
//     scp-like address is usually not secret ("git"), but it is stripped
//     anyway so that a single rule ("nothing before '@' survives") holds.
//
// The authority of a scheme URL is taken to end at the first '/' or '\',
// whitespace, quote or angle bracket. Deliberately, '?' and '#' do not end
// it: they are not valid unescaped in userinfo, but people do paste raw
// passwords containing them, and leaking such a password is worse than
// mangling the rare URL whose query (with no path) contains an '@'.
// An unescaped '/' in a password cannot be told apart from a path and is
// not handled; such a URL is not valid and git rejects it as well.
//
// Redaction works on the text, not on a parsed and re-serialised URL, so
// the rest of the input (percent-encoding, ports, IPv6 brackets, query) is
// preserved byte for byte, and even unparseable URLs are redacted.
package redact

import "strings"

// URL returns raw with any userinfo removed. Inputs that are neither scheme
// URLs nor scp-like addresses (for example plain paths) are returned
// unchanged.
func URL(raw string) string {
	if strings.Contains(raw, "://") {
		return Text(raw)
	}
	return scpLike(raw)
}

// Error returns err's message with every URL userinfo removed (see Text).
// A nil error yields "".
func Error(err error) string {
	if err == nil {
		return ""
	}
	return Text(err.Error())
}

// Text removes the userinfo of every "scheme://userinfo@" occurrence in s,
// whether it holds a user, a user and password, or a token.
func Text(s string) string {
	const sep = "://"
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, sep)
		if i < 0 {
			if b.Len() == 0 {
				return s // nothing changed: avoid a copy
			}
			b.WriteString(rest)
			return b.String()
		}
		start := i + len(sep)
		b.WriteString(rest[:start])
		rest = rest[start:]
		end := authorityEnd(rest)
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			rest = rest[at+1:]
		}
	}
}

// authorityEnd returns the length of the URL authority at the start of s.
func authorityEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/' || c == '\\' || c == '"' || c == '\'' || c == '`' ||
			c == '<' || c == '>' || c <= ' ' || c == 0x7f:
			return i
		}
	}
	return len(s)
}

// scpLike strips "user@" (or "user:password@") from an scp-like
// "[user@]host:path" address. As in git, the address is scp-like only when
// its first ':' is not preceded by a '/'. Everything up to the last '@'
// before the host/path colon (the first ':' after the first '@') goes, so
// a ':' or '@' inside the user part cannot smuggle anything through.
func scpLike(raw string) string {
	colon := strings.IndexByte(raw, ':')
	if colon < 0 || strings.Contains(raw[:colon], "/") {
		return raw // a plain path
	}
	at := strings.IndexByte(raw, '@')
	if at < 0 {
		return raw
	}
	c := strings.IndexByte(raw[at:], ':')
	if c < 0 {
		return raw
	}
	return raw[strings.LastIndexByte(raw[:at+c], '@')+1:]
}
