package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/cairn-data/cairn/examples/clickstream/clicks"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

func demoCommand() *command {
	var (
		dir            string
		seed           uint64
		files, perFile int
	)
	return &command{
		name:    "demo",
		summary: "the main job: a streaming job SIGKILLed twice, restarted, drained, and checked",
		doc: `
cairn's reference streaming job end to end on local disk. The demo writes a
day of click events as JSONL files, then runs the job (per user and
one-minute window: clicks and amount, 30 s watermark; examples/clickstream)
as a child process. It kills the child with SIGKILL twice at random
batches and restarts it each time from its checkpoint, then drains it, and
checks the output against an independent in-process group-by of the same
events: every row must be there exactly once. It prints the batches,
events, restarts, the work redone after each kill, and the verdict.

The seed decides the events and the kill points; --seed replays a run.
Exit status 1 if the output differs; the files are then kept. The state
store alone has its own demo: cairn demo-state.`,
		example: `
cairn demo
cairn demo --dir /tmp/cairn-demo
cairn sink read /tmp/cairn-demo/output | head`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "dir", "", "keep everything under `DIR` (DIR/input, DIR/output, DIR/checkpoint, DIR/dead-letter); default: a temporary directory, removed at the end")
			fs.Uint64Var(&seed, "seed", 0, "`SEED` of the events and the kill points, to replay a run (default: random)")
			fs.IntVar(&files, "files", 144, "input files, `N` of them over the day")
			fs.IntVar(&perFile, "per-file", 300, "events per file (`N`)")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			if files < 8 || perFile < 1 {
				return usagef(inv.cmd, "--files must be at least 8 and --per-file at least 1")
			}
			if !inv.set["seed"] {
				seed = rand.Uint64()
			}
			return runStreamDemo(ctx, c, dir, seed, files, perFile)
		},
	}
}

