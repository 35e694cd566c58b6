package dataset

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"slices"
	"sync"
)

// Pair is a keyed record, the input and output of the key-based
// operations.
type Pair[K comparable, V any] struct {
	Key   K `parquet:"key" json:"key"`
	Value V `parquet:"value" json:"value"`
}

// KV returns Pair{k, v}.
func KV[K comparable, V any](k K, v V) Pair[K, V] { return Pair[K, V]{Key: k, Value: v} }

// exchange is the output of one shuffle: the records of every parent
// partition, routed to output partitions. It is computed once, by the first
// action that needs it, and reused by later actions (Spark reuses shuffle
// files the same way). It lives in memory.
type exchange[R any] struct {
	mu      sync.Mutex
	done    bool
	buckets [][][]R // [output partition][parent partition] -> records, in order
}

// get computes the exchange if needed: produce fills, for parent partition
// p, the records bound for each output partition, in order. A failed
// computation is not remembered, so a later action retries it.
func (x *exchange[R]) get(ctx context.Context, s *Session, parent *node, n int, produce func(ctx context.Context, p int, out [][]R) error) ([][][]R, error) {
	_, parentParts, _ := parent.snapshot()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done {
		return x.buckets, nil
	}
	byParent := make([][][]R, parentParts)
	err := runPartitions(ctx, s, parentParts, func(ctx context.Context, p int) error {
		out := make([][]R, n)
		if err := produce(ctx, p, out); err != nil {
			return partitionError(parent, p, err) // the input partition that failed
		}
		byParent[p] = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	buckets := make([][][]R, n)
	for i := range buckets {
		buckets[i] = make([][]R, parentParts)
		for p := range parentParts {
			buckets[i][p] = byParent[p][i]
		}
	}
	x.buckets, x.done = buckets, true
	return buckets, nil
}

// emitAll emits the records of one output partition, parent by parent.
func emitAll[R any](ctx context.Context, parts [][]R, emit func(R) error) error {
	n := 0
	for _, recs := range parts {
		for _, r := range recs {
			if n++; n%checkEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := emit(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Session) partitionsOr(n int) int {
	if n <= 0 {
		return s.opts.Partitions
	}
	return n
}

// Repartition redistributes the records into n partitions (0: the
// session's default), round robin: record j of partition p goes to
// partition (p+j) mod n.
func (d *Dataset[T]) Repartition(n int) *Dataset[T] {
	n = d.s.partitionsOr(n)
	x := &exchange[T]{}
	return newDataset(d.s, "Repartition", n, []*node{d.n},
		func(ctx context.Context, part int, emit func(T) error) error {
			b, err := x.get(ctx, d.s, d.n, n, func(ctx context.Context, p int, out [][]T) error {
				j := p
				return d.compute(ctx, p, func(t T) error {
					out[j%n] = append(out[j%n], t)
					j++
					return nil
				})
			})
			if err != nil {
				return err
			}
			return emitAll(ctx, b[part], emit)
		})
}

// ordered is a map that remembers the order keys were first seen, so that
// key-based operations give the same output order every run.
type ordered[K comparable, V any] struct {
	index map[K]int
	keys  []K
	vals  []V
}

func newOrdered[K comparable, V any]() *ordered[K, V] {
	return &ordered[K, V]{index: map[K]int{}}
}

func (o *ordered[K, V]) upsert(k K, v V, merge func(old, v V) V) {
	if i, ok := o.index[k]; ok {
		o.vals[i] = merge(o.vals[i], v)
		return
	}
	o.index[k] = len(o.keys)
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

// ReduceByKey merges the values of each key with f, which must be
// associative and commutative, into n partitions (0: the session's
// default). Values are combined within each input partition first, as
// Spark's map-side combine does. Output order: keys in the order first
// seen, input partitions in order.
func ReduceByKey[K comparable, V any](d *Dataset[Pair[K, V]], f func(a, b V) V, n int) *Dataset[Pair[K, V]] {
	n = d.s.partitionsOr(n)
	x := &exchange[Pair[K, V]]{}
	return newDataset(d.s, "ReduceByKey", n, []*node{d.n},
		func(ctx context.Context, part int, emit func(Pair[K, V]) error) error {
			b, err := x.get(ctx, d.s, d.n, n, func(ctx context.Context, p int, out [][]Pair[K, V]) error {
				local := newOrdered[K, V]()
				if err := d.compute(ctx, p, func(kv Pair[K, V]) error {
					local.upsert(kv.Key, kv.Value, f)
					return nil
				}); err != nil {
					return err
				}
				for i, k := range local.keys {
					out[bucketOf(k, n)] = append(out[bucketOf(k, n)], Pair[K, V]{k, local.vals[i]})
				}
				return nil
			})
			if err != nil {
				return err
			}
			merged := newOrdered[K, V]()
			for _, recs := range b[part] {
				for _, kv := range recs {
					merged.upsert(kv.Key, kv.Value, f)
				}
			}
			for i, k := range merged.keys {
				if err := emit(Pair[K, V]{k, merged.vals[i]}); err != nil {
					return err
				}
			}
			return nil
		})
}

// hashRoute routes every pair of a partition to the bucket of its key.
func hashRoute[K comparable, V any](d *Dataset[Pair[K, V]], n int) func(ctx context.Context, p int, out [][]Pair[K, V]) error {
	return func(ctx context.Context, p int, out [][]Pair[K, V]) error {
		return d.compute(ctx, p, func(kv Pair[K, V]) error {
			b := bucketOf(kv.Key, n)
			out[b] = append(out[b], kv)
			return nil
		})
	}
}

// GroupByKey gathers the values of each key, in the order they come, into
// n partitions (0: the session's default). Prefer ReduceByKey when the
// values can be combined: it shuffles less.
func GroupByKey[K comparable, V any](d *Dataset[Pair[K, V]], n int) *Dataset[Pair[K, []V]] {
	n = d.s.partitionsOr(n)
	x := &exchange[Pair[K, V]]{}
	return newDataset(d.s, "GroupByKey", n, []*node{d.n},
		func(ctx context.Context, part int, emit func(Pair[K, []V]) error) error {
			b, err := x.get(ctx, d.s, d.n, n, hashRoute(d, n))
			if err != nil {
				return err
			}
			groups := newOrdered[K, []V]()
			for _, recs := range b[part] {
				for _, kv := range recs {
					groups.upsert(kv.Key, []V{kv.Value}, func(old, v []V) []V { return append(old, v...) })
				}
			}
			for i, k := range groups.keys {
				if err := emit(Pair[K, []V]{k, groups.vals[i]}); err != nil {
					return err
				}
			}
			return nil
		})
}

// Joined is a record of an inner join.
type Joined[V, W any] struct {
	Left  V `parquet:"left" json:"left"`
	Right W `parquet:"right" json:"right"`
}

// LeftJoined is a record of a left outer join: Right is the zero value and
// Matched false when the key has no match on the right.
type LeftJoined[V, W any] struct {
	Left    V    `parquet:"left" json:"left"`
	Right   W    `parquet:"right" json:"right"`
	Matched bool `parquet:"matched" json:"matched"`
}

// joinExchange shuffles both sides of a join by key into n partitions.
func joinExchange[K comparable, V, W any](left *Dataset[Pair[K, V]], right *Dataset[Pair[K, W]], n int) func(ctx context.Context, part int) ([][]Pair[K, V], [][]Pair[K, W], error) {
	lx, rx := &exchange[Pair[K, V]]{}, &exchange[Pair[K, W]]{}
	return func(ctx context.Context, part int) ([][]Pair[K, V], [][]Pair[K, W], error) {
		lb, err := lx.get(ctx, left.s, left.n, n, hashRoute(left, n))
		if err != nil {
			return nil, nil, err
		}
		rb, err := rx.get(ctx, right.s, right.n, n, hashRoute(right, n))
		if err != nil {
			return nil, nil, err
		}
		return lb[part], rb[part], nil
	}
}

func indexRight[K comparable, W any](parts [][]Pair[K, W]) map[K][]W {
	m := map[K][]W{}
	for _, recs := range parts {
		for _, kv := range recs {
			m[kv.Key] = append(m[kv.Key], kv.Value)
		}
	}
	return m
}

// Join is the inner join of two keyed datasets into n partitions (0: the
// session's default): one record for every pair of a left and a right
// record with equal keys, in left order, then right order.
func Join[K comparable, V, W any](left *Dataset[Pair[K, V]], right *Dataset[Pair[K, W]], n int) *Dataset[Pair[K, Joined[V, W]]] {
	n = left.s.partitionsOr(n)
	sides := joinExchange(left, right, n)
	return newDataset(left.s, "Join", n, []*node{left.n, right.n},
		func(ctx context.Context, part int, emit func(Pair[K, Joined[V, W]]) error) error {
			l, r, err := sides(ctx, part)
			if err != nil {
				return err
			}
			byKey := indexRight(r)
			return emitAll(ctx, l, func(kv Pair[K, V]) error {
				for _, w := range byKey[kv.Key] {
					if err := emit(Pair[K, Joined[V, W]]{kv.Key, Joined[V, W]{kv.Value, w}}); err != nil {
						return err
					}
				}
				return nil
			})
		})
}

// LeftOuterJoin is like Join, but keeps every left record: one without a
// match on the right comes out once with Matched false.
func LeftOuterJoin[K comparable, V, W any](left *Dataset[Pair[K, V]], right *Dataset[Pair[K, W]], n int) *Dataset[Pair[K, LeftJoined[V, W]]] {
	n = left.s.partitionsOr(n)
	sides := joinExchange(left, right, n)
	return newDataset(left.s, "LeftOuterJoin", n, []*node{left.n, right.n},
		func(ctx context.Context, part int, emit func(Pair[K, LeftJoined[V, W]]) error) error {
			l, r, err := sides(ctx, part)
			if err != nil {
				return err
			}
			byKey := indexRight(r)
			return emitAll(ctx, l, func(kv Pair[K, V]) error {
				ws := byKey[kv.Key]
				if len(ws) == 0 {
					var zero W
					return emit(Pair[K, LeftJoined[V, W]]{kv.Key, LeftJoined[V, W]{Left: kv.Value, Right: zero}})
				}
				for _, w := range ws {
					if err := emit(Pair[K, LeftJoined[V, W]]{kv.Key, LeftJoined[V, W]{kv.Value, w, true}}); err != nil {
						return err
					}
				}
				return nil
			})
		})
}

// Distinct keeps the first of equal records, into n partitions (0: the
// session's default).
func Distinct[T comparable](d *Dataset[T], n int) *Dataset[T] {
	n = d.s.partitionsOr(n)
	x := &exchange[T]{}
	return newDataset(d.s, "Distinct", n, []*node{d.n},
		func(ctx context.Context, part int, emit func(T) error) error {
			b, err := x.get(ctx, d.s, d.n, n, func(ctx context.Context, p int, out [][]T) error {
				seen := map[T]bool{}
				return d.compute(ctx, p, func(t T) error {
					if !seen[t] {
						seen[t] = true
						out[bucketOf(t, n)] = append(out[bucketOf(t, n)], t)
					}
					return nil
				})
			})
			if err != nil {
				return err
			}
			seen := map[T]bool{}
			return emitAll(ctx, b[part], func(t T) error {
				if seen[t] {
					return nil
				}
				seen[t] = true
				return emit(t)
			})
		})
}

// SortBy sorts the records by key into n partitions (0: the session's
// default) of ascending (or descending) key ranges; within a partition the
// sort is stable. Range boundaries come from a deterministic sample.
func SortBy[T any, K cmp.Ordered](d *Dataset[T], key func(T) K, ascending bool, n int) *Dataset[T] {
	n = d.s.partitionsOr(n)
	parent := d.NumPartitions()
	var (
		mu     sync.Mutex
		done   bool
		sorted [][]T
	)
	compare := func(a, b K) int {
		if ascending {
			return cmp.Compare(a, b)
		}
		return cmp.Compare(b, a)
	}
	prepare := func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return nil
		}
		all := make([][]T, parent)
		if err := runPartitions(ctx, d.s, parent, func(ctx context.Context, p int) error {
			return partitionError(d.n, p, d.compute(ctx, p, func(t T) error {
				all[p] = append(all[p], t)
				return nil
			}))
		}); err != nil {
			return err
		}
		var sample []K
		for _, recs := range all {
			step := max(1, len(recs)/(20*n))
			for i := 0; i < len(recs); i += step {
				sample = append(sample, key(recs[i]))
			}
		}
		slices.SortFunc(sample, compare)
		bounds := make([]K, 0, n-1)
		for i := 1; i < n && len(sample) > 0; i++ {
			bounds = append(bounds, sample[i*len(sample)/n])
		}
		out := make([][]T, n)
		for _, recs := range all {
			for _, t := range recs {
				b, _ := slices.BinarySearchFunc(bounds, key(t), compare)
				out[b] = append(out[b], t)
			}
		}
		for i := range out {
			slices.SortStableFunc(out[i], func(a, b T) int { return compare(key(a), key(b)) })
		}
		sorted, done = out, true
		return nil
	}
	return newDataset(d.s, "SortBy", n, []*node{d.n},
		func(ctx context.Context, part int, emit func(T) error) error {
			if err := prepare(ctx); err != nil {
				return err
			}
			return emitAll(ctx, [][]T{sorted[part]}, emit)
		})
}

// bucketOf returns the partition of a key: a stable hash (the same in
// every process and run, unlike Go's map hash) modulo n.
func bucketOf[K comparable](k K, n int) int {
	return int(stableHash(k) % uint64(n))
}

// stableHash hashes a key the same way in every run and every process:
// it decides which partition, and so which state store, a key belongs to,
// so it is part of cairn's durable format and must not change. Integers,
// floats, bools and strings hash their value; structs and arrays combine
// the hashes of their fields in order (through reflection, once per type);
// other kinds (pointers, channels, interfaces holding them) hash their %#v
// text, which is not stable across processes: do not key by them.
func stableHash[K comparable](k K) uint64 {
	switch v := any(k).(type) {
	case string:
		return mix(fnvString(v))
	case int:
		return mix(uint64(v))
	case int64:
		return mix(uint64(v))
	case int32:
		return mix(uint64(v))
	case uint64:
		return mix(v)
	case uint32:
		return mix(uint64(v))
	case uint:
		return mix(uint64(v))
	case float64:
		return mix(math.Float64bits(v))
	case bool:
		if v {
			return mix(1)
		}
		return mix(0)
	}
	return mix(hashValue(reflect.ValueOf(k)))
}

func fnvString(v string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a, without allocating
	for i := 0; i < len(v); i++ {
		h ^= uint64(v[i])
		h *= 1099511628211
	}
	return h
}

// hashValue hashes any comparable value by its contents.
func hashValue(v reflect.Value) uint64 {
	switch v.Kind() {
	case reflect.String:
		return fnvString(v.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return uint64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(v.Float())
	case reflect.Bool:
		if v.Bool() {
			return 1
		}
		return 0
	case reflect.Struct:
		h := uint64(0x9e3779b97f4a7c15)
		for i := range v.NumField() {
			h = mix(h ^ hashValue(v.Field(i)))
		}
		return h
	case reflect.Array:
		h := uint64(0x632be59bd9b4e019)
		for i := range v.Len() {
			h = mix(h ^ hashValue(v.Index(i)))
		}
		return h
	}
	f := fnv.New64a()
	fmt.Fprintf(f, "%#v", v.Interface())
	return f.Sum64()
}

// mix is the finalizer of SplitMix64: it spreads sequential integers over
// all buckets.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
