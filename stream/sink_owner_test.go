package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

// Tests of the queries that write a file sink: a second query (refused,
// replace, append), a restart whose committed output lost a manifest, and
// the sink's location pinned in canonical form.

type sumRow = dataset.Pair[string, int64]

// ownerRun starts the end-to-end query (file source in, running sums) on
// checkpoint st with a file sink at out, runs it until idle and closes it.
func ownerRun(t *testing.T, in, out string, st storage.Storage, opts FileSinkOptions) error {
	t.Helper()
	ctx := context.Background()
	src, err := NewFileSource[fileEvent](in, FileSourceOptions{Format: "jsonl", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Format == "" {
		opts.Format = "jsonl"
	}
	sink, err := NewFileSink[sumRow](out, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	q, err := Start(ctx, src, fileSums, sink, fsQueryOptions(st))
	if err != nil {
		return err
	}
	defer q.Close(ctx)
	return q.Run(ctx)
}

// ownerRows returns what ReadFileSink reads, in order.
func ownerRows(t *testing.T, out string) []sumRow {
	t.Helper()
	rows, err := fsReadAll[sumRow](t, out)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// soloRows returns the rows a query over in writes to a sink of its own.
func soloRows(t *testing.T, in string) []sumRow {
	t.Helper()
	out := t.TempDir()
	if err := ownerRun(t, in, out, storage.NewMem(), FileSinkOptions{}); err != nil {
		t.Fatal(err)
	}
	return ownerRows(t, out)
}

func checkpointOf(t *testing.T, st storage.Storage) Metadata {
	t.Helper()
	m, err := ReadMetadata(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFileSinkSecondQuery: a query with a new checkpoint location over a
// sink another query wrote is refused, naming that query; with IfOwned
// "replace" the sink holds exactly the new query's output, and with
// "append" exactly both, the first query's then the second's.
func TestFileSinkSecondQuery(t *testing.T) {
	inA, inB := t.TempDir(), t.TempDir()
	fsClickFiles(t, inA, "a", 21, 5)
	fsClickFiles(t, inB, "b", 22, 3)
	rowsA, rowsB := soloRows(t, inA), soloRows(t, inB)
	if len(rowsA) == 0 || len(rowsB) == 0 {
		t.Fatalf("the solo runs wrote %d and %d rows", len(rowsA), len(rowsB))
	}

	t.Run("refused", func(t *testing.T) {
		out := t.TempDir()
		ckA, ckB := storage.NewMem(), storage.NewMem()
		if err := ownerRun(t, inA, out, ckA, FileSinkOptions{}); err != nil {
			t.Fatal(err)
		}
		err := ownerRun(t, inB, out, ckB, FileSinkOptions{})
		if !errors.Is(err, ErrSinkOwned) {
			t.Fatalf("a second query over the sink: err = %v, want ErrSinkOwned", err)
		}
		idA := checkpointOf(t, ckA).QueryID
		for _, w := range []string{idA, ckA.Location(), "IfOwned", `"replace"`, `"append"`} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("the error does not say %q: %v", w, err)
			}
		}
		if got := ownerRows(t, out); !reflect.DeepEqual(got, rowsA) {
			t.Fatalf("the refused query changed the sink: %d rows, want the first query's %d", len(got), len(rowsA))
		}
		// The owner still runs.
		if err := ownerRun(t, inA, out, ckA, FileSinkOptions{}); err != nil {
			t.Fatalf("the owner's restart: %v", err)
		}
	})

	t.Run("replace", func(t *testing.T) {
		out := t.TempDir()
		ckA, ckB := storage.NewMem(), storage.NewMem()
		if err := ownerRun(t, inA, out, ckA, FileSinkOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := ownerRun(t, inB, out, ckB, FileSinkOptions{IfOwned: SinkReplace}); err != nil {
			t.Fatal(err)
		}
		if got := ownerRows(t, out); !reflect.DeepEqual(got, rowsB) {
			t.Fatalf("after a replace: %d rows %v\nwant exactly the new query's %d %v", len(got), got, len(rowsB), rowsB)
		}
		for name := range fsFiles(t, out) {
			if !strings.HasPrefix(name, "_sink/") && !strings.HasPrefix(name, "owner-1/") {
				t.Errorf("%s of the replaced query is still there", name)
			}
		}
		// The owner (with the option still set) restarts as the owner; the
		// replaced query is refused.
		if err := ownerRun(t, inB, out, ckB, FileSinkOptions{IfOwned: SinkReplace}); err != nil {
			t.Fatal(err)
		}
		err := ownerRun(t, inA, out, ckA, FileSinkOptions{})
		if !errors.Is(err, ErrSinkOwned) || !strings.Contains(err.Error(), "replaced") {
			t.Fatalf("the replaced query's restart: err = %v, want ErrSinkOwned saying it was replaced", err)
		}
		if got := ownerRows(t, out); !reflect.DeepEqual(got, rowsB) {
			t.Fatalf("after the restarts: %d rows, want %d", len(got), len(rowsB))
		}
	})

	t.Run("append", func(t *testing.T) {
		out := t.TempDir()
		ckA, ckB := storage.NewMem(), storage.NewMem()
		if err := ownerRun(t, inA, out, ckA, FileSinkOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := ownerRun(t, inB, out, ckB, FileSinkOptions{IfOwned: SinkAppend}); err != nil {
			t.Fatal(err)
		}
		want := slices.Concat(rowsA, rowsB)
		if got := ownerRows(t, out); !reflect.DeepEqual(got, want) {
			t.Fatalf("after an append: %d rows\nwant the first query's %d then the second's %d", len(got), len(rowsA), len(rowsB))
		}
		// Both keep running, each in its namespace.
		for _, r := range []struct {
			in string
			ck storage.Storage
		}{{inA, ckA}, {inB, ckB}} {
			if err := ownerRun(t, r.in, out, r.ck, FileSinkOptions{IfOwned: SinkAppend}); err != nil {
				t.Fatal(err)
			}
		}
		if got := ownerRows(t, out); !reflect.DeepEqual(got, want) {
			t.Fatalf("after the restarts: %d rows, want %d", len(got), len(want))
		}
		ix, err := ReadFileSinkIndex(context.Background(), mustOpen(t, out))
		if err != nil {
			t.Fatal(err)
		}
		if len(ix.Owners) != 2 || ix.Owners[0].QueryID != checkpointOf(t, ckA).QueryID || ix.Owners[1].QueryID != checkpointOf(t, ckB).QueryID ||
			ix.Owners[1].Mode != ownerAppend || ix.Owners[1].Checkpoint != ckB.Location() {
			t.Fatalf("owner records: %+v", ix.Owners)
		}
	})
}

func mustOpen(t *testing.T, loc string) storage.Storage {
	t.Helper()
	st, err := storage.Open(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestFileSinkRestartRefusesLostManifest: a restart whose committed batch
// has no manifest is refused, naming it; readers warn about the gap.
func TestFileSinkRestartRefusesLostManifest(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	fsClickFiles(t, in, "a", 31, 6)
	ck := storage.NewMem()
	if err := ownerRun(t, in, out, ck, FileSinkOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(out, "_manifests", "1")); err != nil {
		t.Fatal(err)
	}
	err := ownerRun(t, in, out, ck, FileSinkOptions{})
	if !errors.Is(err, ErrSinkOutputMissing) {
		t.Fatalf("restart after a manifest was deleted: err = %v, want ErrSinkOutputMissing", err)
	}
	for _, w := range []string{"batch 1 has no manifest", "_manifests/1", "Restore"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not say %q: %v", w, err)
		}
	}

	// ReadFileSink reads the rest and warns, naming the batch.
	var logged bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	defer slog.SetDefault(old)
	rows := ownerRows(t, out)
	if len(rows) == 0 || !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "batch 1 of the sink's root") {
		t.Fatalf("ReadFileSink read %d rows and logged %q; want the rest and a WARN naming batch 1", len(rows), logged.String())
	}
}

// TestFileSinkRelativePathIsPinnedAbsolute: a sink given as a relative
// path is pinned as the directory it names, so a restart from another
// working directory writes to the same place (or, named with the same
// relative path, is refused instead of writing elsewhere).
func TestFileSinkRelativePathIsPinnedAbsolute(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in := t.TempDir()
	fsClickFiles(t, in, "a", 41, 3)
	ck := storage.NewMem()
	t.Chdir(a)
	if err := ownerRun(t, in, "out", ck, FileSinkOptions{}); err != nil {
		t.Fatal(err)
	}
	first := len(ownerRows(t, filepath.Join(a, "out")))

	fsClickFiles(t, in, "b", 42, 3)
	t.Chdir(b)
	err := ownerRun(t, in, "out", ck, FileSinkOptions{})
	if !errors.Is(err, ErrPinnedSetting) || !strings.Contains(err.Error(), filepath.Join(a, "out")) {
		t.Fatalf("restart from another directory with the same relative path: err = %v, want the pinned sink %s named", err, filepath.Join(a, "out"))
	}
	if _, err := os.Stat(filepath.Join(b, "out", FileSinkManifests)); err == nil {
		t.Fatal("the refused restart wrote manifests into the other directory")
	}
	if err := ownerRun(t, in, filepath.Join("..", "a", "out"), ck, FileSinkOptions{}); err != nil {
		t.Fatalf("restart from another directory naming the same place: %v", err)
	}
	if got := len(ownerRows(t, filepath.Join(a, "out"))); got <= first {
		t.Fatalf("the restart wrote nothing more to %s: %d rows, %d before", filepath.Join(a, "out"), got, first)
	}
}

// TestFileSinkOldRelativeIdentity: a checkpoint that an older cairn pinned
// with the relative path as written restarts from the same directory; from
// another directory, whose "out" lacks the committed batches, it is
// refused.
func TestFileSinkOldRelativeIdentity(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	os.Mkdir(a, 0o755)
	os.Mkdir(b, 0o755)
	in := t.TempDir()
	fsClickFiles(t, in, "a", 51, 3)
	ck := storage.NewMem()
	t.Chdir(a)
	if err := ownerRun(t, in, "out", ck, FileSinkOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pin the sink as an older cairn did, and forget the owner record, as
	// that cairn wrote none.
	ctx := context.Background()
	m := checkpointOf(t, ck)
	m.Pinned.Sink = "files:jsonl:out"
	data, _ := json.Marshal(m)
	if err := frame.PutBytes(ctx, ck, MetadataObject, frame.KindQueryMeta, metadataFormat, data, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(a, "out", FileSinkOwners)); err != nil {
		t.Fatal(err)
	}

	fsClickFiles(t, in, "b", 52, 2)
	t.Chdir(b)
	if err := ownerRun(t, in, "out", ck, FileSinkOptions{}); !errors.Is(err, ErrSinkOutputMissing) {
		t.Fatalf("restart from another directory of a relative pin: err = %v, want ErrSinkOutputMissing", err)
	}
	t.Chdir(a)
	if err := ownerRun(t, in, "out", ck, FileSinkOptions{}); err != nil {
		t.Fatalf("restart from the same directory of a relative pin: %v", err)
	}
	owners, err := ReadFileSinkOwners(ctx, mustOpen(t, filepath.Join(a, "out")))
	if err != nil || len(owners) != 1 || owners[0].Mode != ownerAdopt || owners[0].QueryID != m.QueryID {
		t.Fatalf("the restart did not adopt its sink: %+v, %v", owners, err)
	}
}

// TestFileSinkLegacySample: a sink written before owners were recorded
// (testdata/filesink-v1, written by cairn at f27b432) stays readable, and
// a new query over it is refused, or appends with IfOwned "append".
func TestFileSinkLegacySample(t *testing.T) {
	out := t.TempDir()
	if err := os.CopyFS(out, os.DirFS("testdata/filesink-v1")); err != nil {
		t.Fatal(err)
	}
	want := append(fsEvents(3, "a"), fsEvents(3, "b")...)
	got, err := fsReadAll[fileEvent](t, out)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("the old sink reads as %v, %v; want %v", got, err, want)
	}
	ctx := context.Background()
	start := func(opts FileSinkOptions) error {
		opts.Format = "jsonl"
		sink, err := NewFileSink[fileEvent](out, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		src := NewMemorySource[fileEvent]("more", 1)
		src.Add(0, fileEvent{"c", 1})
		plan := func(b *Batch, in *dataset.Dataset[fileEvent]) (*dataset.Dataset[fileEvent], error) { return in, nil }
		q, err := Start(ctx, src, plan, sink, fsQueryOptions(storage.NewMem()))
		if err != nil {
			return err
		}
		defer q.Close(ctx)
		return q.Run(ctx)
	}
	if err := start(FileSinkOptions{}); !errors.Is(err, ErrSinkOwned) || !strings.Contains(err.Error(), "did not record itself") {
		t.Fatalf("a new query over an old sink: err = %v, want ErrSinkOwned", err)
	}
	if err := start(FileSinkOptions{IfOwned: SinkAppend}); err != nil {
		t.Fatal(err)
	}
	got, err = fsReadAll[fileEvent](t, out)
	if want := append(want, fileEvent{"c", 1}); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after an append: %v, %v; want %v", got, err, want)
	}
}

func TestCanonicalLocation(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o755)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	canonReal, _ := filepath.EvalSymlinks(real)
	for _, c := range []struct{ in, want string }{
		{real, canonReal},
		{link, canonReal},
		{link + "/", canonReal},
		{"file://" + link, canonReal},
		{filepath.Join(link, "not", "yet"), filepath.Join(canonReal, "not", "yet")},
		{"s3://Bucket/out//x/?region=eu&endpoint=h:9000", "s3://bucket/out/x?endpoint=h%3A9000&region=eu"},
		{"mem://out", "mem://out"},
	} {
		if got, err := canonicalLocation(c.in); err != nil || got != c.want {
			t.Errorf("canonicalLocation(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	sink := fsSink[fileEvent](t, link, "jsonl")
	if got, want := sink.Identity(), "files:jsonl:"+canonReal; got != want {
		t.Errorf("Identity() = %q, want %q", got, want)
	}
	if !sink.SameIdentity("files:jsonl:"+link) || sink.SameIdentity("files:parquet:"+real) || sink.SameIdentity("files:jsonl:"+dir) {
		t.Error("SameIdentity accepts the wrong identities, or refuses the same location")
	}
}

// TestFileSinkOwnerRace: two queries that start over one empty sink at
// once: exactly one takes it, the other is refused.
func TestFileSinkOwnerRace(t *testing.T) {
	out := t.TempDir()
	for round := range 20 {
		dir := filepath.Join(out, strings.Repeat("r", round+1))
		errs := make(chan error, 2)
		for i := range 2 {
			sink := fsSink[fileEvent](t, dir, "jsonl")
			go func() {
				errs <- sink.AttachQuery(context.Background(), QueryInfo{ID: "query-" + string(rune('a'+i)), Checkpoint: "mem://" + string(rune('a'+i))})
			}()
		}
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) || !errors.Is(errors.Join(e1, e2), ErrSinkOwned) {
			t.Fatalf("round %d: two queries attach at once: %v and %v; want one to win, the other ErrSinkOwned", round, e1, e2)
		}
	}
}
