package dataset

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// This file holds the file sources. Each makes one partition per input
// file, files in name order, so the partitioning (and every record's
// partition and position) is the same on every run over the same files.
// A partition opens its file when it is computed and closes it when it
// ends, however it ends.

// ReadJSONL reads JSON Lines files into a dataset: one JSON value per
// line, decoded into T with encoding/json; empty (or all-space) lines are
// skipped. pattern is a file path or a filepath.Glob pattern; each matching
// file is one partition, in name order. A pattern that matches nothing is
// an error naming it.
//
// A line that does not decode, has data after its value, or is the JSON
// null is a bad record; so is one without a required field of T (absent
// or null; see the package documentation, "Bad records") and, unless
// opts.AllowInvalidUTF8, one with invalid UTF-8; with opts.Strict, so is an
// object with a field that T does not have. By default the first bad
// record fails the action with a *RecordError naming the file and line
// (and the field, where there is one); with opts.SkipBadRecords it is
// skipped and counted in the dataset's BadRecords report.
//
// The files are read when an action runs, not by ReadJSONL.
func ReadJSONL[T any](s *Session, pattern string, opts ReadOptions) (*Dataset[T], error) {
	files, err := matchFiles("ReadJSONL", pattern)
	if err != nil {
		return nil, err
	}
	checks, err := newRecordChecks("ReadJSONL", reflect.TypeFor[T](), "jsonl", opts, nil, nil)
	if err != nil {
		return nil, err
	}
	return fileSource(s, "ReadJSONL", pattern, files, opts, func(ctx context.Context, file string, t *passTally, emit func(T) error) error {
		return readJSONLFile(ctx, file, checks, t, emit)
	}), nil
}

// ReadCSV reads CSV files (RFC 4180, comma-separated) into a dataset of
// structs T. pattern is a file path or a filepath.Glob pattern; each
// matching file is one partition, in name order; a pattern that matches
// nothing is an error naming it.
//
// Every file starts with a header line. A column maps to the exported
// field of T whose `csv:"name"` tag is the column's name or, for an
// untagged field, whose name equals it ignoring case; a field tagged
// `csv:"-"` is left out. Fields may be strings, integers and unsigned
// integers of any size, float32, float64, bool (strconv.ParseBool) and
// time.Time (RFC 3339). ReadCSV reads every header before it returns: a
// header column that names no field, a field with no column, or a field of
// another type is an error naming the file and the column (or field).
//
// A row with the wrong number of fields (file, line), a value that does
// not parse (file, line, column; an empty value parses only as a string),
// an empty value of a required field (file, line, column), a value that is
// not valid UTF-8 unless opts.AllowInvalidUTF8 (file, line, column) and a
// malformed quote are bad records: by default the first fails the action
// with a *RecordError; with opts.SkipBadRecords they are skipped and
// counted in the dataset's BadRecords report.
func ReadCSV[T any](s *Session, pattern string, opts ReadOptions) (*Dataset[T], error) {
	specs, err := csvFieldsOf(reflect.TypeFor[T]())
	if err != nil {
		return nil, err
	}
	files, err := matchFiles("ReadCSV", pattern)
	if err != nil {
		return nil, err
	}
	checks, err := newRecordChecks("ReadCSV", reflect.TypeFor[T](), "csv", opts, specs, nil)
	if err != nil {
		return nil, err
	}
	for _, file := range files {
		if err := checkCSVHeader(file, specs); err != nil {
			return nil, err
		}
	}
	return fileSource(s, "ReadCSV", pattern, files, opts, func(ctx context.Context, file string, t *passTally, emit func(T) error) error {
		return readCSVFile(ctx, file, specs, checks, t, emit)
	}), nil
}

