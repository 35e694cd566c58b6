package stream

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// Batch is one micro-batch as its plan sees it: its ID, and what stateful
// operators need.
type Batch struct {
	ID         int64
	partitions int
	dryRun     bool // planning only, to learn the operators
	stores     *stores
	ops        []OperatorInfo

	commitNanos atomic.Int64 // time spent committing state stores, summed over partitions
	watermark   int64        // Unix ms; records before it are late
	timestamp   int64        // the batch's processing time, Unix ms, from its offsets entry
	keepAside   bool         // Options.LateRows is set: keep the records operators set aside

	mu        sync.Mutex
	committed map[storeKey]state.Metrics // stores committed by this batch
	release   []func()                   // run when the batch ends
	maxEvent  map[int64]*atomic.Int64    // greatest event time seen, by operator (set at register)
	aside     map[asideKey]*aside        // late and bad rows, by operator and partition
}

// Watermark returns the batch's watermark: records with an event time
// before it are late.
func (b *Batch) Watermark() time.Time { return time.UnixMilli(b.watermark).UTC() }

// observeEventTime records an event time of operator op: a lock-free
// maximum, since every record of the batch passes here.
func (b *Batch) observeEventTime(op, ms int64) {
	m := b.maxEvent[op] // the map is complete once planning ends
	for {
		cur := m.Load()
		if ms <= cur || m.CompareAndSwap(cur, ms) {
			return
		}
	}
}

func (b *Batch) maxEventTime(op int64) (int64, bool) {
	m, ok := b.maxEvent[op]
	if !ok || m.Load() == math.MinInt64 {
		return 0, false
	}
	return m.Load(), true
}

// end releases what the batch kept in memory.
func (b *Batch) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.release {
		f()
	}
	b.release = nil
}

func (b *Batch) register(op OperatorInfo) error {
	for _, o := range b.ops {
		if o.ID == op.ID {
			return fmt.Errorf("stream: two stateful operators have ID %d; give each its own", op.ID)
		}
	}
	b.ops = append(b.ops, op)
	if op.WatermarkDelay != nil {
		if b.maxEvent == nil {
			b.maxEvent = map[int64]*atomic.Int64{}
		}
		m := &atomic.Int64{}
		m.Store(math.MinInt64) // nothing seen yet
		b.maxEvent[op.ID] = m
	}
	return nil
}

// checkCommitted verifies that every stateful operator committed its
// store in every partition: the batch's commit entry promises it.
func (b *Batch) checkCommitted() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, op := range b.ops {
		if op.Kind == watermarkKind {
			continue // no state
		}
		for p := range b.partitions {
			if _, ok := b.committed[storeKey{op.ID, p}]; !ok {
				return fmt.Errorf("stream: batch %d: the sink did not compute every partition of stateful operator %d (partition %d is missing); a sink must consume the whole batch", b.ID, op.ID, p)
			}
		}
	}
	return nil
}

func (b *Batch) markCommitted(k storeKey, m state.Metrics) {
	b.mu.Lock()
	if b.committed == nil {
		b.committed = map[storeKey]state.Metrics{}
	}
	b.committed[k] = m
	b.mu.Unlock()
}

// operatorProgress sums, per operator, the committed stores' figures and
// the rows set aside.
func (b *Batch) operatorProgress() []OperatorProgress {
	var out []OperatorProgress
	for _, op := range b.ops {
		o := OperatorProgress{Operator: op.ID, Kind: op.Kind}
		o.LateRows, o.BadRows = b.asideCounts(op.ID)
		b.mu.Lock()
		for p := range b.partitions {
			m := b.committed[storeKey{op.ID, p}]
			o.Keys += m.Keys
			o.MemoryBytes += m.MemoryBytes
			o.BytesWritten += m.BytesWritten
		}
		b.mu.Unlock()
		out = append(out, o)
	}
	return out
}

type storeKey struct {
	op   int64
	part int
}

// stores keeps the state providers of a query open across batches.
type stores struct {
	st       storage.Storage
	provider string
	retain   int
	mu       sync.Mutex
	open     map[storeKey]state.Provider
}

