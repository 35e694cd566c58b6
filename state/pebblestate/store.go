package pebblestate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/internal/iox"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// store is a writable store: an indexed Pebble batch over the provider's
// database, which reads its own writes. Commit writes the batch's
// operations, in order, as the version's changelog, then applies the
// batch. Its methods lock mu, so that Abort from another goroutine (the
// end of the task's context, Close) never frees the batch under a call.
type store struct {
	p       *Provider
	h       *dbHandle
	version int64

	mu        sync.Mutex
	done      bool
	batch     *pebble.Batch
	keys      int64 // -1 when estimated
	written   int64
	kbuf      []byte // userPrefix, then the key of the current call
	ops       uint32 // for latency sampling
	active    int    // Range loops in progress: the batch is freed after them
	stopAfter atomic.Pointer[func() bool]
	// touched says, for each key written in this batch, whether it exists
	// after its last write. A Get of an untouched key reads the database
	// directly (the batch has nothing for it), and counting keys needs no
	// lookup for a key written before.
	touched map[string]bool
	// last remembers whether the key of the last Get exists, so that the
	// Put of a read-modify-write needs no second lookup to count keys.
	lastKey   []byte
	lastFound bool
	lastValid bool
}

var _ state.Store = (*store)(nil)

func (s *store) ID() state.StoreID { return s.p.id }
func (s *store) Version() int64    { return s.version }

func (s *store) closedErr(op string) error {
	return fmt.Errorf("state: %s on %s version %d: %w", op, s.p.dir, s.version, state.ErrStoreClosed)
}

// key returns key behind the user prefix, in a buffer reused by the next
// call.
func (s *store) key(key []byte) []byte {
	s.kbuf = append(s.kbuf[:1], key...)
	return s.kbuf
}

func (s *store) Get(key []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil, false, s.closedErr("get")
	}
	var start time.Time
	timed := sample(&s.ops)
	if timed {
		start = time.Now()
	}
	var r pebble.Reader = s.h.db
	if exists, ok := s.touched[string(key)]; ok {
		if !exists {
			s.remember(key, false)
			return nil, false, nil
		}
		r = s.batch
	}
	val, closer, err := r.Get(s.key(key))
	if errors.Is(err, pebble.ErrNotFound) {
		s.remember(key, false)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get from %s: %w", s.p.dir, err)
	}
	out := bytes.Clone(val)
	if out == nil {
		out = []byte{}
	}
	closer.Close()
	s.remember(key, true)
	if timed {
		s.p.counters.getNanos.Add(int64(time.Since(start)))
		s.p.counters.gets.Add(1)
	}
	return out, true, nil
}

func (s *store) remember(key []byte, found bool) {
	s.lastKey = append(s.lastKey[:0], key...)
	s.lastFound, s.lastValid = found, true
}

// existed reports whether key exists before a write to it, from the last
// Get when it read the same key, else by a lookup.
func (s *store) existed(key []byte) (bool, error) {
	if s.lastValid && bytes.Equal(s.lastKey, key) {
		return s.lastFound, nil
	}
	if e, ok := s.touched[string(key)]; ok {
		return e, nil
	}
	return exists(s.h.db, s.key(key))
}

// touch records that key exists (or not) after a write.
func (s *store) touch(key []byte, exists bool) {
	if _, ok := s.touched[string(key)]; ok {
		s.touched[string(key)] = exists // no allocation for a key already there
		return
	}
	s.touched[string(key)] = exists
}

func (s *store) Put(key, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return s.closedErr("put")
	}
	var start time.Time
	timed := sample(&s.ops)
	if timed {
		start = time.Now()
	}
	if s.keys >= 0 {
		existed, err := s.existed(key)
		if err != nil {
			return fmt.Errorf("state: put to %s: %w", s.p.dir, err)
		}
		if !existed {
			s.keys++
		}
		s.remember(key, true)
	}
	s.touch(key, true)
	if err := s.batch.Set(s.key(key), value, nil); err != nil {
		return fmt.Errorf("state: put to %s: %w", s.p.dir, err)
	}
	if timed {
		s.p.counters.putNanos.Add(int64(time.Since(start)))
		s.p.counters.puts.Add(1)
	}
	return nil
}

func (s *store) Delete(key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return s.closedErr("delete")
	}
	if s.keys >= 0 {
		existed, err := s.existed(key)
		if err != nil {
			return fmt.Errorf("state: delete from %s: %w", s.p.dir, err)
		}
		if existed {
			s.keys--
		}
		s.remember(key, false)
	}
	s.touch(key, false)
	if err := s.batch.Delete(s.key(key), nil); err != nil {
		return fmt.Errorf("state: delete from %s: %w", s.p.dir, err)
	}
	return nil
}

