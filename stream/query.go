package stream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"sync"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/state"
	_ "github.com/cairn-data/cairn/state/memstate" // the default state provider
	"github.com/cairn-data/cairn/storage"
)

// Version is the cairn version recorded in a query's metadata.
const Version = "0.1.0-dev"

// Objects of a checkpoint location, as in Spark Structured Streaming.
const (
	MetadataObject = "metadata"
	OffsetsLog     = "offsets"
	CommitsLog     = "commits"
	metadataFormat = 1
)

// Options configure a query. The zero value gives the defaults, except
// that a checkpoint location is required.
type Options struct {
	// Checkpoint is the checkpoint location: any storage URL or path.
	// Spark: option("checkpointLocation", ...).
	Checkpoint string
	// CheckpointStorage, if set, is used instead of opening Checkpoint
	// (storage you opened yourself, or a fault-injecting one in tests).
	CheckpointStorage storage.Storage
	// Partitions is the number of partitions of stateful operators (and
	// of their state stores). Pinned at the first start. Default 4. Spark:
	// spark.sql.shuffle.partitions, which is pinned the same way.
	Partitions int
	// StateProvider names the state store provider. Pinned. Default
	// "memstate". Spark: spark.sql.streaming.stateStore.providerClass.
	StateProvider string
	// Trigger says when batches run. Default: one after another, as fast
	// as possible, until the context is cancelled.
	Trigger Trigger
	// MaxOffsetsPerPartition caps how far one batch reads in each source
	// partition. 0: everything available. Spark: maxOffsetsPerTrigger.
	MaxOffsetsPerPartition int64
	// RetainBatches is how many batches of logs and state stay in the
	// checkpoint location. Default 100. Spark:
	// spark.sql.streaming.minBatchesToRetain. State stores keep one version
	// more, so that a pending batch can always be replayed from the version
	// before it.
	RetainBatches int
	// Parallelism of each batch's execution. Default: every core.
	Parallelism int
	// LeaseTTL is the validity of the writer lease. Default 30 s.
	LeaseTTL time.Duration
	// Logger receives one progress record per batch. Default slog.Default().
	Logger *slog.Logger
}

// Trigger says when a query runs its batches.
type Trigger struct {
	// Interval starts a batch at most every Interval (Spark:
	// Trigger.ProcessingTime). 0: as fast as possible.
	Interval time.Duration
	// UntilIdle processes what is available, then stops (Spark:
	// Trigger.AvailableNow).
	UntilIdle bool
	// Drain is UntilIdle, and then one last batch with the watermark at
	// infinity, so that every open window fires, before the query stops.
	// A drained query treats any later input as late.
	Drain bool
}

