// Package authtest runs a real OIDC provider for tests: mockoidc, served
// over HTTP on loopback.
package authtest

import (
	"net"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
)

// StartIDP starts a mockoidc provider on 127.0.0.1 and stops it when the
// test ends.
func StartIDP(t testing.TB) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Compute the key id now, before the server's goroutines read it.
	if _, err := m.Keypair.KeyID(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}