// ReadParquet reads Parquet files into a dataset of structs T, with
// parquet.NewGenericReader[T]; T's Parquet schema is parquet.SchemaOf(new(T))
// (field names, or `parquet:"name"` tags). pattern is a file path or a
// filepath.Glob pattern; each matching file is one partition, in name
// order; a pattern that matches nothing is an error naming it.
//
// ReadParquet reads the footer of every file before it returns and checks
// that each column of T is in the file with a compatible type: the same
// nesting, and a type that reads into T's exactly: the same physical and
// logical type, a plain column that means what T's says (BYTE_ARRAY into
// a string, INT64 into an int64), a narrower signed integer into a wider
// one, FLOAT into float64, or a timestamp of any unit into a time.Time; not,
// say, an INT64 into a float64, a uint64 or a time.Time. A column missing
// or of another type is an error naming the file, the column and both
// types. Columns of the file that T lacks are not read.
//
// A row group that fails to decode is an error naming the file, the row
// group and, where it can be found, the column: by default it fails the
// action with a *RecordError; with opts.SkipBadRecords the rows of the row
// group not yet read are skipped, counted one bad record each in the
// dataset's BadRecords report, and reading goes on with the next row group.
// A row with a null in the column of a required field of T, or (unless
// opts.AllowInvalidUTF8) a string that is not valid UTF-8, is one bad
// record naming the file, the row group, the row (in the error, counting
// from 0 in the file) and the column.
func ReadParquet[T any](s *Session, pattern string, opts ReadOptions) (*Dataset[T], error) {
	if t := reflect.TypeFor[T](); t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("dataset: ReadParquet needs a struct type, not %v", t)
	}
	files, err := matchFiles("ReadParquet", pattern)
	if err != nil {
		return nil, err
	}
	want, err := parquetSchemaOf[T]("ReadParquet")
	if err != nil {
		return nil, err
	}
	checks, err := newRecordChecks("ReadParquet", reflect.TypeFor[T](), "parquet", opts, nil, want)
	if err != nil {
		return nil, err
	}
	for _, file := range files {
		if err := checkParquetFile(file, want); err != nil {
			return nil, err
		}
	}
	return fileSource(s, "ReadParquet", pattern, files, opts, func(ctx context.Context, file string, t *passTally, emit func(T) error) error {
		return readParquetFile(ctx, file, want, checks, t, emit)
	}), nil
}

// matchFiles expands a pattern into the files it names, sorted by name.
func matchFiles(op, pattern string) ([]string, error) {
	files, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("dataset: %s %q: %w", op, pattern, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("dataset: %s: no file matches %q", op, pattern)
	}
	slices.Sort(files)
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("dataset: %s: %w", op, err)
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("dataset: %s: %s matches %q and is a directory; match files only", op, f, pattern)
		}
	}
	return files, nil
}

// fileSource makes the dataset of a file source: one partition per file,
// with a bad-record report.
func fileSource[T any](s *Session, op, pattern string, files []string, opts ReadOptions, read func(ctx context.Context, file string, t *passTally, emit func(T) error) error) *Dataset[T] {
	label := fmt.Sprintf("%s %s (%d files)", op, pattern, len(files))
	if len(files) == 1 {
		label = fmt.Sprintf("%s %s (1 file)", op, pattern)
	}
	rep := newBadRecordReport(len(files), opts.maxSamples())
	logger := s.opts.Logger
	d := newDataset(s, label, len(files), nil, func(ctx context.Context, part int, emit func(T) error) error {
		t := rep.newPass(part, files[part], opts.SkipBadRecords)
		defer t.commit(logger, label)
		return read(ctx, files[part], t, emit)
	})
	registerBadRecords(d.n, rep)
	return d
}

var utf8BOM = []byte("\xef\xbb\xbf")

// skipBOM drops a UTF-8 byte order mark at the start of br (spreadsheets
// write one).
func skipBOM(br *bufio.Reader) {
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		br.Discard(len(utf8BOM))
	}
}

// ---- JSONL ----

