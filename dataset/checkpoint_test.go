package dataset

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

type point struct {
	ID    int64   `parquet:"id"`
	Name  string  `parquet:"name"`
	Score float64 `parquet:"score"`
}

func points(n int) []point {
	out := make([]point, n)
	for i := range out {
		out[i] = point{ID: int64(i), Name: fmt.Sprintf("p%d", i), Score: float64(i) / 3}
	}
	return out
}

// counted wraps a dataset so that tests can count partition computations.
func counted[T any](d *Dataset[T], calls *atomic.Int64) *Dataset[T] {
	return MapPartitions(d, func(ctx context.Context, part int, in iter.Seq2[T, error]) iter.Seq2[T, error] {
		calls.Add(1)
		return in
	})
}

func TestEagerCheckpointCutsLineage(t *testing.T) {
	ctx := context.Background()
	for name, st := range map[string]storage.Storage{"mem": storage.NewMem(), "local": mustLocal(t)} {
		t.Run(name, func(t *testing.T) {
			s := newTestSession(t, Options{Parallelism: 2, CheckpointStorage: st})
			d := Map(FromSlice(s, points(1000), 4).Filter(func(p point) bool { return p.ID%3 != 0 }),
				func(p point) point { p.Score *= 2; return p })
			want, _ := d.Collect(ctx)
			c, err := d.Checkpoint(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if c.LineageDepth() != 1 || !strings.HasPrefix(c.Explain(), "CheckpointScan ") {
				t.Fatalf("lineage not cut: depth %d\n%s", c.LineageDepth(), c.Explain())
			}
			got, err := c.Collect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatal("checkpointed records differ")
			}
			objs, _ := st.List(ctx, "")
			var parquetParts int
			for _, o := range objs {
				if strings.HasSuffix(o.Name, ".parquet") {
					parquetParts++
				}
			}
			if parquetParts != 4 {
				t.Fatalf("want 4 Parquet parts, got %v", objs)
			}
		})
	}
}

