package repos

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"

	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/webhook"
)

// remote says how a mirror reaches its upstream.
type remote struct {
	id, url, trunk, fullName string
	// auth is nil for onboarded mirrors: operator credentials belong to
	// the repositories of the config file only.
	auth mirror.Credentials
	// onboarded: added through the API (stored), so restricted to
	// Remotes.AllowedHosts; else declared in the config file.
	onboarded bool
	// addedBy is who onboarded it (onboarded mirrors only).
	addedBy registry.Owner
}

// newMirror checks the upstream (mirror.Config.Check: URL, private
// addresses, allowed hosts, ssh key) and builds the repository: the one
// place every mirror is made, whether configured, restored, onboarded or
// adopted.
func (s *Set) newMirror(rm remote) (*registry.Repo, error) {
	lim := s.remotes.Limits
	mc := mirror.Config{
		URL:          rm.url,
		Auth:         rm.auth,
		AllowLocal:   s.remotes.AllowLocal,
		AllowPrivate: s.remotes.AllowPrivate,
		RootCAs:      s.remotes.RootCAs,
		Resolver:     s.remotes.Resolver,
		Log:          s.log.With("repo", rm.id),
		Transfers:    s.metrics.Transfers(rm.id),
		Limits: mirror.Limits{
			MaxPackSize: lim.PackSize, MaxObjects: lim.Objects, MaxInflated: lim.Inflated, MaxMetaSize: lim.CommitSize,
			MaxDeltaSize: lim.DeltaSize, MaxRefs: lim.Refs, MaxRefBytes: lim.RefBytes,
		},
	}
	origin := registry.OriginConfig
	if rm.onboarded {
		mc.AllowedHosts = s.remotes.AllowedHosts
		origin = registry.OriginAPI
	}
	if err := mc.Check(); err != nil {
		return nil, err
	}
	fullName := rm.fullName
	if fullName == "" {
		fullName = webhook.FullNameFromURL(rm.url)
		if strings.ContainsFunc(fullName, unicode.IsControl) {
			// Derived from a URL whose path decodes to control
			// characters: no name to match webhooks by, rather than
			// one that cannot be stored or shown.
			fullName = ""
		}
	}
	return registry.NewMirror(s.mirrors, registry.MirrorSpec{
		ID:       rm.id,
		Config:   mc,
		FullName: webhook.NormalizeFullName(fullName),
		Trunk:    rm.trunk,
		Origin:   origin,
		AddedBy:  rm.addedBy,
		Shared:   s.replicas != nil,
	}), nil
}

// AddConfigured serves a mirror declared in the config file, with its
// credentials.
func (s *Set) AddConfigured(rc config.RepoConfig) error {
	var auth mirror.Credentials
	if rc.SSHKey != "" {
		key, err := mirror.SSHKeyFile(rc.SSHKey)
		if err != nil {
			return fmt.Errorf("repos %s: sshKey: %w", rc.ID, err)
		}
		auth = key
	} else {
		auth = credentials(rc.ID, rc.Username, rc.Password)
	}
	r, err := s.newMirror(remote{id: rc.ID, url: rc.URL, trunk: rc.Trunk, fullName: rc.FullName, auth: auth})
	if errors.Is(err, mirror.ErrSSHKey) {
		return fmt.Errorf("repos %s: %w: set sshKey to the path of a private key", rc.ID, err)
	}
	if errors.Is(err, mirror.ErrForbiddenAddress) || errors.Is(err, mirror.ErrPlainHTTP) {
		return fmt.Errorf("repos %s: %w (--allow-private-remotes permits it)", rc.ID, err)
	}
	if errors.Is(err, mirror.ErrLocalRemote) {
		return fmt.Errorf("repos %s: %w (--allow-local-remotes permits it)", rc.ID, err)
	}
	if err != nil {
		return fmt.Errorf("repos %s: %w", rc.ID, err)
	}
	if err := s.reg.Add(r); err != nil {
		return fmt.Errorf("repos %s: %w", rc.ID, err)
	}
	s.refresh.Add(r)
	return nil
}

// credentials are the https credentials of a repository declared in the
// config file: STACKD_REPO_<ID>_USERNAME / _PASSWORD, else the file's
// username/password. Only configured repositories ever get credentials
// (an onboarded mirror never does, whatever its id), and the mirror sends
// them only to the origin of the configured URL.
func credentials(id, user, pass string) mirror.Credentials {
	key := strings.ToUpper(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, id))
	if v := os.Getenv("STACKD_REPO_" + key + "_USERNAME"); v != "" {
		user = v
	}
	if v := os.Getenv("STACKD_REPO_" + key + "_PASSWORD"); v != "" {
		pass = v
	}
	if user == "" && pass == "" {
		return nil
	}
	if user == "" {
		user = "x-access-token"
	}
	return mirror.BasicAuth(user, pass)
}
