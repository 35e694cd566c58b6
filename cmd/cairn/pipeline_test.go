package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/pipeline"
	"github.com/cairn-data/cairn/storage"
)

// The pipeline fixture: numbers 1 to 100 in 2 partitions, their squares,
// and the sums of the squares of the odd and the even numbers, published.
//
//	numbers (2) ── squares (2) ── totals (1) → published

type pipeNumber struct{ N int64 }

type pipeSquare struct{ N, Square int64 }

type pipeTotal struct {
	Parity string
	Sum    int64
	Count  int64
}

// Run start times of the fixture: each run gets its own fixed clock, so
// that the times status prints are known.
var (
	pipeRun1Clock = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	pipeRun2Clock = time.Date(2025, 3, 2, 11, 30, 0, 0, time.UTC)
)

// pipelineFixture is a pipeline's checkpoint location and output.
type pipelineFixture struct {
	dir, out string
}

// runFixturePipeline runs the fixture pipeline once with opts, filling in
// its checkpoint location, logger and parallelism.
func runFixturePipeline(t *testing.T, f pipelineFixture, opts pipeline.Options) error {
	t.Helper()
	opts.Checkpoint = f.dir
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.Dataset.Parallelism = 1 // partitions in order, so FailAt "stage:1" leaves partition 0 complete
	p, err := pipeline.New("squares-demo", opts)
	if err != nil {
		t.Fatal(err)
	}
	numbers := pipeline.Source(p, "numbers", pipeline.StageOptions{Version: "1"},
		func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[pipeNumber], error) {
			ns := make([]pipeNumber, 100)
			for i := range ns {
				ns[i] = pipeNumber{int64(i + 1)}
			}
			return dataset.FromSlice(s, ns, 2), nil
		})
	squares := pipeline.Then(p, "squares", pipeline.StageOptions{Version: "1"}, numbers,
		func(ctx context.Context, d *dataset.Dataset[pipeNumber]) (*dataset.Dataset[pipeSquare], error) {
			return dataset.Map(d, func(n pipeNumber) pipeSquare { return pipeSquare{n.N, n.N * n.N} }), nil
		})
	totals := pipeline.Then(p, "totals", pipeline.StageOptions{Version: "1"}, squares,
		func(ctx context.Context, d *dataset.Dataset[pipeSquare]) (*dataset.Dataset[pipeTotal], error) {
			kv := dataset.Map(d, func(s pipeSquare) dataset.Pair[string, pipeTotal] {
				parity := []string{"even", "odd"}[s.N%2]
				return dataset.KV(parity, pipeTotal{parity, s.Square, 1})
			})
			sums := dataset.ReduceByKey(kv, func(a, b pipeTotal) pipeTotal { return pipeTotal{a.Parity, a.Sum + b.Sum, a.Count + b.Count} }, 1)
			return dataset.Map(sums, func(p dataset.Pair[string, pipeTotal]) pipeTotal { return p.Value }), nil
		})
	pipeline.Publish(p, totals, f.out, dataset.WriteOptions{})
	_, err = p.Run(context.Background())
	return err
}

// buildPipelineLocation leaves two runs at a new checkpoint location: run
// 000001, stopped as a pre-empted machine would after storing partition 0
// of squares (numbers complete, squares 1 of 2 partitions), and run
// 000002, a fresh start that published; RetainRuns 1 keeps its stage
// outputs.
func buildPipelineLocation(t *testing.T) pipelineFixture {
	t.Helper()
	root := t.TempDir()
	f := pipelineFixture{dir: filepath.Join(root, "checkpoint"), out: filepath.Join(root, "totals")}
	err := runFixturePipeline(t, f, pipeline.Options{
		FailAt: "squares:1", Exit: func(int) {}, Now: func() time.Time { return pipeRun1Clock },
	})
	if !errors.Is(err, pipeline.ErrFailInjected) {
		t.Fatalf("run 1 with FailAt: %v, want ErrFailInjected", err)
	}
	if err := runFixturePipeline(t, f, pipeline.Options{
		Fresh: true, RetainRuns: 1, Now: func() time.Time { return pipeRun2Clock },
	}); err != nil {
		t.Fatalf("run 2: %v", err)
	}
	return f
}

