package dataset

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
)

// computeFunc produces the records of one partition, in order, by calling
// emit for each. It stops early when emit returns an error and returns it.
type computeFunc[T any] func(ctx context.Context, part int, emit func(T) error) error

// node is one step of a dataset's lineage, for Explain and LineageDepth.
// A node whose lineage was cut (a checkpoint) swaps its parents for a scan.
type node struct {
	mu      sync.Mutex
	op      string  // "Map", "ReduceByKey", "ParquetScan dir", ...
	parts   int     // number of partitions
	parents []*node // inputs
}

func (n *node) snapshot() (string, int, []*node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.op, n.parts, n.parents
}

// replace swaps the node's operation and inputs (when a checkpoint cuts the
// lineage, the node becomes a scan of the checkpoint).
func (n *node) replace(op string, parents []*node) {
	n.mu.Lock()
	n.op, n.parents = op, parents
	n.mu.Unlock()
}

// Dataset is a lazy, partitioned collection of records of type T: a plan
// that actions (Collect, Count, WriteParquet, ...) run. Transformations
// return new datasets and compute nothing. Safe for concurrent use.
//
// Partitioning is deterministic: the same plan over the same input gives
// the same records in the same partitions in the same order, every run.
type Dataset[T any] struct {
	s       *Session
	n       *node
	compute computeFunc[T]
	ckpt    any // *reliable[T] for a reliable checkpoint
	local   any // *localStore[T] for Persist, Cache and LocalCheckpoint
}

// Session returns the session the dataset belongs to.
func (d *Dataset[T]) Session() *Session { return d.s }

// NumPartitions returns the number of partitions.
func (d *Dataset[T]) NumPartitions() int {
	_, parts, _ := d.n.snapshot()
	return parts
}

func newDataset[T any](s *Session, op string, parts int, parents []*node, compute computeFunc[T]) *Dataset[T] {
	return &Dataset[T]{s: s, n: &node{op: op, parts: parts, parents: parents}, compute: compute}
}

// Explain returns the lineage as an indented tree, one operation a line
// with its number of partitions, the dataset itself first, like Spark's
// analyzed plan. A sub-plan that several operations share (a dataset used
// twice, as iterative jobs do) is printed once, numbered, and referred to
// by its number afterwards, so the text grows with the number of
// operations, not the number of paths.
func (d *Dataset[T]) Explain() string {
	var b strings.Builder
	ids := map[*node]int{}
	shared := map[*node]bool{}
	var count func(n *node)
	seen := map[*node]bool{}
	count = func(n *node) { // mark nodes reached by more than one path
		if seen[n] {
			shared[n] = true
			return
		}
		seen[n] = true
		_, _, parents := n.snapshot()
		for _, p := range parents {
			count(p)
		}
	}
	count(d.n)
	var walk func(n *node, depth int)
	walk = func(n *node, depth int) {
		op, parts, parents := n.snapshot()
		prefix := ""
		if depth > 0 {
			prefix = strings.Repeat("   ", depth-1) + "+- "
		}
		unit := "partitions"
		if parts == 1 {
			unit = "partition"
		}
		if id, ok := ids[n]; ok {
			fmt.Fprintf(&b, "%s%s [%d %s] (#%d, shown above)\n", prefix, op, parts, unit, id)
			return
		}
		label := ""
		if shared[n] {
			ids[n] = len(ids) + 1
			label = fmt.Sprintf(" #%d", ids[n])
		}
		fmt.Fprintf(&b, "%s%s [%d %s]%s\n", prefix, op, parts, unit, label)
		for _, p := range parents {
			walk(p, depth+1)
		}
	}
	walk(d.n, 0)
	return b.String()
}

// LineageDepth returns the depth of the lineage: 1 for a source or a
// checkpoint scan, one more per transformation above it. Each operation is
// visited once, however many paths lead to it.
func (d *Dataset[T]) LineageDepth() int {
	memo := map[*node]int{}
	var depth func(n *node) int
	depth = func(n *node) int {
		if v, ok := memo[n]; ok {
			return v
		}
		_, _, parents := n.snapshot()
		m := 0
		for _, p := range parents {
			m = max(m, depth(p))
		}
		memo[n] = m + 1
		return m + 1
	}
	return depth(d.n)
}

// errStop ends a partition's computation early without an error.
var errStop = errors.New("dataset: stop")

// checkEvery is how many records a source emits between context checks.
const checkEvery = 1024

// records returns an iterator over one partition, for user functions that
// take one (MapPartitions, ForEachPartition): each record with a nil
// error, and, if computing the partition fails, a last item with the
// error, so that the function sees the failure before it acts on a partial
// partition. Breaking out of the loop stops the computation. The error is
// also stored in *errp, so that the action fails even if the function
// ignores it.
func (d *Dataset[T]) records(ctx context.Context, part int, errp *error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		err := d.compute(ctx, part, func(t T) error {
			if !yield(t, nil) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			*errp = err
			var zero T
			yield(zero, err)
		}
	}
}

// runPartitions runs fn for every partition, Parallelism at a time. The
// first error cancels the others and is returned, naming the partition.
func runPartitions(ctx context.Context, s *Session, parts int, fn func(ctx context.Context, part int) error) error {
	if s.isClosed() {
		return ErrSessionClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(s.opts.Parallelism, parts) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for part := range next {
				if ctx.Err() != nil {
					continue // a partition failed: start no other
				}
				if err := fn(ctx, part); err != nil {
					once.Do(func() {
						first = err
						cancel(err)
					})
				}
			}
		}()
	}
feed:
	for part := range parts {
		select {
		case next <- part:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// partitionError names the partition and the dataset an error came from.
func partitionError(d *node, part int, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pe *PartitionError
	if errors.As(err, &pe) {
		return err
	}
	op, _, _ := d.snapshot()
	return &PartitionError{Op: op, Partition: part, Err: err}
}

// PartitionError says which partition of which operation failed.
type PartitionError struct {
	Op        string
	Partition int
	Err       error
}

func (e *PartitionError) Error() string {
	return fmt.Sprintf("dataset: partition %d of %s: %s", e.Partition, e.Op, strings.TrimPrefix(e.Err.Error(), "dataset: "))
}

func (e *PartitionError) Unwrap() error { return e.Err }
