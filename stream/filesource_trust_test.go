package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

// fsParquet returns the bytes of a Parquet file of evs.
func fsParquet(t *testing.T, evs ...fileEvent) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[fileEvent](&buf)
	if _, err := w.Write(evs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Files that cannot be decoded at all fail the batch naming the file by
// default, and go whole to the dead-letter destination with DeadLetter:
// named, counted, the same object on a replay.
func TestFileSourceWholeFileToDeadLetter(t *testing.T) {
	ctx := context.Background()
	good := []fileEvent{{"u1", 1}, {"u2", 2}}
	pq := fsParquet(t, good...)
	for _, c := range []struct {
		name, format, bad string
		content           []byte
	}{
		{"empty CSV", "csv", "b.csv", nil},
		{"CSV with an extra header column", "csv", "b.csv", []byte("user,amount,extra\nu3,3,x\n")},
		{"truncated Parquet", "parquet", "b.parquet", pq[:len(pq)/2]},
		{"garbage Parquet", "parquet", "b.parquet", []byte("this is not a Parquet file at all, just some text\n")},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			goodFile := "a." + c.format
			if c.format == "csv" {
				fsWriteInput(t, dir, goodFile, "user,amount\nu1,1\nu2,2\n")
			} else {
				fsWriteInput(t, dir, goodFile, string(pq))
			}
			fsWriteInput(t, dir, c.bad, string(c.content))

			// By default: an error naming the file and the way out.
			src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: c.format, Partitions: 1}, storage.NewMem())
			fsAvailable(t, src)
			err := src.Read(ctx, 0, 0, 2, func(fileEvent) error { return nil })
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, c.bad)) || !strings.Contains(err.Error(), "DeadLetter") {
				t.Fatalf("without DeadLetter: err = %v, want one naming %s and DeadLetter", err, c.bad)
			}

			// With a dead-letter directory outside the checkpoint.
			dl := filepath.Join(t.TempDir(), "dead")
			var logs bytes.Buffer
			src = fsAttached[fileEvent](t, dir, FileSourceOptions{Format: c.format, Partitions: 1, DeadLetterLocation: dl,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}, storage.NewMem())
			fsAvailable(t, src)
			for attempt := range 2 { // a replay sets the file aside again, the same way
				if got := fsRead(t, src, 0, 0, 2); !reflect.DeepEqual(got, good) {
					t.Fatalf("attempt %d: records %v, want %v", attempt, got, good)
				}
				if n, f := src.DeadLetters(), src.DeadFiles(); n != 1 || f != 1 {
					t.Fatalf("attempt %d: DeadLetters() = %d, DeadFiles() = %d, want 1 and 1", attempt, n, f)
				}
				data, err := os.ReadFile(filepath.Join(dl, c.bad+".jsonl"))
				if err != nil {
					t.Fatalf("attempt %d: the dead-letter object of %s: %v", attempt, c.bad, err)
				}
				letters := fsDecodeLetters(t, data)
				if len(letters) != 1 || !letters[0].WholeFile || letters[0].File != filepath.Join(dir, c.bad) ||
					letters[0].Error == "" || letters[0].RecordsRead == nil || *letters[0].RecordsRead != 0 {
					t.Fatalf("attempt %d: dead letters %s", attempt, data)
				}
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), c.bad) {
				t.Errorf("no WARN naming the file set aside:\n%s", logs.String())
			}
			if _, err := os.Stat(filepath.Join(dl, goodFile+".jsonl")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a good file has a dead-letter object (%v)", err)
			}
		})
	}
}

// An error of the caller's emit is never taken for a bad file.
func TestFileSourceEmitErrorIsNotABadFile(t *testing.T) {
	dir := t.TempDir()
	fsWriteInput(t, dir, "a.jsonl", fsJSONL(fileEvent{"u1", 1}))
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1, DeadLetter: true}, storage.NewMem())
	fsAvailable(t, src)
	stop := errors.New("downstream failed")
	if err := src.Read(context.Background(), 0, 0, 1, func(fileEvent) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the emit error", err)
	}
	if src.DeadFiles() != 0 || src.DeadLetters() != 0 {
		t.Fatalf("an emit error was counted as a dead letter")
	}
}

