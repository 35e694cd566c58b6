package memstate

import (
	"math"
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
	lag     []*lagBatch       // committed batches not yet in t, oldest first
	lagLen  int               // changes in lag
	bytes   int64             // sum of key and value lengths
}

// A batch of committed changes reaches the two structures of a table at
// different times: the map at Commit (applyToMap), the ordered index later
// (applyToIndex), from the queue in lag, by the provider's indexer goroutine
// or by whatever needs order first (syncIndex). Each batch lists a key at
// most once. The caller holds the provider's lock, or owns the table.

// undo records what applyToMap replaced, to put it back.
type undo struct {
	key     string
	old     []byte
	existed bool
}

// applyToMap applies a batch to the map and returns the change in bytes.
// With undos non-nil it records what it replaced there.
func (t *table) applyToMap(batch []change, undos *[]undo) (bytesDiff int64) {
	for i := range batch {
		c := &batch[i]
		if c.noop {
			continue
		}
		old, existed := t.m[c.key]
		if undos != nil {
			*undos = append(*undos, undo{c.key, old, existed})
		}
		if existed {
			bytesDiff -= int64(len(old))
		}
		if c.del {
			if existed {
				bytesDiff -= int64(len(c.key))
				delete(t.m, c.key)
			}
			continue
		}
		if !existed {
			bytesDiff += int64(len(c.key))
		}
		bytesDiff += int64(len(c.val))
		t.m[c.key] = c.val
	}
	return bytesDiff
}

// revertMap puts back what applyToMap replaced.
func (t *table) revertMap(undos []undo) {
	for i := len(undos) - 1; i >= 0; i-- {
		if u := undos[i]; u.existed {
			t.m[u.key] = u.old
		} else {
			delete(t.m, u.key)
		}
	}
}

// sortedOrder returns the indexes of a batch's effective changes in key
// order: applied in that order, with a path hint, each change starts its
// search where the last one ended (random order is several times slower).
func sortedOrder(batch []change) []int32 {
	order := make([]int32, 0, len(batch))
	for i := range batch {
		if !batch[i].noop {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(batch[a].key, batch[b].key) })
	return order
}

// applyOrdered applies batch[order[i]] for i in [from, to) to the index
// and returns the change in bytes as the index sees it.
func (t *table) applyOrdered(batch []change, order []int32, from, to int) (bytesDiff int64) {
	var hint btree.PathHint
	for _, i := range order[from:to] {
		c := &batch[i]
		if c.del {
			if old, ok := t.t.DeleteHint(entry{key: c.key}, &hint); ok {
				bytesDiff -= int64(len(old.key) + len(old.val))
			}
			continue
		}
		if old, ok := t.t.SetHint(entry{c.key, c.val}, &hint); ok {
			bytesDiff -= int64(len(old.key) + len(old.val))
		}
		bytesDiff += int64(len(c.key) + len(c.val))
	}
	return bytesDiff
}

// applyToIndex applies a whole batch to the ordered index.
func (t *table) applyToIndex(batch []change) (bytesDiff int64) {
	order := sortedOrder(batch)
	return t.applyOrdered(batch, order, 0, len(order))
}

// lagBatch is a committed batch waiting for the index, applied in key
// order, possibly over several lock holds.
type lagBatch struct {
	changes []change
	order   []int32 // sorted on first use
	pos     int     // entries of order already applied
}

// addLag queues a batch already in the map for the index.
func (t *table) addLag(batch []change) {
	t.lag = append(t.lag, &lagBatch{changes: batch})
	t.lagLen += len(batch)
}

// lagOverCap reports whether the queue holds more changes than about the
// size of the state; Commit then applies the oldest batches itself, so
// memory stays proportional to the state when the indexer falls behind.
func (t *table) lagOverCap() bool { return t.lagLen > len(t.m)+1<<16 }

// syncSome applies at most n changes of the oldest queued batch to the
// index, so that the indexer holds the provider's lock only briefly. It
// reports whether there was anything to apply.
func (t *table) syncSome(n int) bool {
	if len(t.lag) == 0 {
		return false
	}
	lb := t.lag[0]
	if lb.order == nil {
		lb.order = sortedOrder(lb.changes)
	}
	to := lb.pos + min(n, len(lb.order)-lb.pos) // n may be math.MaxInt: no overflow
	t.applyOrdered(lb.changes, lb.order, lb.pos, to)
	lb.pos = to
	if lb.pos == len(lb.order) {
		t.lag[0] = nil
		t.lag = t.lag[1:]
		t.lagLen -= len(lb.changes)
	}
	return true
}

// syncOne applies the rest of the oldest queued batch.
func (t *table) syncOne() bool { return t.syncSome(math.MaxInt) }

// syncIndex brings the index up to date, for whatever needs order now.
func (t *table) syncIndex() {
	for t.syncOne() {
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
