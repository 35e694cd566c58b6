package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

// This file holds what an operator does to a file source of a stopped
// query: skip a file it has taken, or read one again (cmd/cairn's 'cairn
// source skip' and 'cairn source reread').

// Actions of a FileDecision.
const (
	// ActionSkip: the file gives no records.
	ActionSkip = "skip"
	// ActionReread: the file is read as it was when the decision was made.
	ActionReread = "reread"
)

// fileSourcePrefix is where a query's (one) source keeps its objects.
const fileSourcePrefix = "sources/0"

// FileDecision is an operator's decision about a file a FileSource has
// taken, recorded in the checkpoint location as an entry of the log
// <prefix>/decisions (create-if-absent, never changed) and followed by
// every later Read of the file's sequence number.
//
// Which batch it applies to: a decision never changes what a committed
// batch read. A file read by a committed batch cannot be skipped (its
// records are in the output already); re-reading it takes it again under a
// new sequence number (RetakenAs), read by the next new batch. A file of
// the pending batch (written ahead, not committed: the batch that keeps
// failing) or of no batch yet is skipped, or read as it is now, by the
// batch that reads it (Batch), on every replay of that batch.
type FileDecision struct {
	// Object is the name of the object that holds the decision; the
	// decision records it, and a read checks it.
	Object string `json:"object"`
	// Action is ActionSkip or ActionReread.
	Action string `json:"action"`
	// File is the file's name in the input directory.
	File string `json:"file"`
	// Seq is the sequence number of the take of the file that the decision
	// applies to.
	Seq int64 `json:"seq"`
	// Batch is the batch the decision changes: the one that reads Seq (or,
	// with RetakenAs, the one that reads the new take). Pending says that
	// it is the pending batch; otherwise it is the next new batch, or, for
	// a re-read of a committed file, the committed batch that read Seq.
	Batch   int64 `json:"batch"`
	Pending bool  `json:"pending,omitempty"`
	// Committed says that Seq was read by the committed batch Batch.
	Committed bool `json:"committed,omitempty"`
	// Size, ModTime and CRC32C describe the file as a re-read found it;
	// the batch reads it only if it still is so.
	Size    int64     `json:"size,omitempty"`
	ModTime time.Time `json:"modtime,omitempty"`
	CRC32C  *uint32   `json:"crc32c,omitempty"`
	// RetakenAs is the new sequence number of a file re-read after a
	// committed batch read it.
	RetakenAs *int64 `json:"retaken_as,omitempty"`
	// Decided is when the decision was recorded.
	Decided time.Time `json:"decided"`
	// Existing says that SkipFile found the same decision already recorded
	// and recorded nothing. Not stored.
	Existing bool `json:"-"`
}

// String says what the decision does, in one sentence for an operator.
func (d FileDecision) String() string {
	batch := fmt.Sprintf("the next batch (%d)", d.Batch)
	if d.Pending {
		batch = fmt.Sprintf("pending batch %d, on its next attempt,", d.Batch)
	}
	switch {
	case d.Action == ActionSkip && d.Existing:
		return fmt.Sprintf("%s (file number %d) is already skipped (%s): %s will not read it", d.File, d.Seq, d.Object, batch)
	case d.Action == ActionSkip:
		return fmt.Sprintf("skip %s (file number %d), recorded in %s: %s will not read it", d.File, d.Seq, d.Object, batch)
	case d.RetakenAs != nil:
		return fmt.Sprintf("re-read %s: committed batch %d read it as file number %d; it is taken again as file number %d (%d bytes), which the next new batch reads; recorded in %s",
			d.File, d.Batch, d.Seq, *d.RetakenAs, d.Size, d.Object)
	default:
		return fmt.Sprintf("re-read %s (file number %d) as it is now (%d bytes), recorded in %s: %s will read it",
			d.File, d.Seq, d.Size, d.Object, batch)
	}
}

// SkipFile records, in the checkpoint location st of a stopped query whose
// source is a FileSource, that the source skips file (a name in its input
// directory, or a path to it): the batch that reads it, which must not be
// committed yet, gets no records from it. Use it for a file that fails
// every attempt of a batch, or that was deleted after it was taken. It
// takes the location's writer lease, so it refuses while the query runs.
// Skipping a file already skipped records nothing (Existing).
func SkipFile(ctx context.Context, st storage.Storage, file string) (FileDecision, error) {
	return decideFile(ctx, st, file, ActionSkip)
}

