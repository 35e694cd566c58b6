package dataset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

// computeLog counts the computations of each partition of a generated
// dataset.
type computeLog struct{ calls []atomic.Int64 }

func newComputeLog(parts int) *computeLog { return &computeLog{calls: make([]atomic.Int64, parts)} }

func (l *computeLog) of(p int) int64 { return l.calls[p].Load() }

func (l *computeLog) total() int64 {
	var n int64
	for p := range l.calls {
		n += l.calls[p].Load()
	}
	return n
}

// computed returns the partitions computed at least once, ascending.
func (l *computeLog) computed() []int {
	var out []int
	for p := range l.calls {
		if l.calls[p].Load() > 0 {
			out = append(out, p)
		}
	}
	return out
}

// emittedKey is the context key of a partition's record counter, set by
// BeforePartition in the tests that check ResumableOptions.Counters.
type emittedKey struct{}

// genSize is the number of records of partition p of a generated dataset:
// partitions differ in size, so a part read in place of another is noticed.
func genSize(p int) int { return 20 + 7*p }

// genID is the number of record i of partition p.
func genID(p, i int) int { return p*1000 + i }

// gen is a deterministic dataset of parts partitions made by rec, which
// counts its computations in log (if not nil) and the records it emits in
// the context's counter (if BeforePartition set one).
func gen[T any](s *Session, parts int, log *computeLog, rec func(int) T) *Dataset[T] {
	return FromFunc(s, "Gen", parts, func(ctx context.Context, part int, emit func(T) error) error {
		if log != nil {
			log.calls[part].Add(1)
		}
		c, _ := ctx.Value(emittedKey{}).(*atomic.Int64)
		for i := range genSize(part) {
			if err := emit(rec(genID(part, i))); err != nil {
				return err
			}
			if c != nil {
				c.Add(1)
			}
		}
		return nil
	})
}

// genWant returns the records of gen, in order.
func genWant[T any](parts int, rec func(int) T) []T {
	var out []T
	for p := range parts {
		for i := range genSize(p) {
			out = append(out, rec(genID(p, i)))
		}
	}
	return out
}

func pointRec(i int) point {
	return point{ID: int64(i), Name: fmt.Sprintf("p%d", i), Score: float64(i) / 3}
}

func intRec(i int) int { return i*7 - 3 }

func genPoints(s *Session, parts int, log *computeLog) *Dataset[point] {
	return gen(s, parts, log, pointRec)
}

// readBack opens the checkpoint under dir of st from a new session and
// returns its records.
func readBack[T any](t *testing.T, st storage.Storage, dir string) ([]T, error) {
	t.Helper()
	ctx := context.Background()
	d, err := OpenCheckpoint[T](ctx, newTestSession(t, Options{Parallelism: 2}), st, dir)
	if err != nil {
		return nil, err
	}
	return d.Collect(ctx)
}

// snapshot returns every object under prefix with its bytes.
func snapshot(t *testing.T, st storage.Storage, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	objs, err := st.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, o := range objs {
		b, err := storage.GetBytes(ctx, st, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[o.Name] = string(b)
	}
	return out
}

// names lists the objects under dir, without the directory.
func names(t *testing.T, st storage.Storage, dir string) []string {
	t.Helper()
	objs, err := st.List(context.Background(), dir+"/")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, strings.TrimPrefix(o.Name, dir+"/"))
	}
	return out
}

