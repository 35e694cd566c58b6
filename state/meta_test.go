package state_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

// A foreign or damaged _meta object stops Open with a corruption error
// naming it, and Open does not overwrite it.
func TestOpenRefusesForeignMeta(t *testing.T) {
	ctx := context.Background()
	id := state.StoreID{Operator: 2, Partition: 1}
	for name, data := range map[string][]byte{
		"not framed":  []byte(`{"provider":"memstate"}`),
		"framed junk": frame.Encode(frame.KindStoreMeta, 1, []byte("not json")),
		"wrong kind":  frame.Encode(frame.KindDelta, 1, []byte(`{}`)),
		"truncated":   frame.Encode(frame.KindStoreMeta, 1, []byte(`{"provider":"memstate"}`))[:20],
	} {
		t.Run(name, func(t *testing.T) {
			s := storage.NewMem()
			storage.PutBytes(ctx, s, "state/2/1/_meta", data, storage.PutOptions{})
			_, err := state.Open(ctx, memstate.Name, s, id, state.Schema{}, state.Options{MaintenanceInterval: -1})
			var ce *storage.CorruptError
			if !errors.As(err, &ce) || ce.Object != "state/2/1/_meta" {
				t.Fatalf("err = %v, want a CorruptError naming state/2/1/_meta", err)
			}
			if got, _ := storage.GetBytes(ctx, s, "state/2/1/_meta"); string(got) != string(data) {
				t.Fatal("Open rewrote a damaged _meta")
			}
		})
	}
}

func FuzzReadMeta(f *testing.F) {
	f.Add(frame.Encode(frame.KindStoreMeta, 1, []byte(`{"provider":"memstate","schema":{"key":"string","value":"bytes"}}`)))
	f.Add(frame.Encode(frame.KindStoreMeta, 1, []byte(`{"created":"bad time"}`)))
	f.Add(frame.Encode(frame.KindStoreMeta, 2, []byte(`{"provider":"memstate","uid":"00ff"}`), "state/0/0/_meta"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		s := storage.NewMem()
		storage.PutBytes(ctx, s, "state/0/0/_meta", data, storage.PutOptions{})
		_, err := state.ReadMeta(ctx, s, state.StoreID{})
		if err != nil && !errors.Is(err, storage.ErrCorrupt) && !errors.Is(err, storage.ErrFormatVersion) {
			t.Fatalf("error is neither corruption nor version: %v", err)
		}
	})
}

// A _meta copied from another store is whole, but it would give this store
// the other's UID (and so accept the other's objects): Open refuses it,
// naming it. Each store gets its own UID.
func TestOpenRefusesCopiedMeta(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	open := func(id state.StoreID) error {
		p, err := state.Open(ctx, memstate.Name, s, id, state.Schema{}, state.Options{MaintenanceInterval: -1})
		if err == nil {
			p.Close()
		}
		return err
	}
	a, b := state.StoreID{Partition: 0}, state.StoreID{Partition: 1}
	for _, id := range []state.StoreID{a, b} {
		if err := open(id); err != nil {
			t.Fatal(err)
		}
	}
	ma, _ := state.ReadMeta(ctx, s, a)
	mb, _ := state.ReadMeta(ctx, s, b)
	if ma.UID == "" || ma.UID == mb.UID {
		t.Fatalf("store UIDs %q and %q: want two different, non-empty ones", ma.UID, mb.UID)
	}
	data, _ := storage.GetBytes(ctx, s, "state/0/1/_meta")
	storage.PutBytes(ctx, s, "state/0/0/_meta", data, storage.PutOptions{})
	err := open(a)
	var ce *storage.CorruptError
	if !errors.As(err, &ce) || ce.Object != "state/0/0/_meta" {
		t.Fatalf("err = %v, want a CorruptError naming state/0/0/_meta", err)
	}
}
