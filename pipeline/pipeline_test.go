package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// The test pipeline: two sources, a join, an aggregation.
//
//	nums (6 partitions, drops every 50th value and counts it) ─┐
//	                                                          ├─ joined (4) ── totals (2) → published
//	weights (2 partitions) ───────────────────────────────────┘

type num struct {
	Key   string
	Value int64
}

type weight struct {
	Key    string
	Weight int64
}

type total struct {
	Key   string
	Sum   int64
	Count int64
}

const (
	numParts   = 6
	numPerPart = 500
	numKeys    = 13
)

// computeCalls counts partitions computed, per stage.
type computeCalls struct {
	mu sync.Mutex
	m  map[string][]int
}

func (c *computeCalls) add(stage string, part int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]int{}
	}
	c.m[stage] = append(c.m[stage], part)
}

func (c *computeCalls) get(stage string) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.m[stage])
	slices.Sort(out)
	return out
}

type testSpec struct {
	versions map[string]string
	out      string
}

func buildTestPipeline(t testing.TB, opts Options, spec testSpec, calls *computeCalls) *Pipeline {
	t.Helper()
	p, err := New("test", opts)
	if err != nil {
		t.Fatal(err)
	}
	v := func(stage string) StageOptions { return StageOptions{Version: spec.versions[stage]} }
	nums := Source(p, "nums", v("nums"), func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[num], error) {
		return dataset.FromFunc(s, "nums", numParts, func(ctx context.Context, part int, emit func(num) error) error {
			calls.add("nums", part)
			for i := range numPerPart {
				if i%50 == 0 {
					Count(ctx, "dropped", 1)
					continue
				}
				if err := emit(num{Key: fmt.Sprintf("k%02d", (part*7+i)%numKeys), Value: int64(part*1000 + i)}); err != nil {
					return err
				}
			}
			return nil
		}), nil
	})
	weights := Source(p, "weights", v("weights"), func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[weight], error) {
		var ws []weight
		for k := range numKeys - 1 { // the last key has no weight: the join drops it
			ws = append(ws, weight{Key: fmt.Sprintf("k%02d", k), Weight: int64(k + 1)})
		}
		return dataset.FromSlice(s, ws, 2), nil
	})
	joined := Combine(p, "joined", v("joined"), nums, weights, func(ctx context.Context, a *dataset.Dataset[num], b *dataset.Dataset[weight]) (*dataset.Dataset[num], error) {
		l := dataset.Map(a, func(n num) dataset.Pair[string, int64] { return dataset.KV(n.Key, n.Value) })
		r := dataset.Map(b, func(w weight) dataset.Pair[string, int64] { return dataset.KV(w.Key, w.Weight) })
		j := dataset.Join(l, r, 4)
		return dataset.MapPartitions(j, func(ctx context.Context, part int, in iter.Seq2[dataset.Pair[string, dataset.Joined[int64, int64]], error]) iter.Seq2[num, error] {
			calls.add("joined", part)
			return func(yield func(num, error) bool) {
				for kv, err := range in {
					if err != nil {
						yield(num{}, err)
						return
					}
					if !yield(num{Key: kv.Key, Value: kv.Value.Left * kv.Value.Right}, nil) {
						return
					}
				}
			}
		}), nil
	})
	totals := Then(p, "totals", v("totals"), joined, func(ctx context.Context, d *dataset.Dataset[num]) (*dataset.Dataset[total], error) {
		kv := dataset.Map(d, func(n num) dataset.Pair[string, total] {
			return dataset.KV(n.Key, total{Key: n.Key, Sum: n.Value, Count: 1})
		})
		red := dataset.ReduceByKey(kv, func(a, b total) total { return total{Key: a.Key, Sum: a.Sum + b.Sum, Count: a.Count + b.Count} }, 2)
		return dataset.Map(red, func(p dataset.Pair[string, total]) total { calls.add("totals", 0); return p.Value }), nil
	})
	if spec.out != "" {
		Publish(p, totals, spec.out, dataset.WriteOptions{})
	}
	return p
}

