package auth

import (
	"context"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/stackd/stackd/impl/validate"
)

// Level is how open an operation of the contract is, read from its
// security requirements in openapi.yaml (its own, or the document's global
// ones when it has none). It is the one classification both the gate and
// the served spec (ServedSecurity) follow.
type Level int

// Levels, from the most to the least restricted.
const (
	// LevelSignedIn: no empty requirement {}: the operation needs a
	// signed-in user wherever the server has users (the caller's identity,
	// the audit log, every mutation).
	LevelSignedIn Level = iota
	// LevelRead: the empty requirement {} next to the schemes: a read,
	// anonymous only where reads are public (auth off, --read-only,
	// --public-reads).
	LevelRead
	// LevelOpen: only the empty requirement (or no requirement at all):
	// anonymous in every posture (health, readiness, server posture,
	// sign-in routes, the HMAC-signed webhook).
	LevelOpen
)

func (l Level) String() string {
	switch l {
	case LevelSignedIn:
		return "signed-in"
	case LevelRead:
		return "read"
	case LevelOpen:
		return "open"
	}
	return "unknown"
}

// Classify returns the level of op. A nil op is LevelSignedIn: unknown
// operations fail closed.
func Classify(op *openapi3.Operation, global openapi3.SecurityRequirements) Level {
	if op == nil {
		return LevelSignedIn
	}
	reqs := global
	if op.Security != nil {
		reqs = *op.Security
	}
	if len(reqs) == 0 {
		return LevelOpen
	}
	empty, schemes := false, false
	for _, req := range reqs {
		if len(req) == 0 {
			empty = true
		} else {
			schemes = true
		}
	}
	switch {
	case empty && schemes:
		return LevelRead
	case empty:
		return LevelOpen
	}
	return LevelSignedIn
}

// Public reports whether op may be called anonymously in some posture: its
// level is not LevelSignedIn. Whether it may be in a given posture is
// Config.Access.
func Public(op *openapi3.Operation, global openapi3.SecurityRequirements) bool {
	return Classify(op, global) != LevelSignedIn
}

// Access is what a posture asks of an anonymous caller of an operation.
type Access int

// Accesses.
const (
	// AccessAnonymous: anyone may call it.
	AccessAnonymous Access = iota
	// AccessSignIn: an anonymous caller gets 401 and must sign in (session
	// cookie or bearer ID token).
	AccessSignIn
	// AccessNoUsers: the operation needs a user and the posture has none
	// (auth off on a read-only server, which may be public): 403 to
	// everyone.
	AccessNoUsers
)

// mode returns the mode with "" read as none.
func (c Config) mode() Mode {
	if c.Mode == "" {
		return ModeNone
	}
	return c.Mode
}

// Access decides, for the posture c, what an anonymous caller of an
// operation at level l gets:
//
//	level      auth off   auth off,   oidc      oidc,           oidc,
//	                      read-only   private   --public-reads  read-only
//	open       anonymous  anonymous   anonymous anonymous       anonymous
//	read       anonymous  anonymous   sign in   anonymous       anonymous
//	signed-in  anonymous  no users    sign in   sign in         sign in
//
// Auth off without read-only is the local posture (CheckPosture allows it
// only on loopback), where every operation is anonymous. Mutating
// operations are signed-in; a read-only server refuses them before this
// applies.
func (c Config) Access(l Level) Access {
	if l == LevelOpen {
		return AccessAnonymous
	}
	if c.mode() == ModeNone {
		if l == LevelSignedIn && c.ReadOnly {
			return AccessNoUsers
		}
		return AccessAnonymous
	}
	if l == LevelRead && (c.PublicReads || c.ReadOnly) {
		return AccessAnonymous
	}
	return AccessSignIn
}

