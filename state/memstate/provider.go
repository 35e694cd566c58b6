package memstate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/internal/iox"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// Name is the name the provider registers under.
const Name = "memstate"

func init() { state.Register(Name, func() state.Provider { return New() }) }

// Provider is the in-memory state store provider. Use state.Open with
// Name rather than calling its methods before Init.
type Provider struct {
	s      storage.Storage
	dir    string
	id     state.StoreID
	meta   state.Meta // the store's _meta: its UID goes into every object's identity
	opts   state.Options
	kick   chan struct{}
	closed atomic.Bool

	// The indexer goroutine applies committed batches to the ordered index
	// in the background (see table.go).
	indexKick chan struct{}
	indexStop chan struct{}
	indexDone chan struct{}

	mu        sync.Mutex
	cur       *table // the latest table loaded for writing, with its map
	writer    *store // the open writable store, if any
	deltas    map[int64]bool
	snaps     map[int64]bool
	latest    int64
	lastBatch int // changes in the last commit, to size the next store
	counters  counters
}

type counters struct {
	snapshotsWritten atomic.Int64
	snapshotBytes    atomic.Int64
	deltaBytes       atomic.Int64
	filesDeleted     atomic.Int64
	loads            atomic.Int64
	loadNanos        atomic.Int64
}

var (
	_ state.Provider             = (*Provider)(nil)
	_ state.MaintenanceRequester = (*Provider)(nil)
)

// New returns an uninitialised provider; state.Open calls Init.
func New() *Provider {
	return &Provider{kick: make(chan struct{}, 1), indexKick: make(chan struct{}, 1)}
}

// indexChunk is how many changes the indexer applies per lock hold: a
// writer waits at most that long (a few milliseconds) for the lock.
const indexChunk = 4096

// indexer applies queued batches to the ordered index of the latest
// table, a chunk per lock hold, off the commit path.
func (p *Provider) indexer() {
	defer close(p.indexDone)
	for {
		select {
		case <-p.indexStop:
			return
		case <-p.indexKick:
		}
		for {
			select {
			case <-p.indexStop:
				return
			default:
			}
			p.mu.Lock()
			did := p.cur != nil && p.cur.syncSome(indexChunk)
			p.mu.Unlock()
			if !did {
				break
			}
		}
	}
}

// DeltaName and SnapshotName give the object names of a version's files.
func DeltaName(dir string, v int64) string    { return fmt.Sprintf("%s/%d.delta", dir, v) }
func SnapshotName(dir string, v int64) string { return fmt.Sprintf("%s/%d.snapshot", dir, v) }

// ParseFileName parses "<version>.delta" or "<version>.snapshot", the last
// component of an object name of the store.
func ParseFileName(base string) (version int64, kind string, ok bool) {
	num, ext, found := strings.Cut(base, ".")
	if !found || (ext != "delta" && ext != "snapshot") {
		return 0, "", false
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || strconv.FormatInt(v, 10) != num {
		return 0, "", false
	}
	return v, ext, true
}

// Init implements state.Provider: it reads the store's metadata and lists
// the store's files.
func (p *Provider) Init(ctx context.Context, s storage.Storage, dir string, id state.StoreID, schema state.Schema, opts state.Options) error {
	p.s, p.dir, p.id, p.opts = s, dir, id, opts.WithDefaults()
	meta, err := state.ReadMeta(ctx, s, id)
	if err != nil {
		return fmt.Errorf("memstate: read the metadata of %s (open stores with state.Open): %w", dir, err)
	}
	p.meta = meta
	if err := p.refreshFiles(ctx); err != nil {
		return err
	}
	p.indexStop, p.indexDone = make(chan struct{}), make(chan struct{})
	go p.indexer()
	return nil
}

// refreshFiles rebuilds the index of delta and snapshot files from a List.
func (p *Provider) refreshFiles(ctx context.Context) error {
	objs, err := p.s.List(ctx, p.dir+"/")
	if err != nil {
		return fmt.Errorf("list files of %s: %w", p.dir, err)
	}
	deltas, snaps := map[int64]bool{}, map[int64]bool{}
	var latest int64
	for _, o := range objs {
		base := strings.TrimPrefix(o.Name, p.dir+"/")
		if strings.Contains(base, "/") {
			continue // a named store below this one
		}
		v, kind, ok := ParseFileName(base)
		if !ok {
			continue
		}
		if kind == "delta" {
			deltas[v] = true
		} else {
			snaps[v] = true
		}
		latest = max(latest, v)
	}
	p.mu.Lock()
	p.deltas, p.snaps = deltas, snaps
	p.latest = max(latest, p.latestLocked())
	p.mu.Unlock()
	return nil
}

func (p *Provider) latestLocked() int64 {
	l := p.latest
	if p.cur != nil {
		l = max(l, p.cur.version)
	}
	return l
}

// MaintenanceRequests implements state.MaintenanceRequester: a commit that
// leaves SnapshotInterval deltas since the last snapshot asks for one.
func (p *Provider) MaintenanceRequests() <-chan struct{} { return p.kick }

// LatestVersion implements state.Provider.
func (p *Provider) LatestVersion(ctx context.Context) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latestLocked(), nil
}