// oracle computes the totals with plain loops.
func oracle() []total {
	m := map[string]*total{}
	for part := range numParts {
		for i := range numPerPart {
			if i%50 == 0 {
				continue
			}
			k := (part*7 + i) % numKeys
			if k == numKeys-1 {
				continue
			}
			key := fmt.Sprintf("k%02d", k)
			if m[key] == nil {
				m[key] = &total{Key: key}
			}
			m[key].Sum += int64(part*1000+i) * int64(k+1)
			m[key].Count++
		}
	}
	var out []total
	for _, t := range m {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b total) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// readOutput reads a published output directory.
func readOutput(t testing.TB, dir string) []total {
	t.Helper()
	s, err := dataset.NewSession(dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if _, err := storage.GetBytes(context.Background(), mustLocal(t, dir), dataset.SuccessObject); err != nil {
		t.Fatalf("output %s has no %s: %v", dir, dataset.SuccessObject, err)
	}
	d, err := dataset.ReadParquet[total](s, filepath.Join(dir, "*.parquet"), dataset.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b total) int { return strings.Compare(a.Key, b.Key) })
	return got
}

func mustLocal(t testing.TB, dir string) storage.Storage {
	t.Helper()
	st, err := storage.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// exitRecorder stands in for os.Exit at a FailAt point.
type exitRecorder struct{ codes []int }

func (e *exitRecorder) exit(code int) { e.codes = append(e.codes, code) }

func testOptions(st storage.Storage) Options {
	return Options{Storage: st, Logger: quietLogger(), Dataset: dataset.Options{Parallelism: 2}}
}

func statuses(rep *Report) map[string]Status {
	out := map[string]Status{}
	for _, s := range rep.Stages {
		out[s.Name] = s.Status
	}
	return out
}

func TestCleanRunMatchesOracle(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	var calls computeCalls
	rep, err := buildTestPipeline(t, testOptions(st), testSpec{out: out}, &calls).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readOutput(t, out), oracle(); !reflect.DeepEqual(got, want) {
		t.Fatalf("output differs from the oracle:\n got %v\nwant %v", got, want)
	}
	for _, s := range rep.Stages {
		if s.Status != Computed {
			t.Errorf("stage %s: %s, want computed (a new run)", s.Name, s.Status)
		}
	}
	if got := rep.Stage("nums").Counters["dropped"]; got != numParts*numPerPart/50 {
		t.Errorf("nums dropped counter = %d, want %d", got, numParts*numPerPart/50)
	}
	if rep.Stage("nums").Rows != numParts*(numPerPart-numPerPart/50) {
		t.Errorf("nums rows = %d", rep.Stage("nums").Rows)
	}
	if !rep.Resumed && rep.Run != "000001" {
		t.Errorf("run = %q, want 000001", rep.Run)
	}
	table := rep.Table()
	for _, want := range []string{"nums", "computed", "counters of nums: dropped=60", "published totals"} {
		if !strings.Contains(table, want) {
			t.Errorf("summary table lacks %q:\n%s", want, table)
		}
	}
}

// The recipe: fail at a stage, run again, the stages before it are
// restored and the output equals a clean run's.
func TestFailAtStageThenResume(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	var calls computeCalls
	var ex exitRecorder
	opts := testOptions(st)
	opts.FailAt, opts.Exit = "joined", ex.exit
	_, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx)
	if !errors.Is(err, ErrFailInjected) || !slices.Equal(ex.codes, []int{FailExitStatus}) {
		t.Fatalf("Run at FailAt: err %v, exit codes %v; want ErrFailInjected and exit %d", err, ex.codes, FailExitStatus)
	}
	if got := calls.get("nums"); len(got) != numParts {
		t.Fatalf("nums computed partitions %v before the failure", got)
	}

	var calls2 computeCalls
	rep, err := buildTestPipeline(t, testOptions(st), testSpec{out: out}, &calls2).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"nums": Restored, "weights": Restored, "joined": Computed, "totals": Computed}
	if got := statuses(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if !rep.Resumed || rep.Run != "000001" {
		t.Errorf("run %s resumed=%v; want run 000001 resumed", rep.Run, rep.Resumed)
	}
	if got := calls2.get("nums"); len(got) != 0 {
		t.Errorf("nums recomputed partitions %v on resume", got)
	}
	if got := rep.Stage("nums").Counters["dropped"]; got != numParts*numPerPart/50 {
		t.Errorf("restored nums dropped counter = %d, want %d (kept from the run that computed it)", got, numParts*numPerPart/50)
	}
	if got, want := readOutput(t, out), oracle(); !reflect.DeepEqual(got, want) {
		t.Fatalf("output differs from the oracle:\n got %v\nwant %v", got, want)
	}
}

// A failure between storing a partition and recording it complete: the
// resumed run recomputes that partition and those not done, and no other.
func TestFailAtPartitionRecomputesOnlyIncomplete(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	var ex exitRecorder
	opts := testOptions(st)
	opts.Dataset.Parallelism = 1 // partitions in order: 0, 1, 2, ...
	opts.FailAt, opts.Exit = "nums:3", ex.exit
	var calls computeCalls
	if _, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx); !errors.Is(err, ErrFailInjected) {
		t.Fatalf("err %v, want ErrFailInjected", err)
	}
	if got := calls.get("nums"); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("first attempt computed %v, want [0 1 2 3]", got)
	}
	opts.FailAt = ""
	var calls2 computeCalls
	rep, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls2).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := calls2.get("nums"); !slices.Equal(got, []int{3, 4, 5}) {
		t.Errorf("resumed run computed nums partitions %v, want [3 4 5] (0-2 were complete; 3 was stored but not recorded)", got)
	}
	n := rep.Stage("nums")
	if n.Status != Computed || n.PartitionsRestored != 3 || n.PartitionsComputed != 3 || !strings.Contains(n.Reason, "resuming: 3 partitions complete") {
		t.Errorf("nums report %+v", *n)
	}
	if got, want := readOutput(t, out), oracle(); !reflect.DeepEqual(got, want) {
		t.Fatalf("output differs from the oracle:\n got %v\nwant %v", got, want)
	}
}