// listFixtureRuns returns the runs at the fixture's location.
func listFixtureRuns(t *testing.T, dir string) []pipeline.RunStatus {
	t.Helper()
	st, err := storage.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, runs, err := pipeline.ListRuns(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

func runStates(runs []pipeline.RunStatus) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID+" "+r.State)
	}
	return out
}

// sizeRE matches the sizes status prints: the objects under a run hold
// its host and pid, and completion records their compute times.
var sizeRE = regexp.MustCompile(`\b\d+(\.\d+)? (B|KiB|MiB|GiB)\b`)

func TestPipelineStatus(t *testing.T) {
	t.Parallel()
	f := buildPipelineLocation(t)
	hide := func(s string) string {
		s = strings.ReplaceAll(s, f.dir, "CHECKPOINT")
		return strings.ReplaceAll(s, f.out, "OUTPUT")
	}

	args := []string{"pipeline", "status", f.dir}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	golden(t, "pipeline-status.golden", sizeRE.ReplaceAllString(hide(r.stdout), "SIZE"))
	if r.stderr != "" {
		t.Errorf("status printed to stderr:\n%s", r)
	}

	// The same location as a file:// URL, flags after the argument.
	args = []string{"pipeline", "status", "file://" + f.dir, "--json"}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	var doc pipelineStatusDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json output is not a JSON document: %v\n%s", err, r.stdout)
	}
	if doc.Format != 1 || doc.Pipeline != "squares-demo" || doc.Location != "file://"+f.dir || len(doc.Runs) != 2 {
		t.Fatalf("document: format %d, pipeline %q, location %q, %d runs; want 1, squares-demo, file://%s, 2 runs",
			doc.Format, doc.Pipeline, doc.Location, len(doc.Runs), f.dir)
	}
	want := listFixtureRuns(t, f.dir)
	run1, run2 := doc.Runs[0], doc.Runs[1]
	switch {
	case run1.ID != "000001" || run1.State != "incomplete" || run1.Fresh || run1.Finished != nil ||
		run1.Started == nil || !run1.Started.Equal(pipeRun1Clock):
		t.Errorf("run 1 %+v; want 000001, incomplete, started %v", run1, pipeRun1Clock)
	case run2.ID != "000002" || run2.State != "published" || !run2.Fresh || run2.IntermediatesDeleted || run2.IntermediatesKept ||
		run2.Finished == nil || !run2.Finished.Equal(pipeRun2Clock):
		t.Errorf("run 2 %+v; want 000002, published fresh at %v, intermediates neither deleted nor kept", run2, pipeRun2Clock)
	case run1.Objects != want[0].Objects || run1.Bytes != want[0].Bytes || run2.Objects != want[1].Objects || run2.Bytes != want[1].Bytes:
		t.Errorf("objects and bytes %d %d, %d %d; ListRuns says %d %d, %d %d", run1.Objects, run1.Bytes, run2.Objects, run2.Bytes,
			want[0].Objects, want[0].Bytes, want[1].Objects, want[1].Bytes)
	}
	stages := func(r pipelineRun) []string {
		var out []string
		for _, s := range r.Stages {
			out = append(out, fmt.Sprintf("%s complete=%v %d/%d", s.Name, s.Complete, s.PartitionsDone, s.Partitions))
		}
		return out
	}
	if got, want := stages(run1), []string{"numbers complete=true 2/2", "squares complete=false 1/2"}; !slices.Equal(got, want) {
		t.Errorf("run 1 stages %q, want %q", got, want)
	}
	if got, want := stages(run2), []string{"numbers complete=true 2/2", "squares complete=true 2/2", "totals complete=true 1/1"}; !slices.Equal(got, want) {
		t.Errorf("run 2 stages %q, want %q", got, want)
	}
	// The fingerprints do not change with a fresh start: same spec.
	if run1.Stages[0].Fingerprint != run2.Stages[0].Fingerprint || len(run1.Stages[0].Fingerprint) != 16 {
		t.Errorf("numbers fingerprints %q and %q; want the same 16 hex digits", run1.Stages[0].Fingerprint, run2.Stages[0].Fingerprint)
	}
	if len(run2.Outputs) != 1 || run2.Outputs[0].Stage != "totals" || run2.Outputs[0].Location != f.out || run2.Outputs[0].Rows != 2 {
		t.Errorf("run 2 outputs %+v, want totals at %s with 2 rows", run2.Outputs, f.out)
	}
	// The field names are snake_case, and present even when false or empty.
	var raw struct {
		Runs []map[string]json.RawMessage `json:"runs"`
	}
	json.Unmarshal([]byte(r.stdout), &raw)
	for _, k := range []string{"id", "state", "intermediates_deleted", "intermediates_kept", "fresh", "started", "objects", "bytes", "stages", "outputs"} {
		if _, ok := raw.Runs[0][k]; !ok {
			t.Errorf("run 1 in --json has no %q:\n%s", k, r.stdout)
		}
	}
	var stages1 []map[string]any
	json.Unmarshal(raw.Runs[0]["stages"], &stages1)
	for _, k := range []string{"name", "fingerprint", "complete", "partitions", "partitions_done", "objects", "bytes"} {
		if len(stages1) == 0 || stages1[0][k] == nil {
			t.Errorf("stages in --json have no %q:\n%s", k, r.stdout)
		}
	}
}

