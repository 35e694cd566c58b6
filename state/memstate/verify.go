package memstate

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

var _ state.Verifier = (*Provider)(nil)

// Owns implements state.Verifier: memstate writes "<version>.delta" and
// "<version>.snapshot" in a store's directory.
func (p *Provider) Owns(base string) bool {
	_, _, ok := ParseFileName(base)
	return ok
}

// VerifyStore implements state.Verifier: it checks every delta and
// snapshot directly inside dir with VerifyObject.
func (p *Provider) VerifyStore(ctx context.Context, s storage.Storage, dir string) (state.StoreCheck, error) {
	objs, err := s.List(ctx, dir+"/")
	if err != nil {
		return state.StoreCheck{}, fmt.Errorf("memstate: list %s: %w", dir, err)
	}
	var c state.StoreCheck
	for _, o := range objs {
		base, ok := strings.CutPrefix(o.Name, dir+"/")
		if !ok || strings.Contains(base, "/") || !p.Owns(base) {
			continue
		}
		c.Owned = append(c.Owned, o.Name)
		c.Bytes += o.Size
		if err := VerifyObject(ctx, s, o.Name); err != nil {
			if ctx.Err() != nil {
				return state.StoreCheck{}, ctx.Err()
			}
			c.Problems = append(c.Problems, state.Problem{Object: o.Name, Err: err})
		}
	}
	return c, nil
}

// VerifyObject reads the delta or snapshot object name (a name whose last
// component is "<version>.delta" or "<version>.snapshot") in full, as a
// load of the store would: the frame is checked to its end block and every
// record is decoded, with the same checks (record syntax, length limits,
// strictly ascending keys), and an object that records the identity of
// another (another version, partition or store: it was copied here) is
// refused. It keeps nothing in memory but one record.
//
// It returns nil for a sound object. Damage is returned as the
// *storage.CorruptError that found it, unwrapped, so its Object and Offset
// can be read directly; a frame in a format version newer than this build
// reads gives an error matching storage.ErrFormatVersion, a missing object
// one matching storage.ErrNotFound, and a name that is not a delta or
// snapshot name an error that says so. Safe for concurrent use.
func VerifyObject(ctx context.Context, s storage.Storage, name string) error {
	base := name[strings.LastIndexByte(name, '/')+1:]
	_, kind, ok := ParseFileName(base)
	if !ok {
		return fmt.Errorf("memstate: verify %s: %q is not a state file name (<version>.delta or <version>.snapshot)", name, base)
	}
	if kind == "delta" {
		r, err := frame.Get(ctx, s, name, frame.KindDelta, deltaVersion)
		if err != nil {
			return err
		}
		defer r.Close()
		if err := state.CheckObjectIdentity(ctx, s, name, string(r.Identity())); err != nil {
			return err
		}
		return decodeDelta(r, name, func(key, value []byte, del bool) error { return nil })
	}
	r, err := frame.Get(ctx, s, name, frame.KindSnapshot, snapshotVersion)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := state.CheckObjectIdentity(ctx, s, name, string(r.Identity())); err != nil {
		return err
	}
	return decodeSnapshot(r, name, func(key, value []byte) error { return nil })
}
