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
		{true, oidc(Config{}), false, nil},
		{true, oidc(Config{ReadOnly: true}), false, nil},
		{false, Config{}, true, nil},
		{false, Config{Mode: ModeNone}, true, nil},
		{false, Config{Mode: ModeNone, ReadOnly: true}, false, nil},
		{false, oidc(Config{}), false, []string{"any user of the issuer may sign in"}},
		{false, oidc(Config{ReadOnly: true}), false, []string{"any user of the issuer may sign in"}},
		{false, oidc(Config{AllowedDomains: []string{"example.com"}}), false, nil},
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
}
