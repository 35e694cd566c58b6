package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/cairn-data/cairn/dataset"
)

// Sink is where a query writes each batch's output. AddBatch must be
// idempotent by batch ID: a batch replayed after a crash is handed over
// again with the same ID and the same records, and must replace, not
// duplicate, what an earlier attempt wrote.
type Sink[T any] interface {
	// Identity names the sink, for the query's pinned settings.
	Identity() string
	// AddBatch writes the batch's records. The batch is committed only
	// after AddBatch returns nil.
	AddBatch(ctx context.Context, batchID int64, data *dataset.Dataset[T]) error
}

// QueryInfo describes the query that starts over a sink, for a
// QueryAttacher.
type QueryInfo struct {
	// ID is the query ID, from its checkpoint location's metadata.
	ID string
	// Checkpoint is the checkpoint location, as its storage names it.
	Checkpoint string
	// LastCommitted is the last committed batch, when HasCommitted.
	LastCommitted int64
	HasCommitted  bool
}

// QueryAttacher is an optional interface of a Sink. A query calls
// AttachQuery at Start, after it has read its logs (so it knows its last
// committed batch) and before it runs a batch: the sink can record which
// query writes it, refuse a second one, and check that the output of the
// committed batches is still there. An error fails Start. FileSink
// implements it.
type QueryAttacher interface {
	AttachQuery(ctx context.Context, q QueryInfo) error
}

// IdentityMatcher is an optional interface of a Sink whose Identity is
// spelled differently from the one an older cairn pinned (FileSink's
// location, now canonical): a restart accepts a pinned identity other
// than Identity() when SameIdentity(pinned) reports true.
type IdentityMatcher interface {
	SameIdentity(pinned string) bool
}

// sameSink reports whether the identity pinned at a query's first start
// names sink.
func sameSink[T any](sink Sink[T], pinned string) bool {
	if pinned == sink.Identity() {
		return true
	}
	m, ok := sink.(IdentityMatcher)
	return ok && m.SameIdentity(pinned)
}

// ForEachBatch makes a sink of a function, like Spark's foreachBatch: the
// function gets the batch ID to make its writes idempotent.
func ForEachBatch[T any](identity string, fn func(ctx context.Context, batchID int64, data *dataset.Dataset[T]) error) Sink[T] {
	return forEachBatch[T]{identity, fn}
}

type forEachBatch[T any] struct {
	identity string
	fn       func(ctx context.Context, batchID int64, data *dataset.Dataset[T]) error
}

func (f forEachBatch[T]) Identity() string { return f.identity }
func (f forEachBatch[T]) AddBatch(ctx context.Context, batchID int64, data *dataset.Dataset[T]) error {
	return f.fn(ctx, batchID, data)
}

// MemorySink keeps each batch's records in memory, replacing a batch that
// is written again. For tests. Safe for concurrent use.
type MemorySink[T any] struct {
	name    string
	mu      sync.Mutex
	batches map[int64][]T
	writes  int // AddBatch calls that succeeded, replays included
}

// NewMemorySink returns an empty sink.
func NewMemorySink[T any](name string) *MemorySink[T] {
	return &MemorySink[T]{name: name, batches: map[int64][]T{}}
}

// Identity implements Sink.
func (m *MemorySink[T]) Identity() string { return "memory:" + m.name }

// AddBatch implements Sink.
func (m *MemorySink[T]) AddBatch(ctx context.Context, batchID int64, data *dataset.Dataset[T]) error {
	recs, err := data.Collect(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.batches[batchID] = recs
	m.writes++
	m.mu.Unlock()
	return nil
}

// Batches returns the batch IDs written, in order.
func (m *MemorySink[T]) Batches() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.batches))
}

// Batch returns the records of one batch.
func (m *MemorySink[T]) Batch(id int64) []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.batches[id]
}

// All returns every record, batch by batch in order.
func (m *MemorySink[T]) All() []T {
	var out []T
	for _, id := range m.Batches() {
		out = append(out, m.Batch(id)...)
	}
	return out
}

// ConsoleSink prints each batch's records as JSON lines to W, after a
// "-- batch N" header line, like Spark's console sink: for development.
// A replayed batch is printed again.
type ConsoleSink[T any] struct {
	W io.Writer
}

// Identity implements Sink.
func (c ConsoleSink[T]) Identity() string { return "console" }

// AddBatch implements Sink.
func (c ConsoleSink[T]) AddBatch(ctx context.Context, batchID int64, data *dataset.Dataset[T]) error {
	recs, err := data.Collect(ctx)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(c.W)
	fmt.Fprintf(bw, "-- batch %d: %d records\n", batchID, len(recs))
	enc := json.NewEncoder(bw)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return bw.Flush()
}
