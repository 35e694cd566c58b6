package pebblestate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/cairn-data/cairn/internal/iox"

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

var _ state.Verifier = (*Provider)(nil)

// verifyConcurrency bounds the shared objects VerifyStore reads at once.
const verifyConcurrency = 4

// Owns implements state.Verifier: pebblestate writes "<version>.changelog",
// "<version>.checkpoint" and "<sha256 hex>.sst" (or ".blob") in a store's
// directory.
func (p *Provider) Owns(base string) bool {
	_, _, ok := ParseFileName(base)
	return ok
}

// VerifyStore implements state.Verifier. It checks, directly inside dir:
// every changelog, decoding every record (VerifyObject); every snapshot
// manifest (ReadCheckpoint); and every shared file, read whole: its
// SHA-256 must be the one its name gives, and its size and CRC32C those
// that each manifest listing it records. A file a manifest lists and
// storage lacks is a Problem matching storage.ErrNotFound, naming the
// manifest. A shared file no manifest lists is left over from a snapshot
// that did not finish or from an interrupted clean-up (maintenance
// deletes it); it is checked against its name and is not a problem.
func (p *Provider) VerifyStore(ctx context.Context, s storage.Storage, dir string) (state.StoreCheck, error) {
	objs, err := s.List(ctx, dir+"/")
	if err != nil {
		return state.StoreCheck{}, fmt.Errorf("pebblestate: list %s: %w", dir, err)
	}
	var c state.StoreCheck
	type listing struct {
		manifest string
		file     CheckpointFile
	}
	listed := map[string][]listing{} // shared object -> the manifests that list it
	var shared []storage.ObjectInfo
	have := map[string]bool{}
	for _, o := range objs {
		base, ok := strings.CutPrefix(o.Name, dir+"/")
		if !ok || strings.Contains(base, "/") {
			continue
		}
		_, kind, ok := ParseFileName(base)
		if !ok {
			continue
		}
		c.Owned = append(c.Owned, o.Name)
		have[o.Name] = true
		switch kind {
		case "shared":
			shared = append(shared, o)
			continue
		case changelogExt:
			c.Bytes += o.Size
			err = VerifyObject(ctx, s, o.Name)
		case checkpointExt:
			c.Bytes += o.Size
			var files []CheckpointFile
			if _, files, err = ReadCheckpoint(ctx, s, o.Name); err == nil {
				for _, f := range files {
					if f.Object != "" {
						listed[f.Object] = append(listed[f.Object], listing{path.Base(o.Name), f})
					}
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return state.StoreCheck{}, ctx.Err()
			}
			c.Problems = append(c.Problems, state.Problem{Object: o.Name, Err: err})
		}
	}
	for obj, ls := range listed {
		if !have[obj] {
			c.Problems = append(c.Problems, state.Problem{Object: obj,
				Err: fmt.Errorf("missing (%w): %s/%s lists it as %s (%d bytes), so that snapshot cannot be restored", storage.ErrNotFound, dir, ls[0].manifest, ls[0].file.Name, ls[0].file.Size)})
		}
	}

	found := make([]error, len(shared))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(verifyConcurrency, len(shared)) {
		wg.Go(func() {
			for i := range next {
				o := shared[i]
				want := make([]sharedWant, 0, len(listed[o.Name]))
				for _, l := range listed[o.Name] {
					want = append(want, sharedWant{l.manifest, l.file.Size, l.file.CRC32C})
				}
				found[i] = verifyShared(ctx, s, o.Name, want)
			}
		})
	}
	for i := range shared {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return state.StoreCheck{}, err
	}
	for i, err := range found {
		c.Bytes += shared[i].Size
		if err != nil {
			c.Problems = append(c.Problems, state.Problem{Object: shared[i].Name, Err: err})
		}
	}
	slices.SortStableFunc(c.Problems, func(a, b state.Problem) int { return strings.Compare(a.Object, b.Object) })
	return c, nil
}

// sharedWant is what a manifest records of a shared file.
type sharedWant struct {
	manifest string
	size     int64
	crc      uint32
}

// verifyShared reads the shared object name whole and checks it against
// the SHA-256 its name gives and what the manifests that list it record.
func verifyShared(ctx context.Context, s storage.Storage, name string, want []sharedWant) error {
	base := path.Base(name)
	wantHash, err := hex.DecodeString(base[:strings.IndexByte(base, '.')])
	if err != nil {
		return fmt.Errorf("pebblestate: %s is not a shared file name: %w", name, err)
	}
	rc, err := s.Get(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	h, crc := sha256.New(), crc32.New(iox.Castagnoli)
	n, err := io.Copy(io.MultiWriter(h, crc), rc)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	for _, w := range want {
		switch {
		case n != w.size:
			return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("it has %d bytes, and %s says %d", n, w.manifest, w.size)}
		case crc.Sum32() != w.crc:
			return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("its CRC32C is %08x, and %s says %08x", crc.Sum32(), w.manifest, w.crc)}
		}
	}
	if got := h.Sum(nil); !bytes.Equal(got, wantHash) {
		return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("its SHA-256 is %x, not the one its name gives: its bytes changed after it was written", got)}
	}
	return nil
}
