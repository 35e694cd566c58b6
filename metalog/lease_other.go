//go:build !unix

package metalog

// signalZero cannot probe a process on this platform: a lease of a dead
// process lapses only at its expiry.
func signalZero(pid int) procState { return procUnknown }
