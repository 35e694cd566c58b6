package main

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
)

// BenchmarkPageRank runs 50 iterations over a generated graph of 1M edges,
// with a checkpoint every 10 iterations and without, in the same run. It
// reports the first and last iteration's time, their ratio, and the final
// lineage depth.
//
//	go test -run '^$' -bench PageRank -benchtime 1x ./examples/pagerank/
func BenchmarkPageRank(b *testing.B) {
	edges := randomGraph(1, 100_000, 1_000_000)
	for _, c := range []struct {
		name  string
		every int
	}{{"checkpoint=every10", 10}, {"checkpoint=never", 0}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				s, err := dataset.NewSession(dataset.Options{CheckpointLocation: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				var times []time.Duration
				depth := 0
				_, err = PageRank(context.Background(), s, edges, 50, c.every, func(st IterationStats) {
					times = append(times, st.Duration)
					depth = st.LineageDepth
				})
				if err != nil {
					b.Fatal(err)
				}
				first, last := times[0], times[len(times)-1]
				// Average of the first and last five, so one slow iteration
				// (a checkpoint, a GC) does not decide the ratio.
				avg := func(ts []time.Duration) float64 {
					var sum time.Duration
					for _, t := range ts {
						sum += t
					}
					return float64(sum.Milliseconds()) / float64(len(ts))
				}
				b.ReportMetric(float64(first.Milliseconds()), "first-iter-ms")
				b.ReportMetric(float64(last.Milliseconds()), "last-iter-ms")
				b.ReportMetric(avg(times[len(times)-5:])/avg(times[:5]), "last5/first5")
				b.ReportMetric(float64(depth), "final-depth")
				s.Close(context.Background())
			}
		})
	}
}
