package webhook

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/stackd/stackd/gen"
)

var fullNameCases = []struct {
	in     string
	reason string // "" = valid
}{
	{"acme/api", ""},
	{"Acme-Corp/My.Repo_2", ""},
	{"a/b", ""},
	{"user_emu/x", ""},
	{"0/.github", ""},
	{strings.Repeat("o", 39) + "/" + strings.Repeat("n", 100), ""},
	{"", "it is empty"},
	{strings.Repeat("o", 40) + "/" + strings.Repeat("n", 100), "it is longer than 140 bytes"},
	{"acme/a\x00pi", "it contains a control character"},
	{"acme/api\n", "it contains a control character"},
	{"acme/a\u0085", "it contains a control character"},
	{"acme", "it must be an owner and a name separated by one '/'"},
	{"acme/api/x", "it must be an owner and a name separated by one '/'"},
	{"/api", "the owner must be 1 to 39 characters"},
	{strings.Repeat("o", 40) + "/x", "the owner must be 1 to 39 characters"},
	{"-acme/api", "the owner must start with a letter or digit"},
	{"_acme/api", "the owner must start with a letter or digit"},
	{"ac.me/api", "the owner may only contain ASCII letters, digits, '-' and '_'"},
	{"acmé/api", "the owner may only contain ASCII letters, digits, '-' and '_'"},
	{" acme/api", "the owner must start with a letter or digit"},
	{"acme/", "the name must be 1 to 100 characters"},
	{"a/" + strings.Repeat("n", 101), "the name must be 1 to 100 characters"},
	{"acme/a pi", "the name may only contain ASCII letters, digits, '.', '-' and '_'"},
	{"acme/a\u202epi", "the name may only contain ASCII letters, digits, '.', '-' and '_'"},
	{"acme/.", `the name cannot be "." or ".."`},
	{"acme/..", `the name cannot be "." or ".."`},
}

// TestCheckFullName: every rule, a text that never repeats the value, and
// agreement with the pattern openapi.yaml declares for fullName (every
// name the check accepts matches it; the pattern is allowed to accept
// more, which the check then refuses).
func TestCheckFullName(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(gen.SpecYAML)
	if err != nil {
		t.Fatal(err)
	}
	prop := doc.Components.Schemas["RepoCreate"].Value.Properties["fullName"].Value
	pattern := regexp.MustCompile(prop.Pattern)
	for _, tc := range fullNameCases {
		err := CheckFullName(tc.in)
		if tc.reason == "" {
			if err != nil {
				t.Errorf("CheckFullName(%q) = %v", tc.in, err)
			}
			if !pattern.MatchString(tc.in) || len(tc.in) > int(*prop.MaxLength) {
				t.Errorf("%q is valid but the spec refuses it", tc.in)
			}
			continue
		}
		if !errors.Is(err, ErrBadFullName) || err.Error() != "not a valid owner/name: "+tc.reason {
			t.Errorf("CheckFullName(%q) = %v, want %q", tc.in, err, tc.reason)
		}
		if tc.in != "" && strings.Contains(err.Error(), tc.in) {
			t.Errorf("the error repeats the value: %v", err)
		}
	}
}
