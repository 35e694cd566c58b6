package stream

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
)

// statefulOp is what every stateful operator shares: for each partition
// of in, it opens the partition's state store of operator op at the
// version the previous batches left (version = batch ID), lets fn read the
// partition's records and change the store, and commits version ID+1 only
// if fn succeeded, so nothing is committed from a partial partition. A
// replayed batch commits the same changes, which the store accepts. The
// output is kept for the rest of the batch, so that a sink that reads it
// twice does not commit twice.
func statefulOp[In, Out any](b *Batch, op int64, schema state.Schema, in *dataset.Dataset[In],
	fn func(ctx context.Context, st state.Store, recs iter.Seq2[In, error]) ([]Out, error)) *dataset.Dataset[Out] {
	out := dataset.MapPartitions(in, func(ctx context.Context, part int, recs iter.Seq2[In, error]) iter.Seq2[Out, error] {
		return func(yield func(Out, error) bool) {
			outs, err := withStore(ctx, b, storeKey{op, part}, schema, func(st state.Store) ([]Out, error) {
				return fn(ctx, st, recs)
			})
			if err != nil {
				var zero Out
				yield(zero, err)
				return
			}
			for _, o := range outs {
				if !yield(o, nil) {
					return
				}
			}
		}
	})
	kept := out.Persist(dataset.MemoryAndDisk)
	b.mu.Lock()
	b.release = append(b.release, kept.Unpersist)
	b.mu.Unlock()
	return kept
}

// withStore opens the store of k at the batch's version, runs fn, and
// commits, recording the store's figures for the batch's progress.
func withStore[Out any](ctx context.Context, b *Batch, k storeKey, schema state.Schema, fn func(st state.Store) ([]Out, error)) ([]Out, error) {
	p, err := b.stores.get(ctx, k, schema)
	if err != nil {
		return nil, err
	}
	st, err := p.GetStore(ctx, b.ID)
	if err != nil {
		return nil, fmt.Errorf("stream: batch %d: state of operator %d, partition %d: %w", b.ID, k.op, k.part, err)
	}
	defer st.Abort() // no-op after Commit
	outs, err := fn(st)
	if err != nil {
		return nil, fmt.Errorf("stream: batch %d: operator %d, partition %d: %w", b.ID, k.op, k.part, err)
	}
	m := st.Metrics()
	start := time.Now()
	defer func() { b.commitNanos.Add(int64(time.Since(start))) }()
	if _, err := st.Commit(ctx); err != nil {
		return nil, fmt.Errorf("stream: batch %d: commit state of operator %d, partition %d: %w", b.ID, k.op, k.part, err)
	}
	m.BytesWritten = st.Metrics().BytesWritten
	b.markCommitted(k, m)
	return outs, nil
}