func readJSONLFile[T any](ctx context.Context, file string, c *recordChecks, t *passTally, emit func(T) error) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("dataset: read %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	skipBOM(br)
	var long []byte // a line longer than the buffer, gathered
	for line := int64(1); ; line++ {
		b, rerr := br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			long = append(long[:0], b...)
			for errors.Is(rerr, bufio.ErrBufferFull) {
				b, rerr = br.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("dataset: read %s line %d: %w", file, line, rerr)
		}
		if rerr == io.EOF && len(b) == 0 {
			t.reachedEOF = true
			return nil
		}
		if line%checkEvery == 1 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		t.progress = line
		if b = bytes.TrimSpace(b); len(b) > 0 {
			rec, col, derr := decodeJSONLine[T](b, c)
			if derr != nil {
				if err := t.bad(RecordError{File: file, Line: line, RowGroup: -1, Column: col, Err: derr}, 1); err != nil {
					return err
				}
			} else if err := emit(rec); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			t.reachedEOF = true
			return nil
		}
	}
}

var jsonNull = []byte("null")

// decodeJSONLine decodes one line and checks it (c); on failure it also
// returns the field at fault, when it is known.
func decodeJSONLine[T any](b []byte, c *recordChecks) (T, string, error) {
	var rec T
	if bytes.Equal(b, jsonNull) {
		return rec, "", errors.New("null is not a record")
	}
	if !c.allowInvalidUTF8 && !utf8.Valid(b) {
		col, err := jsonInvalidUTF8(b)
		return rec, col, err
	}
	if !c.strict {
		if err := json.Unmarshal(b, &rec); err != nil {
			return rec, jsonField(err), err
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return rec, jsonField(err), err
		}
		if rest := bytes.TrimSpace(b[dec.InputOffset():]); len(rest) > 0 {
			return rec, "", fmt.Errorf("invalid character %q after top-level value", rest[0])
		}
	}
	col, err := c.checkJSON(b, reflect.ValueOf(&rec).Elem())
	return rec, col, err
}

// jsonField returns the field an encoding/json error is about, or "".
func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if u, uerr := strconv.Unquote(name); uerr == nil {
				return u
			}
		}
	}
	return ""
}

// ---- CSV ----

// csvSpec is a field of T that a CSV column fills.
type csvSpec struct {
	field  string // Go name, for messages
	tag    string // `csv:"name"`, or "" for an untagged field
	index  []int
	typ    reflect.Type
	decode func(s string, v reflect.Value) error
	// required: an empty value is a bad record; why says what made the
	// field required, for messages.
	required bool
	why      string
}

func (c csvSpec) matches(column string) bool {
	if c.tag != "" {
		return column == c.tag
	}
	return strings.EqualFold(column, c.field)
}

func (c csvSpec) want() string {
	if c.tag != "" {
		return strconv.Quote(c.tag)
	}
	return strconv.Quote(c.field) + " (any case)"
}

var timeType = reflect.TypeFor[time.Time]()

// csvFieldsOf lists the fields of T that CSV columns fill.
func csvFieldsOf(t reflect.Type) ([]csvSpec, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("dataset: ReadCSV needs a struct type, not %v", t)
	}
	var specs []csvSpec
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous && f.Type.Kind() == reflect.Struct && f.Type != timeType {
			continue // embedded structs contribute their promoted fields
		}
		for i := 1; i < len(f.Index); i++ {
			if t.FieldByIndex(f.Index[:i]).Type.Kind() == reflect.Pointer {
				return nil, fmt.Errorf("dataset: ReadCSV: field %s of %v is promoted through an embedded pointer, which CSV cannot fill; embed the struct by value", f.Name, t)
			}
		}
		tag, _, _ := strings.Cut(f.Tag.Get("csv"), ",")
		if tag == "-" {
			continue
		}
		dec := csvDecoder(f.Type)
		if dec == nil {
			return nil, fmt.Errorf("dataset: ReadCSV: field %s of %v is a %v; CSV fills strings, integers, floats, bools and time.Time (tag the field csv:\"-\" to leave it out)", f.Name, t, f.Type)
		}
		specs = append(specs, csvSpec{field: f.Name, tag: tag, index: f.Index, typ: f.Type, decode: dec})
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("dataset: ReadCSV: %v has no exported fields for CSV columns", t)
	}
	return specs, nil
}