// RereadFile records, in the checkpoint location st of a stopped query
// whose source is a FileSource, that the source reads file (a name in its
// input directory, or a path to it) as it is now: use it after fixing a
// file that failed, or was set aside whole in the dead-letter destination.
// If the batch that read the file is committed, the file is taken again
// under a new sequence number, read by the next new batch (records it gave
// before are read again); otherwise the batch that reads it reads the file
// as it is now. The file must exist, and must not change afterwards. It
// takes the location's writer lease, so it refuses while the query runs.
func RereadFile(ctx context.Context, st storage.Storage, file string) (FileDecision, error) {
	return decideFile(ctx, st, file, ActionReread)
}

// FileSourceDir returns the input directory and format of the file source
// of the query in st, from its pinned settings.
func FileSourceDir(ctx context.Context, st storage.Storage) (dir, format string, err error) {
	meta, err := ReadMetadata(ctx, st)
	if err != nil {
		return "", "", err
	}
	rest, ok := strings.CutPrefix(meta.Pinned.Source, "files:")
	format, glob, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || !filepath.IsAbs(glob) {
		return "", "", fmt.Errorf("stream: the query in %s reads %s, not a file source", st.Location(), meta.Pinned.Source)
	}
	return filepath.Dir(glob), format, nil
}

func decideFile(ctx context.Context, st storage.Storage, file, action string) (FileDecision, error) {
	dir, _, err := FileSourceDir(ctx, st)
	if err != nil {
		return FileDecision{}, err
	}
	name := file
	if strings.ContainsRune(file, filepath.Separator) || strings.ContainsRune(file, '/') {
		abs, err := filepath.Abs(file)
		if err != nil {
			return FileDecision{}, err
		}
		if filepath.Dir(abs) != dir {
			return FileDecision{}, fmt.Errorf("stream: %s is not in %s, the input directory of the query in %s", file, dir, st.Location())
		}
		name = filepath.Base(abs)
	}
	lease, err := metalog.AcquireLease(ctx, st, metalog.LeaseOptions{Owner: "cairn source " + action})
	if err != nil {
		return FileDecision{}, fmt.Errorf("stream: %s %s: %w", action, name, err)
	}
	defer lease.Close(context.WithoutCancel(ctx))

	flog, err := loadFileLog(ctx, st, fileSourcePrefix)
	if err != nil {
		return FileDecision{}, err
	}
	seq := int64(-1)
	for i := len(flog.entries) - 1; i >= 0; i-- {
		if flog.entries[i].Name == name {
			seq = flog.first + int64(i)
			break
		}
	}
	if seq < 0 {
		return FileDecision{}, fmt.Errorf("stream: the file source of the query in %s has not taken a file named %s (of %d files taken); a file not taken yet is not read if it is moved out of %s or renamed to start with \"_\"",
			st.Location(), name, flog.end(), dir)
	}
	entry := flog.entries[seq-flog.first]
	where, err := batchOfFile(ctx, st, seq, entry.Partitions)
	if err != nil {
		return FileDecision{}, err
	}
	decisions, err := metalog.Open(ctx, st, path.Join(fileSourcePrefix, FileSourceDecisionLog))
	if err != nil {
		return FileDecision{}, err
	}
	last, err := readDecisions(ctx, st, fileSourcePrefix)
	if err != nil {
		return FileDecision{}, err
	}
	k := int64(0)
	if id, ok := decisions.Latest(); ok {
		k = id + 1
	}
	d := FileDecision{Object: decisions.Object(k), Action: action, File: name, Seq: seq, Batch: where.batch,
		Pending: where.pending, Decided: time.Now().UTC()}
	switch action {
	case ActionSkip:
		if where.committed {
			return FileDecision{}, fmt.Errorf("stream: %s (file number %d) was read by batch %d, which is committed: its records are in the output, and skipping it now would change nothing. To read it again after a fix, use reread",
				name, seq, where.batch)
		}
		if prev, ok := last[seq]; ok && prev.Action == ActionSkip {
			prev.Existing = true
			prev.Batch, prev.Pending = where.batch, where.pending
			return prev, nil
		}
	case ActionReread:
		now, ok, err := takeFile(filepath.Join(dir, name), entry.Partitions)
		if err != nil {
			return FileDecision{}, err
		}
		if !ok {
			return FileDecision{}, fmt.Errorf("stream: cannot re-read %s: it is not a regular file in %s; put the fixed file back first, or skip it", name, dir)
		}
		d.Size, d.ModTime, d.CRC32C = now.Size, now.ModTime, now.CRC32C
		if where.committed {
			now.RereadOf = &seq
			s, err := flog.add(ctx, now)
			if err != nil {
				return FileDecision{}, fmt.Errorf("stream: re-read %s: log it as file number %d: %w", name, s, err)
			}
			d.RetakenAs, d.Committed = &s, true
		}
	}
	data, _ := json.Marshal(d)
	if err := decisions.Add(ctx, k, data); err != nil {
		return FileDecision{}, fmt.Errorf("stream: record the decision to %s %s: %w", action, name, err)
	}
	return d, nil
}

