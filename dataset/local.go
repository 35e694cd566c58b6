package dataset

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/internal/iox"
)

// StorageLevel says where Persist keeps computed partitions.
type StorageLevel int

const (
	// MemoryOnly keeps partitions in memory while the session's MemoryLimit
	// allows, and recomputes those that did not fit (Spark: MEMORY_ONLY).
	MemoryOnly StorageLevel = iota
	// MemoryAndDisk spills partitions over the MemoryLimit to SpillDir
	// (Spark: MEMORY_AND_DISK).
	MemoryAndDisk
)

// localStore keeps the computed partitions of a dataset in this process:
// in memory, or spilled to a local file. Lost if the process dies.
type localStore[T any] struct {
	s     *Session
	level StorageLevel
	node  *node  // the dataset's node
	cut   bool   // a local checkpoint: cut the lineage when complete
	label string // operation shown once the lineage is cut

	locks []sync.Mutex
	mu    sync.Mutex
	parts []*localPart[T]
	done  int
	freed bool
}

type localPart[T any] struct {
	mem     []T
	file    string // spilled: a framed gob file
	records int64
	bytes   int64 // estimated memory held
}

func newLocalStore[T any](s *Session, parts int, level StorageLevel) *localStore[T] {
	return &localStore[T]{s: s, level: level, locks: make([]sync.Mutex, parts), parts: make([]*localPart[T], parts)}
}

// compute serves partition p from the store, or computes it from parent,
// emitting as it goes, and keeps it.
func (l *localStore[T]) compute(ctx context.Context, parent *Dataset[T], p int, emit func(T) error) error {
	l.locks[p].Lock()
	defer l.locks[p].Unlock()
	l.mu.Lock()
	lp := l.parts[p]
	l.mu.Unlock()
	if lp != nil {
		return lp.emit(ctx, emit)
	}
	var recs []T
	err := parent.compute(ctx, p, func(t T) error {
		recs = append(recs, t)
		return emit(t)
	})
	if err != nil {
		return err
	}
	lp, err = l.keep(recs)
	if err != nil || lp == nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.freed {
		lp.free(l.s)
		return nil
	}
	l.parts[p] = lp
	l.done++
	if l.cut && l.done == len(l.parts) {
		l.node.replace(l.label, nil)
	}
	return nil
}

// keep stores a computed partition in memory if the session's memory limit
// allows, spills it otherwise (MemoryAndDisk), or returns nil (MemoryOnly:
// recompute next time).
func (l *localStore[T]) keep(recs []T) (*localPart[T], error) {
	est := estimateBytes(recs)
	if l.s.reserve(est) {
		return &localPart[T]{mem: recs, records: int64(len(recs)), bytes: est}, nil
	}
	if l.level == MemoryOnly {
		return nil, nil
	}
	f, err := os.CreateTemp(l.s.opts.SpillDir, "cairn-spill-*.records")
	if err != nil {
		return nil, fmt.Errorf("dataset: spill a partition to %s: %w (set Options.SpillDir, or raise Options.MemoryLimit)", l.s.opts.SpillDir, err)
	}
	name := f.Name()
	bw := bufio.NewWriterSize(f, 256<<10)
	fw := frame.NewWriter(bw, frame.KindRecords, recordsVersion)
	enc := gob.NewEncoder(fw)
	for i := range recs {
		if err = enc.Encode(&recs[i]); err != nil {
			break
		}
	}
	if err == nil {
		err = fw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("dataset: spill a partition to %s: %w", name, err)
	}
	l.s.onClose(cleanup{what: "spill file " + name, fn: func(context.Context) error {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}})
	return &localPart[T]{file: name, records: int64(len(recs))}, nil
}

