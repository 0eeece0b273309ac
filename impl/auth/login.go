package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/store"
)

// Routes registers the sign-in endpoints on mux: GET /auth/login,
// GET /auth/callback and POST /auth/logout.
func (a *Auth) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /auth/login", a.login)
	mux.HandleFunc("GET /auth/callback", a.callback)
	mux.HandleFunc("POST /auth/logout", a.logout)
}

// IsAuthPath reports whether path belongs to the sign-in endpoints, which
// are served outside the OpenAPI contract.
func (a *Auth) IsAuthPath(path string) bool {
	return path == "/auth" || strings.HasPrefix(path, "/auth/")
}

// loginState is what the login cookie carries between /auth/login and
// /auth/callback. The cookie is HMAC-signed with Config.LoginKey (shared by
// replicas), else a per-process key.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Return   string `json:"r"`
	Expires  int64  `json:"e"`
}

func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Mode != ModeOIDC {
		problem.Write(w, r, http.StatusNotFound, problem.NotFound, "sign-in is not configured: the server runs with auth off")
		return
	}
	ls := loginState{
		State:    randomToken(),
		Nonce:    randomToken(),
		Verifier: oauth2.GenerateVerifier(),
		Return:   safeReturn(r.URL.Query().Get("return")),
		Expires:  a.now().Add(loginTTL).Unix(),
	}
	http.SetCookie(w, &http.Cookie{
		Name:     loginCookie,
		Value:    a.sealLogin(ls),
		Path:     "/auth/",
		MaxAge:   int(loginTTL / time.Second),
		HttpOnly: true,
		Secure:   a.secure,
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	target := a.oauth.AuthCodeURL(ls.State, oidc.Nonce(ls.Nonce), oauth2.S256ChallengeOption(ls.Verifier))
	http.Redirect(w, r, target, http.StatusFound)
}

func (a *Auth) callback(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Mode != ModeOIDC {
		problem.Write(w, r, http.StatusNotFound, problem.NotFound, "sign-in is not configured: the server runs with auth off")
		return
	}
	// The login cookie is single use, whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: "/auth/", MaxAge: -1, HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	ls, err := a.openLogin(r)
	if err != nil {
		problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, "sign-in state is missing or expired; start again at /auth/login")
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(ls.State)) != 1 {
		problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, "sign-in state does not match; start again at /auth/login")
		return
	}
	if e := q.Get("error"); e != "" {
		problem.Write(w, r, http.StatusUnauthorized, problem.Unauthorized, "the identity provider refused sign-in: "+e)
		return
	}
	code := q.Get("code")
	if code == "" {
		problem.Write(w, r, http.StatusBadRequest, problem.BadRequest, "query parameter \"code\" is missing")
		return
	}
	tok, err := a.oauth.Exchange(r.Context(), code, oauth2.VerifierOption(ls.Verifier))
	if err != nil {
		a.log.Warn("sign-in: code exchange failed", "err", err, "client", ClientIP(r.Context()))
		problem.Write(w, r, http.StatusUnauthorized, problem.Unauthorized, "sign-in failed: the identity provider did not accept the authorization code")
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		problem.Write(w, r, http.StatusUnauthorized, problem.Unauthorized, "sign-in failed: the identity provider returned no ID token")
		return
	}
	id, err := a.verify(r.Context(), rawID, false)
	if err != nil {
		a.log.Warn("sign-in: ID token refused", "err", err)
		problem.Write(w, r, http.StatusUnauthorized, problem.Unauthorized, "sign-in failed: the ID token could not be verified")
		return
	}
	if subtle.ConstantTimeCompare([]byte(id.nonce), []byte(ls.Nonce)) != 1 {
		problem.Write(w, r, http.StatusUnauthorized, problem.Unauthorized, "sign-in failed: the ID token nonce does not match")
		return
	}
	if !a.allowed(id) {
		a.log.Info("sign-in refused by allowlist", "subject", id.Subject, "email", id.Email)
		problem.Write(w, r, http.StatusForbidden, problem.Forbidden, "this account is not allowed to sign in to this server")
		return
	}
	now := a.now()
	raw, err := a.store.CreateSession(r.Context(), store.Session{
		Subject: id.Subject, Email: id.Email, EmailVerified: id.emailVerified, Name: id.Name, Groups: id.Groups,
		CreatedAt: now, ExpiresAt: now.Add(a.cfg.SessionTTL),
	})
	if err != nil {
		if databaseUnavailable(w, r, err) {
			a.log.Warn("sign-in: session not stored: the database is unreachable", "err", err)
			return
		}
		a.log.Error("sign-in: create session", "err", err)
		problem.Write(w, r, http.StatusInternalServerError, problem.Internal, problem.GenericDetail)
		return
	}
	http.SetCookie(w, a.sessionCookie(raw, int(a.cfg.SessionTTL/time.Second)))
	a.log.Info("signed in", "subject", id.Subject, "email", id.Email)
	http.Redirect(w, r, ls.Return, http.StatusFound)
}

