// Package gen holds the code oapi-codegen generates from openapi.yaml: the
// models, the strict net/http server interface and the embedded spec.
// Do not edit *.gen.go by hand: run `make generate`.
package gen

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config config.yaml ../openapi.yaml
