package api

import (
	"context"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/auth"
)

// Tag auth: the caller's identity (the sign-in routes are auth's own).

// GetMe returns the caller. The gate has already refused an anonymous
// caller when auth is on, so anonymous here means auth is off.
func (s *Server) GetMe(ctx context.Context, _ gen.GetMeRequestObject) (gen.GetMeResponseObject, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return gen.GetMe200JSONResponse{Subject: "anonymous", AuthenticatedBy: gen.MeAuthenticatedByNone, Groups: []string{}}, nil
	}
	me := gen.Me{Subject: p.Subject, AuthenticatedBy: gen.MeAuthenticatedBy(p.Method), Groups: append([]string{}, p.Groups...)}
	me.Email = optional(p.Email)
	me.Name = optional(p.Name)
	admin := p.Admin
	me.Admin = &admin
	return gen.GetMe200JSONResponse(me), nil
}
