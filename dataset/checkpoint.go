package dataset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go/compress"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

// ManifestObject is the name of a checkpoint's manifest, in its directory.
// A checkpoint is complete exactly when its manifest exists.
const ManifestObject = "_manifest"

const manifestVersion = 1

// Manifest describes a complete reliable checkpoint. It is written after
// every part is stored, so a crash mid-write leaves no manifest, and
// nothing that looks complete.
type Manifest struct {
	Type       string     `json:"type"`     // Go type of the records, e.g. "dataset.Pair[string,int]"
	Encoding   string     `json:"encoding"` // "parquet" or "gob"
	Partitions []PartInfo `json:"partitions"`
	Created    time.Time  `json:"created"`
	Lineage    string     `json:"lineage"` // Explain() of what was checkpointed
}

// CheckpointOptions modify CheckpointWith.
type CheckpointOptions struct {
	// Eager writes the checkpoint now. Otherwise it is written while the
	// first action computes the dataset, with no second computation.
	Eager bool
	// Keep keeps the checkpoint when the session closes (see
	// Options.KeepCheckpoints), for ReadCheckpoint from another process.
	Keep bool
	// Compression of the Parquet parts: "none" (default), "snappy" or
	// "zstd". Checkpoints are usually short-lived and written on the
	// critical path, so by default they are not compressed (Spark:
	// spark.checkpoint.compress, default false).
	Compression string
}

// Checkpoint materialises the dataset to the session's checkpoint
// location and returns a dataset whose lineage is a single scan of what
// was written (Spark's Dataset.checkpoint). Eager writes now; lazy
// (eager=false) writes while the first action computes the returned
// dataset, without computing anything twice, and cuts its lineage once
// every partition is written. Records are stored as Parquet when T is a
// struct Parquet can hold, and in a framed binary encoding otherwise.
// Checkpoints are deleted when the session closes, unless kept.
func (d *Dataset[T]) Checkpoint(ctx context.Context, eager bool) (*Dataset[T], error) {
	return d.CheckpointWith(ctx, CheckpointOptions{Eager: eager})
}

// CheckpointWith is Checkpoint with options.
func (d *Dataset[T]) CheckpointWith(ctx context.Context, opts CheckpointOptions) (*Dataset[T], error) {
	codec, err := checkpointCodec(opts.Compression)
	if err != nil {
		return nil, err
	}
	st, err := d.s.checkpointStorage(ctx)
	if err != nil {
		return nil, err
	}
	d.s.mu.Lock()
	d.s.checkpoints++
	dir := fmt.Sprintf("%s/ckpt-%d", d.s.id, d.s.checkpoints)
	d.s.mu.Unlock()
	cp := &reliable[T]{
		st: st, dir: dir, encoding: encodingFor[T](), lineage: d.Explain(), codec: codec,
		parts: make([]*PartInfo, d.NumPartitions()), locks: make([]sync.Mutex, d.NumPartitions()),
	}
	keep := opts.Keep || d.s.opts.KeepCheckpoints
	d.s.onClose(cleanup{what: "checkpoint " + st.Location() + "/" + dir, keep: keep,
		fn: func(ctx context.Context) error { return deleteCheckpoint(ctx, st, dir) }})
	out := newDataset[T](d.s, "LazyCheckpoint "+cp.where(), d.NumPartitions(), []*node{d.n}, nil)
	cp.node = out.n
	out.compute = func(ctx context.Context, part int, emit func(T) error) error {
		return cp.compute(ctx, d, part, emit)
	}
	out.ckpt = cp
	if opts.Eager {
		err := runPartitions(ctx, d.s, d.NumPartitions(), func(ctx context.Context, p int) error {
			return partitionError(d.n, p, out.compute(ctx, p, func(T) error { return nil }))
		})
		if err != nil {
			return nil, fmt.Errorf("dataset: checkpoint to %s: %w", cp.where(), err)
		}
	}
	return out, nil
}

// reliable is the state of one reliable checkpoint.
type reliable[T any] struct {
	codec    compress.Codec
	st       storage.Storage
	dir      string
	encoding string
	lineage  string
	node     *node

	locks    []sync.Mutex // one per partition: a partition is written once
	mu       sync.Mutex
	parts    []*PartInfo // written parts
	complete bool
	deleted  bool
}

func (c *reliable[T]) where() string { return c.st.Location() + "/" + c.dir }

