package main

import (
	"syscall"
	"testing"
)

// TestRaiseOpenFiles: with the soft open-files limit lowered below the
// hard one, raiseOpenFiles brings it to the hard limit and reports where
// it was.
func TestRaiseOpenFiles(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore the limit: %v", err)
		}
	})
	if orig.Max < 512 {
		t.Skipf("hard limit %d: too low to lower the soft one", orig.Max)
	}
	low := syscall.Rlimit{Cur: 256, Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got := raiseOpenFiles()
	if !got.Known || got.Err != nil || got.Before != 256 || got.Soft != orig.Max || got.Hard != orig.Max {
		t.Fatalf("raiseOpenFiles() = %+v, want 256 raised to %d", got, orig.Max)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil || now.Cur != orig.Max {
		t.Fatalf("soft limit now %d (%v), want %d", now.Cur, err, orig.Max)
	}
	// At the hard limit already: nothing to do, nothing failed.
	if again := raiseOpenFiles(); again.Err != nil || again.Before != orig.Max || again.Soft != orig.Max {
		t.Fatalf("second raiseOpenFiles() = %+v", again)
	}
}
