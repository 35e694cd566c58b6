package stream

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// fileEvent is the record of the file source and sink tests.
type fileEvent struct {
	User   string `json:"user" csv:"user" parquet:"user"`
	Amount int64  `json:"amount" csv:"amount" parquet:"amount"`
}

// fsWriteInput puts a file into an input directory the way the file source
// asks producers to: written under a hidden name, then renamed in.
func fsWriteInput(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, ".tmp-"+name)
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// fsJSONL renders events as JSON lines.
func fsJSONL(evs ...fileEvent) string {
	var b strings.Builder
	for _, e := range evs {
		data, _ := json.Marshal(e)
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}

func fsAttached[T any](t *testing.T, dir string, opts FileSourceOptions, st storage.Storage) *FileSource[T] {
	t.Helper()
	src, err := NewFileSource[T](dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Attach(context.Background(), st, "sources/0"); err != nil {
		t.Fatal(err)
	}
	return src
}

func fsAvailable[T any](t *testing.T, src *FileSource[T]) Offsets {
	t.Helper()
	off, err := src.Available(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return off
}

func fsRead[T any](t *testing.T, src *FileSource[T], p int, from, to int64) []T {
	t.Helper()
	var out []T
	if err := src.Read(context.Background(), p, from, to, func(r T) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFileSourceTakesFilesAsTheyAppear(t *testing.T) {
	dir := t.TempDir()
	st := storage.NewMem()
	opts := FileSourceOptions{Format: "jsonl", Partitions: 2}
	src := fsAttached[fileEvent](t, dir, opts, st)
	if got := src.Identity(); got != "files:jsonl:"+filepath.Join(dir, "*.jsonl") {
		t.Errorf("Identity() = %q", got)
	}
	if off := fsAvailable(t, src); !slices.Equal(off, Offsets{0, 0}) {
		t.Fatalf("empty directory: offsets %v, want [0 0]", off)
	}
	a := []fileEvent{{"u1", 1}, {"u2", 2}}
	b := []fileEvent{{"u3", 3}}
	fsWriteInput(t, dir, "b.jsonl", fsJSONL(b...))
	fsWriteInput(t, dir, "a.jsonl", fsJSONL(a...))
	// Never taken: a name the pattern does not match, files being written
	// (hidden names) and a directory.
	fsWriteInput(t, dir, "notes.txt", "not JSON\n")
	os.WriteFile(filepath.Join(dir, ".c.jsonl.inprogress"), []byte("{\"user\":"), 0o644)
	os.WriteFile(filepath.Join(dir, "_d.jsonl"), []byte("{\"user\":"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub.jsonl"), 0o755)
	if off := fsAvailable(t, src); !slices.Equal(off, Offsets{1, 1}) {
		t.Fatalf("two files: offsets %v, want [1 1]", off)
	}
	// Name order: a.jsonl is file 0 (partition 0), b.jsonl file 1 (partition 1).
	if got := src.Files(); !slices.Equal(got, []string{"a.jsonl", "b.jsonl"}) {
		t.Fatalf("files taken %q, want a.jsonl then b.jsonl", got)
	}
	if got := fsRead(t, src, 0, 0, 1); !reflect.DeepEqual(got, a) {
		t.Fatalf("partition 0: %v, want %v", got, a)
	}
	if got := fsRead(t, src, 1, 0, 1); !reflect.DeepEqual(got, b) {
		t.Fatalf("partition 1: %v, want %v", got, b)
	}
	// A later file with an earlier name is new all the same.
	c := []fileEvent{{"u4", 4}}
	d := []fileEvent{{"u5", 5}, {"u6", 6}}
	fsWriteInput(t, dir, "0.jsonl", fsJSONL(c...))
	fsWriteInput(t, dir, "d.jsonl", fsJSONL(d...))
	if off := fsAvailable(t, src); !slices.Equal(off, Offsets{2, 2}) {
		t.Fatalf("four files: offsets %v, want [2 2]", off)
	}
	if got := fsRead(t, src, 0, 0, 2); !reflect.DeepEqual(got, append(slices.Clone(a), c...)) {
		t.Fatalf("partition 0 [0, 2): %v", got)
	}

	// A restart (a new source on the same checkpoint) maps the offsets to
	// the same files, and does not take them again.
	again := fsAttached[fileEvent](t, dir, opts, st)
	if got := again.Files(); !slices.Equal(got, []string{"a.jsonl", "b.jsonl", "0.jsonl", "d.jsonl"}) {
		t.Fatalf("after restart: files %q", got)
	}
	if off := fsAvailable(t, again); !slices.Equal(off, Offsets{2, 2}) {
		t.Fatalf("after restart: offsets %v, want [2 2]", off)
	}
	if got := fsRead(t, again, 1, 1, 2); !reflect.DeepEqual(got, d) {
		t.Fatalf("after restart: partition 1 [1, 2): %v, want %v", got, d)
	}
	if err := again.Read(context.Background(), 0, 1, 3, func(fileEvent) error { return nil }); err == nil {
		t.Fatal("reading past the files taken succeeded")
	}

	// The number of partitions is pinned.
	other, _ := NewFileSource[fileEvent](dir, FileSourceOptions{Format: "jsonl", Partitions: 3})
	err := other.Attach(context.Background(), st, "sources/0")
	var pe *PinnedSettingError
	if !errors.As(err, &pe) || pe.Old != "2" || pe.New != "3" {
		t.Fatalf("attach with 3 partitions to a log of 2: err = %v, want a PinnedSettingError", err)
	}
}

func TestFileSourceMaxFilesPerBatch(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"e", "c", "a", "d", "b"} {
		fsWriteInput(t, dir, name+".jsonl", fsJSONL(fileEvent{name, 1}))
	}
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1, MaxFilesPerBatch: 2}, storage.NewMem())
	for _, want := range []int64{2, 4, 5, 5} {
		if off := fsAvailable(t, src); !slices.Equal(off, Offsets{want}) {
			t.Fatalf("offsets %v, want [%d]", off, want)
		}
	}
	var users []string
	for _, e := range fsRead(t, src, 0, 0, 5) {
		users = append(users, e.User)
	}
	if !slices.Equal(users, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("records in the order %q, want name order", users)
	}
}

func TestFileSourceChangedFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	fsWriteInput(t, dir, "a.jsonl", fsJSONL(fileEvent{"u1", 1}))
	fsWriteInput(t, dir, "b.jsonl", fsJSONL(fileEvent{"u2", 2}))
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1}, storage.NewMem())
	fsAvailable(t, src)
	os.Remove(filepath.Join(dir, "a.jsonl"))
	err := src.Read(context.Background(), 0, 0, 2, func(fileEvent) error { return nil })
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "a.jsonl")) || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("read of a removed file: err = %v, want an error naming it", err)
	}
	f, _ := os.OpenFile(filepath.Join(dir, "b.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(fsJSONL(fileEvent{"late", 9}))
	f.Close()
	err = src.Read(context.Background(), 0, 1, 2, func(fileEvent) error { return nil })
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.jsonl")) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("read of a file that grew: err = %v, want an error naming it", err)
	}
}

