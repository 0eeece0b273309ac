package refresh

import (
	"sync"
	"testing"
)

// TestGoroutines: Wait returns at once at zero, waits for every Done, and
// may run while Adds start from zero on other goroutines (what a
// sync.WaitGroup forbids, and what a trigger racing with Close does).
func TestGoroutines(t *testing.T) {
	var g goroutines
	g.Wait() // zero: returns

	g.Add(2)
	waited := make(chan struct{})
	go func() { g.Wait(); close(waited) }()
	g.Done()
	select {
	case <-waited:
		t.Fatal("Wait returned with one goroutine left")
	default:
	}
	g.Done()
	<-waited

	// Adds from zero while Waits run: no race, and every Wait returns
	// once everything added is done.
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); g.Wait() }()
		go func() { defer wg.Done(); g.Add(1); g.Done() }()
	}
	wg.Wait()
	g.Wait()

	defer func() {
		if recover() == nil {
			t.Fatal("a negative count did not panic")
		}
	}()
	g.Done()
}
