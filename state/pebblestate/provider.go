package pebblestate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// Name is the name the provider registers under.
const Name = "pebble"

func init() { state.Register(Name, func() state.Provider { return New() }) }

// Key spaces of a local database: the store's keys behind userPrefix, the
// provider's own records (metaKey) before them, where Range and PrefixScan
// never look.
const userPrefix = 0x01

var metaKey = []byte("\x00meta")

// Object names in the store's directory.
const (
	changelogExt  = "changelog"
	checkpointExt = "checkpoint"
)

// ChangelogName returns the name of the changelog of version v.
func ChangelogName(dir string, v int64) string { return fmt.Sprintf("%s/%d.%s", dir, v, changelogExt) }

// CheckpointName returns the name of the snapshot manifest of version v.
func CheckpointName(dir string, v int64) string {
	return fmt.Sprintf("%s/%d.%s", dir, v, checkpointExt)
}

// SharedName returns the name of the shared object that holds a database
// file (an SST) with the given SHA-256 and extension (".sst").
func SharedName(dir string, hash [32]byte, ext string) string {
	return fmt.Sprintf("%s/%x%s", dir, hash, ext)
}

// ParseFileName parses the last component of an object name of the store:
// "<version>.changelog" (kind "changelog"), "<version>.checkpoint" (kind
// "checkpoint"), or "<sha256 hex>.sst" / ".blob" (kind "shared", version 0).
func ParseFileName(base string) (version int64, kind string, ok bool) {
	num, ext, found := strings.Cut(base, ".")
	if !found {
		return 0, "", false
	}
	if (ext == "sst" || ext == "blob") && len(num) == 64 && strings.Trim(num, "0123456789abcdef") == "" {
		return 0, "shared", true
	}
	if ext != changelogExt && ext != checkpointExt {
		return 0, "", false
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || strconv.FormatInt(v, 10) != num {
		return 0, "", false
	}
	return v, ext, true
}

// Provider is the Pebble state store provider. Use state.Open with Name
// rather than calling its methods before Init. Safe for concurrent use.
type Provider struct {
	s        storage.Storage
	dir      string
	id       state.StoreID
	opts     state.Options
	popts    Options
	meta     state.Meta // the store's _meta: its UID goes into every object's identity
	identity [32]byte
	kick     chan struct{}
	closed   atomic.Bool

	wd    *workdir
	cache *pebble.Cache

	// maintMu serialises maintenance: snapshots and cleanup, and the SST
	// bookkeeping they share.
	maintMu sync.Mutex
	// manifests caches the shared objects each checkpoint references
	// (checkpoints are immutable). Guarded by maintMu.
	manifests map[int64][]string

	mu         sync.Mutex
	main       *dbHandle // the database at the latest loaded version
	writer     *store
	readers    map[*readStore]struct{}
	changelogs map[int64]bool
	snaps      map[int64]bool
	shared     map[string]bool // names of shared objects in storage
	latest     int64
	seq        int
	counters   counters
}

type counters struct {
	snapshotsWritten   atomic.Int64
	uploadedBytes      atomic.Int64
	uploadedFiles      atomic.Int64
	reusedFiles        atomic.Int64
	lastUploadedBytes  atomic.Int64
	lastUploadedFiles  atomic.Int64
	lastReusedFiles    atomic.Int64
	lastSnapshotMillis atomic.Int64
	changelogBytes     atomic.Int64
	filesDeleted       atomic.Int64
	downloadedBytes    atomic.Int64
	replayed           atomic.Int64
	loads              atomic.Int64
	loadNanos          atomic.Int64
	getNanos           atomic.Int64
	gets               atomic.Int64
	putNanos           atomic.Int64
	puts               atomic.Int64
}

var (
	_ state.Provider             = (*Provider)(nil)
	_ state.MaintenanceRequester = (*Provider)(nil)
)

// New returns an uninitialised provider; state.Open calls Init.
func New() *Provider { return &Provider{kick: make(chan struct{}, 1)} }

// Init implements state.Provider: it reads the store's identity and files
// and locks the working directory. The database is opened by the first
// GetStore or GetReadStore.
func (p *Provider) Init(ctx context.Context, s storage.Storage, dir string, id state.StoreID, schema state.Schema, opts state.Options) error {
	popts, err := optionsFrom(opts.Provider)
	if err != nil {
		return err
	}
	p.s, p.dir, p.id, p.opts, p.popts = s, dir, id, opts.WithDefaults(), popts
	p.manifests = map[int64][]string{}
	p.readers = map[*readStore]struct{}{}
	meta, err := state.ReadMeta(ctx, s, id)
	if err != nil {
		return fmt.Errorf("pebblestate: read the metadata of %s (open stores with state.Open): %w", dir, err)
	}
	p.meta = meta
	// A local database belongs to this store if it carries this identity:
	// the location, the store, and the creation time of its metadata (a
	// location deleted and created again is another store).
	p.identity = sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d", s.Location(), dir, meta.Provider, meta.Created.UnixNano()))
	if err := p.refreshFiles(ctx); err != nil {
		return err
	}
	base := popts.Dir
	if base == "" {
		base = defaultDir(s.Location(), dir)
	}
	if p.wd, err = openWorkdir(base); err != nil {
		return err
	}
	p.cache = pebble.NewCache(popts.BlockCacheSize)
	return nil
}

// refreshFiles rebuilds the index of the store's objects from a List.
func (p *Provider) refreshFiles(ctx context.Context) error {
	objs, err := p.s.List(ctx, p.dir+"/")
	if err != nil {
		return fmt.Errorf("pebblestate: list files of %s: %w", p.dir, err)
	}
	changelogs, snaps, shared := map[int64]bool{}, map[int64]bool{}, map[string]bool{}
	var latest int64
	for _, o := range objs {
		base := strings.TrimPrefix(o.Name, p.dir+"/")
		if strings.Contains(base, "/") {
			continue // a named store below this one
		}
		v, kind, ok := ParseFileName(base)
		switch {
		case !ok:
			continue
		case kind == changelogExt:
			changelogs[v] = true
		case kind == checkpointExt:
			snaps[v] = true
		default:
			shared[o.Name] = true
			continue
		}
		latest = max(latest, v)
	}
	p.mu.Lock()
	p.changelogs, p.snaps, p.shared = changelogs, snaps, shared
	p.latest = max(p.latest, latest)
	p.mu.Unlock()
	return nil
}

// MaintenanceRequests implements state.MaintenanceRequester: a commit that
// leaves SnapshotInterval changelogs since the last snapshot asks for one.
func (p *Provider) MaintenanceRequests() <-chan struct{} { return p.kick }

// LatestVersion implements state.Provider.
func (p *Provider) LatestVersion(ctx context.Context) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest, nil
}