// A changed version recomputes that stage and what is downstream, and
// says why; upstream stages are restored.
func TestChangedVersionRecomputesDownstreamOnly(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	var ex exitRecorder
	opts := testOptions(st)
	opts.FailAt, opts.Exit = "totals:0", ex.exit // totals has started: its spec is stored
	var calls computeCalls
	if _, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx); !errors.Is(err, ErrFailInjected) {
		t.Fatalf("err %v, want ErrFailInjected", err)
	}
	opts.FailAt = ""
	var calls2 computeCalls
	rep, err := buildTestPipeline(t, opts, testSpec{out: out, versions: map[string]string{"joined": "2"}}, &calls2).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"nums": Restored, "weights": Restored, "joined": Computed, "totals": Computed}
	if got := statuses(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if r := rep.Stage("joined").Reason; !strings.Contains(r, `version "" → "2"`) {
		t.Errorf("joined reason %q does not name the version change", r)
	}
	if r := rep.Stage("totals").Reason; !strings.Contains(r, "input joined changed") {
		t.Errorf("totals reason %q does not say its input changed", r)
	}
	if got := calls2.get("nums"); len(got) != 0 {
		t.Errorf("nums recomputed %v", got)
	}
	if got, want := readOutput(t, out), oracle(); !reflect.DeepEqual(got, want) {
		t.Fatalf("output differs from the oracle")
	}
}

// A new run restores from a published run whose intermediates were kept,
// and clean-up keeps what another run reads.
func TestNewRunRestoresFromKeptRun(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	opts := testOptions(st)
	opts.KeepIntermediates = true
	var calls computeCalls
	if _, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx); err != nil {
		t.Fatal(err)
	}
	opts.KeepIntermediates = false
	var calls2 computeCalls
	rep, err := buildTestPipeline(t, opts, testSpec{out: out, versions: map[string]string{"totals": "2"}}, &calls2).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"nums": Skipped, "weights": Skipped, "joined": Restored, "totals": Computed}
	if got := statuses(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if rep.Run != "000002" || rep.Stage("joined").RestoredFrom != "000001" {
		t.Errorf("run %s, joined restored from %q; want run 000002 reading run 000001", rep.Run, rep.Stage("joined").RestoredFrom)
	}
	if r := rep.Stage("totals").Reason; !strings.Contains(r, "since run 000001") || !strings.Contains(r, `version "" → "2"`) {
		t.Errorf("totals reason %q", r)
	}
	if got, want := readOutput(t, out), oracle(); !reflect.DeepEqual(got, want) {
		t.Fatalf("output differs from the oracle")
	}
	// Run 2's intermediates are gone, run 1's (kept) stay.
	_, runs, err := ListRuns(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].State != "published" || !runs[0].Kept || runs[1].State != "published, intermediates deleted" {
		t.Fatalf("runs: %v", runs)
	}
	if len(runs[0].Stages) != 4 {
		t.Errorf("kept run 1 has %d stage outputs, want 4", len(runs[0].Stages))
	}
}

