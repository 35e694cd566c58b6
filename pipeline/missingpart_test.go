package pipeline_test

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/pipeline"
)

// TestMissingStagePartSuggestsDropStage deletes a part of a stage's stored
// output between two runs: the error names the part and says to run
// 'cairn pipeline drop-stage', not Session.Close (a dataset session's
// business, meaningless to a pipeline user).
func TestMissingStagePartSuggestsDropStage(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "checkpoint")
	build := func(failAt string) *pipeline.Pipeline {
		p, err := pipeline.New("sales", pipeline.Options{Checkpoint: ckpt,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), FailAt: failAt, Exit: func(int) {}})
		if err != nil {
			t.Fatal(err)
		}
		sales := pipeline.Source(p, "sales", pipeline.StageOptions{Version: "1"},
			func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[Sale], error) {
				return dataset.FromSlice(s, []Sale{{"EU", 5}, {"US", 7}, {"EU", 1}, {"US", -2}}, 2), nil
			})
		totals := pipeline.Then(p, "totals", pipeline.StageOptions{Version: "1"}, sales,
			func(ctx context.Context, d *dataset.Dataset[Sale]) (*dataset.Dataset[Sale], error) {
				return dataset.Map(d, func(s Sale) Sale { s.Amount *= 2; return s }), nil
			})
		pipeline.Publish(p, totals, filepath.Join(dir, "out"), dataset.WriteOptions{})
		return p
	}
	if _, err := build("totals").Run(context.Background()); err == nil {
		t.Fatal("the first run should stop at the injected failure")
	}
	var part string
	filepath.WalkDir(ckpt, func(path string, d fs.DirEntry, err error) error {
		if err == nil && part == "" && strings.Contains(path, "/stages/sales/") && strings.HasPrefix(d.Name(), "part-") && !strings.HasSuffix(d.Name(), ".done") {
			part = path
		}
		return nil
	})
	if part == "" {
		t.Fatal("found no part of stage sales")
	}
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	_, err := build("").Run(context.Background())
	if err == nil {
		t.Fatal("a run over a stage whose part was deleted succeeded")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{filepath.Base(part), "cairn pipeline drop-stage", "sales"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "Session.Close") {
		t.Errorf("error %q blames Session.Close", msg)
	}
}
