package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
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
