package stream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/parquet-go/parquet-go"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/internal/iox"
	"github.com/cairn-data/cairn/storage"
)

// Objects of a file sink's location.
const (
	// FileSinkManifests is the prefix of the manifests of a file sink's
	// batches: _manifests/<batch ID>.
	FileSinkManifests = "_manifests"
	// fileSinkManifestVersion is the format version of the manifests
	// (frame.KindManifest with a JSON payload).
	fileSinkManifestVersion = 1
)

// FileSinkOptions configure a FileSink.
type FileSinkOptions struct {
	// Format of the part files: "jsonl" (encoding/json, one record a line)
	// or "parquet" (parquet-go's GenericWriter[T], Snappy; T must be a
	// struct). Required. Spark: format("json") or format("parquet").
	Format string
	// IfOwned says what a query does at its first start over a sink that
	// another query writes (one with another query ID: another checkpoint
	// location). The sink records the queries that write it (_sink/<n>).
	//
	//   - "" (default): Start is refused with an error matching
	//     ErrSinkOwned that names the other query and its checkpoint.
	//   - "replace": the query takes the sink over. Its owner record is
	//     written first; from then on readers read only its output, and
	//     the other queries' parts and manifests are removed before its
	//     first batch (a removal cut short resumes at its next start).
	//     A replaced query is refused if it starts again.
	//   - "append": the query writes beside the others, in a namespace of
	//     its own (owner-<n>/), so batch IDs never collide; readers
	//     (ReadFileSink, 'cairn sink read') read every owner's batches,
	//     owner after owner.
	//
	// It takes effect once, at the query's first start over the sink; a
	// query that owns the sink ignores it. Spark's DataFrameWriter modes
	// errorifexists, overwrite and append are the nearest match; Spark's
	// streaming file sink has none (a second query's batches are dropped
	// as already written).
	IfOwned string
}

// Validate reports an option out of range, naming it.
func (o FileSinkOptions) Validate() error {
	switch o.Format {
	case "jsonl", "parquet":
		return o.validateIfOwned()
	case "":
		return errors.New("stream: FileSinkOptions.Format is required: \"jsonl\" or \"parquet\"")
	default:
		return fmt.Errorf("stream: FileSinkOptions.Format is %q; use \"jsonl\" or \"parquet\"", o.Format)
	}
}

func (o FileSinkOptions) validateIfOwned() error {
	switch o.IfOwned {
	case "", SinkReplace, SinkAppend:
		return nil
	}
	return fmt.Errorf("stream: FileSinkOptions.IfOwned is %q; use \"\" (refuse a second query), %q or %q", o.IfOwned, SinkReplace, SinkAppend)
}

// FileSink writes each batch as files, exactly once: Spark's file sink.
// Its location (any storage URL or path) holds:
//
//	batch-<batch, 10 digits>/part-<partition, 5 digits>.<jsonl|parquet>
//	_manifests/<batch>      the batch's files, written after them
//	_sink/<generation>      the queries that write the sink (FileSinkOwner)
//	owner-<generation>/     batch-.../part-... and _manifests/<batch> of a
//	                        query that appended to, or replaced, the
//	                        sink's earlier writers (FileSinkOptions.IfOwned)
//
// A manifest is a framed object (frame.KindManifest, version 1) whose
// payload is JSON (query_id and owner, the writing query and its
// generation, are left out by a sink used without a query, and by
// sinks written before owners were recorded):
//
//	{"batch":7,"query_id":"3f..","owner":1,"files":[{"name":"owner-1/batch-0000000007/part-00000.jsonl","records":12,"bytes":480,"crc32c":3735928559}, ...]}
//
// Invariants:
//
//  1. A batch is visible only through its manifest, written (a plain Put)
//     after every part of the batch is stored: readers (ReadFileSink,
//     'cairn sink read') never see a part of a batch, nor a part file
//     that no manifest lists.
//  2. Names are deterministic by (batch, partition), and so are the bytes
//     of a replayed batch (the query replays a batch with exactly its
//     input), so a replay rewrites the same files and the same manifest:
//     the output is exactly once.
//  3. Every part's size and CRC32C are in the manifest; readers check
//     them, and a mismatch is a *storage.CorruptError naming the part.
//  4. One query per namespace. A query records itself at its first start
//     (create-if-absent); another query is refused unless IfOwned says
//     to replace or append. A restart refuses to go on when a committed
//     batch has no manifest, naming it.
//
// Safe for concurrent use by one query (a location has one writer, the
// query that owns the checkpoint).
type FileSink[T any] struct {
	location string // as given
	canon    string // canonicalLocation(location)
	opts     FileSinkOptions
	st       storage.Storage

	// Set by AttachQuery: where the query's batches go, and who it is.
	mu         sync.Mutex
	prefix     string
	generation int
	queryID    string
}