// csvDecoder returns the parser of a field type, or nil if CSV cannot hold it.
func csvDecoder(t reflect.Type) func(string, reflect.Value) error {
	if t == timeType {
		return func(s string, v reflect.Value) error {
			tm, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
			if err != nil {
				return err
			}
			v.Set(reflect.ValueOf(tm))
			return nil
		}
	}
	switch t.Kind() {
	case reflect.String:
		return func(s string, v reflect.Value) error { v.SetString(s); return nil }
	case reflect.Bool:
		return func(s string, v reflect.Value) error {
			b, err := strconv.ParseBool(strings.TrimSpace(s))
			v.SetBool(b)
			return err
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(s string, v reflect.Value) error {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, t.Bits())
			v.SetInt(n)
			return err
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return func(s string, v reflect.Value) error {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, t.Bits())
			v.SetUint(n)
			return err
		}
	case reflect.Float32, reflect.Float64:
		return func(s string, v reflect.Value) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), t.Bits())
			v.SetFloat(f)
			return err
		}
	}
	return nil
}

// csvBinding fills a field from column col.
type csvBinding struct {
	col    int
	column string // header name, for messages
	spec   csvSpec
}

// bindCSVHeader maps the header's columns to fields: every column must
// fill one field, and every field must have one column.
func bindCSVHeader(file string, header []string, specs []csvSpec) ([]csvBinding, error) {
	var out []csvBinding
	used := make([]int, len(specs)) // 1 + column index
	for col, name := range header {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(specs, func(c csvSpec) bool { return c.matches(name) })
		if i < 0 {
			fields := make([]string, len(specs))
			for j, c := range specs {
				fields[j] = c.want()
			}
			return nil, fmt.Errorf("dataset: %s: column %q (column %d of the header) matches no field of the record type; fields take columns %s",
				file, name, col+1, strings.Join(fields, ", "))
		}
		if used[i] != 0 {
			return nil, fmt.Errorf("dataset: %s: columns %q and %q both fill field %s", file, header[used[i]-1], name, specs[i].field)
		}
		used[i] = col + 1
		out = append(out, csvBinding{col: col, column: name, spec: specs[i]})
	}
	for i, c := range specs {
		if used[i] == 0 {
			return nil, fmt.Errorf("dataset: %s: no column %s for field %s in the header %q", file, c.want(), c.field, strings.Join(header, ","))
		}
	}
	return out, nil
}

// openCSV opens a CSV file and reads and binds its header. The caller
// closes the file.
func openCSV(file string, specs []csvSpec) (*os.File, *csv.Reader, []csvBinding, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dataset: read %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	skipBOM(br)
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1 // a row of the wrong width is a bad record, not the end
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		f.Close()
		if err == io.EOF {
			return nil, nil, nil, fmt.Errorf("dataset: %s is empty: a CSV file needs a header line", file)
		}
		return nil, nil, nil, fmt.Errorf("dataset: %s: read the header: %w", file, err)
	}
	header = slices.Clone(header)
	bind, err := bindCSVHeader(file, header, specs)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	return f, r, bind, nil
}

func checkCSVHeader(file string, specs []csvSpec) error {
	f, _, _, err := openCSV(file, specs)
	if err != nil {
		return err
	}
	return f.Close()
}

