package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// policyPipeline: src (4 partitions) → mid (policy under test) → out.
func policyPipeline(t *testing.T, opts Options, mid StageOptions, calls *computeCalls, out string) *Pipeline {
	t.Helper()
	p, err := New("policy", opts)
	if err != nil {
		t.Fatal(err)
	}
	src := Source(p, "src", StageOptions{}, func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[num], error) {
		return dataset.FromFunc(s, "src", 4, func(ctx context.Context, part int, emit func(num) error) error {
			calls.add("src", part)
			for i := range 100 {
				if err := emit(num{Key: "k", Value: int64(part*100 + i)}); err != nil {
					return err
				}
			}
			return nil
		}), nil
	})
	m := Then(p, "mid", mid, src, func(ctx context.Context, d *dataset.Dataset[num]) (*dataset.Dataset[num], error) {
		return dataset.MapPartitions(d, func(ctx context.Context, part int, in iter.Seq2[num, error]) iter.Seq2[num, error] {
			calls.add("mid", part)
			return func(yield func(num, error) bool) {
				for n, err := range in {
					if !yield(num{Key: n.Key, Value: n.Value * 2}, err) || err != nil {
						return
					}
				}
			}
		}), nil
	})
	last := Then(p, "sum", StageOptions{}, m, func(ctx context.Context, d *dataset.Dataset[num]) (*dataset.Dataset[total], error) {
		kv := dataset.Map(d, func(n num) dataset.Pair[string, total] {
			return dataset.KV(n.Key, total{Key: n.Key, Sum: n.Value, Count: 1})
		})
		return dataset.Map(dataset.ReduceByKey(kv, func(a, b total) total {
			return total{Key: a.Key, Sum: a.Sum + b.Sum, Count: a.Count + b.Count}
		}, 1), func(p dataset.Pair[string, total]) total { return p.Value }), nil
	})
	if out != "" {
		Publish(p, last, out, dataset.WriteOptions{})
	}
	return p
}

var policyWant = []total{{Key: "k", Sum: 2 * (399 * 400 / 2), Count: 400}}

func TestPolicyNeverIsNotStoredAndRecomputedOnResume(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	out := filepath.Join(t.TempDir(), "out")
	var ex exitRecorder
	opts := testOptions(st)
	opts.FailAt, opts.Exit = "sum", ex.exit
	var calls computeCalls
	if _, err := policyPipeline(t, opts, StageOptions{Checkpoint: Never}, &calls, out).Run(ctx); !errors.Is(err, ErrFailInjected) {
		t.Fatal(err)
	}
	objs, _ := st.List(ctx, "runs/000001/stages/mid/")
	if len(objs) != 0 {
		t.Fatalf("a stage with policy never stored %d objects", len(objs))
	}
	opts.FailAt = ""
	var calls2 computeCalls
	rep, err := policyPipeline(t, opts, StageOptions{Checkpoint: Never}, &calls2, out).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"src": Restored, "mid": Computed, "sum": Computed}
	if got := statuses(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if m := rep.Stage("mid"); m.Checkpointed || m.Reason != "checkpoint policy never" || m.Rows != 400 {
		t.Errorf("mid report %+v", *m)
	}
	if got := calls2.get("mid"); len(got) != 4 {
		t.Errorf("mid computed partitions %v on resume; want all 4, once each", got)
	}
	if got := calls2.get("src"); len(got) != 0 {
		t.Errorf("src recomputed %v", got)
	}
	if got := readOutput(t, out); !reflect.DeepEqual(got, policyWant) {
		t.Errorf("output %v, want %v", got, policyWant)
	}
}

