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
			// A failure of the input (the source, an operator upstream) is
			// passed on as it is: it is not this operator's.
			var inErr error
			input := func(yield func(In, error) bool) {
				for r, err := range recs {
					if err != nil {
						inErr = err
					}
					if !yield(r, err) || err != nil {
						return
					}
				}
			}
			outs, err := withStore(ctx, b, storeKey{op, part}, schema, func(st state.Store) ([]Out, error) {
				outs, err := fn(ctx, st, input)
				if err != nil && inErr != nil {
					return nil, &inputFailure{inErr}
				}
				return outs, err
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
	fail := func(doing string, err error) error {
		if ie, ok := err.(*inputFailure); ok {
			return ie.err
		}
		return &OperatorError{Batch: b.ID, Operator: k.op, Kind: b.kind(k.op), Partition: k.part, Doing: doing, Err: err}
	}
	p, err := b.stores.get(ctx, k, schema)
	if err != nil {
		return nil, fail("open state", err)
	}
	st, err := p.GetStore(ctx, b.ID)
	if err != nil {
		return nil, fail(fmt.Sprintf("open state at version %d", b.ID), err)
	}
	defer st.Abort() // no-op after Commit
	outs, err := fn(st)
	if err != nil {
		return nil, fail("process records", err)
	}
	m := st.Metrics()
	start := time.Now()
	defer func() { b.commitNanos.Add(int64(time.Since(start))) }()
	if _, err := st.Commit(ctx); err != nil {
		return nil, fail(fmt.Sprintf("commit state version %d", b.ID+1), err)
	}
	m.BytesWritten = st.Metrics().BytesWritten
	b.markCommitted(k, m)
	return outs, nil
}

// inputFailure marks the failure of an operator's input.
type inputFailure struct{ err error }

func (e *inputFailure) Error() string { return e.err.Error() }
