package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckPosture(t *testing.T) {
	oidc := func(c Config) Config {
		c.Mode, c.Issuer, c.ClientID, c.BaseURL = ModeOIDC, "https://idp.example", "stackd", "https://stackd.example"
		return c
	}
	tests := []struct {
		loopback bool
		cfg      Config
		wantErr  bool
		warn     []string // substrings, in order
	}{
		// loopback × mode × read-only
		{true, Config{}, false, nil},
		{true, Config{Mode: ModeNone}, false, nil},
		{true, Config{Mode: ModeNone, ReadOnly: true}, false, nil},
		{true, oidc(Config{AllowedEmails: []string{"a@x.example"}}), false, nil},
		{true, oidc(Config{AllowedGroups: []string{"g"}, ReadOnly: true}), false, nil},
		{false, Config{}, true, nil},
		{false, Config{Mode: ModeNone}, true, nil},
		{false, Config{Mode: ModeNone, ReadOnly: true}, false, nil},
		{false, oidc(Config{AllowedDomains: []string{"example.com"}}), false, nil},
		{false, oidc(Config{AllowedDomains: []string{"example.com"}, ReadOnly: true, PublicReads: true}), false, nil},
		// oidc needs an allowlist or --allow-any-user, on every address
		{true, oidc(Config{}), true, nil},
		{false, oidc(Config{}), true, nil},
		{false, oidc(Config{ReadOnly: true}), true, nil},
		{true, oidc(Config{AllowAnyUser: true}), false, nil},
		{false, oidc(Config{AllowAnyUser: true}), false, []string{"--allow-any-user: any user of the issuer may sign in"}},
		{false, oidc(Config{AllowAnyUser: true, AllowedEmails: []string{"a@x.example"}}), true, nil},
		// flags without effect with auth off
		{true, Config{PublicReads: true}, false, []string{"--public-reads has no effect"}},
		{true, Config{AllowAnyUser: true}, false, []string{"--allow-any-user has no effect"}},
		// weak or broken settings
		{false, func() Config {
			c := oidc(Config{AllowedGroups: []string{"g"}})
			c.BaseURL = "http://stackd.example"
			return c
		}(), false, []string{"not https"}},
		{true, Config{Mode: ModeOIDC}, true, nil},
		{true, Config{Mode: "ldap"}, true, nil},
		{true, Config{CORSOrigins: []string{"*"}}, true, nil},
		{true, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, false, []string{"trusts every address"}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d/loopback=%v/%s/ro=%v", i, tt.loopback, tt.cfg.Mode, tt.cfg.ReadOnly), func(t *testing.T) {
			warns, err := CheckPosture(tt.loopback, tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrPosture) {
					t.Errorf("error does not wrap ErrPosture: %v", err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if len(warns) != len(tt.warn) {
				t.Fatalf("warnings %q, want %q", warns, tt.warn)
			}
			for j, w := range tt.warn {
				if !strings.Contains(warns[j], w) {
					t.Errorf("warning %q lacks %q", warns[j], w)
				}
			}
		})
	}
	_, err := CheckPosture(false, Config{})
	if err == nil || !strings.Contains(err.Error(), "--read-only") || !strings.Contains(err.Error(), "oidc") {
		t.Errorf("refusal does not name the way out: %v", err)
	}
	_, err = CheckPosture(true, oidc(Config{}))
	for _, way := range []string{"--allowed-emails", "--allowed-domains", "--allowed-groups", "--allow-any-user"} {
		if err == nil || !strings.Contains(err.Error(), way) {
			t.Errorf("refusal without an allowlist does not name %s: %v", way, err)
		}
	}
}
