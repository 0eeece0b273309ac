package gen

import _ "embed"

// SpecYAML is openapi.yaml exactly as written (`make generate` copies it
// here; `make check-generated` fails when the copy is stale).
//
//go:embed openapi.yaml
var SpecYAML []byte
