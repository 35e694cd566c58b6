package pebblestate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairn-data/cairn/internal/iox"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

// downloadConcurrency is how many shared files a restore fetches at once.
const downloadConcurrency = 4

// sharedNames returns the object names of the shared files of a manifest.
func (m *checkpointManifest) sharedNames(dir string) []string {
	var names []string
	for _, f := range m.Files {
		if f.Shared {
			ext, _ := sharedExt(f.Name)
			names = append(names, SharedName(dir, f.Hash, ext))
		}
	}
	return names
}

// snapshotIfDue snapshots the provider's database when SnapshotInterval
// changelogs accumulated since the last snapshot. Under the provider's
// lock (so no commit lands meanwhile) it flushes the memtables and makes a
// Pebble checkpoint, hard links of the SST files; then, without the lock,
// it uploads the SST files that checkpoint storage does not hold yet and,
// last, the manifest naming every file of the version. The caller holds
// maintMu.
func (p *Provider) snapshotIfDue(ctx context.Context) error {
	p.mu.Lock()
	h := p.main
	if h == nil || h.meta.Version <= 0 || p.snaps[h.meta.Version] || h.meta.Version-p.lastSnapshotLocked() < int64(p.opts.SnapshotInterval) {
		p.mu.Unlock()
		return nil
	}
	start := time.Now()
	v := h.meta.Version
	p.seq++
	ckdir := p.wd.path(fmt.Sprintf("%s%d", checkpointPref, p.seq))
	_, err := p.runOp(ctx, h.life, func() error { // returns at once on a failed disk
		if err := h.db.Flush(); err != nil {
			return err
		}
		return h.db.Checkpoint(ckdir)
	}, nil)
	sums := h.sums
	p.mu.Unlock()
	defer os.RemoveAll(ckdir)
	if err != nil {
		return fmt.Errorf("pebblestate: checkpoint version %d of %s locally: %w", v, p.dir, err)
	}

	entries, err := os.ReadDir(ckdir)
	if err != nil {
		return fmt.Errorf("pebblestate: read checkpoint of version %d: %w", v, err)
	}
	m := &checkpointManifest{Version: v}
	var uploadedBytes, uploadedFiles, reused int64
	for _, e := range entries { // sorted by name
		name, path := e.Name(), filepath.Join(ckdir, e.Name())
		if !e.Type().IsRegular() || !validFileName(name) {
			return fmt.Errorf("pebblestate: checkpoint of version %d holds %q, which is not a plain file", v, name)
		}
		ext, shared := sharedExt(name)
		if !shared {
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("pebblestate: read %s: %w", path, err)
			}
			if len(data) > maxInlineFileLen {
				return fmt.Errorf("pebblestate: checkpoint file %s is %d bytes, above the %d a manifest holds", name, len(data), maxInlineFileLen)
			}
			m.Files = append(m.Files, checkpointFile{Name: name, Size: int64(len(data)), CRC: crc32.Checksum(data, iox.Castagnoli), Data: data})
			continue
		}
		sum, ok := sums[name]
		if !ok {
			if sum, err = hashFile(path); err != nil {
				return err
			}
			sums[name] = sum
		}
		m.Files = append(m.Files, checkpointFile{Name: name, Shared: true, Size: sum.size, CRC: sum.crc, Hash: sum.hash})
		obj := SharedName(p.dir, sum.hash, ext)
		p.mu.Lock()
		known := p.shared[obj]
		p.mu.Unlock()
		if known {
			reused++
			continue
		}
		if err := uploadFile(ctx, p.s, obj, path); err != nil {
			return fmt.Errorf("state: snapshot version %d of %s: %w", v, p.dir, err)
		}
		uploadedBytes += sum.size
		uploadedFiles++
		p.mu.Lock()
		p.shared[obj] = true
		p.mu.Unlock()
	}
	name := CheckpointName(p.dir, v)
	payload := encodeManifest(m)
	err = frame.PutBytes(ctx, p.s, name, frame.KindPebbleSnapshot, checkpointVersion, payload, storage.PutOptions{IfAbsent: true}, p.objectIdentity(name))
	if err != nil && !errors.Is(err, storage.ErrExists) { // an existing snapshot of v serves as well
		return fmt.Errorf("state: write snapshot %s: %w", name, err)
	}
	p.manifests[v] = m.sharedNames(p.dir)
	p.mu.Lock()
	p.snaps[v] = true
	p.mu.Unlock()
	c := &p.counters
	c.snapshotsWritten.Add(1)
	c.uploadedBytes.Add(uploadedBytes)
	c.uploadedFiles.Add(uploadedFiles)
	c.reusedFiles.Add(reused)
	c.lastUploadedBytes.Store(uploadedBytes)
	c.lastUploadedFiles.Store(uploadedFiles)
	c.lastReusedFiles.Store(reused)
	c.lastSnapshotMillis.Store(time.Since(start).Milliseconds())
	p.opts.Logger.Debug("state snapshot written", "store", p.dir, "version", v, "uploadedBytes", uploadedBytes,
		"uploadedFiles", uploadedFiles, "reusedFiles", reused, "manifestBytes", len(payload))
	return nil
}

