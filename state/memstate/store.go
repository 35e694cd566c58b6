package memstate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"sync/atomic"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/internal/iox"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// change is an uncommitted write: a new value, or a delete. A delete of a
// key that the base version does not hold is a no-op, written nowhere.
type change struct {
	key  string
	val  []byte
	del  bool
	noop bool
}

// Store states.
const (
	stateOpen int32 = iota
	stateDone       // committed, aborted or failed
)

// store is a writable store: uncommitted changes over the base table, in
// the order their keys were first written (a deterministic batch writes a
// byte-identical delta, with no sort), indexed by a map. Commit writes them
// and applies them to the base, so it costs O(changes), not O(state).
type store struct {
	p         *Provider
	base      *table
	version   int64
	pending   map[string]int // key -> index in changes
	changes   []change
	keys      int64
	bytes     int64
	written   int64
	st        atomic.Int32
	stopAfter atomic.Pointer[func() bool]
}

var _ state.Store = (*store)(nil)

func (s *store) ID() state.StoreID { return s.p.id }
func (s *store) Version() int64    { return s.version }

func (s *store) closedErr(op string) error {
	return fmt.Errorf("state: %s on %s version %d: %w", op, s.p.dir, s.version, state.ErrStoreClosed)
}

// lookup returns the value key has in this store, pending writes included.
func (s *store) lookup(key string) ([]byte, bool) {
	if i, ok := s.pending[key]; ok {
		c := &s.changes[i]
		return c.val, !c.del
	}
	return s.base.get(key)
}

func (s *store) Get(key []byte) ([]byte, bool, error) {
	if s.st.Load() != stateOpen {
		return nil, false, s.closedErr("get")
	}
	v, ok := s.lookup(keyString(key)) // a view: lookups do not retain the key
	return v, ok, nil
}

func (s *store) Put(key, value []byte) error {
	if s.st.Load() != stateOpen {
		return s.closedErr("put")
	}
	old, existed := s.lookup(keyString(key))
	k := string(key) // the copy the store keeps
	if existed {
		s.bytes -= int64(len(old))
	} else {
		s.keys++
		s.bytes += int64(len(k))
	}
	s.bytes += int64(len(value))
	s.record(change{key: k, val: bytes.Clone(nonNil(value))})
	return nil
}

// record sets the pending change of a key, keeping its first position.
func (s *store) record(c change) {
	if i, ok := s.pending[c.key]; ok {
		c.key = s.changes[i].key // one string per key
		s.changes[i] = c
		return
	}
	s.pending[c.key] = len(s.changes)
	s.changes = append(s.changes, c)
}

func (s *store) Delete(key []byte) error {
	if s.st.Load() != stateOpen {
		return s.closedErr("delete")
	}
	k := string(key)
	old, existed := s.lookup(k)
	if existed {
		s.keys--
		s.bytes -= int64(len(k) + len(old))
	}
	_, inBase := s.base.get(k)
	if !inBase {
		if _, touched := s.pending[k]; !touched {
			return nil // absent before and after: nothing to record
		}
	}
	s.record(change{key: k, del: true, noop: !inBase})
	return nil
}

