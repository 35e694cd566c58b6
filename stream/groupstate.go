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

// TimeoutKind says what clock a GroupState's timeout follows.
type TimeoutKind int

const (
	// NoTimeout: keys time out never.
	NoTimeout TimeoutKind = iota
	// ProcessingTimeTimeout: a timeout fires in the first batch whose
	// timestamp (recorded in its offsets entry, so replays agree) is at or
	// after it.
	ProcessingTimeTimeout
	// EventTimeTimeout: a timeout fires in the first batch whose watermark
	// is at or after it.
	EventTimeTimeout
)

// GroupState is the state of one key in FlatMapGroupsWithState, as
// Spark's GroupState: read it, update or remove it, and set a timeout.
type GroupState[S any] struct {
	value    S
	exists   bool
	removed  bool
	timedOut bool
	timeout  int64 // Unix ms; 0 none
	now      int64 // the clock of the timeout kind, Unix ms
}

// Get returns the state and whether there is one.
func (g *GroupState[S]) Get() (S, bool) { return g.value, g.exists && !g.removed }

// Update sets the state.
func (g *GroupState[S]) Update(s S) { g.value, g.exists, g.removed = s, true, false }

// Remove deletes the state (and its timeout).
func (g *GroupState[S]) Remove() { g.removed, g.timeout = true, 0 }

// HasTimedOut reports whether the function is called because the key's
// timeout fired (then there are no new values).
func (g *GroupState[S]) HasTimedOut() bool { return g.timedOut }

// SetTimeoutAt sets the timeout to an instant: an event time for
// EventTimeTimeout, a wall-clock time for ProcessingTimeTimeout. Setting
// it again replaces it; Remove clears it.
func (g *GroupState[S]) SetTimeoutAt(t time.Time) { g.timeout = t.UnixMilli() }

// SetTimeoutAfter sets the timeout d after the current clock (the batch
// timestamp, or the watermark).
func (g *GroupState[S]) SetTimeoutAfter(d time.Duration) { g.timeout = g.now + d.Milliseconds() }

// Now returns the clock timeouts are compared with in this batch.
func (g *GroupState[S]) Now() time.Time { return time.UnixMilli(g.now).UTC() }

// FlatMapGroupsWithState calls f once per key that has new records in the
// batch, with those records and the key's state, and once per key whose
// timeout fired (with no records and HasTimedOut true); f's outputs are
// the operator's output. Like Spark's flatMapGroupsWithState. The state
// of each key and its timeout live in state store op.
func FlatMapGroupsWithState[T any, K comparable, S any, U any](b *Batch, op int64, in *dataset.Dataset[T], timeout TimeoutKind,
	key func(T) K, f func(key K, values []T, state *GroupState[S]) []U, kc state.Codec[K], sc state.Codec[S]) (*dataset.Dataset[U], error) {
	schema := state.Schema{Key: "groupstate+" + kc.Schema(), Value: fmt.Sprintf("timeout%d+%s", timeout, sc.Schema())}
	if err := b.register(OperatorInfo{ID: op, Kind: "FlatMapGroupsWithState", KeySchema: schema.Key, ValueSchema: schema.Value}); err != nil {
		return nil, err
	}
	grouped := dataset.GroupByKey(dataset.Map(in, func(t T) dataset.Pair[K, T] { return dataset.KV(key(t), t) }), b.partitions)
	if b.dryRun {
		return dataset.FlatMap(grouped, func(dataset.Pair[K, []T]) iter.Seq[U] { return func(func(U) bool) {} }), nil
	}
	now := int64(0)
	switch timeout {
	case ProcessingTimeTimeout:
		now = b.timestamp
	case EventTimeTimeout:
		now = b.watermark
	}
	return statefulOp(b, op, schema, grouped, func(ctx context.Context, st state.Store, recs iter.Seq2[dataset.Pair[K, []T], error]) ([]U, error) {
		return groupStatePartition(st, recs, timeout, now, f, kc, sc)
	}), nil
}

func groupStatePartition[T any, K comparable, S any, U any](st state.Store,
	recs iter.Seq2[dataset.Pair[K, []T], error], timeout TimeoutKind, now int64,
	f func(key K, values []T, state *GroupState[S]) []U, kc state.Codec[K], sc state.Codec[S]) ([]U, error) {
	be := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)^(1<<63)) }
	load := func(key K) (*GroupState[S], error) {
		g := &GroupState[S]{now: now}
		raw, ok, err := st.Get(kc.Append([]byte{'s'}, key))
		if err != nil || !ok {
			return g, err
		}
		g.timeout = int64(binary.BigEndian.Uint64(raw[:8]) ^ (1 << 63))
		if g.value, err = sc.Decode(raw[8:]); err != nil {
			return nil, fmt.Errorf("decode the state of a key: %w", err)
		}
		g.exists = true
		return g, nil
	}
	save := func(key K, old, g *GroupState[S]) error {
		sk := kc.Append([]byte{'s'}, key)
		if old.exists && old.timeout != 0 {
			if err := st.Delete(append(append([]byte{'t'}, be(old.timeout)...), sk[1:]...)); err != nil {
				return err
			}
		}
		if g.removed || !g.exists {
			return st.Delete(sk)
		}
		if err := st.Put(sk, sc.Append(be(g.timeout), g.value)); err != nil {
			return err
		}
		if g.timeout != 0 && timeout != NoTimeout {
			return st.Put(append(append([]byte{'t'}, be(g.timeout)...), sk[1:]...), nil)
		}
		return nil
	}
	var outs []U
	touched := map[K]bool{}
	for r, err := range recs {
		if err != nil {
			return nil, err
		}
		g, err := load(r.Key)
		if err != nil {
			return nil, err
		}
		old := *g
		outs = append(outs, f(r.Key, r.Value, g)...)
		if err := save(r.Key, &old, g); err != nil {
			return nil, err
		}
		touched[r.Key] = true
	}
	if timeout != NoTimeout {
		var due [][]byte
		end := []byte{'u'} // every timeout (a drain batch's clock is at infinity)
		if now < math.MaxInt64 {
			end = append([]byte{'t'}, be(now+1)...)
		}
		for kv, err := range st.Range([]byte{'t'}, end) {
			if err != nil {
				return nil, err
			}
			due = append(due, append([]byte(nil), kv.Key[9:]...))
		}
		for _, raw := range due {
			key, err := kc.Decode(raw)
			if err != nil {
				return nil, fmt.Errorf("decode a state key: %w", err)
			}
			if touched[key] {
				continue // it had data this batch, which set its timeout anew
			}
			g, err := load(key)
			if err != nil {
				return nil, err
			}
			old := *g
			g.timedOut, g.timeout = true, 0
			outs = append(outs, f(key, nil, g)...)
			if err := save(key, &old, g); err != nil {
				return nil, err
			}
		}
	}
	return outs, nil
}