func (lp *localPart[T]) emit(ctx context.Context, emit func(T) error) error {
	if lp.file == "" {
		return emitAll(ctx, [][]T{lp.mem}, emit)
	}
	f, err := os.Open(lp.file)
	if err != nil {
		return fmt.Errorf("dataset: read spilled partition: %w", err)
	}
	defer f.Close()
	fr, err := frame.NewReader(bufio.NewReaderSize(f, 256<<10), lp.file, frame.KindRecords, recordsVersion)
	if err != nil {
		return err
	}
	dec := gob.NewDecoder(fr)
	for n := int64(0); ; n++ {
		var t T
		if err := dec.Decode(&t); err != nil {
			if errors.Is(err, io.EOF) && n == lp.records {
				return nil
			}
			return fmt.Errorf("dataset: read spilled partition %s, record %d: %w", lp.file, n, err)
		}
		if n%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := emit(t); err != nil {
			return err
		}
	}
}

func (lp *localPart[T]) free(s *Session) {
	if lp.file != "" {
		os.Remove(lp.file)
	}
	s.release(lp.bytes)
}

// unpersist drops every kept partition.
func (l *localStore[T]) unpersist() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, lp := range l.parts {
		if lp != nil {
			lp.free(l.s)
			l.parts[i] = nil
		}
	}
	l.done = 0
	if l.cut {
		l.freed = true // a local checkpoint has no lineage left to recompute from
	}
}

// estimateBytes estimates the memory that records hold from the gob size
// of a sample of them.
func estimateBytes[T any](recs []T) int64 {
	if len(recs) == 0 {
		return 0
	}
	n := min(len(recs), 64)
	cw := iox.CountingWriter{W: io.Discard}
	enc := gob.NewEncoder(&cw)
	for i := range n {
		enc.Encode(&recs[i])
	}
	return cw.N * int64(len(recs)) / int64(n)
}

// Persist returns a dataset that keeps each partition the first time an
// action computes it, and serves it from there afterwards; its lineage
// stays (Spark's persist). See StorageLevel.
func (d *Dataset[T]) Persist(level StorageLevel) *Dataset[T] {
	l := newLocalStore[T](d.s, d.NumPartitions(), level)
	out := newDataset(d.s, "Persist", d.NumPartitions(), []*node{d.n},
		func(ctx context.Context, part int, emit func(T) error) error { return l.compute(ctx, d, part, emit) })
	l.node = out.n
	out.local = l
	return out
}

// Cache is Persist(MemoryAndDisk).
func (d *Dataset[T]) Cache() *Dataset[T] { return d.Persist(MemoryAndDisk) }

// Unpersist drops the partitions kept by Persist, Cache or LocalCheckpoint
// and releases their memory. A local checkpoint whose partitions are
// dropped cannot recompute them: later actions on it fail.
func (d *Dataset[T]) Unpersist() {
	if l, ok := d.local.(*localStore[T]); ok {
		l.unpersist()
	}
}

// LocalCheckpoint materialises the dataset in this process (memory,
// spilling to SpillDir over the MemoryLimit) and returns a dataset whose
// lineage is cut once every partition is kept, like Spark's
// localCheckpoint. It is faster than Checkpoint but LOST IF THE PROCESS
// DIES: a restarted job must recompute it from its sources. Eager computes
// it now; lazy, during the first action.
func (d *Dataset[T]) LocalCheckpoint(ctx context.Context, eager bool) (*Dataset[T], error) {
	l := newLocalStore[T](d.s, d.NumPartitions(), MemoryAndDisk)
	l.cut, l.label = true, "LocalCheckpointScan (in this process)"
	out := newDataset[T](d.s, "LazyLocalCheckpoint", d.NumPartitions(), []*node{d.n}, nil)
	out.compute = func(ctx context.Context, part int, emit func(T) error) error {
		l.mu.Lock()
		lost := l.freed
		l.mu.Unlock()
		if lost {
			return errors.New("dataset: local checkpoint was released (session closed or Unpersist)")
		}
		return l.compute(ctx, d, part, emit)
	}
	l.node = out.n
	out.local = l
	d.s.onClose(cleanup{what: "local checkpoint", fn: func(context.Context) error {
		l.unpersist()
		return nil
	}})
	if eager {
		if _, err := out.Count(ctx); err != nil {
			return nil, fmt.Errorf("dataset: local checkpoint: %w", err)
		}
	}
	return out, nil
}
