package pebblestate

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// CheckpointFile is one file of a snapshot, as its manifest lists it.
type CheckpointFile struct {
	Name   string // base name in the Pebble database directory, e.g. "000012.sst"
	Object string // the shared object that holds it; "" for a file held in the manifest
	Size   int64  // bytes
	CRC32C uint32 // checksum of the bytes (Castagnoli)
}

// ReadCheckpoint reads and checks the snapshot manifest object name (a
// name whose last component is "<version>.checkpoint") and returns the
// version it describes and its files, in name order. Damage, and a
// manifest that records the identity of another (copied here from another
// version or store), is a *storage.CorruptError naming the object. Safe
// for concurrent use.
func ReadCheckpoint(ctx context.Context, s storage.Storage, name string) (int64, []CheckpointFile, error) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return 0, nil, fmt.Errorf("pebblestate: %q is not an object name inside a store's directory", name)
	}
	r, err := frame.Get(ctx, s, name, frame.KindPebbleSnapshot, checkpointVersion)
	if err != nil {
		return 0, nil, err
	}
	defer r.Close()
	if err := state.CheckObjectIdentity(ctx, s, name, string(r.Identity())); err != nil {
		return 0, nil, err
	}
	payload, err := io.ReadAll(r)
	if err != nil {
		return 0, nil, err
	}
	m, err := decodeManifest(payload, name)
	if err != nil {
		return 0, nil, err
	}
	if v, kind, ok := ParseFileName(name[i+1:]); ok && kind == checkpointExt && v != m.Version {
		return 0, nil, &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("it describes version %d", m.Version)}
	}
	files := make([]CheckpointFile, 0, len(m.Files))
	for _, f := range m.Files {
		cf := CheckpointFile{Name: f.Name, Size: f.Size, CRC32C: f.CRC}
		if f.Shared {
			ext, _ := sharedExt(f.Name)
			cf.Object = SharedName(name[:i], f.Hash, ext)
		}
		files = append(files, cf)
	}
	return m.Version, files, nil
}

// VerifyObject reads the changelog or snapshot manifest object name in
// full, as a load of the store would, checking the frame, its identity
// (an object copied here from another version or store is refused) and
// every record;
// for a manifest it also checks that each shared file it lists exists with
// the recorded size (reading it whole is left to a restore, which checks
// CRC32C and SHA-256). It returns nil for a sound object; damage is the
// *storage.CorruptError that found it, unwrapped; a missing object an error
// matching storage.ErrNotFound. Safe for concurrent use.
func VerifyObject(ctx context.Context, s storage.Storage, name string) error {
	base := name[strings.LastIndexByte(name, '/')+1:]
	_, kind, ok := ParseFileName(base)
	switch {
	case !ok || kind == "shared":
		return fmt.Errorf("pebblestate: verify %s: %q is not a changelog or snapshot manifest name", name, base)
	case kind == changelogExt:
		r, err := frame.Get(ctx, s, name, frame.KindChangelog, changelogVersion)
		if err != nil {
			return err
		}
		defer r.Close()
		if err := state.CheckObjectIdentity(ctx, s, name, string(r.Identity())); err != nil {
			return err
		}
		return decodeChangelog(r, name, func(bool, []byte, []byte) error { return nil })
	}
	_, files, err := ReadCheckpoint(ctx, s, name)
	if err != nil {
		return err
	}
	dir := name[:strings.LastIndexByte(name, '/')]
	objs, err := s.List(ctx, dir+"/")
	if err != nil {
		return err
	}
	sizes := map[string]int64{}
	for _, o := range objs {
		sizes[o.Name] = o.Size
	}
	for _, f := range files {
		if f.Object == "" {
			continue
		}
		size, ok := sizes[f.Object]
		if !ok {
			return fmt.Errorf("pebblestate: %s lists %s (%s), which is missing: %w", name, f.Name, f.Object, storage.ErrNotFound)
		}
		if size != f.Size {
			return &storage.CorruptError{Object: f.Object, Offset: -1, Reason: fmt.Sprintf("it has %d bytes, and %s says %d", size, name, f.Size)}
		}
	}
	return nil
}
