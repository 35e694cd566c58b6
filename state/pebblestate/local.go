package pebblestate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Names in the working directory.
const (
	lockName       = "cairn.lock"
	mainDBName     = "db"  // the store's database, reused across runs
	altDBPrefix    = "db-" // a database that replaced db while read stores pinned it
	checkpointPref = "checkpoint-"
	readerPrefix   = "read-"
	instancePrefix = "instance-"
)

// workdir is the provider's local working directory. The provider holds
// its lock; a second provider of the same directory works in a private
// instance directory inside it.
type workdir struct {
	root      string
	lock      io.Closer
	ephemeral bool // root is a private instance directory, removed at close

	// fs is the file system of the databases, made by Provider.disk.
	fsOnce sync.Once
	fs     *diskFS
	logger *slog.Logger
}

func lockDir(dir string) (io.Closer, error) {
	return vfs.Default.Lock(filepath.Join(dir, lockName))
}

// openWorkdir locks base, or a new private directory inside it when base
// is locked by another provider, and removes the leftovers of crashed
// runs: temporary databases, checkpoints and unlocked instance directories.
func openWorkdir(base string) (*workdir, error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("pebblestate: create working directory: %w", err)
	}
	if l, err := lockDir(base); err == nil {
		w := &workdir{root: base, lock: l}
		w.removeLeftovers()
		return w, nil
	}
	root, err := os.MkdirTemp(base, instancePrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("pebblestate: create a private working directory in %s: %w", base, err)
	}
	l, err := lockDir(root)
	if err != nil {
		os.RemoveAll(root)
		return nil, fmt.Errorf("pebblestate: lock %s: %w", root, err)
	}
	return &workdir{root: root, lock: l, ephemeral: true}, nil
}

func (w *workdir) removeLeftovers() {
	entries, err := os.ReadDir(w.root)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		p := filepath.Join(w.root, n)
		switch {
		case strings.HasPrefix(n, altDBPrefix), strings.HasPrefix(n, checkpointPref), strings.HasPrefix(n, readerPrefix):
			os.RemoveAll(p)
		case strings.HasPrefix(n, instancePrefix):
			if l, err := lockDir(p); err == nil { // its provider is gone
				l.Close()
				os.RemoveAll(p)
			}
		}
	}
}

func (w *workdir) path(name string) string { return filepath.Join(w.root, name) }

// close unlocks the working directory. It returns the failure of its disk,
// if it failed: the provider stopped.
func (w *workdir) close() (err error) {
	if n := pebbleLogLimit.takeSuppressed(); n > 0 && w.logger != nil {
		w.logger.Warn("pebblestate: messages of Pebble were not logged (at most a few every 10 s are)", "suppressed", n)
	}
	var failure error
	if w.fs != nil {
		failure = w.fs.err()
	}
	defer func() {
		if failure != nil {
			err = failure
		}
	}()
	err = w.lock.Close()
	if w.ephemeral {
		if rerr := os.RemoveAll(w.root); err == nil {
			err = rerr
		}
	}
	return err
}

// fileSum identifies the contents of a database file.
type fileSum struct {
	size int64
	crc  uint32
	hash [32]byte
}

// dbHandle is an open Pebble database: the provider's main database (the
// store at its latest loaded version) or one built for a read store of an
// older version. refs counts the provider (for main) and the read stores
// that read it through snapshots; the last release closes it.
type dbHandle struct {
	db        *pebble.DB
	dir       string
	removeDir bool // delete dir when closed (not the reusable main database)
	refs      int  // guarded by Provider.mu
	meta      localMeta
	// sums caches the identity of the database's SST files by local name,
	// for snapshots (a file number is never reused within a database).
	// Guarded by Provider.maintMu.
	sums map[string]fileSum
	life *dbLife
}

// dbLife is what a provider knows of one open database beyond Pebble's
// handle: calls into it still running, and whether Pebble stopped it.
type dbLife struct {
	dir string
	// pending counts the calls given up on (by runOp) that still run.
	pending sync.WaitGroup
	// wedged is set when Pebble reported a fatal error (Logger.Fatalf):
	// the goroutine that reported it is parked for good, holding Pebble's
	// locks, so the database can be neither used nor closed.
	wedged atomic.Bool
}

// disk returns the file system of the provider's databases.
func (p *Provider) disk() *diskFS {
	w := p.wd
	w.fsOnce.Do(func() {
		w.fs = newDiskFS(p.popts.testFS, w.root)
		w.logger = p.opts.Logger
	})
	return w.fs
}

// diskErr returns the failure of the provider's disk, or nil.
func (p *Provider) diskErr() error {
	if p.wd == nil {
		return nil
	}
	return p.disk().err()
}