// sortedPending returns the pending keys in [start, end), sorted.
func (s *store) sortedPending(start, end []byte) []string {
	keys := make([]string, 0, len(s.pending))
	for k, i := range s.pending {
		if s.changes[i].noop {
			continue
		}
		if (start == nil || k >= string(start)) && (end == nil || k < string(end)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func (s *store) Range(start, end []byte) iter.Seq2[state.KV, error] {
	return func(yield func(state.KV, error) bool) {
		if s.st.Load() != stateOpen {
			yield(state.KV{}, s.closedErr("range"))
			return
		}
		s.p.mu.Lock()
		s.base.syncIndex() // the index may be behind the last commits
		s.p.mu.Unlock()
		pk := s.sortedPending(start, end)
		i := 0
		// emit yields pending writes with keys below limit ("" and
		// last=true: all that remain).
		emit := func(limit string, last bool) bool {
			for ; i < len(pk) && (last || pk[i] < limit); i++ {
				if c := s.changes[s.pending[pk[i]]]; !c.del {
					if !yield(state.KV{Key: keyBytes(pk[i]), Value: c.val}, nil) {
						return false
					}
				}
			}
			return true
		}
		stopped := false
		ascend(s.base.t, start, end, func(e entry) bool {
			if !emit(e.key, false) {
				stopped = true
				return false
			}
			if i < len(pk) && pk[i] == e.key { // overwritten or deleted
				c := s.changes[s.pending[pk[i]]]
				i++
				if c.del {
					return true
				}
				if !yield(state.KV{Key: keyBytes(e.key), Value: c.val}, nil) {
					stopped = true
					return false
				}
				return true
			}
			if !yield(state.KV{Key: keyBytes(e.key), Value: e.val}, nil) {
				stopped = true
				return false
			}
			return true
		})
		if !stopped {
			emit("", true)
		}
	}
}

func (s *store) PrefixScan(prefix []byte) iter.Seq2[state.KV, error] {
	return s.Range(nonNil(prefix), prefixEnd(prefix))
}

func (s *store) Metrics() state.Metrics {
	return state.Metrics{
		Keys:         s.keys,
		MemoryBytes:  s.bytes + s.keys*entryOverhead,
		BytesWritten: s.written,
		Custom:       s.p.customMetrics(),
	}
}

// release gives the provider's writer slot back.
func (s *store) release() {
	if stop := s.stopAfter.Load(); stop != nil {
		(*stop)()
	}
	s.p.mu.Lock()
	if s.p.writer == s {
		s.p.writer = nil
	}
	s.p.mu.Unlock()
}

// Abort discards the uncommitted writes. It is safe to call from another
// goroutine (it runs when the GetStore context ends).
func (s *store) Abort() {
	if s.st.CompareAndSwap(stateOpen, stateDone) {
		s.release()
	}
}

// encodeDelta writes the pending changes in first-write order.
func (s *store) encodeDelta(w io.Writer) (int64, error) {
	cw := &iox.CountingWriter{W: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	rw := recordWriter{w: bw}
	for i := range s.changes {
		c := &s.changes[i]
		switch {
		case c.noop:
		case c.del:
			bw.WriteByte(opDelete)
			rw.str(c.key)
		default:
			bw.WriteByte(opPut)
			rw.str(c.key)
			rw.bytes(c.val)
		}
	}
	err := bw.Flush()
	return cw.N, err
}

// Commit writes the delta of version Version()+1 with a conditional
// create, then applies the changes to the in-memory table.
func (s *store) Commit(ctx context.Context) (int64, error) {
	if !s.st.CompareAndSwap(stateOpen, stateDone) {
		return 0, s.closedErr("commit")
	}
	defer s.release()
	next := s.version + 1
	name := DeltaName(s.p.dir, next)
	p := s.p

	// While the delta is written and fsynced, apply the changes to the
	// point-lookup map on another core, keeping what they replace: if the
	// delta does not become durable, the map is put back. The ordered index
	// catches up later (table.syncIndex), when something needs order.
	t := s.base
	var (
		undos     = make([]undo, 0, len(s.changes))
		bytesDiff int64
	)
	mapDone := make(chan struct{})
	go func() {
		defer close(mapDone)
		bytesDiff = t.applyToMap(s.changes, &undos)
	}()

	err := frame.Put(ctx, p.s, name, frame.KindDelta, deltaVersion, storage.PutOptions{IfAbsent: true}, func(w io.Writer) error {
		n, err := s.encodeDelta(w)
		s.written = n
		return err
	}, p.identity(name))
	if errors.Is(err, storage.ErrExists) {
		err = s.checkSameDelta(ctx, name)
	}
	<-mapDone
	if err != nil {
		t.revertMap(undos)
		return 0, fmt.Errorf("state: commit version %d of %s: %w", next, p.dir, err)
	}
	p.counters.deltaBytes.Add(s.written)

	p.mu.Lock()
	t.bytes += bytesDiff
	t.addLag(s.changes)
	for t.lagOverCap() { // the indexer fell behind: take the oldest batches on
		t.syncOne()
	}
	p.lastBatch = len(s.changes)
	t.version = next
	p.deltas[next] = true
	p.latest = max(p.latest, next)
	due := next-p.lastSnapshotLocked() >= int64(p.opts.SnapshotInterval)
	p.mu.Unlock()
	select {
	case p.indexKick <- struct{}{}:
	default:
	}
	if due {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return next, nil
}

// checkSameDelta handles a delta that already exists: a replay of a lost
// batch writes the same changes and is accepted; anything else is a second
// writer. The payloads are compared, not the objects, so that a delta an
// older build wrote (format 1, without identity) accepts its replay.
func (s *store) checkSameDelta(ctx context.Context, name string) error {
	var want bytes.Buffer
	s.encodeDelta(&want)
	got, _, err := frame.GetBytes(ctx, s.p.s, name, frame.KindDelta, deltaVersion, s.p.identity(name))
	if err != nil {
		return fmt.Errorf("%s exists but cannot be read back: %w", name, err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		return fmt.Errorf("%w: %s already exists in %s with different contents; another process is writing this checkpoint location "+
			"(or a replayed batch was not deterministic): stop the other writer, or start a new query with a new checkpoint location",
			state.ErrConcurrentWriter, name, s.p.s.Location())
	}
	return nil
}
