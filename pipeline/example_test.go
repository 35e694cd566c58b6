package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/pipeline"
)

type Sale struct {
	Region string
	Amount int64
}

// A two-stage pipeline, run twice: the first run is pre-empted when the
// second stage starts; the second run restores the first stage and
// completes.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "cairn-example-")
	defer os.RemoveAll(dir)

	build := func(failAt string) *pipeline.Pipeline {
		p, _ := pipeline.New("sales", pipeline.Options{
			Checkpoint: filepath.Join(dir, "checkpoint"),
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			FailAt:     failAt,       // as CAIRN_FAIL_AT would
			Exit:       func(int) {}, // a real process would exit here
		})
		sales := pipeline.Source(p, "sales", pipeline.StageOptions{Version: "1"},
			func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[Sale], error) {
				return dataset.FromSlice(s, []Sale{{"EU", 5}, {"US", 7}, {"EU", 1}, {"US", -2}}, 2), nil
			})
		totals := pipeline.Then(p, "totals", pipeline.StageOptions{Version: "1"}, sales,
			func(ctx context.Context, d *dataset.Dataset[Sale]) (*dataset.Dataset[Sale], error) {
				kv := dataset.Map(d, func(s Sale) dataset.Pair[string, int64] { return dataset.KV(s.Region, s.Amount) })
				sum := dataset.ReduceByKey(kv, func(a, b int64) int64 { return a + b }, 1)
				return dataset.Map(sum, func(p dataset.Pair[string, int64]) Sale { return Sale{p.Key, p.Value} }), nil
			})
		pipeline.Publish(p, totals, filepath.Join(dir, "out"), dataset.WriteOptions{})
		return p
	}

	_, err := build("totals").Run(ctx)
	fmt.Println("first run:", err)

	report, err := build("").Run(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range report.Stages {
		fmt.Printf("stage %s: %s, %d rows\n", s.Name, s.Status, s.Rows)
	}
	fmt.Println("run", report.Run, "resumed:", report.Resumed)
	// Output:
	// first run: pipeline: failure injected at totals
	// stage sales: restored, 4 rows
	// stage totals: computed, 2 rows
	// run 000001 resumed: true
}