// layoutProblems checks a finished resumable write of parts partitions
// under dir: it holds exactly one part object per partition, the one its
// completion record names, the completion records and the manifest, and
// nothing else; the manifest names the parts the records name. It returns
// what is wrong, or nil.
func layoutProblems(st storage.Storage, dir string, parts int) []string {
	ctx := context.Background()
	var problems []string
	m, err := ReadManifest(ctx, st, dir)
	if err != nil {
		return []string{fmt.Sprintf("no manifest: %v", err)}
	}
	if len(m.Partitions) != parts {
		problems = append(problems, fmt.Sprintf("the manifest has %d partitions, want %d", len(m.Partitions), parts))
	}
	want := map[string]bool{ManifestObject: true}
	for p := range parts {
		want[donePartName(p)] = true
		pd, err := ReadPartDone(ctx, st, dir, p)
		if err != nil {
			problems = append(problems, fmt.Sprintf("partition %d has no completion record: %v", p, err))
			continue
		}
		want[pd.File] = true
		if !strings.HasPrefix(pd.File, fmt.Sprintf("part-%05d-", p)) {
			problems = append(problems, fmt.Sprintf("partition %d's record names %s", p, pd.File))
		}
		if p < len(m.Partitions) && m.Partitions[p] != pd.PartInfo {
			problems = append(problems, fmt.Sprintf("partition %d: the manifest says %+v, the completion record %+v", p, m.Partitions[p], pd.PartInfo))
		}
	}
	objs, err := st.List(ctx, dir+"/")
	if err != nil {
		return append(problems, err.Error())
	}
	have := map[string]bool{}
	for _, o := range objs {
		base := strings.TrimPrefix(o.Name, dir+"/")
		have[base] = true
		if !want[base] {
			problems = append(problems, fmt.Sprintf("%s is left over (no completion record names it)", base))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if !have[name] {
			problems = append(problems, fmt.Sprintf("%s is missing", name))
		}
	}
	return problems
}

func checkLayout(t *testing.T, st storage.Storage, dir string, parts int) {
	t.Helper()
	if problems := layoutProblems(st, dir, parts); problems != nil {
		t.Fatalf("directory %s after the write:\n  %s\nobjects: %v", dir, strings.Join(problems, "\n  "), names(t, st, dir))
	}
}

// onPartitionLog records OnPartition calls; safe for concurrent use.
type onPartitionLog struct {
	mu    sync.Mutex
	calls map[int][]bool // partition -> computed flags, one per call
	files map[int]string
}

func newOnPartitionLog() *onPartitionLog {
	return &onPartitionLog{calls: map[int][]bool{}, files: map[int]string{}}
}

func (l *onPartitionLog) record(pd PartDone, computed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[pd.Partition] = append(l.calls[pd.Partition], computed)
	l.files[pd.Partition] = pd.File
}

// check asserts one call per partition, computed exactly for the given
// partitions.
func (l *onPartitionLog) check(t *testing.T, parts int, computed []int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.calls) != parts {
		t.Fatalf("OnPartition was called for %d partitions, want %d: %v", len(l.calls), parts, l.calls)
	}
	for p := range parts {
		want := []bool{slices.Contains(computed, p)}
		if !slices.Equal(l.calls[p], want) {
			t.Fatalf("OnPartition calls for partition %d: %v, want %v", p, l.calls[p], want)
		}
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestWriteResumableRoundTrip(t *testing.T) {
	t.Run("parquet", func(t *testing.T) { testResumableRoundTrip(t, pointRec, ".parquet", "parquet", "dataset.point", "") })
	t.Run("parquet zstd", func(t *testing.T) {
		testResumableRoundTrip(t, pointRec, ".parquet", "parquet", "dataset.point", "zstd")
	})
	t.Run("gob int", func(t *testing.T) { testResumableRoundTrip(t, intRec, ".records", "gob", "int", "") })
	t.Run("gob slice", func(t *testing.T) {
		testResumableRoundTrip(t, func(i int) []string { return []string{fmt.Sprint("k", i), strings.Repeat("x", i%5)} },
			".records", "gob", "[]string", "")
	})
}

func testResumableRoundTrip[T any](t *testing.T, rec func(int) T, ext, encoding, typ, compression string) {
	ctx := context.Background()
	const parts, dir = 5, "jobs/ckpt"
	st := storage.NewMem()
	s := newTestSession(t, Options{Parallelism: 3})
	log := newComputeLog(parts)
	onp := newOnPartitionLog()
	var before atomic.Int64
	res, err := WriteResumable(ctx, gen(s, parts, log, rec), st, dir, ResumableOptions{
		Attempt:     "a1",
		Compression: compression,
		BeforePartition: func(ctx context.Context, part int) (context.Context, error) {
			before.Add(1)
			return context.WithValue(ctx, emittedKey{}, new(atomic.Int64)), nil
		},
		Counters: func(ctx context.Context, part int) map[string]int64 {
			c, ok := ctx.Value(emittedKey{}).(*atomic.Int64)
			if !ok {
				return map[string]int64{"no counter in the context": 1}
			}
			return map[string]int64{"emitted": c.Load(), "part": int64(part)}
		},
		OnPartition: onp.record,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Computed, seq(0, parts)) || len(res.Reused) != 0 || res.Removed != 0 {
		t.Fatalf("Computed %v, Reused %v, Removed %d; want all computed, none reused or removed", res.Computed, res.Reused, res.Removed)
	}
	for p := range parts {
		if log.of(p) != 1 {
			t.Fatalf("partition %d computed %d times, want once", p, log.of(p))
		}
	}
	if before.Load() != parts {
		t.Fatalf("BeforePartition called %d times, want %d", before.Load(), parts)
	}
	onp.check(t, parts, seq(0, parts))
	if res.Manifest.Type != typ || res.Manifest.Encoding != encoding || len(res.Manifest.Partitions) != parts {
		t.Fatalf("manifest: type %q, encoding %q, %d partitions; want %q, %q, %d",
			res.Manifest.Type, res.Manifest.Encoding, len(res.Manifest.Partitions), typ, encoding, parts)
	}
	m, err := ReadManifest(ctx, st, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Partitions, res.Manifest.Partitions) || !m.Created.Equal(res.Manifest.Created) {
		t.Fatalf("ReadManifest differs from the result's manifest:\n%+v\n%+v", m, res.Manifest)
	}
	if len(res.Parts) != parts {
		t.Fatalf("%d Parts, want %d", len(res.Parts), parts)
	}
	for p, got := range res.Parts {
		wantFile := fmt.Sprintf("part-%05d-a1%s", p, ext)
		if got.Partition != p || got.File != wantFile || got.Attempt != "a1" || got.Records != int64(genSize(p)) {
			t.Fatalf("Parts[%d] = %+v; want partition %d, file %s, attempt a1, %d records", p, got, p, wantFile, genSize(p))
		}
		pd, err := ReadPartDone(ctx, st, dir, p)
		if err != nil {
			t.Fatal(err)
		}
		wantCounters := map[string]int64{"emitted": int64(genSize(p)), "part": int64(p)}
		if !maps.Equal(pd.Counters, wantCounters) || !maps.Equal(got.Counters, wantCounters) {
			t.Fatalf("partition %d: Counters %v in the completion record, %v in the result, want %v", p, pd.Counters, got.Counters, wantCounters)
		}
		if pd.PartInfo != got.PartInfo || pd.PartInfo != m.Partitions[p] || pd.Attempt != "a1" || pd.Finished.IsZero() || pd.Elapsed() <= 0 {
			t.Fatalf("partition %d: completion record %+v; result %+v; manifest %+v", p, pd, got, m.Partitions[p])
		}
		onp.mu.Lock()
		if onp.files[p] != wantFile {
			t.Fatalf("OnPartition saw file %s for partition %d, want %s", onp.files[p], p, wantFile)
		}
		onp.mu.Unlock()
	}
	if _, err := ReadPartDone(ctx, st, dir, parts); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ReadPartDone beyond the last partition: err = %v, want ErrNotFound", err)
	}
	checkLayout(t, st, dir, parts)
	got, err := readBack[T](t, st, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := genWant(parts, rec); !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %d records, want %d (or they differ)", len(got), len(want))
	}
}

// An interrupted write is resumed by a later call, which computes only the
// partitions that were not complete; a call on a complete directory
// computes nothing.
func TestWriteResumableResumesAfterInterruption(t *testing.T) {
	ctx := context.Background()
	const parts, dir = 6, "ckpt/run"
	want := genWant(parts, pointRec)
	for k := range parts {
		t.Run(fmt.Sprintf("stop at %d", k), func(t *testing.T) {
			st := storage.NewMem()
			// A sibling directory whose name extends dir is not touched.
			sibling := "ckpt/run-old/part-00000-x.parquet"
			if err := storage.PutBytes(ctx, st, sibling, []byte("other"), storage.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			boom := errors.New("drill: stop after storing")
			log1 := newComputeLog(parts)
			_, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{Parallelism: 1}), parts, log1), st, dir, ResumableOptions{
				Attempt: "first",
				AfterStored: func(ctx context.Context, part int) error {
					if part == k {
						return boom
					}
					return nil
				},
			})
			var pe *PartitionError
			if !errors.Is(err, boom) || !errors.As(err, &pe) || pe.Partition != k {
				t.Fatalf("interrupted write: err = %v, want %v at partition %d", err, boom, k)
			}
			if got := log1.computed(); !slices.Equal(got, seq(0, k+1)) {
				t.Fatalf("interrupted write computed partitions %v, want %v (it must stop at %d)", got, seq(0, k+1), k)
			}
			if _, err := ReadManifest(ctx, st, dir); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("an interrupted write left a manifest: err = %v", err)
			}
			if _, err := readBack[point](t, st, dir); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("an interrupted write opens: err = %v, want ErrNotFound", err)
			}
			for p := range parts {
				_, err := ReadPartDone(ctx, st, dir, p)
				if p < k && err != nil {
					t.Fatalf("partition %d completed before the interruption has no record: %v", p, err)
				}
				if p >= k && !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("partition %d: err = %v, want ErrNotFound (not complete)", p, err)
				}
			}
			stored := fmt.Sprintf("part-%05d-first.parquet", k)
			if !slices.Contains(names(t, st, dir), stored) {
				t.Fatalf("the interrupted partition's part %s is not stored: %v", stored, names(t, st, dir))
			}

			log2 := newComputeLog(parts)
			onp := newOnPartitionLog()
			res, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{Parallelism: 1}), parts, log2), st, dir, ResumableOptions{
				Attempt: "second", OnPartition: onp.record,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Computed, seq(k, parts)) || !slices.Equal(res.Reused, seq(0, k)) || res.Removed != 1 {
				t.Fatalf("resumed: Computed %v, Reused %v, Removed %d; want %v, %v, 1", res.Computed, res.Reused, res.Removed, seq(k, parts), seq(0, k))
			}
			for p := range parts {
				if wantCalls := int64(min(1, max(0, p-k+1))); log2.of(p) != wantCalls {
					t.Fatalf("resumed write computed partition %d %d times, want %d", p, log2.of(p), wantCalls)
				}
				wantAttempt := "second"
				if p < k {
					wantAttempt = "first"
				}
				if res.Parts[p].Attempt != wantAttempt || res.Parts[p].Partition != p {
					t.Fatalf("Parts[%d] = %+v, want attempt %s", p, res.Parts[p], wantAttempt)
				}
			}
			onp.check(t, parts, seq(k, parts))
			checkLayout(t, st, dir, parts)
			if slices.Contains(names(t, st, dir), stored) {
				t.Fatalf("the interrupted attempt's part %s was not removed", stored)
			}
			if got, err := readBack[point](t, st, dir); err != nil || !slices.Equal(got, want) {
				t.Fatalf("resumed checkpoint reads back %d records (err %v), want %d", len(got), err, len(want))
			}
			if b, err := storage.GetBytes(ctx, st, sibling); err != nil || string(b) != "other" {
				t.Fatalf("the sibling directory's object was touched: %q, %v", b, err)
			}

			// A third call finds the directory complete.
			before := snapshot(t, st, "")
			log3 := newComputeLog(parts)
			onp3 := newOnPartitionLog()
			res3, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{Parallelism: 1}), parts, log3), st, dir, ResumableOptions{
				Attempt: "third", OnPartition: onp3.record,
			})
			if err != nil {
				t.Fatal(err)
			}
			if log3.total() != 0 || len(res3.Computed) != 0 || !slices.Equal(res3.Reused, seq(0, parts)) || res3.Removed != 0 {
				t.Fatalf("on a complete directory: %d computations, Computed %v, Reused %v, Removed %d",
					log3.total(), res3.Computed, res3.Reused, res3.Removed)
			}
			if !slices.Equal(res3.Manifest.Partitions, res.Manifest.Partitions) || !res3.Manifest.Created.Equal(res.Manifest.Created) {
				t.Fatalf("third call's manifest differs from the stored one:\n%+v\n%+v", res3.Manifest, res.Manifest)
			}
			for p := range parts {
				if res3.Parts[p].PartInfo != res.Parts[p].PartInfo || res3.Parts[p].Attempt != res.Parts[p].Attempt {
					t.Fatalf("third call's Parts[%d] = %+v, want %+v", p, res3.Parts[p], res.Parts[p])
				}
			}
			onp3.check(t, parts, nil)
			if after := snapshot(t, st, ""); !maps.Equal(after, before) {
				t.Fatal("a call on a complete directory changed the storage")
			}
		})
	}
}

