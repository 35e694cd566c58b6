package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/internal/s3test/miniotest"
)

var (
	killSequences = flag.Int("etl.sequences", 6, "runs of the SIGKILL test: each is killed until it completes")
	killSeed      = flag.Uint64("etl.seed", 0, "seed of the SIGKILL test (0: from the clock)")
)

// binary is the etl command, built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "etl-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "etl")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build etl:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// job is one input with its own output and checkpoint directories.
type job struct {
	input, output, checkpoint string
	env                       []string // added to the process's environment
}

func newJob(t *testing.T, input string) job {
	d := t.TempDir()
	return job{input: input, output: filepath.Join(d, "out"), checkpoint: filepath.Join(d, "ckpt")}
}

func (j job) cmd(extra ...string) *exec.Cmd {
	args := append([]string{"-input", j.input, "-output", j.output, "-checkpoint", j.checkpoint, "-partitions", "6"}, extra...)
	c := exec.Command(binary, args...)
	c.Env = append(os.Environ(), j.env...)
	return c
}

// run runs the job to its end and returns its exit status and stderr.
func (j job) run(t *testing.T, env []string, extra ...string) (int, string) {
	t.Helper()
	c := j.cmd(extra...)
	c.Env = append(c.Env, env...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	err := c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatalf("run etl: %v", err)
	return 0, ""
}

func generateInput(t *testing.T, orders, files int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "in")
	if err := generate(dir, orders, files, 7); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readDaily reads the published output, which must be complete.
func readDaily(t *testing.T, output string) []Daily {
	t.Helper()
	dir := filepath.Join(output, "daily")
	if _, err := os.Stat(filepath.Join(dir, dataset.SuccessObject)); err != nil {
		t.Fatalf("the output has no %s: %v", dataset.SuccessObject, err)
	}
	s, err := dataset.NewSession(dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	d, err := dataset.ReadParquet[Daily](s, filepath.Join(dir, "*.parquet"), dataset.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sortDaily(rows)
	return rows
}

func sortDaily(rows []Daily) {
	slices.SortFunc(rows, func(a, b Daily) int { return strings.Compare(a.Region+a.Day, b.Region+b.Day) })
}

// oracle computes the output from the input files with plain loops:
// well-formed orders with a non-negative amount, joined with the
// customers that have a region.
func oracle(t *testing.T, input string) []Daily {
	t.Helper()
	region := map[string]string{}
	for _, line := range readLines(t, filepath.Join(input, "customers", "*.jsonl")) {
		var c Customer
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		region[c.Customer] = c.Region
	}
	sums := map[[2]string]*Daily{}
	for _, line := range readLines(t, filepath.Join(input, "orders", "*.jsonl")) {
		var o map[string]any
		if json.Unmarshal([]byte(line), &o) != nil || len(o) != 4 {
			continue
		}
		amount := int64(o["amount"].(float64))
		r, ok := region[o["customer"].(string)]
		if amount < 0 || !ok {
			continue
		}
		k := [2]string{r, o["day"].(string)}
		if sums[k] == nil {
			sums[k] = &Daily{Region: r, Day: k[1]}
		}
		sums[k].Orders++
		sums[k].Amount += amount
	}
	var out []Daily
	for _, d := range sums {
		out = append(out, *d)
	}
	sortDaily(out)
	return out
}

func readLines(t *testing.T, pattern string) []string {
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no input %s: %v", pattern, err)
	}
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// checkNoIntermediates fails if a stage output is left in the checkpoint.
func checkNoIntermediates(t *testing.T, checkpoint string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(checkpoint, "runs", "*", "stages", "*", "*", "*"))
	if len(matches) > 0 {
		t.Errorf("%d intermediate objects left after the output was published, e.g. %s", len(matches), matches[0])
	}
}

// The recipe of the issue: a run pre-empted in the enriched stage exits
// non-zero; the next run restores orders and customers and publishes the
// same output as a clean run.
func TestFailAtEnrichedThenResume(t *testing.T) {
	input := generateInput(t, 20000, 8)
	want := oracle(t, input)

	clean := newJob(t, input)
	if code, stderr := clean.run(t, nil); code != 0 {
		t.Fatalf("clean run: exit %d\n%s", code, stderr)
	}
	if got := readDaily(t, clean.output); !reflect.DeepEqual(got, want) {
		t.Fatalf("clean run output differs from the oracle:\n got %v\nwant %v", got, want)
	}

	j := newJob(t, input)
	code, stderr := j.run(t, []string{"CAIRN_FAIL_AT=enriched"})
	if code != 3 {
		t.Fatalf("CAIRN_FAIL_AT=enriched: exit %d, want 3\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(j.output, "daily")); !os.IsNotExist(err) {
		t.Fatalf("a failed run published output: %v", err)
	}
	code, stderr = j.run(t, nil)
	if code != 0 {
		t.Fatalf("resumed run: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		`msg="stage orders: restored" stage=orders rows=`, `msg="stage customers: restored"`,
		`msg="stage enriched: computed"`, `msg="stage daily: computed"`, "resuming run 000001",
		"counters of orders: malformed=",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("resumed run's log lacks %q:\n%s", want, stderr)
		}
	}
	if got := readDaily(t, j.output); !reflect.DeepEqual(got, want) {
		t.Fatalf("resumed output differs from the clean run's")
	}
	checkNoIntermediates(t, j.checkpoint)

	// The output is up to date: a second invocation does nothing.
	code, stderr = j.run(t, nil)
	if code != 0 || !strings.Contains(stderr, "up to date: run 000001 published every output") || strings.Contains(stderr, "partition stored") {
		t.Fatalf("run after a published run: exit %d; want it up to date, computing nothing\n%s", code, stderr)
	}
	// -fresh recomputes, keeping the intermediates; a run with a changed
	// partition count for the last stages restores orders and customers
	// from the kept run.
	code, stderr = j.run(t, nil, "-fresh", "-keep-intermediates")
	if code != 0 || !strings.Contains(stderr, "starting run 000002") || !strings.Contains(stderr, `msg="stage orders: computed"`) {
		t.Fatalf("fresh run: exit %d\n%s", code, stderr)
	}
	code, stderr = j.run(t, nil, "-partitions", "5")
	if code != 0 || !strings.Contains(stderr, `msg="stage orders: restored"`) || !strings.Contains(stderr, "from_run=000002") ||
		!strings.Contains(stderr, `params {\"partitions\":6} → {\"partitions\":5}`) {
		t.Fatalf("run after a kept run: exit %d; want orders restored from run 000002\n%s", code, stderr)
	}
	if got := readDaily(t, j.output); !reflect.DeepEqual(got, want) {
		t.Fatalf("output with 5 partitions differs from the clean run's")
	}
}

var (
	storedRE = regexp.MustCompile(`msg="partition stored" stage=(\w+) partition=(\d+)`)
	runRE    = regexp.MustCompile(`(?:starting|resuming) run (\d+)`)
)

// TestSIGKILLAtRandomPoints kills the real process with SIGKILL at random
// moments, again and again, until a run completes. Within a run, no
// partition is stored twice (a complete partition is never recomputed),
// and the output equals the oracle's.
func TestSIGKILLAtRandomPoints(t *testing.T) {
	seed := *killSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -etl.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	input := generateInput(t, 60000, 12)
	want := oracle(t, input)

	clean := newJob(t, input)
	t0 := time.Now()
	code, cleanLog := clean.run(t, nil)
	if code != 0 {
		t.Fatalf("clean run: exit %d\n%s", code, cleanLog)
	}
	cleanTime := time.Since(t0)
	cleanStored := len(storedRE.FindAllString(cleanLog, -1))

	var kills, computed, partitions int
	for seq := range *killSequences {
		j := newJob(t, input)
		k, stored, _ := killUntilDone(t, j, rng, cleanTime, fmt.Sprintf("sequence %d (seed %d)", seq, seed))
		if got := readDaily(t, j.output); !reflect.DeepEqual(got, want) {
			t.Fatalf("sequence %d (seed %d): output differs from the oracle", seq, seed)
		}
		checkNoIntermediates(t, j.checkpoint)
		kills += k
		computed += stored
		partitions += cleanStored
	}
	t.Logf("%d sequences, %d SIGKILLs: %d partitions stored in all, against %d for as many clean runs (clean run %v)",
		*killSequences, kills, computed, partitions, cleanTime.Round(time.Millisecond))
}

// killUntilDone starts the job again and again, each time sending SIGKILL
// after a random delay under 1.25 times the clean run's time, until a run
// ends by itself. It fails the test if a run stores a partition twice or
// ends in error, and returns the kills and the partitions stored in all.
//
// With -v among args, it also counts the partitions whose computation
// started ("partition computing" events), in started.
func killUntilDone(tb testing.TB, j job, rng *rand.Rand, cleanTime time.Duration, what string, args ...string) (kills, total, started int) {
	stored := map[string]map[string]int{} // run -> stage/partition -> times stored
	for attempt := 1; ; attempt++ {
		if attempt > 50 {
			tb.Fatalf("%s: no run completed in 50 attempts", what)
		}
		c := j.cmd(args...)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
		delay := time.Duration(rng.Int64N(int64(cleanTime) * 5 / 4))
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		var err error
		killed := false
		select {
		case err = <-done:
		case <-time.After(delay):
			c.Process.Signal(syscall.SIGKILL)
			err = <-done
			var ee *exec.ExitError
			killed = errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
		}
		log := stderr.String()
		run := "?"
		if m := runRE.FindStringSubmatch(log); m != nil {
			run = m[1]
		}
		if stored[run] == nil {
			stored[run] = map[string]int{}
		}
		for _, m := range storedRE.FindAllStringSubmatch(log, -1) {
			key := m[1] + "/" + m[2]
			stored[run][key]++
			total++
			if stored[run][key] > 1 {
				tb.Errorf("%s: run %s stored partition %s twice: a complete partition was recomputed", what, run, key)
			}
		}
		started += strings.Count(log, `msg="partition computing"`)
		if killed {
			kills++
			continue
		}
		if err != nil {
			tb.Fatalf("%s: run failed without being killed: %v\n%s", what, err, log)
		}
		return kills, total, started
	}
}

// The SIGKILL test with the checkpoint on a real S3-compatible server
// (MinIO): two sequences of random kills, each ending with the oracle's
// output and no stage output left in the bucket.
func TestSIGKILLWithS3Checkpoint(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	seed := *killSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -etl.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	input := generateInput(t, 30000, 8)
	want := oracle(t, input)
	clean := newJob(t, input)
	clean.checkpoint, clean.env = srv.URL(bucket, "clean"), srv.Env()
	t0 := time.Now()
	if code, log := clean.run(t, nil); code != 0 {
		t.Fatalf("clean run on S3: exit %d\n%s", code, log)
	}
	cleanTime := time.Since(t0)
	for seq := range 2 {
		j := newJob(t, input)
		j.checkpoint, j.env = srv.URL(bucket, fmt.Sprintf("seq%d", seq)), srv.Env()
		kills, _, _ := killUntilDone(t, j, rng, cleanTime, fmt.Sprintf("S3 sequence %d (seed %d)", seq, seed))
		if got := readDaily(t, j.output); !reflect.DeepEqual(got, want) {
			t.Fatalf("S3 sequence %d (seed %d): output differs from the oracle", seq, seed)
		}
		ctx := context.Background()
		for o := range srv.Client().ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: fmt.Sprintf("seq%d/runs/", seq), Recursive: true}) {
			if strings.Contains(o.Key, "/stages/") {
				t.Errorf("S3 sequence %d: stage object %s left after publishing", seq, o.Key)
				break
			}
		}
		t.Logf("S3 sequence %d: %d kills", seq, kills)
	}
}
