package state

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"reflect"
)

// Codec turns values of T into bytes and back. Key codecs must preserve
// order (a < b iff Append(a) < Append(b) bytewise) for Range to follow T's
// order.
type Codec[T any] interface {
	// Append appends the encoding of v to dst.
	Append(dst []byte, v T) []byte
	// Decode decodes b, which it must not retain.
	Decode(b []byte) (T, error)
	// Schema describes the encoding; it is pinned at a store's first use.
	Schema() string
}

// StringCodec encodes strings as their bytes; it preserves order.
type StringCodec struct{}

func (StringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (StringCodec) Decode(b []byte) (string, error)    { return string(b), nil }
func (StringCodec) Schema() string                     { return "string" }

// BytesCodec passes bytes through; it preserves order.
type BytesCodec struct{}

func (BytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (BytesCodec) Decode(b []byte) ([]byte, error)    { return append([]byte(nil), b...), nil }
func (BytesCodec) Schema() string                     { return "bytes" }

// Int64Codec encodes int64 in 8 big-endian bytes with the sign bit
// flipped, so that byte order is numeric order.
type Int64Codec struct{}

func (Int64Codec) Append(dst []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(v)^(1<<63))
}

func (Int64Codec) Decode(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("state: int64 value has %d bytes, want 8", len(b))
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), nil
}

func (Int64Codec) Schema() string { return "int64" }

// JSONCodec encodes values as JSON. It does not preserve order: use it for
// values, not for keys you Range over.
type JSONCodec[T any] struct{}

func (JSONCodec[T]) Append(dst []byte, v T) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("state: JSONCodec cannot encode %T: %v", v, err))
	}
	return append(dst, b...)
}

func (JSONCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

func (JSONCodec[T]) Schema() string {
	var v T
	return "json:" + reflect.TypeOf(&v).Elem().String()
}

// SchemaOf returns the Schema of a key and a value codec.
func SchemaOf[K, V any](kc Codec[K], vc Codec[V]) Schema {
	return Schema{Key: kc.Schema(), Value: vc.Schema()}
}

// Typed is a Store with typed keys and values. Not safe for concurrent use.
type Typed[K, V any] struct {
	Store Store
	Key   Codec[K]
	Value Codec[V]
	kbuf  []byte
	vbuf  []byte
}

// NewTyped wraps s with codecs.
func NewTyped[K, V any](s Store, kc Codec[K], vc Codec[V]) *Typed[K, V] {
	return &Typed[K, V]{Store: s, Key: kc, Value: vc}
}

// Get returns the value of k and whether it is present.
func (t *Typed[K, V]) Get(k K) (V, bool, error) {
	var zero V
	t.kbuf = t.Key.Append(t.kbuf[:0], k)
	b, ok, err := t.Store.Get(t.kbuf)
	if err != nil || !ok {
		return zero, ok, err
	}
	v, err := t.Value.Decode(b)
	if err != nil {
		return zero, false, fmt.Errorf("state: decode value of %v in %s: %w", k, t.Store.ID(), err)
	}
	return v, true, nil
}

// Put sets k to v.
func (t *Typed[K, V]) Put(k K, v V) error {
	t.kbuf = t.Key.Append(t.kbuf[:0], k)
	t.vbuf = t.Value.Append(t.vbuf[:0], v)
	return t.Store.Put(t.kbuf, t.vbuf)
}

// Delete removes k.
func (t *Typed[K, V]) Delete(k K) error {
	t.kbuf = t.Key.Append(t.kbuf[:0], k)
	return t.Store.Delete(t.kbuf)
}

// Entry is one key and value of a Typed store.
type Entry[K, V any] struct {
	Key   K
	Value V
}

// All yields every entry in key order. A read or decoding error is yielded
// once, as the last item.
func (t *Typed[K, V]) All() iter.Seq2[Entry[K, V], error] {
	return func(yield func(Entry[K, V], error) bool) {
		for kv, err := range t.Store.Range(nil, nil) {
			if err != nil {
				yield(Entry[K, V]{}, err)
				return
			}
			k, err := t.Key.Decode(kv.Key)
			if err != nil {
				yield(Entry[K, V]{}, fmt.Errorf("state: decode key %q in %s: %w", kv.Key, t.Store.ID(), err))
				return
			}
			v, err := t.Value.Decode(kv.Value)
			if err != nil {
				yield(Entry[K, V]{}, fmt.Errorf("state: decode value of key %q in %s: %w", kv.Key, t.Store.ID(), err))
				return
			}
			if !yield(Entry[K, V]{Key: k, Value: v}, nil) {
				return
			}
		}
	}
}

// Commit commits the underlying store.
func (t *Typed[K, V]) Commit(ctx context.Context) (int64, error) { return t.Store.Commit(ctx) }

// Abort aborts the underlying store.
func (t *Typed[K, V]) Abort() { t.Store.Abort() }
