// Package webhook holds the pure, HTTP-free pieces of stackd's GitHub push
// webhook handling: signature verification (X-Hub-Signature-256), payload
// extraction for both GitHub content types, push payload parsing, mapping
// between remote URLs and "owner/name" repository names, and de-duplication
// of deliveries by their X-GitHub-Delivery id.
//
// A handler is expected to: read at most MaxBody bytes of the body, call
// Verify on the raw body, drop repeated deliveries with a Deduper, then call
// Payload and ParsePush, and match Push.FullName (through NormalizeFullName)
// against FullNameFromURL of each configured repository's remote.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
)

// Header and event names used by GitHub webhook deliveries.
const (
	HeaderSignature = "X-Hub-Signature-256"
	HeaderDelivery  = "X-GitHub-Delivery"
	HeaderEvent     = "X-GitHub-Event"

	EventPush = "push"
	EventPing = "ping"
)

// MaxBody is the largest webhook body accepted (GitHub caps payloads at
// 25 MB, but push payloads for stackd's purposes are far smaller).
const MaxBody = 1 << 20 // 1 MiB

var (
	// ErrBadSignature reports a missing, malformed or wrong
	// X-Hub-Signature-256 header.
	ErrBadSignature = errors.New("webhook: bad signature")
	// ErrNoSecret reports that Verify was called with an empty secret; an
	// unconfigured secret must never make every delivery pass.
	ErrNoSecret = errors.New("webhook: no secret configured")
	// ErrBadPayload reports a body that is not a usable webhook payload:
	// unknown content type, missing form field, too large, or invalid JSON.
	ErrBadPayload = errors.New("webhook: bad payload")
)

const sigPrefix = "sha256="

// Verify checks header, the value of X-Hub-Signature-256 ("sha256=<hex>"),
// against the HMAC-SHA256 of the raw body keyed with secret. The comparison is
// constant time. It returns an error wrapping ErrNoSecret when secret is empty
// and one wrapping ErrBadSignature when the header is missing, malformed or
// does not match.
func Verify(secret, body []byte, header string) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	if header == "" {
		return fmt.Errorf("%w: missing %s header", ErrBadSignature, HeaderSignature)
	}
	hexSig, ok := strings.CutPrefix(header, sigPrefix)
	if !ok {
		return fmt.Errorf("%w: header lacks %q prefix", ErrBadSignature, sigPrefix)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return fmt.Errorf("%w: malformed hex: %w", ErrBadSignature, err)
	}
	if len(got) != sha256.Size {
		return fmt.Errorf("%w: digest is %d bytes, want %d", ErrBadSignature, len(got), sha256.Size)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%w: mismatch", ErrBadSignature)
	}
	return nil
}

// WellFormed reports whether header, a value of X-Hub-Signature-256, has
// the form of a signature ("sha256=" and 64 hex digits), the MAC not
// checked. A request without a well-formed header can never verify, so it
// can be refused before its body is read.
func WellFormed(header string) bool {
	hexSig, ok := strings.CutPrefix(header, sigPrefix)
	if !ok || len(hexSig) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(hexSig)
	return err == nil
}

// Sign returns the X-Hub-Signature-256 header value GitHub would send for
// body with secret. It is the inverse of Verify, for tests and tooling.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return sigPrefix + hex.EncodeToString(mac.Sum(nil))
}

// Payload returns the JSON payload carried by body according to contentType:
// the body itself for application/json, and the "payload" form field for
// application/x-www-form-urlencoded. Media-type parameters (charset) are
// ignored. Anything else, an empty payload or a body over MaxBody yields an
// error wrapping ErrBadPayload. The signature covers the raw body, so Verify
// must run on body before Payload. Error texts never repeat the content
// type or the body: they may reach a client.
func Payload(contentType string, body []byte) ([]byte, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrBadPayload, len(body), MaxBody)
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("%w: the content type is not a valid media type", ErrBadPayload)
	}
	var p []byte
	switch mt {
	case "application/json":
		p = body
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: the form body is not valid URL encoding", ErrBadPayload)
		}
		p = []byte(form.Get("payload"))
	default:
		return nil, fmt.Errorf("%w: unsupported content type (want application/json or application/x-www-form-urlencoded)", ErrBadPayload)
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrBadPayload)
	}
	return p, nil
}