func TestPolicyIfLongerThan(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		min    time.Duration
		stored bool
	}{
		{"quick stage is not stored", time.Hour, false},
		{"slow stage is stored", time.Nanosecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := storage.NewMem()
			var calls computeCalls
			opts := testOptions(st)
			opts.KeepIntermediates = true
			rep, err := policyPipeline(t, opts, StageOptions{Checkpoint: IfLongerThan(tc.min)}, &calls, "").Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := rep.Stage("mid")
			objs, _ := st.List(ctx, "runs/000001/stages/mid/")
			if m.Checkpointed != tc.stored || (len(objs) > 0) != tc.stored {
				t.Fatalf("checkpointed %v with %d objects, want %v; reason %q", m.Checkpointed, len(objs), tc.stored, m.Reason)
			}
			if got := calls.get("mid"); len(got) != 4 {
				t.Errorf("mid computed %v: the timing pass and the store must share one computation", got)
			}
			if m.Rows != 400 {
				t.Errorf("rows %d", m.Rows)
			}
		})
	}
}

func TestStagePartitionsRepartitionsTheOutput(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	var calls computeCalls
	opts := testOptions(st)
	opts.KeepIntermediates = true
	out := filepath.Join(t.TempDir(), "out")
	rep, err := policyPipeline(t, opts, StageOptions{Partitions: 10}, &calls, out).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := rep.Stage("mid"); m.Partitions != 10 || m.PartitionsComputed != 10 {
		t.Errorf("mid: %d partitions (%d computed), want 10", m.Partitions, m.PartitionsComputed)
	}
	if got := readOutput(t, out); !reflect.DeepEqual(got, policyWant) {
		t.Errorf("output %v, want %v", got, policyWant)
	}
}