// interrupted writes parts partitions of points under dir of st, stopping
// after storing the last partition: every partition but the last is
// complete, and there is no manifest.
func interrupted(t *testing.T, st storage.Storage, dir string, parts int) {
	t.Helper()
	stop := errors.New("stop")
	_, err := WriteResumable(context.Background(), genPoints(newTestSession(t, Options{Parallelism: 1}), parts, nil), st, dir, ResumableOptions{
		Attempt: "early",
		AfterStored: func(ctx context.Context, part int) error {
			if part == parts-1 {
				return stop
			}
			return nil
		},
	})
	if !errors.Is(err, stop) {
		t.Fatalf("interrupted write: err = %v", err)
	}
}

func TestWriteResumableRefusals(t *testing.T) {
	ctx := context.Background()
	const dir = "out/ckpt"
	complete := func(t *testing.T, st storage.Storage, parts int) {
		t.Helper()
		if _, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{}), parts, nil), st, dir, ResumableOptions{Attempt: "w"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, st *storage.Mem)
		write   func(t *testing.T, st storage.Storage, log *computeLog, opts ResumableOptions) error
		attempt string
		check   func(t *testing.T, err error)
	}{{
		name:  "complete with fewer partitions",
		setup: func(t *testing.T, st *storage.Mem) { complete(t, st, 4) },
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "mem://"+dir) || !strings.Contains(err.Error(), "4 partitions") {
				t.Fatalf("err = %v, want one naming mem://%s and its 4 partitions", err, dir)
			}
		},
	}, {
		name:  "complete with more partitions",
		setup: func(t *testing.T, st *storage.Mem) { complete(t, st, 6) },
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "mem://"+dir) {
				t.Fatalf("err = %v, want one naming mem://%s", err, dir)
			}
		},
	}, {
		name: "complete with another record type",
		setup: func(t *testing.T, st *storage.Mem) {
			if _, err := WriteResumable(ctx, gen(newTestSession(t, Options{}), 5, nil, intRec), st, dir, ResumableOptions{Attempt: "w"}); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "mem://"+dir) || !strings.Contains(err.Error(), " int") {
				t.Fatalf("err = %v, want one naming mem://%s and the stored type int", err, dir)
			}
		},
	}, {
		name:  "completion record beyond the dataset",
		setup: func(t *testing.T, st *storage.Mem) { interrupted(t, st, dir, 8) }, // partitions 0..6 complete
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "mem://"+dir) || !strings.Contains(err.Error(), "partition 5") {
				t.Fatalf("err = %v, want one naming mem://%s and partition 5", err, dir)
			}
		},
	}, {
		name: "corrupt completion record",
		setup: func(t *testing.T, st *storage.Mem) {
			interrupted(t, st, dir, 5)
			if err := st.Corrupt(dir+"/part-00002.done", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, err error) {
			var ce *storage.CorruptError
			if !errors.Is(err, storage.ErrCorrupt) || !errors.As(err, &ce) || ce.Object != dir+"/part-00002.done" {
				t.Fatalf("err = %v, want a CorruptError naming %s/part-00002.done", err, dir)
			}
		},
	}, {
		name: "completion record under another partition's name",
		setup: func(t *testing.T, st *storage.Mem) {
			interrupted(t, st, dir, 5)
			b, err := storage.GetBytes(ctx, st, dir+"/part-00001.done")
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Corrupt(dir+"/part-00002.done", func([]byte) []byte { return b }); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, err error) {
			var ce *storage.CorruptError
			if !errors.As(err, &ce) || ce.Object != dir+"/part-00002.done" {
				t.Fatalf("err = %v, want a CorruptError naming %s/part-00002.done", err, dir)
			}
		},
	}, {
		name:    "empty attempt",
		attempt: "-",
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "Attempt") {
				t.Fatalf("err = %v, want one naming ResumableOptions.Attempt", err)
			}
		},
	}, {
		name:    "attempt with a slash",
		attempt: "a/b",
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), `"a/b"`) {
				t.Fatalf("err = %v, want one naming the attempt", err)
			}
		},
	}, {
		name:    "attempt with a dot",
		attempt: "v1.2",
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), `"v1.2"`) {
				t.Fatalf("err = %v, want one naming the attempt", err)
			}
		},
	}, {
		name:    "unknown compression",
		attempt: "ok",
		write: func(t *testing.T, st storage.Storage, log *computeLog, opts ResumableOptions) error {
			opts.Compression = "lzo"
			_, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{}), 5, log), st, dir, opts)
			return err
		},
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "lzo") {
				t.Fatalf("err = %v, want one naming the codec", err)
			}
		},
	}, {
		name: "BeforePartition error",
		write: func(t *testing.T, st storage.Storage, log *computeLog, opts ResumableOptions) error {
			opts.BeforePartition = func(ctx context.Context, part int) (context.Context, error) {
				return nil, errors.New("no budget for this partition")
			}
			_, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{Parallelism: 1}), 5, log), st, dir, opts)
			return err
		},
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "no budget") {
				t.Fatalf("err = %v, want BeforePartition's", err)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			st := storage.NewMem()
			if tc.setup != nil {
				tc.setup(t, st)
			}
			before := snapshot(t, st, "")
			attempt := tc.attempt
			switch attempt {
			case "":
				attempt = "again"
			case "-":
				attempt = ""
			}
			log := newComputeLog(8)
			write := tc.write
			if write == nil {
				write = func(t *testing.T, st storage.Storage, log *computeLog, opts ResumableOptions) error {
					_, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{Parallelism: 1}), 5, log), st, dir, opts)
					return err
				}
			}
			err := write(t, st, log, ResumableOptions{Attempt: attempt})
			tc.check(t, err)
			if log.total() != 0 {
				t.Fatalf("a refused write computed %d partitions", log.total())
			}
			if after := snapshot(t, st, ""); !maps.Equal(after, before) {
				t.Fatalf("a refused write changed the storage: %d objects before, %d after", len(before), len(after))
			}
		})
	}
}

