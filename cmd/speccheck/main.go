// Command speccheck loads an OpenAPI document with kin-openapi and validates
// it, for `make lint`. It also checks the project's own conventions: every
// operation has an operationId and a tag, and every operation declares a 500
// problem response.
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

func check(path string) error {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return fmt.Errorf("validate %s: %w", path, err)
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
			if op.Responses.Value("500") == nil {
				return fmt.Errorf("%s: no 500 response", where)
			}
		}
	}
	return nil
}
