package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var benchOrders = flag.Int("etl.bench-orders", 2_000_000, "orders in the benchmarks' input")

// runInProcess runs the pipeline once, as the command does, and returns
// its wall time.
func runInProcess(tb testing.TB, c config) time.Duration {
	tb.Helper()
	c.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := build(c)
	if err != nil {
		tb.Fatal(err)
	}
	t0 := time.Now()
	if _, err := p.Run(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return time.Since(t0)
}

// BenchmarkResumeOverhead runs the pipeline whole, then makes it look as
// if the process had died after every stage completed but before the
// output was published (it deletes the run's _published record; the stage
// outputs were kept), and runs it again: the second run resumes the run,
// restores the final stage, skips the others and publishes. The metric is
// the second run's time as a fraction of the first's (target: under 2%).
// A third run finds the output up to date and does nothing: its time is
// reported too.
func BenchmarkResumeOverhead(b *testing.B) {
	input := filepath.Join(b.TempDir(), "in")
	if err := generate(input, *benchOrders, 16, 1); err != nil {
		b.Fatal(err)
	}
	var full, resume, upToDate time.Duration
	for i := 0; b.Loop(); i++ {
		d := filepath.Join(b.TempDir(), fmt.Sprint(i))
		c := config{input: input, output: filepath.Join(d, "out"), checkpoint: filepath.Join(d, "ckpt"), partitions: 8, keep: true}
		full += runInProcess(b, c)
		if err := os.Remove(filepath.Join(c.checkpoint, "runs", "000001", "_published")); err != nil {
			b.Fatal(err)
		}
		resume += runInProcess(b, c)
		upToDate += runInProcess(b, c)
	}
	n := float64(b.N)
	b.ReportMetric(full.Seconds()/n, "full-s")
	b.ReportMetric(resume.Seconds()/n, "resume-s")
	b.ReportMetric(float64(resume)/float64(full), "resume/full")
	b.ReportMetric(upToDate.Seconds()/n, "up-to-date-s")
}

// BenchmarkWorkLost kills the real process with SIGKILL at random points
// until a run completes, and counts the partitions whose computation
// started more than once: the work a kill loses, against the partition
// count. (Counting partitions stored twice instead would miss the
// partitions in flight, which are never stored by the killed run.)
func BenchmarkWorkLost(b *testing.B) {
	seed := *killSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	b.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	input := filepath.Join(b.TempDir(), "in")
	if err := generate(input, *benchOrders/4, 16, 1); err != nil {
		b.Fatal(err)
	}
	clean := job{input: input, output: filepath.Join(b.TempDir(), "out"), checkpoint: filepath.Join(b.TempDir(), "ckpt")}
	t0 := time.Now()
	out, err := clean.cmd("-v").CombinedOutput()
	if err != nil {
		b.Fatalf("clean run: %v\n%s", err, out)
	}
	cleanTime := time.Since(t0)
	partitions := len(storedRE.FindAll(out, -1))
	var kills, extra int
	for i := 0; b.Loop(); i++ {
		d := filepath.Join(b.TempDir(), fmt.Sprint(i))
		j := job{input: input, output: filepath.Join(d, "out"), checkpoint: filepath.Join(d, "ckpt")}
		k, _, started := killUntilDone(b, j, rng, cleanTime, fmt.Sprintf("iteration %d (seed %d)", i, seed), "-v")
		kills += k
		extra += started - partitions
	}
	b.ReportMetric(float64(partitions), "partitions")
	b.ReportMetric(cleanTime.Seconds(), "clean-run-s")
	b.ReportMetric(float64(kills)/float64(b.N), "kills/op")
	if kills > 0 {
		b.ReportMetric(float64(extra)/float64(kills), "recomputed-partitions/kill")
		b.ReportMetric(float64(extra)/float64(kills)/float64(partitions), "lost-fraction/kill")
	}
}
