package dataset

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"

	"github.com/cairn-data/cairn/storage"
)

// Options configure a Session. The zero value gives the defaults.
type Options struct {
	// Parallelism is how many partitions run at once. Default: every core
	// (runtime.GOMAXPROCS). Spark: spark.default.parallelism / executor cores.
	Parallelism int
	// Partitions is the number of partitions of sources and shuffles when a
	// call does not say. Default: Parallelism. Spark:
	// spark.sql.shuffle.partitions.
	Partitions int
	// CheckpointLocation is the storage URL that reliable checkpoints are
	// written under (any storage.Open URL). Required by Checkpoint. Spark:
	// SparkContext.setCheckpointDir.
	CheckpointLocation string
	// CheckpointStorage, if set, is used instead of opening
	// CheckpointLocation: for storage you opened yourself (or a
	// fault-injecting one in tests). The session does not close it.
	CheckpointStorage storage.Storage
	// KeepCheckpoints keeps reliable checkpoints when the session closes.
	// Default false: Close deletes them. Spark:
	// spark.cleaner.referenceTracking.cleanCheckpoints (Spark keeps them by
	// default; cairn does not leave files behind unless asked).
	KeepCheckpoints bool
	// MemoryLimit is the number of bytes that LocalCheckpoint and Cache keep
	// in memory before they spill partitions to SpillDir. Default 1 GiB.
	// Spark: spark.memory.storageFraction, roughly.
	MemoryLimit int64
	// SpillDir is the local directory for spilled partitions. Default: the
	// system temporary directory.
	SpillDir string
	// Logger receives progress events. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Parallelism <= 0 {
		o.Parallelism = runtime.GOMAXPROCS(0)
	}
	if o.Partitions <= 0 {
		o.Partitions = o.Parallelism
	}
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = 1 << 30
	}
	if o.SpillDir == "" {
		o.SpillDir = os.TempDir()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports an option out of range, naming it.
func (o Options) Validate() error {
	switch {
	case o.Parallelism < 0:
		return fmt.Errorf("dataset: Options.Parallelism is %d; it must be positive, or 0 for every core", o.Parallelism)
	case o.Partitions < 0:
		return fmt.Errorf("dataset: Options.Partitions is %d; it must be positive, or 0 for Parallelism", o.Partitions)
	case o.MemoryLimit < 0:
		return fmt.Errorf("dataset: Options.MemoryLimit is %d; it must be positive, or 0 for 1 GiB", o.MemoryLimit)
	}
	return nil
}

// Session holds the options and resources of a batch job: its checkpoint
// storage, its local checkpoints and spill files. Safe for concurrent use.
type Session struct {
	opts Options
	id   string // random, names this session's checkpoint directory

	mu          sync.Mutex
	store       storage.Storage // opened on first use
	closed      bool
	cleanups    []cleanup // run by Close, in reverse order
	checkpoints int       // sequence number of reliable checkpoints
	memUsed     int64     // bytes kept by Persist and LocalCheckpoint
}

// reserve takes n bytes of the memory limit, if they are free.
func (s *Session) reserve(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.memUsed+n > s.opts.MemoryLimit {
		return false
	}
	s.memUsed += n
	return true
}

// release gives back n bytes of the memory limit.
func (s *Session) release(n int64) {
	s.mu.Lock()
	s.memUsed -= n
	s.mu.Unlock()
}

type cleanup struct {
	what string
	fn   func(ctx context.Context) error
	keep bool // a reliable checkpoint kept by KeepCheckpoints or Keep
}

// ErrSessionClosed is returned by actions of a closed session.
var ErrSessionClosed = errors.New("dataset: session closed")

// NewSession returns a session with the given options.
func NewSession(opts Options) (*Session, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return &Session{opts: opts.withDefaults(), id: hex.EncodeToString(b[:])}, nil
}

// Options returns the session's options with defaults filled in.
func (s *Session) Options() Options { return s.opts }

// checkpointStorage opens the checkpoint location on first use.
func (s *Session) checkpointStorage(ctx context.Context) (storage.Storage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrSessionClosed
	}
	if s.store != nil {
		return s.store, nil
	}
	if s.opts.CheckpointStorage != nil {
		s.store = s.opts.CheckpointStorage
		return s.store, nil
	}
	if s.opts.CheckpointLocation == "" {
		return nil, errors.New("dataset: Checkpoint needs a checkpoint location: set Options.CheckpointLocation (a path, file:///path or mem://name), or use LocalCheckpoint")
	}
	st, err := storage.Open(ctx, s.opts.CheckpointLocation)
	if err != nil {
		return nil, fmt.Errorf("dataset: open checkpoint location: %w", err)
	}
	s.store = st
	return st, nil
}

// onClose registers work for Close.
func (s *Session) onClose(c cleanup) {
	s.mu.Lock()
	s.cleanups = append(s.cleanups, c)
	s.mu.Unlock()
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close deletes the session's reliable checkpoints (unless
// KeepCheckpoints is set or a checkpoint was kept with Keep) and its local
// checkpoints and spill files. It returns the first error and goes on
// after one.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cs := s.cleanups
	s.cleanups = nil
	st := s.store
	s.mu.Unlock()
	var first error
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].keep {
			continue
		}
		if err := cs[i].fn(ctx); err != nil && first == nil {
			first = fmt.Errorf("dataset: close session: clean up %s: %w", cs[i].what, err)
		}
	}
	if st != nil && s.opts.CheckpointStorage == nil {
		st.Close()
	}
	return first
}