func TestIntermediatesDeletedAfterPublish(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	var calls computeCalls
	rep, err := buildTestPipeline(t, testOptions(st), testSpec{out: out}, &calls).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(ctx, "runs/000001/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	if want := []string{"runs/000001/_cleaned", "runs/000001/_published", "runs/000001/_run"}; !slices.Equal(names, want) {
		t.Errorf("after publishing, run 1 holds %v, want only %v", names, want)
	}
	if rep.Cleanup.Objects == 0 || rep.Cleanup.Bytes == 0 || !slices.Equal(rep.Cleanup.Runs, []string{"000001"}) {
		t.Errorf("cleanup report %+v", rep.Cleanup)
	}
}

func TestRetainRuns(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	opts := testOptions(st)
	opts.RetainRuns = 2
	opts.Fresh = true // recompute every time, so each run has its own outputs
	for range 3 {
		var calls computeCalls
		if _, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, runs, err := ListRuns(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, r := range runs {
		states = append(states, r.State)
	}
	want := []string{"published, intermediates deleted", "published", "published"}
	if !slices.Equal(states, want) {
		t.Fatalf("states %v, want %v", states, want)
	}
}

func TestGCRemovesAbandonedRuns(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	var ex exitRecorder
	opts := testOptions(st)
	opts.FailAt, opts.Exit = "totals", ex.exit
	var calls computeCalls
	if _, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx); !errors.Is(err, ErrFailInjected) {
		t.Fatal(err)
	}
	opts.FailAt, opts.Fresh = "", true
	rep, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Run != "000002" {
		t.Fatalf("fresh run is %s, want 000002", rep.Run)
	}
	before, _ := st.List(ctx, "runs/000001/")
	dry, err := GC(ctx, st, GCOptions{DryRun: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Objects != len(before) || !slices.Equal(dry.Runs, []string{"000001"}) {
		t.Fatalf("dry run %+v; run 1 has %d objects", dry, len(before))
	}
	if after, _ := st.List(ctx, "runs/000001/"); len(after) != len(before) {
		t.Fatalf("dry run deleted objects")
	}
	// Run 1 was started just now: --older-than 1h keeps it.
	if got, err := GC(ctx, st, GCOptions{OlderThan: time.Hour, Logger: quietLogger()}); err != nil || got.Objects != 0 {
		t.Fatalf("gc --older-than 1h: %+v, %v; want nothing removed", got, err)
	}
	got, err := GC(ctx, st, GCOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got.Objects != dry.Objects || got.Bytes != dry.Bytes {
		t.Errorf("gc %+v, dry run said %+v", got, dry)
	}
	if after, _ := st.List(ctx, "runs/000001/"); len(after) != 0 {
		t.Errorf("run 1 still has %d objects after gc", len(after))
	}
	if after, _ := st.List(ctx, "runs/000002/"); len(after) != 3 {
		t.Errorf("run 2 has %d objects after gc, want its 3 records", len(after))
	}
}

// A pipeline whose latest run published every output from the same
// fingerprints is up to date: nothing runs. A changed stage, or a missing
// output, makes it run again.
func TestUpToDate(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	var calls computeCalls
	if _, err := buildTestPipeline(t, testOptions(st), testSpec{out: out}, &calls).Run(ctx); err != nil {
		t.Fatal(err)
	}
	var calls2 computeCalls
	rep, err := buildTestPipeline(t, testOptions(st), testSpec{out: out}, &calls2).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.UpToDate || rep.Run != "000001" || len(calls2.get("nums")) != 0 || len(calls2.get("totals")) != 0 {
		t.Fatalf("second run: up to date %v, run %s, computed nums %v; want up to date, run 000001, nothing computed", rep.UpToDate, rep.Run, calls2.get("nums"))
	}
	if !strings.Contains(rep.Table(), "up to date") {
		t.Errorf("summary table does not say up to date:\n%s", rep.Table())
	}

	// A changed version is not up to date.
	rep, err = buildTestPipeline(t, testOptions(st), testSpec{out: out, versions: map[string]string{"totals": "2"}}, &calls2).Run(ctx)
	if err != nil || rep.UpToDate || rep.Run != "000002" {
		t.Fatalf("changed version: up to date %v, run %s, %v", rep.UpToDate, rep.Run, err)
	}

	// A deleted output is not up to date either.
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	var calls3 computeCalls
	rep, err = buildTestPipeline(t, testOptions(st), testSpec{out: out, versions: map[string]string{"totals": "2"}}, &calls3).Run(ctx)
	if err != nil || rep.UpToDate || rep.Run != "000003" {
		t.Fatalf("missing output: up to date %v, run %s, %v", rep.UpToDate, rep.Run, err)
	}
	if got, want := readOutput(t, out), oracle(); !reflect.DeepEqual(got, want) {
		t.Fatalf("output differs from the oracle")
	}
}