func TestPipelineStatusNotAPipeline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a pipeline\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"pipeline", "status", dir},
		{"pipeline", "status", dir, "--json"},
		{"pipeline", "gc", dir},
		{"pipeline", "gc", dir, "--dry-run"},
	} {
		r := cairn(t, args...)
		r.wantExit(t, 1, args...)
		for _, w := range []string{dir, "_pipeline", "not a pipeline's checkpoint location"} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("cairn %s: stderr does not say %q:\n%s", strings.Join(args, " "), w, r)
			}
		}
		if r.stdout != "" {
			t.Errorf("cairn %s: printed to stdout:\n%s", strings.Join(args, " "), r)
		}
	}
	// gc refused before taking a lease: it wrote nothing.
	if got := tree(t, dir); len(got) != 1 {
		t.Errorf("gc of a directory without a pipeline left %d files, want only notes.txt: %v", len(got), got)
	}
	missing := filepath.Join(dir, "nonexistent")
	args := []string{"pipeline", "status", missing}
	r := cairn(t, args...)
	r.wantExit(t, 1, args...)
	if !strings.Contains(r.stderr, "no pipeline checkpoint location at "+missing) {
		t.Errorf("status of a missing directory:\n%s", r)
	}
	if fileExists(missing) {
		t.Errorf("status created %s", missing)
	}
}