func TestFileSourceBadRecordFailsNamingFileAndLine(t *testing.T) {
	dir := t.TempDir()
	fsWriteInput(t, dir, "a.jsonl", fsJSONL(fileEvent{"u1", 1})+"{\"user\": \"u2\", \"amount\": \"two\"}\n"+fsJSONL(fileEvent{"u3", 3}))
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1}, storage.NewMem())
	fsAvailable(t, src)
	var got []fileEvent
	err := src.Read(context.Background(), 0, 0, 1, func(e fileEvent) error { got = append(got, e); return nil })
	var re *dataset.RecordError
	if !errors.As(err, &re) || re.File != filepath.Join(dir, "a.jsonl") || re.Line != 2 {
		t.Fatalf("err = %v, want a RecordError at a.jsonl line 2", err)
	}
	if !strings.Contains(err.Error(), "a.jsonl line 2") || !strings.Contains(err.Error(), "DeadLetter") {
		t.Fatalf("message %q does not say where and how to go on", err)
	}
	if !reflect.DeepEqual(got, []fileEvent{{"u1", 1}}) {
		t.Fatalf("records emitted before the failure: %v, want only the first", got)
	}
}

func TestFileSourceDeadLetter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bad2 := `{"user": "u2", "amount": "two"}`
	bad4 := `null`
	fsWriteInput(t, dir, "a.jsonl", fsJSONL(fileEvent{"u1", 1})+bad2+"\n"+fsJSONL(fileEvent{"u3", 3})+bad4+"\r\n"+fsJSONL(fileEvent{"u5", 5}))
	fsWriteInput(t, dir, "b.jsonl", fsJSONL(fileEvent{"u6", 6}))
	fsWriteInput(t, dir, "c.csv", "user,amount\nu7,7\nu8,eight\nu9,9,extra\nu10,10\n")
	st := storage.NewMem()
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1, DeadLetter: true}, st)
	fsAvailable(t, src)
	want := []fileEvent{{"u1", 1}, {"u3", 3}, {"u5", 5}, {"u6", 6}}
	if got := fsRead(t, src, 0, 0, 2); !reflect.DeepEqual(got, want) {
		t.Fatalf("good records %v, want %v", got, want)
	}
	obj := src.DeadLetterObject("a.jsonl")
	if obj != "sources/0/deadletter/a.jsonl.jsonl" {
		t.Errorf("dead-letter object %q", obj)
	}
	first, err := storage.GetBytes(ctx, st, obj)
	if err != nil {
		t.Fatal(err)
	}
	letters := fsDecodeLetters(t, first)
	if len(letters) != 2 {
		t.Fatalf("dead letters %+v, want 2", letters)
	}
	for i, w := range []struct {
		line   int64
		record string
	}{{2, bad2}, {4, bad4}} {
		l := letters[i]
		if l.File != filepath.Join(dir, "a.jsonl") || l.Line != w.line || l.Record != w.record || l.Error == "" {
			t.Errorf("dead letter %d: %+v, want line %d record %q", i, l, w.line, w.record)
		}
	}
	if _, err := storage.GetBytes(ctx, st, src.DeadLetterObject("b.jsonl")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a file without bad records has a dead-letter object (err %v)", err)
	}
	if n := src.DeadLetters(); n != 2 {
		t.Fatalf("DeadLetters() = %d, want 2", n)
	}
	// A replayed read writes the same object and counts nothing twice.
	fsRead(t, src, 0, 0, 1)
	if n := src.DeadLetters(); n != 2 {
		t.Fatalf("after a replayed read DeadLetters() = %d, want 2", n)
	}
	if again, _ := storage.GetBytes(ctx, st, obj); string(again) != string(first) {
		t.Fatalf("a replayed read wrote another dead-letter object:\n%s\nthen\n%s", first, again)
	}

	// CSV: the bad record's line as it is in the file.
	st = storage.NewMem()
	csvSrc := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "csv", Partitions: 1, DeadLetter: true}, st)
	fsAvailable(t, csvSrc)
	if got := fsRead(t, csvSrc, 0, 0, 1); !reflect.DeepEqual(got, []fileEvent{{"u7", 7}, {"u10", 10}}) {
		t.Fatalf("CSV good records %v", got)
	}
	data, _ := storage.GetBytes(ctx, st, csvSrc.DeadLetterObject("c.csv"))
	letters = fsDecodeLetters(t, data)
	if len(letters) != 2 || letters[0].Line != 3 || letters[0].Record != "u8,eight" || letters[0].Column != "amount" ||
		letters[1].Line != 4 || letters[1].Record != "u9,9,extra" {
		t.Fatalf("CSV dead letters %+v", letters)
	}
	if n := csvSrc.DeadLetters(); n != 2 {
		t.Fatalf("CSV DeadLetters() = %d, want 2", n)
	}
}

