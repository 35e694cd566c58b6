package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/parquet-go/parquet-go"
)

// ioPair nests a struct inside a record, as a Parquet group.
type ioPair = Pair[string, int64]

// ioRec has one field of every kind the round trips must keep.
type ioRec struct {
	Name  string    `json:"name" parquet:"name"`
	N     int64     `json:"n" parquet:"n"`
	Score float64   `json:"score" parquet:"score"`
	OK    bool      `json:"ok" parquet:"ok"`
	At    time.Time `json:"at" parquet:"at"`
	Tag   ioPair    `json:"tag" parquet:"tag"`
}

func ioRecs(n int) []ioRec {
	out := make([]ioRec, n)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range out {
		out[i] = ioRec{
			Name:  fmt.Sprintf("rec-%04d", i),
			N:     int64(i) * 1_000_003,
			Score: float64(i) / 7,
			OK:    i%3 == 0,
			At:    base.Add(time.Duration(i) * 1_234_567_891), // nanoseconds survive
			Tag:   KV(fmt.Sprint("k", i%5), int64(-i)),
		}
	}
	return out
}

func equalIORecs(t *testing.T, got, want []ioRec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.N != w.N || g.Score != w.Score || g.OK != w.OK || !g.At.Equal(w.At) || g.Tag != w.Tag {
			t.Fatalf("record %d = %+v, want %+v", i, g, w)
		}
	}
}

// ioWriteFile writes a test input file and returns its path.
func ioWriteFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ioSession is a test session whose log goes to buf (nil: nowhere).
func ioSession(t *testing.T, buf *ioLog, parallelism int) *Session {
	var h slog.Handler = slog.DiscardHandler
	if buf != nil {
		h = slog.NewTextHandler(buf, nil)
	}
	return newTestSession(t, Options{Parallelism: parallelism, Logger: slog.New(h)})
}

// ioLog is a bytes.Buffer for a logger: slog's handlers serialise
// their writes, so it only needs to be read after the action.
type ioLog struct{ bytes.Buffer }