// Admits is the gate's rule for a caller that presented no bad
// credentials: whether the posture c lets it through to an operation of
// level l that is (mutating) or is not a mutation. A read-only server
// refuses every mutation to everyone; otherwise a signed-in allowed user
// (signedIn) passes, and an anonymous caller where Access(l) is
// AccessAnonymous. Rate limits, CSRF and validation come on top.
func (c Config) Admits(l Level, mutating, signedIn bool) bool {
	if c.ReadOnly && mutating {
		return false
	}
	return signedIn || c.Access(l) == AccessAnonymous
}

// Admits reports whether the gate, which admitted the request of ctx,
// would admit the same caller (with the same credentials) to the
// operation opID of the contract: Config.Admits of its level and
// mutating flag. /api/v1/config tells the dashboard this way whether to
// offer onboarding. False outside the gate and for an operation the
// contract does not have.
func Admits(ctx context.Context, opID string) bool {
	f, ok := ctx.Value(admitsKey).(func(string) bool)
	return ok && f(opID)
}

// ReadsAnonymous reports whether read operations answer anonymous callers in
// the posture c.
func (c Config) ReadsAnonymous() bool { return c.Access(LevelRead) == AccessAnonymous }

// ServedSecurity returns the security requirements of op (asked with
// method) as the served spec shows them under the posture c, and whether
// the server has users at all (hasUsers false: auth off, the served spec
// carries no security schemes). One rule for every posture, so that Swagger
// UI and a validating proxy reading the served spec agree with the gate:
//
//   - the empty requirement {} comes first exactly when credentials are not
//     what decides: an anonymous caller passes (Access), or everyone is
//     refused alike (a mutation on a read-only server, 403 read-only; an
//     operation that needs a user where there are none, 403);
//   - then op's declared schemes (the global ones when it declares none),
//     where there are users and a credential can change the answer.
//
// So with auth off every operation is just [{}] (no padlock, no Authorize
// button: there is nobody to sign in as), a read-only server's mutations are
// [{}] too, and an operation that needs a session lists only the schemes.
func (c Config) ServedSecurity(method string, op *openapi3.Operation, global openapi3.SecurityRequirements) (reqs openapi3.SecurityRequirements, hasUsers bool) {
	hasUsers = c.mode() != ModeNone
	refusedToAll := c.ReadOnly && Mutating(&validate.Route{Operation: op, Method: method})
	reqs = openapi3.SecurityRequirements{}
	if refusedToAll || c.Access(Classify(op, global)) != AccessSignIn {
		reqs = append(reqs, openapi3.SecurityRequirement{})
	}
	if !hasUsers || refusedToAll {
		return reqs, hasUsers
	}
	declared := global
	if op != nil && op.Security != nil {
		declared = *op.Security
	}
	for _, req := range declared {
		if len(req) > 0 {
			reqs = append(reqs, req)
		}
	}
	return reqs, true
}

// Posture returns the configuration the server runs with (for the served
// spec and /api/v1/config), without the client secret.
func (a *Auth) Posture() Config {
	c := a.cfg
	c.ClientSecret = ""
	return c
}

// Describe says in one paragraph who may call what under the posture c (the
// served spec appends it to its description).
func (c Config) Describe() string {
	switch {
	case c.mode() == ModeNone && !c.ReadOnly:
		return "On this server (local posture, auth off) every operation is anonymous."
	case c.mode() == ModeNone:
		return "On this server (read-only, auth off) reads are anonymous, every mutating operation answers 403 `/problems/read-only`, and `/api/v1/me` and `/api/v1/audit` answer 403 `/problems/forbidden`."
	case c.ReadOnly:
		return "On this server (OIDC sign-in, read-only) reads are anonymous, every mutating operation answers 403 `/problems/read-only` to everyone, and `/api/v1/me` and `/api/v1/audit` need a session or a bearer ID token."
	case c.PublicReads:
		return "On this server (OIDC sign-in, public reads) reads are anonymous; every other operation that is not open needs a session or a bearer ID token."
	default:
		return "On this server (OIDC sign-in, private) every operation except health, readiness, `/api/v1/config`, sign-in and the signed webhook needs a session or a bearer ID token of an allowed user."
	}
}
