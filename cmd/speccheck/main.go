// Command speccheck loads an OpenAPI document with kin-openapi and validates
// it, for `make lint`. It also checks the project's own conventions:
//
//   - every operation has an operationId and a tag;
//   - the document declares a default x-stackd-max-body, and every
//     operation that takes a body declares its own;
//   - every operation declares the statuses the server's middleware can send
//     on any request: 500, the 421 of the loopback Host check, 413 and 408
//     (every operation has a body limit, 4 KiB when it takes no body), 429
//     (rate limits) and 403 (an account outside the allowlists, CSRF), and
//     401 (bad credentials are refused everywhere but on sign-out);
//   - an operation with parameters declares 400, one with path parameters
//     404, one that takes a body 400 and 415;
//   - every error response (4xx, 5xx) is application/problem+json with the
//     Problem schema and at least one example, and each example is a problem
//     of that status: type /problems/<slug>, the status's title, an
//     instance path; the Problem schema's own example type is one too.
//
// impl's TestEveryAnswerDeclared checks the other way: that what the server
// really answers is declared, with an example of its type.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

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

// signOut is the operation the access gate lets through bad credentials
// (impl/auth.OpLogout): it never answers 401.
const signOut = "authLogout"

// problemType is what a problem example's type must look like.
var problemType = regexp.MustCompile(`^/problems/[a-z]+(-[a-z]+)*$`)

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
	var errs []error
	if err := checkProblemSchema(doc); err != nil {
		errs = append(errs, err)
	}
	paths := doc.Paths.Map()
	keys := make([]string, 0, len(paths))
	for p := range paths {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	for _, p := range keys {
		item := paths[p]
		ops := item.Operations()
		methods := make([]string, 0, len(ops))
		for m := range ops {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		for _, method := range methods {
			if err := checkOperation(method+" "+p, item, ops[method]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func checkOperation(where string, item *openapi3.PathItem, op *openapi3.Operation) error {
	if op.OperationID == "" {
		return fmt.Errorf("%s: no operationId", where)
	}
	if len(op.Tags) == 0 {
		return fmt.Errorf("%s: no tag", where)
	}
	var errs []error
	want := []string{"500", "421", "413", "408", "429", "403"}
	if op.OperationID != signOut {
		want = append(want, "401")
	}
	params := append(slices.Clone(item.Parameters), op.Parameters...)
	if len(params) > 0 {
		want = append(want, "400")
	}
	for _, p := range params {
		if p.Value != nil && p.Value.In == openapi3.ParameterInPath {
			want = append(want, "404")
			break
		}
	}
	if op.RequestBody != nil {
		if _, ok := op.Extensions[maxBody]; !ok {
			errs = append(errs, fmt.Errorf("%s: takes a body but declares no %s", where, maxBody))
		}
		want = append(want, "400", "415")
	}
	for _, code := range want {
		if op.Responses.Value(code) == nil {
			errs = append(errs, fmt.Errorf("%s: no %s response", where, code))
		}
	}
	codes := make([]string, 0, op.Responses.Len())
	for code := range op.Responses.Map() {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	for _, code := range codes {
		n, err := strconv.Atoi(code)
		if err != nil || n < 400 {
			continue
		}
		if err := checkProblemResponse(n, op.Responses.Value(code)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, code, err))
		}
	}
	return errors.Join(errs...)
}

// checkProblemResponse checks an error response: problem+json, the Problem
// schema, and examples that are problems of that status.
func checkProblemResponse(status int, ref *openapi3.ResponseRef) error {
	if ref == nil || ref.Value == nil {
		return errors.New("empty response")
	}
	mt := ref.Value.Content.Get("application/problem+json")
	if mt == nil || len(ref.Value.Content) != 1 {
		return errors.New("not (only) application/problem+json")
	}
	if mt.Schema == nil || !strings.HasSuffix(mt.Schema.Ref, "/schemas/Problem") {
		return errors.New("schema is not the Problem schema")
	}
	if len(mt.Examples) == 0 {
		return errors.New("no example (Swagger UI would show the schema's, of another status)")
	}
	names := make([]string, 0, len(mt.Examples))
	for name := range mt.Examples {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ex := mt.Examples[name]
		if ex == nil || ex.Value == nil {
			return fmt.Errorf("example %s is empty", name)
		}
		v, ok := ex.Value.Value.(map[string]any)
		if !ok {
			return fmt.Errorf("example %s is not an object", name)
		}
		if err := checkProblemValue(status, v); err != nil {
			return fmt.Errorf("example %s: %w", name, err)
		}
	}
	return nil
}

func checkProblemValue(status int, v map[string]any) error {
	typ, _ := v["type"].(string)
	if !problemType.MatchString(typ) {
		return fmt.Errorf("type %v is not /problems/<slug> (what the server sends)", v["type"])
	}
	if n, ok := number(v["status"]); !ok || n != status {
		return fmt.Errorf("status %v, want %d", v["status"], status)
	}
	if title, _ := v["title"].(string); title != http.StatusText(status) {
		return fmt.Errorf("title %v, want %q", v["title"], http.StatusText(status))
	}
	if inst, _ := v["instance"].(string); !strings.HasPrefix(inst, "/") {
		return fmt.Errorf("instance %v is not a request path (the server always sets it)", v["instance"])
	}
	return nil
}

func number(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}

// checkProblemSchema checks the Problem schema's example type: Swagger UI
// shows it where a response has no example of its own.
func checkProblemSchema(doc *openapi3.T) error {
	if doc.Components == nil || doc.Components.Schemas["Problem"] == nil || doc.Components.Schemas["Problem"].Value == nil {
		return errors.New("no Problem schema")
	}
	typ := doc.Components.Schemas["Problem"].Value.Properties["type"]
	if typ == nil || typ.Value == nil {
		return errors.New("the Problem schema has no type")
	}
	if ex, ok := typ.Value.Example.(string); !ok || !problemType.MatchString(ex) {
		return fmt.Errorf("the Problem schema's type example %v is not /problems/<slug>", typ.Value.Example)
	}
	return nil
}