// GetStore implements state.Provider.
func (p *Provider) GetStore(ctx context.Context, version int64) (state.Store, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("state: get store %s: %w", p.dir, state.ErrStoreClosed)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writer != nil {
		return nil, fmt.Errorf("state: get store %s at version %d: %w at version %d; commit or abort it first",
			p.dir, version, state.ErrWriterOpen, p.writer.version)
	}
	if p.cur == nil || p.cur.version != version {
		t, err := p.loadLocked(ctx, version, true)
		if err != nil {
			return nil, err
		}
		p.cur = t
	}
	s := &store{p: p, base: p.cur, version: version,
		pending: make(map[string]int, p.lastBatch), changes: make([]change, 0, p.lastBatch),
		keys: int64(p.cur.len()), bytes: p.cur.bytes}
	p.writer = s
	// If ctx is already done, Abort runs at once on another goroutine: the
	// stop function is published atomically for it.
	stop := context.AfterFunc(ctx, s.Abort)
	s.stopAfter.Store(&stop)
	return s, nil
}

// GetReadStore implements state.Provider.
func (p *Provider) GetReadStore(ctx context.Context, version int64) (state.ReadStore, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("state: get read store %s: %w", p.dir, state.ErrStoreClosed)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.cur
	if t != nil && t.version == version {
		t.syncIndex()
		t = &table{version: t.version, t: t.t.Copy(), bytes: t.bytes}
	} else {
		var err error
		if t, err = p.loadLocked(ctx, version, false); err != nil {
			return nil, err
		}
	}
	return &readStore{id: p.id, t: t}, nil
}

// oldestLocked returns the oldest version the files can rebuild.
func (p *Provider) oldestLocked() int64 {
	if len(p.deltas) == 0 && len(p.snaps) == 0 || p.deltas[1] {
		return 0
	}
	oldest := int64(-1)
	for v := range p.snaps {
		if oldest < 0 || v < oldest {
			oldest = v
		}
	}
	return oldest // -1: no snapshot and no delta 1, so nothing is loadable
}

// OldestVersion implements state.Provider.
func (p *Provider) OldestVersion(ctx context.Context) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	oldest := p.oldestLocked()
	if oldest < 0 {
		latest := p.latestLocked()
		return -1, &state.VersionError{Store: p.dir, Requested: latest, Oldest: -1, Latest: latest}
	}
	return oldest, nil
}

// loadLocked rebuilds version v from the newest snapshot at or below it
// and the deltas after that snapshot.
func (p *Provider) loadLocked(ctx context.Context, v int64, withMap bool) (*table, error) {
	start := time.Now()
	latest := p.latestLocked()
	if v < 0 || v > latest {
		return nil, &state.VersionError{Store: p.dir, Requested: v, Oldest: p.oldestLocked(), Latest: latest}
	}
	base := int64(-1)
	for s := range p.snaps {
		if s <= v && s > base {
			base = s
		}
	}
	if base < 0 {
		if !p.deltas[1] && v > 0 || v == 0 && latest > 0 && !p.deltas[1] {
			return nil, &state.VersionError{Store: p.dir, Requested: v, Oldest: p.oldestLocked(), Latest: latest,
				CleanedUp: true, Retain: p.opts.RetainVersions}
		}
		base = 0
	}
	for d := base + 1; d <= v; d++ {
		if !p.deltas[d] {
			return nil, fmt.Errorf("state: cannot rebuild version %d of %s: %s is missing (the chain from version %d is broken; the checkpoint is damaged: restore the object from a backup or start a new query): %w",
				v, p.dir, DeltaName(p.dir, d), base, storage.ErrNotFound)
		}
	}
	t := newTable(v, false)
	if base > 0 {
		if err := p.readSnapshot(ctx, base, t); err != nil {
			return nil, err
		}
	}
	if withMap {
		t.buildMap()
	}
	for d := base + 1; d <= v; d++ {
		if err := p.readDelta(ctx, d, t); err != nil {
			return nil, err
		}
	}
	t.version = v
	p.counters.loads.Add(1)
	p.counters.loadNanos.Add(int64(time.Since(start)))
	return t, nil
}

