package stream

// The event-time machinery in one place: the step every event-time
// operator takes per record (placeInTime), the greatest event time each
// operator saw, WithWatermark, and the next batch's watermark that a
// commit entry records (Spark's "min" policy over operators).

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"math"
	"time"

	"github.com/cairn-data/cairn/dataset"
)

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

// WithWatermark declares the event time of a stream and how late records
// may be (Spark's withWatermark): the query's watermark then moves to the
// greatest event time seen minus delay, at the end of each batch, which is
// what event-time timeouts follow. It keeps no state and drops no late
// records; stateful operators decide what is late. A record with a zero
// event time (time.Time{}) is a bad record: it fails the batch with an
// *OperatorError naming it, or, with Options.LateRows, goes there and is
// counted as a bad row. op identifies it among the query's operators.
func WithWatermark[T any](b *Batch, op int64, in *dataset.Dataset[T], eventTime func(T) time.Time, delay time.Duration) (*dataset.Dataset[T], error) {
	if delay < 0 {
		return nil, fmt.Errorf("stream: watermark delay of operator %d is %v; it must not be negative", op, delay)
	}
	delayMs := delay.Milliseconds()
	if err := b.register(OperatorInfo{ID: op, Kind: watermarkKind, WatermarkDelay: &delayMs}); err != nil {
		return nil, err
	}
	return dataset.MapPartitions(in, func(ctx context.Context, part int, recs iter.Seq2[T, error]) iter.Seq2[T, error] {
		return func(yield func(T, error) bool) {
			aside := b.setAside(op, part)
			defer aside.done()
			for t, err := range recs {
				if err != nil {
					yield(t, err)
					return
				}
				if _, ok, err := placeInTime(aside, t, eventTime(t)); err != nil {
					var zero T
					yield(zero, err)
					return
				} else if !ok {
					continue
				}
				if !yield(t, nil) {
					return
				}
			}
		}
	}), nil
}

const watermarkKind = "Watermark"

// placeInTime is the event-time step every event-time operator takes for
// each record t, with et its event time: a zero et is a bad record
// (zeroEventTime: an error, or set aside and ok false); otherwise it
// returns et in Unix ms and tracks the partition's greatest event time,
// which done hands to the watermark. Generic, so that t is boxed only on
// the rare zero path, not for every record.
func placeInTime[T any](a *aside, t T, et time.Time) (ms int64, ok bool, err error) {
	if et.IsZero() {
		return 0, false, a.zeroEventTime(t)
	}
	ms = et.UnixMilli()
	a.maxSeen = max(a.maxSeen, ms)
	return ms, true, nil
}

func watermarkString(ms int64) string {
	if ms == math.MaxInt64 {
		return "infinity (drain)"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
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