// A file rewritten with the same size after it was taken is detected
// before its records are read, naming it.
func TestFileSourceSameSizeRewriteIsDetected(t *testing.T) {
	dir := t.TempDir()
	fsWriteInput(t, dir, "a.jsonl", fsJSONL(fileEvent{"u1", 1}))
	fsWriteInput(t, dir, "b.jsonl", fsJSONL(fileEvent{"u2", 2}))
	st := storage.NewMem()
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1}, st)
	fsAvailable(t, src)
	fsRead(t, src, 0, 0, 2)
	fsWriteInput(t, dir, "b.jsonl", fsJSONL(fileEvent{"u9", 9})) // same size, other bytes
	// A replay, in this process and in a restarted one.
	for _, s := range []*FileSource[fileEvent]{src, fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1}, st)} {
		var got []fileEvent
		err := s.Read(context.Background(), 0, 0, 2, func(e fileEvent) error { got = append(got, e); return nil })
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.jsonl")) || !strings.Contains(err.Error(), "CRC32C") ||
			!strings.Contains(err.Error(), "cairn source reread") {
			t.Fatalf("replay after a same-size rewrite: err = %v, want one naming b.jsonl, its CRC32C and reread", err)
		}
		if slices.Contains(got, fileEvent{"u9", 9}) {
			t.Fatalf("the rewritten record was read: %v", got)
		}
	}
}

// Entries logged before cairn recorded a CRC32C stay readable and are
// checked by size.
func TestFileSourceOldEntriesWithoutCRC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewMem()
	log, err := metalog.Open(ctx, st, "sources/0/files")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 150 { // more than CompactEvery: the first Available compacts them
		name := fmt.Sprintf("f%03d.jsonl", i)
		content := fsJSONL(fileEvent{fmt.Sprint("u", i), int64(i)})
		fsWriteInput(t, dir, name, content)
		entry := fmt.Sprintf(`{"name":%q,"size":%d,"modtime":"2026-01-01T00:00:00Z","partitions":1}`, name, len(content))
		if err := log.Add(ctx, int64(i), []byte(entry)); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1}, st)
	if got := src.Files(); !slices.Equal(got, want) {
		t.Fatalf("files of an old log: %d, want %d", len(got), len(want))
	}
	if off := fsAvailable(t, src); !slices.Equal(off, Offsets{150}) {
		t.Fatalf("offsets %v", off)
	}
	again := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1}, st)
	if got := again.Files(); !slices.Equal(got, want) {
		t.Fatalf("files after the old log was compacted: %d, want %d", len(got), len(want))
	}
	if got := fsRead(t, again, 0, 149, 150); !reflect.DeepEqual(got, []fileEvent{{"u149", 149}}) {
		t.Fatalf("read of an old entry: %v", got)
	}
}

// A missing input directory is an error naming it; files the pattern does
// not match are a WARN, once per name, naming the pattern.
func TestFileSourceMissingDirAndUnmatchedFiles(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "typo")
	src := fsAttached[fileEvent](t, missing, FileSourceOptions{Format: "jsonl"}, storage.NewMem())
	if _, err := src.Available(ctx); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Available on a missing directory: err = %v, want one naming it", err)
	}

	dir := t.TempDir()
	fsWriteInput(t, dir, "a.json", fsJSONL(fileEvent{"u1", 1}))
	fsWriteInput(t, dir, "b.jsonl", fsJSONL(fileEvent{"u2", 2}))
	fsWriteInput(t, dir, ".hidden.json", "x")
	var logs bytes.Buffer
	src = fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Logger: slog.New(slog.NewTextHandler(&logs, nil))}, storage.NewMem())
	for range 3 {
		fsAvailable(t, src)
	}
	if n := strings.Count(logs.String(), "a.json "); n != 1 {
		t.Fatalf("%d warnings about a.json, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), `pattern=*.jsonl`) {
		t.Fatalf("the warning does not name the pattern:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "hidden") || strings.Contains(logs.String(), "b.jsonl") {
		t.Fatalf("a hidden or taken file was warned about:\n%s", logs.String())
	}
}

// countingStorage counts Gets and Lists.
type countingStorage struct {
	storage.Storage
	gets, lists atomic.Int64
}

func (c *countingStorage) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.Storage.Get(ctx, name)
}

func (c *countingStorage) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	c.lists.Add(1)
	return c.Storage.List(ctx, prefix)
}

