package dataset

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// reqEvent is a clickstream event whose user and time are required.
type reqEvent struct {
	User   string    `json:"user" csv:"user" parquet:"user" cairn:"required"`
	TS     time.Time `json:"ts" csv:"ts" parquet:"ts" cairn:"required"`
	Amount int64     `json:"amount" csv:"amount" parquet:"amount"`
}

const reqTS = `"2026-01-01T00:00:03Z"`

// reqSkipped reads d in skip mode and returns the good records and the
// bad ones' samples.
func reqSkipped[T any](t *testing.T, d *Dataset[T]) ([]T, []RecordError) {
	t.Helper()
	got, err := d.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return got, d.BadRecords().Samples()
}

// A JSONL record without a required field (absent or null) is a bad
// record naming file, line and field; a present zero value is not missing.
func TestJSONLRequiredFields(t *testing.T) {
	dir := t.TempDir()
	p := ioWriteFile(t, dir, "e.jsonl", strings.Join([]string{
		`{"user":"a","ts":` + reqTS + `,"amount":1}`,
		`{}`,
		`{"user":"a"}`,
		`{"user":null,"ts":` + reqTS + `}`,
		`{"ts":` + reqTS + `,"amount":5}`,
		`{"user":"","ts":` + reqTS + `,"amount":0}`, // present, if empty: not missing
		`{"User":"b","TS":` + reqTS + `}`,           // encoding/json matches keys in any case
	}, "\n")+"\n")
	s := ioSession(t, nil, 1)

	d, err := ReadJSONL[reqEvent](s, p, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	re := ioRecordError(t, d)
	if re.File != p || re.Line != 2 || re.Column != "user" || !errors.Is(re, ErrMissingField) {
		t.Fatalf("RecordError = %+v, want %s line 2 column user, ErrMissingField", re, p)
	}
	if want := fmt.Sprintf(`%s line 2 column user: required fields "user", "ts" are missing or null`, p); !strings.Contains(re.Error(), want) {
		t.Fatalf("Error() = %q, want it to say %q", re.Error(), want)
	}

	d, _ = ReadJSONL[reqEvent](s, p, ReadOptions{SkipBadRecords: true})
	got, bad := reqSkipped(t, d)
	if users := recUsers(got); !slices.Equal(users, []string{"a", "", "b"}) {
		t.Fatalf("good records %q, want a, \"\" and b", users)
	}
	type loc struct {
		line int64
		col  string
	}
	var locs []loc
	for _, b := range bad {
		locs = append(locs, loc{b.Line, b.Column})
	}
	if want := []loc{{2, "user"}, {3, "ts"}, {4, "user"}, {5, "user"}}; !slices.Equal(locs, want) || d.BadRecords().Count() != 4 {
		t.Fatalf("bad records %v (count %d), want %v", locs, d.BadRecords().Count(), want)
	}
}

func recUsers(recs []reqEvent) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.User
	}
	return out
}

// ReadOptions.Required does for an untagged type what the tag does; it
// takes Go names and the format's names, and refuses others.
func TestRequiredByOption(t *testing.T) {
	type plain struct {
		User   string    `json:"user"`
		TS     time.Time `json:"ts"`
		Amount int64
	}
	p := ioWriteFile(t, t.TempDir(), "e.jsonl", `{"user":"a","ts":`+reqTS+`}`+"\n"+`{"user":"b"}`+"\n")
	s := ioSession(t, nil, 1)
	d, err := ReadJSONL[plain](s, p, ReadOptions{Required: []string{"User", "ts"}})
	if err != nil {
		t.Fatal(err)
	}
	re := ioRecordError(t, d)
	if re.Line != 2 || re.Column != "ts" || !strings.Contains(re.Error(), "ReadOptions.Required") {
		t.Fatalf("RecordError = %v, want line 2 column ts, saying why it is required", re)
	}
	if _, err := ReadJSONL[plain](s, p, ReadOptions{Required: []string{"user_id"}}); err == nil || !strings.Contains(err.Error(), `"user_id"`) {
		t.Fatalf("an unknown required name: err = %v, want one naming it", err)
	}
	if _, err := ReadJSONL[map[string]any](s, p, ReadOptions{Required: []string{"user"}}); err == nil {
		t.Fatal("Required over a map type: no error")
	}
}

// A cairn tag that would be ignored, or that cannot be met, is an error
// when the source is made, not a check that silently never happens.
func TestBadCairnTagsAreRefused(t *testing.T) {
	type typo struct {
		User string `cairn:"requird"`
	}
	type inner struct {
		ID string `cairn:"required"`
	}
	type nested struct {
		In []inner
	}
	type hidden struct {
		User string `json:"-" csv:"-" cairn:"required"`
		N    int
	}
	p := ioWriteFile(t, t.TempDir(), "e.jsonl", "{}\n")
	s := ioSession(t, nil, 1)
	for name, err := range map[string]error{
		"typo":        second(ReadJSONL[typo](s, p, ReadOptions{})),
		"nested":      second(ReadJSONL[nested](s, p, ReadOptions{})),
		"json:-":      second(ReadJSONL[hidden](s, p, ReadOptions{})),
		"csv:-":       second(NewFileDecoder[hidden]("csv", ReadOptions{})),
		"parquet any": second(NewFileDecoder[nested]("parquet", ReadOptions{Required: []string{"In"}})),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "cairn") && !strings.Contains(err.Error(), "required") {
			t.Errorf("%s: err = %v, want one about the required field", name, err)
		}
	}
}

