package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

// sinkRow is the record of the file sink fixtures. Its note needs the
// escaping rules of the sink's JSON: no HTML escaping, UTF-8 as is.
type sinkRow struct {
	User   string `json:"user" parquet:"user"`
	Amount int64  `json:"amount" parquet:"amount"`
	Note   string `json:"note" parquet:"note"`
}

// buildSink writes a file sink of two committed batches, and the parts of
// a third that has no manifest (a write cut short), into a new directory.
func buildSink(t *testing.T, format string) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := dataset.NewSession(dataset.Options{Parallelism: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	sink, err := stream.NewFileSink[sinkRow](dir, stream.FileSinkOptions{Format: format})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	for b := range int64(3) {
		var rows []sinkRow
		for i := range 3 + b {
			rows = append(rows, sinkRow{User: fmt.Sprintf("u%d", i), Amount: (b + 1) * (i + 1), Note: fmt.Sprintf("batch %d <%d> & ü", b, i)})
		}
		if err := sink.AddBatch(ctx, b, dataset.FromSlice(s, rows, 2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "_manifests", "2")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSinkReadGolden(t *testing.T) {
	t.Parallel()
	var outputs []string
	for _, format := range []string{"jsonl", "parquet"} {
		dir := buildSink(t, format)
		args := []string{"sink", "read", dir}
		r := cairn(t, args...)
		r.wantExit(t, 0, args...)
		outputs = append(outputs, r.stdout)

		args = []string{"sink", "read", "--batch", "1", dir}
		one := cairn(t, args...)
		one.wantExit(t, 0, args...)
		if !strings.HasSuffix(r.stdout, one.stdout) || strings.Count(one.stdout, "\n") != 4 || !strings.Contains(one.stdout, `"batch 1 <0> & ü"`) {
			t.Errorf("%s: --batch 1 prints\n%s\nwant the 4 rows of batch 1, the end of\n%s", format, one.stdout, r.stdout)
		}
	}
	// The same rows in either format, and the columns in field order.
	if outputs[0] != outputs[1] {
		t.Errorf("JSONL and Parquet sinks of the same rows print differently:\n%s", lineDiff(outputs[0], outputs[1]))
	}
	golden(t, "sink-read.golden", outputs[0])
}

func TestSinkReadErrors(t *testing.T) {
	t.Parallel()
	dir := buildSink(t, "parquet")
	part := filepath.Join(dir, "batch-0000000001", "part-00001.parquet")
	data, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := t.TempDir()
	os.CopyFS(corrupt, os.DirFS(dir))
	data[len(data)/2] ^= 0x01
	os.WriteFile(filepath.Join(corrupt, "batch-0000000001", "part-00001.parquet"), data, 0o644)

	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "part-00000.jsonl"), []byte("{}\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want []string // in stderr
	}{
		{[]string{"sink", "read", empty}, 1, []string{empty + " is not a file sink", "_manifests/"}},
		{[]string{"sink", "read", filepath.Join(empty, "nope")}, 1, []string{"no file sink at", "does not exist"}},
		{[]string{"sink", "read", dir, "--batch", "2"}, 1, []string{"batch 2 of " + dir + " is not committed", "0 to 1"}},
		{[]string{"sink", "read", corrupt}, 1, []string{"batch-0000000001/part-00001.parquet is corrupt", "CRC32C"}},
		{[]string{"sink", "read", dir, "--batch", "-1"}, 2, []string{"--batch -1 is negative"}},
		{[]string{"sink", "read"}, 2, []string{"missing DIR"}},
	} {
		r := cairn(t, c.args...)
		r.wantExit(t, c.code, c.args...)
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("cairn %s: stderr does not say %q:\n%s", strings.Join(c.args, " "), w, r)
			}
		}
		if c.args[len(c.args)-1] != corrupt && r.stdout != "" {
			t.Errorf("cairn %s printed rows:\n%s", strings.Join(c.args, " "), r)
		}
	}
	// The rows of the parts before the damaged one were printed; the
	// damaged part's were not.
	r := cairn(t, "sink", "read", corrupt)
	if !strings.Contains(r.stdout, "batch 1 <1>") || strings.Contains(r.stdout, "batch 1 <2>") {
		t.Errorf("want the rows up to the damaged part (batch 1, partition 1), and none of its own:\n%s", r.stdout)
	}

	args := []string{"sink", "read", "--help"}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	for _, w := range []string{"Usage: cairn sink read DIR [flags]", "--batch N", "_manifests/<batch>", "Example:\n  cairn sink read"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("sink read --help does not contain %q:\n%s", w, r.stdout)
		}
	}
}

