package metalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

// entryVersion is the format version of log entry objects. Readers accept
// versions 1 to entryVersion. Version 1: the payload alone. Version 2: the
// same payload, and the frame records the entry's identity, its object
// name ("offsets/25"), so that an entry copied over another is refused.
const entryVersion = 2

// Sentinel errors, matched with errors.Is.
var (
	// ErrConcurrentWriter is returned by Add when the entry it creates
	// already exists: another writer (another process, or another Log in
	// this one) is using the same checkpoint location. The error also
	// matches storage.ErrExists.
	ErrConcurrentWriter = errors.New("metalog: concurrent writer")
	// ErrOutOfOrder is returned by Add for an ID that is not the one after
	// the latest entry.
	ErrOutOfOrder = errors.New("metalog: entry ID out of order")
	// ErrEmpty is returned by LatestEntry for a log with no entries.
	ErrEmpty = errors.New("metalog: log is empty")
)

// Log is a versioned log of numbered entries stored under a prefix: entry
// id is the object prefix/id. IDs are contiguous from Earliest to Latest.
//
// A Log keeps Earliest and Latest in memory, set by Open and moved only by
// successful calls to Add and Purge of this Log; it does not see entries
// another writer adds (such a writer is refused, see Add).
//
// Safe for concurrent use: Add and Purge are serialized; Get, Latest and
// Earliest do not wait for them.
type Log struct {
	s      storage.Storage
	prefix string

	wmu sync.Mutex // serializes Add and Purge, held across their storage I/O
	// pending is the entry of an Add whose Put failed with an error that
	// does not tell whether the object landed (a timeout, say). A retry
	// of that same Add that finds the object already there, holding these
	// very bytes, is the landed first attempt, not a second writer.
	// Guarded by wmu.
	pending *pendingAdd

	mu       sync.Mutex // guards the fields below
	nonEmpty bool
	earliest int64
	latest   int64
}

type pendingAdd struct {
	id    int64
	entry []byte
}

// Open opens the log stored under prefix in s (for example "offsets" for
// the objects "offsets/0", "offsets/1", ...). It lists the objects under
// prefix+"/" and checks that every one is named by a decimal ID, in the
// canonical form (no sign, no leading zero), and that the IDs are
// contiguous; a gap is a *GapError. An empty or missing log opens empty.
//
// Open reads no entry: a damaged entry is reported by the Get that reads it.
func Open(ctx context.Context, s storage.Storage, prefix string) (*Log, error) {
	prefix = strings.TrimSuffix(prefix, "/")
	if err := storage.ValidateName(prefix + "/0"); err != nil {
		return nil, fmt.Errorf("metalog: open log %q: bad prefix: %w", prefix, err)
	}
	if prefix == LeasePrefix || strings.HasPrefix(LeasePrefix+"/", prefix+"/") {
		return nil, fmt.Errorf("metalog: open log %q: the prefix %q is reserved for the writer lease", prefix, LeasePrefix)
	}
	l := &Log{s: s, prefix: prefix}
	objs, err := s.List(ctx, prefix+"/")
	if err != nil {
		return nil, fmt.Errorf("metalog: open log %s in %s: %w", prefix, s.Location(), err)
	}
	ids := make([]int64, 0, len(objs))
	for _, o := range objs {
		id, ok := parseID(strings.TrimPrefix(o.Name, prefix+"/"))
		if !ok {
			return nil, fmt.Errorf("metalog: open log %s in %s: object %s is not a log entry: names under %s/ must be decimal entry IDs such as %s/7; move it elsewhere or delete it",
				prefix, s.Location(), o.Name, prefix, prefix)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return l, nil
	}
	// List sorts by name, not by number: "10" < "9".
	slices.Sort(ids)
	if err := checkContiguous(s.Location(), prefix, ids); err != nil {
		return nil, err
	}
	l.nonEmpty, l.earliest, l.latest = true, ids[0], ids[len(ids)-1]
	return l, nil
}

// Prefix returns the prefix the log is stored under, without a trailing
// slash.
func (l *Log) Prefix() string { return l.prefix }

// Object returns the name of the object that holds entry id.
func (l *Log) Object(id int64) string { return l.prefix + "/" + strconv.FormatInt(id, 10) }

// Latest returns the ID of the newest entry, and false if the log is empty.
func (l *Log) Latest() (id int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latest, l.nonEmpty
}

// Earliest returns the ID of the oldest entry still stored (entries before
// it were purged), and false if the log is empty.
func (l *Log) Earliest() (id int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.earliest, l.nonEmpty
}

// Add stores entry as entry id, creating the object only if it does not
// exist. id must be Latest()+1, or any ID >= 0 when the log is empty; any
// other ID is refused with an error matching ErrOutOfOrder.
//
// If the object already exists, another writer is using the checkpoint
// location: Add returns an error matching ErrConcurrentWriter (and
// storage.ErrExists) and does not touch the object. The one exception is a
// retry after an Add of the same id on this Log failed without saying
// whether the object was stored: if the object holds exactly entry, it was
// that first attempt, and Add succeeds.
//
// The entry is durable when Add returns nil; only then does Latest move.
// Add does not keep entry.
func (l *Log) Add(ctx context.Context, id int64, entry []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	latest, nonEmpty := l.Latest()
	switch {
	case id < 0:
		return fmt.Errorf("%w: add entry %d to %s: IDs are >= 0", ErrOutOfOrder, id, l.prefix)
	case nonEmpty && latest == math.MaxInt64:
		return fmt.Errorf("%w: add entry %d to %s: the log is full at ID %d", ErrOutOfOrder, id, l.prefix, latest)
	case nonEmpty && id != latest+1:
		return fmt.Errorf("%w: add entry %d to %s: expected ID %d, the one after the latest entry %d", ErrOutOfOrder, id, l.prefix, latest+1, latest)
	}
	name := l.Object(id)
	err := frame.PutBytes(ctx, l.s, name, frame.KindLogEntry, entryVersion, entry, storage.PutOptions{IfAbsent: true}, frame.Identity(name))
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrExists) && l.pending != nil && l.pending.id == id:
		// Did an earlier attempt of ours land after all?
		got, _, gerr := frame.GetBytes(ctx, l.s, name, frame.KindLogEntry, entryVersion, frame.Identity(name))
		if gerr != nil {
			return fmt.Errorf("metalog: add %s in %s: it exists after an earlier failed attempt; reading it back: %w", name, l.s.Location(), gerr)
		}
		if !bytes.Equal(got, entry) || !bytes.Equal(got, l.pending.entry) {
			return l.concurrentWriter(name, err)
		}
	case errors.Is(err, storage.ErrExists):
		return l.concurrentWriter(name, err)
	default:
		l.pending = &pendingAdd{id: id, entry: bytes.Clone(entry)}
		return fmt.Errorf("metalog: add %s in %s: %w", name, l.s.Location(), err)
	}
	l.pending = nil
	l.mu.Lock()
	if !l.nonEmpty {
		l.nonEmpty, l.earliest = true, id
	}
	l.latest = id
	l.mu.Unlock()
	return nil
}