// A completion record whose part is gone (before the manifest is written)
// is damage that a writer does not repair in place (records are never
// deleted, so that concurrent writers cannot undo each other): the next
// call fails with a corruption error that names the part and says to
// delete the directory, and computes nothing.
func TestWriteResumableRefusesLostPart(t *testing.T) {
	ctx := context.Background()
	const parts, lost, dir = 5, 2, "ckpt"
	st := storage.NewMem()
	if _, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{}), parts, nil), st, dir, ResumableOptions{Attempt: "old"}); err != nil {
		t.Fatal(err)
	}
	// As if the writer died before writing the manifest, and the part was
	// lost.
	if err := st.Delete(ctx, dir+"/"+ManifestObject); err != nil {
		t.Fatal(err)
	}
	pd, err := ReadPartDone(ctx, st, dir, lost)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, dir+"/"+pd.File); err != nil {
		t.Fatal(err)
	}
	log := newComputeLog(parts)
	_, err = WriteResumable(ctx, genPoints(newTestSession(t, Options{Parallelism: 2}), parts, log), st, dir, ResumableOptions{Attempt: "new"})
	if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), pd.File) || !strings.Contains(err.Error(), "delete") {
		t.Fatalf("err %v; want a corruption error naming %s and saying to delete the directory", err, pd.File)
	}
	if log.total() != 0 {
		t.Fatalf("a refused write computed %d partitions", log.total())
	}
	if _, err := ReadPartDone(ctx, st, dir, lost); err != nil {
		t.Fatalf("the refused write touched the completion record: %v", err)
	}
}

