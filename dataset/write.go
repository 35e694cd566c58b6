package dataset

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/cairn-data/cairn/internal/iox"
	"github.com/cairn-data/cairn/storage"
)

// SuccessObject is the name of the object that WriteJSONL and WriteParquet
// write after every part: its presence says the output is complete (the
// _SUCCESS marker of Hadoop and Spark). It is empty.
const SuccessObject = "_SUCCESS"

// partPrefix starts the name of every part object: part-00000.jsonl, ...
const partPrefix = "part-"

// WriteOptions configure WriteJSONL and WriteParquet. The zero value gives
// the defaults.
type WriteOptions struct {
	// Overwrite replaces a complete output (one with a _SUCCESS object) at
	// the location. Default false: such a location is refused. Spark:
	// SaveMode.Overwrite; the default matches SaveMode.ErrorIfExists for
	// complete outputs. The parts of an incomplete output (no _SUCCESS: a
	// write that failed) are replaced either way.
	Overwrite bool
	// Compression is the Parquet codec: "snappy", "zstd" or "none". Default
	// "snappy". Spark: spark.sql.parquet.compression.codec (default snappy).
	// WriteJSONL writes uncompressed and accepts only "" or "none".
	Compression string
	// RowGroupBytes is the size at which WriteParquet ends a row group,
	// measured before compression: a writer holds about one row group of a
	// partition in memory. Default 128 MiB. Spark/parquet-mr:
	// parquet.block.size (128 MiB).
	RowGroupBytes int64
}

// Validate reports an option out of range, naming it.
func (o WriteOptions) Validate() error {
	if _, err := o.codec(); err != nil {
		return err
	}
	if o.RowGroupBytes < 0 {
		return fmt.Errorf("dataset: WriteOptions.RowGroupBytes is %d; it must be positive, or 0 for 128 MiB", o.RowGroupBytes)
	}
	return nil
}

func (o WriteOptions) codec() (compress.Codec, error) {
	switch o.Compression {
	case "", "snappy":
		return &parquet.Snappy, nil
	case "zstd":
		return &parquet.Zstd, nil
	case "none":
		return &parquet.Uncompressed, nil
	}
	return nil, fmt.Errorf("dataset: WriteOptions.Compression is %q; use \"snappy\" (the default), \"zstd\" or \"none\"", o.Compression)
}

func (o WriteOptions) rowGroupBytes() int64 {
	if o.RowGroupBytes <= 0 {
		return 128 << 20
	}
	return o.RowGroupBytes
}

// WriteReport says what a write produced.
type WriteReport struct {
	Files   int   // part objects written, one per partition (_SUCCESS not counted)
	Records int64 // records written
	Bytes   int64 // bytes of the part objects
}

// WriteJSONL writes the dataset as JSON Lines under location (a path or
// any storage.Open URL): partition p becomes the object part-%05d.jsonl,
// one record a line as encoding/json marshals it, streamed to storage as
// it is computed. After every part is stored, an empty _SUCCESS object is
// written (SuccessObject); readers should treat an output without it as
// incomplete.
//
// A location that already holds a _SUCCESS object is refused, unless
// opts.Overwrite: then _SUCCESS is deleted first, then every part-* object,
// then the new parts are written. Part objects left by a failed write (no
// _SUCCESS) are deleted before writing, so no stale part outlives a retry.
// On error, _SUCCESS is not written; parts already stored stay until the
// next write to the location. A cancelled ctx stops the write and the
// error is ctx.Err().
func (d *Dataset[T]) WriteJSONL(ctx context.Context, location string, opts WriteOptions) (WriteReport, error) {
	if opts.Compression != "" && opts.Compression != "none" {
		return WriteReport{}, fmt.Errorf("dataset: WriteJSONL writes uncompressed JSON; WriteOptions.Compression %q applies to WriteParquet only", opts.Compression)
	}
	if err := opts.Validate(); err != nil {
		return WriteReport{}, err
	}
	return writeParts(ctx, d, location, opts, ".jsonl", func(ctx context.Context, w io.Writer, p int) (int64, bool, error) {
		bw := bufio.NewWriterSize(w, 64<<10)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		var n int64
		var werr error
		err := d.compute(ctx, p, func(t T) error {
			n++
			werr = enc.Encode(t)
			return werr
		})
		if err != nil {
			return n, werr == nil, err
		}
		return n, false, bw.Flush()
	})
}

