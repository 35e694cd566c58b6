package state

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/cairn-data/cairn/storage"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrVersionUnavailable matches a *VersionError: the version asked for
	// does not exist yet, or was cleaned up by maintenance.
	ErrVersionUnavailable = errors.New("state: version unavailable")
	// ErrConfigChanged matches a *ConfigError: the provider or a schema
	// differs from what the store was created with.
	ErrConfigChanged = errors.New("state: configuration changed")
	// ErrConcurrentWriter is returned by Commit when another writer has
	// committed the same version with different contents.
	ErrConcurrentWriter = errors.New("state: another writer is using this state store")
	// ErrStoreClosed is returned by a Store that was committed or aborted,
	// and by a closed Provider.
	ErrStoreClosed = errors.New("state: store already committed, aborted or closed")
	// ErrWriterOpen is returned by GetStore while an earlier writable store
	// of the same provider is neither committed nor aborted.
	ErrWriterOpen = errors.New("state: a writable store is already open")
)

// StoreID identifies one state store within a checkpoint location: the
// state of one stateful operator in one partition.
type StoreID struct {
	Operator  int64  // operator ID in the query
	Partition int32  // partition ID
	Name      string // store name, for operators with several stores; "" is the default store
}

// Dir returns the store's prefix within the checkpoint location:
// "state/<operator>/<partition>" or "state/<operator>/<partition>/<name>",
// as in Spark's checkpoint layout.
func (id StoreID) Dir() string {
	if id.Name == "" || id.Name == "default" {
		return fmt.Sprintf("state/%d/%d", id.Operator, id.Partition)
	}
	return fmt.Sprintf("state/%d/%d/%s", id.Operator, id.Partition, id.Name)
}

func (id StoreID) String() string { return id.Dir() }

// Schema describes the keys and values of a store, as strings produced by
// the codecs (see Codec.Schema). It is recorded at first use and checked
// on every later Open.
type Schema struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Options configure a provider. The zero value gives the defaults.
type Options struct {
	// SnapshotInterval is the number of deltas after which maintenance
	// writes a snapshot. Default 10. Spark:
	// spark.sql.streaming.stateStore.minDeltasForSnapshot.
	SnapshotInterval int
	// MaintenanceInterval is how often the maintenance goroutine runs.
	// Default 60s; negative disables the goroutine (call Maintain
	// yourself). Spark: spark.sql.streaming.stateStore.maintenanceInterval.
	MaintenanceInterval time.Duration
	// RetainVersions is how many of the newest versions stay loadable;
	// maintenance deletes files only older versions need. Default 100.
	// Spark: spark.sql.streaming.minBatchesToRetain.
	RetainVersions int
	// Logger receives maintenance events. Default slog.Default().
	Logger *slog.Logger
	// Provider holds the options of the provider, of the type its package
	// documents (pebblestate.Options for "pebble"); nil gives the
	// provider's defaults. A provider without options of its own
	// (memstate) ignores it; one with options refuses a value of another
	// type. Unlike the provider's name, these options are not pinned: a
	// restart may change them.
	Provider any
}

