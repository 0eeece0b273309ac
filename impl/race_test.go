//go:build race

package impl_test

// raceEnabled: the race detector is on (goroutine stacks and the heap
// are larger: memory figures are not judged).
const raceEnabled = true
