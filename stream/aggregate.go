package stream

import (
	"context"
	"iter"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
)

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
