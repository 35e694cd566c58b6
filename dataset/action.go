package dataset

import (
	"context"
	"iter"
)

// Collect runs the plan and returns every record, partition by partition
// in order.
func (d *Dataset[T]) Collect(ctx context.Context) ([]T, error) {
	parts := make([][]T, d.NumPartitions())
	err := runPartitions(ctx, d.s, len(parts), func(ctx context.Context, p int) error {
		return partitionError(d.n, p, d.compute(ctx, p, func(t T) error {
			parts[p] = append(parts[p], t)
			return nil
		}))
	})
	if err != nil {
		return nil, err
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out, nil
}

// Count runs the plan and returns the number of records.
func (d *Dataset[T]) Count(ctx context.Context) (int64, error) {
	counts := make([]int64, d.NumPartitions())
	err := runPartitions(ctx, d.s, len(counts), func(ctx context.Context, p int) error {
		return partitionError(d.n, p, d.compute(ctx, p, func(T) error {
			counts[p]++
			return nil
		}))
	})
	var total int64
	for _, c := range counts {
		total += c
	}
	return total, err
}

// Reduce combines all records with f, which must be associative: within
// each partition in order, then the partitions' results in partition
// order, so the result is the same every run. It reports false for an
// empty dataset.
func (d *Dataset[T]) Reduce(ctx context.Context, f func(a, b T) T) (T, bool, error) {
	type acc struct {
		v  T
		ok bool
	}
	accs := make([]acc, d.NumPartitions())
	err := runPartitions(ctx, d.s, len(accs), func(ctx context.Context, p int) error {
		return partitionError(d.n, p, d.compute(ctx, p, func(t T) error {
			if accs[p].ok {
				accs[p].v = f(accs[p].v, t)
			} else {
				accs[p] = acc{t, true}
			}
			return nil
		}))
	})
	var zero T
	if err != nil {
		return zero, false, err
	}
	var out acc
	for _, a := range accs {
		switch {
		case !a.ok:
		case out.ok:
			out.v = f(out.v, a.v)
		default:
			out = a
		}
	}
	return out.v, out.ok, nil
}

// ForEachPartition runs f on every partition, Parallelism at a time. f
// gets the partition's records as an iterator of (record, nil), ending with
// (zero, err) if computing them fails: check it before acting on a
// partition. An error from f, or from computing the records, fails the
// action.
func (d *Dataset[T]) ForEachPartition(ctx context.Context, f func(ctx context.Context, part int, records iter.Seq2[T, error]) error) error {
	return runPartitions(ctx, d.s, d.NumPartitions(), func(ctx context.Context, p int) error {
		var inErr error
		err := f(ctx, p, d.records(ctx, p, &inErr))
		if err == nil {
			err = inErr
		}
		return partitionError(d.n, p, err)
	})
}
