package auth

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPosture is wrapped by CheckPosture's refusals.
var ErrPosture = errors.New("unsafe posture")

// CheckPosture decides whether the server may start with c on a listener
// that is (addrIsLoopback) or is not on the loopback interface.
//
// On loopback (the local posture) every mode is allowed, auth off being the
// default. Elsewhere the server refuses to start with auth off unless it is
// read-only. Mode oidc, on any address, needs an allowlist (AllowedEmails,
// AllowedDomains or AllowedGroups) or an explicit AllowAnyUser, not both.
// Each refusal is one line that names the way out. The warnings describe
// accepted but weak or ineffective settings.
func CheckPosture(addrIsLoopback bool, c Config) (warnings []string, err error) {
	mode := c.Mode
	if mode == "" {
		mode = ModeNone
	}
	switch mode {
	case ModeNone:
		if !addrIsLoopback && !c.ReadOnly {
			return nil, fmt.Errorf("%w: refusing to serve a non-loopback address with auth off; use --auth oidc, --read-only, or listen on 127.0.0.1", ErrPosture)
		}
		if c.PublicReads {
			warnings = append(warnings, "--public-reads has no effect with auth off: every read is anonymous already")
		}
		if c.AllowAnyUser {
			warnings = append(warnings, "--allow-any-user has no effect with auth off: there is no sign-in")
		}
	case ModeOIDC:
		var missing []string
		if c.Issuer == "" {
			missing = append(missing, "issuer")
		}
		if c.ClientID == "" {
			missing = append(missing, "client id")
		}
		if c.BaseURL == "" {
			missing = append(missing, "base URL")
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%w: auth oidc needs the %s", ErrPosture, strings.Join(missing, ", "))
		}
		lists := len(c.AllowedEmails)+len(c.AllowedDomains)+len(c.AllowedGroups) > 0
		switch {
		case !lists && !c.AllowAnyUser:
			return nil, fmt.Errorf("%w: auth oidc without --allowed-emails, --allowed-domains or --allowed-groups would admit every account of the issuer; name who may sign in, or pass --allow-any-user to admit them all", ErrPosture)
		case lists && c.AllowAnyUser:
			return nil, fmt.Errorf("%w: --allow-any-user contradicts --allowed-emails, --allowed-domains and --allowed-groups; give the allowlists or --allow-any-user, not both", ErrPosture)
		}
		if !addrIsLoopback {
			if c.AllowAnyUser {
				warnings = append(warnings, "--allow-any-user: any user of the issuer may sign in")
			}
			if !strings.HasPrefix(strings.ToLower(c.BaseURL), "https://") {
				warnings = append(warnings, "the base URL is not https: session cookies are sent without the Secure attribute")
			}
		}
	default:
		return nil, fmt.Errorf("%w: unknown auth mode %q (want none or oidc)", ErrPosture, c.Mode)
	}
	for _, o := range c.CORSOrigins {
		if _, err := parseOrigin(o, false); err != nil {
			return nil, fmt.Errorf("%w: CORS origins must be exact origins: %w", ErrPosture, err)
		}
	}
	for _, p := range c.TrustedProxies {
		if p.Bits() == 0 {
			warnings = append(warnings, fmt.Sprintf("trusted proxy %s trusts every address: X-Forwarded-For can be forged", p))
		}
	}
	return warnings, nil
}
