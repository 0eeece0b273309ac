package registry

import (
	"testing"

	"github.com/stackd/stackd/impl/mirror"
)

// TestVisibleTo is the visibility rule, case by case: the operator's
// repositories are everybody's, an onboarded one its owner's and the
// admins', an ownerless one every signed-in user's, and an anonymous
// caller sees no onboarded one and no owner.
func TestVisibleTo(t *testing.T) {
	root, err := mirror.NewRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(origin Origin, owner Owner) *Repo {
		return NewMirror(root, MirrorSpec{ID: "r", Config: mirror.Config{URL: "https://example.com/r.git"}, Origin: origin, AddedBy: owner})
	}
	ann := Owner{Subject: "sub-ann", Email: "ann@example.com"}
	legacy := Owner{Email: "ann@example.com"} // stored before owners had subjects
	var (
		local     = Viewer{All: true}
		anonymous = Viewer{}
		annV      = Viewer{Subject: "sub-ann", Email: "ann@example.com", EmailVerified: true}
		annUnver  = Viewer{Subject: "sub-ann2", Email: "ann@example.com"}
		annOther  = Viewer{Subject: "sub-ann2", Email: "ann@example.com", EmailVerified: true}
		bob       = Viewer{Subject: "sub-bob", Email: "bob@example.com", EmailVerified: true}
		admin     = Viewer{Subject: "sub-root", Admin: true}
	)
	cases := []struct {
		name              string
		repo              *Repo
		viewer            Viewer
		visible, showsOwn bool
	}{
		{"config repo, anonymous", mk(OriginConfig, Owner{}), anonymous, true, false},
		{"config repo, user", mk(OriginConfig, Owner{}), bob, true, false},
		{"api repo, owner", mk(OriginAPI, ann), annV, true, true},
		{"api repo, other user", mk(OriginAPI, ann), bob, false, false},
		{"api repo, same e-mail, other subject", mk(OriginAPI, ann), annOther, false, false},
		{"api repo, admin", mk(OriginAPI, ann), admin, true, true},
		{"api repo, anonymous", mk(OriginAPI, ann), anonymous, false, false},
		{"api repo, local posture", mk(OriginAPI, ann), local, true, false},
		{"legacy api repo, verified e-mail", mk(OriginAPI, legacy), annOther, true, true},
		{"legacy api repo, unverified e-mail", mk(OriginAPI, legacy), annUnver, false, false},
		{"ownerless api repo, user", mk(OriginAPI, Owner{}), bob, true, false},
		{"ownerless api repo, anonymous", mk(OriginAPI, Owner{}), anonymous, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.repo.VisibleTo(tc.viewer); got != tc.visible {
				t.Errorf("VisibleTo = %v, want %v", got, tc.visible)
			}
			if got := tc.repo.OwnerShownTo(tc.viewer); got != tc.showsOwn {
				t.Errorf("OwnerShownTo = %v, want %v", got, tc.showsOwn)
			}
		})
	}
}