// compute reads partition p from the checkpoint if it is written, and
// otherwise computes it from d, writing it on the way (the tee of a lazy
// checkpoint).
func (c *reliable[T]) compute(ctx context.Context, d *Dataset[T], p int, emit func(T) error) error {
	c.locks[p].Lock()
	c.mu.Lock()
	info, deleted := c.parts[p], c.deleted
	c.mu.Unlock()
	if deleted {
		c.locks[p].Unlock()
		return fmt.Errorf("dataset: checkpoint %s was deleted (session closed, or replaced by a PeriodicCheckpointer)", c.where())
	}
	if info != nil {
		c.locks[p].Unlock()
		return readPart(ctx, c.st, c.dir+"/"+info.File, c.encoding, *info, emit)
	}
	defer c.locks[p].Unlock()
	name := partName(c.encoding, p)
	w := startPart[T](ctx, c.st, c.dir+"/"+name, c.encoding, c.codec)
	err := d.compute(ctx, p, func(t T) error {
		if err := w.write(t); err != nil {
			return err
		}
		return emit(t)
	})
	if err != nil {
		w.abort(err) // an interrupted partition is not stored
		return err
	}
	pi, err := w.finish()
	if err != nil {
		return err
	}
	pi.File = name
	c.mu.Lock()
	c.parts[p] = &pi
	c.mu.Unlock()
	return c.completeIfDone(ctx)
}

// completeIfDone writes the manifest once every part is stored, and cuts
// the lineage.
func (c *reliable[T]) completeIfDone(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.complete {
		return nil
	}
	m := Manifest{Type: reflect.TypeFor[T]().String(), Encoding: c.encoding, Created: time.Now().UTC(), Lineage: c.lineage}
	for _, p := range c.parts {
		if p == nil {
			return nil
		}
		m.Partitions = append(m.Partitions, *p)
	}
	payload, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	name := c.dir + "/" + ManifestObject
	if err := frame.PutBytes(ctx, c.st, name, frame.KindManifest, manifestVersion, payload, storage.PutOptions{IfAbsent: true}); err != nil {
		return fmt.Errorf("dataset: write checkpoint manifest %s: %w", name, err)
	}
	c.complete = true
	c.node.replace("CheckpointScan "+c.where(), nil)
	return nil
}

// deleteCheckpoint deletes a checkpoint, manifest first, so that a crash
// midway never leaves a manifest naming missing parts.
func deleteCheckpoint(ctx context.Context, st storage.Storage, dir string) error {
	if err := st.Delete(ctx, dir+"/"+ManifestObject); err != nil {
		return err
	}
	objs, err := st.List(ctx, dir+"/")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := st.Delete(ctx, o.Name); err != nil {
			return err
		}
	}
	return nil
}

// ReadCheckpoint opens a complete reliable checkpoint, written by this or
// another process and kept, as a dataset. location is the checkpoint's
// directory as a storage URL or path (CheckpointLocation of the dataset
// that wrote it). T must be the type it was written with.
func ReadCheckpoint[T any](ctx context.Context, s *Session, location string) (*Dataset[T], error) {
	st, err := storage.Open(ctx, location)
	if err != nil {
		return nil, err
	}
	return readCheckpointFrom[T](ctx, s, st, "")
}

// readCheckpointFrom opens the checkpoint whose objects are under dir ("":
// the root) of st.
func readCheckpointFrom[T any](ctx context.Context, s *Session, st storage.Storage, dir string) (*Dataset[T], error) {
	object := func(name string) string {
		if dir == "" {
			return name
		}
		return dir + "/" + name
	}
	location := strings.TrimSuffix(st.Location(), "/")
	if dir != "" {
		location += "/" + dir
	}
	m, err := readManifest(ctx, st, dir)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("dataset: %s has no %s: it is not a complete checkpoint (a write that did not finish leaves none): %w", location, ManifestObject, err)
		}
		return nil, err
	}
	if want := reflect.TypeFor[T]().String(); m.Type != want {
		return nil, fmt.Errorf("dataset: checkpoint %s holds records of type %s, not %s", location, m.Type, want)
	}
	if m.Encoding != encodingFor[T]() {
		return nil, fmt.Errorf("dataset: checkpoint %s is encoded as %s; this build encodes %s as %s", location, m.Encoding, m.Type, encodingFor[T]())
	}
	return newDataset(s, "CheckpointScan "+location, len(m.Partitions), nil,
		func(ctx context.Context, part int, emit func(T) error) error {
			info := m.Partitions[part]
			return readPart(ctx, st, object(info.File), m.Encoding, info, emit)
		}), nil
}

// CheckpointLocation returns the storage URL of the dataset's reliable
// checkpoint directory, or "" if the dataset is not a reliable checkpoint.
func (d *Dataset[T]) CheckpointLocation() string {
	if c, ok := d.ckpt.(*reliable[T]); ok {
		return c.where()
	}
	return ""
}