func mustLocal(t *testing.T) *storage.Local {
	st, err := storage.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLazyCheckpointComputesOnce(t *testing.T) {
	ctx := context.Background()
	s := newTestSession(t, Options{Parallelism: 3, CheckpointStorage: storage.NewMem()})
	var calls atomic.Int64
	d := counted(FromSlice(s, points(500), 5), &calls)
	c, err := d.Checkpoint(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 || c.LineageDepth() == 1 {
		t.Fatal("a lazy checkpoint computed before any action, or cut the lineage early")
	}
	n1, err := c.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 5 {
		t.Fatalf("first action computed %d partitions, want 5 (each once)", calls.Load())
	}
	if c.LineageDepth() != 1 {
		t.Fatalf("lineage not cut after the first action:\n%s", c.Explain())
	}
	got, _ := Map(c, func(p point) int64 { return p.ID }).Collect(ctx)
	if calls.Load() != 5 || n1 != 500 || len(got) != 500 {
		t.Fatalf("second action recomputed: %d partition computations; counts %d, %d", calls.Load(), n1, len(got))
	}
}

func TestCheckpointOfNonStructUsesFramedRecords(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	s := newTestSession(t, Options{CheckpointStorage: st})
	d := FromSlice(s, []int{5, 3, 8, 1}, 2)
	c, err := d.Checkpoint(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := c.Collect(ctx)
	if !slices.Equal(got, []int{5, 3, 8, 1}) {
		t.Fatalf("got %v", got)
	}
	objs, _ := st.List(ctx, "")
	if !strings.HasSuffix(objs[0].Name, ".records") && !strings.HasSuffix(objs[1].Name, ".records") {
		t.Fatalf("expected framed record parts, got %v", objs)
	}
}

// For every k, fail (or crash at) the k-th storage operation of an eager
// checkpoint: the checkpoint either fails with an error, or is complete
// and reads back the right records, from this session and another.
func TestCheckpointFaultAtEveryOperation(t *testing.T) {
	checkpointFaultEveryOperation(t, func(string) storage.Storage { return storage.NewMem() }, nil)
}

// checkpointFaultEveryOperation runs that test with the storage newInner
// makes, for the k sample accepts (nil: every k).
func checkpointFaultEveryOperation(t *testing.T, newInner func(label string) storage.Storage, sample func(k int) bool) {
	ctx := context.Background()
	want := points(300)
	run := func(st storage.Storage) (string, error) {
		s, _ := NewSession(Options{Parallelism: 1, CheckpointStorage: st, KeepCheckpoints: true})
		defer s.Close(ctx)
		c, err := FromSlice(s, want, 3).Checkpoint(ctx, true)
		if err != nil {
			return "", err
		}
		return strings.TrimPrefix(c.CheckpointLocation(), st.Location()+"/"), nil
	}
	probe := faulty.New(storage.NewMem())
	if _, err := run(probe); err != nil {
		t.Fatal(err)
	}
	n := probe.Ops()
	for k := 1; k <= n; k++ {
		if sample != nil && !sample(k) {
			continue
		}
		for _, crash := range []bool{false, true} {
			inner := newInner(fmt.Sprintf("k%d-%v", k, crash))
			f := faulty.New(inner)
			if crash {
				f.CrashAt(k, nil)
			} else {
				f.FailAt(k, nil)
			}
			dir, err := run(f)
			label := fmt.Sprintf("fault at operation %d (crash %v)", k, crash)
			// Whatever happened, any checkpoint with a manifest must read
			// back completely.
			objs, _ := inner.List(ctx, "")
			for _, o := range objs {
				if !strings.HasSuffix(o.Name, "/"+ManifestObject) {
					continue
				}
				d := strings.TrimSuffix(o.Name, "/"+ManifestObject)
				s := newTestSession(t, Options{})
				r, err := readCheckpointFrom[point](ctx, s, inner, d)
				if err != nil {
					t.Fatalf("%s: a checkpoint with a manifest does not open: %v", label, err)
				}
				got, err := r.Collect(ctx)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("%s: a checkpoint with a manifest reads back wrong: %v", label, err)
				}
			}
			if err == nil {
				// Success: the checkpoint must be complete and readable.
				s := newTestSession(t, Options{})
				r, rerr := readCheckpointFrom[point](ctx, s, inner, dir)
				if rerr != nil {
					t.Fatalf("%s: Checkpoint succeeded but its checkpoint does not open: %v", label, rerr)
				}
				if got, rerr := r.Collect(ctx); rerr != nil || !slices.Equal(got, want) {
					t.Fatalf("%s: Checkpoint succeeded but reads back wrong: %v", label, rerr)
				}
			}
		}
	}
}

func TestCorruptCheckpointPartIsNamed(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	s := newTestSession(t, Options{CheckpointStorage: st})
	c, err := FromSlice(s, points(100), 2).Checkpoint(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := st.List(ctx, "")
	var part string
	for _, o := range objs {
		if strings.HasSuffix(o.Name, "part-00001.parquet") {
			part = o.Name
		}
	}
	st.Corrupt(part, func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
	_, err = c.Collect(ctx)
	var ce *storage.CorruptError
	if !errors.As(err, &ce) || ce.Object != part {
		t.Fatalf("err = %v, want a CorruptError naming %s", err, part)
	}
}

func TestCloseDeletesCheckpointsUnlessKept(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	s, _ := NewSession(Options{CheckpointStorage: st})
	c1, _ := FromSlice(s, points(50), 2).Checkpoint(ctx, true)
	kept, _ := FromSlice(s, points(60), 2).CheckpointWith(ctx, CheckpointOptions{Eager: true, Keep: true})
	lazy, _ := FromSlice(s, points(70), 2).Checkpoint(ctx, false)
	lazy.Count(ctx)
	if c1 == nil || kept == nil {
		t.Fatal("checkpoint failed")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	objs, _ := st.List(ctx, "")
	keptDir := strings.TrimPrefix(kept.CheckpointLocation(), st.Location()+"/")
	for _, o := range objs {
		if !strings.HasPrefix(o.Name, keptDir+"/") {
			t.Fatalf("after Close, %s remains (only %s was kept)", o.Name, keptDir)
		}
	}
	if len(objs) != 3 { // two parts and the manifest
		t.Fatalf("kept checkpoint has %d objects, want 3", len(objs))
	}
	if _, err := c1.Count(ctx); err == nil {
		t.Fatal("a deleted checkpoint still reads")
	}
}

func TestReadCheckpointFromAnotherSession(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s1 := newTestSession(t, Options{CheckpointLocation: dir, KeepCheckpoints: true})
	c, err := FromSlice(s1, points(40), 3).Checkpoint(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	loc := c.CheckpointLocation()
	s1.Close(ctx)
	s2 := newTestSession(t, Options{})
	r, err := ReadCheckpoint[point](ctx, s2, loc)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.Collect(ctx)
	if !slices.Equal(got, points(40)) {
		t.Fatal("ReadCheckpoint returned other records")
	}
	if _, err := ReadCheckpoint[Pair[string, int]](ctx, s2, loc); err == nil || !strings.Contains(err.Error(), "dataset.point") {
		t.Fatalf("wrong type: err = %v, want one naming the stored type", err)
	}
	os.Remove(filepath.Join(strings.TrimPrefix(loc, "file://"), ManifestObject))
	if _, err := ReadCheckpoint[point](ctx, s2, loc); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no manifest: err = %v, want ErrNotFound", err)
	}
}

func TestLocalCheckpointAndSpill(t *testing.T) {
	ctx := context.Background()
	spill := t.TempDir()
	s, _ := NewSession(Options{Parallelism: 2, MemoryLimit: 2000, SpillDir: spill})
	var calls atomic.Int64
	d := counted(FromSlice(s, points(2000), 4), &calls)
	c, err := d.LocalCheckpoint(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.LineageDepth() != 1 {
		t.Fatalf("local checkpoint did not cut the lineage:\n%s", c.Explain())
	}
	got, _ := c.Collect(ctx)
	if calls.Load() != 4 || !slices.Equal(got, points(2000)) {
		t.Fatalf("computations %d (want 4), equal %v", calls.Load(), slices.Equal(got, points(2000)))
	}
	if files, _ := os.ReadDir(spill); len(files) == 0 {
		t.Fatal("nothing spilled over a 2000-byte memory limit")
	}
	s.Close(ctx)
	if files, _ := os.ReadDir(spill); len(files) != 0 {
		t.Fatalf("spill files left after Close: %d", len(files))
	}
	if _, err := c.Count(ctx); err == nil {
		t.Fatal("a local checkpoint still reads after its session closed")
	}
}

func TestPersistMemoryOnlyRecomputesWhatDoesNotFit(t *testing.T) {
	ctx := context.Background()
	s := newTestSession(t, Options{Parallelism: 1, MemoryLimit: 1})
	var calls atomic.Int64
	p := counted(FromSlice(s, points(100), 2), &calls).Persist(MemoryOnly)
	p.Count(ctx)
	p.Count(ctx)
	if calls.Load() != 4 {
		t.Fatalf("computations = %d, want 4 (nothing fits in 1 byte)", calls.Load())
	}
	s2 := newTestSession(t, Options{Parallelism: 1})
	calls.Store(0)
	c := counted(FromSlice(s2, points(100), 2), &calls).Cache()
	c.Count(ctx)
	c.Count(ctx)
	if calls.Load() != 2 || c.LineageDepth() != 3 {
		t.Fatalf("Cache: computations = %d (want 2), depth %d (lineage kept: 3)", calls.Load(), c.LineageDepth())
	}
}

func TestPeriodicCheckpointerKeepsOneCheckpoint(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	s := newTestSession(t, Options{Parallelism: 2, CheckpointStorage: st})
	pc, err := NewPeriodicCheckpointer[int](3)
	if err != nil {
		t.Fatal(err)
	}
	d := FromSlice(s, []int{1, 2, 3, 4, 5, 6}, 3)
	plain := d
	for i := 1; i <= 10; i++ {
		d = Map(d, func(x int) int { return x*3 + 1 })
		plain = Map(plain, func(x int) int { return x*3 + 1 })
		if d, err = pc.Update(ctx, d); err != nil {
			t.Fatal(err)
		}
		manifests := 0
		objs, _ := st.List(ctx, "")
		for _, o := range objs {
			if strings.HasSuffix(o.Name, ManifestObject) {
				manifests++
			}
		}
		if want := min(1, i/3); manifests != want {
			t.Fatalf("iteration %d: %d checkpoints stored, want %d", i, manifests, want)
		}
		if d.LineageDepth() > 4 {
			t.Fatalf("iteration %d: lineage depth %d: not cut", i, d.LineageDepth())
		}
		got, err := d.Collect(ctx)
		if err != nil {
			t.Fatalf("iteration %d: the dataset in use does not read: %v", i, err)
		}
		want, _ := plain.Collect(ctx)
		if !slices.Equal(got, want) {
			t.Fatalf("iteration %d: %v, want %v", i, got, want)
		}
	}
}

func TestCheckpointCompressionOption(t *testing.T) {
	ctx := context.Background()
	for _, c := range []string{"none", "snappy", "zstd"} {
		s := newTestSession(t, Options{CheckpointStorage: storage.NewMem()})
		cp, err := FromSlice(s, points(500), 2).CheckpointWith(ctx, CheckpointOptions{Eager: true, Compression: c})
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if got, _ := cp.Collect(ctx); !slices.Equal(got, points(500)) {
			t.Fatalf("%s: records differ", c)
		}
	}
	s := newTestSession(t, Options{CheckpointStorage: storage.NewMem()})
	if _, err := FromSlice(s, points(5), 1).CheckpointWith(ctx, CheckpointOptions{Compression: "lzo"}); err == nil || !strings.Contains(err.Error(), "Compression") {
		t.Fatalf("unknown codec: err = %v, want one naming the option", err)
	}
}
