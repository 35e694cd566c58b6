package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"time"

	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

// This file keeps the file source's log of taken files: one metalog entry
// per file (sources/0/files/<s>), compacted every CompactEvery files into
// one entry of a second log (sources/0/files-compact/<k>) that holds the
// entries [First, End) of the first, after which the covered file entries
// are purged. A restart reads the latest compaction and the file entries
// after it: two Lists and at most CompactEvery+1 Gets, whatever the
// number of files taken.

// Names, under the source's prefix, of its logs.
const (
	// FileSourceLog is the log of the files the source has taken.
	FileSourceLog = "files"
	// FileSourceCompactLog is the log of compactions of FileSourceLog.
	FileSourceCompactLog = "files-compact"
	// FileSourceDecisionLog is the log of operator decisions (SkipFile,
	// RereadFile).
	FileSourceDecisionLog = "decisions"
)

// compactionFormat is the format of a compaction's payload.
const compactionFormat = 1

// fileEntry is the log entry of a taken file.
type fileEntry struct {
	Name       string    `json:"name"`
	Size       int64     `json:"size"`
	ModTime    time.Time `json:"modtime"`
	Partitions int       `json:"partitions"`
	// CRC32C of the file's bytes when it was taken; absent in entries
	// written before cairn recorded it (their files are checked by size).
	CRC32C *uint32 `json:"crc32c,omitempty"`
	// RereadOf is the sequence number of the earlier take of this file,
	// when RereadFile took it again.
	RereadOf *int64 `json:"reread_of,omitempty"`
}

func (e fileEntry) valid() bool { return e.Name != "" && e.Partitions > 0 && e.Size >= 0 }

// fileCompaction is the payload of a compaction entry. It names itself and
// the entries it covers, so that an object copied over another is refused.
type fileCompaction struct {
	Format int `json:"format"`
	// Object is the name of the object that holds this payload.
	Object string `json:"object"`
	// Log is the prefix of the file log whose entries it holds.
	Log string `json:"log"`
	// First and End: it holds entries [First, End) of Log, in order.
	First   int64       `json:"first"`
	End     int64       `json:"end"`
	Entries []fileEntry `json:"entries"`
}

// fileLog is the loaded log of taken files.
type fileLog struct {
	files       *metalog.Log
	compactions *metalog.Log
	entries     []fileEntry // entry s is entries[s-first]
	first       int64
	compactedTo int64 // entries below are in the latest compaction
	// pending is a compaction whose Add failed without saying whether it
	// landed: the next attempt writes exactly it again (metalog takes an
	// identical retry for the landed first attempt).
	pending *fileCompaction
}

// end returns the number of files taken: the next sequence number.
func (l *fileLog) end() int64 { return l.first + int64(len(l.entries)) }

// loadFileLog opens and reads the file log under prefix.
func loadFileLog(ctx context.Context, st storage.Storage, prefix string) (*fileLog, error) {
	files, err := metalog.Open(ctx, st, path.Join(prefix, FileSourceLog))
	if err != nil {
		return nil, err
	}
	compactions, err := metalog.Open(ctx, st, path.Join(prefix, FileSourceCompactLog))
	if err != nil {
		return nil, err
	}
	l := &fileLog{files: files, compactions: compactions}
	if k, ok := compactions.Latest(); ok {
		data, err := compactions.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		c, err := decodeCompaction(compactions.Object(k), files.Prefix(), data)
		if err != nil {
			return nil, err
		}
		l.first, l.entries, l.compactedTo = c.First, c.Entries, c.End
	}
	latest, ok := files.Latest()
	if !ok {
		return l, nil
	}
	earliest, _ := files.Earliest()
	if earliest > l.compactedTo {
		reason := fmt.Sprintf("missing: the file source's log starts at entry %d, but no compaction covers the entries before it", earliest)
		if l.compactedTo > 0 {
			reason = fmt.Sprintf("missing: the file source's log starts at entry %d, but its latest compaction (%s) covers only entries below %d",
				earliest, compactions.Object(mustLatest(compactions)), l.compactedTo)
		}
		return nil, &storage.CorruptError{Object: files.Object(l.compactedTo), Offset: -1, Reason: reason}
	}
	for s := max(earliest, l.compactedTo); s <= latest; s++ {
		data, err := files.Get(ctx, s)
		if err != nil {
			return nil, err
		}
		e, err := decodeFileEntry(files.Object(s), data)
		if err != nil {
			return nil, err
		}
		l.entries = append(l.entries, e)
	}
	return l, nil
}