func TestPipelineGC(t *testing.T) {
	t.Parallel()
	f := buildPipelineLocation(t)
	before := listFixtureRuns(t, f.dir)
	if got, want := runStates(before), []string{"000001 incomplete", "000002 published"}; !slices.Equal(got, want) {
		t.Fatalf("fixture runs %q, want %q", got, want)
	}
	files := tree(t, f.dir)

	// A dry run lists run 1 and deletes nothing.
	args := []string{"pipeline", "gc", f.dir, "--dry-run"}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	wantLine := fmt.Sprintf("would have removed abandoned run 000001 (%s, %s)\n", plural(before[0].Objects, "object"), humanBytes(before[0].Bytes))
	wantTotal := fmt.Sprintf("would free %s, %s (%s); nothing was deleted (--dry-run)\n",
		plural(before[0].Objects, "object"), plural64(before[0].Bytes, "byte"), humanBytes(before[0].Bytes))
	if r.stdout != wantLine+wantTotal {
		t.Errorf("gc --dry-run printed\n%swant\n%s%s", r.stdout, wantLine, wantTotal)
	}
	if !equalTrees(files, tree(t, f.dir)) {
		t.Fatal("gc --dry-run changed the location")
	}

	// gc removes run 1 whole; run 2 (published, retained) is untouched.
	args = []string{"pipeline", "gc", f.dir}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	wantLine = fmt.Sprintf("removed abandoned run 000001 (%s, %s)\n", plural(before[0].Objects, "object"), humanBytes(before[0].Bytes))
	wantTotal = fmt.Sprintf("freed %s, %s (%s)\n", plural(before[0].Objects, "object"), plural64(before[0].Bytes, "byte"), humanBytes(before[0].Bytes))
	if r.stdout != wantLine+wantTotal {
		t.Errorf("gc printed\n%swant\n%s%s", r.stdout, wantLine, wantTotal)
	}
	after := listFixtureRuns(t, f.dir)
	if got, want := runStates(after), []string{"000002 published"}; !slices.Equal(got, want) {
		t.Fatalf("runs after gc %q, want %q", got, want)
	}
	if after[0].Objects != before[1].Objects || len(after[0].Stages) != 3 {
		t.Errorf("gc changed run 2: %d objects, %d stage outputs; it had %d and 3", after[0].Objects, len(after[0].Stages), before[1].Objects)
	}
	for name := range tree(t, f.dir) {
		if strings.HasPrefix(name, "runs/000001/") {
			t.Errorf("gc left %s of run 1 behind", name)
		}
	}

	// Nothing left to remove without --older-than.
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	if r.stdout != "freed 0 objects, 0 bytes (0 B)\n" {
		t.Errorf("a second gc printed:\n%s", r)
	}

	// With --older-than, run 2's stage outputs go, its records stay. The
	// fixture's clock put its publication in 2025.
	args = []string{"pipeline", "gc", "--older-than", "24h", f.dir}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	if !strings.HasPrefix(r.stdout, "deleted the intermediate data of run 000002 (") || !strings.Contains(r.stdout, "\nfreed ") {
		t.Errorf("gc --older-than 24h printed:\n%s", r)
	}
	after = listFixtureRuns(t, f.dir)
	if got, want := runStates(after), []string{"000002 published, intermediates deleted"}; !slices.Equal(got, want) || len(after[0].Stages) != 0 {
		t.Errorf("runs after gc --older-than %q with %d stage outputs; want %q and none", got, len(after[0].Stages), want)
	}
	if _, err := os.Stat(filepath.Join(f.out, dataset.SuccessObject)); err != nil {
		t.Errorf("gc touched the published output: %v", err)
	}
}

// The latest run, incomplete, stays unless it is older than --older-than.
func TestPipelineGCKeepsLatestIncompleteRun(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f := pipelineFixture{dir: filepath.Join(root, "checkpoint"), out: filepath.Join(root, "totals")}
	err := runFixturePipeline(t, f, pipeline.Options{FailAt: "squares", Exit: func(int) {}, Now: func() time.Time { return pipeRun1Clock }})
	if !errors.Is(err, pipeline.ErrFailInjected) {
		t.Fatalf("run with FailAt: %v, want ErrFailInjected", err)
	}
	before := listFixtureRuns(t, f.dir)

	args := []string{"pipeline", "gc", f.dir}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	want := "kept run 000001: it is incomplete and the latest, so the next run resumes it; gc removes it with --older-than D once it started D ago\n" +
		"freed 0 objects, 0 bytes (0 B)\n"
	if r.stdout != want {
		t.Errorf("gc printed\n%swant\n%s", r.stdout, want)
	}
	// The run started (by the fixture's clock) in 2025: older than a day.
	args = []string{"pipeline", "gc", f.dir, "--older-than=24h"}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	if !strings.HasPrefix(r.stdout, fmt.Sprintf("removed abandoned run 000001 (%s, ", plural(before[0].Objects, "object"))) {
		t.Errorf("gc --older-than 24h printed:\n%s", r)
	}
	if runs := listFixtureRuns(t, f.dir); len(runs) != 0 {
		t.Errorf("runs after gc --older-than 24h: %q", runStates(runs))
	}
}