func (p *Provider) readSnapshot(ctx context.Context, v int64, t *table) error {
	name := SnapshotName(p.dir, v)
	r, err := frame.Get(ctx, p.s, name, frame.KindSnapshot, snapshotVersion, p.identity(name))
	if err != nil {
		return fmt.Errorf("state: load %s: %w", name, err)
	}
	defer r.Close()
	err = decodeSnapshot(r, name, func(key, value []byte) error {
		t.load(keyString(key), value) // keys arrive strictly ascending
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: load %s: %w", name, err)
	}
	return nil
}

func (p *Provider) readDelta(ctx context.Context, v int64, t *table) error {
	name := DeltaName(p.dir, v)
	r, err := frame.Get(ctx, p.s, name, frame.KindDelta, deltaVersion, p.identity(name))
	if err != nil {
		return fmt.Errorf("state: load %s: %w", name, err)
	}
	defer r.Close()
	var batch []change
	err = decodeDelta(r, name, func(key, value []byte, del bool) error {
		batch = append(batch, change{key: keyString(key), val: value, del: del})
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: load %s: %w", name, err)
	}
	if t.m != nil { // a table for writing: the index catches up later
		t.bytes += t.applyToMap(batch, nil)
		t.addLag(batch)
	} else {
		t.bytes += t.applyToIndex(batch)
	}
	return nil
}

// identity returns the identity of the store's object name (see
// state.Meta.ObjectIdentity).
func (p *Provider) identity(name string) frame.Identity {
	return frame.Identity(p.meta.ObjectIdentity(name))
}

// Maintain implements state.Provider: it snapshots the latest loaded
// version when SnapshotInterval deltas accumulated since the last
// snapshot, then deletes the files that no retained version needs.
func (p *Provider) Maintain(ctx context.Context) error {
	if p.closed.Load() {
		return fmt.Errorf("state: maintain %s: %w", p.dir, state.ErrStoreClosed)
	}
	if err := p.snapshotIfDue(ctx); err != nil {
		return err
	}
	return p.cleanup(ctx)
}

func (p *Provider) lastSnapshotLocked() int64 {
	var last int64
	for s := range p.snaps {
		last = max(last, s)
	}
	return last
}

func (p *Provider) snapshotIfDue(ctx context.Context) error {
	p.mu.Lock()
	cur := p.cur
	if cur == nil || cur.version == 0 || p.snaps[cur.version] || cur.version-p.lastSnapshotLocked() < int64(p.opts.SnapshotInterval) {
		p.mu.Unlock()
		return nil
	}
	v := cur.version
	cur.syncIndex()
	tree := cur.t.Copy() // O(1); the writer goes on while we write
	p.mu.Unlock()

	name := SnapshotName(p.dir, v)
	var written int64
	err := frame.Put(ctx, p.s, name, frame.KindSnapshot, snapshotVersion, storage.PutOptions{}, func(w io.Writer) error {
		cw := &iox.CountingWriter{W: w}
		bw := bufio.NewWriterSize(cw, 256<<10)
		rw := recordWriter{w: bw}
		tree.Scan(func(e entry) bool {
			rw.str(e.key)
			rw.bytes(e.val)
			return true
		})
		err := bw.Flush()
		written = cw.N
		return err
	}, p.identity(name))
	if err != nil {
		return fmt.Errorf("state: write snapshot %s: %w", name, err)
	}
	p.counters.snapshotsWritten.Add(1)
	p.counters.snapshotBytes.Add(written)
	p.mu.Lock()
	p.snaps[v] = true
	p.mu.Unlock()
	p.opts.Logger.Debug("state snapshot written", "store", p.dir, "version", v, "bytes", written)
	return nil
}

// cleanup deletes snapshots and deltas older than what the oldest retained
// version needs, oldest first so that a crash midway leaves a loadable set.
func (p *Provider) cleanup(ctx context.Context) error {
	if err := p.refreshFiles(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	oldestRetained := p.latestLocked() - int64(p.opts.RetainVersions) + 1
	base := int64(0)
	for s := range p.snaps {
		if s <= oldestRetained && s > base {
			base = s
		}
	}
	var doomed []string
	if base > 0 {
		for _, d := range slices.Sorted(maps.Keys(p.deltas)) {
			if d <= base {
				doomed = append(doomed, DeltaName(p.dir, d))
			}
		}
		for _, s := range slices.Sorted(maps.Keys(p.snaps)) {
			if s < base {
				doomed = append(doomed, SnapshotName(p.dir, s))
			}
		}
	}
	p.mu.Unlock()
	slices.SortStableFunc(doomed, func(a, b string) int { return compareVersion(a, b) })
	for _, name := range doomed {
		if err := p.s.Delete(ctx, name); err != nil {
			return fmt.Errorf("state: clean up %s: %w", name, err)
		}
		p.counters.filesDeleted.Add(1)
		v, kind, _ := ParseFileName(name[strings.LastIndexByte(name, '/')+1:])
		p.mu.Lock()
		if kind == "delta" {
			delete(p.deltas, v)
		} else {
			delete(p.snaps, v)
		}
		p.mu.Unlock()
	}
	return nil
}

func compareVersion(a, b string) int {
	va, _, _ := ParseFileName(a[strings.LastIndexByte(a, '/')+1:])
	vb, _, _ := ParseFileName(b[strings.LastIndexByte(b, '/')+1:])
	return int(min(max(va-vb, -1), 1))
}

// Close implements state.Provider.
func (p *Provider) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.mu.Lock()
	w := p.writer
	p.mu.Unlock()
	if w != nil {
		w.Abort()
	}
	if p.indexStop != nil {
		close(p.indexStop)
		<-p.indexDone
	}
	return nil
}

// customMetrics returns the provider's counters for Metrics.Custom.
func (p *Provider) customMetrics() map[string]int64 {
	return map[string]int64{
		"snapshotsWritten": p.counters.snapshotsWritten.Load(),
		"snapshotBytes":    p.counters.snapshotBytes.Load(),
		"deltaBytes":       p.counters.deltaBytes.Load(),
		"filesDeleted":     p.counters.filesDeleted.Load(),
		"loads":            p.counters.loads.Load(),
		"loadMillis":       p.counters.loadNanos.Load() / 1e6,
	}
}

// readStore is a read-only view of one version.
type readStore struct {
	id       state.StoreID
	t        *table
	released atomic.Bool
}

func (r *readStore) ID() state.StoreID { return r.id }
func (r *readStore) Version() int64    { return r.t.version }

func (r *readStore) Get(key []byte) ([]byte, bool, error) {
	if r.released.Load() {
		return nil, false, state.ErrStoreClosed
	}
	v, ok := r.t.get(keyString(key))
	return v, ok, nil
}

func (r *readStore) Range(start, end []byte) iter.Seq2[state.KV, error] {
	return func(yield func(state.KV, error) bool) {
		if r.released.Load() {
			yield(state.KV{}, state.ErrStoreClosed)
			return
		}
		ascend(r.t.t, start, end, func(e entry) bool {
			return yield(state.KV{Key: keyBytes(e.key), Value: e.val}, nil)
		})
	}
}

func (r *readStore) PrefixScan(prefix []byte) iter.Seq2[state.KV, error] {
	return r.Range(nonNil(prefix), prefixEnd(prefix))
}

func (r *readStore) Metrics() state.Metrics {
	return state.Metrics{Keys: int64(r.t.len()), MemoryBytes: r.t.bytes + int64(r.t.len())*entryOverhead}
}

func (r *readStore) Abort() { r.released.Store(true) }

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