// hashFile returns the size, CRC32C and SHA-256 of a file.
func hashFile(path string) (fileSum, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileSum{}, fmt.Errorf("pebblestate: %w", err)
	}
	defer f.Close()
	h, c := sha256.New(), crc32.New(iox.Castagnoli)
	n, err := io.Copy(io.MultiWriter(h, c), f)
	if err != nil {
		return fileSum{}, fmt.Errorf("pebblestate: read %s: %w", path, err)
	}
	sum := fileSum{size: n, crc: c.Sum32()}
	h.Sum(sum.hash[:0])
	return sum, nil
}

// uploadFile stores a local file as an object with a conditional create;
// an object of that name already holds the same bytes (the name is their
// hash).
func uploadFile(ctx context.Context, s storage.Storage, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	defer f.Close()
	err = s.Put(ctx, name, f, storage.PutOptions{IfAbsent: true})
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	return nil
}

// readManifest reads and decodes the snapshot manifest of version v.
func (p *Provider) readManifest(ctx context.Context, v int64) (*checkpointManifest, error) {
	name := CheckpointName(p.dir, v)
	payload, _, err := frame.GetBytes(ctx, p.s, name, frame.KindPebbleSnapshot, checkpointVersion, p.objectIdentity(name))
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(payload, name)
	if err != nil {
		return nil, err
	}
	if m.Version != v {
		return nil, &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("it describes version %d", m.Version)}
	}
	return m, nil
}

// restore writes the files of the snapshot of version v into dir, a new
// directory: the shared files, each checked against the size, CRC32C and
// SHA-256 the manifest gives, then the small files, Pebble's markers last,
// so that an interrupted restore never looks like a database. It returns
// the sums of the shared files.
func (p *Provider) restore(ctx context.Context, v int64, dir string) (map[string]fileSum, error) {
	m, err := p.readManifest(ctx, v)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pebblestate: %w", err)
	}
	manifestName := CheckpointName(p.dir, v)
	sums := map[string]fileSum{}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, downloadConcurrency)
	)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, f := range m.Files {
		if !f.Shared {
			continue
		}
		sums[f.Name] = fileSum{size: f.Size, crc: f.CRC, hash: f.Hash}
		ext, _ := sharedExt(f.Name)
		obj := SharedName(p.dir, f.Hash, ext)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := p.download(dctx, obj, filepath.Join(dir, f.Name), f, manifestName)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	inline := slices.DeleteFunc(slices.Clone(m.Files), func(f checkpointFile) bool { return f.Shared })
	slices.SortStableFunc(inline, func(a, b checkpointFile) int { // markers last
		am, bm := strings.HasPrefix(a.Name, "marker."), strings.HasPrefix(b.Name, "marker.")
		switch {
		case am == bm:
			return 0
		case am:
			return 1
		}
		return -1
	})
	for _, f := range inline {
		if err := writeFileSync(filepath.Join(dir, f.Name), f.Data); err != nil {
			return nil, err
		}
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return sums, nil
}

// download fetches a shared object into path, checking it against the
// manifest's entry.
func (p *Provider) download(ctx context.Context, obj, path string, f checkpointFile, manifest string) error {
	rc, err := p.s.Get(ctx, obj)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%s lists %s (%s), which is missing: %w", manifest, f.Name, obj, err)
		}
		return fmt.Errorf("download %s: %w", obj, err)
	}
	defer rc.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	defer out.Close()
	h, c := sha256.New(), crc32.New(iox.Castagnoli)
	n, err := io.Copy(io.MultiWriter(out, h, c), rc)
	if err != nil {
		return fmt.Errorf("download %s: %w", obj, err)
	}
	p.counters.downloadedBytes.Add(n)
	var hash [32]byte
	h.Sum(hash[:0])
	switch {
	case n != f.Size:
		return &storage.CorruptError{Object: obj, Offset: -1, Reason: fmt.Sprintf("it has %d bytes, and %s says %d", n, manifest, f.Size)}
	case c.Sum32() != f.CRC:
		return &storage.CorruptError{Object: obj, Offset: -1, Reason: fmt.Sprintf("its CRC32C is %08x, and %s says %08x", c.Sum32(), manifest, f.CRC)}
	case hash != f.Hash:
		return &storage.CorruptError{Object: obj, Offset: -1, Reason: fmt.Sprintf("its SHA-256 is %x, and %s says %x", hash, manifest, f.Hash)}
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	return out.Close()
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("pebblestate: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("pebblestate: %w", err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("pebblestate: fsync %s: %w", dir, err)
	}
	return nil
}
