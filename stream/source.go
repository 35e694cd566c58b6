package stream

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/cairn-data/cairn/storage"
)

// Offsets are the positions in a partitioned, offset-addressed source: for
// partition p, Offsets[p] is the offset of the next record (so a batch's
// range is [start[p], end[p]) in every partition). Kafka topics, NATS
// streams, directories of files and generators all fit.
type Offsets []int64

// Source is where a query reads from. Implementations must be
// deterministic: Read of one range returns the same records every time,
// which is what makes the replay of an uncommitted batch exactly once.
type Source[T any] interface {
	// Identity names the source, for the query's pinned settings: a query
	// restarted on another source is refused.
	Identity() string
	// Available returns the end offsets of what can be read now. The number
	// of partitions must not change during a query.
	Available(ctx context.Context) (Offsets, error)
	// Read emits the records of partition p in [from, to), in order.
	Read(ctx context.Context, p int, from, to int64, emit func(T) error) error
}

// CheckpointedSource is an optional interface of a Source that keeps
// state of its own in the query's checkpoint location (a file source
// records which files it has taken, in order, so that offsets stay
// meaningful across restarts). The query calls Attach once, at Start,
// before anything else, with the prefix "sources/<i>" (i = 0 for the
// query's one source). The source must write only under that prefix.
type CheckpointedSource interface {
	Attach(ctx context.Context, st storage.Storage, prefix string) error
}

// DeadLetterCounter is an optional interface of a Source that sets bad
// records aside instead of failing (FileSource with DeadLetter): the query
// reports, per batch, how many it set aside.
type DeadLetterCounter interface {
	DeadLetters() int64
}

// MemorySource is an in-memory source of records appended by the test or
// program that owns it, in a fixed number of partitions. Safe for
// concurrent use. Its records live as long as the process: a query that
// restarts in another process needs another source.
type MemorySource[T any] struct {
	name string
	mu   sync.Mutex
	data [][]T
}

var _ Source[int] = (*MemorySource[int])(nil)

// NewMemorySource returns an empty source with the given partitions.
func NewMemorySource[T any](name string, partitions int) *MemorySource[T] {
	return &MemorySource[T]{name: name, data: make([][]T, partitions)}
}

// Add appends records to partition p.
func (m *MemorySource[T]) Add(p int, records ...T) {
	m.mu.Lock()
	m.data[p] = append(m.data[p], records...)
	m.mu.Unlock()
}

// Identity implements Source.
func (m *MemorySource[T]) Identity() string { return "memory:" + m.name }

// Available implements Source.
func (m *MemorySource[T]) Available(ctx context.Context) (Offsets, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(Offsets, len(m.data))
	for p := range m.data {
		out[p] = int64(len(m.data[p]))
	}
	return out, nil
}

// Read implements Source.
func (m *MemorySource[T]) Read(ctx context.Context, p int, from, to int64, emit func(T) error) error {
	m.mu.Lock()
	if p >= len(m.data) || to > int64(len(m.data[p])) || from > to {
		m.mu.Unlock()
		return fmt.Errorf("stream: %s has no range [%d, %d) in partition %d", m.Identity(), from, to, p)
	}
	recs := slices.Clone(m.data[p][from:to])
	m.mu.Unlock()
	for _, r := range recs {
		if err := emit(r); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// GeneratorSource is a deterministic source of synthetic records addressed
// by offset: record i of partition p is Make(p, i), and Rate records per
// partition become available per second of wall time since the query
// started, up to Limit per partition (0: no limit). For demos and
// benchmarks.
type GeneratorSource[T any] struct {
	Name       string
	Partitions int
	Limit      int64
	Make       func(p int, i int64) T
	// Available offsets grow with this function (for tests and benchmarks
	// that want all data at once, return Limit).
	Clock func(p int) int64
}

// Identity implements Source.
func (g *GeneratorSource[T]) Identity() string {
	return fmt.Sprintf("generator:%s/%d", g.Name, g.Partitions)
}

// Available implements Source.
func (g *GeneratorSource[T]) Available(ctx context.Context) (Offsets, error) {
	out := make(Offsets, g.Partitions)
	for p := range out {
		n := g.Limit
		if g.Clock != nil {
			n = g.Clock(p)
			if g.Limit > 0 {
				n = min(n, g.Limit)
			}
		}
		out[p] = n
	}
	return out, nil
}

// Read implements Source.
func (g *GeneratorSource[T]) Read(ctx context.Context, p int, from, to int64, emit func(T) error) error {
	for i := from; i < to; i++ {
		if (i-from)%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := emit(g.Make(p, i)); err != nil {
			return err
		}
	}
	return nil
}
