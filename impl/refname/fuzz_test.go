package refname

import (
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/stackd/stackd/gen"
)

// reasons are every text Check can return: a closed set, so no error can
// repeat its input.
var reasons = map[string]bool{}

func init() {
	for _, r := range []string{
		"it is empty", "it is longer than 1024 bytes", "it is not valid UTF-8", "it starts with '-'",
		"it is a name git reserves", "it contains a control character", "it contains a space",
		`it contains ".."`, `it contains "@{"`, "it ends with '.'",
		"it has an empty path component (a leading, trailing or double '/')",
		"a path component starts with '.'", `a path component ends with ".lock"`,
		"a path component is longer than 255 bytes",
	} {
		reasons["not a valid branch name: "+r] = true
	}
	for _, c := range forbidden {
		reasons["not a valid branch name: it contains "+strconv.QuoteRune(c)] = true
	}
}

// specPatterns are the patterns openapi.yaml declares for branch-name path
// parameters (the branch parameter and the stack root).
func specPatterns(tb testing.TB) []*regexp.Regexp {
	doc, err := openapi3.NewLoader().LoadFromData(gen.SpecYAML)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*regexp.Regexp
	add := func(p *openapi3.Parameter) {
		if p == nil || p.Schema == nil || p.Schema.Value == nil || p.Schema.Value.Pattern == "" {
			tb.Fatalf("parameter %v has no pattern", p)
		}
		out = append(out, regexp.MustCompile(p.Schema.Value.Pattern))
	}
	add(doc.Components.Parameters["BranchName"].Value)
	for _, p := range doc.Paths.Find("/api/v1/repos/{repoID}/stacks/{root}").Parameters {
		if p.Value != nil && p.Value.Name == "root" {
			add(p.Value)
		}
	}
	if len(out) != 2 {
		tb.Fatalf("found %d branch-name patterns, want 2", len(out))
	}
	return out
}

// FuzzCheck: Check never panics; its errors are from a closed set; a valid
// name matches the spec's patterns (raw and percent-encoded, the form the
// validator sees) and is quoted without control or format characters.
func FuzzCheck(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.name)
	}
	patterns := specPatterns(f)
	f.Fuzz(func(t *testing.T, name string) {
		err := Check(name)
		if (err == nil) != Valid(name) {
			t.Fatalf("Check and Valid disagree on %q", name)
		}
		if err != nil {
			if !reasons[err.Error()] {
				t.Fatalf("Check(%q): unexpected text %q", name, err)
			}
			return
		}
		for _, p := range patterns {
			if !p.MatchString(name) || !p.MatchString(url.PathEscape(name)) {
				t.Fatalf("valid name %q does not match the spec's pattern %s", name, p)
			}
		}
		q := Quote(name)
		if strings.ContainsFunc(q, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
			t.Fatalf("Quote(%q) = %s", name, q)
		}
		if len(name) <= maxQuoted {
			if back, err := strconv.Unquote(q); err != nil || back != name {
				t.Fatalf("Quote(%q) = %s does not unquote to it", name, q)
			}
		}
	})
}

// FuzzAgreesWithGit: on every name git can take as an argument, Check
// agrees with git check-ref-format --branch, except where stackd is
// stricter on purpose (invalid UTF-8, longer than MaxLen, a component
// longer than MaxComponentLen).
func FuzzAgreesWithGit(f *testing.F) {
	git, err := exec.LookPath("git")
	if err != nil {
		f.Skip("git is not installed; TestCheck still checks the table")
	}
	for _, tc := range cases {
		f.Add(tc.name)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, name string) {
		if strings.ContainsRune(name, 0) || !utf8.ValidString(name) || len(name) > MaxLen {
			return
		}
		for comp := range strings.SplitSeq(name, "/") {
			if len(comp) > MaxComponentLen {
				return
			}
		}
		cmd := exec.Command(git, "check-ref-format", "--branch", name)
		cmd.Dir = dir
		cmd.Env = append(cmd.Environ(), "GIT_CEILING_DIRECTORIES="+dir)
		out, gerr := cmd.CombinedOutput()
		if ours := Valid(name); ours != (gerr == nil) {
			t.Fatalf("%q: Valid = %v, git check-ref-format --branch: %v %s", name, ours, gerr, out)
		}
	})
}
