package registry

import "strings"

// Per-user visibility: who sees a repository. The rule is here, next to
// the repository's origin and owner, and package api asks it in the one
// place that looks a repository up for a request (and in its lists).

// Owner is who onboarded a repository through the API: the signed-in
// principal's subject and e-mail. Both are "" for the working repository,
// the config file's mirrors, and a mirror onboarded while auth was off.
type Owner struct {
	Subject, Email string
}

// None reports whether the owner is unknown.
func (o Owner) None() bool { return o.Subject == "" && o.Email == "" }

// Viewer is the caller a repository is shown to.
type Viewer struct {
	// All: visibility does not apply (auth off on a loopback listener,
	// the local posture): every repository is visible to everybody.
	All bool
	// Subject and Email are the signed-in principal's ("" subject:
	// anonymous); EmailVerified is the ID token's email_verified.
	Subject, Email string
	EmailVerified  bool
	// Admin: the principal is one of --admins, who see and manage
	// everything.
	Admin bool
}

// Anonymous reports whether nobody is signed in.
func (v Viewer) Anonymous() bool { return v.Subject == "" }

// owns reports whether v onboarded r: the same subject; for a repository
// stored before owners had a subject (only an e-mail), the same verified
// e-mail address.
func (v Viewer) owns(o Owner) bool {
	if v.Anonymous() || o.None() {
		return false
	}
	if o.Subject != "" {
		return o.Subject == v.Subject
	}
	return v.EmailVerified && v.Email != "" && strings.EqualFold(o.Email, v.Email)
}

// VisibleTo reports whether v may see r. The operator's repositories (the
// working repository and the config file's mirrors) are visible to every
// caller the gate let in, anonymous readers included. A mirror onboarded
// through the API is visible to its owner and to admins; one without an
// owner (onboarded while auth was off) to every signed-in user; never to
// an anonymous caller. Whoever may not see a repository must be answered
// as if it did not exist.
func (r *Repo) VisibleTo(v Viewer) bool {
	switch {
	case v.All, r.Origin != OriginAPI:
		return true
	case v.Anonymous():
		return false
	case v.Admin, r.AddedBy.None():
		return true
	}
	return v.owns(r.AddedBy)
}

// OwnerShownTo reports whether v may see who onboarded r: its owner and
// admins, when signed in; never an anonymous caller.
func (r *Repo) OwnerShownTo(v Viewer) bool {
	if r.AddedBy.None() || v.Anonymous() {
		return false
	}
	return v.Admin || v.owns(r.AddedBy)
}