// A changed source file recomputes the source stage and what follows, and
// the log names the file.
func TestChangedInputFileRecomputes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(file, []byte("1\n2\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := storage.NewMem()
	var logs bytes.Buffer
	build := func() *Pipeline {
		opts := testOptions(st)
		opts.KeepIntermediates = true
		opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		p, err := New("files", opts)
		if err != nil {
			t.Fatal(err)
		}
		src := Source(p, "read", StageOptions{Files: []string{filepath.Join(dir, "*.txt")}}, func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[num], error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			var ns []num
			for _, l := range strings.Fields(string(b)) {
				ns = append(ns, num{Key: l})
			}
			return dataset.FromSlice(s, ns, 1), nil
		})
		Then(p, "count", StageOptions{}, src, func(ctx context.Context, d *dataset.Dataset[num]) (*dataset.Dataset[num], error) {
			return d, nil
		})
		return p
	}
	if _, err := build().Run(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := build().Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(rep); got["read"] != Skipped || got["count"] != Restored {
		t.Fatalf("unchanged input: %v", got)
	}
	if err := os.WriteFile(file, []byte("1\n2\n3\n4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err = build().Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(rep); got["read"] != Computed || got["count"] != Computed {
		t.Fatalf("changed input: %v", got)
	}
	if r := rep.Stage("read").Reason; !strings.Contains(r, "changed file "+filepath.ToSlash(file)) {
		t.Errorf("reason %q does not name the changed file", r)
	}
	if rep.Stage("count").Rows != 4 {
		t.Errorf("count rows %d, want 4", rep.Stage("count").Rows)
	}
	if !strings.Contains(logs.String(), "changed file") {
		t.Errorf("the log does not say why read was recomputed:\n%s", logs.String())
	}
}

// A damaged part of a complete stage stops the run with an error that
// names the object and says how to recover; after DropStage, the next run
// recomputes the stage and succeeds.
func TestCorruptStageOutputIsNamedAndRecoverable(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	out := filepath.Join(t.TempDir(), "out")
	var ex exitRecorder
	opts := testOptions(st)
	opts.FailAt, opts.Exit = "sum", ex.exit
	var calls computeCalls
	if _, err := policyPipeline(t, opts, StageOptions{}, &calls, out).Run(ctx); !errors.Is(err, ErrFailInjected) {
		t.Fatal(err)
	}
	objs, err := st.List(ctx, "runs/000001/stages/mid/")
	if err != nil {
		t.Fatal(err)
	}
	var part string
	for _, o := range objs {
		if strings.HasSuffix(o.Name, ".parquet") {
			part = o.Name
			break
		}
	}
	data, err := storage.GetBytes(ctx, st, part)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := storage.PutBytes(ctx, st, part, data, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	opts.FailAt = ""
	_, err = policyPipeline(t, opts, StageOptions{}, &calls, out).Run(ctx)
	if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), part) || !strings.Contains(err.Error(), "cairn pipeline drop-stage mem://") {
		t.Fatalf("err %v; want a corruption error naming %s and the drop-stage command", err, part)
	}
	if _, err := DropStage(ctx, st, "mid"); err != nil {
		t.Fatal(err)
	}
	var calls2 computeCalls
	rep, err := policyPipeline(t, opts, StageOptions{}, &calls2, out).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(rep); got["mid"] != Computed || got["src"] != Restored {
		t.Errorf("statuses %v", got)
	}
	if got := readOutput(t, out); !reflect.DeepEqual(got, policyWant) {
		t.Errorf("output %v, want %v", got, policyWant)
	}
}

// A partial stage output made with another partition count is not
// resumed partition by partition: it is deleted and recomputed.
func TestChangedPartitionCountRestartsPartialStage(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	out := filepath.Join(t.TempDir(), "out")
	var ex exitRecorder
	opts := testOptions(st)
	opts.Dataset.Parallelism = 1
	opts.FailAt, opts.Exit = "sum:0", ex.exit
	build := func(parts int) *Pipeline {
		p, err := New("parts", opts)
		if err != nil {
			t.Fatal(err)
		}
		src := Source(p, "src", StageOptions{}, func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[num], error) {
			var ns []num
			for i := range 100 {
				ns = append(ns, num{Key: fmt.Sprintf("k%d", i%7), Value: int64(i)})
			}
			return dataset.FromSlice(s, ns, 2), nil
		})
		sum := Then(p, "sum", StageOptions{}, src, func(ctx context.Context, d *dataset.Dataset[num]) (*dataset.Dataset[total], error) {
			kv := dataset.Map(d, func(n num) dataset.Pair[string, total] {
				return dataset.KV(n.Key, total{Key: n.Key, Sum: n.Value, Count: 1})
			})
			return dataset.Map(dataset.ReduceByKey(kv, func(a, b total) total {
				return total{Key: a.Key, Sum: a.Sum + b.Sum, Count: a.Count + b.Count}
			}, parts), func(p dataset.Pair[string, total]) total { return p.Value }), nil
		})
		Publish(p, sum, out, dataset.WriteOptions{})
		return p
	}
	if _, err := build(4).Run(ctx); !errors.Is(err, ErrFailInjected) {
		t.Fatal(err)
	}
	opts.FailAt = ""
	rep, err := build(3).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Stage("sum"); r.Partitions != 3 || r.PartitionsRestored != 0 || !strings.Contains(r.Reason, "partitions changed 4 → 3") {
		t.Errorf("sum report %+v", *r)
	}
	got := readOutput(t, out)
	var n int64
	for _, g := range got {
		n += g.Count
	}
	if len(got) != 7 || n != 100 {
		t.Errorf("output %v: want 7 keys and 100 records", got)
	}
}

// Adding a field to a stage's record type changes its fingerprint.
func TestSchemaChangeChangesFingerprint(t *testing.T) {
	type v1 struct{ A int64 }
	type v2 struct {
		A int64
		B string
	}
	a, b := schemaHash(reflect.TypeFor[v1]()), schemaHash(reflect.TypeFor[v2]())
	if a == b {
		t.Fatal("adding a field did not change the schema hash")
	}
	if schemaHash(reflect.TypeFor[v1]()) != a {
		t.Fatal("the schema hash is not deterministic")
	}
	old := stageSpec{Type: "main.Order", Schema: a}
	if got := diffSpecs(old, stageSpec{Type: "main.Order", Schema: b}); !strings.Contains(got, "fields of record type main.Order changed") {
		t.Errorf("diff %q", got)
	}
}