// A stage output that a remaining run reads stays when gc deletes the
// intermediate data of the run that holds it.
func TestPipelineGCKeepsOutputsAnotherRunReads(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f := pipelineFixture{dir: filepath.Join(root, "checkpoint"), out: filepath.Join(root, "totals")}
	// Run 1, published in 2025, keeps its stage outputs (RetainRuns 1);
	// run 2, published now after the output was deleted, restores totals
	// from them and reads nothing else (the stages before totals are
	// skipped).
	if err := runFixturePipeline(t, f, pipeline.Options{RetainRuns: 1, Now: func() time.Time { return pipeRun1Clock }}); err != nil {
		t.Fatal(err)
	}
	// Without its output the pipeline is not up to date: run 2 runs.
	if err := os.RemoveAll(f.out); err != nil {
		t.Fatal(err)
	}
	if err := runFixturePipeline(t, f, pipeline.Options{RetainRuns: 1}); err != nil {
		t.Fatal(err)
	}
	before := listFixtureRuns(t, f.dir)
	if len(before) != 2 || len(before[1].Stages) != 1 || before[1].Stages[0].RestoredFrom != "000001" {
		t.Fatalf("fixture: run 2 does not read totals from run 1: %+v", before)
	}
	totalsFP := before[1].Stages[0].Fingerprint

	args := []string{"pipeline", "gc", f.dir, "--older-than", "24h"}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || lines[0] != "kept a stage output another run reads: run=000001 stage=totals fingerprint="+totalsFP ||
		!strings.HasPrefix(lines[1], "deleted the intermediate data of run 000001 (") || !strings.HasPrefix(lines[2], "freed ") {
		t.Errorf("gc --older-than 24h printed:\n%s", r)
	}
	after := listFixtureRuns(t, f.dir)
	var left []string
	for _, s := range after[0].Stages {
		left = append(left, s.Name)
	}
	if got, want := runStates(after), []string{"000001 published", "000002 published"}; !slices.Equal(got, want) || !slices.Equal(left, []string{"totals"}) {
		t.Errorf("after gc: runs %q, run 1 holds %q; want %q, and run 1 holding only totals, which run 2 reads", got, left, want)
	}
}

