package dataset

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/internal/iox"
	"github.com/cairn-data/cairn/storage"
)

// Encodings of checkpoint parts.
const (
	encodingParquet = "parquet" // plain Parquet files, readable by DuckDB, Spark, pandas
	encodingGob     = "gob"     // framed encoding/gob records, for types Parquet cannot hold
)

// recordsVersion is the format version of framed gob parts.
const recordsVersion = 1

// encodingFor picks Parquet for struct types it can hold, gob otherwise.
func encodingFor[T any]() string {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return encodingGob
	}
	ok := func() (ok bool) {
		defer func() {
			if recover() != nil {
				ok = false
			}
		}()
		parquet.SchemaOf(reflect.New(t).Interface())
		return true
	}()
	if !ok {
		return encodingGob
	}
	return encodingParquet
}

func partName(encoding string, p int) string {
	if encoding == encodingParquet {
		return fmt.Sprintf("part-%05d.parquet", p)
	}
	return fmt.Sprintf("part-%05d.records", p)
}

// PartInfo describes one written partition in a checkpoint manifest.
type PartInfo struct {
	File    string `json:"file"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
	CRC32C  uint32 `json:"crc32c"`
}

// partWriter streams the records of one partition into one object.
type partWriter[T any] struct {
	name    string
	pw      *io.PipeWriter
	done    chan error
	cw      *iox.CountingWriter
	pq      *parquet.GenericWriter[T]
	fw      *frame.Writer
	enc     *gob.Encoder
	buf     []T
	records int64
	failed  error
}

const parquetBatch = 1024

// checkpointCodec returns the Parquet compression of checkpoint parts.
func checkpointCodec(name string) (compress.Codec, error) {
	switch name {
	case "", "none":
		return &parquet.Uncompressed, nil
	case "snappy":
		return &parquet.Snappy, nil
	case "zstd":
		return &parquet.Zstd, nil
	}
	return nil, fmt.Errorf("dataset: CheckpointOptions.Compression is %q; use \"none\" (default), \"snappy\" or \"zstd\"", name)
}

func startPart[T any](ctx context.Context, st storage.Storage, name, encoding string, codec compress.Codec) *partWriter[T] {
	pr, pw := io.Pipe()
	w := &partWriter[T]{name: name, pw: pw, done: make(chan error, 1)}
	go func() {
		err := st.Put(ctx, name, pr, storage.PutOptions{})
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.CloseWithError(errors.New("dataset: part writer ended"))
		}
		w.done <- err
	}()
	w.cw = &iox.CountingWriter{W: pw}
	if encoding == encodingParquet {
		w.pq = parquet.NewGenericWriter[T](w.cw, parquet.Compression(codec))
	} else {
		w.fw = frame.NewWriter(w.cw, frame.KindRecords, recordsVersion)
		w.enc = gob.NewEncoder(w.fw)
	}
	return w
}

func (w *partWriter[T]) write(t T) error {
	if w.failed != nil {
		return w.failed
	}
	w.records++
	if w.enc != nil {
		if err := w.enc.Encode(&t); err != nil {
			w.failed = fmt.Errorf("dataset: encode a record of %s: %w", w.name, err)
		}
		return w.failed
	}
	w.buf = append(w.buf, t)
	if len(w.buf) == parquetBatch {
		return w.flush()
	}
	return nil
}

func (w *partWriter[T]) flush() error {
	if len(w.buf) > 0 {
		if _, err := w.pq.Write(w.buf); err != nil {
			w.failed = fmt.Errorf("dataset: write %s: %w", w.name, err)
		}
		clear(w.buf)
		w.buf = w.buf[:0]
	}
	return w.failed
}

// finish completes the object and waits until it is stored.
func (w *partWriter[T]) finish() (PartInfo, error) {
	var err error
	if w.pq != nil {
		if err = w.flush(); err == nil {
			err = w.pq.Close()
		}
	} else if err = w.failed; err == nil {
		err = w.fw.Close()
	}
	if err != nil {
		w.abort(err)
		return PartInfo{}, err
	}
	w.pw.Close()
	if err := <-w.done; err != nil {
		return PartInfo{}, fmt.Errorf("dataset: store %s: %w", w.name, err)
	}
	return PartInfo{Records: w.records, Bytes: w.cw.N, CRC32C: w.cw.CRC32}, nil
}

// abort discards the object: nothing is stored.
func (w *partWriter[T]) abort(cause error) {
	w.pw.CloseWithError(cause)
	<-w.done
}

// readPart reads one part, checks its size and checksum against the
// manifest, and emits its records. parquet-go panics on some damaged
// input; a panic becomes a corruption error naming the part.
func readPart[T any](ctx context.Context, st storage.Storage, name, encoding string, info PartInfo, emit func(T) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("parquet: %v", r)}
		}
	}()
	data, err := storage.GetBytes(ctx, st, name)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			// The manifest promises the part: its absence is damage, named
			// as such, so that callers can say how to repair it.
			return &storage.CorruptError{Object: name, Offset: -1,
				Reason: "missing: the manifest lists this part, and the storage has no such object (it was deleted or moved from the checkpoint location)"}
		}
		return err
	}
	if int64(len(data)) != info.Bytes {
		return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("%d bytes, the manifest says %d", len(data), info.Bytes)}
	}
	if c := crc32.Checksum(data, iox.Castagnoli); c != info.CRC32C {
		return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("CRC32C %08x, the manifest says %08x", c, info.CRC32C)}
	}
	var n int64
	if encoding == encodingGob {
		payload, _, err := frame.Decode(data, name, frame.KindRecords, recordsVersion)
		if err != nil {
			return err
		}
		dec := gob.NewDecoder(bytes.NewReader(payload))
		for {
			var t T
			if err := dec.Decode(&t); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("record %d does not decode: %v", n, err)}
			}
			if n++; n%checkEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := emit(t); err != nil {
				return err
			}
		}
	} else {
		r := parquet.NewGenericReader[T](bytes.NewReader(data))
		defer r.Close()
		buf := make([]T, parquetBatch)
		for {
			k, err := r.Read(buf)
			for i := range k {
				if err := emit(buf[i]); err != nil {
					return err
				}
			}
			n += int64(k)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return &storage.CorruptError{Object: name, Offset: -1, Reason: "parquet: " + err.Error()}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	if n != info.Records {
		return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("%d records, the manifest says %d", n, info.Records)}
	}
	return nil
}
