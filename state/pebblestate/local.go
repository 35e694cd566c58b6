package pebblestate

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

func (w *workdir) close() error {
	err := w.lock.Close()
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
}

// pebbleLogger sends Pebble's messages to slog at debug level (errors at
// warn).
type pebbleLogger struct{ l *slog.Logger }

func (pl pebbleLogger) Infof(format string, args ...any) {
	pl.l.Debug("pebble: " + fmt.Sprintf(format, args...))
}
func (pl pebbleLogger) Errorf(format string, args ...any) {
	pl.l.Warn("pebble: " + fmt.Sprintf(format, args...))
}
func (pl pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	pl.l.Error("pebble: " + msg)
	panic("pebble: " + msg)
}

// pebbleOptions returns the options every database of the provider is
// opened with. The WAL is off: checkpoint storage is the durable copy, a
// batch is atomic in a memtable, and memtables are flushed in order, so a
// database that lost its memtables in a crash is at an older version that
// its meta key names, and catches up from the changelogs.
func (p *Provider) pebbleOptions(create bool) *pebble.Options {
	o := &pebble.Options{
		Cache:                       p.cache,
		MemTableSize:                uint64(p.popts.MemTableSize),
		MemTableStopWritesThreshold: p.popts.MemTables,
		MaxOpenFiles:                p.popts.MaxOpenFiles,
		DisableWAL:                  true,
		FormatMajorVersion:          pebble.FormatTableFormatV6,
		Logger:                      pebbleLogger{p.opts.Logger},
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
	db, err := pebble.Open(dir, p.pebbleOptions(create))
	if err != nil {
		return nil, fmt.Errorf("pebblestate: open database %s: %w", dir, err)
	}
	h := &dbHandle{db: db, dir: dir, refs: 1, sums: map[string]fileSum{}}
	h.meta.Keys = 0
	val, closer, err := db.Get(metaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		h.meta.Version = -1 // no version: a new or foreign database
	case err != nil:
		db.Close()
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

// closeHandle closes the database of a handle whose last reference is
// gone, and removes its directory unless it is the reusable main database.
func (p *Provider) closeHandle(h *dbHandle, flush bool) {
	if flush {
		h.db.Flush() // so the next run finds this version without replaying changelogs
	}
	if err := h.db.Close(); err != nil {
		p.opts.Logger.Warn("pebblestate: close database", "dir", h.dir, "err", err)
	}
	if h.removeDir {
		os.RemoveAll(h.dir)
	}
}