// gc refuses while another process holds the location's lease; a dry run
// takes none and goes ahead.
func TestPipelineGCLeaseHeld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := buildPipelineLocation(t)
	st, err := storage.OpenLocal(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lease, err := metalog.AcquireLease(ctx, st, metalog.LeaseOptions{Owner: "cairn pipeline squares-demo", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Close(ctx)
	files := withoutLease(tree(t, f.dir))

	args := []string{"pipeline", "gc", f.dir}
	r := cairn(t, args...)
	r.wantExit(t, 1, args...)
	for _, w := range []string{"refusing to gc " + f.dir, "in use by another process", fmt.Sprintf("pid %d ", os.Getpid()), "--dry-run"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("gc while the lease is held does not say %q:\n%s", w, r)
		}
	}
	if strings.Contains(r.stdout, "removed") {
		t.Errorf("a refused gc says it removed something:\n%s", r)
	}
	args = []string{"pipeline", "gc", f.dir, "--dry-run"}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	if !strings.Contains(r.stdout, "would have removed abandoned run 000001") {
		t.Errorf("gc --dry-run while the lease is held:\n%s", r)
	}
	if !equalTrees(files, withoutLease(tree(t, f.dir))) {
		t.Error("a refused gc, or a dry run, changed the location")
	}
	if got := runStates(listFixtureRuns(t, f.dir)); len(got) != 2 {
		t.Errorf("runs after a refused gc: %q", got)
	}
}

func TestPipelineUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"pipeline", "gc", dir, "--older-than", "-1h"}, []string{"--older-than -1h0m0s is negative", "usage: cairn pipeline gc URL [flags]"}},
		{[]string{"pipeline", "gc", dir, "--older-than", "week"}, []string{`invalid value "week" for flag --older-than`}},
		{[]string{"pipeline", "gc"}, []string{"missing URL", "checkpoint location"}},
		{[]string{"pipeline", "status"}, []string{"missing URL"}},
		{[]string{"pipeline", "status", dir, dir}, []string{"too many arguments: expected URL"}},
		{[]string{"pipeline"}, []string{`"pipeline" needs a subcommand`, "'cairn pipeline status'", "'cairn pipeline gc'"}},
	} {
		r := cairn(t, c.args...)
		r.wantExit(t, 2, c.args...)
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("cairn %s: stderr does not say %q:\n%s", strings.Join(c.args, " "), w, r)
			}
		}
		if r.stdout != "" {
			t.Errorf("cairn %s: a usage error printed to stdout:\n%s", strings.Join(c.args, " "), r)
		}
	}
	if got := tree(t, dir); len(got) != 0 {
		t.Errorf("a usage error wrote to the location: %v", got)
	}

	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"pipeline", "status", "--help"}, []string{"Usage: cairn pipeline status URL [flags]", "--json", "partitions_done", "read_from_run", "intermediates_deleted", "Example:\n  cairn "}},
		{[]string{"pipeline", "gc", "--help"}, []string{"Usage: cairn pipeline gc URL [flags]", "--older-than D", "--dry-run", "lease", "superseded", "KeepIntermediates", "freed N objects", "Example:\n  cairn "}},
		{[]string{"help"}, []string{"\n  pipeline status ", "\n  pipeline gc "}},
		{[]string{"pipeline", "--help"}, []string{"pipeline status", "pipeline gc"}},
	} {
		r := cairn(t, c.args...)
		r.wantExit(t, 0, c.args...)
		for _, w := range c.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("cairn %s does not say %q:\n%s", strings.Join(c.args, " "), w, r.stdout)
			}
		}
	}
}

// drop-stage deletes a stage's output in the latest run; the next run
// recomputes it and restores the rest.
func TestPipelineDropStage(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f := pipelineFixture{dir: filepath.Join(root, "checkpoint"), out: filepath.Join(root, "totals")}
	if err := runFixturePipeline(t, f, pipeline.Options{FailAt: "totals", Exit: func(int) {}}); !errors.Is(err, pipeline.ErrFailInjected) {
		t.Fatalf("run 1: %v", err)
	}
	args := []string{"pipeline", "drop-stage", f.dir, "squares"}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	if !regexp.MustCompile(`^deleted \d+ objects, \d+ bytes \(.*\) of stage squares in run 000001\n$`).MatchString(r.stdout) {
		t.Errorf("drop-stage printed %q", r.stdout)
	}
	runs := listFixtureRuns(t, f.dir)
	for _, s := range runs[0].Stages {
		if s.Name == "squares" {
			t.Errorf("squares still has an output after drop-stage: %+v", s)
		}
	}
	args = []string{"pipeline", "drop-stage", f.dir, "squares"}
	r = cairn(t, args...)
	r.wantExit(t, 1, args...)
	if !strings.Contains(r.stderr, `holds no output of stage "squares"`) {
		t.Errorf("a second drop-stage: %s", r)
	}
	if err := runFixturePipeline(t, f, pipeline.Options{}); err != nil {
		t.Fatalf("run after drop-stage: %v", err)
	}
}
