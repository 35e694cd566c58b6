package dataset

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// This file opens the decoders of the file sources (read.go) to packages
// that read input files one at a time on their own schedule, such as the
// streaming file source (stream.FileSource): the same formats, the same
// decoding and the same RecordError locations as ReadJSONL, ReadCSV and
// ReadParquet, without a Dataset around them.

// FileDecoder decodes whole input files of one format into records of T,
// exactly as ReadJSONL, ReadCSV or ReadParquet decode each of their files.
// Safe for concurrent use.
type FileDecoder[T any] struct {
	format  string
	checks  *recordChecks
	csv     []csvSpec
	parquet *parquet.Schema
}

// NewFileDecoder returns a decoder for format "jsonl", "csv" or "parquet".
// It checks T as the matching Read function does (CSV and Parquet need a
// struct type whose fields the format can hold), and takes T's required
// fields from its `cairn:"required"` tags, as the Read functions do. Of
// opts, Strict (JSONL only), Required and AllowInvalidUTF8 apply; bad
// records are the caller's to handle (Decode).
func NewFileDecoder[T any](format string, opts ReadOptions) (*FileDecoder[T], error) {
	d := &FileDecoder[T]{format: format}
	t := reflect.TypeFor[T]()
	var err error
	switch format {
	case "jsonl":
	case "csv":
		d.csv, err = csvFieldsOf(t)
	case "parquet":
		if t.Kind() != reflect.Struct {
			return nil, fmt.Errorf("dataset: Parquet needs a struct type, not %v", t)
		}
		d.parquet, err = parquetSchemaOf[T]("ReadParquet")
	default:
		return nil, fmt.Errorf("dataset: unknown file format %q; use \"jsonl\", \"csv\" or \"parquet\"", format)
	}
	if err != nil {
		return nil, err
	}
	if d.checks, err = newRecordChecks("decode "+format, t, format, opts, d.csv, d.parquet); err != nil {
		return nil, err
	}
	return d, nil
}

// Decode reads file and passes its records to emit, in file order. Bad
// records (see ReadJSONL, ReadCSV and ReadParquet for what is bad) go to
// bad, in file order relative to emit: the bad records found since the
// previous good record, with the number of records they stand for (one
// each in JSONL and CSV; in Parquet each error is a row group and the
// count includes its unread rows), before the next good record reaches
// emit. An error from bad or emit stops the read and is returned. With bad
// nil, the first bad record fails the read with its *RecordError.
//
// A CSV header that does not fit T, a file that cannot be opened and a
// Parquet file whose columns do not fit T are errors, not bad records.
func (d *FileDecoder[T]) Decode(ctx context.Context, file string, emit func(T) error, bad func(errs []RecordError, records int64) error) error {
	if bad == nil {
		bad = func(errs []RecordError, _ int64) error { return &errs[0] }
	}
	// The readers run in skip mode and keep every bad record as a sample;
	// the samples go to bad as soon as the next good record (or the end of
	// the file) shows that the reader went past them.
	t := newBadRecordReport(1, math.MaxInt).newPass(0, file, true)
	var handed int64 // of t.count
	drain := func() error {
		if t.count == handed {
			return nil
		}
		errs, n := t.samples, t.count-handed
		t.samples, handed = nil, t.count
		return bad(errs, n)
	}
	hooked := func(rec T) error {
		if err := drain(); err != nil {
			return err
		}
		return emit(rec)
	}
	var err error
	switch d.format {
	case "jsonl":
		err = readJSONLFile(ctx, file, d.checks, t, hooked)
	case "csv":
		err = readCSVFile(ctx, file, d.csv, d.checks, t, hooked)
	case "parquet":
		err = readParquetFile(ctx, file, d.parquet, d.checks, t, hooked)
	}
	if err != nil {
		return err
	}
	return drain()
}

// RawLines returns the text of the given 1-based lines of a text file,
// numbered as ReadJSONL and ReadCSV number them (a UTF-8 byte order mark
// at the start dropped, each line without its "\n" or "\r\n"). Lines past
// the end are left out of the map.
func RawLines(file string, lines []int64) (map[int64]string, error) {
	want := slices.Clone(lines)
	slices.Sort(want)
	want = slices.Compact(want)
	out := make(map[int64]string, len(want))
	if len(want) == 0 {
		return out, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("dataset: read %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	skipBOM(br)
	next := 0
	for line := int64(1); next < len(want); line++ {
		s, rerr := br.ReadString('\n')
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return nil, fmt.Errorf("dataset: read %s line %d: %w", file, line, rerr)
		}
		if rerr != nil && s == "" {
			break
		}
		if line == want[next] {
			out[line] = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
			next++
		}
		if rerr != nil {
			break
		}
	}
	return out, nil
}
