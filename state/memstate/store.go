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
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// change is an uncommitted write: a new value, or a delete.
type change struct {
	val []byte
	del bool
}

// Store states.
const (
	stateOpen int32 = iota
	stateDone       // committed, aborted or failed
)

// store is a writable store: uncommitted changes in a map over the base
// table, applied to the base in place at Commit. Commit therefore costs
// O(changes), not O(state).
type store struct {
	p         *Provider
	base      *table
	version   int64
	pending   map[string]change
	keys      int64
	bytes     int64
	written   int64
	st        atomic.Int32
	stopAfter func() bool
}

var _ state.Store = (*store)(nil)

func (s *store) ID() state.StoreID { return s.p.id }
func (s *store) Version() int64    { return s.version }

func (s *store) closedErr(op string) error {
	return fmt.Errorf("state: %s on %s version %d: %w", op, s.p.dir, s.version, state.ErrStoreClosed)
}

// lookup returns the value key has in this store, pending writes included.
func (s *store) lookup(key string) ([]byte, bool) {
	if c, ok := s.pending[key]; ok {
		return c.val, !c.del
	}
	return s.base.get(key)
}

func (s *store) Get(key []byte) ([]byte, bool, error) {
	if s.st.Load() != stateOpen {
		return nil, false, s.closedErr("get")
	}
	v, ok := s.lookup(string(key))
	return v, ok, nil
}

func (s *store) Put(key, value []byte) error {
	if s.st.Load() != stateOpen {
		return s.closedErr("put")
	}
	k := string(key)
	old, existed := s.lookup(k)
	if existed {
		s.bytes -= int64(len(old))
	} else {
		s.keys++
		s.bytes += int64(len(k))
	}
	s.bytes += int64(len(value))
	s.pending[k] = change{val: bytes.Clone(nonNil(value))}
	return nil
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
	if _, inBase := s.base.get(k); !inBase {
		delete(s.pending, k) // absent at the base version: no record needed
		return nil
	}
	s.pending[k] = change{del: true}
	return nil
}

// sortedPending returns the pending keys in [start, end), sorted.
func (s *store) sortedPending(start, end []byte) []string {
	keys := make([]string, 0, len(s.pending))
	for k := range s.pending {
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
		pk := s.sortedPending(start, end)
		i := 0
		// emit yields pending writes with keys below limit ("" and
		// last=true: all that remain).
		emit := func(limit string, last bool) bool {
			for ; i < len(pk) && (last || pk[i] < limit); i++ {
				if c := s.pending[pk[i]]; !c.del {
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
				c := s.pending[pk[i]]
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
	if s.stopAfter != nil {
		s.stopAfter()
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

// encodeDelta writes the pending changes, sorted by key.
func (s *store) encodeDelta(w io.Writer, keys []string) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	rw := recordWriter{w: bw}
	for _, k := range keys {
		c := s.pending[k]
		if c.del {
			bw.WriteByte(opDelete)
			rw.str(k)
		} else {
			bw.WriteByte(opPut)
			rw.str(k)
			rw.bytes(c.val)
		}
	}
	err := bw.Flush()
	return cw.n, err
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
	keys := s.sortedPending(nil, nil)
	err := frame.Put(ctx, s.p.s, name, frame.KindDelta, deltaVersion, storage.PutOptions{IfAbsent: true}, func(w io.Writer) error {
		n, err := s.encodeDelta(w, keys)
		s.written = n
		return err
	})
	if errors.Is(err, storage.ErrExists) {
		err = s.checkSameDelta(ctx, name, keys)
	}
	if err != nil {
		return 0, fmt.Errorf("state: commit version %d of %s: %w", next, s.p.dir, err)
	}
	s.p.counters.deltaBytes.Add(s.written)

	p := s.p
	p.mu.Lock()
	for _, k := range keys {
		if c := s.pending[k]; c.del {
			s.base.del(k)
		} else {
			s.base.put(k, c.val)
		}
	}
	s.base.version = next
	p.deltas[next] = true
	p.latest = max(p.latest, next)
	due := next-p.lastSnapshotLocked() >= int64(p.opts.SnapshotInterval)
	p.mu.Unlock()
	if due {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return next, nil
}

// checkSameDelta handles a delta that already exists: a replay of a lost
// batch writes the same bytes and is accepted; anything else is a second
// writer.
func (s *store) checkSameDelta(ctx context.Context, name string, keys []string) error {
	var want bytes.Buffer
	fw := frame.NewWriter(&want, frame.KindDelta, deltaVersion)
	s.encodeDelta(fw, keys)
	fw.Close()
	got, err := storage.GetBytes(ctx, s.p.s, name)
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
