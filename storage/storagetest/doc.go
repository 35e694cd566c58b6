// Package storagetest is the conformance suite every storage backend must
// pass. A backend's test calls Run with a function that returns a fresh,
// empty Storage.
package storagetest
