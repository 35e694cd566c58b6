package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/internal/s3test"
	"github.com/cairn-data/cairn/internal/s3test/miniotest"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

// TestFaultAtEveryOperation fails, or crashes, the k-th storage operation
// of a run, for every k, then runs again on the undamaged storage as a
// restarted process would. The second run must publish the oracle's
// output, leave no intermediate data behind, and compute no partition of
// a stage twice unless that partition was in flight when the fault hit.
func TestFaultAtEveryOperation(t *testing.T) {
	for _, mode := range []string{"fail", "crash", "crash-put-lands"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			faultEveryOperation(t, mode, func(k int) storage.Storage { return storage.NewMem() }, nil)
		})
	}
}

// TestFaultAtEveryOperationS3 is the same test on a real S3-compatible
// server (MinIO), for a sample of the k: every stride-th, from a random
// offset (the seed is printed), since each operation is a request.
func TestFaultAtEveryOperationS3(t *testing.T) {
	open := s3test.Bucket(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CAIRN_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (replay with CAIRN_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, mode := range []string{"fail", "crash-put-lands"} {
		t.Run(mode, func(t *testing.T) {
			stride := 9
			offset := 1 + rng.IntN(stride)
			faultEveryOperation(t, mode, func(k int) storage.Storage { return open(fmt.Sprintf("%s/k%d", mode, k)) },
				func(k int) bool { return k%stride == offset%stride })
		})
	}
}

// faultEveryOperation runs the fault test for each k (those sample
// accepts; nil: all) until a run issues fewer than k operations.
func faultEveryOperation(t *testing.T, mode string, newInner func(k int) storage.Storage, sample func(k int) bool) {
	ctx := context.Background()
	tried := 0
	for k := 1; ; k++ {
		if sample != nil && !sample(k) {
			continue
		}
		tried++
		inner := newInner(k)
		fs := faulty.New(inner)
		switch mode {
		case "fail":
			fs.FailAt(k, nil)
		case "crash":
			fs.CrashAt(k, nil)
		case "crash-put-lands":
			fs.PutLandsOnCrash = true
			fs.CrashAt(k, nil)
		}
		out := filepath.Join(t.TempDir(), "totals")
		opts := testOptions(fs)
		opts.Dataset.Parallelism = 1
		var calls computeCalls
		_, err1 := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx)
		if fs.Ops() < k {
			if err1 != nil {
				t.Fatalf("k=%d: no fault was injected, yet Run failed: %v", k, err1)
			}
			if k < 20 {
				t.Fatalf("only %d storage operations in a run: the test is not exercising the pipeline", k-1)
			}
			t.Logf("%s: a clean run issues %d storage operations; %d of them were faulted", mode, fs.Ops(), tried-1)
			return
		}
		// Restart: the same storage without faults; the crashed
		// process's lease is made stale by moving the clock on.
		opts2 := testOptions(inner)
		opts2.Dataset.Parallelism = 1
		opts2.Now = func() time.Time { return time.Now().Add(time.Hour) }
		var calls2 computeCalls
		rep, err := buildTestPipeline(t, opts2, testSpec{out: out}, &calls2).Run(ctx)
		if err != nil {
			t.Fatalf("k=%d (first run: %v): the restarted run failed: %v", k, err1, err)
		}
		if got, want := readOutput(t, out), oracle(); !reflect.DeepEqual(got, want) {
			t.Fatalf("k=%d: output differs from the oracle", k)
		}
		for _, stage := range []string{"nums", "joined"} {
			if err1 == nil {
				continue // the fault hit a step after the stages (clean-up); the restart restores or skips
			}
			if dup := overlap(calls.get(stage), calls2.get(stage)); len(dup) > 1 {
				t.Errorf("k=%d: stage %s: partitions %v were computed by both runs; at most the one in flight may be", k, stage, dup)
			}
		}
		if rep.Run != "000001" && rep.Run != "000002" {
			t.Errorf("k=%d: run %s", k, rep.Run)
		}
		left, err := inner.List(ctx, "runs/")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range left {
			if strings.Contains(o.Name, "/stages/") || strings.Contains(o.Name, "/refs/") {
				t.Errorf("k=%d: intermediate object %s left after publishing", k, o.Name)
				break
			}
		}
	}
}

func overlap(a, b []int) []int {
	var out []int
	for _, x := range a {
		if slices.Contains(b, x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// A stage's lost checkpoint is recomputed; stages downstream whose
// fingerprints did not change are still restored.
func TestDropStageRecomputesOnlyThatStage(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "totals")
	st := storage.NewMem()
	var ex exitRecorder
	opts := testOptions(st)
	opts.FailAt, opts.Exit = "totals", ex.exit
	var calls computeCalls
	if _, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx); err == nil {
		t.Fatal("FailAt did not stop the run")
	}
	rep, err := DropStage(ctx, st, "nums")
	if err != nil || rep.Objects == 0 {
		t.Fatalf("DropStage: %+v, %v", rep, err)
	}
	if _, err := DropStage(ctx, st, "nope"); err == nil {
		t.Error("DropStage of a stage with no output succeeded")
	}
	opts.FailAt = ""
	var calls2 computeCalls
	r, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls2).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// totals needs joined, which is complete: nums is not needed at all.
	want := map[string]Status{"nums": Skipped, "weights": Skipped, "joined": Restored, "totals": Computed}
	if got := statuses(r); !reflect.DeepEqual(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}

	// Now lose joined as well as nums: both are recomputed.
	st2 := storage.NewMem()
	opts = testOptions(st2)
	opts.FailAt, opts.Exit = "totals", ex.exit
	if _, err := buildTestPipeline(t, opts, testSpec{out: out}, &calls).Run(ctx); err == nil {
		t.Fatal("FailAt did not stop the run")
	}
	for _, s := range []string{"nums", "joined"} {
		if _, err := DropStage(ctx, st2, s); err != nil {
			t.Fatal(err)
		}
	}
	opts.FailAt = ""
	var calls3 computeCalls
	r, err = buildTestPipeline(t, opts, testSpec{out: out}, &calls3).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]Status{"nums": Computed, "weights": Restored, "joined": Computed, "totals": Computed}
	if got := statuses(r); !reflect.DeepEqual(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if got, want := readOutput(t, out), oracle(); !reflect.DeepEqual(got, want) {
		t.Fatalf("output differs from the oracle")
	}
}

// Bad inputs and configurations get errors that name what to fix.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	var calls computeCalls
	if _, err := buildTestPipeline(t, testOptions(st), testSpec{}, &calls).Run(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := New("other", testOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	Source[num](other, "x", StageOptions{}, nil)
	if _, err := other.Run(ctx); err == nil || !strings.Contains(err.Error(), `holds the checkpoints of pipeline "test", not "other"`) {
		t.Errorf("another pipeline at the same location: %v", err)
	}

	for _, tc := range []struct {
		name  string
		build func(p *Pipeline)
		want  string
	}{
		{"duplicate stage", func(p *Pipeline) {
			Source[num](p, "a", StageOptions{}, nil)
			Source[num](p, "a", StageOptions{}, nil)
		}, `two stages are named "a"`},
		{"bad stage name", func(p *Pipeline) { Source[num](p, "a/b", StageOptions{}, nil) }, `stage name "a/b"`},
		{"missing files", func(p *Pipeline) {
			Source[num](p, "a", StageOptions{Files: []string{filepath.Join(t.TempDir(), "*.jsonl")}}, nil)
		}, "no file matches"},
		{"bad params", func(p *Pipeline) { Source[num](p, "a", StageOptions{Params: func() {}}, nil) }, "Params cannot be marshalled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New("refusals", testOptions(storage.NewMem()))
			if err != nil {
				t.Fatal(err)
			}
			tc.build(p)
			if _, err := p.Run(ctx); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := New("x", Options{}); err == nil || !strings.Contains(err.Error(), "Options.Checkpoint is empty") {
		t.Errorf("no checkpoint location: %v", err)
	}
	if _, err := New("x", Options{Storage: st, FailAt: "a:b"}); err == nil || !strings.Contains(err.Error(), "CAIRN_FAIL_AT") {
		t.Errorf("bad FailAt: %v", err)
	}
}

// A second process on the same location is refused while the first runs.
func TestSecondRunnerRefused(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	started, release := make(chan struct{}), make(chan struct{})
	p, err := New("test", testOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	Source(p, "slow", StageOptions{}, func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[num], error) {
		return dataset.FromFunc(s, "slow", 1, func(ctx context.Context, part int, emit func(num) error) error {
			close(started)
			<-release
			return emit(num{Key: "a", Value: 1})
		}), nil
	})
	done := make(chan error, 1)
	go func() { _, err := p.Run(ctx); done <- err }()
	<-started
	var calls computeCalls
	_, err = buildTestPipeline(t, testOptions(st), testSpec{}, &calls).Run(ctx)
	close(release)
	if err == nil || !strings.Contains(fmt.Sprint(err), "in use by another process") {
		t.Errorf("second runner: %v; want it refused by the lease", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) { miniotest.Main(m) }
