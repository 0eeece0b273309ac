package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestGlobal(t *testing.T) {
	for _, tt := range []struct {
		ip     string
		global bool
	}{
		{"140.82.112.3", true},
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001:82f::200e", true},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"10.0.0.1", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"169.254.169.254", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"192.0.0.8", false},
		{"192.0.2.1", false},
		{"198.18.0.1", false},
		{"198.51.100.1", false},
		{"203.0.113.1", false},
		{"::", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.1.2.3", false},
		{"::ffff:140.82.112.3", true},
		{"::127.0.0.1", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fec0::1", false},
		{"ff02::1", false},
		{"64:ff9b::a00:1", false},
		{"2001:db8::1", false},
		{"2001::1", false},
		{"2002:7f00:1::1", false},
		{"100::1", false},
	} {
		if got := Global(netip.MustParseAddr(tt.ip)); got != tt.global {
			t.Errorf("Global(%s) = %v, want %v", tt.ip, got, tt.global)
		}
	}
	if Global(netip.MustParseAddr("fe80::1%eth0")) || Global(netip.Addr{}) {
		t.Error("a zoned or invalid address counted as global")
	}
}

func TestControl(t *testing.T) {
	strict, open := Policy{}, Policy{AllowPrivate: true}
	for _, tt := range []struct {
		addr    string
		refused bool
	}{
		{"127.0.0.1:80", true},
		{"[::1]:443", true},
		{"10.0.0.1:9418", true},
		{"169.254.169.254:80", true},
		{"[::ffff:192.168.0.1]:22", true},
		{"140.82.112.3:443", false},
		{"localhost:80", true}, // never a name: the dialer resolves first
	} {
		err := strict.Control("tcp", tt.addr, nil)
		if (err != nil) != tt.refused {
			t.Errorf("Control(%s) = %v", tt.addr, err)
		}
		if err != nil && !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("Control(%s) = %v, want ErrForbiddenAddress", tt.addr, err)
		}
		if tt.addr != "localhost:80" {
			if err := open.Control("tcp", tt.addr, nil); err != nil {
				t.Errorf("AllowPrivate: Control(%s) = %v", tt.addr, err)
			}
		}
	}
}

// TestDialerChecksAfterResolution: the dialer refuses loopback reached by
// name, and no connection is made.
func TestDialerChecksAfterResolution(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	_, err = Policy{}.Dialer().DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", port))
	if !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("dial localhost = %v, want ErrForbiddenAddress", err)
	}
	c, err := Policy{AllowPrivate: true}.Dialer().DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", port))
	if err != nil {
		t.Fatalf("AllowPrivate: %v", err)
	}
	c.Close()
	// The one connection accepted is the allowed one.
	got, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatal("the refused dial reached the listener")
	}
}

func TestResolve(t *testing.T) {
	if _, err := (Policy{}).Resolve(context.Background(), "localhost"); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("Resolve(localhost) = %v", err)
	}
	if _, err := (Policy{}).Resolve(context.Background(), "[::1]"); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("Resolve([::1]) = %v", err)
	}
	got, err := Policy{AllowPrivate: true}.Resolve(context.Background(), "127.0.0.1")
	if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("Resolve = %v, %v", got, err)
	}
	got, err = Policy{}.Resolve(context.Background(), "140.82.112.3")
	if err != nil || len(got) != 1 {
		t.Fatalf("Resolve(public literal) = %v, %v", got, err)
	}
}

func TestHosts(t *testing.T) {
	h, err := ParseHosts([]string{" GitHub.com ", "*.Example.com.", "10.0.0.5", "[2001:db8::1]", ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"github.com", true},
		{"GITHUB.COM:443", true},
		{"github.com.", true},
		{"api.github.com", false},
		{"git.example.com", true},
		{"a.b.example.com:8443", true},
		{"example.com", false},
		{"badexample.com", false},
		{"example.com.evil.org", false},
		{"10.0.0.5", true},
		{"10.0.0.5:9418", true},
		{"[2001:db8::1]:443", true},
		{"2001:db8:0::1", true},
		{"10.0.0.6", false},
		{"", false},
	} {
		if got := h.Allow(tt.host); got != tt.ok {
			t.Errorf("Allow(%q) = %v, want %v", tt.host, got, tt.ok)
		}
		if err := h.Check(tt.host); (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrHostNotAllowed)) {
			t.Errorf("Check(%q) = %v", tt.host, err)
		}
	}
	if !(Hosts(nil)).Allow("anything.example") {
		t.Error("an empty list must allow every host")
	}
	for _, bad := range []string{"*", "*.", "git*.com", "https://github.com", "github.com:443", "a..b", "-a.com", "a/b", "*.*.com"} {
		if _, err := ParseHosts([]string{bad}); err == nil {
			t.Errorf("ParseHosts(%q) accepted", bad)
		}
	}
}