// A restart reads a bounded number of objects, whatever the number of
// files taken: the log is compacted every CompactEvery files.
func TestFileSourceRestartReadsBoundedObjects(t *testing.T) {
	ctx := context.Background()
	restartGets := func(files int) (int64, int64) {
		dir := t.TempDir()
		for i := range files {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d.jsonl", i)), []byte(fsJSONL(fileEvent{"u", int64(i)})), 0o644)
		}
		mem := storage.NewMem()
		opts := FileSourceOptions{Format: "jsonl", Partitions: 3, MaxFilesPerBatch: 997}
		src := fsAttached[fileEvent](t, dir, opts, mem)
		for {
			before := len(src.Files())
			fsAvailable(t, src)
			if len(src.Files()) == before {
				break
			}
		}
		c := &countingStorage{Storage: mem}
		again := fsAttached[fileEvent](t, dir, opts, c)
		if got := len(again.Files()); got != files {
			t.Fatalf("%d files: %d after a restart", files, got)
		}
		// Every file is still where it was.
		if got := fsRead(t, again, 2, 0, 1); !reflect.DeepEqual(got, []fileEvent{{"u", 2}}) {
			t.Fatalf("%d files: file 2 reads %v", files, got)
		}
		if got := fsRead(t, again, int((files-1)%3), int64((files-1)/3), int64((files-1)/3+1)); !reflect.DeepEqual(got, []fileEvent{{"u", int64(files - 1)}}) {
			t.Fatalf("%d files: the last file reads %v", files, got)
		}
		objs, _ := mem.List(ctx, "sources/0/")
		if len(objs) > 100+2 {
			t.Errorf("%d files: %d objects under sources/0/, want at most CompactEvery+2", files, len(objs))
		}
		return c.gets.Load(), c.lists.Load()
	}
	gets500, lists500 := restartGets(500)
	gets5000, lists5000 := restartGets(5000)
	t.Logf("restart: %d Gets, %d Lists with 500 files; %d Gets, %d Lists with 5000", gets500, lists500, gets5000, lists5000)
	if gets5000 > 100+2 || lists5000 > 4 {
		t.Fatalf("restart with 5000 files: %d Gets and %d Lists, want at most 102 and 4", gets5000, lists5000)
	}
}

// A compaction that is not what its name says is refused, naming it.
func TestFileSourceCompactionIsChecked(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for i := range 5 {
		fsWriteInput(t, dir, fmt.Sprintf("f%d.jsonl", i), fsJSONL(fileEvent{"u", int64(i)}))
	}
	st := storage.NewMem()
	src := fsAttached[fileEvent](t, dir, FileSourceOptions{Format: "jsonl", Partitions: 1, CompactEvery: 2}, st)
	fsAvailable(t, src)
	compactions, _ := metalog.Open(ctx, st, "sources/0/files-compact")
	k, ok := compactions.Latest()
	if !ok {
		t.Fatal("no compaction written")
	}
	data, err := compactions.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	// The same payload under the next name: a copy over another object.
	if err := compactions.Add(ctx, k+1, data); err != nil {
		t.Fatal(err)
	}
	again, _ := NewFileSource[fileEvent](dir, FileSourceOptions{Format: "jsonl", Partitions: 1})
	err = again.Attach(ctx, st, "sources/0")
	var ce *storage.CorruptError
	if !errors.As(err, &ce) || ce.Object != compactions.Object(k+1) || !strings.Contains(err.Error(), compactions.Object(k)) {
		t.Fatalf("attach with a copied compaction: err = %v, want a CorruptError naming %s", err, compactions.Object(k+1))
	}
}

// identity is the plan of the decision tests: the input as it is.
func identity(b *Batch, in *dataset.Dataset[fileEvent]) (*dataset.Dataset[fileEvent], error) {
	return in, nil
}

