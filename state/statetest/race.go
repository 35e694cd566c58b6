//go:build race

package statetest

// raceEnabled says the code is built with -race; the suite then runs its
// heaviest loops with fewer iterations.
const raceEnabled = true
