package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepositorySpecPasses: openapi.yaml itself follows every rule.
func TestRepositorySpecPasses(t *testing.T) {
	if err := check("../../openapi.yaml"); err != nil {
		t.Fatal(err)
	}
}

// TestRulesCatchMistakes: each rule fails on a copy of openapi.yaml with
// one mistake of its kind, and says where.
func TestRulesCatchMistakes(t *testing.T) {
	raw, err := os.ReadFile("../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := string(raw)
	for _, tc := range []struct {
		name     string
		old, new string
		want     string
	}{
		{
			"the old absolute type in an example",
			"                type: /problems/not-found\n",
			"                type: https://stackd.dev/problems/not-found\n",
			"type https://stackd.dev/problems/not-found is not /problems/<slug>",
		},
		{
			"the Problem schema's example type",
			"          example: /problems/not-found\n",
			"          example: https://stackd.dev/problems/not-found\n",
			"Problem schema's type example",
		},
		{
			"an example of another status",
			"                title: Gateway Timeout\n                status: 504\n",
			"                title: Gateway Timeout\n                status: 502\n",
			"status 502, want 504",
		},
		{
			"an example without an instance",
			"                instance: /readyz\n",
			"",
			"instance <nil> is not a request path",
		},
		{
			"a problem response without examples",
			"          examples:\n            conflict:\n              value:\n                type: /problems/conflict\n                title: Conflict\n                status: 409\n                detail: 'a repository with this id already exists: \"api\"'\n                instance: /api/v1/repos\n                requestId: 4f6c0e1b9a2d4c7e8f3a5b6c7d8e9f01\n",
			"",
			"POST /api/v1/repos: 409: no example",
		},
		{
			"an operation without 413",
			"      operationId: getHealth\n",
			"      operationId: getHealth\n      x-drop-413: true\n",
			"GET /healthz: no 413 response",
		},
		{
			"an operation with parameters without 400",
			"      operationId: listSyncs\n",
			"      operationId: listSyncs\n      x-drop-400: true\n",
			"GET /api/v1/repos/{repoID}/syncs: no 400 response",
		},
		{
			"an operation with a body without 415",
			"      operationId: createRepo\n",
			"      operationId: createRepo\n      x-drop-415: true\n",
			"POST /api/v1/repos: no 415 response",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(spec, tc.old) {
				t.Fatalf("openapi.yaml no longer contains %q", tc.old)
			}
			broken := strings.Replace(spec, tc.old, tc.new, 1)
			broken = dropResponses(t, broken)
			path := filepath.Join(t.TempDir(), "openapi.yaml")
			if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
				t.Fatal(err)
			}
			err := check(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// dropResponses removes, from the operation marked `x-drop-NNN: true`, its
// NNN response (the marker goes too).
func dropResponses(t *testing.T, spec string) string {
	t.Helper()
	lines := strings.Split(spec, "\n")
	var out []string
	drop := ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "      x-drop-") {
			drop = strings.TrimSuffix(strings.TrimPrefix(l, "      x-drop-"), ": true")
			continue
		}
		if drop != "" && l == `        "`+drop+`":` {
			i++ // and its $ref line
			drop = ""
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
