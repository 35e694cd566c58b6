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
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// "memstate". It must be registered when Start is called: "pebble"
	// needs import _ "github.com/cairn-data/cairn/state/pebblestate".
	// Spark: spark.sql.streaming.stateStore.providerClass.
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
	// LateRows, if set, receives the rows that operators set aside: rows
	// later than the watermark, and records with a zero event time (see
	// LateRow). Each batch's are written with the batch ID after the
	// batch's output and before its commit, so a sink idempotent by batch
	// (a FileSink[LateRow]) holds each exactly once; a batch with none
	// writes an empty batch. Not pinned. Default nil: late rows are
	// dropped, as in Spark, and only counted (BatchProgress.LateRows, per
	// operator in OperatorProgress), and a zero event time fails the
	// batch. Flink: a side output for late data (sideOutputLateData).
	LateRows Sink[LateRow]
	// LateWarnFraction: when an operator drops more than this fraction of
	// a batch's input rows as late, the batch logs a WARN naming the
	// operator and the watermark. Default 0.01 (1%): a well-set watermark
	// delay leaves stragglers only, far below that, while a delay that is
	// too short or a source that went back in time makes it clear at once;
	// every late row is counted in the progress in any case. Negative:
	// never warn. Spark and Flink only count late rows.
	LateWarnFraction float64
}

// DefaultLateWarnFraction is the default of Options.LateWarnFraction.
const DefaultLateWarnFraction = 0.01

// Trigger says when a query runs its batches.
type Trigger struct {
	// Interval starts a batch at most every Interval (Spark:
	// Trigger.ProcessingTime). 0: as fast as possible.
	Interval time.Duration
	// UntilIdle processes what is available, then stops (Spark:
	// Trigger.AvailableNow).
	UntilIdle bool
	// Drain is UntilIdle, and then one last batch with the watermark at
	// infinity, so that every open window fires, before the query stops
	// (Flink: stop with drain). A drained query is finished, as a drained
	// Flink job is: its checkpoint location is sealed. A later Start that
	// finds new input in the source refuses with a *DrainedError, since
	// every new row would be later than the watermark; a later Start that
	// finds none runs nothing and Run returns nil. Jobs run on a schedule
	// over input that keeps arriving use UntilIdle, and drain only once
	// the input has ended for good.
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
	if o.LateWarnFraction == 0 {
		o.LateWarnFraction = DefaultLateWarnFraction
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
	case math.IsNaN(o.LateWarnFraction):
		return errors.New("stream: Options.LateWarnFraction is NaN; give a fraction of the input (default 0.01), or a negative value for no warning")
	case o.StateProvider != "" && !slices.Contains(state.Providers(), o.StateProvider):
		return fmt.Errorf("stream: Options.StateProvider is %q, which this program does not register (registered: %s); %s",
			o.StateProvider, strings.Join(state.Providers(), ", "), providerHint(o.StateProvider))
	}
	return nil
}

// providerPackages are the import paths of cairn's state providers.
var providerPackages = map[string]string{
	"memstate": "github.com/cairn-data/cairn/state/memstate",
	"pebble":   "github.com/cairn-data/cairn/state/pebblestate",
}