func second[A any](_ A, err error) error { return err }

// Invalid UTF-8 in a JSONL line is a bad record naming file, line and
// field; with AllowInvalidUTF8 it reads as encoding/json reads it.
func TestJSONLInvalidUTF8(t *testing.T) {
	p := ioWriteFile(t, t.TempDir(), "e.jsonl", `{"user":"a","ts":`+reqTS+`}`+"\n"+
		`{"user":"a`+"\xff"+`b","ts":`+reqTS+`}`+"\n"+
		`{"user":"a`+"\xfe"+`b","ts":`+reqTS+`}`+"\n")
	s := ioSession(t, nil, 1)
	d, err := ReadJSONL[reqEvent](s, p, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	re := ioRecordError(t, d)
	if re.File != p || re.Line != 2 || re.Column != "user" || !errors.Is(re, ErrInvalidUTF8) ||
		!strings.Contains(re.Error(), p+` line 2 column user: invalid UTF-8 in the value of "user" (byte 11 of the line)`) ||
		!strings.Contains(re.Error(), "AllowInvalidUTF8") {
		t.Fatalf("RecordError = %v, want %s line 2 column user, invalid UTF-8, saying how to accept it", re, p)
	}
	d, _ = ReadJSONL[reqEvent](s, p, ReadOptions{AllowInvalidUTF8: true})
	got, err := d.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if users := recUsers(got); !slices.Equal(users, []string{"a", "a\uFFFDb", "a\uFFFDb"}) {
		t.Fatalf("with AllowInvalidUTF8: users %q", users)
	}
}

// The field of invalid UTF-8 in a JSON line is named by its path.
func TestJSONInvalidUTF8Path(t *testing.T) {
	for _, tc := range []struct{ line, path string }{
		{`{"user":"x` + "\xff" + `"}`, "user"},
		{`{"a":1,"b":{"c":[1,"ok",{"d":"` + "\xc3" + `"}]}}`, "b.c[2].d"},
		{`{"a":["x","y` + "\x80" + `"]}`, "a[1]"},
		{`{"us` + "\xff" + `er":1}`, "us\uFFFDer"},
		{`["` + "\xff" + `"]`, "[0]"},
	} {
		col, err := jsonInvalidUTF8([]byte(tc.line))
		if col != tc.path || !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("%q: field %q (%v), want %q", tc.line, col, err, tc.path)
		}
	}
}