func (s *store) Range(start, end []byte) iter.Seq2[state.KV, error] {
	return func(yield func(state.KV, error) bool) {
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			yield(state.KV{}, s.closedErr("range"))
			return
		}
		s.active++
		b := s.batch
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.active--
			if s.done && s.active == 0 && s.batch != nil { // aborted during the loop
				s.batch.Close()
				s.batch = nil
			}
			s.mu.Unlock()
		}()
		scan(b, start, end, s.isDone, yield)
	}
}

// isDone reports whether the store was aborted (by another goroutine
// during a Range loop).
func (s *store) isDone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (s *store) PrefixScan(prefix []byte) iter.Seq2[state.KV, error] {
	return s.Range(nonNil(prefix), prefixEnd(prefix))
}

func (s *store) Metrics() state.Metrics {
	s.mu.Lock()
	keys, written, h := s.keys, s.written, s.h
	var batchBytes int64
	if s.batch != nil {
		batchBytes = int64(s.batch.Len())
	}
	if s.done {
		h = nil // the database may be closed by now
	}
	s.mu.Unlock()
	custom := s.p.customMetrics(h)
	if keys < 0 {
		keys = custom["keysEstimated"]
	}
	return state.Metrics{
		Keys:         keys,
		MemoryBytes:  custom["blockCacheBytes"] + custom["memtableBytes"] + batchBytes,
		BytesWritten: written,
		Custom:       custom,
	}
}

// finish closes the store: the caller holds mu. It frees the batch and
// gives the provider's writer slot back.
func (s *store) finish() {
	s.done = true
	if stop := s.stopAfter.Load(); stop != nil {
		(*stop)()
	}
	if s.active == 0 && s.batch != nil {
		s.batch.Close()
		s.batch = nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.finish()
	}
}

// encodeChangelog writes the batch's operations in the order they were
// made: a deterministic batch writes byte-identical changelogs.
func (s *store) encodeChangelog(w io.Writer) (int64, error) {
	cw := &iox.CountingWriter{W: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	enc := changelogWriter{w: bw}
	r := s.batch.Reader()
	for {
		kind, ukey, value, ok, err := r.Next()
		if err != nil {
			return cw.N, fmt.Errorf("pebblestate: read batch: %w", err)
		}
		if !ok {
			break
		}
		if len(ukey) == 0 || ukey[0] != userPrefix {
			continue
		}
		switch kind {
		case pebble.InternalKeyKindSet:
			enc.put(ukey[1:], value)
		case pebble.InternalKeyKindDelete:
			enc.delete(ukey[1:])
		default:
			return cw.N, fmt.Errorf("pebblestate: unexpected operation %v in a batch", kind)
		}
	}
	err := bw.Flush()
	return cw.N, err
}

// Commit writes the changelog of version Version()+1 with a conditional
// create, then applies the batch to the local database.
func (s *store) Commit(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return 0, s.closedErr("commit")
	}
	defer s.finish()
	p := s.p
	next := s.version + 1
	if err := p.diskErr(); err != nil {
		return 0, fmt.Errorf("state: commit version %d of %s: %w", next, p.dir, err)
	}
	name := ChangelogName(p.dir, next)
	err := frame.Put(ctx, p.s, name, frame.KindChangelog, changelogVersion, storage.PutOptions{IfAbsent: true}, func(w io.Writer) error {
		n, err := s.encodeChangelog(w)
		s.written = n
		return err
	}, p.objectIdentity(name))
	if errors.Is(err, storage.ErrExists) {
		err = s.checkSameChangelog(ctx, name)
	}
	if err != nil {
		return 0, fmt.Errorf("state: commit version %d of %s: %w", next, p.dir, err)
	}
	p.counters.changelogBytes.Add(s.written)

	// The changelog is durable: the version exists. Now the local copy.
	meta := localMeta{Identity: p.identity, Version: next, Keys: s.keys}
	if err := s.batch.Set(metaKey, meta.encode(), nil); err != nil {
		return 0, fmt.Errorf("state: commit version %d of %s locally: %w", next, p.dir, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changelogs[next] = true
	p.latest = max(p.latest, next)
	if p.main == s.h && !p.closed.Load() {
		if inFlight, err := p.commit(ctx, s.h, s.batch); err != nil {
			if inFlight {
				s.batch = nil // left to the commit that still runs
			}
			// The local database missed the version; the next GetStore
			// rebuilds it from checkpoint storage.
			p.main = nil
			p.releaseLocked(s.h)
			return 0, fmt.Errorf("state: version %d of %s is durable, but applying it to the local database failed: %w", next, p.dir, err)
		}
		s.h.meta = meta
	}
	if next-p.lastSnapshotLocked() >= int64(p.opts.SnapshotInterval) {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return next, nil
}

// checkSameChangelog handles a changelog that already exists: a replay of
// a lost batch writes the same operations and is accepted; anything else is
// a second writer. The payloads are compared, not the objects, so that a
// changelog an older build wrote (format 1, without identity) accepts its
// replay.
func (s *store) checkSameChangelog(ctx context.Context, name string) error {
	var want bytes.Buffer
	if _, err := s.encodeChangelog(&want); err != nil {
		return err
	}
	got, _, err := frame.GetBytes(ctx, s.p.s, name, frame.KindChangelog, changelogVersion, s.p.objectIdentity(name))
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

// readStore is a read-only view of one version: a Pebble snapshot of the
// provider's database, or a database of its own.
type readStore struct {
	p       *Provider
	h       *dbHandle
	snap    *pebble.Snapshot // nil when the store has its own database
	reader  pebble.Reader
	version int64
	keys    int64

	mu     sync.Mutex
	closed bool
	active int // Range loops in progress: the snapshot is released after them
	kbuf   []byte
}

func (r *readStore) ID() state.StoreID { return r.p.id }
func (r *readStore) Version() int64    { return r.version }

func (r *readStore) closedErr(op string) error {
	return fmt.Errorf("state: %s on %s version %d: %w", op, r.p.dir, r.version, state.ErrStoreClosed)
}

func (r *readStore) Get(key []byte) ([]byte, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false, r.closedErr("get")
	}
	r.kbuf = append(append(r.kbuf[:0], userPrefix), key...)
	val, closer, err := r.reader.Get(r.kbuf)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get from %s version %d: %w", r.p.dir, r.version, err)
	}
	out := bytes.Clone(val)
	if out == nil {
		out = []byte{}
	}
	closer.Close()
	return out, true, nil
}

func (r *readStore) Range(start, end []byte) iter.Seq2[state.KV, error] {
	return func(yield func(state.KV, error) bool) {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			yield(state.KV{}, r.closedErr("range"))
			return
		}
		r.active++
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.active--
			if r.closed && r.active == 0 {
				r.release()
			}
			r.mu.Unlock()
		}()
		scan(r.reader, start, end, r.isClosed, yield)
	}
}