// fsRunQuery runs the identity query over dir until idle.
func fsRunQuery(t *testing.T, dir string, st storage.Storage, sink *MemorySink[fileEvent]) error {
	t.Helper()
	ctx := context.Background()
	src, err := NewFileSource[fileEvent](dir, FileSourceOptions{Format: "jsonl", Partitions: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	q, err := Start(ctx, src, identity, sink, Options{CheckpointStorage: st, Partitions: 1, Trigger: Trigger{UntilIdle: true},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer q.Close(ctx)
	return q.Run(ctx)
}

func users(evs []fileEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.User)
	}
	sort.Strings(out)
	return out
}

// A file that fails every attempt of a batch can be skipped; a fixed file
// can be read again; neither changes what a committed batch read, and a
// replay follows the decision.
func TestFileSourceSkipAndReread(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewMem()
	sink := NewMemorySink[fileEvent]("out")
	fsWriteInput(t, dir, "a.jsonl", fsJSONL(fileEvent{"a", 1}))
	fsWriteInput(t, dir, "b.jsonl", fsJSONL(fileEvent{"b", 2})+"{not json\n")
	for range 2 { // every attempt fails
		if err := fsRunQuery(t, dir, st, sink); err == nil || !strings.Contains(err.Error(), "b.jsonl line 2") {
			t.Fatalf("run with a bad file: err = %v", err)
		}
	}
	if _, err := SkipFile(ctx, st, "nope.jsonl"); err == nil || !strings.Contains(err.Error(), "nope.jsonl") {
		t.Fatalf("skip of a file never taken: err = %v", err)
	}
	d, err := SkipFile(ctx, st, filepath.Join(dir, "b.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != ActionSkip || d.File != "b.jsonl" || d.Seq != 1 || d.Batch != 0 || !d.Pending || d.Object != "sources/0/decisions/0" {
		t.Fatalf("decision %+v", d)
	}
	if again, err := SkipFile(ctx, st, "b.jsonl"); err != nil || !again.Existing {
		t.Fatalf("a second skip: %+v, %v; want the existing decision", again, err)
	}
	if err := fsRunQuery(t, dir, st, sink); err != nil {
		t.Fatalf("run after the skip: %v", err)
	}
	if got := users(sink.All()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("output after the skip: %v, want a only", got)
	}
	// A committed batch's file cannot be skipped.
	if _, err := SkipFile(ctx, st, "a.jsonl"); err == nil || !strings.Contains(err.Error(), "committed") {
		t.Fatalf("skip of a file of a committed batch: err = %v", err)
	}

	// Fixed, b.jsonl is read again, by a new batch.
	fsWriteInput(t, dir, "b.jsonl", fsJSONL(fileEvent{"b", 2}, fileEvent{"b2", 3}))
	d, err = RereadFile(ctx, st, "b.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if d.RetakenAs == nil || *d.RetakenAs != 2 || !d.Committed || d.Batch != 0 {
		t.Fatalf("reread of a file of a committed batch: %+v", d)
	}
	if err := fsRunQuery(t, dir, st, sink); err != nil {
		t.Fatal(err)
	}
	if got := users(sink.All()); !slices.Equal(got, []string{"a", "b", "b2"}) {
		t.Fatalf("output after the reread: %v", got)
	}
	if b := sink.Batches(); !slices.Equal(b, []int64{0, 1}) {
		t.Fatalf("batches %v, want 0 and 1", b)
	}

	// A file of the pending batch that changed is read as it is now.
	fsWriteInput(t, dir, "c.jsonl", fsJSONL(fileEvent{"c", 1})+"{bad\n")
	if err := fsRunQuery(t, dir, st, sink); err == nil {
		t.Fatal("run with a bad c.jsonl succeeded")
	}
	fsWriteInput(t, dir, "c.jsonl", fsJSONL(fileEvent{"c", 1}, fileEvent{"c2", 1}))
	if err := fsRunQuery(t, dir, st, sink); err == nil || !strings.Contains(err.Error(), "cairn source reread") {
		t.Fatalf("run with a changed c.jsonl: err = %v, want one suggesting reread", err)
	}
	d, err = RereadFile(ctx, st, "c.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if d.RetakenAs != nil || !d.Pending || d.Batch != 2 || d.Seq != 3 {
		t.Fatalf("reread of a file of the pending batch: %+v", d)
	}
	if err := fsRunQuery(t, dir, st, sink); err != nil {
		t.Fatal(err)
	}
	if got := users(sink.Batch(2)); !slices.Equal(got, []string{"c", "c2"}) {
		t.Fatalf("batch 2 after the reread: %v", got)
	}

	// While the query runs, decisions are refused.
	src, _ := NewFileSource[fileEvent](dir, FileSourceOptions{Format: "jsonl", Partitions: 1})
	q, err := Start(ctx, src, identity, sink, Options{CheckpointStorage: st, Partitions: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if _, err := SkipFile(ctx, st, "c.jsonl"); !errors.Is(err, metalog.ErrLeaseHeld) {
		t.Fatalf("skip while the query runs: err = %v, want ErrLeaseHeld", err)
	}
}
