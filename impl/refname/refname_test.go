package refname

import (
	"errors"
	"strings"
	"testing"
)

var cases = []struct {
	name string
	ok   bool
}{
	{"main", true},
	{"feature/login", true},
	{"feature/login/step-2", true},
	{"a-b_c.d", true},
	{"v1.2.3", true},
	{"@", true}, // git branch @ works
	{"@foo", true},
	{"foo@bar", true},
	{"a@", true},
	{"ünïcödé/ブランチ", true},
	{"refs/heads/x", true},
	{"x\u202egnp", true}, // git allows format characters; Quote escapes them
	{"a.lockx", true},
	{"lock", true},
	{"%2e%2e", true},
	{"a{b}", true},
	{"a-", true},
	{"a/-b", true},
	{strings.Repeat(strings.Repeat("a", MaxComponentLen)+"/", 3) + strings.Repeat("c", MaxComponentLen-1) + "/b", true}, // MaxLen bytes
	{strings.Repeat("é", MaxComponentLen/2) + "a", true},

	{"", false},
	{strings.Repeat("a", MaxLen+1), false},
	{strings.Repeat(strings.Repeat("a", MaxComponentLen)+"/", 3) + strings.Repeat("c", MaxComponentLen-1) + "/bb", false},
	{strings.Repeat("a", MaxComponentLen+1), false},
	{strings.Repeat("x", 300), false},
	{"feature/" + strings.Repeat("a", MaxComponentLen+1) + "/x", false},
	{strings.Repeat("é", MaxComponentLen/2+1), false}, // 256 bytes, 128 runes
	{"--upload-pack=evil", false},
	{"-", false},
	{"HEAD", false},
	{"a..b", false},
	{"..", false},
	{"a/../b", false},
	{"a@{b", false},
	{"@{-1}", false},
	{"a.lock", false},
	{"a.lock/b", false},
	{"a/b.lock", false},
	{".hidden", false},
	{"a/.b", false},
	{"a/", false},
	{"/a", false},
	{"a//b", false},
	{"a.", false},
	{"a/b.", false},
	{"a b", false},
	{"a\tb", false},
	{"a\nb", false},
	{"a\x00b", false},
	{"a\x1b[31m", false},
	{"a\x7fb", false},
	{"a~1", false},
	{"a^", false},
	{"a:b", false},
	{"a?", false},
	{"a*", false},
	{"a[b", false},
	{"a\\b", false},
	{"\xff", false},
	{"a\xc3", false},
}

func TestCheck(t *testing.T) {
	for _, tc := range cases {
		err := Check(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if Valid(tc.name) != tc.ok {
			t.Errorf("Valid(%q) != %v", tc.name, tc.ok)
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%q) = %v does not wrap ErrInvalid", tc.name, err)
		}
		// The reason never repeats the name (names short enough to
		// appear by chance in a fixed reason are not checked).
		if len(tc.name) > 2 && strings.Contains(err.Error(), tc.name) {
			t.Errorf("Check(%q) echoes the name: %v", tc.name, err)
		}
		if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("Check(%q): control character in %q", tc.name, err)
		}
	}
}

func TestQuote(t *testing.T) {
	cases := []struct{ in, want string }{
		{"main", `"main"`},
		{"feature/login", `"feature/login"`},
		{"x\u202egnp", `"x\u202egnp"`},
		{"ünï", `"ünï"`},
		{strings.Repeat("a", 200), `"` + strings.Repeat("a", 128) + `"…`},
		// A cut never splits a rune.
		{strings.Repeat("a", 127) + "é" + "bbb", `"` + strings.Repeat("a", 127) + `"…`},
	}
	for _, tc := range cases {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
