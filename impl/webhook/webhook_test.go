package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	secret := []byte("It's a Secret to Everybody")
	body := []byte("Hello, World!")
	// Reference vector from GitHub's "Validating webhook deliveries" docs.
	const good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	tests := []struct {
		name    string
		secret  []byte
		body    []byte
		header  string
		wantErr error
	}{
		{"good", secret, body, good, nil},
		{"good upper-case hex", secret, body, "sha256=" + strings.ToUpper(good[len("sha256="):]), nil},
		{"wrong secret", []byte("another secret"), body, good, ErrBadSignature},
		{"tampered body", secret, []byte("Hello, World?"), good, ErrBadSignature},
		{"missing header", secret, body, "", ErrBadSignature},
		{"no sha256= prefix", secret, body, good[len("sha256="):], ErrBadSignature},
		{"sha1 prefix", secret, body, "sha1=" + good[len("sha256="):], ErrBadSignature},
		{"bad hex", secret, body, "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", ErrBadSignature},
		{"odd-length hex", secret, body, good[:len(good)-1], ErrBadSignature},
		{"truncated", secret, body, good[:len(good)-2], ErrBadSignature},
		{"empty digest", secret, body, "sha256=", ErrBadSignature},
		{"empty secret", nil, body, good, ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.body, tt.header)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSignRoundTrip(t *testing.T) {
	secret, body := []byte("s3cret"), []byte(`{"zen":"Keep it logically awesome."}`)
	h := Sign(secret, body)
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
	if err := Verify(secret, body, h); err != nil {
		t.Fatalf("Verify(Sign()) = %v", err)
	}
}

func TestPayload(t *testing.T) {
	const js = `{"ref":"refs/heads/a b","zen":"x+y=z&w"}`
	form := "payload=" + url.QueryEscape(js)
	tests := []struct {
		name        string
		contentType string
		body        string
		want        string
		wantErr     error
	}{
		{"json", "application/json", js, js, nil},
		{"json with charset", "application/json; charset=utf-8", js, js, nil},
		{"form percent-encoded", "application/x-www-form-urlencoded", form, js, nil},
		{"form with other fields", "application/x-www-form-urlencoded", "a=1&" + form + "&b=%20", js, nil},
		{"form literal", "application/x-www-form-urlencoded", "payload=%7B%22a%22%3A%22%C3%A9%2B%22%7D", `{"a":"é+"}`, nil},
		{"form plus is space", "application/x-www-form-urlencoded", "payload=%7B%22a%22:%22b+c%22%7D", `{"a":"b c"}`, nil},
		{"form without payload", "application/x-www-form-urlencoded", "other=1", "", ErrBadPayload},
		{"form bad escape", "application/x-www-form-urlencoded", "payload=%zz", "", ErrBadPayload},
		{"unknown type", "text/plain", js, "", ErrBadPayload},
		{"multipart", "multipart/form-data; boundary=x", js, "", ErrBadPayload},
		{"missing type", "", js, "", ErrBadPayload},
		{"empty json", "application/json", "", "", ErrBadPayload},
		{"too large", "application/json", strings.Repeat(" ", MaxBody+1), "", ErrBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Payload(tt.contentType, []byte(tt.body))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Payload() error = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Fatalf("Payload() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePushTestdata(t *testing.T) {
	raw, err := os.ReadFile("testdata/push.json")
	if err != nil {
		t.Fatal(err)
	}
	// Exercise the form-encoded path end to end, as GitHub sends it when the
	// hook's content type is application/x-www-form-urlencoded.
	body := []byte("payload=" + url.QueryEscape(string(raw)))
	secret := []byte("hook-secret")
	if err := Verify(secret, body, Sign(secret, body)); err != nil {
		t.Fatal(err)
	}
	p, err := Payload("application/x-www-form-urlencoded", body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePush(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Push{
		FullName: "Acme-Corp/Stack-Demo",
		Ref:      "refs/heads/feature/stack-2",
		Before:   "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
		After:    "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
		Forced:   true,
		CloneURL: "https://github.com/Acme-Corp/Stack-Demo.git",
		HTMLURL:  "https://github.com/Acme-Corp/Stack-Demo",
	}
	if got != want {
		t.Fatalf("ParsePush =\n%+v\nwant\n%+v", got, want)
	}
	if b, ok := got.Branch(); !ok || b != "feature/stack-2" {
		t.Fatalf("Branch() = %q, %v", b, ok)
	}
	if n := NormalizeFullName(got.FullName); n != FullNameFromURL(got.CloneURL) || n != "acme-corp/stack-demo" {
		t.Fatalf("full name %q does not match clone URL %q", n, FullNameFromURL(got.CloneURL))
	}
}

func TestParsePush(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    Push
		wantErr error
	}{
		{
			name:    "branch deletion",
			payload: `{"ref":"refs/heads/old","before":"abc","after":"0000000000000000000000000000000000000000","deleted":true,"repository":{"full_name":"o/r"}}`,
			want:    Push{FullName: "o/r", Ref: "refs/heads/old", Before: "abc", After: "0000000000000000000000000000000000000000", Deleted: true},
		},
		{"invalid json", `{"ref":`, Push{}, ErrBadPayload},
		{"not an object", `[1,2]`, Push{}, ErrBadPayload},
		{"ping payload", `{"zen":"Design for failure.","hook_id":1,"repository":{"full_name":"o/r"}}`, Push{}, ErrBadPayload},
		{"missing repository", `{"ref":"refs/heads/main"}`, Push{}, ErrBadPayload},
		{"blank full_name", `{"ref":"refs/heads/main","repository":{"full_name":"  "}}`, Push{}, ErrBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePush([]byte(tt.payload))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ParsePush() error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("ParsePush() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPushBranch(t *testing.T) {
	tests := []struct {
		ref    string
		want   string
		wantOK bool
	}{
		{"refs/heads/main", "main", true},
		{"refs/heads/a/b", "a/b", true},
		{"refs/tags/v1", "", false},
		{"refs/heads/", "", false},
		{"main", "", false},
	}
	for _, tt := range tests {
		got, ok := Push{Ref: tt.ref}.Branch()
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Branch(%q) = %q, %v; want %q, %v", tt.ref, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestNormalizeFullName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Acme/Repo", "acme/repo"},
		{"  acme/REPO\n", "acme/repo"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizeFullName(tt.in); got != tt.want {
			t.Errorf("NormalizeFullName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFullNameFromURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://github.com/Acme/Repo.git", "acme/repo"},
		{"https://github.com/Acme/Repo", "acme/repo"},
		{"https://github.com/Acme/Repo/", "acme/repo"},
		{"https://user:token@github.com/Acme/Repo.git", "acme/repo"},
		{"https://github.com/Acme/Repo.git?x=1#frag", "acme/repo"},
		{"git@github.com:Acme/Repo.git", "acme/repo"},
		{"github.com:Acme/Repo", "acme/repo"},
		{"ssh://git@host/a/b", "a/b"},
		{"ssh://git@host:2222/a/b.git", "a/b"},
		{"git://github.com/Acme/Repo.GIT", "acme/repo"},
		{"https://gitlab.example.com/group/sub/Proj.git", "sub/proj"},
		{"file:///srv/git/acme/repo.git", "acme/repo"},
		{"/srv/git/acme/repo.git", "acme/repo"},
		{"  https://github.com/Acme/Repo.git\n", "acme/repo"},
		{"https://github.com/Acme", ""},
		{"https://github.com/", ""},
		{"git@github.com:Repo.git", ""},
		{"repo", ""},
		{"https://github.com/acme/.git", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := FullNameFromURL(tt.in); got != tt.want {
			t.Errorf("FullNameFromURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
