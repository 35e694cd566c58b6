package stream

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
)

// DropDuplicates keeps the first record of each key and drops the records
// with the same key that follow within the watermark delay, like Spark's
// dropDuplicatesWithinWatermark: a key is remembered until the watermark
// passes its first event time plus delay, then forgotten, so state stays
// bounded. Records later than the watermark are dropped and counted (and
// written to Options.LateRows if set); a record with a zero event time is
// a bad record, as in WindowAggregate.
// Within a batch, the first record of a key in partition order wins.
//
// State layout, per key: "k" + key -> expiry, and "e" + expiry + key ->
// nothing, so that expiry is an ordered scan of the "e" range.
func DropDuplicates[T any, K comparable](b *Batch, op int64, in *dataset.Dataset[T], delay time.Duration,
	eventTime func(T) time.Time, key func(T) K, kc state.Codec[K]) (*dataset.Dataset[T], error) {
	if delay < 0 {
		return nil, fmt.Errorf("stream: watermark delay of operator %d is %v; it must not be negative", op, delay)
	}
	delayMs := delay.Milliseconds()
	schema := state.Schema{Key: "dedup+" + kc.Schema(), Value: "expiry"}
	if err := b.register(OperatorInfo{ID: op, Kind: "DropDuplicates", KeySchema: schema.Key, ValueSchema: schema.Value, WatermarkDelay: &delayMs}); err != nil {
		return nil, err
	}
	watermark := b.watermark
	keyed := dataset.MapPartitions(in, func(ctx context.Context, part int, recs iter.Seq2[T, error]) iter.Seq2[dataset.Pair[K, T], error] {
		return func(yield func(dataset.Pair[K, T], error) bool) {
			aside := b.setAside(op, part)
			defer aside.done()
			for t, err := range recs {
				if err != nil {
					yield(dataset.Pair[K, T]{}, err)
					return
				}
				ms, ok, err := placeInTime(aside, t, eventTime(t))
				if err != nil {
					yield(dataset.Pair[K, T]{}, err)
					return
				}
				if !ok {
					continue
				}
				if ms < watermark {
					aside.lateRow(t, ms)
					continue
				}
				if !yield(dataset.KV(key(t), t), nil) {
					return
				}
			}
		}
	})
	// Route each key to its state partition; GroupByKey keeps arrival order.
	grouped := dataset.GroupByKey(keyed, b.partitions)
	if b.dryRun {
		return dataset.Map(grouped, func(dataset.Pair[K, []T]) T { var zero T; return zero }), nil
	}
	return statefulOp(b, op, schema, grouped, func(ctx context.Context, st state.Store, recs iter.Seq2[dataset.Pair[K, []T], error]) ([]T, error) {
		return dedupPartition(st, recs, delayMs, watermark, eventTime, kc)
	}), nil
}

func dedupPartition[T any, K comparable](st state.Store,
	recs iter.Seq2[dataset.Pair[K, []T], error], delayMs, watermark int64, eventTime func(T) time.Time, kc state.Codec[K]) ([]T, error) {
	ms := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)^(1<<63)) }
	var firsts []T
	for r, err := range recs {
		if err != nil {
			return nil, err
		}
		kk := kc.Append([]byte{'k'}, r.Key)
		if _, seen, err := st.Get(kk); err != nil {
			return nil, err
		} else if seen {
			continue
		}
		first := r.Value[0]
		expiry := eventTime(first).UnixMilli() + delayMs
		if err := st.Put(kk, ms(expiry)); err != nil {
			return nil, err
		}
		if err := st.Put(append(append([]byte{'e'}, ms(expiry)...), kk[1:]...), nil); err != nil {
			return nil, err
		}
		firsts = append(firsts, first)
	}
	// Forget the keys whose expiry the watermark has passed.
	var expired [][]byte
	for kv, err := range st.Range([]byte{'e'}, append([]byte{'e'}, ms(watermark)...)) {
		if err != nil {
			return nil, err
		}
		expired = append(expired, append([]byte(nil), kv.Key...))
	}
	for _, e := range expired {
		if err := st.Delete(e); err != nil {
			return nil, err
		}
		if err := st.Delete(append([]byte{'k'}, e[9:]...)); err != nil {
			return nil, err
		}
	}
	return firsts, nil
}