func (s *stores) get(ctx context.Context, k storeKey, schema state.Schema) (state.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.open[k]; ok {
		return p, nil
	}
	p, err := state.Open(ctx, s.provider, s.st, state.StoreID{Operator: k.op, Partition: int32(k.part)}, schema,
		state.Options{RetainVersions: s.retain})
	if err != nil {
		return nil, err
	}
	s.open[k] = p
	return p, nil
}

func (s *stores) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, p := range s.open {
		errs = append(errs, p.Close())
	}
	s.open = map[storeKey]state.Provider{}
	return errors.Join(errs...)
}

// AggregateByKey keeps, per key, the merge of every value seen so far, in
// state store op of the query, and outputs the keys this batch updated
// with their new aggregate (Spark's update output mode). merge must be
// associative and commutative. The codecs encode keys and values in the
// state store; their schemas are pinned.
func AggregateByKey[K comparable, V any](b *Batch, op int64, in *dataset.Dataset[dataset.Pair[K, V]], merge func(a, b V) V,
	kc state.Codec[K], vc state.Codec[V]) (*dataset.Dataset[dataset.Pair[K, V]], error) {
	schema := state.SchemaOf(kc, vc)
	if err := b.register(OperatorInfo{ID: op, Kind: "AggregateByKey", KeySchema: schema.Key, ValueSchema: schema.Value}); err != nil {
		return nil, err
	}
	reduced := dataset.ReduceByKey(in, merge, b.partitions)
	if b.dryRun {
		return reduced, nil
	}
	return statefulOp(b, op, schema, reduced, func(ctx context.Context, st state.Store, recs iter.Seq2[dataset.Pair[K, V], error]) ([]dataset.Pair[K, V], error) {
		return aggregate(st, recs, merge, kc, vc)
	}), nil
}

// aggregate merges one partition of a batch into its state store and
// returns the keys it updated with their new values.
func aggregate[K comparable, V any](st state.Store, recs iter.Seq2[dataset.Pair[K, V], error],
	merge func(a, b V) V, kc state.Codec[K], vc state.Codec[V]) ([]dataset.Pair[K, V], error) {
	typed := state.NewTyped(st, kc, vc)
	var updates []dataset.Pair[K, V]
	for r, err := range recs {
		if err != nil {
			return nil, err
		}
		v := r.Value
		if old, ok, err := typed.Get(r.Key); err != nil {
			return nil, err
		} else if ok {
			v = merge(old, r.Value)
		}
		if err := typed.Put(r.Key, v); err != nil {
			return nil, err
		}
		updates = append(updates, dataset.Pair[K, V]{Key: r.Key, Value: v})
	}
	return updates, nil
}

// OperatorProgress is the state of one operator after a batch, and the
// rows it set aside in the batch. Every operator of the plan has one, in
// the order the plan built them (WithWatermark's has no state).
type OperatorProgress struct {
	Operator     int64
	Kind         string
	Keys         int64
	MemoryBytes  int64
	BytesWritten int64
	// LateRows are the rows the operator dropped (or, with
	// Options.LateRows, routed there) as later than the watermark.
	LateRows int64
	// BadRows are the records with a zero event time the operator set
	// aside (only with Options.LateRows; without it they fail the batch).
	BadRows int64
}

// BatchProgress describes one committed batch, like Spark's
// StreamingQueryProgress.
type BatchProgress struct {
	Batch    int64
	Replay   bool // the batch was written ahead by an earlier run and replayed
	Started  time.Time
	Duration time.Duration
	// InputRows is the number of records the source emitted for the batch,
	// counted as they were read (not offsets: a file of the file source is
	// one offset and many records). Records set aside as dead letters by
	// the source are not input rows.
	InputRows int64
	Phases    struct {
		Plan        time.Duration // deciding the range
		WriteAhead  time.Duration // the offsets entry
		Execute     time.Duration // running the plan, state commits and the sink (the whole batch execution)
		StateCommit time.Duration // of which committing state stores, summed over partitions (they run in parallel)
		Sink        time.Duration // the sink's AddBatch, which also computes the plan
		CommitLog   time.Duration // queueing the commit entry (written behind, see MetadataQueue)
	}
	State     []OperatorProgress
	Watermark int64 // the batch's watermark, Unix ms
	LateRows  int64 // rows dropped as later than the watermark, summed over operators
	// BadRows are the records with a zero event time set aside, summed
	// over operators (see OperatorProgress.BadRows).
	BadRows int64
	// DeadLetters is the number of bad input records the source set aside
	// in this batch (a replay counts none that an earlier run counted).
	DeadLetters int64
	// MetadataQueue is the number of metadata writes still queued when the
	// batch ended: above zero, checkpointing is behind the batches.
	MetadataQueue int
}