func ExampleReadJSONL() {
	ctx := context.Background()
	s, _ := NewSession(Options{Logger: slog.New(slog.DiscardHandler)})
	defer s.Close(ctx)

	type Order struct {
		ID       string  `json:"id"`
		Customer string  `json:"customer"`
		Amount   float64 `json:"amount"`
	}
	orders, err := ReadJSONL[Order](s, "testdata/io/orders/*.jsonl", ReadOptions{SkipBadRecords: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(orders.Explain())
	totals, err := ReduceByKey(Map(orders, func(o Order) Pair[string, float64] { return KV(o.Customer, o.Amount) }),
		func(a, b float64) float64 { return a + b }, 1).Collect(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range totals {
		fmt.Printf("%s %.2f\n", t.Key, t.Value)
	}
	fmt.Println(orders.BadRecords())
	// Output:
	// ReadJSONL testdata/io/orders/*.jsonl (2 files) [2 partitions]
	// ada 44.50
	// bob 7.00
	// cy 3.00
	// 1 bad record skipped; first: testdata/io/orders/2026-02.jsonl line 2: invalid character 'x' looking for beginning of value
}

func TestJSONLRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := ioSession(t, nil, 3)
	want := ioRecs(2500)
	dir := t.TempDir()
	rep, err := FromSlice(s, want, 4).WriteJSONL(ctx, dir, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 4 || rep.Records != int64(len(want)) {
		t.Fatalf("WriteReport = %+v", rep)
	}
	pattern := filepath.Join(dir, "part-*.jsonl")
	back, err := ReadJSONL[ioRec](s, pattern, ReadOptions{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if back.NumPartitions() != 4 {
		t.Fatalf("NumPartitions = %d, want one per file (4)", back.NumPartitions())
	}
	if want := fmt.Sprintf("ReadJSONL %s (4 files) [4 partitions]\n", pattern); back.Explain() != want {
		t.Fatalf("Explain = %q, want %q", back.Explain(), want)
	}
	got, err := back.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equalIORecs(t, got, want)
	if n := back.BadRecords().Count(); n != 0 {
		t.Fatalf("BadRecords().Count() = %d on clean input", n)
	}
}

func TestParquetRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := ioSession(t, nil, 3)
	want := ioRecs(9000) // 3 partitions of 3000 rows: several batches of 1024 each
	for _, tc := range []struct {
		opts  WriteOptions
		codec string
	}{
		{WriteOptions{}, "SNAPPY"},
		{WriteOptions{Compression: "zstd"}, "ZSTD"},
		{WriteOptions{Compression: "none", RowGroupBytes: 16 << 10}, "UNCOMPRESSED"}, // many row groups
	} {
		t.Run(tc.codec, func(t *testing.T) {
			dir := t.TempDir()
			rep, err := FromSlice(s, want, 3).WriteParquet(ctx, dir, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Files != 3 || rep.Records != int64(len(want)) || rep.Bytes <= 0 {
				t.Fatalf("WriteReport = %+v", rep)
			}
			var size int64
			for p := range 3 {
				fi, err := os.Stat(filepath.Join(dir, fmt.Sprintf("part-%05d.parquet", p)))
				if err != nil {
					t.Fatal(err)
				}
				size += fi.Size()
			}
			if size != rep.Bytes {
				t.Fatalf("WriteReport.Bytes = %d, files hold %d", rep.Bytes, size)
			}
			f, pf, err := openParquet(filepath.Join(dir, "part-00001.parquet"))
			if err != nil {
				t.Fatal(err)
			}
			md := pf.Metadata()
			f.Close()
			if codec := md.RowGroups[0].Columns[0].MetaData.Codec.String(); codec != tc.codec {
				t.Fatalf("codec = %s, want %s", codec, tc.codec)
			}
			if tc.opts.RowGroupBytes > 0 && len(md.RowGroups) < 2 {
				t.Fatalf("RowGroupBytes %d gave %d row groups, want several", tc.opts.RowGroupBytes, len(md.RowGroups))
			}
			back, err := ReadParquet[ioRec](s, filepath.Join(dir, "*.parquet"), ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := back.Collect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			equalIORecs(t, got, want)
			if !strings.HasPrefix(back.Explain(), "ReadParquet ") || !strings.Contains(back.Explain(), "(3 files) [3 partitions]") {
				t.Fatalf("Explain:\n%s", back.Explain())
			}
		})
	}
}

// TestParquetRowsDoNotShareMemory reads rows with slices, maps and
// pointers: each record must own them, even though the reader decodes
// batch after batch into one buffer.
func TestParquetRowsDoNotShareMemory(t *testing.T) {
	type rich struct {
		ID   int64            `parquet:"id"`
		Tags []string         `parquet:"tags,list"`
		Attr map[string]int64 `parquet:"attr"`
		Note *string          `parquet:"note,optional"`
	}
	var want []rich
	for i := range 5000 {
		r := rich{ID: int64(i)}
		if i%3 != 1 {
			r.Tags = []string{fmt.Sprint("t", i), "x"}
			r.Attr = map[string]int64{fmt.Sprint("a", i): int64(i)}
			note := fmt.Sprint("note", i)
			r.Note = &note
		}
		want = append(want, r)
	}
	dir := t.TempDir()
	s := ioSession(t, nil, 2)
	if _, err := FromSlice(s, want, 2).WriteParquet(context.Background(), dir, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := ReadParquet[rich](s, filepath.Join(dir, "part-*.parquet"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || !slices.Equal(g.Tags, w.Tags) || !maps.Equal(g.Attr, w.Attr) || (g.Note == nil) != (w.Note == nil) || g.Note != nil && *g.Note != *w.Note {
			t.Fatalf("row %d = %+v, want %+v", i, g, w)
		}
	}
}

type ioPerson struct {
	Name     string
	Age      uint8
	Score    float32
	Member   bool
	Joined   time.Time
	Tier     int16  `csv:"tier_code"`
	Internal string `csv:"-"`
}

func TestReadCSV(t *testing.T) {
	ctx := context.Background()
	s := ioSession(t, nil, 2)
	d, err := ReadCSV[ioPerson](s, "testdata/io/people.csv", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []ioPerson{
		{"Ada Lovelace", 36, 99.5, true, time.Date(1851, 6, 1, 0, 0, 0, 0, time.UTC), 7, ""},
		{"Babbage, Charles", 79, 88.25, false, time.Date(1871, 10, 18, 11, 30, 0, 0, time.UTC), 200, ""},
		{`Grace "Amazing" Hopper`, 85, 100, true, time.Date(1944, 8, 7, 0, 0, 0, 0, time.UTC), 0, ""},
	}
	if !slices.EqualFunc(got, want, func(a, b ioPerson) bool {
		return a.Name == b.Name && a.Age == b.Age && a.Score == b.Score && a.Member == b.Member && a.Joined.Equal(b.Joined) && a.Tier == b.Tier
	}) {
		t.Fatalf("ReadCSV = %+v\nwant %+v", got, want)
	}
	if d.Explain() != "ReadCSV testdata/io/people.csv (1 file) [1 partition]\n" {
		t.Fatalf("Explain = %q", d.Explain())
	}
}

// ioRecordError runs an action and returns the *RecordError it failed with.
func ioRecordError[T any](t *testing.T, d *Dataset[T]) *RecordError {
	t.Helper()
	_, err := d.Collect(context.Background())
	var re *RecordError
	if !errors.As(err, &re) {
		t.Fatalf("Collect: err = %v, want a *RecordError", err)
	}
	if !strings.Contains(err.Error(), "ReadOptions.SkipBadRecords") {
		t.Fatalf("error does not say how to skip bad records: %v", err)
	}
	return re
}

func TestBadJSONLLineFailsFastNamingFileAndLine(t *testing.T) {
	dir := t.TempDir()
	s := ioSession(t, nil, 2)
	ioWriteFile(t, dir, "a.jsonl", `{"name":"ok","n":1}`+"\n")
	b := ioWriteFile(t, dir, "b.jsonl", `{"name":"ok","n":1}`+"\n\n"+`{"name":"ok","n":2}`+"\n"+`{"name": x}`+"\n"+`{"name":"later"}`+"\n")
	d, err := ReadJSONL[ioRec](s, filepath.Join(dir, "*.jsonl"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	re := ioRecordError(t, d)
	if re.File != b || re.Line != 4 || re.RowGroup != -1 {
		t.Fatalf("RecordError = %+v, want %s line 4", re, b)
	}
	if want := fmt.Sprintf("dataset: %s line 4: invalid character 'x' looking for beginning of value", b); !strings.HasPrefix(re.Error(), want) {
		t.Fatalf("Error() = %q, want it to start %q", re.Error(), want)
	}

	// Trailing data, null, a type mismatch (naming the field), and, in
	// strict mode, an unknown field.
	for _, tc := range []struct {
		line, column string
		strict       bool
		msg          string
	}{
		{`{"name":"a"} {"name":"b"}`, "", false, "after top-level value"},
		{`null`, "", false, "null is not a record"},
		{`{"name":"a","n":"seven"}`, "n", false, "string"},
		{`{"name":"a","extra":1}`, "", false, ""},
		{`{"name":"a","extra":1}`, "extra", true, "unknown field"},
		{`{"name":"a"} x`, "", true, "after top-level value"},
	} {
		p := ioWriteFile(t, t.TempDir(), "c.jsonl", `{"name":"first"}`+"\n"+tc.line+"\n")
		d, err := ReadJSONL[ioRec](s, p, ReadOptions{Strict: tc.strict})
		if err != nil {
			t.Fatal(err)
		}
		if tc.msg == "" {
			if n, err := d.Count(context.Background()); err != nil || n != 2 {
				t.Fatalf("%s: Count = %d, %v; want 2 records", tc.line, n, err)
			}
			continue
		}
		re := ioRecordError(t, d)
		if re.Line != 2 || re.Column != tc.column || !strings.Contains(re.Err.Error(), tc.msg) {
			t.Fatalf("%s (strict %v): RecordError = %+v (%v), want line 2 column %q, %q", tc.line, tc.strict, re, re.Err, tc.column, tc.msg)
		}
	}
}

func TestBadCSVRowsFailFastNamingFileLineAndColumn(t *testing.T) {
	dir := t.TempDir()
	s := ioSession(t, nil, 2)
	header := "name,age,score,member,joined,tier_code\n"
	good := "Ada,36,1.5,true,2026-01-01T00:00:00Z,1\n"
	for _, tc := range []struct {
		name, row    string
		column, want string
	}{
		{"toowide.csv", "Bob,40,2,false,2026-01-01T00:00:00Z,2,extra\n", "", "7 fields, but the header has 6"},
		{"tooshort.csv", "Bob,40\n", "", "2 fields, but the header has 6"},
		{"notanint.csv", "Bob,forty,2,false,2026-01-01T00:00:00Z,2\n", "age", `parsing "forty": invalid syntax`},
		{"overflow.csv", "Bob,256,2,false,2026-01-01T00:00:00Z,2\n", "age", "value out of range"},
		{"notatime.csv", "Bob,40,2,false,yesterday,2\n", "joined", "cannot parse"},
		{"notabool.csv", "Bob,40,2,maybe,2026-01-01T00:00:00Z,2\n", "member", "invalid syntax"},
		{"quote.csv", "Bob,4\"0,2,false,2026-01-01T00:00:00Z,2\n", "", "bare \""},
	} {
		p := ioWriteFile(t, dir, tc.name, header+good+good+tc.row+good)
		d, err := ReadCSV[ioPerson](s, p, ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		re := ioRecordError(t, d)
		if re.File != p || re.Line != 4 || re.Column != tc.column || !strings.Contains(re.Error(), tc.want) {
			t.Fatalf("%s: RecordError = %+v (%v), want line 4 column %q, %q", tc.name, re, re, tc.column, tc.want)
		}
		if tc.column != "" && !strings.Contains(re.Error(), fmt.Sprintf("%s line 4 column %s: ", p, tc.column)) {
			t.Fatalf("%s: message does not name file, line and column: %v", tc.name, re)
		}
	}
}

func TestCSVHeaderMustMatchTheRecordType(t *testing.T) {
	dir := t.TempDir()
	s := ioSession(t, nil, 1)
	ok := ioWriteFile(t, dir, "a.csv", "name,age,score,member,joined,tier_code\n")
	unknown := ioWriteFile(t, dir, "b.csv", "name,age,score,member,joined,tier_code,colour\n")
	if _, err := ReadCSV[ioPerson](s, filepath.Join(dir, "*.csv"), ReadOptions{}); err == nil ||
		!strings.Contains(err.Error(), unknown) || !strings.Contains(err.Error(), `column "colour"`) {
		t.Fatalf("header with an unknown column: err = %v", err)
	}
	missing := ioWriteFile(t, dir, "c.csv", "name,age,score,member,joined\n")
	if _, err := ReadCSV[ioPerson](s, missing, ReadOptions{}); err == nil ||
		!strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), `"tier_code"`) {
		t.Fatalf("header without a field's column: err = %v", err)
	}
	if _, err := ReadCSV[ioPerson](s, ok, ReadOptions{}); err != nil {
		t.Fatalf("header only: %v", err)
	}
	empty := ioWriteFile(t, dir, "d.csv", "")
	if _, err := ReadCSV[ioPerson](s, empty, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "header") {
		t.Fatalf("empty file: err = %v", err)
	}
	type withMap struct{ M map[string]int }
	if _, err := ReadCSV[withMap](s, ok, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "field M") {
		t.Fatalf("unsupported field type: err = %v", err)
	}
}

func TestEmptyGlobIsAnErrorNamingThePattern(t *testing.T) {
	s := ioSession(t, nil, 1)
	pattern := filepath.Join(t.TempDir(), "nothing-*.jsonl")
	_, err1 := ReadJSONL[ioRec](s, pattern, ReadOptions{})
	_, err2 := ReadCSV[ioPerson](s, pattern, ReadOptions{})
	_, err3 := ReadParquet[ioRec](s, pattern, ReadOptions{})
	for _, err := range []error{err1, err2, err3} {
		if err == nil || !strings.Contains(err.Error(), pattern) {
			t.Fatalf("err = %v, want one naming %s", err, pattern)
		}
	}
}

// ioWriteParquet writes records to a local Parquet file.
func ioWriteParquet[T any](t *testing.T, path string, recs []T, opts ...parquet.WriterOption) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, opts...)
	if _, err := w.Write(recs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParquetSchemaMismatchIsRefusedUpFront(t *testing.T) {
	type narrow struct {
		Name string `parquet:"name"`
		N    int64  `parquet:"n"`
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "narrow.parquet")
	ioWriteParquet(t, p, []narrow{{"a", 1}})
	s := ioSession(t, nil, 1)

	type extra struct {
		Name  string  `parquet:"name"`
		N     int64   `parquet:"n"`
		Score float64 `parquet:"score"`
	}
	_, err := ReadParquet[extra](s, p, ReadOptions{})
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "column score (DOUBLE)") || !strings.Contains(err.Error(), "not in the file") {
		t.Fatalf("missing column: err = %v", err)
	}
	type wrongType struct {
		Name string  `parquet:"name"`
		N    float64 `parquet:"n"`
	}
	_, err = ReadParquet[wrongType](s, p, ReadOptions{})
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "column n is INT64 INT(64,true) in the file but DOUBLE") {
		t.Fatalf("wrong type: err = %v", err)
	}
	type wrongLogical struct {
		Name string    `parquet:"name"`
		N    time.Time `parquet:"n"`
	}
	if _, err = ReadParquet[wrongLogical](s, p, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "TIMESTAMP") {
		t.Fatalf("int64 read as time.Time: err = %v", err)
	}
	type nested struct {
		Name string `parquet:"name"`
		Tag  ioPair `parquet:"tag"`
	}
	if _, err = ReadParquet[nested](s, p, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "column tag.key") {
		t.Fatalf("missing nested column: err = %v", err)
	}
	// Fewer columns than the file is fine: the others are not read.
	type subset struct {
		N int64 `parquet:"n"`
	}
	d, err := ReadParquet[subset](s, p, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d.Collect(context.Background()); err != nil || len(got) != 1 || got[0].N != 1 {
		t.Fatalf("subset = %v, %v", got, err)
	}
	if _, err := ReadParquet[int](s, p, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "struct") {
		t.Fatalf("non-struct T: err = %v", err)
	}
	notParquet := ioWriteFile(t, dir, "fake.parquet", "not parquet at all")
	if _, err := ReadParquet[narrow](s, notParquet, ReadOptions{}); err == nil || !strings.Contains(err.Error(), notParquet) {
		t.Fatalf("not a Parquet file: err = %v", err)
	}
}

// TestParquetConversions reads a file written by another writer's types:
// exact widenings are read, and those parquet-go would get wrong, or that
// would lose values, are refused up front.
func TestParquetConversions(t *testing.T) {
	type source struct {
		At  time.Time `parquet:"at,timestamp(microsecond)"`
		I32 int32     `parquet:"i32"`
		U32 uint32    `parquet:"u32"`
		U8  uint8     `parquet:"u8"`
		F32 float32   `parquet:"f32"`
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	p := filepath.Join(t.TempDir(), "other.parquet")
	ioWriteParquet(t, p, []source{{at, -5, 4_000_000_000, 250, 1.5}})
	s := ioSession(t, nil, 1)

	type widened struct {
		At  time.Time `parquet:"at"` // nanoseconds
		I32 int64     `parquet:"i32"`
		U32 uint32    `parquet:"u32"`
		U8  uint16    `parquet:"u8"`
		F32 float64   `parquet:"f32"`
	}
	d, err := ReadParquet[widened](s, p, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Collect(context.Background())
	if err != nil || len(got) != 1 {
		t.Fatalf("Collect = %v, %v", got, err)
	}
	if g := got[0]; !g.At.Equal(at) || g.I32 != -5 || g.U32 != 4_000_000_000 || g.U8 != 250 || g.F32 != 1.5 {
		t.Fatalf("widened = %+v", g)
	}

	refuse := func(name, column string, read func() error) {
		t.Helper()
		if err := read(); err == nil || !strings.Contains(err.Error(), "column "+column+" is ") {
			t.Fatalf("%s: err = %v, want column %s refused", name, err, column)
		}
	}
	type u32AsU64 struct {
		U32 uint64 `parquet:"u32"`
	}
	refuse("uint32 into uint64 (parquet-go sign-extends it)", "u32", func() error {
		_, err := ReadParquet[u32AsU64](s, p, ReadOptions{})
		return err
	})
	type u32AsI64 struct {
		U32 int64 `parquet:"u32"`
	}
	refuse("uint32 into int64", "u32", func() error {
		_, err := ReadParquet[u32AsI64](s, p, ReadOptions{})
		return err
	})
	type i32AsI8 struct {
		I32 int8 `parquet:"i32"`
	}
	refuse("int32 into int8", "i32", func() error {
		_, err := ReadParquet[i32AsI8](s, p, ReadOptions{})
		return err
	})
	type i32AsU32 struct {
		I32 uint32 `parquet:"i32"`
	}
	refuse("int32 into uint32", "i32", func() error {
		_, err := ReadParquet[i32AsU32](s, p, ReadOptions{})
		return err
	})
	type atAsInt struct {
		At int64 `parquet:"at"`
	}
	refuse("timestamp into int64", "at", func() error {
		_, err := ReadParquet[atAsInt](s, p, ReadOptions{})
		return err
	})
	type f32AsString struct {
		F32 string `parquet:"f32"`
	}
	refuse("float into string", "f32", func() error {
		_, err := ReadParquet[f32AsString](s, p, ReadOptions{})
		return err
	})
}

// ioCorruptParquet writes recs in two row groups, uncompressed, and flips
// bytes in the middle of column col's chunk in row group 0.
func ioCorruptParquet(t *testing.T, path string, recs []ioRec, col int) {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[ioRec](&buf, parquet.Compression(&parquet.Uncompressed))
	half := len(recs) / 2
	if _, err := w.Write(recs[:half]); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(recs[half:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	md := pf.Metadata().RowGroups[0].Columns[col].MetaData
	mid := md.DataPageOffset + md.TotalCompressedSize*3/4
	for i := range int64(4) {
		data[mid+i] ^= 0xff
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptParquetRowGroupIsNamed(t *testing.T) {
	dir := t.TempDir()
	recs := ioRecs(3000)
	p := filepath.Join(dir, "corrupt.parquet")
	ioCorruptParquet(t, p, recs, 0) // column "name"
	s := ioSession(t, nil, 1)
	d, err := ReadParquet[ioRec](s, p, ReadOptions{})
	if err != nil {
		t.Fatal(err) // the footer is fine
	}
	re := ioRecordError(t, d)
	if re.File != p || re.RowGroup != 0 || re.Column != "name" || re.Line != 0 {
		t.Fatalf("RecordError = %+v (%v), want %s row group 0 column name", re, re, p)
	}

	// Skipping drops the rest of row group 0 and reads row group 1 whole.
	var log ioLog
	s = ioSession(t, &log, 1)
	d, err = ReadParquet[ioRec](s, p, ReadOptions{SkipBadRecords: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bad := d.BadRecords()
	if int64(len(got))+bad.Count() != int64(len(recs)) || bad.Count() == 0 {
		t.Fatalf("read %d records and skipped %d, of %d", len(got), bad.Count(), len(recs))
	}
	equalIORecs(t, got, append(slices.Clone(recs[:len(got)-len(recs)/2]), recs[len(recs)/2:]...))
	if sm := bad.Samples(); len(sm) != 1 || sm[0].RowGroup != 0 || sm[0].Column != "name" {
		t.Fatalf("Samples = %+v", sm)
	}
	if !strings.Contains(log.String(), "corrupt.parquet") {
		t.Fatalf("no warning logged:\n%s", log.String())
	}
}

func TestSkipBadRecordsCountsEachOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := ioWriteFile(t, dir, "a.jsonl", `{"name":"a1"}`+"\n"+`{"name":`+"\n"+`{"name":"a3"}`+"\n")
	b := ioWriteFile(t, dir, "b.jsonl", `oops`+"\n"+`{"name":"b2"}`+"\n"+`[]`+"\n"+`{"name":"b4"}`+"\n")
	ioWriteFile(t, dir, "c.jsonl", `{"name":"c1"}`+"\n")
	var log ioLog
	s := ioSession(t, &log, 3)
	d, err := ReadJSONL[ioRec](s, filepath.Join(dir, "*.jsonl"), ReadOptions{SkipBadRecords: true, MaxSampleBadRecords: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r := d.BadRecords(); r == nil || r.Count() != 0 {
		t.Fatalf("before any action: BadRecords = %v", r)
	}
	names := func() []string {
		got, err := Map(d, func(r ioRec) string { return r.Name }).Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := names(); !slices.Equal(got, []string{"a1", "a3", "b2", "b4", "c1"}) {
		t.Fatalf("good records = %v", got)
	}
	r := d.BadRecords()
	check := func(when string) {
		t.Helper()
		if r.Count() != 3 {
			t.Fatalf("%s: Count = %d, want 3", when, r.Count())
		}
		sm := r.Samples()
		if len(sm) != 2 || sm[0].File != a || sm[0].Line != 2 || sm[1].File != b || sm[1].Line != 1 {
			t.Fatalf("%s: Samples = %+v, want %s line 2 and %s line 1", when, sm, a, b)
		}
	}
	check("after one action")
	if s := r.String(); !strings.HasPrefix(s, fmt.Sprintf("3 bad records skipped; first: %s line 2: ", a)) || !strings.Contains(s, fmt.Sprintf("; %s line 1: invalid character 'o'", b)) {
		t.Fatalf("String() = %q", s)
	}
	// Recomputing every partition (another action), or part of one (a
	// consumer that stops early), must not count a record twice or forget one.
	if n, err := d.Count(ctx); err != nil || n != 5 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	check("after a second action")
	err = d.ForEachPartition(ctx, func(ctx context.Context, part int, recs iter.Seq2[ioRec, error]) error {
		for range recs {
			break
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check("after a partial pass")
	warnings := strings.Count(log.String(), "skipped bad records")
	if warnings != 2 || !strings.Contains(log.String(), "file="+a) || !strings.Contains(log.String(), "file="+b) || !strings.Contains(log.String(), "count=2") {
		t.Fatalf("want one warning per partition with bad records (2), got %d:\n%s", warnings, log.String())
	}
	if Map(d, func(r ioRec) int { return 0 }).BadRecords() != nil {
		t.Fatal("a transformation of a source has a bad-record report")
	}
	if FromSlice(s, []int{1}, 1).BadRecords() != nil {
		t.Fatal("FromSlice has a bad-record report")
	}
}

// TestBadRecordReportsAreNotLeaked checks that the registry of reports
// drops a source's entry once the source is garbage.
func TestBadRecordReportsAreNotLeaked(t *testing.T) {
	s := ioSession(t, nil, 1)
	key := func() weak.Pointer[node] {
		d, err := ReadJSONL[ioRec](s, "testdata/io/orders/*.jsonl", ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.BadRecords() == nil {
			t.Fatal("a source has no report")
		}
		return weak.Make(d.n)
	}()
	for range 200 {
		runtime.GC()
		if _, ok := badRecordReports.Load(key); !ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the report of an unreachable source is still registered")
}

func TestSkipBadCSVRecords(t *testing.T) {
	dir := t.TempDir()
	p := ioWriteFile(t, dir, "p.csv", "name,age,score,member,joined,tier_code\n"+
		"Ada,36,1.5,true,2026-01-01T00:00:00Z,1\n"+
		"Bob,x,1.5,true,2026-01-01T00:00:00Z,1\n"+
		"Cy,36,1.5,true,2026-01-01T00:00:00Z,1,9\n"+
		"Di,36,1.5,true,2026-01-01T00:00:00Z,1\n")
	s := ioSession(t, nil, 1)
	d, err := ReadCSV[ioPerson](s, p, ReadOptions{SkipBadRecords: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Collect(context.Background())
	if err != nil || len(got) != 2 || got[0].Name != "Ada" || got[1].Name != "Di" {
		t.Fatalf("Collect = %+v, %v", got, err)
	}
	sm := d.BadRecords().Samples()
	if d.BadRecords().Count() != 2 || len(sm) != 2 || sm[0].Line != 3 || sm[0].Column != "age" || sm[1].Line != 4 || sm[1].Column != "" {
		t.Fatalf("report = %v, samples %+v", d.BadRecords(), sm)
	}
}

// ioOpenFiles lists this process's open files under dir (Linux).
func ioOpenFiles(t *testing.T, dir string) []string {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var out []string
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, dir) {
			out = append(out, target)
		}
	}
	return out
}

func TestSourcesCloseFilesAndStopWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	recs := ioRecs(20_000)
	s := ioSession(t, nil, 2)
	if _, err := FromSlice(s, recs, 2).WriteJSONL(context.Background(), filepath.Join(dir, "j"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := FromSlice(s, recs, 2).WriteParquet(context.Background(), filepath.Join(dir, "p"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("name,age,score,member,joined,tier_code\n")
	for range 20_000 {
		csv.WriteString("Ada,36,1.5,true,2026-01-01T00:00:00Z,1\n")
	}
	ioWriteFile(t, dir, "p.csv", csv.String())
	ioWriteFile(t, dir, "q.csv", csv.String())

	jsonl, err := ReadJSONL[ioRec](s, filepath.Join(dir, "j", "part-*"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pq, err := ReadParquet[ioRec](s, filepath.Join(dir, "p", "part-*"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ReadCSV[ioPerson](s, filepath.Join(dir, "*.csv"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancelAfter := func(n int64) (context.Context, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var seen atomic.Int64
		return ctx, func() {
			if seen.Add(1) == n {
				cancel()
			}
		}
	}
	run := func(name string, count func(ctx context.Context, tick func()) error) {
		ctx, tick := cancelAfter(100)
		if err := count(ctx, tick); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: err = %v, want context.Canceled", name, err)
		}
		if err := count(context.Background(), func() {}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	run("jsonl", func(ctx context.Context, tick func()) error {
		_, err := Map(jsonl, func(r ioRec) ioRec { tick(); return r }).Count(ctx)
		return err
	})
	run("parquet", func(ctx context.Context, tick func()) error {
		_, err := Map(pq, func(r ioRec) ioRec { tick(); return r }).Count(ctx)
		return err
	})
	run("csv", func(ctx context.Context, tick func()) error {
		_, err := Map(cs, func(r ioPerson) ioPerson { tick(); return r }).Count(ctx)
		return err
	})
	for _, d := range []interface {
		ForEachPartition(context.Context, func(context.Context, int, iter.Seq2[ioRec, error]) error) error
	}{jsonl, pq} {
		if err := d.ForEachPartition(context.Background(), func(ctx context.Context, part int, recs iter.Seq2[ioRec, error]) error {
			for range recs {
				break
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Stopping early from inside (above), and a fail-fast error, close
	// the file as well.
	bad := ioWriteFile(t, dir, "bad.jsonl", `{"name":"a"}`+"\n"+"garbage\n")
	badDS, _ := ReadJSONL[ioRec](s, bad, ReadOptions{})
	if _, err := badDS.Count(context.Background()); err == nil {
		t.Fatal("bad input read without error")
	}
	if open := ioOpenFiles(t, dir); len(open) > 0 {
		t.Fatalf("files left open: %v", open)
	}
}
