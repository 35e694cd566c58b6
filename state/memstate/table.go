package memstate

import (
	"strings"
	"unsafe"

	"github.com/google/btree"
)

// entry is one key and value in the ordered index.
type entry struct {
	key string
	val []byte
}

func lessEntry(a, b entry) bool { return a.key < b.key }

// table is the contents of one version: a hash map for point reads and
// writes, and a copy-on-write B-tree of the same entries for ordered scans
// and for snapshots taken without stopping the writer (Clone is O(1)).
// Keys are shared between the two (a Go string is immutable).
type table struct {
	version int64
	m       map[string][]byte // nil in read-only tables
	t       *btree.BTreeG[entry]
	bytes   int64 // sum of key and value lengths
}

const btreeDegree = 32

func newTable(version int64, withMap bool) *table {
	t := &table{version: version, t: btree.NewG(btreeDegree, lessEntry)}
	if withMap {
		t.m = make(map[string][]byte)
	}
	return t
}

func (t *table) get(key string) ([]byte, bool) {
	if t.m != nil {
		v, ok := t.m[key]
		return v, ok
	}
	e, ok := t.t.Get(entry{key: key})
	return e.val, ok
}

func (t *table) put(key string, val []byte) {
	if old, ok := t.t.ReplaceOrInsert(entry{key, val}); ok {
		t.bytes -= int64(len(old.key) + len(old.val))
	}
	t.bytes += int64(len(key) + len(val))
	if t.m != nil {
		t.m[key] = val
	}
}

func (t *table) del(key string) {
	if old, ok := t.t.Delete(entry{key: key}); ok {
		t.bytes -= int64(len(old.key) + len(old.val))
	}
	if t.m != nil {
		delete(t.m, key)
	}
}

func (t *table) len() int { return t.t.Len() }

// ascend calls fn for the entries in [start, end) in order; an empty
// start or end (nil) is unbounded.
func ascend(t *btree.BTreeG[entry], start, end []byte, fn func(entry) bool) {
	switch {
	case start == nil && end == nil:
		t.Ascend(fn)
	case end == nil:
		t.AscendGreaterOrEqual(entry{key: string(start)}, fn)
	case start == nil:
		t.AscendLessThan(entry{key: string(end)}, fn)
	default:
		t.AscendRange(entry{key: string(start)}, entry{key: string(end)}, fn)
	}
}

// keyBytes views a key string as bytes without copying. The caller must
// not modify them (the store's contract says so).
func keyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// keyString views bytes the state owns and never modifies as a string.
func keyString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// prefixEnd returns the smallest key greater than every key with prefix,
// or nil when there is none.
func prefixEnd(prefix []byte) []byte {
	end := []byte(strings.Clone(string(prefix)))
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// entryOverhead estimates the memory per key beyond its bytes: map slot,
// B-tree item and slice headers.
const entryOverhead = 96
