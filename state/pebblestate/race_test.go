//go:build race

package pebblestate_test

// raceEnabled says the tests run with -race: the crash tests then fail
// every fourth storage operation rather than every one.
const raceEnabled = true