// Push is the part of a GitHub push event payload stackd uses.
type Push struct {
	// FullName is repository.full_name as sent ("Owner/Name"); compare it
	// through NormalizeFullName.
	FullName string
	// Ref is the full ref pushed, e.g. "refs/heads/main" or "refs/tags/v1".
	Ref string
	// Before and After are the object ids before and after the push; After
	// is all zeros when the ref was deleted.
	Before, After string
	Deleted       bool
	Forced        bool
	// CloneURL and HTMLURL are repository.clone_url and repository.html_url.
	CloneURL, HTMLURL string
}

// Branch returns the branch name when Ref is under refs/heads/, and "" and
// false otherwise (tags, notes, ...).
func (p Push) Branch() (string, bool) {
	b, ok := strings.CutPrefix(p.Ref, "refs/heads/")
	if !ok || b == "" {
		return "", false
	}
	return b, true
}

type pushJSON struct {
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	Forced     bool   `json:"forced"`
	Repository *struct {
		FullName string `json:"full_name"`
		CloneURL string `json:"clone_url"`
		HTMLURL  string `json:"html_url"`
	} `json:"repository"`
}

// ParsePush decodes a push event payload. Errors wrap ErrBadPayload; a
// payload without repository.full_name or ref is rejected. Error texts
// never repeat the payload (see jsonError).
func ParsePush(payload []byte) (Push, error) {
	var j pushJSON
	if err := json.Unmarshal(payload, &j); err != nil {
		return Push{}, fmt.Errorf("%w: %s", ErrBadPayload, jsonError(err))
	}
	if j.Repository == nil || strings.TrimSpace(j.Repository.FullName) == "" {
		return Push{}, fmt.Errorf("%w: missing repository.full_name", ErrBadPayload)
	}
	if j.Ref == "" {
		return Push{}, fmt.Errorf("%w: missing ref", ErrBadPayload)
	}
	return Push{
		FullName: j.Repository.FullName,
		Ref:      j.Ref,
		Before:   j.Before,
		After:    j.After,
		Deleted:  j.Deleted,
		Forced:   j.Forced,
		CloneURL: j.Repository.CloneURL,
		HTMLURL:  j.Repository.HTMLURL,
	}, nil
}

// jsonError describes a decoding error by position or by field (a name of
// pushJSON's, not of the payload), without quoting the payload.
func jsonError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("the payload is not valid JSON (syntax error at byte %d)", syn.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("payload field %s has the wrong type", typ.Field)
	case errors.As(err, &typ):
		return "the payload is not a JSON object"
	default:
		return "the payload is not valid JSON"
	}
}

// NormalizeFullName returns s trimmed of surrounding white space and
// lower-cased, the form in which "owner/name" repository names compare
// (GitHub names are case-insensitive).
func NormalizeFullName(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// FullNameFromURL returns "owner/name" for a git remote URL: the last two path
// segments, without a ".git" suffix, lower-cased. It understands URLs with a
// scheme (https://, ssh://, git://, file://), scp-like remotes
// (git@github.com:Owner/Name.git) and plain paths. It returns "" when the
// remote has fewer than two path segments.
func FullNameFromURL(remote string) string {
	s := strings.TrimSpace(remote)
	var path string
	switch {
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil {
			return ""
		}
		path = u.Path
	default:
		// scp-like syntax: [user@]host:path, where no slash precedes the
		// first colon. Otherwise treat s as a path.
		colon := strings.IndexByte(s, ':')
		if colon >= 0 && !strings.Contains(s[:colon], "/") {
			path = s[colon+1:]
		} else {
			path = s
		}
	}
	var segs []string
	for seg := range strings.SplitSeq(path, "/") {
		if seg != "" {
			segs = append(segs, seg)
		}
	}
	if len(segs) < 2 {
		return ""
	}
	owner := segs[len(segs)-2]
	name := strings.TrimSuffix(strings.ToLower(segs[len(segs)-1]), ".git")
	if name == "" {
		return ""
	}
	return strings.ToLower(owner) + "/" + name
}