// Two writers with different attempts write the same dataset to the same
// directory at once: both succeed, each partition is computed into the
// checkpoint by exactly one of them, and no duplicate part is left.
func TestWriteResumableConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	const parts, dir = 12, "shared/ckpt"
	want := genWant(parts, pointRec)
	for round := range 8 {
		st := storage.NewMem()
		var results [2]ResumableResult
		var errs [2]error
		var logs [2]*computeLog
		var wg sync.WaitGroup
		for w := range 2 {
			logs[w] = newComputeLog(parts)
			s := newTestSession(t, Options{Parallelism: 3})
			d := Map(genPoints(s, parts, logs[w]), func(p point) point {
				runtime.Gosched() // let the writers interleave
				return p
			})
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[w], errs[w] = WriteResumable(ctx, d, st, dir, ResumableOptions{Attempt: fmt.Sprintf("w%d", w)})
			}()
		}
		wg.Wait()
		for w := range 2 {
			if errs[w] != nil {
				t.Fatalf("round %d: writer %d: %v", round, w, errs[w])
			}
		}
		checkLayout(t, st, dir, parts)
		stored, err := ReadManifest(ctx, st, dir)
		if err != nil {
			t.Fatal(err)
		}
		computedBy := map[int]int{}
		for w, res := range results {
			if all := slices.Sorted(slices.Values(append(slices.Clone(res.Computed), res.Reused...))); !slices.Equal(all, seq(0, parts)) {
				t.Fatalf("round %d: writer %d: Computed %v and Reused %v do not cover the partitions once", round, w, res.Computed, res.Reused)
			}
			if !res.Manifest.Created.Equal(stored.Created) {
				t.Fatalf("round %d: writer %d returns a manifest created %v; the stored one was created %v", round, w, res.Manifest.Created, stored.Created)
			}
			for _, p := range res.Computed {
				if other, dup := computedBy[p]; dup {
					t.Fatalf("round %d: writers %d and %d both report computing partition %d", round, other, w, p)
				}
				computedBy[p] = w
			}
			for p := range parts {
				pd, _ := ReadPartDone(ctx, st, dir, p)
				if res.Parts[p].PartInfo != pd.PartInfo || res.Manifest.Partitions[p] != pd.PartInfo {
					t.Fatalf("round %d: writer %d: partition %d: result %+v, manifest %+v, completion record %+v",
						round, w, p, res.Parts[p].PartInfo, res.Manifest.Partitions[p], pd.PartInfo)
				}
			}
		}
		if len(computedBy) != parts {
			t.Fatalf("round %d: %d partitions reported computed, want %d", round, len(computedBy), parts)
		}
		for p := range parts {
			if pd, _ := ReadPartDone(ctx, st, dir, p); pd.Attempt != fmt.Sprintf("w%d", computedBy[p]) {
				t.Fatalf("round %d: partition %d's record is from %s, but writer %d reports computing it", round, p, pd.Attempt, computedBy[p])
			}
			if n := logs[0].of(p) + logs[1].of(p); n < 1 || n > 2 {
				t.Fatalf("round %d: partition %d computed %d times by two writers", round, p, n)
			}
		}
		if got, err := readBack[point](t, st, dir); err != nil || !slices.Equal(got, want) {
			t.Fatalf("round %d: reads back %d records, err %v", round, len(got), err)
		}
	}
}