// TestSinkReadWarnsAboutGap: a committed batch whose manifest was deleted
// between others is named in a WARN on stderr; the rest is printed.
func TestSinkReadWarnsAboutGap(t *testing.T) {
	t.Parallel()
	dir := buildSink(t, "jsonl") // batches 0 and 1 (batch 2 has no manifest: a write cut short)
	whole := cairn(t, "sink", "read", dir)
	whole.wantExit(t, 0, "sink", "read", dir)
	if strings.Contains(whole.stderr, "WARN") {
		t.Errorf("a sink without gaps gives a warning:\n%s", whole)
	}
	if err := os.Remove(filepath.Join(dir, "_manifests", "0")); err != nil {
		t.Fatal(err)
	}
	args := []string{"sink", "read", dir}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	for _, w := range []string{"WARN", dir + " has no manifest for batch 0 of the sink's root", "lost"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not say %q:\n%s", w, r)
		}
	}
	if !strings.HasSuffix(whole.stdout, r.stdout) || strings.Count(r.stdout, "\n") != 4 || strings.Contains(r.stdout, "batch 0 ") {
		t.Errorf("want the 4 rows of batch 1 printed, got:\n%s", r.stdout)
	}
}

// TestSinkReadAppended: a sink that two queries write (IfOwned "append")
// is printed owner after owner; --batch N prints batch N of each.
func TestSinkReadAppended(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for i, mode := range []string{"", stream.SinkAppend} {
		sink, err := stream.NewFileSink[sinkRow](dir, stream.FileSinkOptions{Format: "jsonl", IfOwned: mode})
		if err != nil {
			t.Fatal(err)
		}
		src := stream.NewMemorySource[sinkRow]("rows", 1)
		for j := range 3 {
			src.Add(0, sinkRow{User: fmt.Sprintf("q%d-%d", i, j), Amount: int64(j)})
		}
		plan := func(b *stream.Batch, in *dataset.Dataset[sinkRow]) (*dataset.Dataset[sinkRow], error) { return in, nil }
		q, err := stream.Start(ctx, src, plan, sink, stream.Options{CheckpointStorage: storage.NewMem(), Partitions: 1, MaxOffsetsPerPartition: 2,
			Trigger: stream.Trigger{UntilIdle: true}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Run(ctx); err != nil {
			t.Fatal(err)
		}
		q.Close(ctx)
		sink.Close()
	}
	r := cairn(t, "sink", "read", dir)
	r.wantExit(t, 0, "sink", "read", dir)
	var users []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var row sinkRow
		json.Unmarshal([]byte(l), &row)
		users = append(users, row.User)
	}
	if got := strings.Join(users, " "); got != "q0-0 q0-1 q0-2 q1-0 q1-1 q1-2" || r.stderr != "" {
		t.Errorf("sink read of an appended sink printed %s\n%s", got, r)
	}
	r = cairn(t, "sink", "read", "--batch", "1", dir)
	if !strings.Contains(r.stdout, "q0-2") || !strings.Contains(r.stdout, "q1-2") || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("--batch 1 of an appended sink: want batch 1 of each owner:\n%s", r)
	}
}
