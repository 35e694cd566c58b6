package stream

import (
	"fmt"
	"log/slog"
	"time"
)

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