// WithDefaults returns o with zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = 10
	}
	if o.MaintenanceInterval == 0 {
		o.MaintenanceInterval = 60 * time.Second
	}
	if o.RetainVersions == 0 {
		o.RetainVersions = 100
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports a setting out of range, naming it.
func (o Options) Validate() error {
	switch {
	case o.SnapshotInterval < 0:
		return fmt.Errorf("state: Options.SnapshotInterval is %d; it must be positive (default 10)", o.SnapshotInterval)
	case o.RetainVersions < 0:
		return fmt.Errorf("state: Options.RetainVersions is %d; it must be positive (default 100)", o.RetainVersions)
	}
	return nil
}

// KV is one key and value yielded by Range and PrefixScan. Both slices are
// owned by the store: do not modify them, and do not keep them past the
// loop iteration that yielded them (a provider may reuse them when the
// loop advances); copy what you keep.
type KV struct {
	Key, Value []byte
}

// Metrics describe a store. Providers add their own figures to Custom.
type Metrics struct {
	Keys         int64            // number of keys at the store's version, with uncommitted writes
	MemoryBytes  int64            // estimate of the memory the state takes
	BytesWritten int64            // bytes written to checkpoint storage by Commit
	Custom       map[string]int64 // provider-specific figures, by name
}

// ReadStore is a read-only view of one version of a store. Not safe for
// concurrent use. Slices it returns are owned by the store and must not be
// modified.
type ReadStore interface {
	// ID returns the store's identity.
	ID() StoreID
	// Version returns the version this store reads (for a writable store,
	// the version it was opened at; Commit creates Version()+1).
	Version() int64
	// Get returns the value of key and whether it is present.
	Get(key []byte) (value []byte, found bool, err error)
	// Range yields the keys in [start, end) in ascending byte order; a nil
	// start or end is unbounded. The store must not change during the loop.
	Range(start, end []byte) iter.Seq2[KV, error]
	// PrefixScan yields the keys that start with prefix, in ascending order.
	PrefixScan(prefix []byte) iter.Seq2[KV, error]
	// Metrics returns the store's figures.
	Metrics() Metrics
	// Abort releases the store. For a writable store it discards the
	// uncommitted writes. Calling Abort after Commit or Abort is a no-op.
	Abort()
}

// Store is a writable store at one version. It reads its own writes; no
// other reader sees them before Commit returns. If the context given to
// GetStore ends (the task that owns the store ended) before Commit, the
// store is aborted.
type Store interface {
	ReadStore
	// Put sets key to value. The store copies both.
	Put(key, value []byte) error
	// Delete removes key. Deleting a missing key is not an error.
	Delete(key []byte) error
	// Commit makes the writes durable as version Version()+1 and returns
	// that version. After Commit (successful or not) the store is closed.
	Commit(ctx context.Context) (int64, error)
}

// Provider hands out the stores of one StoreID. A Provider is both the
// plug-in interface that backends implement and what Open returns.
type Provider interface {
	// Init prepares the provider for the store id whose objects live under
	// dir in s. It is called once, by Open, before any other method.
	Init(ctx context.Context, s storage.Storage, dir string, id StoreID, schema Schema, opts Options) error
	// GetStore returns a writable store at version (0 is the empty state).
	// Only one writable store per provider may be open at a time. Opening
	// below the latest version is allowed (replay of a lost batch); its
	// Commit succeeds only if it writes exactly what is already there.
	GetStore(ctx context.Context, version int64) (Store, error)
	// GetReadStore returns a read-only store at any retained version.
	GetReadStore(ctx context.Context, version int64) (ReadStore, error)
	// LatestVersion returns the newest committed version (0 when none).
	LatestVersion(ctx context.Context) (int64, error)
	// OldestVersion returns the oldest version that can still be loaded.
	// It fails with ErrVersionUnavailable when the files cannot rebuild any
	// version (a damaged location).
	OldestVersion(ctx context.Context) (int64, error)
	// Maintain writes a snapshot if enough deltas accumulated and deletes
	// files that no retained version needs.
	Maintain(ctx context.Context) error
	// Close stops maintenance and aborts an open writable store.
	Close() error
}

// VersionError reports a version that cannot be loaded.
type VersionError struct {
	Store     string // store dir
	Requested int64
	Oldest    int64 // oldest loadable version, -1 when none is
	Latest    int64 // newest committed version
	CleanedUp bool  // the version existed but its files were deleted by maintenance
	Retain    int   // the retention setting, when CleanedUp
}

func (e *VersionError) Error() string {
	if e.Oldest < 0 {
		return fmt.Sprintf("state: version %d of %s cannot be loaded: no version can be rebuilt from its files (latest committed: %d); the files it needs are missing: restore them from a backup or start a new query with a new checkpoint location",
			e.Requested, e.Store, e.Latest)
	}
	if e.CleanedUp {
		return fmt.Sprintf("state: version %d of %s was cleaned up by maintenance (it keeps the last %d versions); the oldest version available is %d, the latest %d",
			e.Requested, e.Store, e.Retain, e.Oldest, e.Latest)
	}
	return fmt.Sprintf("state: version %d of %s does not exist; available versions are %d to %d", e.Requested, e.Store, e.Oldest, e.Latest)
}

// Is reports whether target is ErrVersionUnavailable.
func (e *VersionError) Is(target error) bool { return target == ErrVersionUnavailable }

// ConfigError reports a pinned setting that changed between runs.
type ConfigError struct {
	Store   string // store dir
	Setting string // "provider", "key schema" or "value schema"
	Old     string // recorded at first use
	New     string // asked for now
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("state: %s of %s was %q when the store was created, and this run asks for %q; "+
		"changing it for existing state is not supported: run with the old %s, or start a new query with a new checkpoint location",
		e.Setting, e.Store, e.Old, e.New, e.Setting)
}

// Is reports whether target is ErrConfigChanged.
func (e *ConfigError) Is(target error) bool { return target == ErrConfigChanged }