func (r *readStore) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *readStore) PrefixScan(prefix []byte) iter.Seq2[state.KV, error] {
	return r.Range(nonNil(prefix), prefixEnd(prefix))
}

func (r *readStore) Metrics() state.Metrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return state.Metrics{Keys: r.keys}
	}
	custom := r.p.customMetrics(r.h)
	keys := r.keys
	if keys < 0 {
		keys = custom["keysEstimated"]
	}
	return state.Metrics{Keys: keys, MemoryBytes: custom["blockCacheBytes"] + custom["memtableBytes"], Custom: custom}
}

// Abort releases the snapshot or the store's own database (after a Range
// loop in progress ends).
func (r *readStore) Abort() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.active == 0 {
		r.release()
	}
}

// release frees the snapshot and the reference to the database; the
// caller holds r.mu.
func (r *readStore) release() {
	if r.snap != nil {
		r.snap.Close()
	}
	r.p.mu.Lock()
	delete(r.p.readers, r)
	r.p.releaseLocked(r.h)
	r.p.mu.Unlock()
}

// scan yields the user keys of r in [start, end) in ascending order. It
// stops with ErrStoreClosed-wrapping error when stopped() turns true
// between two keys (the store was aborted by another goroutine).
func scan(r pebble.Reader, start, end []byte, stopped func() bool, yield func(state.KV, error) bool) {
	opts := &pebble.IterOptions{
		LowerBound: append([]byte{userPrefix}, start...),
		UpperBound: []byte{userPrefix + 1},
	}
	if end != nil {
		opts.UpperBound = append([]byte{userPrefix}, end...)
	}
	it, err := r.NewIter(opts)
	if err != nil {
		yield(state.KV{}, err)
		return
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			yield(state.KV{}, err)
			return
		}
		if v == nil {
			v = []byte{}
		}
		if !yield(state.KV{Key: it.Key()[1:], Value: v}, nil) {
			return
		}
		if stopped() {
			yield(state.KV{}, fmt.Errorf("state: range: %w", state.ErrStoreClosed))
			return
		}
	}
	if err := it.Error(); err != nil {
		yield(state.KV{}, err)
	}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// prefixEnd returns the smallest key greater than every key that starts
// with prefix, or nil when there is none (prefix is all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