var (
	_ Sink[int]       = (*FileSink[int])(nil)
	_ QueryAttacher   = (*FileSink[int])(nil)
	_ IdentityMatcher = (*FileSink[int])(nil)
)

// NewFileSink opens the sink's location (creating a local directory).
// Close releases it.
func NewFileSink[T any](location string, opts FileSinkOptions) (*FileSink[T], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Format == "parquet" {
		if t := reflect.TypeFor[T](); t.Kind() != reflect.Struct {
			return nil, fmt.Errorf("stream: a Parquet file sink needs records of a struct type, not %v", t)
		}
		if err := catchParquetPanic(func() { parquet.SchemaOf(new(T)) }); err != nil {
			return nil, fmt.Errorf("stream: a Parquet file sink cannot hold %v: %w", reflect.TypeFor[T](), err)
		}
	}
	st, err := storage.Open(context.Background(), location)
	if err != nil {
		return nil, fmt.Errorf("stream: open file sink location: %w", err)
	}
	canon, err := canonicalLocation(location) // after Open: a local directory exists
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("stream: file sink location %s: %w", location, err)
	}
	return &FileSink[T]{location: location, canon: canon, opts: opts, st: st}, nil
}

func catchParquetPanic(fn func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("parquet-go: %v", p)
		}
	}()
	fn()
	return nil
}

// Identity implements Sink: "files:<format>:<location>", the location in
// canonical form: an absolute path with symbolic links resolved (a
// file:// URL too), or a storage URL with its scheme and host in lower
// case, its path cleaned and its parameters sorted. A query started from
// another working directory, or with another spelling of the location,
// pins the same identity.
func (s *FileSink[T]) Identity() string { return "files:" + s.opts.Format + ":" + s.canon }

// SameIdentity implements IdentityMatcher: it accepts an identity pinned
// by an older cairn, which kept the location as given (a relative path,
// say), when it names this sink's location once made canonical. A
// relative path resolves against the working directory of this process:
// a restart from another directory may match the wrong directory, and
// AttachQuery then refuses it, as that directory lacks the manifests of
// the query's committed batches.
func (s *FileSink[T]) SameIdentity(pinned string) bool {
	rest, ok := strings.CutPrefix(pinned, "files:"+s.opts.Format+":")
	if !ok {
		return false
	}
	canon, err := canonicalLocation(rest)
	return err == nil && canon == s.canon
}

// Close releases the location's storage.
func (s *FileSink[T]) Close() error { return s.st.Close() }

// FileSinkManifest lists the files of one committed batch of a file sink.
type FileSinkManifest struct {
	Batch int64 `json:"batch"`
	// QueryID is the query that wrote the batch; "" when unknown (a sink
	// used without a query, or written before owners were recorded).
	QueryID string `json:"query_id,omitempty"`
	// Owner is the generation of the owner whose namespace holds the
	// manifest (0: the sink's root).
	Owner int            `json:"owner,omitempty"`
	Files []FileSinkFile `json:"files"`
}