// gated passes every operation to the inner storage after calling before
// with it, which may block: a test uses it to interleave writers exactly.
type gated struct {
	storage.Storage
	before func(faulty.Op)
}

func (g *gated) Put(ctx context.Context, name string, r io.Reader, opts storage.PutOptions) error {
	g.before(faulty.Op{Kind: faulty.Put, Name: name, IfAbsent: opts.IfAbsent})
	return g.Storage.Put(ctx, name, r, opts)
}

func (g *gated) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	g.before(faulty.Op{Kind: faulty.Get, Name: name})
	return g.Storage.Get(ctx, name)
}

func (g *gated) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	g.before(faulty.Op{Kind: faulty.List, Name: prefix})
	return g.Storage.List(ctx, prefix)
}

func (g *gated) Delete(ctx context.Context, name string) error {
	g.before(faulty.Op{Kind: faulty.Delete, Name: name})
	return g.Storage.Delete(ctx, name)
}

// pauseAt returns a gate that stops the first operation match accepts
// until release is closed, after closing paused. A test waits for paused
// with waitPaused, so that a writer that never reaches the operation fails
// the test instead of hanging it.
func pauseAt(match faulty.Match) (before func(faulty.Op), paused, release chan struct{}) {
	paused, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	return func(op faulty.Op) {
		if match(op) {
			once.Do(func() {
				close(paused)
				<-release
			})
		}
	}, paused, release
}

func waitPaused(t *testing.T, paused <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-paused:
	case <-time.After(time.Minute):
		t.Fatalf("%s never happened", what)
	}
}

// A writer that stores a partition's part but finds the partition already
// recorded by another writer deletes its part and uses the other's record.
// The interleaving is fixed: A completes partition 0, stores partition 1's
// part and pauses before recording it; B runs to the end (removing A's
// part of partition 1, which no record names); then A resumes and loses
// partitions 1 to 3.
func TestWriteResumableLosingWriterDeletesItsParts(t *testing.T) {
	ctx := context.Background()
	const parts, dir = 4, "race/ckpt"
	st := storage.NewMem()
	logA, logB := newComputeLog(parts), newComputeLog(parts)
	sA, sB := newTestSession(t, Options{Parallelism: 1}), newTestSession(t, Options{Parallelism: 1})
	gate, paused, release := pauseAt(func(op faulty.Op) bool {
		return op.Kind == faulty.Put && op.Name == dir+"/"+donePartName(1)
	})
	type outcome struct {
		res ResumableResult
		err error
	}
	aDone := make(chan outcome, 1)
	onpA := newOnPartitionLog()
	go func() {
		res, err := WriteResumable(ctx, genPoints(sA, parts, logA), &gated{st, gate}, dir, ResumableOptions{Attempt: "a", OnPartition: onpA.record})
		aDone <- outcome{res, err}
	}()
	waitPaused(t, paused, "writer a's record of partition 1")
	resB, err := WriteResumable(ctx, genPoints(sB, parts, logB), st, dir, ResumableOptions{Attempt: "b"})
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	a := <-aDone
	if a.err != nil {
		t.Fatal(a.err)
	}
	if !slices.Equal(a.res.Computed, []int{0}) || !slices.Equal(a.res.Reused, []int{1, 2, 3}) || a.res.Removed != 0 {
		t.Fatalf("writer a: Computed %v, Reused %v, Removed %d; want [0], [1 2 3], 0", a.res.Computed, a.res.Reused, a.res.Removed)
	}
	if !slices.Equal(resB.Computed, []int{1, 2, 3}) || !slices.Equal(resB.Reused, []int{0}) || resB.Removed != 1 {
		t.Fatalf("writer b: Computed %v, Reused %v, Removed %d; want [1 2 3], [0], 1", resB.Computed, resB.Reused, resB.Removed)
	}
	onpA.check(t, parts, []int{0})
	for p := range parts {
		if logA.of(p) != 1 || logB.of(p) != int64(min(p, 1)) {
			t.Fatalf("partition %d computed %d times by a, %d by b; want 1, %d", p, logA.of(p), logB.of(p), min(p, 1))
		}
		wantAttempt := "b"
		if p == 0 {
			wantAttempt = "a"
		}
		if a.res.Parts[p].Attempt != wantAttempt || resB.Parts[p].Attempt != wantAttempt {
			t.Fatalf("partition %d: writer a reports the part of %s, writer b of %s; want %s",
				p, a.res.Parts[p].Attempt, resB.Parts[p].Attempt, wantAttempt)
		}
	}
	if !a.res.Manifest.Created.Equal(resB.Manifest.Created) || !slices.Equal(a.res.Manifest.Partitions, resB.Manifest.Partitions) {
		t.Fatalf("the writers return different manifests:\n%+v\n%+v", a.res.Manifest, resB.Manifest)
	}
	checkLayout(t, st, dir, parts)
	if got, err := readBack[point](t, st, dir); err != nil || !slices.Equal(got, genWant(parts, pointRec)) {
		t.Fatalf("reads back %d records, err %v", len(got), err)
	}
}