// WriteParquet writes the dataset as Parquet under location (a path or any
// storage.Open URL) with parquet.NewGenericWriter[T]: partition p becomes
// the object part-%05d.parquet, streamed to storage as it is computed
// (about one row group is held in memory; see WriteOptions.RowGroupBytes),
// compressed with opts.Compression (Snappy by default). T must be a struct
// type; any other is refused before anything is written.
//
// The _SUCCESS marker, Overwrite, failure and cancellation behave as for
// WriteJSONL.
func (d *Dataset[T]) WriteParquet(ctx context.Context, location string, opts WriteOptions) (WriteReport, error) {
	if t := reflect.TypeFor[T](); t.Kind() != reflect.Struct {
		return WriteReport{}, fmt.Errorf("dataset: WriteParquet needs a dataset of a struct type, not %v (map the records into a struct first)", t)
	}
	if err := opts.Validate(); err != nil {
		return WriteReport{}, err
	}
	codec, _ := opts.codec()
	if _, err := parquetSchemaOf[T]("WriteParquet"); err != nil {
		return WriteReport{}, err
	}
	limit := opts.rowGroupBytes()
	return writeParts(ctx, d, location, opts, ".parquet", func(ctx context.Context, w io.Writer, p int) (int64, bool, error) {
		pw := parquet.NewGenericWriter[T](w, parquet.Compression(codec))
		batch := make([]T, 0, checkEvery)
		var n, groupStart int64
		var werr error
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			if _, werr = pw.Write(batch); werr != nil {
				return werr
			}
			clear(batch) // drop references for the collector
			batch = batch[:0]
			if pw.Size()-groupStart >= limit {
				if werr = pw.Flush(); werr != nil {
					return werr
				}
				groupStart = pw.Size()
			}
			return nil
		}
		err := d.compute(ctx, p, func(t T) error {
			n++
			batch = append(batch, t)
			if len(batch) == cap(batch) {
				return flush()
			}
			return nil
		})
		if err != nil {
			return n, werr == nil, err
		}
		if err := flush(); err != nil {
			return n, false, err
		}
		return n, false, pw.Close()
	})
}

// writeParts is the protocol shared by the sinks: check and clear the
// location, store one part per partition, then _SUCCESS. encode writes
// partition p to w and returns its number of records and, on error,
// whether the error came from computing the records rather than writing
// them.
func writeParts[T any](ctx context.Context, d *Dataset[T], location string, opts WriteOptions, ext string,
	encode func(ctx context.Context, w io.Writer, p int) (n int64, fromSource bool, err error)) (WriteReport, error) {
	if d.s.isClosed() {
		return WriteReport{}, ErrSessionClosed
	}
	if err := ctx.Err(); err != nil {
		return WriteReport{}, err
	}
	st, err := storage.Open(ctx, location)
	if err != nil {
		return WriteReport{}, fmt.Errorf("dataset: open output location: %w", err)
	}
	defer st.Close()
	if err := prepareOutput(ctx, st, opts.Overwrite); err != nil {
		return WriteReport{}, err
	}

	parts := d.NumPartitions()
	records := make([]int64, parts)
	sizes := make([]int64, parts)
	err = runPartitions(ctx, d.s, parts, func(ctx context.Context, p int) error {
		name := fmt.Sprintf("%s%05d%s", partPrefix, p, ext)
		var fromSource bool
		err := storage.PutStream(ctx, st, name, storage.PutOptions{}, func(w io.Writer) error {
			cw := &iox.CountingWriter{W: w}
			n, src, err := encode(ctx, cw, p)
			records[p], sizes[p], fromSource = n, cw.N, src
			return err
		})
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			// Cancelled (by the caller, or because another partition
			// failed first): a storage or pipe error is only a symptom.
			return ctx.Err()
		case fromSource:
			return partitionError(d.n, p, err) // a bad record, a failed user function, ...
		}
		return partitionError(d.n, p, fmt.Errorf("write %s to %s: %w", name, st.Location(), err))
	})
	if err != nil {
		return WriteReport{}, err
	}
	if err := storage.PutBytes(ctx, st, SuccessObject, nil, storage.PutOptions{IfAbsent: true}); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return WriteReport{}, fmt.Errorf("dataset: another writer completed an output at %s while this one wrote (its %s appeared); the parts may be mixed: write again with WriteOptions.Overwrite", st.Location(), SuccessObject)
		}
		return WriteReport{}, fmt.Errorf("dataset: write %s to %s: %w", SuccessObject, st.Location(), err)
	}
	rep := WriteReport{Files: parts}
	for p := range parts {
		rep.Records += records[p]
		rep.Bytes += sizes[p]
	}
	return rep, nil
}

// prepareOutput refuses a complete output unless overwrite, then deletes
// _SUCCESS (first, so that a crash from here on leaves an output that reads
// as incomplete) and every part object.
func prepareOutput(ctx context.Context, st storage.Storage, overwrite bool) error {
	rc, err := st.Get(ctx, SuccessObject)
	switch {
	case err == nil:
		rc.Close()
		if !overwrite {
			return fmt.Errorf("dataset: %s/%s exists: the location holds a complete output; set WriteOptions.Overwrite to replace it", st.Location(), SuccessObject)
		}
		if err := st.Delete(ctx, SuccessObject); err != nil {
			return fmt.Errorf("dataset: overwrite %s: delete %s: %w", st.Location(), SuccessObject, err)
		}
	case !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("dataset: check for %s in %s: %w", SuccessObject, st.Location(), err)
	}
	old, err := st.List(ctx, partPrefix)
	if err != nil {
		return fmt.Errorf("dataset: list old parts in %s: %w", st.Location(), err)
	}
	for _, o := range old {
		if err := st.Delete(ctx, o.Name); err != nil {
			return fmt.Errorf("dataset: delete old part %s in %s: %w", o.Name, st.Location(), err)
		}
	}
	return nil
}
