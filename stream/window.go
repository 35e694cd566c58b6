package stream

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
)

// Window describes event-time windows: tumbling when Slide is 0 or equal
// to Size, sliding otherwise. Windows are aligned to the Unix epoch, so a
// one-minute window starts on the minute.
type Window struct {
	Size  time.Duration
	Slide time.Duration
}

func (w Window) slide() time.Duration {
	if w.Slide <= 0 {
		return w.Size
	}
	return w.Slide
}

// eachStart calls fn with the start (Unix ms) of every window that holds
// event time t (Unix ms), oldest first, until fn returns false. It
// allocates nothing: it runs for every record.
func (w Window) eachStart(t int64, fn func(start int64) bool) {
	size, slide := w.Size.Milliseconds(), w.slide().Milliseconds()
	last := t - mod(t, slide) // the newest window that holds t starts here
	for s := last - ((size-1)/slide)*slide; s <= last; s += slide {
		if s+size > t && !fn(s) {
			return
		}
	}
}

// starts returns the starts of the windows that hold t, for tests.
func (w Window) starts(t int64) []int64 {
	var out []int64
	w.eachStart(t, func(s int64) bool { out = append(out, s); return true })
	return out
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Windowed is the result of one window for one key.
type Windowed[K comparable, V any] struct {
	Key   K         `json:"key" parquet:"key"`
	Start time.Time `json:"window_start" parquet:"window_start"`
	End   time.Time `json:"window_end" parquet:"window_end"`
	Value V         `json:"value" parquet:"value"`
}

// windowKey is the shuffle key of a record: its window and its key.
type windowKey[K comparable] struct {
	Start int64
	Key   K
}

// WindowAggregate aggregates values per key and event-time window, in
// append mode: a window's result is output once, when the watermark passes
// the window's end, and the window then leaves the state. The watermark
// of the query moves to the greatest event time seen minus delay, at the
// end of each batch; a record whose every window has already closed is
// late: it is dropped and counted in the batch's progress (LateRows), and
// written to Options.LateRows if set. A record whose event time is zero
// (time.Time{}) fails the batch with an *OperatorError naming it, or,
// with Options.LateRows, goes there and is counted as a bad row.
// State store keys put the window start first, so closing windows is an
// ordered scan of the oldest ones.
func WindowAggregate[T any, K comparable, V any](b *Batch, op int64, in *dataset.Dataset[T], w Window, delay time.Duration,
	eventTime func(T) time.Time, key func(T) K, value func(T) V, merge func(a, b V) V,
	kc state.Codec[K], vc state.Codec[V]) (*dataset.Dataset[Windowed[K, V]], error) {
	if w.Size <= 0 || w.slide() > w.Size || w.Size%w.slide() != 0 || w.Size%time.Millisecond != 0 || w.slide()%time.Millisecond != 0 {
		return nil, fmt.Errorf("stream: window of operator %d: size %v and slide %v must be positive whole milliseconds, with the slide dividing the size", op, w.Size, w.Slide)
	}
	if delay < 0 {
		return nil, fmt.Errorf("stream: watermark delay of operator %d is %v; it must not be negative", op, delay)
	}
	delayMs := delay.Milliseconds()
	schema := state.Schema{Key: "window+" + kc.Schema(), Value: vc.Schema()}
	if err := b.register(OperatorInfo{ID: op, Kind: "WindowAggregate", KeySchema: schema.Key, ValueSchema: schema.Value,
		WatermarkDelay: &delayMs, WindowSize: w.Size.Milliseconds(), WindowSlide: w.slide().Milliseconds()}); err != nil {
		return nil, err
	}
	size := w.Size.Milliseconds()
	watermark := b.watermark
	// One closure per partition, and window starts computed in place: this
	// runs for every record, so it allocates nothing per record.
	assigned := dataset.MapPartitions(in, func(ctx context.Context, part int, recs iter.Seq2[T, error]) iter.Seq2[dataset.Pair[windowKey[K], V], error] {
		return func(yield func(dataset.Pair[windowKey[K], V], error) bool) {
			aside := b.setAside(op, part)
			defer aside.done()
			for t, err := range recs {
				if err != nil {
					yield(dataset.Pair[windowKey[K], V]{}, err)
					return
				}
				ms, ok, err := placeInTime(aside, t, eventTime(t))
				if err != nil {
					yield(dataset.Pair[windowKey[K], V]{}, err)
					return
				}
				if !ok {
					continue
				}
				late, stopped := true, false
				w.eachStart(ms, func(s int64) bool {
					if s+size <= watermark {
						return true // this window has closed
					}
					late = false
					stopped = !yield(dataset.KV(windowKey[K]{s, key(t)}, value(t)), nil)
					return !stopped
				})
				if stopped {
					return
				}
				if late {
					aside.lateRow(t, ms)
				}
			}
		}
	})
	reduced := dataset.ReduceByKey(assigned, merge, b.partitions)
	if b.dryRun {
		return dataset.Map(reduced, func(dataset.Pair[windowKey[K], V]) Windowed[K, V] { return Windowed[K, V]{} }), nil
	}
	return statefulOp(b, op, schema, reduced, func(ctx context.Context, st state.Store, recs iter.Seq2[dataset.Pair[windowKey[K], V], error]) ([]Windowed[K, V], error) {
		return windowPartition(st, recs, size, watermark, merge, kc, vc)
	}), nil
}

// windowPartition merges a batch's partial aggregates into the windows in
// state, then outputs and removes the windows the watermark has closed.
func windowPartition[K comparable, V any](st state.Store,
	recs iter.Seq2[dataset.Pair[windowKey[K], V], error], size, watermark int64, merge func(a, b V) V,
	kc state.Codec[K], vc state.Codec[V]) ([]Windowed[K, V], error) {
	var kbuf, vbuf []byte
	encodeKey := func(start int64, key K) []byte {
		kbuf = binary.BigEndian.AppendUint64(kbuf[:0], uint64(start)^(1<<63))
		return kc.Append(kbuf, key)
	}
	for r, err := range recs {
		if err != nil {
			return nil, err
		}
		sk := encodeKey(r.Key.Start, r.Key.Key)
		v := r.Value
		old, ok, err := st.Get(sk)
		if err != nil {
			return nil, err
		}
		if ok {
			prev, err := vc.Decode(old)
			if err != nil {
				return nil, fmt.Errorf("decode state value: %w", err)
			}
			v = merge(prev, v)
		}
		vbuf = vc.Append(vbuf[:0], v)
		if err := st.Put(sk, vbuf); err != nil {
			return nil, err
		}
	}
	// Windows that end at or before the watermark are closed: their starts
	// are below watermark - size, the oldest keys of the store.
	var closed []Windowed[K, V]
	var done [][]byte
	if watermark > math.MinInt64+size {
		limit := binary.BigEndian.AppendUint64(nil, uint64(watermark-size+1)^(1<<63))
		for kv, err := range st.Range(nil, limit) {
			if err != nil {
				return nil, err
			}
			start := int64(binary.BigEndian.Uint64(kv.Key[:8]) ^ (1 << 63))
			key, err := kc.Decode(kv.Key[8:])
			if err != nil {
				return nil, fmt.Errorf("decode state key: %w", err)
			}
			v, err := vc.Decode(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("decode state value: %w", err)
			}
			closed = append(closed, Windowed[K, V]{Key: key, Start: time.UnixMilli(start).UTC(), End: time.UnixMilli(start + size).UTC(), Value: v})
			done = append(done, append([]byte(nil), kv.Key...))
		}
	}
	for _, d := range done {
		if err := st.Delete(d); err != nil {
			return nil, err
		}
	}
	return closed, nil
}