func readCSVFile[T any](ctx context.Context, file string, specs []csvSpec, c *recordChecks, t *passTally, emit func(T) error) error {
	f, r, bind, err := openCSV(file, specs)
	if err != nil {
		return err
	}
	defer f.Close()
	width := len(bind)
	for n := 0; ; n++ {
		if n%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		row, err := r.Read()
		if err == io.EOF {
			t.reachedEOF = true
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return fmt.Errorf("dataset: read %s: %w", file, err)
			}
			t.progress = int64(pe.Line)
			if err := t.bad(RecordError{File: file, Line: int64(pe.StartLine), RowGroup: -1, Err: pe.Err}, 1); err != nil {
				return err
			}
			continue
		}
		line, _ := r.FieldPos(0)
		t.progress = int64(line)
		if len(row) != width {
			if err := t.bad(RecordError{File: file, Line: int64(line), RowGroup: -1,
				Err: fmt.Errorf("%d fields, but the header has %d", len(row), width)}, 1); err != nil {
				return err
			}
			continue
		}
		var rec T
		v := reflect.ValueOf(&rec).Elem()
		var bad *RecordError
		for _, b := range bind {
			val, err := c.csvValue(row[b.col], b)
			if err == nil {
				err = b.spec.decode(val, v.FieldByIndex(b.spec.index))
			}
			if err != nil {
				bad = &RecordError{File: file, Line: int64(line), RowGroup: -1, Column: b.column, Err: err}
				break
			}
		}
		if bad != nil {
			if err := t.bad(*bad, 1); err != nil {
				return err
			}
			continue
		}
		if err := emit(rec); err != nil {
			return err
		}
	}
}

// ---- Parquet ----

// openParquet opens a Parquet file and reads its footer. The caller closes
// the *os.File.
func openParquet(file string) (*os.File, *parquet.File, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("dataset: read %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("dataset: read %w", err)
	}
	pf, err := parquet.OpenFile(f, fi.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("dataset: %s is not a readable Parquet file: %w", file, err)
	}
	return f, pf, nil
}

// checkParquetFile checks, from the footer only, that every column of
// want is in the file with a compatible type.
func checkParquetFile(file string, want *parquet.Schema) error {
	f, pf, err := openParquet(file)
	if err != nil {
		return err
	}
	defer f.Close()
	return checkParquetSchema(file, want, pf.Schema())
}

func checkParquetSchema(file string, want, got *parquet.Schema) error {
	for _, path := range want.Columns() {
		col := strings.Join(path, ".")
		w, _ := want.Lookup(path...)
		g, ok := got.Lookup(path...)
		if !ok {
			var have []string
			for _, p := range got.Columns() {
				have = append(have, strings.Join(p, "."))
			}
			return fmt.Errorf("dataset: %s: column %s (%s) of the record type is not in the file; the file has %s",
				file, col, parquetTypeString(w), strings.Join(have, ", "))
		}
		if !parquetCompatible(w, g) {
			return fmt.Errorf("dataset: %s: column %s is %s in the file but %s in the record type",
				file, col, parquetTypeString(g), parquetTypeString(w))
		}
	}
	return nil
}

func parquetTypeString(c parquet.LeafColumn) string {
	t := c.Node.Type()
	s := t.Kind().String()
	if t.Kind() == parquet.FixedLenByteArray {
		s += fmt.Sprintf("(%d)", t.Length())
	}
	if lt := t.LogicalType(); lt != nil && lt.String() != "" {
		s += " " + lt.String()
	}
	switch {
	case c.MaxRepetitionLevel > 0:
		s = "repeated " + s
	case c.Node.Optional():
		s = "optional " + s
	}
	return s
}

// parquetCompatible reports whether a file column g reads into a column w
// of T without losing or changing values: the same nesting, and either the
// same physical type with logical types that agree (or a plain file column
// that means what T's annotation says), or a conversion parquet-go does
// exactly: a signed integer into a wider signed one, an unsigned one into
// a wider integer of the same physical type (parquet-go sign-extends an
// unsigned INT32 into INT64, so that one is refused), FLOAT into DOUBLE,
// and a timestamp of any unit into a time.Time.
func parquetCompatible(w, g parquet.LeafColumn) bool {
	wt, gt := w.Node.Type(), g.Node.Type()
	if w.MaxRepetitionLevel != g.MaxRepetitionLevel {
		return false
	}
	if wi, ok := parquetIntOf(wt); ok {
		gi, ok := parquetIntOf(gt)
		switch {
		case !ok:
			return false
		case gi.signed:
			return wi.signed && gi.bits <= wi.bits
		case wt.Kind() != gt.Kind():
			return false
		case wi.signed:
			return gi.bits < wi.bits
		default:
			return gi.bits <= wi.bits
		}
	}
	if isTimestamp(wt) && isTimestamp(gt) {
		return true
	}
	if wt.Kind() == parquet.Double && gt.Kind() == parquet.Float && logicalString(wt) == "" && logicalString(gt) == "" {
		return true
	}
	if wt.Kind() != gt.Kind() {
		return false
	}
	if wt.Kind() == parquet.FixedLenByteArray && wt.Length() != gt.Length() {
		return false
	}
	wl, gl := logicalString(wt), logicalString(gt)
	switch {
	case wl == gl, wl == "":
		return true
	case gl == "" && wt.Kind() == parquet.ByteArray:
		return wl == logicalString(parquet.String().Type()) // a plain BYTE_ARRAY holds strings
	}
	return false
}

