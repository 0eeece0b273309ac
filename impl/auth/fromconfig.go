package auth

import "github.com/stackd/stackd/impl/config"

// FromConfig is the auth package's view of a validated configuration.
func FromConfig(cfg config.Config) Config {
	return Config{
		Mode:           Mode(cfg.Auth),
		ReadOnly:       cfg.ReadOnly,
		PublicReads:    cfg.PublicReads,
		AllowAnyUser:   cfg.AllowAnyUser,
		Loopback:       cfg.Loopback(),
		Issuer:         cfg.OIDCIssuer,
		ClientID:       cfg.OIDCClientID,
		ClientSecret:   cfg.OIDCClientSecret,
		BaseURL:        cfg.BaseURL,
		ExtraAudiences: cfg.OIDCExtraAudiences,
		AllowedEmails:  cfg.AllowedEmails,
		AllowedDomains: cfg.AllowedDomains,
		AllowedGroups:  cfg.AllowedGroups,
		CORSOrigins:    cfg.CORSOrigins,
		AdminEmails:    cfg.AdminEmails(),
		AdminGroups:    cfg.AdminGroups(),
		TrustedProxies: cfg.Proxies(),
		Rate:           rateLimit(cfg.RateLimit),
		SyncRate:       rateLimit(cfg.SyncRateLimit),
		FailRate:       rateLimit(cfg.AuthFailureRateLimit),

		IPv6ClientPrefix: cfg.IPv6ClientPrefix,
		AuditMaxAge:      noneIfZero(cfg.AuditMaxAge),
		AuditMaxEntries:  int(noneIfZero(int64(cfg.AuditMaxEntries))),
	}
}

// noneIfZero turns the config's "0: no limit" into auth's (negative; 0
// here is the default).
func noneIfZero[T ~int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// rateLimit converts a validated rate setting ("" or invalid: the
// default).
func rateLimit(v string) RateLimit {
	perSecond, burst, _, err := config.ParseRate(v)
	if err != nil {
		return RateLimit{}
	}
	return RateLimit{PerSecond: perSecond, Burst: burst}
}