// restartOracle returns what a restarted write must find under dir: the
// partitions that are complete (with a completion record; all of them if
// there is a manifest), and the number of part objects it must remove
// (those no record names; none if there is a manifest).
func restartOracle(t *testing.T, st storage.Storage, dir string, parts int) (complete []int, unnamed int) {
	t.Helper()
	ctx := context.Background()
	if _, err := ReadManifest(ctx, st, dir); err == nil {
		return seq(0, parts), 0
	}
	named := map[string]bool{}
	for p := range parts {
		if pd, err := ReadPartDone(ctx, st, dir, p); err == nil {
			named[pd.File] = true
			complete = append(complete, p)
		}
	}
	for _, name := range names(t, st, dir) {
		if strings.HasPrefix(name, "part-") && !strings.HasSuffix(name, ".done") && !named[name] {
			unnamed++
		}
	}
	return complete, unnamed
}

// For every k, fail (or crash at) the k-th storage operation of a
// resumable write, then run it again on the storage as it was left, as a
// restarted process would: the second run succeeds and reads back the
// right records, removes exactly the parts no record names, and computes
// no partition that the first run completed.
func TestWriteResumableFaultAtEveryOperation(t *testing.T) {
	t.Run("parquet", func(t *testing.T) { testResumableFaults(t, pointRec) })
	t.Run("gob", func(t *testing.T) { testResumableFaults(t, intRec) })
}

func testResumableFaults[T any](t *testing.T, rec func(int) T) {
	ctx := context.Background()
	const parts, dir = 4, "faults/ckpt"
	want := genWant(parts, rec)
	equal := func(got []T) bool {
		return reflect.DeepEqual(got, want)
	}
	for _, mode := range []string{"fail", "crash", "crash, put lands"} {
		t.Run(mode, func(t *testing.T) {
			k := 1
			for ; ; k++ {
				label := fmt.Sprintf("%s at operation %d", mode, k)
				inner := storage.NewMem()
				f := faulty.New(inner)
				switch mode {
				case "fail":
					f.FailAt(k, nil)
				case "crash":
					f.CrashAt(k, nil)
				case "crash, put lands":
					f.CrashAt(k, nil)
					f.PutLandsOnCrash = true
				}
				log1 := newComputeLog(parts)
				_, err1 := WriteResumable(ctx, gen(newTestSession(t, Options{Parallelism: 1}), parts, log1, rec), f, dir, ResumableOptions{Attempt: "one"})
				triggered := f.Ops() >= k
				if triggered && err1 == nil {
					t.Fatalf("%s: the write succeeded", label)
				}
				if err1 != nil && !errors.Is(err1, faulty.ErrInjected) && !errors.Is(err1, faulty.ErrCrashed) {
					t.Fatalf("%s: err = %v, want the injected fault", label, err1)
				}
				if !triggered {
					if err1 != nil {
						t.Fatalf("%s: no fault, but err = %v", label, err1)
					}
					checkLayout(t, inner, dir, parts)
					if got, err := readBack[T](t, inner, dir); err != nil || !equal(got) {
						t.Fatalf("no fault: reads back %d records, err %v", len(got), err)
					}
					break
				}

				complete, unnamed := restartOracle(t, inner, dir, parts)
				log2 := newComputeLog(parts)
				res, err := WriteResumable(ctx, gen(newTestSession(t, Options{Parallelism: 1}), parts, log2, rec), f.Inner(), dir, ResumableOptions{Attempt: "two"})
				if err != nil {
					t.Fatalf("%s (first run: %v): the second run fails: %v", label, err1, err)
				}
				if got, err := readBack[T](t, inner, dir); err != nil || !equal(got) {
					t.Fatalf("%s: the second run's checkpoint reads back %d records, err %v", label, len(got), err)
				}
				checkLayout(t, inner, dir, parts)
				if !slices.Equal(res.Reused, complete) || !slices.Equal(log2.computed(), res.Computed) || res.Removed != unnamed {
					t.Fatalf("%s: second run: Computed %v (computed %v), Reused %v, Removed %d; want reused %v, removed %d",
						label, res.Computed, log2.computed(), res.Reused, res.Removed, complete, unnamed)
				}
				if n := log1.total() + log2.total(); n > parts+1 {
					t.Fatalf("%s: %d partition computations in the two runs (%d + %d), want at most %d",
						label, n, log1.total(), log2.total(), parts+1)
				}
			}
			if least := 2*parts + 3; k <= least {
				t.Fatalf("the write ran only %d operations; want at least %d", k-1, least)
			}
		})
	}
}