// CSV: an empty required column and invalid UTF-8 are bad records naming
// file, line and column; with AllowInvalidUTF8, invalid bytes read as U+FFFD.
func TestCSVRequiredAndInvalidUTF8(t *testing.T) {
	dir := t.TempDir()
	p := ioWriteFile(t, dir, "e.csv", "user,ts,amount\n"+
		"a,2026-01-01T00:00:03Z,1\n"+
		",2026-01-01T00:00:03Z,2\n"+
		"a\xffb,2026-01-01T00:00:03Z,3\n"+
		"c,2026-01-01T00:00:03Z,\n") // amount is not required, but an empty int does not parse
	s := ioSession(t, nil, 1)
	d, err := ReadCSV[reqEvent](s, p, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	re := ioRecordError(t, d)
	if re.File != p || re.Line != 3 || re.Column != "user" || !errors.Is(re, ErrMissingField) || !strings.Contains(re.Error(), `required field "user" is empty`) {
		t.Fatalf("RecordError = %v, want line 3 column user empty", re)
	}
	d, _ = ReadCSV[reqEvent](s, p, ReadOptions{SkipBadRecords: true})
	got, bad := reqSkipped(t, d)
	if len(got) != 1 || len(bad) != 3 || bad[1].Line != 4 || bad[1].Column != "user" || !errors.Is(bad[1].Err, ErrInvalidUTF8) {
		t.Fatalf("good %v, bad %v; want 1 good and line 4 column user invalid UTF-8 among 3 bad", got, bad)
	}
	d, _ = ReadCSV[reqEvent](s, p, ReadOptions{SkipBadRecords: true, AllowInvalidUTF8: true})
	got, _ = reqSkipped(t, d)
	if users := recUsers(got); !slices.Equal(users, []string{"a", "a\uFFFDb"}) {
		t.Fatalf("with AllowInvalidUTF8: users %q", users)
	}
}

// pqOptional is reqEvent as another tool may write it: user nullable.
type pqOptional struct {
	User   *string   `parquet:"user,optional"`
	TS     time.Time `parquet:"ts"`
	Amount int64     `parquet:"amount"`
}

// Parquet: a null in a required column, and invalid UTF-8 in a string,
// are bad records naming file, row group, row and column.
func TestParquetRequiredAndInvalidUTF8(t *testing.T) {
	ts := time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)
	str := func(s string) *string { return &s }
	recs := []pqOptional{
		{str("a"), ts, 0}, {nil, ts, 1}, {str("b"), ts, 2}, // row group 0
		{str("c"), ts, 3}, {str("d\xffe"), ts, 4}, {nil, ts, 5}, // row group 1
		{str("f"), ts, 6},
	}
	p := filepath.Join(t.TempDir(), "e.parquet")
	ioWriteParquet(t, p, recs, parquet.MaxRowsPerRowGroup(3))
	s := ioSession(t, nil, 1)

	d, err := ReadParquet[reqEvent](s, p, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	re := ioRecordError(t, d)
	if re.File != p || re.RowGroup != 0 || re.Column != "user" || !errors.Is(re, ErrMissingField) ||
		!strings.Contains(re.Error(), `row group 0 column user: row 1 of the file: required field "user" is null`) {
		t.Fatalf("RecordError = %v, want row group 0 column user, row 1 null", re)
	}

	d, _ = ReadParquet[reqEvent](s, p, ReadOptions{SkipBadRecords: true})
	got, bad := reqSkipped(t, d)
	if users := recUsers(got); !slices.Equal(users, []string{"a", "b", "c", "f"}) {
		t.Fatalf("good records %q", users)
	}
	var where []string
	for _, b := range bad {
		where = append(where, fmt.Sprintf("%d/%s/%v", b.RowGroup, b.Column, errors.Is(b.Err, ErrInvalidUTF8)))
	}
	if want := []string{"0/user/false", "1/user/true", "1/user/false"}; !slices.Equal(where, want) || d.BadRecords().Count() != 3 {
		t.Fatalf("bad records %v (count %d), want %v", where, d.BadRecords().Count(), want)
	}
	if !strings.Contains(bad[1].Err.Error(), "row 4 of the file") {
		t.Fatalf("invalid UTF-8 error %q does not name the row", bad[1].Err)
	}

	d, _ = ReadParquet[reqEvent](s, p, ReadOptions{SkipBadRecords: true, AllowInvalidUTF8: true})
	got, _ = reqSkipped(t, d)
	if users := recUsers(got); !slices.Equal(users, []string{"a", "b", "c", "d\uFFFDe", "f"}) {
		t.Fatalf("with AllowInvalidUTF8: users %q", users)
	}
}

// FileDecoder takes the tags on its own: its bad callback gets the
// records without their required fields, and with invalid UTF-8, with
// their lines, and the counts add up.
func TestFileDecoderRequiredAndInvalidUTF8(t *testing.T) {
	p := ioWriteFile(t, t.TempDir(), "e.jsonl", `{}`+"\n"+
		`{"user":"a","ts":`+reqTS+`,"amount":1}`+"\n"+
		`{"ts":`+reqTS+`,"amount":2}`+"\n"+
		`{"user":"`+"\xff"+`","ts":`+reqTS+`}`+"\n"+
		`{"user":"b","ts":`+reqTS+`,"amount":3}`+"\n")
	dec, err := NewFileDecoder[reqEvent]("jsonl", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var good []reqEvent
	var lines []int64
	var count int64
	err = dec.Decode(context.Background(), p, func(e reqEvent) error { good = append(good, e); return nil },
		func(errs []RecordError, n int64) error {
			count += n
			for _, e := range errs {
				if e.File != p {
					t.Errorf("bad record of file %q, want %q", e.File, p)
				}
				lines = append(lines, e.Line)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if users := recUsers(good); !slices.Equal(users, []string{"a", "b"}) || !slices.Equal(lines, []int64{1, 3, 4}) || count != 3 {
		t.Fatalf("good %q, bad lines %v (count %d); want a and b, lines 1, 3 and 4", users, lines, count)
	}
	err = dec.Decode(context.Background(), p, func(reqEvent) error { return nil }, nil)
	var re *RecordError
	if !errors.As(err, &re) || re.Line != 1 || !errors.Is(err, ErrMissingField) {
		t.Fatalf("fail-fast Decode: err = %v, want line 1 missing field", err)
	}
}

// ReadJSONL of a pointer type checks the tags of the struct it points to.
func TestJSONLRequiredThroughPointer(t *testing.T) {
	p := ioWriteFile(t, t.TempDir(), "e.jsonl", `{"user":"a","ts":`+reqTS+`}`+"\n"+`{"user":"a"}`+"\n"+`[]`+"\n")
	d, err := ReadJSONL[*reqEvent](ioSession(t, nil, 1), p, ReadOptions{SkipBadRecords: true})
	if err != nil {
		t.Fatal(err)
	}
	got, bad := reqSkipped(t, d)
	if len(got) != 1 || len(bad) != 2 || bad[0].Line != 2 || bad[0].Column != "ts" || bad[1].Line != 3 {
		t.Fatalf("good %v, bad %+v; want 1 good, line 2 column ts missing, line 3 not an object", got, bad)
	}
}