// runOp runs op, a call into Pebble that writes, on a goroutine of its
// own, and waits until it returns, the disk fails or ctx ends. On a failed
// disk Pebble can block for good: a write waits for a flush that fails
// again and again, and a fatal error parks its goroutine. So the caller
// gets the failure at once, and op, if it still runs, is left to run:
// inFlight is then true, the caller must not touch what op uses (a batch
// is left to it, never freed) and must drop the database; late, if not
// nil, runs after op if it returns. life (nil for an open) counts op as
// pending until it returns, for Close. A disk failure is returned as the
// failure (matching syscall.ENOSPC for a full disk, naming the directory)
// rather than as Pebble's copy of it.
func (p *Provider) runOp(ctx context.Context, life *dbLife, op func() error, late func()) (inFlight bool, err error) {
	fs := p.disk()
	if err := fs.err(); err != nil {
		return false, err
	}
	if life != nil {
		life.pending.Add(1)
	}
	var (
		mu       sync.Mutex
		finished bool
		gaveUp   bool
		done     = make(chan error, 1)
	)
	go func() {
		if life != nil {
			defer life.pending.Done()
		}
		defer func() {
			// A call given up on when the disk failed may find its
			// database closed under it (Pebble panics): nobody waits
			// for it any more.
			if r := recover(); r != nil {
				mu.Lock()
				g := gaveUp
				mu.Unlock()
				if !g || fs.err() == nil {
					panic(r)
				}
			}
		}()
		err := op()
		mu.Lock()
		finished = true
		g := gaveUp
		mu.Unlock()
		done <- err
		if g && late != nil {
			late()
		}
	}()
	result := func(err error) (bool, error) {
		if ferr := fs.err(); err != nil && ferr != nil {
			return false, ferr
		}
		return false, err
	}
	select {
	case err := <-done:
		return result(err)
	case <-fs.failed:
	case <-ctx.Done():
	}
	mu.Lock()
	if finished {
		mu.Unlock()
		return result(<-done)
	}
	gaveUp = true
	mu.Unlock()
	if err := fs.err(); err != nil {
		return true, err
	}
	return true, fmt.Errorf("pebblestate: gave up waiting for the local database: %w", context.Cause(ctx))
}

// commit applies a batch to the database without fsync (the WAL is off),
// through runOp. inFlight says that the commit still runs: the batch is
// left to it, never freed, and the database must be dropped.
func (p *Provider) commit(ctx context.Context, h *dbHandle, b *pebble.Batch) (inFlight bool, err error) {
	return p.runOp(ctx, h.life, func() error { return b.Commit(pebble.NoSync) }, nil)
}

// pebbleLogger sends Pebble's messages to slog: information at debug
// level, errors at warn, at most a few every 10 s (logLimiter); fatal
// errors fail the provider (see Fatalf).
type pebbleLogger struct {
	p    *Provider
	life *dbLife
}

func (pl *pebbleLogger) Infof(format string, args ...any) {
	if pl.p.diskErr() != nil { // retries on a failed disk: rate-limited
		pl.log(slog.LevelDebug, fmt.Sprintf(format, args...))
		return
	}
	pl.p.opts.Logger.Debug("pebble: "+fmt.Sprintf(format, args...), "dir", pl.life.dir)
}

func (pl *pebbleLogger) Errorf(format string, args ...any) {
	pl.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}

// log logs a message of Pebble at level, within the rate limit.
func (pl *pebbleLogger) log(level slog.Level, msg string) {
	ok, suppressed := pebbleLogLimit.allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"dir", pl.life.dir}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed) // messages not logged since the last one
	}
	pl.p.opts.Logger.Log(context.Background(), level, "pebble: "+msg, attrs...)
}

// Fatalf handles an error Pebble cannot continue after, such as a failed
// write of its MANIFEST on a full disk. Pebble requires Fatalf not to
// return (pebble.DefaultLogger exits the process), and a panic on one of
// its background goroutines would kill the process; so it fails the
// provider with the error (every call of the provider then returns it, and
// the process can exit cleanly), releases the database's lock (the failed
// disk takes no more writes from it), and parks the calling goroutine
// for good. The database is left as a crash would leave it.
func (pl *pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	pl.life.wedged.Store(true)
	fs := pl.p.disk()
	fs.fail(fmt.Errorf("fatal error of Pebble in %s: %s", pl.life.dir, msg))
	pl.p.opts.Logger.Error("pebble: fatal error; the provider has stopped", "dir", pl.life.dir, "err", msg, "failure", fs.err())
	fs.release(pl.life.dir)
	select {} // never returns, as Pebble requires
}

// eventListener reports Pebble's background errors (failed flushes and
// compactions, retried by Pebble at once and forever) within the rate
// limit, and data corruption without stopping the read that found it.
func (pl *pebbleLogger) eventListener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			pl.log(slog.LevelWarn, "background error: "+err.Error())
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			pl.log(slog.LevelError, "data corruption: "+info.String())
		},
	}
}

// pebbleLogLimit limits the messages of every database of the process.
var pebbleLogLimit logLimiter