func demoJobCommand() *command {
	var o clicks.Options
	var drain bool
	return &command{
		name:   "demo-job",
		hidden: true,
		doc: `
The child process of 'cairn demo': runs the clickstream job and prints one
line a committed batch. Not meant to be run by hand.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.Input, "input", "", "input `DIR`")
			fs.StringVar(&o.Output, "output", "", "output `DIR`")
			fs.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint `DIR`")
			fs.IntVar(&o.MaxFilesPerBatch, "max-files-per-batch", 4, "files per batch (`N`)")
			fs.BoolVar(&drain, "drain", false, "drain and stop")
			fs.StringVar(&o.DeadLetter, "dead-letter", "", "dead-letter `DIR` for bad input lines and files")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			o.Trigger = stream.Trigger{Drain: drain}
			o.Logger = slog.New(slog.NewTextHandler(c.stdout, nil))
			return clicks.Run(ctx, o)
		},
	}
}

var batchLine = regexp.MustCompile(`msg="batch committed" batch=(\d+) replay=(true|false) input_rows=(\d+)`)

// jobRun is one child process of the demo.
type jobRun struct {
	cmd     *exec.Cmd
	lines   *bufio.Scanner
	stderr  *syncBuffer
	batches int // batches this run committed
	replays int // of which replays of a batch an earlier run had written ahead
	last    int64
}

func startJob(ctx context.Context, in, out, ckpt string, drain bool) (*jobRun, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"demo-job", "--input", in, "--output", out, "--checkpoint", ckpt, "--dead-letter", filepath.Join(filepath.Dir(ckpt), "dead-letter")}
	if drain {
		args = append(args, "--drain")
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r := &jobRun{cmd: cmd, stderr: &syncBuffer{}, last: -1}
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the job process: %w", err)
	}
	r.lines = bufio.NewScanner(stdout)
	return r, nil
}

// next waits for the next committed batch; false when the process ended.
func (r *jobRun) next() bool {
	for r.lines.Scan() {
		if m := batchLine.FindStringSubmatch(r.lines.Text()); m != nil {
			r.batches++
			r.last, _ = strconv.ParseInt(m[1], 10, 64)
			if m[2] == "true" {
				r.replays++
			}
			return true
		}
	}
	return false
}

func runStreamDemo(ctx context.Context, c *cli, dir string, seed uint64, files, perFile int) error {
	start := time.Now()
	w := c.stdout
	root := dir
	if root == "" {
		tmp, err := os.MkdirTemp("", "cairn-demo-")
		if err != nil {
			return err
		}
		root = tmp
	}
	in, out, ckpt := filepath.Join(root, "input"), filepath.Join(root, "output"), filepath.Join(root, "checkpoint")
	if entries, _ := os.ReadDir(ckpt); len(entries) > 0 {
		return fmt.Errorf("cairn demo: %s is in use by an earlier run; give another --dir, or remove it", ckpt)
	}
	keep := dir != ""
	defer func() {
		if !keep {
			os.RemoveAll(root)
		}
	}()
	rng := rand.New(rand.NewPCG(seed, 2))
	fmt.Fprintf(w, "cairn demo: a streaming job, killed with SIGKILL twice, restarted, drained, and checked.\n\n")
	fmt.Fprintf(w, "  seed      %d (replay with --seed %d)\n  dir       %s\n", seed, seed, root)
	events, err := clicks.Generate(in, seed, files, perFile, 24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  input     %d click events in %d JSONL files over a day, 5000 users, disorder under 20 s\n", len(events), files)
	fmt.Fprintf(w, "  job       per user and one-minute window: clicks and amount; 30 s watermark; 4 files a batch\n\n")

	totalBatches := (files + 3) / 4
	replays, committed := 0, 0
	for kill := 1; kill <= 2; kill++ {
		run, err := startJob(ctx, in, out, ckpt, false)
		if err != nil {
			return err
		}
		target := 1 + rng.IntN(max(1, totalBatches/4))
		for run.batches < target && run.next() {
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // somewhere inside the next batch
		run.cmd.Process.Signal(syscall.SIGKILL)
		for run.next() { // what it reported before it died
		}
		run.cmd.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if run.batches < target {
			keep = true
			return failf("the job stopped on its own before the kill:\n%s", run.stderr.String())
		}
		replays += run.replays
		committed += run.batches
		fmt.Fprintf(w, "run %d: committed %d batches (last: batch %d)%s, then was killed with SIGKILL\n", kill, run.batches, run.last, replayNote(run.replays))
	}
	run, err := startJob(ctx, in, out, ckpt, true)
	if err != nil {
		return err
	}
	for run.next() {
	}
	if err := run.cmd.Wait(); err != nil {
		keep = true
		return failf("the final run failed: %v\n%s", err, run.stderr.String())
	}
	replays += run.replays
	committed += run.batches
	fmt.Fprintf(w, "run 3: resumed, committed %d batches%s, drained the open windows and stopped\n\n", run.batches, replayNote(run.replays))

	got := map[clicks.Key]clicks.Row{}
	for r, err := range stream.ReadFileSink[clicks.Row](ctx, out) {
		if err != nil {
			keep = true
			return err
		}
		k := clicks.Key{User: r.User, Start: r.WindowStart}
		if _, dup := got[k]; dup {
			keep = true
			return failf("row %s %s was written twice", r.User, r.WindowStart.Format(time.RFC3339))
		}
		got[k] = r
	}
	want := clicks.Oracle(events)
	missing, wrong := 0, 0
	for k, r := range want {
		if g, ok := got[k]; !ok {
			missing++
		} else if g != r {
			wrong++
		}
	}
	extra := len(got) - (len(want) - missing)
	st, err := storage.OpenLocal(ckpt)
	if err != nil {
		return err
	}
	rep, err := verifyLocation(ctx, st, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "report\n  batches     %d committed, %d of them replays of a batch cut short by a kill (work redone)\n", committed, replays)
	fmt.Fprintf(w, "  events      %d in, %d window rows out\n  restarts    2 after SIGKILL\n", len(events), len(got))
	fmt.Fprintf(w, "  checkpoint  %d objects verified, %d problems\n", rep.objects, len(rep.problems))
	if missing+wrong+extra > 0 || len(rep.problems) > 0 {
		keep = true
		return failf("the output differs from the plain group-by: %d rows missing, %d wrong, %d extra (files kept in %s)", missing, wrong, extra, root)
	}
	fmt.Fprintf(w, "  verdict     OK: every one of the %d rows equals the plain group-by, exactly once (%.1fs)\n", len(want), time.Since(start).Seconds())
	if dir != "" {
		fmt.Fprintf(w, "\nFiles kept in %s. Next:\n  %s sink read %s | head\n  %s checkpoint inspect %s\n", root, commandPrefix(), out, commandPrefix(), ckpt)
	}
	return nil
}

func replayNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", first replaying the batch the kill cut short (%d)", n)
}

// syncBuffer collects a child's stderr.
type syncBuffer struct{ b []byte }

func (s *syncBuffer) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *syncBuffer) String() string              { return string(s.b) }

var _ io.Writer = (*syncBuffer)(nil)