type parquetInt struct {
	bits   int
	signed bool
}

// parquetIntOf describes an integer column: INT32 or INT64, plain or with
// an INT logical type (not a date, time, timestamp or decimal).
func parquetIntOf(t parquet.Type) (parquetInt, bool) {
	if k := t.Kind(); k != parquet.Int32 && k != parquet.Int64 {
		return parquetInt{}, false
	}
	lt := t.LogicalType()
	if lt == nil || lt.Value == nil {
		if t.Kind() == parquet.Int32 {
			return parquetInt{32, true}, true
		}
		return parquetInt{64, true}, true
	}
	if it, ok := lt.Value.(*format.IntType); ok {
		return parquetInt{int(it.BitWidth), it.IsSigned}, true
	}
	return parquetInt{}, false
}

func isTimestamp(t parquet.Type) bool {
	lt := t.LogicalType()
	if lt == nil {
		return false
	}
	_, ok := lt.Value.(*format.TimestampType)
	return ok
}

func logicalString(t parquet.Type) string {
	if lt := t.LogicalType(); lt != nil {
		return lt.String()
	}
	return ""
}

// parquetReadBatch is how many rows a read takes at once: the context is
// checked between batches.
const parquetReadBatch = checkEvery

func readParquetFile[T any](ctx context.Context, file string, want *parquet.Schema, c *recordChecks, t *passTally, emit func(T) error) error {
	f, pf, err := openParquet(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := checkParquetSchema(file, want, pf.Schema()); err != nil {
		return err // the file changed since the plan was made
	}
	// Row group boundaries, to name the row group of a failure.
	groups := pf.RowGroups()
	ends := make([]int64, len(groups))
	var total int64
	for i, g := range groups {
		total += g.NumRows()
		ends[i] = total
	}
	groupOf := func(row int64) int {
		i, _ := slices.BinarySearch(ends, row+1)
		return min(i, len(ends)-1)
	}

	var r *parquet.GenericReader[T]
	defer func() {
		if r != nil {
			r.Close()
		}
	}()
	open := func(at int64) error {
		return catchPanic("malformed Parquet file", func() error {
			if r != nil {
				r.Close()
			}
			r = parquet.NewGenericReader[T](pf)
			if at > 0 {
				return r.SeekToRow(at)
			}
			return nil
		})
	}
	if err := open(0); err != nil {
		return fmt.Errorf("dataset: %s: open a Parquet reader: %w", file, err)
	}
	// Rows where a required column is null, by row group: a row group's
	// are found before any of its rows is read.
	required := c.parquetColumns(pf.Schema())
	nullsOf := -1
	var nulls map[int64]requiredField

	buf := make([]T, parquetReadBatch)
	var pos int64 // rows delivered or skipped
	// skipGroup makes the rest of row group g, from pos, a bad record.
	skipGroup := func(g int, col string, cause error) error {
		end := ends[g]
		e := RecordError{File: file, RowGroup: g, Column: col,
			Err: fmt.Errorf("rows %d to %d of the file: %w", pos, end-1, cause)}
		if err := t.bad(e, end-pos); err != nil {
			return err
		}
		pos = end
		t.progress = pos
		if pos < total {
			if err := open(pos); err != nil {
				return fmt.Errorf("dataset: %s: seek to row group %d: %w", file, g+1, err)
			}
		}
		return nil
	}
	for pos < total {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := groupOf(pos)
		if g != nullsOf {
			var err error
			nullsOf = g
			if nulls, err = parquetNulls(groups[g], required); err != nil {
				if err := skipGroup(g, parquetFailingColumn(groups[g]), err); err != nil {
					return err
				}
				continue
			}
		}
		start := ends[g] - groups[g].NumRows()
		clear(buf) // Read reuses the slices and maps it finds in a slot: emitted records must keep theirs
		var n int
		rerr := catchPanic("malformed Parquet data", func() error {
			var err error
			n, err = r.Read(buf[:min(int64(len(buf)), ends[g]-pos)]) // within g, whose nulls are known
			return err
		})
		for i := range buf[:n] {
			row := pos + int64(i)
			if f, ok := nulls[row-start]; ok {
				e := RecordError{File: file, RowGroup: g, Column: f.name,
					Err: fmt.Errorf("row %d of the file: %w", row, missingFieldError([]string{f.name}, "null", f.why))}
				if err := t.bad(e, 1); err != nil {
					return err
				}
				continue
			}
			if len(c.texts) > 0 {
				if col, err := c.checkParquetText(reflect.ValueOf(&buf[i]).Elem()); err != nil {
					e := RecordError{File: file, RowGroup: g, Column: col, Err: fmt.Errorf("row %d of the file: %w", row, err)}
					if err := t.bad(e, 1); err != nil {
						return err
					}
					continue
				}
			}
			if err := emit(buf[i]); err != nil {
				return err
			}
		}
		pos += int64(n)
		t.progress = pos
		if rerr == io.EOF && pos >= total {
			break
		}
		if rerr == nil {
			if n == 0 {
				rerr = fmt.Errorf("no rows read at row %d of %d", pos, total)
			} else {
				continue
			}
		}
		if rerr == io.EOF {
			rerr = fmt.Errorf("the file ends at row %d, but its footer says %d rows", pos, total)
		}
		if err := skipGroup(groupOf(pos), parquetFailingColumn(groups[groupOf(pos)]), rerr); err != nil {
			return err
		}
	}
	t.reachedEOF = true
	return nil
}

// catchPanic runs fn and turns a panic into an error saying what failed:
// parquet-go panics on some malformed input and on Go types it cannot map,
// and a bad file or type must fail its partition or call, not the process.
func catchPanic(what string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s (parquet-go panicked: %v)", what, p)
		}
	}()
	return fn()
}

