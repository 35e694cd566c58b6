package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/pebblestate"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

// These tests run verify on the locations of every kind of job cairn
// runs (a streaming query with pebble state, a pipeline) and follow its
// advice: a sound location gives 0 problems, and each damage is named.

// buildPebbleQuery runs the fixture query to its end with the pebble
// state provider, then snapshots every store at its latest version, as
// the query's maintenance does every SnapshotInterval versions, so that
// the location holds changelogs, snapshot manifests and SSTs. It returns
// the checkpoint location.
func buildPebbleQuery(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "checkpoint")
	src := stream.NewMemorySource[clickEvent]("events", fixturePartition)
	for i := range fixtureEvents {
		src.Add(i%2, clickEvent{User: fmt.Sprint("u", i%3), TS: fixtureEventsStart.Add(time.Duration(i/2) * 10 * time.Second), Amount: int64(i % 7)})
	}
	q, err := stream.Start(ctx, src, perUserMinute, stream.NewMemorySink[windowRow]("out"), stream.Options{
		Checkpoint: dir, Partitions: fixturePartition, StateProvider: pebblestate.Name, MaxOffsetsPerPartition: fixturePerBatch,
		Trigger: stream.Trigger{Drain: true}, Parallelism: 2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := storage.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	objs, err := s.List(ctx, "state/")
	if err != nil {
		t.Fatal(err)
	}
	stores, _ := findStores(objs)
	if len(stores) != fixturePartition {
		t.Fatalf("the query left %d state stores, want %d", len(stores), fixturePartition)
	}
	for _, st := range stores {
		meta, err := state.ReadMeta(ctx, s, st.id)
		if err != nil {
			t.Fatal(err)
		}
		p, err := state.Open(ctx, meta.Provider, s, st.id, meta.Schema, state.Options{MaintenanceInterval: -1, SnapshotInterval: 1,
			Provider: pebblestate.Options{Dir: t.TempDir()}})
		if err != nil {
			t.Fatal(err)
		}
		latest, _ := p.LatestVersion(ctx)
		w, err := p.GetStore(ctx, latest)
		if err != nil {
			t.Fatal(err)
		}
		w.Abort()
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
	if len(ssts(t, dir)) == 0 {
		t.Fatal("the pebble stores have no SST in checkpoint storage")
	}
	return dir
}

// ssts returns the SST objects of the location, sorted.
func ssts(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, "state"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".sst") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// stageParts returns the Parquet parts of the pipeline fixture's stage
// outputs, sorted.
func stageParts(t *testing.T, dir string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "runs", "*", "stages", "*", "*", "part-*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range matches {
		rel, _ := filepath.Rel(dir, m)
		out = append(out, filepath.ToSlash(rel))
	}
	slices.Sort(out)
	if len(out) == 0 {
		t.Fatal("the pipeline location has no stage part")
	}
	return out
}

// verifyOutput runs verify on dir and returns its problem lines and summary.
func verifyOutput(t *testing.T, dir string, exit int) (problems []string, summary string) {
	t.Helper()
	args := []string{"checkpoint", "verify", dir}
	r := cairn(t, args...)
	r.wantExit(t, exit, args...)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	return lines[:len(lines)-1], lines[len(lines)-1]
}

func TestVerifySoundPebbleQueryAndPipeline(t *testing.T) {
	t.Parallel()
	for name, dir := range map[string]string{"pebble query": buildPebbleQuery(t), "pipeline": buildPipelineLocation(t).dir} {
		problems, summary := verifyOutput(t, dir, 0)
		if len(problems) > 0 || !strings.HasSuffix(summary, ": 0 problems") {
			t.Errorf("verify of a sound %s location: want 0 problems, got\n%s\n%s", name, strings.Join(problems, "\n"), summary)
		}
		switch name {
		case "pebble query":
			if !strings.Contains(summary, "2 state stores, a streaming query") {
				t.Errorf("summary %q does not count the 2 stores and the query", summary)
			}
		case "pipeline":
			if !strings.Contains(summary, "a pipeline (") {
				t.Errorf("summary %q does not say it checked a pipeline's stage outputs", summary)
			}
		}
	}
}

// TestVerifyNamesDamageToPebbleAndPipelines damages a sound location in
// one way at a time: verify exits 1 with a line that names the damaged or
// missing object and says what is wrong.
func TestVerifyNamesDamageToPebbleAndPipelines(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		pipeline bool
		// damage returns the object the line must name and what it says.
		damage func(t *testing.T, dir string) (object, says string)
	}{
		{
			name: "SST with bytes appended",
			damage: func(t *testing.T, dir string) (string, string) {
				sst := ssts(t, dir)[0]
				rewrite(t, dir, sst, func(b []byte) []byte { return append(b, "tail"...) })
				return sst, "bytes, and"
			},
		},
		{
			name: "byte flipped in an SST",
			damage: func(t *testing.T, dir string) (string, string) {
				sst := ssts(t, dir)[0]
				rewrite(t, dir, sst, func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b })
				return sst, "CRC32C"
			},
		},
		{
			name: "SST deleted",
			damage: func(t *testing.T, dir string) (string, string) {
				sst := ssts(t, dir)[0]
				if err := os.Remove(filepath.Join(dir, sst)); err != nil {
					t.Fatal(err)
				}
				return sst, "missing"
			},
		},
		{
			name: "pebble store metadata deleted",
			damage: func(t *testing.T, dir string) (string, string) {
				if err := os.Remove(filepath.Join(dir, "state/1/0/_meta")); err != nil {
					t.Fatal(err)
				}
				return "state/1/0", "no _meta object"
			},
		},
		{
			name: "query metadata deleted",
			damage: func(t *testing.T, dir string) (string, string) {
				if err := os.Remove(filepath.Join(dir, stream.MetadataObject)); err != nil {
					t.Fatal(err)
				}
				return stream.MetadataObject, "missing"
			},
		},
		{
			name:     "stage part deleted",
			pipeline: true,
			damage: func(t *testing.T, dir string) (string, string) {
				part := stageParts(t, dir)[1]
				if err := os.Remove(filepath.Join(dir, part)); err != nil {
					t.Fatal(err)
				}
				return part, "missing"
			},
		},
		{
			name:     "byte flipped in a stage part",
			pipeline: true,
			damage: func(t *testing.T, dir string) (string, string) {
				part := stageParts(t, dir)[0]
				rewrite(t, dir, part, func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b })
				return part, "CRC32C"
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var dir string
			if c.pipeline {
				dir = buildPipelineLocation(t).dir
			} else {
				dir = buildPebbleQuery(t)
			}
			object, says := c.damage(t, dir)
			problems, summary := verifyOutput(t, dir, 1)
			t.Logf("verify says:\n%s\n%s", strings.Join(problems, "\n"), summary)
			found := false
			for _, l := range problems {
				if strings.HasPrefix(l, object+": ") && strings.Contains(l, says) {
					found = true
				}
				if strings.Contains(l, "move it out") {
					t.Errorf("verify advises moving a file out of a location it damaged nothing in: %s", l)
				}
			}
			if !found {
				t.Errorf("no line names %s and says %q:\n%s\n%s", object, says, strings.Join(problems, "\n"), summary)
			}
		})
	}
}

// TestVerifyUnknownFileNotChecked: a file no check knows is reported as
// not checked, without the advice to move it out of the location.
func TestVerifyUnknownFileNotChecked(t *testing.T) {
	t.Parallel()
	dir := buildPipelineLocation(t).dir
	if err := os.WriteFile(filepath.Join(dir, "runs", "notes.txt"), []byte("run 2 was a test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	problems, _ := verifyOutput(t, dir, 1)
	if len(problems) != 1 || !strings.HasPrefix(problems[0], "runs/notes.txt: not checked: unknown to this build of cairn") ||
		strings.Contains(problems[0], "move it out") {
		t.Errorf("want one line saying runs/notes.txt was not checked, without advice to move it; got\n%s", strings.Join(problems, "\n"))
	}
}
