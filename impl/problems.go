package impl

import (
	"context"
	"net/http"
	"reflect"
	"sync"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/problem"
)

// stampProblems is a strict-handler middleware that puts the instance (the
// request's path) and the request id in the problem of a handler's error
// response (handlers build problems with problem.New, without the
// request); problem.Write does the same for the middleware's answers.
func stampProblems(f gen.StrictHandlerFunc, _ string) gen.StrictHandlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, req any) (any, error) {
		resp, err := f(ctx, w, r, req)
		if err != nil || resp == nil {
			return resp, err
		}
		return withProblem(r, resp), nil
	}
}

var (
	problemType  = reflect.TypeFor[gen.Problem]()
	requestIDIdx = func() []int {
		f, ok := problemType.FieldByName("RequestId")
		if !ok {
			panic("gen.Problem has no RequestId")
		}
		return f.Index
	}()
	// problemPaths caches, per response type, the field index path of its
	// problem's RequestId (nil: the response holds no problem).
	problemPaths sync.Map
)

// withProblem returns resp with its problem stamped from r (instance and
// requestId, problem.Stamp), or resp itself when it holds no problem. Generated error responses embed
// gen.Problem (as a named type of the same structure) directly or as Body.
func withProblem(r *http.Request, resp any) any {
	v := reflect.ValueOf(resp)
	path, ok := problemPaths.Load(v.Type())
	if !ok {
		path = findProblem(v.Type(), nil, 0)
		problemPaths.Store(v.Type(), path)
	}
	idx, _ := path.([]int)
	if idx == nil {
		return resp
	}
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	p := c.FieldByIndex(idx[:len(idx)-len(requestIDIdx)])
	stamped := problem.Stamp(r, p.Convert(problemType).Interface().(gen.Problem))
	p.Set(reflect.ValueOf(stamped).Convert(p.Type()))
	return c.Interface()
}

// findProblem returns the index path from t to the RequestId of a struct
// of gen.Problem's structure within t (at most three fields deep), or nil.
func findProblem(t reflect.Type, at []int, depth int) []int {
	if t.Kind() != reflect.Struct || depth > 3 {
		return nil
	}
	if t.ConvertibleTo(problemType) {
		return append(append([]int{}, at...), requestIDIdx...)
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if p := findProblem(f.Type, append(append([]int{}, at...), i), depth+1); p != nil {
			return p
		}
	}
	return nil
}
