package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/metalog"
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
	// (see FileSource). Spark: the path glob of readStream.load.
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
	// DeadLetter makes bad records (lines that do not decode) go to a
	// dead-letter object in the checkpoint location instead of failing the
	// batch; see FileSource. Default false: the first bad record fails the
	// batch with an error naming the file and line. Spark: the
	// badRecordsPath option of Databricks; FAILFAST mode when false.
	DeadLetter bool
	// Strict makes a JSON field that T does not have a bad record
	// (dataset.ReadOptions.Strict). Default false. JSONL only.
	Strict bool
}

func (o FileSourceOptions) withDefaults() FileSourceOptions {
	if o.Pattern == "" {
		o.Pattern = "*." + o.Format
	}
	if o.Partitions == 0 {
		o.Partitions = 4
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
//	<prefix>/files/<s>                      file s: {"name", "size", "modtime", "partitions"} (a metalog)
//	<prefix>/deadletter/<file name>.jsonl   bad records of a file, with DeadLetter
//
// Invariants:
//
//  1. A file is logged before any batch can read it: Available appends the
//     new files to the log (create-if-absent) before it returns their
//     offsets, so the files of a batch written ahead are pinned forever.
//  2. A logged file must not change: Read checks that it still exists with
//     its logged size, and fails naming it otherwise. Replay reads the same
//     records.
//  3. Files are taken in name order, each once (by name: a file deleted
//     and written again under a taken name is not taken again).
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
// Bad records: by default the first fails the batch with an error that
// wraps the *dataset.RecordError naming the file and line. With
// DeadLetter, every bad record of a file is written, when the file is
// read, to the object <prefix>/deadletter/<file name>.jsonl of the
// checkpoint location, one JSON object a line:
//
//	{"file":"/in/a.jsonl","line":3,"error":"...","record":"<the raw line>"}
//
// (for Parquet, a row group: "line" is 0 and "row_group" and "rows" say
// which rows were skipped; for CSV, "record" is the line where the record
// starts). A replayed read writes the same object again. DeadLetters counts
// them, each file once.
//
// Available, Read and DeadLetters are safe for concurrent use; Attach must
// come first.
type FileSource[T any] struct {
	dir  string
	abs  string
	opts FileSourceOptions
	dec  *dataset.FileDecoder[T]

	mu     sync.Mutex
	st     storage.Storage
	prefix string
	log    *metalog.Log
	files  []fileEntry            // by sequence number
	taken  map[string]bool        // names in files
	dead   map[string]int64       // bad records per file name, as last read
	deadMu map[string]*sync.Mutex // serializes dead-letter writes per file
}

var (
	_ Source[int]        = (*FileSource[int])(nil)
	_ CheckpointedSource = (*FileSource[int])(nil)
)

// fileEntry is the log entry of a taken file.
type fileEntry struct {
	Name       string    `json:"name"`
	Size       int64     `json:"size"`
	ModTime    time.Time `json:"modtime"`
	Partitions int       `json:"partitions"`
}

// FileSourceLog is the name, under the source's prefix, of the log of the
// files it has taken.
const FileSourceLog = "files"

// NewFileSource returns a source of the files in dir. The directory is
// listed by Available, not here; it need not exist yet.
func NewFileSource[T any](dir string, opts FileSourceOptions) (*FileSource[T], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("stream: file source %s: %w", dir, err)
	}
	dec, err := dataset.NewFileDecoder[T](opts.Format, dataset.ReadOptions{Strict: opts.Strict})
	if err != nil {
		return nil, fmt.Errorf("stream: file source %s: %w", dir, err)
	}
	return &FileSource[T]{dir: dir, abs: abs, opts: opts, dec: dec,
		dead: map[string]int64{}, deadMu: map[string]*sync.Mutex{}}, nil
}

// Identity implements Source: "files:<format>:<absolute dir>/<pattern>".
func (f *FileSource[T]) Identity() string {
	return "files:" + f.opts.Format + ":" + filepath.Join(f.abs, f.opts.Pattern)
}

// Attach implements CheckpointedSource: it opens the log of taken files
// under prefix and reads it (one Get per file taken so far), and refuses a
// Partitions other than the one the log was started with.
func (f *FileSource[T]) Attach(ctx context.Context, st storage.Storage, prefix string) error {
	log, err := metalog.Open(ctx, st, path.Join(prefix, FileSourceLog))
	if err != nil {
		return err
	}
	var files []fileEntry
	taken := map[string]bool{}
	if latest, ok := log.Latest(); ok {
		if earliest, _ := log.Earliest(); earliest != 0 {
			return &storage.CorruptError{Object: log.Object(0), Offset: -1,
				Reason: fmt.Sprintf("missing: the file source's log starts at entry %d; its entries are never purged", earliest)}
		}
		for s := int64(0); s <= latest; s++ {
			data, err := log.Get(ctx, s)
			if err != nil {
				return err
			}
			var e fileEntry
			if err := json.Unmarshal(data, &e); err != nil || e.Name == "" || e.Partitions <= 0 {
				return &storage.CorruptError{Object: log.Object(s), Offset: -1, Reason: "not a valid file source entry"}
			}
			files = append(files, e)
			taken[e.Name] = true
		}
		if old := files[len(files)-1].Partitions; old != f.opts.Partitions {
			return &PinnedSettingError{Location: st.Location(), Setting: "file source partitions",
				Old: fmt.Sprint(old), New: fmt.Sprint(f.opts.Partitions)}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st, f.prefix, f.log, f.files, f.taken = st, prefix, log, files, taken
	return nil
}

// Available implements Source. It lists the directory, logs the files not
// taken yet (in name order, at most MaxFilesPerBatch) and returns the
// offsets of every logged file. A directory that does not exist yet has
// no files.
func (f *FileSource[T]) Available(ctx context.Context) (Offsets, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.log == nil {
		return nil, fmt.Errorf("stream: %s: Attach was not called (a query calls it at Start)", f.Identity())
	}
	entries, err := os.ReadDir(f.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("stream: list %s: %w", f.dir, err)
	}
	added := 0
	for _, de := range entries { // sorted by name
		name := de.Name()
		if f.taken[name] || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			continue
		}
		if ok, _ := filepath.Match(f.opts.Pattern, name); !ok {
			continue
		}
		if f.opts.MaxFilesPerBatch > 0 && added == f.opts.MaxFilesPerBatch {
			break
		}
		fi, err := os.Stat(filepath.Join(f.dir, name)) // follows a symlink
		if errors.Is(err, fs.ErrNotExist) {
			continue // gone since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("stream: file source: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		e := fileEntry{Name: name, Size: fi.Size(), ModTime: fi.ModTime().UTC(), Partitions: f.opts.Partitions}
		data, _ := json.Marshal(e)
		s := int64(len(f.files))
		if err := f.log.Add(ctx, s, data); err != nil {
			return nil, fmt.Errorf("stream: file source %s: log file %s as number %d: %w", f.dir, name, s, err)
		}
		f.files = append(f.files, e)
		f.taken[name] = true
		added++
	}
	return f.offsetsLocked(), nil
}

func (f *FileSource[T]) offsetsLocked() Offsets {
	n, parts := int64(len(f.files)), int64(f.opts.Partitions)
	out := make(Offsets, parts)
	for p := range parts {
		out[p] = (n - p + parts - 1) / parts
	}
	return out
}

// Read implements Source: it decodes the files of partition p at offsets
// [from, to), file by file, each in order.
func (f *FileSource[T]) Read(ctx context.Context, p int, from, to int64, emit func(T) error) error {
	f.mu.Lock()
	parts := f.opts.Partitions
	var files []fileEntry
	bad := p < 0 || p >= parts || from < 0 || from > to
	for i := from; !bad && i < to; i++ {
		s := i*int64(parts) + int64(p)
		if s >= int64(len(f.files)) {
			bad = true
			break
		}
		files = append(files, f.files[s])
	}
	f.mu.Unlock()
	if bad {
		return fmt.Errorf("stream: %s has no range [%d, %d) in partition %d", f.Identity(), from, to, p)
	}
	for _, e := range files {
		if err := f.readFile(ctx, e, emit); err != nil {
			return err
		}
	}
	return nil
}

// deadLetter is one line of a dead-letter object.
type deadLetter struct {
	File     string `json:"file"`
	Line     int64  `json:"line"`
	RowGroup *int   `json:"row_group,omitempty"`
	Rows     int64  `json:"rows,omitempty"`
	Column   string `json:"column,omitempty"`
	Error    string `json:"error"`
	Record   string `json:"record"`
}

func (f *FileSource[T]) readFile(ctx context.Context, e fileEntry, emit func(T) error) error {
	file := filepath.Join(f.dir, e.Name)
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("stream: file source: %s was taken by an earlier batch and is gone; the batch cannot be read again: restore the file", file)
	case err != nil:
		return fmt.Errorf("stream: file source: %w", err)
	case fi.Size() != e.Size:
		return fmt.Errorf("stream: file source: %s was %d bytes when it was taken and is %d bytes now: files must not change once in the directory (write them elsewhere, then rename them in)", file, e.Size, fi.Size())
	}
	if !f.opts.DeadLetter {
		err := f.dec.Decode(ctx, file, emit, nil)
		var re *dataset.RecordError
		if errors.As(err, &re) {
			return fmt.Errorf("stream: file source: %w (to write bad records to a dead-letter object and go on, set FileSourceOptions.DeadLetter)", err)
		}
		return err
	}
	var letters []deadLetter
	var count int64
	err = f.dec.Decode(ctx, file, emit, func(errs []dataset.RecordError, n int64) error {
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
	})
	if err != nil {
		return err
	}
	if len(letters) == 0 {
		f.setDead(e.Name, 0)
		return nil
	}
	if f.opts.Format != "parquet" {
		lines := make([]int64, len(letters))
		for i, l := range letters {
			lines[i] = l.Line
		}
		raw, err := dataset.RawLines(file, lines)
		if err != nil {
			return err
		}
		for i := range letters {
			letters[i].Record = raw[letters[i].Line]
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, l := range letters {
		enc.Encode(l)
	}
	name := f.DeadLetterObject(e.Name)
	mu := f.deadLock(e.Name)
	mu.Lock()
	err = storage.PutBytes(ctx, f.st, name, buf.Bytes(), storage.PutOptions{})
	mu.Unlock()
	if err != nil {
		return fmt.Errorf("stream: file source: write the bad records of %s to %s: %w", file, name, err)
	}
	f.setDead(e.Name, count)
	return nil
}

func (f *FileSource[T]) setDead(name string, n int64) {
	f.mu.Lock()
	f.dead[name] = n
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

// DeadLetterObject returns the name, in the checkpoint location, of the
// dead-letter object of the file called name.
func (f *FileSource[T]) DeadLetterObject(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return path.Join(f.prefix, "deadletter", name+".jsonl")
}

// DeadLetters returns the number of bad records written to dead-letter
// objects by this FileSource: each file counts once, as of its last read,
// however often a replay read it. A Parquet row group that does not decode
// counts its unread rows. The count starts at 0 in a new process.
func (f *FileSource[T]) DeadLetters() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, c := range f.dead {
		n += c
	}
	return n
}

// Files returns the names of the files taken so far, by sequence number.
// The caller owns the slice.
func (f *FileSource[T]) Files() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.files))
	for i, e := range f.files {
		out[i] = e.Name
	}
	return out
}
