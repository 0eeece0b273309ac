//go:build tools

// Package tools pins the tools the Makefile runs: the code generator of
// `make generate` and the static analysis of `make lint`.
package tools

import (
	_ "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen"
	_ "honnef.co/go/tools/cmd/staticcheck"
)