// clone copies every object of st into a new in-memory storage.
func clone(t *testing.T, st storage.Storage) *storage.Mem {
	t.Helper()
	out := storage.NewMem()
	for name, b := range snapshot(t, st, "") {
		if err := storage.PutBytes(context.Background(), out, name, []byte(b), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// messyDir leaves under dir of a new storage what crashed writers leave
// behind in a resumable write of genPoints with 4 partitions, and no
// manifest: partition 0 complete; partition 1 stored but not recorded;
// partition 2 complete, with a second, unrecorded part (a losing writer's);
// partition 3 not complete, with two unrecorded parts, one of them garbage.
func messyDir(t *testing.T, dir string) *storage.Mem {
	t.Helper()
	ctx := context.Background()
	st := storage.NewMem()
	if _, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{}), 4, nil), st, dir, ResumableOptions{Attempt: "old"}); err != nil {
		t.Fatal(err)
	}
	part2, err := storage.GetBytes(ctx, st, dir+"/part-00002-old.parquet")
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		st.Delete(ctx, dir+"/"+ManifestObject),
		st.Delete(ctx, dir+"/part-00001.done"),
		storage.PutBytes(ctx, st, dir+"/part-00002-loser.parquet", part2, storage.PutOptions{}),
		st.Delete(ctx, dir+"/part-00003.done"),
		storage.PutBytes(ctx, st, dir+"/part-00003-dead.parquet", []byte("half a part"), storage.PutOptions{}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// A restarted write that itself fails at any operation (or crashes there)
// leaves a directory that the next restart completes correctly: the
// recovery steps (computing the incomplete partitions, removing unrecorded
// parts, writing the manifest) are themselves safe to interrupt.
func TestWriteResumableFaultDuringRecovery(t *testing.T) {
	ctx := context.Background()
	const parts, dir = 4, "recover/ckpt"
	want := genWant(parts, pointRec)
	base := messyDir(t, dir)
	if complete, unnamed := restartOracle(t, base, dir, parts); !slices.Equal(complete, []int{0, 2}) || unnamed != 4 {
		t.Fatalf("the messy directory: complete %v, %d unrecorded parts; want [0 2], 4", complete, unnamed)
	}
	for _, mode := range []string{"fail", "crash", "crash, put lands"} {
		t.Run(mode, func(t *testing.T) {
			k := 1
			for ; ; k++ {
				label := fmt.Sprintf("%s at operation %d", mode, k)
				inner := clone(t, base)
				f := faulty.New(inner)
				f.PutLandsOnCrash = mode == "crash, put lands"
				if mode == "fail" {
					f.FailAt(k, nil)
				} else {
					f.CrashAt(k, nil)
				}
				log2 := newComputeLog(parts)
				res2, err2 := WriteResumable(ctx, genPoints(newTestSession(t, Options{Parallelism: 1}), parts, log2), f, dir, ResumableOptions{Attempt: "two"})
				if triggered := f.Ops() >= k; !triggered {
					if err2 != nil {
						t.Fatalf("no fault, but err = %v", err2)
					}
					if !slices.Equal(res2.Computed, []int{1, 3}) || !slices.Equal(res2.Reused, []int{0, 2}) || res2.Removed != 4 {
						t.Fatalf("no fault: Computed %v, Reused %v, Removed %d; want [1 3], [0 2], 4", res2.Computed, res2.Reused, res2.Removed)
					}
					checkLayout(t, inner, dir, parts)
					if got, err := readBack[point](t, inner, dir); err != nil || !slices.Equal(got, want) {
						t.Fatalf("no fault: reads back %d records, err %v", len(got), err)
					}
					break
				}
				if !errors.Is(err2, faulty.ErrInjected) && !errors.Is(err2, faulty.ErrCrashed) {
					t.Fatalf("%s: err = %v, want the injected fault", label, err2)
				}
				complete, unnamed := restartOracle(t, inner, dir, parts)
				log3 := newComputeLog(parts)
				res3, err := WriteResumable(ctx, genPoints(newTestSession(t, Options{Parallelism: 1}), parts, log3), inner, dir, ResumableOptions{Attempt: "three"})
				if err != nil {
					t.Fatalf("%s (interrupted run: %v): the next run fails: %v", label, err2, err)
				}
				checkLayout(t, inner, dir, parts)
				if got, err := readBack[point](t, inner, dir); err != nil || !slices.Equal(got, want) {
					t.Fatalf("%s: reads back %d records, err %v", label, len(got), err)
				}
				if !slices.Equal(res3.Reused, complete) || !slices.Equal(log3.computed(), res3.Computed) || res3.Removed != unnamed {
					t.Fatalf("%s: next run: Computed %v (computed %v), Reused %v, Removed %d; want reused %v, removed %d",
						label, res3.Computed, log3.computed(), res3.Reused, res3.Removed, complete, unnamed)
				}
				// Partitions 1 and 3 need computing; one more may be lost to
				// the fault.
				if n := log2.total() + log3.total(); n > 3 {
					t.Fatalf("%s: %d partition computations (%d + %d), want at most 3", label, n, log2.total(), log3.total())
				}
			}
			// Get the manifest, list, read 2 records, store 2 parts and
			// their records, delete 4 parts, put the manifest.
			if least := 13; k <= least {
				t.Fatalf("the recovery ran only %d operations; want at least %d", k-1, least)
			}
		})
	}
}
