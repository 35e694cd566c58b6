package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-data/cairn/internal/iox"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// FileSourceOptions configure a FileSource.
type FileSourceOptions struct {
	// Format of the files: "jsonl", "csv" or "parquet", decoded as
	// dataset.ReadJSONL, ReadCSV and ReadParquet decode them. Required.
	// Spark: format("json"), format("csv"), format("parquet").
	Format string
	// Pattern selects files by name (filepath.Match, on the name only, not
	// the path). Default "*.<Format>". Names that start with "." or "_"
	// are never taken, whatever the pattern: they are files being written
	// (see FileSource). Other files the pattern does not match are logged
	// once each at WARN. Spark: the path glob of readStream.load.
	Pattern string
	// Partitions is the number of partitions of the source: file number s
	// (in the order files were taken) belongs to partition s % Partitions.
	// Pinned in the checkpoint location at the first file taken. Default 4.
	Partitions int
	// MaxFilesPerBatch is how many new files one call of Available takes.
	// 0: every new file. Spark: maxFilesPerTrigger. It bounds a batch
	// except after a crash between taking files and writing the batch
	// ahead: the files taken then and the ones taken on restart make one
	// batch.
	MaxFilesPerBatch int
	// DeadLetter makes bad records (lines that do not decode), and files
	// that cannot be decoded at all (an empty CSV file, a CSV header that
	// does not fit the record type, a file that is not Parquet or is
	// truncated), go to a dead-letter object instead of failing the batch;
	// see FileSource. Default false: the first bad record or file fails the
	// batch with an error naming the file (and line). Spark: the
	// badRecordsPath option of Databricks; FAILFAST mode when false.
	DeadLetter bool
	// DeadLetterLocation, if set, is where dead-letter objects go (a
	// directory, or any storage URL), instead of the checkpoint location;
	// it implies DeadLetter. Default "": under the source's prefix in the
	// checkpoint location. Not pinned: a restart may change it.
	DeadLetterLocation string
	// Strict makes a JSON field that T does not have a bad record
	// (dataset.ReadOptions.Strict). Default false. JSONL only.
	Strict bool
	// Required names fields every record must have, besides those T tags
	// `cairn:"required"` (dataset.ReadOptions.Required): a record without
	// one is a bad record. Default none.
	Required []string
	// AllowInvalidUTF8 accepts text that is not valid UTF-8, replacing
	// each invalid byte with U+FFFD (dataset.ReadOptions.AllowInvalidUTF8).
	// Default false: such a record is a bad record naming file, line and
	// field.
	AllowInvalidUTF8 bool
	// CompactEvery is how many taken files the log of taken files gathers
	// before it is compacted into one object, so that a restart reads a
	// bounded number of objects whatever the number of files taken.
	// Default 100. Spark: spark.sql.streaming.fileSource.log.compactInterval
	// (which counts batches, not files).
	CompactEvery int
	// Logger receives the warnings of the source: files the pattern does
	// not match, files set aside whole, files skipped by an operator.
	// Default slog.Default().
	Logger *slog.Logger
}