func (l *Log) concurrentWriter(name string, err error) error {
	read := "this writer found the log empty"
	if latest, ok := l.Latest(); ok {
		read = fmt.Sprintf("this writer's latest entry is %d", latest)
	}
	return fmt.Errorf("%w: another writer is using checkpoint location %s: it created %s first (%s). "+
		"Two processes must not run one query on one checkpoint location: stop the other process, or give this one a new checkpoint location (%w)",
		ErrConcurrentWriter, l.s.Location(), name, read, err)
}

// Get returns the payload of entry id. A missing entry gives an error
// matching storage.ErrNotFound; a damaged one, or one that records the
// identity of another entry (copied over this one), an error wrapping the
// *storage.CorruptError that names the object. The caller owns the
// returned slice.
func (l *Log) Get(ctx context.Context, id int64) ([]byte, error) {
	if id < 0 {
		return nil, fmt.Errorf("metalog: get entry %d of %s: %w: IDs are >= 0", id, l.prefix, storage.ErrNotFound)
	}
	name := l.Object(id)
	data, _, err := frame.GetBytes(ctx, l.s, name, frame.KindLogEntry, entryVersion, frame.Identity(name))
	if err != nil {
		return nil, fmt.Errorf("metalog: get %s: %w", name, err)
	}
	return data, nil
}

// LatestEntry returns the newest entry and its ID, or an error matching
// ErrEmpty if the log has none.
func (l *Log) LatestEntry(ctx context.Context) (int64, []byte, error) {
	id, ok := l.Latest()
	if !ok {
		return 0, nil, fmt.Errorf("metalog: latest entry of %s in %s: %w", l.prefix, l.s.Location(), ErrEmpty)
	}
	data, err := l.Get(ctx, id)
	return id, data, err
}

// Purge deletes the entries with ID < before, oldest first, so that a crash
// or an error part-way leaves a contiguous log (Earliest moves with each
// deletion). It never deletes the latest entry: before is clamped to
// Latest, since the latest entry is what a restart resumes from. Purging
// an empty log, or below Earliest, does nothing.
//
// Spark purges its offsets and commits logs the same way, keeping
// spark.sql.streaming.minBatchesToRetain (default 100) batches.
func (l *Log) Purge(ctx context.Context, before int64) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	for {
		l.mu.Lock()
		earliest, latest, nonEmpty := l.earliest, l.latest, l.nonEmpty
		l.mu.Unlock()
		if !nonEmpty || earliest >= min(before, latest) {
			return nil
		}
		name := l.Object(earliest)
		if err := l.s.Delete(ctx, name); err != nil {
			return fmt.Errorf("metalog: purge %s entries before %d: delete %s: %w", l.prefix, before, name, err)
		}
		l.mu.Lock()
		l.earliest = earliest + 1
		l.mu.Unlock()
	}
}

// parseID parses a canonical non-negative decimal: digits only, no leading
// zero unless the number is 0, within int64. "05" and "+5" are refused so
// that one ID has exactly one object name.
func parseID(s string) (int64, bool) {
	if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil
}
