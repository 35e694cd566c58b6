package main

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-data/cairn/examples/clickstream/clicks"
	"github.com/cairn-data/cairn/stream"
)

// TestFullDiskPebble runs the real job with -state pebble and $TMPDIR (where
// the local Pebble databases live) on a small tmpfs that is nearly full:
// the run must exit, non-zero, within a time bound, with an ENOSPC error
// naming the local working directory, and a log that stays short. Once
// space is back, a rerun drains the input: the output is exactly the
// oracle, every row once. It mounts a tmpfs, so it runs as root only (as
// CI does) and skips otherwise.
func TestFullDiskPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes and mounts a tmpfs; runs without -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmpfs")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", tmp).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", tmp).CombinedOutput(); err != nil {
			// A process of the test may still hold it: detach it.
			exec.Command("umount", "-l", tmp).Run()
			t.Logf("umount %s: %v: %s", tmp, err, out)
		}
	})
	// Leave 32 KiB: not enough to flush a database, perhaps not even to
	// open one (on a loaded machine, under -race, 200 KiB let a whole run
	// through without a flush). Either way the run must fail cleanly.
	var fs syscall.Statfs_t
	if err := syscall.Statfs(tmp, &fs); err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(tmp, "ballast")
	if err := os.WriteFile(ballast, make([]byte, int64(fs.Bavail)*fs.Bsize-32<<10), 0o644); err != nil {
		t.Fatal(err)
	}

	in, out, ckpt := filepath.Join(dir, "input"), filepath.Join(dir, "output"), filepath.Join(dir, "checkpoint")
	events, err := clicks.Generate(in, 1, 10, 2000, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-input", in, "-output", out, "-checkpoint", ckpt, "-state", "pebble", "-max-files-per-batch", "2"}
	run := func(limit time.Duration, extra ...string) (string, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		// The job is this test binary, running TestFullDiskPebbleJob.
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFullDiskPebbleJob$")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp, jobArgsEnv+"="+strings.Join(append(args, extra...), "\n"))
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 3 * time.Second // then SIGKILL
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		start := time.Now()
		err := cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("the run did not end within %v (SIGTERM sent at the limit): %v\n%s", limit, err, tail(buf.String()))
		}
		return buf.String(), time.Since(start), err
	}

	log, took, err := run(8*time.Second, "-until-idle")
	if err == nil {
		t.Fatalf("the run on a full disk exited 0:\n%s", tail(log))
	}
	if !strings.Contains(log, "no space left on device") || !strings.Contains(log, filepath.Join(tmp, "cairn-pebble")) {
		t.Fatalf("the run on a full disk failed without an ENOSPC error naming its working directory under %s: %v\n%s", tmp, err, tail(log))
	}
	if n := strings.Count(log, "\n"); n > 200 {
		t.Fatalf("the run on a full disk logged %d lines:\n%s", n, tail(log))
	}
	t.Logf("on a full disk: %v after %v, %d log lines", err, took.Round(time.Millisecond), strings.Count(log, "\n"))

	// Space returns.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	log, took, err = run(15*time.Second, "-drain")
	if err != nil {
		t.Fatalf("the rerun with space back failed: %v\n%s", err, tail(log))
	}
	t.Logf("the rerun took %v", took.Round(time.Millisecond))
	got := map[clicks.Key]clicks.Row{}
	for r, err := range stream.ReadFileSink[clicks.Row](context.Background(), out) {
		if err != nil {
			t.Fatal(err)
		}
		k := clicks.Key{User: r.User, Start: r.WindowStart}
		if _, dup := got[k]; dup {
			t.Fatalf("row %v written twice", k)
		}
		got[k] = r
	}
	if want := clicks.Oracle(events); !maps.Equal(got, want) {
		t.Fatalf("after the full disk the output has %d rows, want the oracle's %d (or other values)", len(got), len(want))
	}
	t.Logf("with space back: %d output rows, exactly the oracle", len(got))
}

// jobArgsEnv holds the arguments of the job TestFullDiskPebbleJob runs, one
// a line.
const jobArgsEnv = "CAIRN_CLICKSTREAM_JOB_ARGS"

// TestFullDiskPebbleJob is the job of TestFullDiskPebble, in a process of
// its own: main with the arguments in $CAIRN_CLICKSTREAM_JOB_ARGS (this
// saves building the binary, which takes longer than the test).
func TestFullDiskPebbleJob(t *testing.T) {
	args := os.Getenv(jobArgsEnv)
	if args == "" {
		t.Skip("the job of TestFullDiskPebble; runs in its process")
	}
	os.Args = append([]string{"clickstream"}, strings.Split(args, "\n")...)
	main()
	os.Exit(0)
}

// tail returns the last lines of a log.
func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 30 {
		lines = append([]string{"..."}, lines[len(lines)-30:]...)
	}
	return strings.Join(lines, "\n")
}
