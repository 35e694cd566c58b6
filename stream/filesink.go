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
	"reflect"
	"slices"
	"strconv"
	"strings"

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
}

// Validate reports an option out of range, naming it.
func (o FileSinkOptions) Validate() error {
	switch o.Format {
	case "jsonl", "parquet":
		return nil
	case "":
		return errors.New("stream: FileSinkOptions.Format is required: \"jsonl\" or \"parquet\"")
	}
	return fmt.Errorf("stream: FileSinkOptions.Format is %q; use \"jsonl\" or \"parquet\"", o.Format)
}

// FileSink writes each batch as files, exactly once: Spark's file sink.
// Its location (any storage URL or path) holds:
//
//	batch-<batch, 10 digits>/part-<partition, 5 digits>.<jsonl|parquet>
//	_manifests/<batch>      the batch's files, written after them
//
// A manifest is a framed object (frame.KindManifest, version 1) whose
// payload is JSON:
//
//	{"batch":7,"files":[{"name":"batch-0000000007/part-00000.jsonl","records":12,"bytes":480,"crc32c":3735928559}, ...]}
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
//
// Safe for concurrent use by one query (a location has one writer, the
// query that owns the checkpoint).
type FileSink[T any] struct {
	location string
	opts     FileSinkOptions
	st       storage.Storage
}

var _ Sink[int] = (*FileSink[int])(nil)

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
	return &FileSink[T]{location: location, opts: opts, st: st}, nil
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

// Identity implements Sink: "files:<format>:<location>".
func (s *FileSink[T]) Identity() string { return "files:" + s.opts.Format + ":" + s.location }

// Close releases the location's storage.
func (s *FileSink[T]) Close() error { return s.st.Close() }

// FileSinkManifest lists the files of one committed batch of a file sink.
type FileSinkManifest struct {
	Batch int64          `json:"batch"`
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
	files := make([]FileSinkFile, data.NumPartitions())
	err := data.ForEachPartition(ctx, func(ctx context.Context, p int, records iter.Seq2[T, error]) error {
		name := FileSinkPart(batchID, p, s.opts.Format)
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
	payload, _ := json.Marshal(FileSinkManifest{Batch: batchID, Files: files})
	name := FileSinkManifestObject(batchID)
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
// the file sink in st, in batch order. A location without _manifests/ has
// none. A damaged manifest is an error wrapping the *storage.CorruptError
// that names it.
func ReadFileSinkManifests(ctx context.Context, st storage.Storage) ([]FileSinkManifest, error) {
	objs, err := st.List(ctx, FileSinkManifests+"/")
	if err != nil {
		return nil, fmt.Errorf("stream: list the manifests of file sink %s: %w", st.Location(), err)
	}
	var ids []int64
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Name, FileSinkManifests+"/")
		id, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || id < 0 || strconv.FormatInt(id, 10) != rest {
			return nil, fmt.Errorf("stream: file sink %s: %s is not a manifest (names under %s/ are batch IDs)", st.Location(), o.Name, FileSinkManifests)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]FileSinkManifest, 0, len(ids))
	for _, id := range ids {
		m, err := ReadFileSinkManifest(ctx, st, id)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// ReadFileSinkManifest reads the manifest of one batch. A batch without a
// manifest gives an error matching storage.ErrNotFound.
func ReadFileSinkManifest(ctx context.Context, st storage.Storage, batchID int64) (FileSinkManifest, error) {
	name := FileSinkManifestObject(batchID)
	payload, _, err := frame.GetBytes(ctx, st, name, frame.KindManifest, fileSinkManifestVersion)
	if err != nil {
		return FileSinkManifest{}, fmt.Errorf("stream: read file sink manifest %s: %w", name, err)
	}
	var m FileSinkManifest
	if err := json.Unmarshal(payload, &m); err != nil || m.Batch != batchID {
		return FileSinkManifest{}, &storage.CorruptError{Object: name, Offset: -1, Reason: "not a file sink manifest of batch " + strconv.FormatInt(batchID, 10)}
	}
	for _, f := range m.Files {
		if err := storage.ValidateName(f.Name); err != nil || f.Bytes < 0 || f.Records < 0 {
			return FileSinkManifest{}, &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("lists a bad part %q", f.Name)}
		}
	}
	return m, nil
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
func ReadFileSink[T any](ctx context.Context, location string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		st, err := storage.Open(ctx, location)
		if err != nil {
			yield(zero, fmt.Errorf("stream: open file sink location: %w", err))
			return
		}
		defer st.Close()
		ms, err := ReadFileSinkManifests(ctx, st)
		if err != nil {
			yield(zero, err)
			return
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