// RowsPerSecond is the batch's input rate.
func (p BatchProgress) RowsPerSecond() float64 {
	if p.Duration <= 0 {
		return 0
	}
	return float64(p.InputRows) / p.Duration.Seconds()
}

func (p BatchProgress) attrs() []any {
	attrs := []any{
		slog.Int64("batch", p.Batch), slog.Bool("replay", p.Replay), slog.Int64("input_rows", p.InputRows),
		slog.Float64("rows_per_s", p.RowsPerSecond()), slog.Duration("duration", p.Duration),
		slog.Duration("plan", p.Phases.Plan), slog.Duration("write_ahead", p.Phases.WriteAhead),
		slog.Duration("execute", p.Phases.Execute), slog.Duration("state_commit", p.Phases.StateCommit),
		slog.Duration("sink", p.Phases.Sink), slog.Duration("commit_log", p.Phases.CommitLog),
	}
	attrs = append(attrs, slog.Int64("watermark_ms", p.Watermark), slog.Int64("late_rows", p.LateRows), slog.Int64("bad_rows", p.BadRows),
		slog.Int64("dead_letters", p.DeadLetters), slog.Int("metadata_queue", p.MetadataQueue))
	for _, o := range p.State {
		if o.Kind == watermarkKind {
			if o.BadRows > 0 {
				attrs = append(attrs, slog.Group(fmt.Sprintf("operator_%d", o.Operator), slog.Int64("bad_rows", o.BadRows)))
			}
			continue
		}
		attrs = append(attrs, slog.Group(fmt.Sprintf("operator_%d", o.Operator),
			slog.Int64("state_keys", o.Keys), slog.Int64("state_bytes", o.MemoryBytes), slog.Int64("state_bytes_written", o.BytesWritten),
			slog.Int64("late_rows", o.LateRows), slog.Int64("bad_rows", o.BadRows)))
	}
	return attrs
}

// AggregateByKeyComplete is AggregateByKey in Spark's complete output
// mode: after merging the batch, it outputs every key in the state with
// its aggregate, in key order per partition (the whole result table, every
// batch). For small results, such as dashboards.
func AggregateByKeyComplete[K comparable, V any](b *Batch, op int64, in *dataset.Dataset[dataset.Pair[K, V]], merge func(a, b V) V,
	kc state.Codec[K], vc state.Codec[V]) (*dataset.Dataset[dataset.Pair[K, V]], error) {
	schema := state.SchemaOf(kc, vc)
	if err := b.register(OperatorInfo{ID: op, Kind: "AggregateByKeyComplete", KeySchema: schema.Key, ValueSchema: schema.Value}); err != nil {
		return nil, err
	}
	reduced := dataset.ReduceByKey(in, merge, b.partitions)
	if b.dryRun {
		return reduced, nil
	}
	return statefulOp(b, op, schema, reduced, func(ctx context.Context, st state.Store, recs iter.Seq2[dataset.Pair[K, V], error]) ([]dataset.Pair[K, V], error) {
		if _, err := aggregate(st, recs, merge, kc, vc); err != nil {
			return nil, err
		}
		var all []dataset.Pair[K, V]
		for e, err := range state.NewTyped(st, kc, vc).All() {
			if err != nil {
				return nil, err
			}
			all = append(all, dataset.Pair[K, V]{Key: e.Key, Value: e.Value})
		}
		return all, nil
	}), nil
}