func (o Options) withDefaults() Options {
	if o.Partitions == 0 {
		o.Partitions = 4
	}
	if o.StateProvider == "" {
		o.StateProvider = "memstate"
	}
	if o.RetainBatches == 0 {
		o.RetainBatches = 100
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports an option out of range, naming it.
func (o Options) Validate() error {
	switch {
	case o.Checkpoint == "" && o.CheckpointStorage == nil:
		return errors.New("stream: Options.Checkpoint is required: the checkpoint location (a path, file:///path or mem://name) where the query keeps its offsets, commits and state")
	case o.Partitions < 0:
		return fmt.Errorf("stream: Options.Partitions is %d; it must be positive (default 4)", o.Partitions)
	case o.RetainBatches < 0:
		return fmt.Errorf("stream: Options.RetainBatches is %d; it must be positive (default 100)", o.RetainBatches)
	case o.MaxOffsetsPerPartition < 0:
		return fmt.Errorf("stream: Options.MaxOffsetsPerPartition is %d; it must be positive, or 0 for no limit", o.MaxOffsetsPerPartition)
	}
	return nil
}

// Pinned are the settings recorded at a query's first start and checked
// on every restart: changing one would make the checkpoint meaningless.
type Pinned struct {
	Partitions    int            `json:"partitions"`
	StateProvider string         `json:"state_provider"`
	OperatorGraph string         `json:"operator_graph"` // fingerprint of Operators
	Operators     []OperatorInfo `json:"operators"`
	Source        string         `json:"source"`
	Sink          string         `json:"sink"`
}

// Metadata is the query's metadata object.
type Metadata struct {
	QueryID      string    `json:"query_id"`
	Created      time.Time `json:"created"`
	CairnVersion string    `json:"cairn_version"`
	Pinned       Pinned    `json:"pinned"`
}

// PinnedSettingError reports a restart with a changed pinned setting.
type PinnedSettingError struct {
	Location string
	Setting  string
	Old, New string
}

func (e *PinnedSettingError) Error() string {
	return fmt.Sprintf("stream: the query in %s was started with %s %s; this run asks for %s. "+
		"A running query cannot change it: run with the old setting, or start a new query with a new checkpoint location",
		e.Location, e.Setting, e.Old, e.New)
}

// ErrPinnedSetting matches every *PinnedSettingError.
var ErrPinnedSetting = errors.New("stream: pinned setting changed")

// Is reports whether target is ErrPinnedSetting.
func (e *PinnedSettingError) Is(target error) bool { return target == ErrPinnedSetting }

// OperatorInfo describes one stateful operator of a query.
type OperatorInfo struct {
	ID          int64  `json:"id"`
	Kind        string `json:"kind"`
	KeySchema   string `json:"key_schema"`
	ValueSchema string `json:"value_schema"`
	// WatermarkDelay (ms) for operators on event time.
	WatermarkDelay *int64 `json:"watermark_delay_ms,omitempty"`
	// Window size and slide (ms) for window operators.
	WindowSize  int64 `json:"window_size_ms,omitempty"`
	WindowSlide int64 `json:"window_slide_ms,omitempty"`
}

// OffsetsEntry is the write-ahead record of a batch: the range it reads,
// written before it runs.
type OffsetsEntry struct {
	Batch     int64   `json:"batch"`
	Start     Offsets `json:"start"`
	End       Offsets `json:"end"`
	Timestamp int64   `json:"timestamp_ms"`
	// Watermark is the event time (Unix ms) before which the batch treats
	// records as late and after which its windows close; fixed here so a
	// replay uses the same one. math.MaxInt64 in a drain batch.
	Watermark int64 `json:"watermark_ms"`
}

// CommitEntry is written once a batch's state and sink output are durable.
type CommitEntry struct {
	Batch     int64 `json:"batch"`
	Committed int64 `json:"committed_ms"`
	// MaxEventTime is the greatest event time (Unix ms) each operator with
	// a watermark has seen so far, by operator ID.
	MaxEventTime map[int64]int64 `json:"max_event_time_ms,omitempty"`
	// NextWatermark is the watermark of the next batch: the smallest over
	// operators of max event time minus the operator's delay, never
	// decreasing (Spark's default multiple-watermark policy, "min").
	NextWatermark int64 `json:"next_watermark_ms"`
}

// Plan builds a batch's output from its input, with the transformations
// of package dataset and the stateful operators of this package, which
// take the Batch. It must build the same operators every time.
type Plan[In, Out any] func(b *Batch, in *dataset.Dataset[In]) (*dataset.Dataset[Out], error)

// Query is a streaming query: a source, a plan and a sink, run in
// micro-batches with exactly-once output across crashes. Not safe for
// concurrent use.
type Query[In, Out any] struct {
	src     Source[In]
	plan    Plan[In, Out]
	sink    Sink[Out]
	opts    Options
	st      storage.Storage
	ownSt   bool
	lease   *metalog.Lease
	offsets *metalog.Log
	commits *metalog.Log
	meta    Metadata
	session *dataset.Session
	stores  *stores
	writer  *metaWriter

	// What the logs hold, kept here because commit entries are written
	// behind the batches: the last batch written ahead, whether it is still
	// pending (not committed), and the last commit entry.
	lastOffsets *OffsetsEntry
	pending     bool
	lastCommit  *CommitEntry

	mu       sync.Mutex
	progress []BatchProgress
}

// Start opens (or creates) the query's checkpoint location: it takes the
// writer lease (a second live query on the location is refused), records
// or checks the pinned settings, and opens the logs. Run or RunBatch then
// process batches, replaying first a batch that was written ahead but not
// committed.
func Start[In, Out any](ctx context.Context, src Source[In], plan Plan[In, Out], sink Sink[Out], opts Options) (*Query[In, Out], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	q := &Query[In, Out]{src: src, plan: plan, sink: sink, opts: opts}
	if err := q.open(ctx); err != nil {
		q.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return q, nil
}

func (q *Query[In, Out]) open(ctx context.Context) error {
	q.st = q.opts.CheckpointStorage
	if q.st == nil {
		st, err := storage.Open(ctx, q.opts.Checkpoint)
		if err != nil {
			return fmt.Errorf("stream: open checkpoint location: %w", err)
		}
		q.st, q.ownSt = st, true
	}
	lease, err := metalog.AcquireLease(ctx, q.st, metalog.LeaseOptions{TTL: q.opts.LeaseTTL, Owner: "cairn streaming query", Logger: q.opts.Logger})
	if err != nil {
		return err
	}
	q.lease = lease
	if cs, ok := q.src.(CheckpointedSource); ok {
		if err := cs.Attach(ctx, q.st, "sources/0"); err != nil {
			return fmt.Errorf("stream: attach source %s: %w", q.src.Identity(), err)
		}
	}
	ops, err := q.operators()
	if err != nil {
		return err
	}
	want := Pinned{Partitions: q.opts.Partitions, StateProvider: q.opts.StateProvider, Operators: ops,
		OperatorGraph: fingerprint(ops), Source: q.src.Identity(), Sink: q.sink.Identity()}
	if q.meta, err = q.checkMetadata(ctx, want); err != nil {
		return err
	}
	if q.offsets, err = metalog.Open(ctx, q.st, OffsetsLog); err != nil {
		return err
	}
	if q.commits, err = metalog.Open(ctx, q.st, CommitsLog); err != nil {
		return err
	}
	if err := q.recoverPosition(ctx); err != nil {
		return err
	}
	if a, ok := q.sink.(QueryAttacher); ok { // the sink learns its query: owner, committed output
		info := QueryInfo{ID: q.meta.QueryID, Checkpoint: q.st.Location()}
		if q.lastCommit != nil {
			info.LastCommitted, info.HasCommitted = q.lastCommit.Batch, true
		}
		if err := a.AttachQuery(ctx, info); err != nil {
			return err // it names the sink
		}
	}
	q.writer = newMetaWriter(q.opts.Logger)
	session, err := dataset.NewSession(dataset.Options{Parallelism: q.opts.Parallelism, Partitions: q.opts.Partitions, Logger: q.opts.Logger})
	if err != nil {
		return err
	}
	q.session = session
	q.stores = &stores{st: q.st, provider: q.opts.StateProvider, retain: q.opts.RetainBatches + 1, open: map[storeKey]state.Provider{}}
	return nil
}

// operators runs the plan once over an empty input, without executing it,
// to learn its stateful operators.
func (q *Query[In, Out]) operators() ([]OperatorInfo, error) {
	s, err := dataset.NewSession(dataset.Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close(context.Background())
	b := &Batch{ID: -1, partitions: q.opts.Partitions, dryRun: true}
	if _, err := q.plan(b, dataset.FromSlice[In](s, nil, 1)); err != nil {
		return nil, fmt.Errorf("stream: plan the query: %w", err)
	}
	return b.ops, nil
}

func fingerprint(ops []OperatorInfo) string {
	data, _ := json.Marshal(ops)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

func (q *Query[In, Out]) checkMetadata(ctx context.Context, want Pinned) (Metadata, error) {
	m, err := ReadMetadata(ctx, q.st)
	if errors.Is(err, storage.ErrNotFound) {
		var id [16]byte
		rand.Read(id[:])
		m := Metadata{QueryID: hex.EncodeToString(id[:]), Created: time.Now().UTC(), CairnVersion: Version, Pinned: want}
		data, _ := json.MarshalIndent(m, "", "  ")
		err := frame.PutBytes(ctx, q.st, MetadataObject, frame.KindQueryMeta, metadataFormat, data, storage.PutOptions{IfAbsent: true})
		if err != nil {
			return Metadata{}, fmt.Errorf("stream: record the query metadata in %s: %w", q.st.Location(), err)
		}
		return m, nil
	}
	if err != nil {
		return Metadata{}, err
	}
	old := m.Pinned
	changed := func(setting string, o, n any) error {
		return &PinnedSettingError{Location: q.st.Location(), Setting: setting, Old: fmt.Sprint(o), New: fmt.Sprint(n)}
	}
	switch {
	case old.Partitions != want.Partitions:
		return m, changed("partitions", old.Partitions, want.Partitions)
	case old.StateProvider != want.StateProvider:
		return m, changed("state provider", old.StateProvider, want.StateProvider)
	case old.OperatorGraph != want.OperatorGraph:
		o, _ := json.Marshal(old.Operators)
		n, _ := json.Marshal(want.Operators)
		return m, changed("stateful operators", string(o), string(n))
	case old.Source != want.Source:
		return m, changed("source", old.Source, want.Source)
	case !sameSink(q.sink, old.Sink):
		return m, changed("sink", old.Sink, want.Sink)
	}
	return m, nil
}

// Metadata returns the query's ID and pinned settings.
func (q *Query[In, Out]) Metadata() Metadata { return q.meta }

// Run runs batches until the context is cancelled, or, with
// Trigger.UntilIdle, until no new data is available.
func (q *Query[In, Out]) Run(ctx context.Context) error {
	for {
		start := time.Now()
		ran, err := q.RunBatch(ctx)
		if err != nil {
			return err
		}
		if !ran && (q.opts.Trigger.UntilIdle || q.opts.Trigger.Drain) {
			return q.writer.flush() // done only once the last commit entry is durable
		}
		wait := q.opts.Trigger.Interval - time.Since(start)
		if !ran && wait <= 0 {
			wait = 100 * time.Millisecond // idle: poll the source gently
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// RunBatch runs one batch: the pending batch if the last one was written
// ahead but not committed (with exactly its range), otherwise a new batch
// over the data available. It reports false when there was nothing to do.
func (q *Query[In, Out]) RunBatch(ctx context.Context) (bool, error) {
	select {
	case <-q.lease.Lost():
		return false, fmt.Errorf("stream: stopped: %w", q.lease.Err())
	default:
	}
	if err := q.writer.failed(); err != nil {
		return false, err // a metadata write behind the batches failed: restart to recover
	}
	p := BatchProgress{Started: time.Now()}
	phase := time.Now()
	entry, replay, err := q.nextBatch(ctx)
	if err != nil || entry == nil {
		return false, err
	}
	p.Batch, p.Replay = entry.Batch, replay
	p.Phases.Plan = time.Since(phase)
	if !replay {
		phase = time.Now()
		data, _ := json.Marshal(entry)
		written := q.writer.submit(fmt.Sprintf("write ahead batch %d", entry.Batch), func(ctx context.Context) error {
			return q.offsets.Add(ctx, entry.Batch, data)
		})
		if err := <-written; err != nil { // the range must be durable before the batch reads
			return false, err
		}
		q.lastOffsets, q.pending = entry, true
		p.Phases.WriteAhead = time.Since(phase)
	}

	phase = time.Now()
	dlc, countsDead := q.src.(DeadLetterCounter)
	var deadBefore int64
	if countsDead {
		deadBefore = dlc.DeadLetters()
	}
	in := dataset.FromFunc(q.session, fmt.Sprintf("Source %s batch %d", q.src.Identity(), entry.Batch), len(entry.End),
		func(ctx context.Context, part int, emit func(In) error) error {
			return q.src.Read(ctx, part, entry.Start[part], entry.End[part], emit)
		})
	b := &Batch{ID: entry.Batch, partitions: q.opts.Partitions, stores: q.stores, watermark: entry.Watermark, timestamp: entry.Timestamp}
	defer b.end()
	out, err := q.plan(b, in)
	if err != nil {
		return false, fmt.Errorf("stream: plan batch %d: %w", entry.Batch, err)
	}
	sinkStart := time.Now()
	if err := q.sink.AddBatch(ctx, entry.Batch, out); err != nil {
		return false, fmt.Errorf("stream: batch %d: sink %s: %w", entry.Batch, q.sink.Identity(), err)
	}
	p.Phases.Sink = time.Since(sinkStart)
	p.Phases.Execute = time.Since(phase)
	p.Phases.StateCommit = time.Duration(b.commitNanos.Load())
	if countsDead {
		p.DeadLetters = dlc.DeadLetters() - deadBefore
	}
	if err := b.checkCommitted(); err != nil {
		return false, err
	}

	phase = time.Now()
	ce := q.commitEntry(entry, b)
	data, _ := json.Marshal(ce)
	// Written behind: the next batch's offsets entry queues after it.
	q.writer.submit(fmt.Sprintf("commit batch %d", entry.Batch), func(ctx context.Context) error {
		return q.commits.Add(ctx, entry.Batch, data)
	})
	q.pending, q.lastCommit = false, &ce
	if before := entry.Batch - int64(q.opts.RetainBatches) + 1; before > 0 {
		q.writer.submit(fmt.Sprintf("purge batches before %d", before), func(ctx context.Context) error {
			if err := q.offsets.Purge(ctx, before); err != nil {
				return err
			}
			return q.commits.Purge(ctx, before)
		})
	}
	p.Phases.CommitLog = time.Since(phase)
	p.MetadataQueue = q.writer.depth()
	for i, s := range entry.Start {
		p.InputRows += entry.End[i] - s
	}
	p.Duration = time.Since(p.Started)
	p.State = b.stateMetrics()
	p.Watermark = entry.Watermark
	p.LateRows = b.lateRows.Load()
	q.record(p)
	return true, nil
}

// recoverPosition reads, at start, where the logs stand: the last batch
// written ahead, whether it was committed, and the last commit entry.
func (q *Query[In, Out]) recoverPosition(ctx context.Context) error {
	lastOff, hasOff := q.offsets.Latest()
	lastCommit, hasCommit := q.commits.Latest()
	pending := hasOff && (!hasCommit || lastOff > lastCommit)
	switch {
	case hasCommit && (!hasOff || lastCommit > lastOff):
		return fmt.Errorf("stream: %s: batch %d is committed but its offsets entry is missing: the checkpoint location is damaged", q.st.Location(), lastCommit)
	case pending && (hasCommit && lastOff > lastCommit+1 || !hasCommit && lastOff != 0):
		return fmt.Errorf("stream: %s: offsets run to batch %d but commits only to %d: more than one batch is pending, which one writer never leaves; the checkpoint location is damaged", q.st.Location(), lastOff, lastCommit)
	}
	if hasOff {
		e, err := ReadOffsetsEntry(ctx, q.offsets, lastOff)
		if err != nil {
			return err
		}
		q.lastOffsets, q.pending = e, pending
	}
	if hasCommit {
		c, err := ReadCommitEntry(ctx, q.commits, lastCommit)
		if err != nil {
			return err
		}
		q.lastCommit = c
	}
	return nil
}

// nextBatch decides the next batch: the pending one (written ahead by an
// earlier run or attempt, never committed), replayed with exactly its
// range, or a new range over what the source has available.
func (q *Query[In, Out]) nextBatch(ctx context.Context) (*OffsetsEntry, bool, error) {
	if q.pending {
		return q.lastOffsets, true, nil
	}
	prev := q.lastOffsets
	var prevCommit CommitEntry
	if q.lastCommit != nil {
		prevCommit = *q.lastCommit
	}
	avail, err := q.src.Available(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("stream: source %s: %w", q.src.Identity(), err)
	}
	next := &OffsetsEntry{Start: make(Offsets, len(avail)), End: make(Offsets, len(avail)), Timestamp: time.Now().UnixMilli(),
		Watermark: prevCommit.NextWatermark}
	if prev != nil {
		if len(prev.End) != len(avail) {
			return nil, false, fmt.Errorf("stream: source %s had %d partitions and now has %d; cairn does not follow partition changes yet", q.src.Identity(), len(prev.End), len(avail))
		}
		next.Batch = prev.Batch + 1
		copy(next.Start, prev.End)
	}
	more := false
	for p := range avail {
		end := avail[p]
		if m := q.opts.MaxOffsetsPerPartition; m > 0 {
			end = min(end, next.Start[p]+m)
		}
		if end < next.Start[p] {
			return nil, false, fmt.Errorf("stream: source %s partition %d went back from offset %d to %d", q.src.Identity(), p, next.Start[p], end)
		}
		next.End[p] = end
		more = more || end > next.Start[p]
	}
	if !more {
		if q.opts.Trigger.Drain && prev != nil && prev.Watermark != math.MaxInt64 {
			next.Watermark = math.MaxInt64 // one last batch that closes every window
			return next, false, nil
		}
		return nil, false, nil
	}
	return next, false, nil
}

// commitEntry computes a batch's commit entry: the operators' greatest
// event times so far, and the next batch's watermark.
func (q *Query[In, Out]) commitEntry(entry *OffsetsEntry, b *Batch) CommitEntry {
	ce := CommitEntry{Batch: entry.Batch, Committed: time.Now().UnixMilli(), MaxEventTime: map[int64]int64{}, NextWatermark: entry.Watermark}
	if q.lastCommit != nil {
		maps.Copy(ce.MaxEventTime, q.lastCommit.MaxEventTime)
	}
	candidate, have := int64(math.MaxInt64), false
	for _, op := range b.ops {
		if op.WatermarkDelay == nil {
			continue
		}
		if seen, ok := b.maxEventTime(op.ID); ok {
			ce.MaxEventTime[op.ID] = max(ce.MaxEventTime[op.ID], seen)
		}
		if seen, ok := ce.MaxEventTime[op.ID]; ok {
			candidate, have = min(candidate, seen-*op.WatermarkDelay), true
		} else {
			have = false // an operator that has seen nothing holds the watermark back
			break
		}
	}
	if have && candidate > ce.NextWatermark {
		ce.NextWatermark = candidate
	}
	return ce
}

func (q *Query[In, Out]) record(p BatchProgress) {
	q.mu.Lock()
	q.progress = append(q.progress, p)
	if len(q.progress) > 100 {
		q.progress = q.progress[len(q.progress)-100:]
	}
	q.mu.Unlock()
	q.opts.Logger.Info("batch committed", p.attrs()...)
}

// Progress returns the progress of the last (up to 100) batches, oldest
// first.
func (q *Query[In, Out]) Progress() []BatchProgress {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]BatchProgress(nil), q.progress...)
}

// Close closes the state stores and releases the writer lease. The
// checkpoint location stays: Start again to resume.
func (q *Query[In, Out]) Close(ctx context.Context) error {
	var first error
	if q.writer != nil {
		first = q.writer.close() // the last commit entry is written before the lease goes
	}
	if q.stores != nil {
		if err := q.stores.close(); err != nil && first == nil {
			first = err
		}
	}
	if q.session != nil {
		q.session.Close(ctx)
	}
	if q.lease != nil {
		if err := q.lease.Close(ctx); err != nil && first == nil {
			first = err
		}
	}
	if q.ownSt && q.st != nil {
		q.st.Close()
	}
	return first
}