// parquetSchemaOf returns parquet.SchemaOf(new(T)), or an error for a type
// that Parquet cannot hold.
func parquetSchemaOf[T any](op string) (*parquet.Schema, error) {
	var schema *parquet.Schema
	err := catchPanic(fmt.Sprintf("dataset: %s: %v has no Parquet schema", op, reflect.TypeFor[T]()), func() error {
		schema = parquet.SchemaOf(new(T))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(schema.Columns()) == 0 {
		return nil, fmt.Errorf("dataset: %s: %v has no exported fields for Parquet columns", op, reflect.TypeFor[T]())
	}
	return schema, nil
}

// parquetFailingColumn finds the first column of a row group whose pages do
// not decode, to name it in an error; "" if none fails on its own.
func parquetFailingColumn(g parquet.RowGroup) string {
	paths := g.Schema().Columns()
	for i, cc := range g.ColumnChunks() {
		err := catchPanic("malformed Parquet data", func() error {
			pages := cc.Pages()
			defer pages.Close()
			values := make([]parquet.Value, 256)
			for {
				p, err := pages.ReadPage()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				vr := p.Values()
				for {
					_, err := vr.ReadValues(values)
					if err == io.EOF {
						break
					}
					if err != nil {
						parquet.Release(p)
						return err
					}
				}
				parquet.Release(p)
			}
		})
		if err != nil && i < len(paths) {
			return strings.Join(paths[i], ".")
		}
	}
	return ""
}
