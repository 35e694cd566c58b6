package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-data/cairn/examples/clickstream/clicks"
	"github.com/cairn-data/cairn/stream"
)

var kills = flag.Int("torture.kills", 30, "how many times the torture test SIGKILLs the job")

// TestTortureSIGKILL runs the real binary over generated input, kills it
// with SIGKILL at random points, restarts it each time, and finally drains
// it: the output must be exactly the plain group-by of the input, every
// row once. Replay a run with CAIRN_SEED.
func TestTortureSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; runs without -short")
	}
	torture(t, *kills)
}

// The same with the pebble state provider: each restarted process finds
// its local Pebble database at a committed version (it was killed, never
// ahead of the checkpoint) and catches up from the changelogs.
func TestTortureSIGKILLPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; runs without -short")
	}
	torture(t, 12, "-state", "pebble")
}

func torture(t *testing.T, kills int, extra ...string) {
	seed := rand.Uint64()
	if s := os.Getenv("CAIRN_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (replay with CAIRN_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	bin := filepath.Join(dir, "clickstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	in, out, ckpt := filepath.Join(dir, "input"), filepath.Join(dir, "output"), filepath.Join(dir, "checkpoint")
	events, err := clicks.Generate(in, seed, 60, 300, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-input", in, "-output", out, "-checkpoint", ckpt, "-max-files-per-batch", "1"}, extra...)
	killed, usedUp := 0, false
	for i := range kills {
		cmd := exec.Command(bin, args...)
		var stderr safeBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a random moment after the run has committed a batch of
		// its own, so that killed runs make progress however slow the
		// machine is. A run that commits nothing within 10 s (the input
		// is used up: a batch replayed after a kill may take several
		// files) is killed anyway.
		// Once that happens, later runs are killed after a short random
		// delay: they have nothing left to commit.
		before := countCommits(ckpt)
		wait := 10 * time.Second
		if usedUp {
			wait = time.Duration(20+rng.IntN(200)) * time.Millisecond
		}
		deadline := time.Now().Add(wait)
		for countCommits(ckpt) <= before && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		usedUp = usedUp || countCommits(ckpt) <= before
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() != -1 {
			t.Fatalf("run %d failed on its own before the kill: %v\n%s", i, err, stderr.String())
		}
		killed++
	}
	// The killed runs must have made progress, or the final run alone
	// would do all the work and nothing would test recovery.
	committed, _ := os.ReadDir(filepath.Join(ckpt, "commits"))
	if len(committed) < 10 {
		t.Fatalf("the %d killed runs committed only %d batches of 60", killed, len(committed))
	}
	final := exec.Command(bin, append(args, "-drain")...)
	if outp, err := final.CombinedOutput(); err != nil {
		t.Fatalf("the final drain run failed: %v\n%s", err, outp)
	}
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
	want := clicks.Oracle(events)
	if !maps.Equal(got, want) {
		missing, extra := 0, 0
		for k := range want {
			if _, ok := got[k]; !ok {
				missing++
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				extra++
			}
		}
		t.Fatalf("after %d SIGKILLs the output differs from the oracle: %d rows, want %d (%d missing, %d extra)", killed, len(got), len(want), missing, extra)
	}
	t.Logf("%d SIGKILLs (%d batches committed by the killed runs), %d events, %d output rows: exactly the oracle", killed, len(committed), len(events), len(got))
}

// countCommits counts the commit log entries in a checkpoint directory.
// Purged entries are not counted; retention keeps 100, more than the 60
// batches of the test.
func countCommits(ckpt string) int {
	entries, _ := os.ReadDir(filepath.Join(ckpt, "commits"))
	return len(entries)
}

type safeBuffer struct{ b []byte }

func (s *safeBuffer) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *safeBuffer) String() string              { return fmt.Sprintf("%s", s.b) }