func mustLatest(l *metalog.Log) int64 {
	id, _ := l.Latest()
	return id
}

func decodeFileEntry(object string, data []byte) (fileEntry, error) {
	var e fileEntry
	if err := json.Unmarshal(data, &e); err != nil || !e.valid() {
		return e, &storage.CorruptError{Object: object, Offset: -1, Reason: "not a valid file source entry"}
	}
	return e, nil
}

func decodeCompaction(object, logPrefix string, data []byte) (*fileCompaction, error) {
	var c fileCompaction
	bad := func(reason string) error { return &storage.CorruptError{Object: object, Offset: -1, Reason: reason} }
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, bad("not a file source log compaction: " + err.Error())
	}
	switch {
	case c.Format < 1 || c.Format > compactionFormat:
		return nil, fmt.Errorf("%w: %s is a file source log compaction in format %d; this build of cairn reads formats 1 to %d: upgrade cairn to read it",
			storage.ErrFormatVersion, object, c.Format, compactionFormat)
	case c.Object != object:
		return nil, bad(fmt.Sprintf("it says it is %s: an object copied over another; restore %s", c.Object, object))
	case c.Log != logPrefix:
		return nil, bad(fmt.Sprintf("it holds entries of log %s, not %s", c.Log, logPrefix))
	case c.First < 0 || c.End < c.First || int64(len(c.Entries)) != c.End-c.First:
		return nil, bad(fmt.Sprintf("it says it holds entries [%d, %d) but holds %d", c.First, c.End, len(c.Entries)))
	}
	for i, e := range c.Entries {
		if !e.valid() {
			return nil, bad(fmt.Sprintf("entry %d is not a valid file source entry", c.First+int64(i)))
		}
	}
	return &c, nil
}

// add logs entry as the next file.
func (l *fileLog) add(ctx context.Context, e fileEntry) (int64, error) {
	data, _ := json.Marshal(e)
	s := l.end()
	if err := l.files.Add(ctx, s, data); err != nil {
		return s, err
	}
	l.entries = append(l.entries, e)
	return s, nil
}

// compact writes a compaction of every entry when at least every entries
// are not covered by the latest one, then purges what it covers: the file
// entries (metalog keeps the latest) and the older compactions. A failure
// leaves the log readable: a compaction written and not yet purged below
// only means more objects than needed.
func (l *fileLog) compact(ctx context.Context, every int) error {
	c := l.pending
	if c == nil {
		if every <= 0 || l.end()-l.compactedTo < int64(every) {
			return nil
		}
		k := int64(0)
		if latest, ok := l.compactions.Latest(); ok {
			k = latest + 1
		}
		c = &fileCompaction{Format: compactionFormat, Object: l.compactions.Object(k), Log: l.files.Prefix(),
			First: l.first, End: l.end(), Entries: l.entries[:len(l.entries):len(l.entries)]}
	}
	k := int64(0)
	if latest, ok := l.compactions.Latest(); ok {
		k = latest + 1
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := l.compactions.Add(ctx, k, data); err != nil {
		l.pending = c
		return fmt.Errorf("stream: compact the file source's log into %s: %w", c.Object, err)
	}
	l.pending = nil
	l.compactedTo = c.End
	if err := l.files.Purge(ctx, c.End); err != nil {
		return fmt.Errorf("stream: purge the file source's log below entry %d after compacting it into %s: %w", c.End, c.Object, err)
	}
	return l.compactions.Purge(ctx, k)
}