// FileSinkFile is one part file of a batch.
type FileSinkFile struct {
	Name    string `json:"name"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
	CRC32C  uint32 `json:"crc32c"`
}

// FileSinkPart returns the name of the part file of a batch's partition.
func FileSinkPart(batchID int64, partition int, format string) string {
	return fmt.Sprintf("batch-%010d/part-%05d.%s", batchID, partition, format)
}

// FileSinkManifestObject returns the name of a batch's manifest.
func FileSinkManifestObject(batchID int64) string {
	return FileSinkManifests + "/" + strconv.FormatInt(batchID, 10)
}

// AddBatch implements Sink: it stores one part per partition, streamed as
// the partition is computed, then the manifest. A replay of the batch
// rewrites the same objects.
func (s *FileSink[T]) AddBatch(ctx context.Context, batchID int64, data *dataset.Dataset[T]) error {
	if batchID < 0 {
		return fmt.Errorf("stream: file sink %s: batch ID %d is negative", s.location, batchID)
	}
	s.mu.Lock()
	prefix, generation, queryID := s.prefix, s.generation, s.queryID
	s.mu.Unlock()
	files := make([]FileSinkFile, data.NumPartitions())
	err := data.ForEachPartition(ctx, func(ctx context.Context, p int, records iter.Seq2[T, error]) error {
		name := prefix + FileSinkPart(batchID, p, s.opts.Format)
		var cw *iox.CountingWriter
		var n int64
		err := storage.PutStream(ctx, s.st, name, storage.PutOptions{}, func(w io.Writer) error {
			cw = &iox.CountingWriter{W: w}
			if err := ctx.Err(); err != nil {
				return err // another partition failed: compute nothing more
			}
			var err error
			n, err = s.encode(cw, records)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s in %s: %w", name, s.st.Location(), err)
		}
		files[p] = FileSinkFile{Name: name, Records: n, Bytes: cw.N, CRC32C: cw.CRC32}
		return nil
	})
	if err != nil {
		return fmt.Errorf("stream: file sink batch %d: %w", batchID, err)
	}
	payload, _ := json.Marshal(FileSinkManifest{Batch: batchID, QueryID: queryID, Owner: generation, Files: files})
	name := prefix + FileSinkManifestObject(batchID)
	if err := frame.PutBytes(ctx, s.st, name, frame.KindManifest, fileSinkManifestVersion, payload, storage.PutOptions{}); err != nil {
		return fmt.Errorf("stream: file sink: write %s to %s: %w", name, s.st.Location(), err)
	}
	return nil
}

// encode writes one partition's records in the sink's format and returns
// how many there were.
func (s *FileSink[T]) encode(w io.Writer, records iter.Seq2[T, error]) (int64, error) {
	var n int64
	if s.opts.Format == "jsonl" {
		bw := bufio.NewWriterSize(w, 64<<10)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for r, err := range records {
			if err != nil {
				return n, err
			}
			if err := enc.Encode(r); err != nil {
				return n, err
			}
			n++
		}
		return n, bw.Flush()
	}
	pw := parquet.NewGenericWriter[T](w, parquet.Compression(&parquet.Snappy))
	batch := make([]T, 0, 1024)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := pw.Write(batch)
		clear(batch)
		batch = batch[:0]
		return err
	}
	for r, err := range records {
		if err != nil {
			return n, err
		}
		batch = append(batch, r)
		n++
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := flush(); err != nil {
		return n, err
	}
	return n, pw.Close()
}

// ReadFileSinkManifests returns the manifests of the committed batches of
// the file sink in st, in read order: namespace after namespace (see
// FileSinkNamespaces), each in batch order. A location without manifests
// has none. A damaged manifest or owner record is an error wrapping the
// *storage.CorruptError that names it.
func ReadFileSinkManifests(ctx context.Context, st storage.Storage) ([]FileSinkManifest, error) {
	ix, err := ReadFileSinkIndex(ctx, st)
	if err != nil {
		return nil, err
	}
	var out []FileSinkManifest
	for _, ns := range ix.Namespaces {
		out = append(out, ns.Manifests...)
	}
	return out, nil
}

// FileSinkIndex is what readers of a file sink read before its parts.
type FileSinkIndex struct {
	// Owners are the owner records, in generation order, replaced ones
	// included.
	Owners []FileSinkOwner
	// Namespaces are the namespaces read, in read order.
	Namespaces []FileSinkNamespace
}

// FileSinkNamespace is the output of one owner of a file sink.
type FileSinkNamespace struct {
	Owner FileSinkOwner
	// Manifests are the namespace's manifests in batch order.
	Manifests []FileSinkManifest
	// Missing are the batches without a manifest between the owner's first
	// batch and its last manifest: committed output that was lost (a
	// manifest deleted), which readers cannot read.
	Missing []int64
}

// ReadFileSinkIndex reads the owner records and the manifests of the file
// sink in st. A damaged manifest or owner record is an error wrapping the
// *storage.CorruptError that names it.
func ReadFileSinkIndex(ctx context.Context, st storage.Storage) (*FileSinkIndex, error) {
	owners, err := ReadFileSinkOwners(ctx, st)
	if err != nil {
		return nil, err
	}
	ix := &FileSinkIndex{Owners: owners}
	for _, o := range FileSinkNamespaces(owners) {
		ids, err := fileSinkBatches(ctx, st, o.Prefix())
		if err != nil {
			return nil, err
		}
		ns := FileSinkNamespace{Owner: o, Manifests: make([]FileSinkManifest, 0, len(ids)), Missing: FileSinkMissing(o.FirstBatch, ids)}
		for _, id := range ids {
			m, err := ReadFileSinkOwnerManifest(ctx, st, o, id)
			if err != nil {
				return nil, err
			}
			ns.Manifests = append(ns.Manifests, m)
		}
		ix.Namespaces = append(ix.Namespaces, ns)
	}
	return ix, nil
}

// Missing describes the batches that readers of the sink cannot read for
// want of a manifest, one phrase per namespace ("batches 3 to 4 of the
// sink's root"); "" when none is missing.
func (ix *FileSinkIndex) Missing() string {
	var out []string
	for _, ns := range ix.Namespaces {
		if len(ns.Missing) == 0 {
			continue
		}
		where := "the sink's root"
		if ns.Owner.Generation > 0 {
			where = strings.TrimSuffix(ns.Owner.Prefix(), "/")
		}
		word := "batches"
		if len(ns.Missing) == 1 {
			word = "batch"
		}
		out = append(out, fmt.Sprintf("%s %s of %s (%s%s/)", word, BatchRanges(ns.Missing), where, ns.Owner.Prefix(), FileSinkManifests))
	}
	return strings.Join(out, "; ")
}

// ReadFileSinkManifest reads the manifest of one batch in the sink's root
// namespace. A batch without a manifest gives an error matching
// storage.ErrNotFound.
func ReadFileSinkManifest(ctx context.Context, st storage.Storage, batchID int64) (FileSinkManifest, error) {
	return ReadFileSinkOwnerManifest(ctx, st, FileSinkOwner{}, batchID)
}

// ReadFileSinkOwnerManifest reads the manifest of one batch in owner o's
// namespace, and refuses one that is not what its name says: of another
// batch or namespace, or listing parts outside its namespace. A batch
// without a manifest gives an error matching storage.ErrNotFound.
func ReadFileSinkOwnerManifest(ctx context.Context, st storage.Storage, o FileSinkOwner, batchID int64) (FileSinkManifest, error) {
	name := o.Prefix() + FileSinkManifestObject(batchID)
	payload, _, err := frame.GetBytes(ctx, st, name, frame.KindManifest, fileSinkManifestVersion)
	if err != nil {
		return FileSinkManifest{}, fmt.Errorf("stream: read file sink manifest %s: %w", name, err)
	}
	var m FileSinkManifest
	if err := json.Unmarshal(payload, &m); err != nil || m.Batch != batchID {
		return FileSinkManifest{}, &storage.CorruptError{Object: name, Offset: -1, Reason: "not a file sink manifest of batch " + strconv.FormatInt(batchID, 10)}
	}
	if m.Owner != o.Generation {
		return FileSinkManifest{}, &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("the manifest of batch %d of %s, not of %s", batchID, ownerPlace(m.Owner), ownerPlace(o.Generation))}
	}
	for _, f := range m.Files {
		if err := storage.ValidateName(f.Name); err != nil || f.Bytes < 0 || f.Records < 0 || o.Generation > 0 && !strings.HasPrefix(f.Name, o.Prefix()) {
			return FileSinkManifest{}, &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("lists a bad part %q", f.Name)}
		}
	}
	return m, nil
}

// ownerPlace names a generation's namespace in messages.
func ownerPlace(generation int) string {
	if generation == 0 {
		return "the sink's root"
	}
	return strings.TrimSuffix(fileSinkPrefix(generation), "/")
}

// ReadFileSinkPart reads one part file of a manifest whole and checks its
// size and CRC32C against it: a mismatch is a *storage.CorruptError naming
// the part. The caller owns the returned slice.
func ReadFileSinkPart(ctx context.Context, st storage.Storage, f FileSinkFile) ([]byte, error) {
	rc, err := st.Get(ctx, f.Name)
	if err != nil {
		return nil, fmt.Errorf("stream: read file sink part %s: %w", f.Name, err)
	}
	defer rc.Close()
	// One byte more than the manifest says, to notice a longer part.
	data, err := io.ReadAll(io.LimitReader(rc, f.Bytes+1))
	if err != nil {
		return nil, fmt.Errorf("stream: read file sink part %s: %w", f.Name, err)
	}
	if int64(len(data)) != f.Bytes {
		reason := fmt.Sprintf("%d bytes, the manifest says %d", len(data), f.Bytes)
		if int64(len(data)) > f.Bytes {
			reason = fmt.Sprintf("longer than the %d bytes the manifest says", f.Bytes)
		}
		return nil, &storage.CorruptError{Object: f.Name, Offset: -1, Reason: reason}
	}
	if c := crc32.Checksum(data, iox.Castagnoli); c != f.CRC32C {
		return nil, &storage.CorruptError{Object: f.Name, Offset: -1, Reason: fmt.Sprintf("CRC32C %08x, the manifest says %08x", c, f.CRC32C)}
	}
	return data, nil
}

// ReadFileSink returns the records of the committed batches of the file
// sink at location (any storage URL or path), batch by batch in batch
// order, each batch's parts in partition order. Every part is checked
// against its manifest before any of its records is yielded (a part is
// held in memory while it is read); a damaged part or manifest ends the
// sequence with an error wrapping the *storage.CorruptError that names it.
// Batches without a manifest (written in part, or not yet) are not read.
// A sink with several owners (FileSinkOptions.IfOwned "append") is read
// owner after owner. Batches missing between others (a deleted manifest)
// are named in a WARN record to slog.Default(); the rest is read.
func ReadFileSink[T any](ctx context.Context, location string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		st, err := storage.Open(ctx, location)
		if err != nil {
			yield(zero, fmt.Errorf("stream: open file sink location: %w", err))
			return
		}
		defer st.Close()
		ix, err := ReadFileSinkIndex(ctx, st)
		if err != nil {
			yield(zero, err)
			return
		}
		if gaps := ix.Missing(); gaps != "" {
			slog.Default().Warn("stream: file sink "+st.Location()+" has no manifest for "+gaps+
				": their output was lost (manifests deleted?); reading the rest", "sink", st.Location())
		}
		var ms []FileSinkManifest
		for _, ns := range ix.Namespaces {
			ms = append(ms, ns.Manifests...)
		}
		for _, m := range ms {
			for _, f := range m.Files {
				if err := readFileSinkPart(ctx, st, f, yield); errors.Is(err, errYieldStop) {
					return
				} else if err != nil {
					yield(zero, err)
					return
				}
				if ctx.Err() != nil {
					yield(zero, ctx.Err())
					return
				}
			}
		}
	}
}

// errYieldStop ends a read whose consumer stopped.
var errYieldStop = errors.New("stream: stop")

func readFileSinkPart[T any](ctx context.Context, st storage.Storage, f FileSinkFile, yield func(T, error) bool) error {
	data, err := ReadFileSinkPart(ctx, st, f)
	if err != nil {
		return err
	}
	var n int64
	switch {
	case strings.HasSuffix(f.Name, ".jsonl"):
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var rec T
			if err := dec.Decode(&rec); err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("stream: file sink part %s record %d: %w", f.Name, n+1, err)
			}
			n++
			if !yield(rec, nil) {
				return errYieldStop
			}
		}
	case strings.HasSuffix(f.Name, ".parquet"):
		var r *parquet.GenericReader[T]
		if err := catchParquetPanic(func() { r = parquet.NewGenericReader[T](bytes.NewReader(data)) }); err != nil {
			return fmt.Errorf("stream: file sink part %s: %w", f.Name, err)
		}
		defer r.Close()
		buf := make([]T, 1024)
		for {
			clear(buf) // Read reuses what it finds in a slot: yielded records keep theirs
			var k int
			var err error
			if perr := catchParquetPanic(func() { k, err = r.Read(buf) }); perr != nil {
				return fmt.Errorf("stream: file sink part %s: %w", f.Name, perr)
			}
			for _, rec := range buf[:k] {
				n++
				if !yield(rec, nil) {
					return errYieldStop
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("stream: file sink part %s: %w", f.Name, err)
			}
		}
	default:
		return fmt.Errorf("stream: file sink part %s has no .jsonl or .parquet extension", f.Name)
	}
	if n != f.Records {
		return &storage.CorruptError{Object: f.Name, Offset: -1, Reason: fmt.Sprintf("%d records, the manifest says %d", n, f.Records)}
	}
	return nil
}
