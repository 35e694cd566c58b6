package memstate

import (
	"slices"
	"strings"
	"unsafe"

	btree "github.com/tidwall/btree"
)

// entry is one key and value in the ordered index.
type entry struct {
	key string
	val []byte
}

func lessEntry(a, b entry) bool { return a.key < b.key }

// index is the ordered copy-on-write index of a table. tidwall/btree's
// Copy is O(1) and its Load appends sorted items without searching, which
// makes loading a sorted snapshot several times faster than inserting.
type index = btree.BTreeG[entry]

func newIndex() *index {
	return btree.NewBTreeGOptions(lessEntry, btree.Options{Degree: btreeDegree, NoLocks: true})
}

// table is the contents of one version: a hash map for point reads and
// writes, and a copy-on-write B-tree of the same entries for ordered scans
// and for snapshots taken without stopping the writer (Copy is O(1)).
// Keys are shared between the two (a Go string is immutable).
type table struct {
	version int64
	m       map[string][]byte // nil in read-only tables
	t       *index            // behind m by the batches in lag
	lag     [][]change        // committed batches not yet in t, oldest first
	lagLen  int               // changes in lag
	bytes   int64             // sum of key and value lengths
}

// syncIndex brings the ordered index up to date with the committed batches
// that Commit left for later: each batch in key order, with a path hint, in
// place (copy-on-write keeps earlier copies of the index intact). The
// caller holds the provider's lock.
func (t *table) syncIndex() {
	for _, batch := range t.lag {
		order := make([]int32, 0, len(batch))
		for i := range batch {
			if !batch[i].noop {
				order = append(order, int32(i))
			}
		}
		slices.SortFunc(order, func(a, b int32) int { return strings.Compare(batch[a].key, batch[b].key) })
		var hint btree.PathHint
		for _, i := range order {
			if c := &batch[i]; c.del {
				t.t.DeleteHint(entry{key: c.key}, &hint)
			} else {
				t.t.SetHint(entry{c.key, c.val}, &hint)
			}
		}
	}
	t.lag, t.lagLen = nil, 0
}

// addLag queues a committed batch for the index. The queue is bounded by
// about the size of the state: past that, the index catches up now, so
// memory stays proportional to the state even if nothing asks for order.
func (t *table) addLag(batch []change) {
	t.lag = append(t.lag, batch)
	t.lagLen += len(batch)
	if t.lagLen > len(t.m)+1<<16 {
		t.syncIndex()
	}
}

const btreeDegree = 32

func newTable(version int64, withMap bool) *table {
	t := &table{version: version, t: newIndex()}
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
	if old, ok := t.t.Set(entry{key, val}); ok {
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

func (t *table) len() int {
	if t.m != nil {
		return len(t.m)
	}
	return t.t.Len()
}

// load appends an entry whose key is greater than every key in the table
// (a snapshot's next record) to the index only; buildMap adds the map after.
func (t *table) load(key string, val []byte) {
	t.t.Load(entry{key, val})
	t.bytes += int64(len(key) + len(val))
}

// buildMap makes the point-lookup map of a table filled by load.
func (t *table) buildMap() {
	t.m = make(map[string][]byte, t.t.Len())
	t.t.Scan(func(e entry) bool {
		t.m[e.key] = e.val
		return true
	})
}

// ascend calls fn for the entries in [start, end) in order; a nil start or
// end is unbounded.
func ascend(t *index, start, end []byte, fn func(entry) bool) {
	visit := fn
	if end != nil {
		limit := string(end)
		visit = func(e entry) bool { return e.key < limit && fn(e) }
	}
	if start == nil {
		t.Scan(visit)
		return
	}
	t.Ascend(entry{key: string(start)}, visit)
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