func providerHint(name string) string {
	if pkg, ok := providerPackages[name]; ok {
		return fmt.Sprintf("import its package for its side effect: import _ %q", pkg)
	}
	return "import the package that registers it (cairn's own are " + providerPackages["memstate"] + " and " + providerPackages["pebble"] + "), or correct the name"
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
	if err := q.checkSealed(ctx); err != nil {
		q.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return q, nil
}

// DrainedError reports new input for a query that was drained: a drained
// query is finished (see Trigger.Drain).
type DrainedError struct {
	Location string
	Source   string
	// Batch is the last batch of the query, the drain batch, run with the
	// watermark at infinity.
	Batch int64
	// Drained is when the drain batch was committed.
	Drained time.Time
}

func (e *DrainedError) Error() string {
	return fmt.Sprintf("stream: the query in %s was drained by batch %d at %s (Trigger.Drain: every window closed, the watermark is at infinity), "+
		"and source %s has new input since; a drained query is finished and would drop every new row as late. "+
		"To process input that keeps arriving, run scheduled jobs with Trigger.UntilIdle and drain only when the input has ended for good; "+
		"to process this input, start a new query with a new checkpoint location (and a new output)",
		e.Location, e.Batch, e.Drained.UTC().Format(time.RFC3339), e.Source)
}

// ErrDrained matches every *DrainedError.
var ErrDrained = errors.New("stream: the query was drained")

// Is reports whether target is ErrDrained.
func (e *DrainedError) Is(target error) bool { return target == ErrDrained }

// sealed reports whether the query's last batch, committed, was a drain
// batch. (Checkpoints of cairn before sealing may hold batches after the
// drain, run with the watermark still at infinity: sealed too.)
func (q *Query[In, Out]) sealed() bool {
	return !q.pending && q.lastOffsets != nil && q.lastOffsets.Watermark == math.MaxInt64
}

func (q *Query[In, Out]) drainedError() error {
	e := &DrainedError{Location: q.st.Location(), Source: q.src.Identity(), Batch: q.lastOffsets.Batch,
		Drained: time.UnixMilli(q.lastOffsets.Timestamp)}
	if c := q.lastCommit; c != nil && c.Batch == e.Batch {
		e.Drained = time.UnixMilli(c.Committed)
	}
	return e
}

// checkSealed refuses, at Start, a drained query whose source has new
// input. (A pending drain batch is replayed first: it is part of the
// drain.)
func (q *Query[In, Out]) checkSealed(ctx context.Context) error {
	if !q.sealed() {
		return nil
	}
	avail, err := q.src.Available(ctx)
	if err != nil {
		return fmt.Errorf("stream: source %s: %w", q.src.Identity(), err)
	}
	if newInput(q.lastOffsets.End, avail) {
		return q.drainedError()
	}
	return nil
}

// newInput reports whether avail is past end in some partition (or has
// other partitions, which nextBatch refuses on its own).
func newInput(end, avail Offsets) bool {
	if len(end) != len(avail) {
		return true
	}
	for p := range avail {
		if avail[p] > end[p] {
			return true
		}
	}
	return false
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
	// The sinks learn their query: owner, committed output. The late-row
	// sink is written with the batch IDs of the query too.
	info := QueryInfo{ID: q.meta.QueryID, Checkpoint: q.st.Location()}
	if q.lastCommit != nil {
		info.LastCommitted, info.HasCommitted = q.lastCommit.Batch, true
	}
	for _, sink := range []any{q.sink, q.opts.LateRows} {
		if a, ok := sink.(QueryAttacher); ok {
			if err := a.AttachQuery(ctx, info); err != nil {
				return err // it names the sink
			}
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
		if err := q.checkNoQueryObjects(ctx); err != nil {
			return Metadata{}, err
		}
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

// ErrMetadataMissing matches the error of a Start on a checkpoint location
// that holds a query's logs or state but not its metadata object.
var ErrMetadataMissing = errors.New("stream: the checkpoint location has no metadata object but holds a query's logs")

// checkNoQueryObjects is called when the metadata object is missing: a
// new query may start only in a location that holds no other query's
// objects (its logs, state or source log). Starting a new query ID over
// old logs would mix two queries' batches.
func (q *Query[In, Out]) checkNoQueryObjects(ctx context.Context) error {
	for _, prefix := range []string{OffsetsLog + "/", CommitsLog + "/", "state/", "sources/"} {
		objs, err := q.st.List(ctx, prefix)
		if err != nil {
			return fmt.Errorf("stream: %s has no %s object; check that it holds no other query's objects: %w", q.st.Location(), MetadataObject, err)
		}
		if len(objs) > 0 {
			return fmt.Errorf("%w: %s has no %q object (the query ID and pinned settings), yet it holds %s and %d more objects under %s: "+
				"it is the checkpoint of a query whose metadata was deleted or lost, and starting would begin a new query over its logs. "+
				"Restore %q from a copy of the location to resume that query, or give a new, empty checkpoint location to start a new one",
				ErrMetadataMissing, q.st.Location(), MetadataObject, objs[0].Name, len(objs)-1, prefix, MetadataObject)
		}
	}
	return nil
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
		if q.sealed() {
			// The drain batch ran (or had run): the query is finished,
			// whatever the trigger.
			if !ran {
				q.opts.Logger.Info("stream: the query was drained; nothing new to process", "location", q.st.Location(), "drain_batch", q.lastOffsets.Batch)
			}
			return q.writer.flush()
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
	// Records are counted as the source emits them, per partition, and a
	// partition read again (a sink that computes the batch twice) replaces
	// its count: input_rows is what one read of the batch gave.
	read := make([]atomic.Int64, len(entry.End))
	in := dataset.FromFunc(q.session, fmt.Sprintf("Source %s batch %d", q.src.Identity(), entry.Batch), len(entry.End),
		func(ctx context.Context, part int, emit func(In) error) error {
			var n int64
			var downstream error
			err := q.src.Read(ctx, part, entry.Start[part], entry.End[part], func(r In) error {
				n++
				downstream = emit(r)
				return downstream
			})
			if err == nil {
				read[part].Store(n)
			} else if downstream == nil && ctx.Err() == nil {
				// The source's own failure, not one of the operators
				// the records flow through.
				err = &SourceError{Batch: entry.Batch, Source: q.src.Identity(), Partition: part, Err: err}
			}
			return err
		})
	b := &Batch{ID: entry.Batch, partitions: q.opts.Partitions, stores: q.stores, watermark: entry.Watermark, timestamp: entry.Timestamp,
		keepAside: q.opts.LateRows != nil}
	defer b.end()
	out, err := q.plan(b, in)
	if err != nil {
		return false, fmt.Errorf("stream: plan batch %d: %w", entry.Batch, err)
	}
	sinkStart := time.Now()
	if err := q.sink.AddBatch(ctx, entry.Batch, out); err != nil {
		return false, sinkError(entry.Batch, "sink "+q.sink.Identity(), err)
	}
	if q.opts.LateRows != nil {
		rows := dataset.FromSlice(q.session, b.asideRows(), 1)
		if err := q.opts.LateRows.AddBatch(ctx, entry.Batch, rows); err != nil {
			return false, fmt.Errorf("stream: batch %d: write its late rows to Options.LateRows, sink %s: %w", entry.Batch, q.opts.LateRows.Identity(), err)
		}
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
	for i := range read {
		p.InputRows += read[i].Load()
	}
	p.Duration = time.Since(p.Started)
	p.State = b.operatorProgress()
	p.Watermark = entry.Watermark
	for _, o := range p.State {
		p.LateRows += o.LateRows
		p.BadRows += o.BadRows
	}
	q.record(p)
	q.warnSetAside(p)
	return true, nil
}

// sinkError reports a sink's failure; an operator's failure that surfaced
// there is reported as the operator's.
func sinkError(batch int64, sink string, err error) error {
	var oe *OperatorError
	if errors.As(err, &oe) {
		return &surfacedError{op: oe, via: sink, err: err}
	}
	var se *SourceError
	if errors.As(err, &se) {
		return &surfacedError{op: se, via: sink, err: err}
	}
	return fmt.Errorf("stream: batch %d: %s: %w", batch, sink, err)
}

// warnSetAside logs a WARN for each operator that dropped more than
// Options.LateWarnFraction of the batch's input as late, and for each that
// set aside records with a zero event time.
func (q *Query[In, Out]) warnSetAside(p BatchProgress) {
	for _, o := range p.State {
		if frac := q.opts.LateWarnFraction; o.LateRows > 0 && frac >= 0 && float64(o.LateRows) > frac*float64(p.InputRows) {
			route := "they were dropped; set Options.LateRows to keep them"
			if q.opts.LateRows != nil {
				route = "they went to Options.LateRows, sink " + q.opts.LateRows.Identity()
			}
			q.opts.Logger.Warn(fmt.Sprintf("stream: operator %d (%s) dropped %d of the batch's %d input rows as later than the watermark %s; "+
				"%s. If rows are not meant to be this late, raise the operator's watermark delay (pinned: with a new checkpoint location)",
				o.Operator, o.Kind, o.LateRows, p.InputRows, watermarkString(p.Watermark), route),
				"batch", p.Batch, "operator", o.Operator, "kind", o.Kind, "late_rows", o.LateRows, "input_rows", p.InputRows,
				"watermark", watermarkString(p.Watermark), "warn_fraction", frac)
		}
		if o.BadRows > 0 {
			q.opts.Logger.Warn(fmt.Sprintf("stream: operator %d (%s) set aside %d records with a zero event time; they went to Options.LateRows, sink %s",
				o.Operator, o.Kind, o.BadRows, q.opts.LateRows.Identity()),
				"batch", p.Batch, "operator", o.Operator, "kind", o.Kind, "bad_rows", o.BadRows)
		}
	}
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
	sealed := q.sealed()
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
	if more && sealed {
		return nil, false, q.drainedError()
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
