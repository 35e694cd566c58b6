package pebblestate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// Options configure the pebble provider. Pass them as
// state.Options.Provider (an Options or *Options); the zero value gives the
// defaults. They are not pinned: a restart may change any of them.
//
// Memory is bounded by BlockCacheSize + MemTableSize*MemTables, plus the
// uncommitted writes of the open store, whatever the size of the state.
// Changelog checkpointing (Spark:
// spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled)
// is always on: every commit writes a changelog, and a snapshot is made
// every state.Options.SnapshotInterval versions (Spark:
// spark.sql.streaming.stateStore.minDeltasForSnapshot).
type Options struct {
	// Dir is the local working directory that holds the store's Pebble
	// database, a cache of checkpoint storage. Default DefaultDir(s, id),
	// under os.TempDir(). If another provider (in this process or another)
	// is using Dir, this one works in a private directory inside it and
	// removes it at Close. Spark keeps it under spark.local.dir.
	Dir string
	// BlockCacheSize is the size in bytes of Pebble's block cache (data,
	// index and filter blocks), shared by every database of the provider.
	// Default 64 MiB. Spark:
	// spark.sql.streaming.stateStore.rocksdb.blockCacheSizeMB (default 8).
	BlockCacheSize int64
	// MemTableSize is the size in bytes of one memtable. Default 16 MiB.
	// Spark: spark.sql.streaming.stateStore.rocksdb.writeBufferSizeMB.
	MemTableSize int64
	// MemTables is how many memtables may be queued (one being filled,
	// the others being flushed) before writes wait. Default 2. Spark:
	// spark.sql.streaming.stateStore.rocksdb.maxWriteBufferNumber.
	MemTables int
	// MaxOpenFiles is a soft limit on the files the database keeps open.
	// Default 256. Spark: spark.sql.streaming.stateStore.rocksdb.maxOpenFiles.
	MaxOpenFiles int
	// EstimateKeys stops counting keys exactly: Put and Delete then write
	// blindly, without first looking up whether the key exists, and
	// Metrics().Keys is an estimate from Pebble's table statistics that
	// leaves out writes not yet flushed. Default false (exact counts, one
	// point lookup per Put or Delete of a key not just read with Get).
	// Spark: spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows
	// = false.
	EstimateKeys bool

	// testFS, for tests of this package, is the file system under the
	// databases (default vfs.Default), such as one that fails writes.
	testFS vfs.FS
}

// Defaults of Options.
const (
	DefaultBlockCacheSize = 64 << 20 // Options.BlockCacheSize: 64 MiB
	DefaultMemTableSize   = 16 << 20 // Options.MemTableSize: 16 MiB
	DefaultMemTables      = 2        // Options.MemTables
	DefaultMaxOpenFiles   = 256      // Options.MaxOpenFiles
)

// WithDefaults returns o with zero fields set to their defaults; Dir stays
// empty (Init derives it from the location and the store).
func (o Options) WithDefaults() Options {
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = DefaultBlockCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.MemTables == 0 {
		o.MemTables = DefaultMemTables
	}
	if o.MaxOpenFiles == 0 {
		o.MaxOpenFiles = DefaultMaxOpenFiles
	}
	return o
}

// Validate reports a setting out of range, naming it.
func (o Options) Validate() error {
	switch {
	case o.BlockCacheSize < 0:
		return fmt.Errorf("pebblestate: Options.BlockCacheSize is %d; it must be positive (default %d)", o.BlockCacheSize, DefaultBlockCacheSize)
	case o.MemTableSize < 0 || o.MemTableSize >= 4<<30:
		return fmt.Errorf("pebblestate: Options.MemTableSize is %d; it must be positive and below 4 GiB (default %d)", o.MemTableSize, DefaultMemTableSize)
	case o.MemTables < 0 || o.MemTables == 1:
		return fmt.Errorf("pebblestate: Options.MemTables is %d; it must be at least 2 (default %d)", o.MemTables, DefaultMemTables)
	case o.MaxOpenFiles < 0:
		return fmt.Errorf("pebblestate: Options.MaxOpenFiles is %d; it must be positive (default %d)", o.MaxOpenFiles, DefaultMaxOpenFiles)
	}
	return nil
}

// optionsFrom extracts the provider's options from state.Options.Provider.
func optionsFrom(v any) (Options, error) {
	var o Options
	switch po := v.(type) {
	case nil:
	case Options:
		o = po
	case *Options:
		if po != nil {
			o = *po
		}
	default:
		return o, fmt.Errorf("pebblestate: state.Options.Provider is a %T; the pebble provider takes a pebblestate.Options", v)
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	return o.WithDefaults(), nil
}

// DefaultDir returns the default working directory of the store id in the
// checkpoint location s: a directory under os.TempDir() named by a hash of
// the location and the store's dir.
func DefaultDir(s storage.Storage, id state.StoreID) string {
	return defaultDir(s.Location(), id.Dir())
}

func defaultDir(location, dir string) string {
	h := sha256.Sum256([]byte(location + "\x00" + dir))
	return filepath.Join(os.TempDir(), "cairn-pebble", hex.EncodeToString(h[:10]))
}