func (o FileSourceOptions) withDefaults() FileSourceOptions {
	if o.Pattern == "" {
		o.Pattern = "*." + o.Format
	}
	if o.Partitions == 0 {
		o.Partitions = 4
	}
	if o.DeadLetterLocation != "" {
		o.DeadLetter = true
	}
	if o.CompactEvery == 0 {
		o.CompactEvery = 100
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports an option out of range, naming it.
func (o FileSourceOptions) Validate() error {
	switch o.Format {
	case "jsonl", "csv", "parquet":
	case "":
		return errors.New("stream: FileSourceOptions.Format is required: \"jsonl\", \"csv\" or \"parquet\"")
	default:
		return fmt.Errorf("stream: FileSourceOptions.Format is %q; use \"jsonl\", \"csv\" or \"parquet\"", o.Format)
	}
	if o.Pattern != "" {
		if strings.ContainsAny(o.Pattern, `/\`) {
			return fmt.Errorf("stream: FileSourceOptions.Pattern %q has a path separator; it matches file names in the directory only", o.Pattern)
		}
		if _, err := filepath.Match(o.Pattern, ""); err != nil {
			return fmt.Errorf("stream: FileSourceOptions.Pattern %q: %w", o.Pattern, err)
		}
	}
	switch {
	case o.Partitions < 0:
		return fmt.Errorf("stream: FileSourceOptions.Partitions is %d; it must be positive (default 4)", o.Partitions)
	case o.MaxFilesPerBatch < 0:
		return fmt.Errorf("stream: FileSourceOptions.MaxFilesPerBatch is %d; it must be positive, or 0 for no limit", o.MaxFilesPerBatch)
	case o.CompactEvery < 0:
		return fmt.Errorf("stream: FileSourceOptions.CompactEvery is %d; it must be positive (default 100)", o.CompactEvery)
	}
	return nil
}

// FileSource is a directory of JSONL, CSV or Parquet files as a Source:
// Spark's file stream source. Each file it takes gets the next sequence
// number s = 0, 1, 2, ... and belongs to partition s % Partitions, at
// partition offset s / Partitions; a file is one offset. The numbering is
// kept in the checkpoint location, so offsets mean the same files across
// restarts.
//
// Checkpoint objects, under the prefix the query gives Attach:
//
//	<prefix>/files/<s>                      file s: {"name", "size", "modtime", "partitions", "crc32c"} (a metalog)
//	<prefix>/files-compact/<k>              files [first, end) in one object: {"format", "object", "log", "first", "end", "entries"}
//	<prefix>/decisions/<k>                  operator decisions: skip or re-read a taken file (see SkipFile, RereadFile)
//	<prefix>/deadletter/<file name>.jsonl   bad records of a file, with DeadLetter (or DeadLetterLocation/<file name>.jsonl)
//
// Invariants:
//
//  1. A file is logged before any batch can read it: Available appends the
//     new files to the log (create-if-absent) before it returns their
//     offsets, so the files of a batch written ahead are pinned forever.
//  2. A logged file must not change: Available records its size and the
//     CRC32C of its bytes when it takes it, and Read checks both before it
//     decodes the file (and the size and modification time after), failing
//     with an error that names the file. Replay reads the same records.
//     (Entries written before cairn recorded the CRC32C are checked by size
//     only.)
//  3. Files are taken in name order, each once (by name: a file deleted
//     and written again under a taken name is not taken again, unless an
//     operator says so with RereadFile).
//  4. Restart cost is bounded: every CompactEvery files, Available writes
//     the whole log into one compaction (framed by metalog, checksummed,
//     naming itself and the entries it holds, checked on read) and purges
//     the entries it covers, so Attach reads one compaction and fewer than
//     CompactEvery+1 entries.
//  5. An operator's decision never changes what a committed batch read:
//     SkipFile and RereadFile refuse, or re-take the file as a new one,
//     when the batch that read it is committed.
//
// Files being written: cairn does not guess when a file is complete. The
// producer must make each file appear whole: write it elsewhere on the
// same file system, or in the directory under a name that starts with "."
// or "_" (never taken), then rename it to its final name, as Spark
// requires of its file source. A file taken while still growing fails its
// batch at Read (its size changed) rather than being read in part.
// (Waiting for a file's size and time to hold still between two listings
// would delay every file by a poll, and a Trigger UntilIdle run would stop
// before seeing any file.)
//
// The directory must exist: Available fails naming it. Files the pattern
// does not match are logged at WARN, once per name and process.
//
// Bad records: by default the first fails the batch with an error that
// wraps the *dataset.RecordError naming the file and line. With
// DeadLetter, every bad record of a file is written, when the file is
// read, to the object <file name>.jsonl in the dead-letter destination
// (DeadLetterLocation, or <prefix>/deadletter/ in the checkpoint
// location), one JSON object a line:
//
//	{"file":"/in/a.jsonl","line":3,"error":"...","record":"<the raw line>"}
//
// (for Parquet, a row group: "line" is 0 and "row_group" and "rows" say
// which rows were skipped; for CSV, "record" is the line where the record
// starts). A file that cannot be decoded at all (an empty CSV file, a CSV
// header that does not fit T, a truncated or garbage Parquet file) is
// set aside whole with DeadLetter: one line with "whole_file":true, the
// error, and "records_read", the records it gave before failing (usually
// 0; they stay in the batch), logged at WARN, and counted as one bad record
// in DeadLetters and one file in DeadFiles. Failures to read the file (it
// cannot be opened, an I/O error) are not bad data: they fail the batch.
// A replayed read writes the same object again. DeadLetters counts them,
// each file once.
//
// Stuck files: a file that fails every retry (without DeadLetter), or one
// that was changed or deleted after it was taken, can be skipped, or read
// again as it is now, with SkipFile and RereadFile (the CLI's 'cairn
// source skip' and 'cairn source reread'), which record the decision in
// the checkpoint location for Read to follow.
//
// Available, Read, DeadLetters and DeadFiles are safe for concurrent use;
// Attach must come first.
type FileSource[T any] struct {
	dir  string
	abs  string
	opts FileSourceOptions
	dec  *dataset.FileDecoder[T]
	log  *slog.Logger

	mu        sync.Mutex
	st        storage.Storage
	prefix    string
	flog      *fileLog
	taken     map[string]bool        // names in the log
	decisions map[int64]FileDecision // the last decision per sequence number
	dlStore   storage.Storage        // dead-letter destination
	dlPrefix  string                 // dead-letter objects: dlPrefix + name + ".jsonl"
	dlOwn     bool                   // dlStore was opened here
	warned    map[string]bool        // names warned about as unmatched
	dead      map[int64]int64        // bad records per sequence number, as last read
	deadFiles map[int64]bool         // files set aside whole, as last read
	deadMu    map[string]*sync.Mutex // serializes dead-letter writes per file name
}

var (
	_ Source[int]        = (*FileSource[int])(nil)
	_ CheckpointedSource = (*FileSource[int])(nil)
)

// NewFileSource returns a source of the files in dir. The directory is
// listed by Available, not here.
func NewFileSource[T any](dir string, opts FileSourceOptions) (*FileSource[T], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("stream: file source %s: %w", dir, err)
	}
	dec, err := dataset.NewFileDecoder[T](opts.Format, dataset.ReadOptions{Strict: opts.Strict, Required: opts.Required, AllowInvalidUTF8: opts.AllowInvalidUTF8})
	if err != nil {
		return nil, fmt.Errorf("stream: file source %s: %w", dir, err)
	}
	return &FileSource[T]{dir: dir, abs: abs, opts: opts, dec: dec, log: opts.Logger,
		warned: map[string]bool{}, dead: map[int64]int64{}, deadFiles: map[int64]bool{}, deadMu: map[string]*sync.Mutex{}}, nil
}

// Identity implements Source: "files:<format>:<absolute dir>/<pattern>".
func (f *FileSource[T]) Identity() string {
	return "files:" + f.opts.Format + ":" + filepath.Join(f.abs, f.opts.Pattern)
}

// Attach implements CheckpointedSource: it opens the log of taken files
// under prefix and reads it (the latest compaction and the entries after
// it), reads the operators' decisions, opens the dead-letter destination,
// and refuses a Partitions other than the one the log was started with.
func (f *FileSource[T]) Attach(ctx context.Context, st storage.Storage, prefix string) error {
	flog, err := loadFileLog(ctx, st, prefix)
	if err != nil {
		return err
	}
	if n := len(flog.entries); n > 0 {
		if old := flog.entries[n-1].Partitions; old != f.opts.Partitions {
			return &PinnedSettingError{Location: st.Location(), Setting: "file source partitions",
				Old: fmt.Sprint(old), New: fmt.Sprint(f.opts.Partitions)}
		}
	}
	taken := make(map[string]bool, len(flog.entries))
	for _, e := range flog.entries {
		taken[e.Name] = true
	}
	decisions, err := readDecisions(ctx, st, prefix)
	if err != nil {
		return err
	}
	dlStore, dlPrefix, dlOwn := st, path.Join(prefix, "deadletter")+"/", false
	if loc := f.opts.DeadLetterLocation; loc != "" {
		if dlStore, err = storage.Open(ctx, loc); err != nil {
			return fmt.Errorf("stream: file source: open the dead-letter location %s (FileSourceOptions.DeadLetterLocation): %w", loc, err)
		}
		dlPrefix, dlOwn = "", true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dlOwn {
		f.dlStore.Close()
	}
	f.st, f.prefix, f.flog, f.taken, f.decisions = st, prefix, flog, taken, decisions
	f.dlStore, f.dlPrefix, f.dlOwn = dlStore, dlPrefix, dlOwn
	return nil
}

// Available implements Source. It lists the directory, logs the files not
// taken yet (in name order, at most MaxFilesPerBatch, each with its size
// and CRC32C) and returns the offsets of every logged file. A directory
// that does not exist is an error naming it.
func (f *FileSource[T]) Available(ctx context.Context) (Offsets, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flog == nil {
		return nil, fmt.Errorf("stream: %s: Attach was not called (a query calls it at Start)", f.Identity())
	}
	entries, err := os.ReadDir(f.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("stream: file source: the input directory %s does not exist: create it, or give the directory the files arrive in (the dir of NewFileSource)", f.abs)
	}
	if err != nil {
		return nil, fmt.Errorf("stream: list %s: %w", f.dir, err)
	}
	added := 0
	for _, de := range entries { // sorted by name
		name := de.Name()
		if f.taken[name] || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			continue
		}
		if ok, _ := filepath.Match(f.opts.Pattern, name); !ok {
			if !f.warned[name] && !de.IsDir() {
				f.warned[name] = true
				f.log.Warn("file source: a file in the input directory does not match the pattern and is not read",
					"file", filepath.Join(f.dir, name), "pattern", f.opts.Pattern,
					"hint", "rename it to match, or set FileSourceOptions.Pattern")
			}
			continue
		}
		if f.opts.MaxFilesPerBatch > 0 && added == f.opts.MaxFilesPerBatch {
			break
		}
		e, ok, err := takeFile(filepath.Join(f.dir, name), f.opts.Partitions)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if s, err := f.flog.add(ctx, e); err != nil {
			return nil, fmt.Errorf("stream: file source %s: log file %s as number %d: %w", f.dir, name, s, err)
		}
		f.taken[name] = true
		added++
	}
	if err := f.flog.compact(ctx, f.opts.CompactEvery); err != nil {
		return nil, err
	}
	return f.offsetsLocked(), nil
}

// takeFile returns the log entry of a file: its size, modification time
// and CRC32C now. ok is false for a file that is gone or not a regular
// file (a directory, a socket).
func takeFile(file string, partitions int) (e fileEntry, ok bool, err error) {
	fh, err := os.Open(file) // follows a symlink
	if errors.Is(err, fs.ErrNotExist) {
		return e, false, nil // gone since the listing
	}
	if err != nil {
		return e, false, fmt.Errorf("stream: file source: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return e, false, fmt.Errorf("stream: file source: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return e, false, nil
	}
	h := crc32.New(iox.Castagnoli)
	n, err := io.Copy(h, fh)
	if err != nil {
		return e, false, fmt.Errorf("stream: file source: read %s: %w", file, err)
	}
	sum := h.Sum32()
	return fileEntry{Name: filepath.Base(file), Size: n, ModTime: fi.ModTime().UTC(), Partitions: partitions, CRC32C: &sum}, true, nil
}

func (f *FileSource[T]) offsetsLocked() Offsets {
	n, parts := f.flog.end(), int64(f.opts.Partitions)
	out := make(Offsets, parts)
	for p := range parts {
		out[p] = (n - p + parts - 1) / parts
	}
	return out
}

// Read implements Source: it decodes the files of partition p at offsets
// [from, to), file by file, each in order, following the operators'
// decisions (a skipped file gives no records; a file to re-read is read
// as it was when the decision was made).
func (f *FileSource[T]) Read(ctx context.Context, p int, from, to int64, emit func(T) error) error {
	type job struct {
		seq int64
		e   fileEntry
		d   *FileDecision
	}
	f.mu.Lock()
	parts := f.opts.Partitions
	var files []job
	bad := f.flog == nil || p < 0 || p >= parts || from < 0 || from > to
	for i := from; !bad && i < to; i++ {
		s := i*int64(parts) + int64(p)
		if s < f.flog.first || s >= f.flog.end() {
			bad = true
			break
		}
		j := job{seq: s, e: f.flog.entries[s-f.flog.first]}
		if d, ok := f.decisions[s]; ok {
			j.d = &d
		}
		files = append(files, j)
	}
	f.mu.Unlock()
	if bad {
		return fmt.Errorf("stream: %s has no range [%d, %d) in partition %d", f.Identity(), from, to, p)
	}
	for _, j := range files {
		e := j.e
		if j.d != nil {
			switch j.d.Action {
			case ActionSkip:
				f.log.Warn("file source: skipping a file, as an operator decided", "file", filepath.Join(f.dir, e.Name),
					"seq", j.seq, "decision", j.d.Object, "decided", j.d.Decided)
				continue
			case ActionReread:
				e.Size, e.ModTime, e.CRC32C = j.d.Size, j.d.ModTime, j.d.CRC32C
			}
		}
		if err := f.readFile(ctx, j.seq, e, emit); err != nil {
			return err
		}
	}
	return nil
}

// deadLetter is one line of a dead-letter object.
type deadLetter struct {
	File        string `json:"file"`
	Line        int64  `json:"line"`
	RowGroup    *int   `json:"row_group,omitempty"`
	Rows        int64  `json:"rows,omitempty"`
	Column      string `json:"column,omitempty"`
	WholeFile   bool   `json:"whole_file,omitempty"`
	RecordsRead *int64 `json:"records_read,omitempty"`
	Error       string `json:"error"`
	Record      string `json:"record"`
}

// emitError marks an error returned by the caller's emit, so that it is
// never taken for a fault of the file.
type emitError struct{ err error }

func (e *emitError) Error() string { return e.err.Error() }
func (e *emitError) Unwrap() error { return e.err }

// checkFile verifies that file is the file the log entry e describes: it
// exists with e's size and, where e has one, CRC32C. It returns the file's
// FileInfo, to check after the decode that it did not change meanwhile.
func checkFile(file string, e fileEntry) (fs.FileInfo, error) {
	fh, err := os.Open(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("stream: file source: %s was taken by an earlier batch and is gone; the batch cannot be read without it: restore the file, or skip it with 'cairn source skip CHECKPOINT %s' (stream.SkipFile)", file, e.Name)
	case err != nil:
		return nil, fmt.Errorf("stream: file source: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("stream: file source: %w", err)
	}
	fix := fmt.Sprintf("restore the file as it was, or, to read it as it is now, run 'cairn source reread CHECKPOINT %s' (stream.RereadFile), or skip it with 'cairn source skip CHECKPOINT %s'", e.Name, e.Name)
	if fi.Size() != e.Size {
		return nil, fmt.Errorf("stream: file source: %s was %d bytes when it was taken and is %d bytes now: files must not change once in the directory (write them elsewhere, then rename them in); %s", file, e.Size, fi.Size(), fix)
	}
	if e.CRC32C == nil {
		return fi, nil
	}
	h := crc32.New(iox.Castagnoli)
	n, err := io.Copy(h, fh)
	if err != nil {
		return nil, fmt.Errorf("stream: file source: read %s: %w", file, err)
	}
	if n != e.Size || h.Sum32() != *e.CRC32C {
		return nil, fmt.Errorf("stream: file source: %s changed since it was taken: it has the same size (%d bytes) but other bytes (CRC32C %08x, was %08x): files must not change once in the directory (write them elsewhere, then rename them in); %s",
			file, e.Size, h.Sum32(), *e.CRC32C, fix)
	}
	return fi, nil
}

func (f *FileSource[T]) readFile(ctx context.Context, seq int64, e fileEntry, emit func(T) error) error {
	file := filepath.Join(f.dir, e.Name)
	before, err := checkFile(file, e)
	if err != nil {
		return err
	}
	var records int64
	counted := func(rec T) error {
		records++
		if err := emit(rec); err != nil {
			return &emitError{err}
		}
		return nil
	}
	var letters []deadLetter
	var count int64
	var bad func([]dataset.RecordError, int64) error
	if f.opts.DeadLetter {
		bad = func(errs []dataset.RecordError, n int64) error {
			count += n
			for _, re := range errs {
				l := deadLetter{File: file, Line: re.Line, Column: re.Column, Error: re.Err.Error()}
				if re.RowGroup >= 0 {
					g := re.RowGroup
					l.RowGroup = &g
					if len(errs) == 1 {
						l.Rows = n
					}
				}
				letters = append(letters, l)
			}
			return nil
		}
	}
	err = f.dec.Decode(ctx, file, counted, bad)
	var ee *emitError
	if errors.As(err, &ee) {
		return ee.err
	}
	if err == nil {
		err = checkUnchanged(file, before)
	}
	whole := false
	if err != nil {
		if !f.opts.DeadLetter || !fileFault(ctx, err) {
			var re *dataset.RecordError
			if errors.As(err, &re) {
				return fmt.Errorf("stream: file source: %w (to write bad records to a dead-letter destination and go on, set FileSourceOptions.DeadLetter, or -dead-letter DIR in the examples)", err)
			}
			if fileFault(ctx, err) {
				return fmt.Errorf("stream: file source: %s cannot be read: %w (to set such files aside in a dead-letter destination and go on, set FileSourceOptions.DeadLetter, or -dead-letter DIR in the examples; or skip it with 'cairn source skip CHECKPOINT %s')", file, err, e.Name)
			}
			return err
		}
		whole = true
		n := records
		letters = append(letters, deadLetter{File: file, WholeFile: true, RecordsRead: &n, Error: err.Error()})
		count++
		f.log.Warn("file source: a file cannot be decoded and is set aside whole in the dead-letter destination",
			"file", file, "records_read", records, "error", err.Error(), "dead_letter", f.deadLetterWhere(e.Name))
	}
	if len(letters) == 0 {
		f.setDead(seq, 0, false)
		return nil
	}
	if f.opts.Format != "parquet" {
		var lines []int64
		for _, l := range letters {
			if l.Line > 0 {
				lines = append(lines, l.Line)
			}
		}
		raw, err := dataset.RawLines(file, lines)
		if err != nil {
			return err
		}
		for i := range letters {
			if letters[i].Line > 0 {
				letters[i].Record = raw[letters[i].Line]
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, l := range letters {
		enc.Encode(l)
	}
	f.mu.Lock()
	dst, name := f.dlStore, f.dlPrefix+e.Name+".jsonl"
	f.mu.Unlock()
	mu := f.deadLock(e.Name)
	mu.Lock()
	err = storage.PutBytes(ctx, dst, name, buf.Bytes(), storage.PutOptions{})
	mu.Unlock()
	if err != nil {
		return fmt.Errorf("stream: file source: write the bad records of %s to %s in %s: %w", file, name, dst.Location(), err)
	}
	f.setDead(seq, count, whole)
	return nil
}

// checkUnchanged reports a file whose size or modification time changed
// while it was read.
func checkUnchanged(file string, before fs.FileInfo) error {
	after, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("stream: file source: %w", err)
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return &changedError{fmt.Sprintf("stream: file source: %s changed while it was read (%d bytes modified %s, then %d bytes modified %s): files must not change once in the directory (write them elsewhere, then rename them in)",
			file, before.Size(), before.ModTime().UTC().Format(time.RFC3339Nano), after.Size(), after.ModTime().UTC().Format(time.RFC3339Nano))}
	}
	return nil
}

// changedError is a file that changed while it was read: not a fault of
// its contents.
type changedError struct{ msg string }

func (e *changedError) Error() string { return e.msg }

// fileFault reports whether err, from decoding a file, is a fault of the
// file's contents (it is not in the format, or does not fit the record
// type) rather than of reading it: a cancelled context, or an I/O or
// permission error of the operating system, is not.
func fileFault(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *fs.PathError
	var errno syscall.Errno
	if errors.As(err, &pe) || errors.As(err, &errno) {
		return false
	}
	var ce *changedError
	return !errors.As(err, &ce)
}

func (f *FileSource[T]) setDead(seq, n int64, whole bool) {
	f.mu.Lock()
	f.dead[seq] = n
	f.deadFiles[seq] = whole
	f.mu.Unlock()
}

func (f *FileSource[T]) deadLock(name string) *sync.Mutex {
	f.mu.Lock()
	defer f.mu.Unlock()
	mu, ok := f.deadMu[name]
	if !ok {
		mu = &sync.Mutex{}
		f.deadMu[name] = mu
	}
	return mu
}

// DeadLetterObject returns the name, in the dead-letter destination (the
// checkpoint location, or DeadLetterLocation), of the dead-letter object
// of the file called name. A file read again after RereadFile replaces the
// object of its earlier read.
func (f *FileSource[T]) DeadLetterObject(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dlStore == nil {
		return path.Join(f.prefix, "deadletter", name+".jsonl")
	}
	return f.dlPrefix + name + ".jsonl"
}

// deadLetterWhere names the dead-letter object of a file with its
// location, for messages.
func (f *FileSource[T]) deadLetterWhere(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.TrimSuffix(f.dlStore.Location(), "/") + "/" + f.dlPrefix + name + ".jsonl"
}

// DeadLetters returns the number of bad records written to dead-letter
// objects by this FileSource: each file counts once, as of its last read,
// however often a replay read it. A Parquet row group that does not decode
// counts its unread rows; a file set aside whole counts one. The count
// starts at 0 in a new process.
func (f *FileSource[T]) DeadLetters() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, c := range f.dead {
		n += c
	}
	return n
}

// DeadFiles returns the number of files set aside whole in the dead-letter
// destination by this FileSource (files that cannot be decoded at all),
// each once, as of its last read. The count starts at 0 in a new process.
func (f *FileSource[T]) DeadFiles() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, whole := range f.deadFiles {
		if whole {
			n++
		}
	}
	return n
}

// Files returns the names of the files taken so far, by sequence number
// (from the first one the log still holds). The caller owns the slice.
func (f *FileSource[T]) Files() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flog == nil {
		return nil
	}
	out := make([]string, len(f.flog.entries))
	for i, e := range f.flog.entries {
		out[i] = e.Name
	}
	return out
}
