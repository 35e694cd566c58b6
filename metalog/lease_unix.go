//go:build unix

package metalog

import (
	"errors"
	"syscall"
)

// signalZero probes pid with signal 0, which checks for the process
// without disturbing it.
func signalZero(pid int) procState {
	switch err := syscall.Kill(pid, 0); {
	case err == nil, errors.Is(err, syscall.EPERM): // EPERM: alive, another user's
		return procAlive
	case errors.Is(err, syscall.ESRCH):
		return procGone
	}
	return procUnknown
}