func fsDecodeLetters(t *testing.T, data []byte) []deadLetter {
	t.Helper()
	var out []deadLetter
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		var l deadLetter
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("dead-letter line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

func TestFileSourceParquet(t *testing.T) {
	dir := t.TempDir()
	want := []fileEvent{{"u1", 1}, {"u2", 2}, {"u3", 3}}
	f, err := os.Create(filepath.Join(dir, ".part-0.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[fileEvent](f)
	if _, err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f.Close()
	os.Rename(filepath.Join(dir, ".part-0.parquet"), filepath.Join(dir, "part-0.parquet"))
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "parquet"}, storage.NewMem())
	if off := fsAvailable(t, src); !slices.Equal(off, Offsets{1, 0, 0, 0}) {
		t.Fatalf("offsets %v, want one file in partition 0 of 4", off)
	}
	if got := fsRead(t, src, 0, 0, 1); !reflect.DeepEqual(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
}

func TestFileSourceOptionsAreChecked(t *testing.T) {
	for _, c := range []struct {
		opts FileSourceOptions
		want string
	}{
		{FileSourceOptions{}, "Format is required"},
		{FileSourceOptions{Format: "xml"}, `"xml"`},
		{FileSourceOptions{Format: "jsonl", Pattern: "sub/*.jsonl"}, "path separator"},
		{FileSourceOptions{Format: "jsonl", Pattern: "[a"}, "Pattern"},
		{FileSourceOptions{Format: "jsonl", Partitions: -1}, "Partitions"},
		{FileSourceOptions{Format: "jsonl", MaxFilesPerBatch: -1}, "MaxFilesPerBatch"},
	} {
		if _, err := NewFileSource[fileEvent](t.TempDir(), c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want one that mentions %s", c.opts, err, c.want)
		}
	}
	if _, err := NewFileSource[int](t.TempDir(), FileSourceOptions{Format: "csv"}); err == nil {
		t.Error("a CSV source of int was accepted")
	}
	src, _ := NewFileSource[fileEvent](t.TempDir(), FileSourceOptions{Format: "jsonl"})
	if _, err := src.Available(context.Background()); err == nil || !strings.Contains(err.Error(), "Attach") {
		t.Errorf("Available before Attach: err = %v", err)
	}
}
