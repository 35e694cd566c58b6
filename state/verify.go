package state

import (
	"context"
	"sort"

	"github.com/cairn-data/cairn/storage"
)

// Problem is one thing wrong with the objects of a checkpoint location,
// as a check of stored objects finds it.
type Problem struct {
	// Object is the object that is wrong, or missing, by its full name in
	// the checkpoint location.
	Object string
	// Err says what is wrong. Damage is a *storage.CorruptError naming
	// Object; a missing object matches storage.ErrNotFound.
	Err error
}

func (p Problem) Error() string { return p.Object + ": " + p.Err.Error() }

func (p Problem) Unwrap() error { return p.Err }

// StoreCheck is what a Verifier found in a store's directory.
type StoreCheck struct {
	// Owned lists the objects of the directory that the provider writes,
	// in name order: each was checked, sound or not. The other objects of
	// the directory (but the store's MetaObject) are not the provider's.
	Owned []string
	// Problems lists what is wrong, in name order of the objects. An
	// object may be missing (a file a snapshot lists, say): it is then
	// not in Owned.
	Problems []Problem
	// Bytes is how many bytes the check read.
	Bytes int64
}

// Verifier is an optional interface of a Provider: a provider that can
// check every object it writes in a store's directory without loading a
// version, as 'cairn checkpoint verify' does. Providers implement it so
// that tools reach their objects through the provider rather than by
// file names known to the tool. A provider that does not implement it
// leaves its objects unchecked, and tools say so.
//
// Verifier methods are called on a provider fresh from its registered
// factory, never initialised (no Init, no Close); they must not write to
// storage nor keep state between calls. Safe for concurrent use.
type Verifier interface {
	// Owns reports whether base, the last component of an object name
	// directly inside a store's directory, is a name the provider writes
	// there. MetaObject belongs to package state, not to a provider.
	Owns(base string) bool
	// VerifyStore lists the objects directly inside dir (a store's
	// directory, StoreID.Dir; the directories of named stores below it
	// are other stores) and reads every one the provider owns, checking
	// it fully: its frame and every record, and objects that others
	// list (a snapshot's files) against what they record (size and
	// checksums). It returns an error only when dir cannot be listed or
	// ctx ends; damage is in the StoreCheck.
	VerifyStore(ctx context.Context, s storage.Storage, dir string) (StoreCheck, error)
}

// VerifierFor returns the Verifier of the named provider, or false when
// no provider of that name is registered or it does not implement
// Verifier.
func VerifierFor(provider string) (Verifier, bool) {
	registryMu.RLock()
	factory, ok := registry[provider]
	registryMu.RUnlock()
	if !ok {
		return nil, false
	}
	v, ok := factory().(Verifier)
	return v, ok
}

// Owners returns the names of the registered providers whose Verifier
// owns base, the last component of an object name in a store's directory,
// sorted. It tells whose files a store directory without a MetaObject
// holds.
func Owners(base string) []string {
	var out []string
	for _, name := range Providers() {
		if v, ok := VerifierFor(name); ok && v.Owns(base) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
