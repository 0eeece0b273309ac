package webhook

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// FuzzVerify: the signature check never panics, accepts exactly the
// signature Sign makes (hex in either case), and refuses everything else,
// including any change to the body.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("secret"), []byte(`{"zen":"hi"}`), Sign([]byte("secret"), []byte(`{"zen":"hi"}`)))
	f.Add([]byte("secret"), []byte(`{}`), "sha256=")
	f.Add([]byte("secret"), []byte(`{}`), "sha1=0123456789abcdef0123456789abcdef01234567")
	f.Add([]byte("secret"), []byte(``), "sha256=zz")
	f.Add([]byte(""), []byte(`{}`), Sign(nil, []byte(`{}`)))
	f.Add([]byte("k"), []byte("x"), strings.ToUpper(Sign([]byte("k"), []byte("x"))))
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		err := Verify(secret, body, header)
		if len(secret) == 0 {
			if !errors.Is(err, ErrNoSecret) {
				t.Fatalf("empty secret: %v", err)
			}
			return
		}
		want := Sign(secret, body)
		hexPart, ok := strings.CutPrefix(header, "sha256=")
		match := ok && strings.EqualFold(hexPart, want[len("sha256="):])
		if (err == nil) != match {
			t.Fatalf("Verify(%q) = %v, signature match %v", header, err, match)
		}
		if err != nil && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("error %v does not wrap ErrBadSignature", err)
		}
		if err != nil && hasControl(err.Error()) {
			t.Fatalf("control character in %q", err)
		}
		if Verify(secret, body, want) != nil {
			t.Fatal("Sign's own signature refused")
		}
		changed := append(bytes.Clone(body), 0)
		if Verify(secret, changed, want) == nil {
			t.Fatal("a longer body passed with the old signature")
		}
		if len(body) > 0 {
			changed = bytes.Clone(body)
			changed[0] ^= 1
			if Verify(secret, changed, want) == nil {
				t.Fatal("a changed body passed with the old signature")
			}
		}
	})
}

// payloadErrors are every text a Payload or ParsePush error can have
// (digits replaced by N): none repeats the content type or the body.
var payloadErrors = map[string]bool{}

func init() {
	for _, s := range []string{
		"the content type is not a valid media type",
		"the form body is not valid URL encoding",
		"unsupported content type (want application/json or application/x-www-form-urlencoded)",
		"empty payload",
		"body of N bytes exceeds N",
		"the payload is not valid JSON (syntax error at byte N)",
		"the payload is not a JSON object",
		"the payload is not valid JSON",
		"missing repository.full_name",
		"missing ref",
	} {
		payloadErrors["webhook: bad payload: "+s] = true
	}
	for _, field := range []string{"ref", "before", "after", "deleted", "forced", "repository", "repository.full_name", "repository.clone_url", "repository.html_url"} {
		payloadErrors["webhook: bad payload: payload field "+field+" has the wrong type"] = true
	}
}

var digits = regexp.MustCompile(`[0-9]+`)

// FuzzPayload: any body in any content type goes through Payload and
// ParsePush without a panic; errors wrap ErrBadPayload and are one of a
// closed set of texts (so they never echo input); a parsed push has a
// repository name and a ref, and FullNameFromURL of its URLs never panics.
func FuzzPayload(f *testing.F) {
	push, err := os.ReadFile("testdata/push.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add("application/json", push)
	f.Add("application/json; charset=utf-8", []byte(`{"ref":"refs/heads/main","repository":{"full_name":"o/r"}}`))
	f.Add("application/x-www-form-urlencoded", []byte("payload=%7B%22ref%22%3A%22refs%2Fheads%2Fx%22%2C%22repository%22%3A%7B%22full_name%22%3A%22o%2Fr%22%7D%7D"))
	f.Add("application/x-www-form-urlencoded", []byte("payload=%zz"))
	f.Add("text/plain", []byte(`{}`))
	f.Add("application/json\x1b[31m", []byte(`{}`))
	f.Add("", []byte(``))
	f.Add("application/json", []byte(`{"ref":7}`))
	f.Add("application/json", []byte(`{"ref":"refs/heads/x","repository":{"full_name":["\u0000"]}}`))
	f.Add("application/json", []byte(`[1,2,3]`))
	f.Add("application/json", []byte("{\"ref\":\"\x1b\"}"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		payload, err := Payload(contentType, body)
		var p Push
		if err == nil {
			if len(payload) == 0 {
				t.Fatal("empty payload without an error")
			}
			p, err = ParsePush(payload)
		}
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("error %v does not wrap ErrBadPayload", err)
			}
			if msg := digits.ReplaceAllString(err.Error(), "N"); !payloadErrors[msg] {
				t.Fatalf("unexpected error text %q", err)
			}
			return
		}
		if strings.TrimSpace(p.FullName) == "" || p.Ref == "" {
			t.Fatalf("parsed push without name or ref: %+v", p)
		}
		if b, ok := p.Branch(); ok && "refs/heads/"+b != p.Ref {
			t.Fatalf("Branch() = %q for ref %q", b, p.Ref)
		}
		_ = FullNameFromURL(p.CloneURL)
		_ = FullNameFromURL(p.HTMLURL)
		_ = NormalizeFullName(p.FullName)
	})
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}
