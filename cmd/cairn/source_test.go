package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/stream"
)

type sourceEvent struct {
	User string `json:"user"`
}

// runFileQuery runs a query over the JSONL files of in, with its checkpoint
// in ckpt, until idle, and returns the users it output and its error.
func runFileQuery(t *testing.T, in, ckpt string) ([]string, error) {
	t.Helper()
	ctx := context.Background()
	src, err := stream.NewFileSource[sourceEvent](in, stream.FileSourceOptions{Format: "jsonl", Partitions: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sink := stream.NewMemorySink[sourceEvent]("out")
	plan := func(b *stream.Batch, d *dataset.Dataset[sourceEvent]) (*dataset.Dataset[sourceEvent], error) {
		return d, nil
	}
	q, err := stream.Start(ctx, src, plan, sink, stream.Options{Checkpoint: ckpt, Partitions: 1,
		Trigger: stream.Trigger{UntilIdle: true}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	err = q.Run(ctx)
	q.Close(ctx)
	var users []string
	for _, e := range sink.All() {
		users = append(users, e.User)
	}
	slices.Sort(users)
	return users, err
}

func writeJSONL(t *testing.T, dir, name string, lines ...string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func event(user string) string {
	data, _ := json.Marshal(sourceEvent{user})
	return string(data)
}

// A file that blocks a query is skipped, or re-read after a fix, with the
// CLI; the query then goes on.
func TestSourceSkipAndReread(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	in, ckpt := filepath.Join(root, "in"), filepath.Join(root, "ckpt")
	os.Mkdir(in, 0o755)
	writeJSONL(t, in, "a.jsonl", event("a"))
	writeJSONL(t, in, "b.jsonl", event("b"), "{not json")
	if _, err := runFileQuery(t, in, ckpt); err == nil || !strings.Contains(err.Error(), "b.jsonl line 2") {
		t.Fatalf("run over a bad file: err = %v", err)
	}

	r := cairn(t, "source", "skip", ckpt, "b.jsonl")
	r.wantExit(t, 0)
	if !strings.Contains(r.stdout, "skip b.jsonl (file number 1)") || !strings.Contains(r.stdout, "pending batch 0") {
		t.Fatalf("skip printed:\n%s", r)
	}
	if users, err := runFileQuery(t, in, ckpt); err != nil || !slices.Equal(users, []string{"a"}) {
		t.Fatalf("run after the skip: %v, %v; want a only", users, err)
	}
	r = cairn(t, "source", "skip", ckpt, "a.jsonl")
	r.wantExit(t, 1)
	if !strings.Contains(r.stderr, "committed") {
		t.Fatalf("skip of a committed file:\n%s", r)
	}
	r = cairn(t, "source", "skip", ckpt, "zzz.jsonl")
	r.wantExit(t, 1)
	if !strings.Contains(r.stderr, "zzz.jsonl") {
		t.Fatalf("skip of a file never taken:\n%s", r)
	}

	writeJSONL(t, in, "b.jsonl", event("b"), event("b2"))
	r = cairn(t, "source", "reread", ckpt, filepath.Join(in, "b.jsonl"))
	r.wantExit(t, 0)
	if !strings.Contains(r.stdout, "taken again as file number 2") {
		t.Fatalf("reread printed:\n%s", r)
	}
	if users, err := runFileQuery(t, in, ckpt); err != nil || !slices.Equal(users, []string{"b", "b2"}) {
		t.Fatalf("run after the reread: %v, %v; want b and b2", users, err)
	}

	// The decisions and the re-taken file are objects verify knows.
	cairn(t, "checkpoint", "verify", ckpt).wantExit(t, 0)

	r = cairn(t, "source", "skip", ckpt)
	r.wantExit(t, 2)
	r = cairn(t, "source", "skip", filepath.Join(root, "nope"), "a.jsonl")
	r.wantExit(t, 1)
}