func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		if slug, detail := a.csrfRefusal(r, true); slug != "" {
			problem.Write(w, r, http.StatusForbidden, slug, detail)
			return
		}
		if a.store != nil {
			if err := a.store.DeleteSession(r.Context(), c.Value); err != nil {
				if databaseUnavailable(w, r, err) {
					a.log.Warn("sign-out: session not deleted: the database is unreachable", "err", err)
					return
				}
				a.log.Error("sign-out: delete session", "err", err)
				problem.Write(w, r, http.StatusInternalServerError, problem.Internal, problem.GenericDetail)
				return
			}
		}
	}
	http.SetCookie(w, a.sessionCookie("", -1))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (a *Auth) sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     SessionCookie,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   a.secure,
		SameSite: http.SameSiteLaxMode,
	}
}

// safeReturn keeps ret only when it is a path on this server.
func safeReturn(ret string) string {
	if ret == "" || ret[0] != '/' || strings.HasPrefix(ret, "//") || strings.ContainsAny(ret, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(ret)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return ret
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (a *Auth) sealLogin(ls loginState) string {
	body, _ := json.Marshal(ls) // plain strings and an int: cannot fail
	payload := base64.RawURLEncoding.EncodeToString(body)
	mac := hmac.New(sha256.New, a.loginKey)
	mac.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

var errLoginState = errors.New("login state invalid")

func (a *Auth) openLogin(r *http.Request) (loginState, error) {
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return loginState{}, fmt.Errorf("%w: %w", errLoginState, err)
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return loginState{}, errLoginState
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return loginState{}, fmt.Errorf("%w: %w", errLoginState, err)
	}
	mac := hmac.New(sha256.New, a.loginKey)
	mac.Write([]byte(payload))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return loginState{}, fmt.Errorf("%w: bad signature", errLoginState)
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return loginState{}, fmt.Errorf("%w: %w", errLoginState, err)
	}
	var ls loginState
	if err := json.Unmarshal(body, &ls); err != nil {
		return loginState{}, fmt.Errorf("%w: %w", errLoginState, err)
	}
	if a.now().Unix() >= ls.Expires {
		return loginState{}, fmt.Errorf("%w: expired", errLoginState)
	}
	return ls, nil
}

// identity is a verified user: a principal plus what the allowlists need.
type identity struct {
	Principal
	emailVerified bool
	nonce         string
}

// idClaims are the ID token claims stackd reads. Providers differ in how
// they encode email_verified and groups, hence the lenient types.
type idClaims struct {
	Email             string      `json:"email"`
	EmailVerified     lenientBool `json:"email_verified"`
	Name              string      `json:"name"`
	PreferredUsername string      `json:"preferred_username"`
	Groups            lenientList `json:"groups"`
}

type lenientBool bool

func (b *lenientBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case bool:
		*b = lenientBool(x)
	case string:
		*b = lenientBool(strings.EqualFold(x, "true"))
	default:
		*b = false
	}
	return nil
}

type lenientList []string

func (l *lenientList) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string:
		*l = []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		*l = out
	default:
		*l = nil
	}
	return nil
}

// errAudience is returned for a token issued to another client.
var errAudience = errors.New("token audience is not accepted")

