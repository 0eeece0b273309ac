package auth

import "context"

// WithPrincipal returns ctx carrying p, as the gate does.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}
