// Command speccheck loads an OpenAPI document with kin-openapi and validates
// it, for `make lint`. It also checks the project's own conventions: every
// operation has an operationId and a tag, and every operation declares a 500
// problem response and the 421 of the loopback Host check; the document
// declares a default x-stackd-max-body, and every operation that takes a
// body declares its own with 413 and 408.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/getkin/kin-openapi/openapi3"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: speccheck openapi.yaml")
		os.Exit(2)
	}
	if err := check(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "speccheck:", err)
		os.Exit(1)
	}
}

// maxBody is the body limit extension (impl/validate.MaxBodyExtension).
const maxBody = "x-stackd-max-body"

func check(path string) error {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return fmt.Errorf("validate %s: %w", path, err)
	}
	if _, ok := doc.Extensions[maxBody]; !ok {
		return fmt.Errorf("%s: no default %s at the root", path, maxBody)
	}
	for p, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + p
			if op.OperationID == "" {
				return fmt.Errorf("%s: no operationId", where)
			}
			if len(op.Tags) == 0 {
				return fmt.Errorf("%s: no tag", where)
			}
			for _, code := range []string{"500", "421"} {
				if op.Responses.Value(code) == nil {
					return fmt.Errorf("%s: no %s response", where, code)
				}
			}
			if op.RequestBody != nil {
				if _, ok := op.Extensions[maxBody]; !ok {
					return fmt.Errorf("%s: takes a body but declares no %s", where, maxBody)
				}
				for _, code := range []string{"413", "408"} {
					if op.Responses.Value(code) == nil {
						return fmt.Errorf("%s: takes a body but declares no %s response", where, code)
					}
				}
			}
		}
	}
	return nil
}