// errAccessToken is returned for a JWT whose header declares it an OAuth
// access token (RFC 9068): stackd accepts only ID tokens.
var errAccessToken = errors.New("token is an OAuth access token (typ at+jwt), not an ID token")

// jwtType returns the typ member of a compact JWT's header ("" when the
// header has none or cannot be read: the signature check refuses those).
func jwtType(raw string) string {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(head, "="))
	if err != nil {
		return ""
	}
	var h struct {
		Typ string `json:"typ"`
	}
	if json.Unmarshal(b, &h) != nil {
		return ""
	}
	return h.Typ
}

// isAccessTokenType reports whether a JOSE typ names an RFC 9068 access
// token: "at+jwt", or its full media type "application/at+jwt", in any case
// (media types are case-insensitive; RFC 7515 lets typ omit "application/").
func isAccessTokenType(typ string) bool {
	typ = strings.ToLower(strings.TrimSpace(typ))
	return typ == "at+jwt" || typ == "application/at+jwt"
}

// verify checks a raw ID token: not an access token by its header's typ,
// then signature against the issuer's keys, issuer, expiry (by go-oidc) and
// audience (here). extra admits ExtraAudiences, for bearer tokens; sign-in
// callbacks accept only the client id.
func (a *Auth) verify(ctx context.Context, raw string, extra bool) (*identity, error) {
	if isAccessTokenType(jwtType(raw)) {
		return nil, fmt.Errorf("verify ID token: %w", errAccessToken)
	}
	tok, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("verify ID token: %w", err)
	}
	ok := false
	for _, aud := range tok.Audience {
		if aud == a.cfg.ClientID || extra && a.audiences[aud] {
			ok = true
			break
		}
	}
	if !ok {
		return nil, fmt.Errorf("verify ID token: %w: %v", errAudience, tok.Audience)
	}
	var c idClaims
	if err := tok.Claims(&c); err != nil {
		return nil, fmt.Errorf("verify ID token: claims: %w", err)
	}
	name := c.Name
	if name == "" {
		name = c.PreferredUsername
	}
	return &identity{
		Principal:     Principal{Subject: tok.Subject, Email: c.Email, Name: name, Groups: []string(c.Groups)},
		emailVerified: bool(c.EmailVerified),
		nonce:         tok.Nonce,
	}, nil
}

// allowed applies the allowlists: a verified e-mail address or its domain,
// or one of the groups, must be listed. With no allowlist configured
// everybody of the issuer is allowed only when AllowAnyUser says so;
// otherwise nobody is (CheckPosture refuses that start-up, and this fails
// closed should a caller skip it).
func (a *Auth) allowed(id *identity) bool {
	if len(a.allowEmails)+len(a.allowDomains)+len(a.allowGroups) == 0 {
		return a.cfg.AllowAnyUser
	}
	if email := strings.ToLower(id.Email); email != "" && id.emailVerified {
		if a.allowEmails[email] {
			return true
		}
		if at := strings.LastIndexByte(email, '@'); at >= 0 && a.allowDomains[email[at+1:]] {
			return true
		}
	}
	for _, g := range id.Groups {
		if a.allowGroups[g] {
			return true
		}
	}
	return false
}

// admin reports whether id is one of the admins: a verified e-mail
// address of AdminEmails, or a groups-claim value of AdminGroups.
func (a *Auth) admin(id *identity) bool {
	if email := strings.ToLower(id.Email); email != "" && id.emailVerified && a.adminEmails[email] {
		return true
	}
	for _, g := range id.Groups {
		if a.adminGroups[g] {
			return true
		}
	}
	return false
}

// databaseUnavailable answers 503 with Retry-After when err says the
// database is unreachable, and reports whether it did.
func databaseUnavailable(w http.ResponseWriter, r *http.Request, err error) bool {
	if !errors.Is(err, store.ErrUnavailable) {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(problem.DatabaseRetryAfter))
	problem.Write(w, r, http.StatusServiceUnavailable, problem.Unavailable, problem.DatabaseUnavailable)
	return true
}