// logLimiter lets through at most logBurst messages every logWindow and
// counts the others.
type logLimiter struct {
	mu          sync.Mutex
	windowStart time.Time
	n           int
	suppressed  int
}

const (
	logBurst  = 5
	logWindow = 10 * time.Second
)

// allow reports whether to log a message now, and how many were not
// logged since the last one that was.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.windowStart) >= logWindow {
		l.windowStart, l.n = now, 0
	}
	if l.n >= logBurst {
		l.suppressed++
		return false, 0
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

func (l *logLimiter) takeSuppressed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.suppressed
	l.suppressed = 0
	return s
}

// pebbleOptions returns the options a database of the provider is opened
// with. The WAL is off: checkpoint storage is the durable copy, a batch is
// atomic in a memtable, and memtables are flushed in order, so a database
// that lost its memtables in a crash is at an older version that its meta
// key names, and catches up from the changelogs.
func (p *Provider) pebbleOptions(create bool, life *dbLife) *pebble.Options {
	logger := &pebbleLogger{p: p, life: life}
	o := &pebble.Options{
		Cache:                       p.cache,
		MemTableSize:                uint64(p.popts.MemTableSize),
		MemTableStopWritesThreshold: p.popts.MemTables,
		MaxOpenFiles:                p.popts.MaxOpenFiles,
		DisableWAL:                  true,
		FormatMajorVersion:          pebble.FormatTableFormatV6,
		FS:                          p.disk(),
		Logger:                      logger,
		EventListener:               logger.eventListener(),
		MaxManifestFileSize:         1 << 20, // the MANIFEST travels inline in each snapshot
		ErrorIfNotExists:            !create,
	}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return o
}

// openDB opens the database in dir and reads its meta key.
func (p *Provider) openDB(dir string, create bool) (*dbHandle, error) {
	life := &dbLife{dir: dir}
	var db *pebble.DB
	_, err := p.runOp(context.Background(), nil, func() error {
		var err error
		db, err = pebble.Open(dir, p.pebbleOptions(create, life))
		return err
	}, func() { // opened after the disk failed
		if db != nil {
			db.Close()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("pebblestate: open database %s: %w", dir, err)
	}
	h := &dbHandle{db: db, dir: dir, refs: 1, sums: map[string]fileSum{}, life: life}
	h.meta.Keys = 0
	val, closer, err := db.Get(metaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		h.meta.Version = -1 // no version: a new or foreign database
	case err != nil:
		p.closeHandle(h, false)
		return nil, fmt.Errorf("pebblestate: read the version of database %s: %w", dir, err)
	default:
		m, ok := decodeLocalMeta(val)
		closer.Close()
		if !ok {
			m = localMeta{Version: -1}
		}
		h.meta = m
	}
	return h, nil
}

// How long closeHandle waits for a database to close: Pebble first waits
// for its flush or compaction in progress, which on a failed disk gives up
// within failedPause.
const (
	closeWait       = 10 * time.Second
	failedCloseWait = time.Second
)

// closeHandle closes the database of a handle whose last reference is
// gone, and removes its directory unless it is the reusable main database.
// It never blocks for long: on a failed disk it does not flush, and a
// database that does not close in time (or that Pebble stopped in a fatal
// error) is left to the process's exit, as a crash would leave it.
func (p *Provider) closeHandle(h *dbHandle, flush bool) {
	fs := p.disk()
	if flush && fs.err() == nil {
		// So that the next run finds this version without replaying changelogs.
		if _, err := p.runOp(context.Background(), h.life, h.db.Flush, nil); err != nil {
			p.opts.Logger.Warn("pebblestate: flush database", "dir", h.dir, "err", err)
		}
	}
	if h.life.wedged.Load() {
		p.opts.Logger.Warn("pebblestate: the local database stopped in a fatal error of Pebble; it is left as it is, and the next run reuses or rebuilds it", "dir", h.dir)
		return
	}
	closed := make(chan error, 1)
	finish := func(err error) {
		if err != nil && fs.err() == nil {
			p.opts.Logger.Warn("pebblestate: close database", "dir", h.dir, "err", err)
		}
		if h.removeDir {
			os.RemoveAll(h.dir)
		}
	}
	go func() {
		if fs.err() == nil {
			h.life.pending.Wait() // calls given up on that still run
		} // else they fail at once, or wait for good for a flush
		closed <- h.db.Close()
	}()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-closed:
			finish(err)
			return
		case <-tick.C:
		}
		failed := fs.err() != nil
		if failed {
			fs.wake() // Pebble's retries on the failed disk give up at once
		}
		if waited := time.Since(start); waited > closeWait || failed && waited > failedCloseWait {
			p.opts.Logger.Warn("pebblestate: the local database did not close in time; it is left to the exit of the process, as a crash would leave it",
				"dir", h.dir, "waited", waited.Round(time.Millisecond))
			if failed {
				fs.release(h.dir) // the failed disk takes no more writes from it
			}
			go func() { finish(<-closed) }()
			return
		}
	}
}
