package dataset

import (
	"context"
	"fmt"
	"iter"
)

// FromSlice makes a dataset of the records, split into partitions (0: the
// session's default) of contiguous runs of nearly equal size. The slice
// must not change while the dataset is in use.
func FromSlice[T any](s *Session, records []T, partitions int) *Dataset[T] {
	if partitions <= 0 {
		partitions = s.opts.Partitions
	}
	n := len(records)
	return newDataset(s, fmt.Sprintf("FromSlice %d records", n), partitions, nil,
		func(ctx context.Context, part int, emit func(T) error) error {
			lo, hi := part*n/partitions, (part+1)*n/partitions
			for i := lo; i < hi; i++ {
				if (i-lo)%checkEvery == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				if err := emit(records[i]); err != nil {
					return err
				}
			}
			return nil
		})
}

// Map applies f to every record.
func Map[T, U any](d *Dataset[T], f func(T) U) *Dataset[U] {
	return newDataset(d.s, "Map", d.NumPartitions(), []*node{d.n},
		func(ctx context.Context, part int, emit func(U) error) error {
			return d.compute(ctx, part, func(t T) error { return emit(f(t)) })
		})
}

// MapErr applies f to every record; an error from f fails the action and
// is reported with the partition.
func MapErr[T, U any](d *Dataset[T], f func(T) (U, error)) *Dataset[U] {
	return newDataset(d.s, "Map", d.NumPartitions(), []*node{d.n},
		func(ctx context.Context, part int, emit func(U) error) error {
			return d.compute(ctx, part, func(t T) error {
				u, err := f(t)
				if err != nil {
					return err
				}
				return emit(u)
			})
		})
}

// Filter keeps the records for which keep returns true.
func (d *Dataset[T]) Filter(keep func(T) bool) *Dataset[T] {
	return newDataset(d.s, "Filter", d.NumPartitions(), []*node{d.n},
		func(ctx context.Context, part int, emit func(T) error) error {
			return d.compute(ctx, part, func(t T) error {
				if keep(t) {
					return emit(t)
				}
				return nil
			})
		})
}

// FlatMap replaces every record with the records f yields.
func FlatMap[T, U any](d *Dataset[T], f func(T) iter.Seq[U]) *Dataset[U] {
	return newDataset(d.s, "FlatMap", d.NumPartitions(), []*node{d.n},
		func(ctx context.Context, part int, emit func(U) error) error {
			return d.compute(ctx, part, func(t T) error {
				for u := range f(t) {
					if err := emit(u); err != nil {
						return err
					}
				}
				return nil
			})
		})
}

// MapPartitions replaces each partition with what f makes of it. f gets
// the partition's records as an iterator of (record, nil), ending with
// (zero, err) if computing them fails, and yields the output records, or
// an error that fails the action. A function with side effects must check
// the input's error before it acts: a failed partition's input is partial.
func MapPartitions[T, U any](d *Dataset[T], f func(ctx context.Context, part int, in iter.Seq2[T, error]) iter.Seq2[U, error]) *Dataset[U] {
	return newDataset(d.s, "MapPartitions", d.NumPartitions(), []*node{d.n},
		func(ctx context.Context, part int, emit func(U) error) error {
			var inErr error
			for u, err := range f(ctx, part, d.records(ctx, part, &inErr)) {
				if err != nil {
					return err
				}
				if err := emit(u); err != nil {
					return err
				}
			}
			return inErr
		})
}

// Union concatenates datasets: the partitions of the first, then those of
// the second, and so on.
func Union[T any](first *Dataset[T], more ...*Dataset[T]) *Dataset[T] {
	all := append([]*Dataset[T]{first}, more...)
	var parents []*node
	total := 0
	for _, d := range all {
		parents = append(parents, d.n)
		total += d.NumPartitions()
	}
	return newDataset(first.s, "Union", total, parents,
		func(ctx context.Context, part int, emit func(T) error) error {
			for _, d := range all {
				if n := d.NumPartitions(); part >= n {
					part -= n
					continue
				}
				return d.compute(ctx, part, emit)
			}
			return fmt.Errorf("dataset: Union has no partition %d", part)
		})
}

// FromFunc makes a dataset of `partitions` partitions whose records
// produce emits, in order: the way to plug in a custom source. op names
// the source in Explain. produce must be deterministic for the engine's
// guarantees (replay, lazy checkpoints) to hold.
func FromFunc[T any](s *Session, op string, partitions int, produce func(ctx context.Context, part int, emit func(T) error) error) *Dataset[T] {
	return newDataset(s, op, partitions, nil, produce)
}