// fileBatch says which batch reads a file.
type fileBatch struct {
	batch     int64
	pending   bool // batch is written ahead and not committed
	committed bool // batch is committed
}

// batchOfFile finds the batch that reads file number seq of a file source
// with the given partitions, from the query's offsets and commits logs.
func batchOfFile(ctx context.Context, st storage.Storage, seq int64, parts int) (fileBatch, error) {
	offsets, err := metalog.Open(ctx, st, OffsetsLog)
	if err != nil {
		return fileBatch{}, err
	}
	commits, err := metalog.Open(ctx, st, CommitsLog)
	if err != nil {
		return fileBatch{}, err
	}
	p, o := int(seq%int64(parts)), seq/int64(parts)
	read := func(b int64) (*OffsetsEntry, error) {
		e, err := ReadOffsetsEntry(ctx, offsets, b)
		if err == nil && len(e.End) != parts {
			err = fmt.Errorf("stream: %s has %d source partitions; the file source has %d", offsets.Object(b), len(e.End), parts)
		}
		return e, err
	}
	lastCommit, hasCommit := commits.Latest()
	lastOff, hasOff := offsets.Latest()
	if hasCommit {
		e, err := read(lastCommit)
		if err != nil {
			return fileBatch{}, err
		}
		if o < e.End[p] {
			// Read by a committed batch: which one, as far as the log
			// still tells.
			b := lastCommit
			earliest, _ := offsets.Earliest()
			for b > earliest && o < e.Start[p] {
				b--
				if e, err = read(b); err != nil {
					return fileBatch{}, err
				}
			}
			return fileBatch{batch: b, committed: true}, nil
		}
	}
	if hasOff && (!hasCommit || lastOff > lastCommit) {
		e, err := read(lastOff)
		if err != nil {
			return fileBatch{}, err
		}
		if o < e.End[p] {
			return fileBatch{batch: lastOff, pending: true}, nil
		}
	}
	next := int64(0)
	if hasOff {
		next = lastOff + 1
	}
	return fileBatch{batch: next}, nil
}

// readDecisions reads the decision log under prefix: the last decision for
// each sequence number.
func readDecisions(ctx context.Context, st storage.Storage, prefix string) (map[int64]FileDecision, error) {
	log, err := metalog.Open(ctx, st, path.Join(prefix, FileSourceDecisionLog))
	if err != nil {
		return nil, err
	}
	out := map[int64]FileDecision{}
	latest, ok := log.Latest()
	if !ok {
		return out, nil
	}
	earliest, _ := log.Earliest()
	if earliest != 0 {
		return nil, &storage.CorruptError{Object: log.Object(0), Offset: -1,
			Reason: fmt.Sprintf("missing: the file source's decision log starts at entry %d; its entries are never purged", earliest)}
	}
	for k := earliest; k <= latest; k++ {
		data, err := log.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		var d FileDecision
		object := log.Object(k)
		if err := json.Unmarshal(data, &d); err != nil || d.Seq < 0 || (d.Action != ActionSkip && d.Action != ActionReread) {
			return nil, &storage.CorruptError{Object: object, Offset: -1, Reason: "not a valid file source decision"}
		}
		if d.Object != object {
			return nil, &storage.CorruptError{Object: object, Offset: -1,
				Reason: fmt.Sprintf("it says it is %s: an object copied over another; restore %s", d.Object, object)}
		}
		if d.Action == ActionReread && d.RetakenAs != nil {
			continue // the new take is a file of its own; Seq was committed
		}
		out[d.Seq] = d
	}
	return out, nil
}