// oldestLocked returns the oldest version the files can rebuild.
func (p *Provider) oldestLocked() int64 {
	if len(p.changelogs) == 0 && len(p.snaps) == 0 || p.changelogs[1] {
		return 0
	}
	oldest := int64(-1)
	for v := range p.snaps {
		if oldest < 0 || v < oldest {
			oldest = v
		}
	}
	return oldest
}

// OldestVersion implements state.Provider.
func (p *Provider) OldestVersion(ctx context.Context) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	oldest := p.oldestLocked()
	if oldest < 0 {
		return -1, &state.VersionError{Store: p.dir, Requested: p.latest, Oldest: -1, Latest: p.latest}
	}
	return oldest, nil
}

func (p *Provider) lastSnapshotLocked() int64 {
	var last int64
	for s := range p.snaps {
		last = max(last, s)
	}
	return last
}

// checkVersionLocked refuses a version that was never committed.
func (p *Provider) checkVersionLocked(v int64) error {
	if v < 0 || v > p.latest {
		return &state.VersionError{Store: p.dir, Requested: v, Oldest: p.oldestLocked(), Latest: p.latest}
	}
	return nil
}

// GetStore implements state.Provider.
func (p *Provider) GetStore(ctx context.Context, version int64) (state.Store, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("state: get store %s: %w", p.dir, state.ErrStoreClosed)
	}
	if err := p.diskErr(); err != nil {
		return nil, fmt.Errorf("state: get store %s at version %d: %w", p.dir, version, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writer != nil {
		return nil, fmt.Errorf("state: get store %s at version %d: %w at version %d; commit or abort it first",
			p.dir, version, state.ErrWriterOpen, p.writer.version)
	}
	if err := p.checkVersionLocked(version); err != nil {
		return nil, err
	}
	if err := p.ensureMainLocked(ctx, version); err != nil {
		return nil, err
	}
	h := p.main
	s := &store{p: p, h: h, version: version, keys: h.meta.Keys, batch: h.db.NewIndexedBatch(), touched: map[string]bool{}}
	s.kbuf = append(s.kbuf, userPrefix)
	p.writer = s
	// If ctx is already done, Abort runs at once on another goroutine: the
	// stop function is published atomically for it.
	stop := context.AfterFunc(ctx, s.Abort)
	s.stopAfter.Store(&stop)
	return s, nil
}

// GetReadStore implements state.Provider. A read store of the version the
// provider's database holds reads a Pebble snapshot of it; another version
// is rebuilt in a database of its own, removed at Abort.
func (p *Provider) GetReadStore(ctx context.Context, version int64) (state.ReadStore, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("state: get read store %s: %w", p.dir, state.ErrStoreClosed)
	}
	if err := p.diskErr(); err != nil {
		return nil, fmt.Errorf("state: get read store %s at version %d: %w", p.dir, version, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkVersionLocked(version); err != nil {
		return nil, err
	}
	if p.main == nil {
		if err := p.openLocalLocked(); err != nil {
			return nil, err
		}
	}
	if p.writer == nil && (p.main == nil || p.main.meta.Version <= version) {
		if err := p.ensureMainLocked(ctx, version); err != nil {
			return nil, err
		}
	}
	r := &readStore{p: p, version: version}
	if p.main != nil && p.main.meta.Version == version {
		r.h, r.keys = p.main, p.main.meta.Keys
		r.h.refs++
		r.snap = r.h.db.NewSnapshot()
		r.reader = r.snap
	} else {
		p.seq++
		h, err := p.buildLocked(ctx, version, p.wd.path(fmt.Sprintf("%s%d", readerPrefix, p.seq)), true)
		if err != nil {
			return nil, err
		}
		r.h, r.keys, r.reader = h, h.meta.Keys, h.db
	}
	p.readers[r] = struct{}{}
	return r, nil
}

// openLocalLocked opens the database a previous run left in the working
// directory, if it belongs to this store and is not ahead of checkpoint
// storage; otherwise it removes it.
func (p *Provider) openLocalLocked() error {
	dir := p.wd.path(mainDBName)
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	h, err := p.openDB(dir, false)
	if err != nil {
		p.opts.Logger.Info("pebblestate: the local database cannot be opened; restoring from checkpoint storage", "store", p.dir, "dir", dir, "err", err)
		return p.removeDB(dir)
	}
	if h.meta.Identity != p.identity || h.meta.Version < 0 || h.meta.Version > p.latest {
		p.opts.Logger.Info("pebblestate: the local database belongs to another store or is ahead of checkpoint storage; restoring from checkpoint storage",
			"store", p.dir, "dir", dir, "localVersion", h.meta.Version, "latest", p.latest)
		h.db.Close()
		return p.removeDB(dir)
	}
	if (p.popts.EstimateKeys) != (h.meta.Keys < 0) {
		h.meta.Keys = p.countKeys(h) // the key counting setting changed
	}
	p.main = h
	return nil
}

func (p *Provider) removeDB(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("pebblestate: remove the local database %s: %w", dir, err)
	}
	return nil
}

// countKeys returns the number of keys of a database, or -1 when keys are
// estimated.
func (p *Provider) countKeys(h *dbHandle) int64 {
	if p.popts.EstimateKeys {
		return -1
	}
	it, err := h.db.NewIter(&pebble.IterOptions{LowerBound: []byte{userPrefix}, UpperBound: []byte{userPrefix + 1}})
	if err != nil {
		return -1
	}
	defer it.Close()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// ensureMainLocked brings the provider's database to version v: it opens
// the database left by a previous run, replays the changelogs after its
// version, or, when it is ahead of v or the changelogs are gone, rebuilds
// it from the newest snapshot at or below v.
func (p *Provider) ensureMainLocked(ctx context.Context, v int64) error {
	if p.main == nil {
		if err := p.openLocalLocked(); err != nil {
			return err
		}
	}
	if h := p.main; h != nil {
		if h.meta.Version == v {
			return nil
		}
		if h.meta.Version < v && p.chainLocked(h.meta.Version+1, v) {
			start := time.Now()
			if err := p.replay(ctx, h, h.meta.Version+1, v); err != nil {
				return err
			}
			p.counters.loads.Add(1)
			p.counters.loadNanos.Add(int64(time.Since(start)))
			return nil
		}
	}
	// Rebuild, in the main database's directory unless read stores still
	// read an older database there.
	if old := p.main; old != nil {
		p.main = nil
		p.releaseLocked(old)
	}
	dir := p.wd.path(mainDBName)
	if p.dirInUseLocked(dir) {
		p.seq++
		dir = p.wd.path(fmt.Sprintf("%s%d", altDBPrefix, p.seq))
	}
	h, err := p.buildLocked(ctx, v, dir, dir != p.wd.path(mainDBName))
	if err != nil {
		return err
	}
	p.main = h
	return nil
}

// dirInUseLocked reports whether a read store reads a database in dir.
func (p *Provider) dirInUseLocked(dir string) bool {
	for r := range p.readers {
		if r.h.dir == dir {
			return true
		}
	}
	return false
}

// chainLocked reports whether the changelogs from..to are all present.
func (p *Provider) chainLocked(from, to int64) bool {
	for d := from; d <= to; d++ {
		if !p.changelogs[d] {
			return false
		}
	}
	return true
}

// buildLocked builds version v in a new database in dir: the newest
// snapshot at or below v, then the changelogs after it.
func (p *Provider) buildLocked(ctx context.Context, v int64, dir string, removeDir bool) (*dbHandle, error) {
	start := time.Now()
	base := int64(-1)
	for s := range p.snaps {
		if s <= v && s > base {
			base = s
		}
	}
	if base < 0 {
		if !p.changelogs[1] && (v > 0 || p.latest > 0) {
			return nil, &state.VersionError{Store: p.dir, Requested: v, Oldest: p.oldestLocked(), Latest: p.latest,
				CleanedUp: true, Retain: p.opts.RetainVersions}
		}
		base = 0
	}
	for d := base + 1; d <= v; d++ {
		if !p.changelogs[d] {
			return nil, fmt.Errorf("state: cannot rebuild version %d of %s: %s is missing (the chain from version %d is broken; the checkpoint is damaged: restore the object from a backup or start a new query): %w",
				v, p.dir, ChangelogName(p.dir, d), base, storage.ErrNotFound)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("pebblestate: clear %s: %w", dir, err)
	}
	var sums map[string]fileSum
	if base > 0 {
		var err error
		if sums, err = p.restore(ctx, base, dir); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("state: load version %d of %s: %w", v, p.dir, err)
		}
	}
	h, err := p.openDB(dir, base == 0)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	h.removeDir = removeDir
	if sums != nil {
		h.sums = sums
	}
	fail := func(err error) (*dbHandle, error) {
		p.closeHandle(h, false)
		os.RemoveAll(dir)
		return nil, err
	}
	switch {
	case base == 0:
		h.meta = localMeta{Version: 0}
	case h.meta.Version != base:
		return fail(&storage.CorruptError{Object: CheckpointName(p.dir, base), Offset: -1,
			Reason: fmt.Sprintf("its database is at version %d", h.meta.Version)})
	}
	// Stamp the database as this store's (a snapshot restored into a copy
	// of the location carries the identity of the original).
	h.meta.Identity = p.identity
	if p.popts.EstimateKeys != (h.meta.Keys < 0) {
		h.meta.Keys = p.countKeys(h)
	}
	if err := h.db.Set(metaKey, h.meta.encode(), pebble.NoSync); err != nil {
		return fail(fmt.Errorf("pebblestate: write the version of %s: %w", dir, err))
	}
	if err := p.replay(ctx, h, base+1, v); err != nil {
		return fail(err)
	}
	p.counters.loads.Add(1)
	p.counters.loadNanos.Add(int64(time.Since(start)))
	return h, nil
}

// replay applies the changelogs from..to to h, one batch per version.
func (p *Provider) replay(ctx context.Context, h *dbHandle, from, to int64) error {
	for d := from; d <= to; d++ {
		name := ChangelogName(p.dir, d)
		r, err := frame.Get(ctx, p.s, name, frame.KindChangelog, changelogVersion, p.objectIdentity(name))
		if err != nil {
			return fmt.Errorf("state: load %s: %w", name, err)
		}
		counting := h.meta.Keys >= 0
		b := h.db.NewBatch()
		keys := h.meta.Keys
		var kbuf []byte
		touched := map[string]bool{} // keys written by this changelog: exist after it
		err = decodeChangelog(r, name, func(del bool, key, value []byte) error {
			kbuf = append(append(kbuf[:0], userPrefix), key...)
			if counting {
				existed, ok := touched[string(key)]
				if !ok {
					var err error
					if existed, err = exists(h.db, kbuf); err != nil {
						return err
					}
				}
				switch {
				case del && existed:
					keys--
				case !del && !existed:
					keys++
				}
				touched[string(key)] = !del
			}
			if del {
				return b.Delete(kbuf, nil)
			}
			return b.Set(kbuf, value, nil)
		})
		r.Close()
		if err != nil {
			b.Close()
			return fmt.Errorf("state: load %s: %w", name, err)
		}
		meta := localMeta{Identity: p.identity, Version: d, Keys: keys}
		b.Set(metaKey, meta.encode(), nil)
		if inFlight, err := p.commit(ctx, h, b); err != nil {
			if !inFlight { // else left to the commit that still runs
				b.Close()
			}
			return fmt.Errorf("pebblestate: apply %s to %s: %w", name, h.dir, err)
		}
		b.Close()
		h.meta = meta
		p.counters.replayed.Add(1)
	}
	return nil
}

// objectIdentity returns the identity of the store's object name (see
// state.Meta.ObjectIdentity).
func (p *Provider) objectIdentity(name string) frame.Identity {
	return frame.Identity(p.meta.ObjectIdentity(name))
}

// exists reports whether key is present in r.
func exists(r pebble.Reader, key []byte) (bool, error) {
	_, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

// releaseLocked drops a reference to a database and closes it after the
// last one.
func (p *Provider) releaseLocked(h *dbHandle) {
	h.refs--
	if h.refs == 0 {
		p.closeHandle(h, !h.removeDir)
	}
}

// Maintain implements state.Provider: it snapshots the provider's database
// when SnapshotInterval changelogs accumulated since the last snapshot,
// then deletes the changelogs, snapshots and SST files that no retained
// version needs.
func (p *Provider) Maintain(ctx context.Context) error {
	if p.closed.Load() {
		return fmt.Errorf("state: maintain %s: %w", p.dir, state.ErrStoreClosed)
	}
	p.maintMu.Lock()
	defer p.maintMu.Unlock()
	if err := p.snapshotIfDue(ctx); err != nil {
		return err
	}
	return p.cleanup(ctx)
}

// cleanup deletes the changelogs and snapshots older than what the oldest
// retained version needs, oldest first, then the shared files no remaining
// snapshot references, so that a crash midway leaves a loadable set.
func (p *Provider) cleanup(ctx context.Context) error {
	if err := p.refreshFiles(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	oldestRetained := p.latest - int64(p.opts.RetainVersions) + 1
	base := int64(0)
	for s := range p.snaps {
		if s <= oldestRetained && s > base {
			base = s
		}
	}
	var doomed []int64 // versions: changelogs <= base, snapshots < base
	if base > 0 {
		for v := range p.changelogs {
			if v <= base {
				doomed = append(doomed, v)
			}
		}
		for v := range p.snaps {
			if v < base {
				doomed = append(doomed, -v) // negative: a snapshot
			}
		}
	}
	p.mu.Unlock()
	slices.SortFunc(doomed, func(a, b int64) int {
		va, vb := max(a, -a), max(b, -b)
		if va != vb {
			return int(min(max(va-vb, -1), 1))
		}
		return int(min(max(a-b, -1), 1)) // at one version, the snapshot first
	})
	for _, d := range doomed {
		name := ChangelogName(p.dir, d)
		if d < 0 {
			name = CheckpointName(p.dir, -d)
		}
		if err := p.s.Delete(ctx, name); err != nil {
			return fmt.Errorf("state: clean up %s: %w", name, err)
		}
		p.counters.filesDeleted.Add(1)
		p.mu.Lock()
		if d < 0 {
			delete(p.snaps, -d)
		} else {
			delete(p.changelogs, d)
		}
		p.mu.Unlock()
	}

	// Shared files: keep those a remaining snapshot references.
	p.mu.Lock()
	snaps := slices.Sorted(maps.Keys(p.snaps))
	shared := slices.Sorted(maps.Keys(p.shared))
	p.mu.Unlock()
	for v := range p.manifests {
		if !slices.Contains(snaps, v) {
			delete(p.manifests, v)
		}
	}
	referenced := map[string]bool{}
	for _, v := range snaps {
		names, ok := p.manifests[v]
		if !ok {
			m, err := p.readManifest(ctx, v)
			if err != nil {
				return fmt.Errorf("state: clean up %s: %w", p.dir, err)
			}
			names = m.sharedNames(p.dir)
			p.manifests[v] = names
		}
		for _, n := range names {
			referenced[n] = true
		}
	}
	for _, name := range shared {
		if referenced[name] {
			continue
		}
		if err := p.s.Delete(ctx, name); err != nil {
			return fmt.Errorf("state: clean up %s: %w", name, err)
		}
		p.counters.filesDeleted.Add(1)
		p.mu.Lock()
		delete(p.shared, name)
		p.mu.Unlock()
	}
	return nil
}

// Close implements state.Provider: it aborts the open stores, flushes and
// closes the database (left in the working directory for the next run)
// and unlocks the working directory.
func (p *Provider) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.mu.Lock()
	w := p.writer
	readers := slices.Collect(maps.Keys(p.readers))
	p.mu.Unlock()
	if w != nil {
		w.Abort()
	}
	for _, r := range readers {
		r.Abort()
	}
	p.maintMu.Lock() // wait for a running Maintain
	defer p.maintMu.Unlock()
	p.mu.Lock()
	if p.main != nil {
		p.releaseLocked(p.main)
		p.main = nil
	}
	p.mu.Unlock()
	var err error
	if p.cache != nil {
		p.cache.Unref()
	}
	if p.wd != nil {
		err = p.wd.close()
	}
	return err
}

// customMetrics returns the provider's figures for Metrics.Custom.
func (p *Provider) customMetrics(h *dbHandle) map[string]int64 {
	c := &p.counters
	avg := func(total, n int64) int64 {
		if n == 0 {
			return 0
		}
		return total / n
	}
	m := map[string]int64{
		"snapshotsWritten":          c.snapshotsWritten.Load(),
		"snapshotUploadedBytes":     c.uploadedBytes.Load(),
		"snapshotUploadedFiles":     c.uploadedFiles.Load(),
		"snapshotReusedFiles":       c.reusedFiles.Load(),
		"lastSnapshotUploadedBytes": c.lastUploadedBytes.Load(),
		"lastSnapshotUploadedFiles": c.lastUploadedFiles.Load(),
		"lastSnapshotReusedFiles":   c.lastReusedFiles.Load(),
		"lastSnapshotMillis":        c.lastSnapshotMillis.Load(),
		"changelogBytes":            c.changelogBytes.Load(),
		"filesDeleted":              c.filesDeleted.Load(),
		"downloadedBytes":           c.downloadedBytes.Load(),
		"changelogsReplayed":        c.replayed.Load(),
		"loads":                     c.loads.Load(),
		"loadMillis":                c.loadNanos.Load() / 1e6,
		"getNanos":                  avg(c.getNanos.Load(), c.gets.Load()),
		"putNanos":                  avg(c.putNanos.Load(), c.puts.Load()),
	}
	if p.closed.Load() {
		return m // the cache and databases are released
	}
	m["blockCacheBytes"] = p.cache.Metrics().Size
	m["blockCacheCapacity"] = p.cache.MaxSize()
	if h != nil && p.diskErr() == nil { // a stopped database may block
		dm := h.db.Metrics()
		var sstBytes, sstFiles int64
		for _, l := range dm.Levels {
			sstBytes += l.TablesSize
			sstFiles += l.TablesCount
		}
		m["sstBytes"] = sstBytes
		m["sstFiles"] = sstFiles
		m["memtableBytes"] = int64(dm.MemTable.Size)
		m["compactionsInProgress"] = dm.Compact.NumInProgress + dm.Flush.NumInProgress
		m["compactionDebtBytes"] = int64(dm.Compact.EstimatedDebt)
		m["keysEstimated"] = estimateKeys(h.db)
	}
	return m
}

// estimateKeys estimates the keys of a database from its tables'
// statistics, as RocksDB's rocksdb.estimate-num-keys does: entries minus
// twice the deletions (a deletion likely hides an entry). Writes still in
// memtables are not counted.
func estimateKeys(db *pebble.DB) int64 {
	levels, err := db.SSTables()
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range levels {
		for _, t := range l {
			n += int64(t.TableStats.NumEntries) - 2*int64(t.TableStats.NumDeletions)
		}
	}
	return max(n-1, 0) // the meta key
}

// sample reports whether to time this operation: one in 64.
func sample(n *uint32) bool {
	*n++
	return *n&63 == 0
}
