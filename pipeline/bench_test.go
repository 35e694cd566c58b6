package pipeline

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
)

var benchRows = flag.Int("pipeline.bench-rows", 10_000_000, "rows of the checkpoint cost benchmark")

type benchRow struct {
	ID    int64
	Key   string
	Value float64
}

// benchSource makes rows deterministically, with a little work per row.
func benchSource(s *dataset.Session, rows, parts int) *dataset.Dataset[benchRow] {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%04d", i)
	}
	return dataset.FromFunc(s, "bench", parts, func(ctx context.Context, part int, emit func(benchRow) error) error {
		lo, hi := rows*part/parts, rows*(part+1)/parts
		x := uint64(part + 1)
		for i := lo; i < hi; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			if err := emit(benchRow{ID: int64(i), Key: keys[x%1024], Value: float64(x%100000) / 100}); err != nil {
				return err
			}
		}
		return nil
	})
}

// BenchmarkCheckpointCost measures one stage of 10M rows three ways in the
// same run: computed and consumed with no checkpoint (the baseline),
// computed and checkpointed by a pipeline to local disk, and the disk's
// own sequential write speed for as many bytes. Metrics: the ratio of
// the checkpointed stage's time to the baseline's, and the checkpoint's
// write rate against the disk's.
func BenchmarkCheckpointCost(b *testing.B) {
	ctx := context.Background()
	const parts = 16
	var base, ckpt, disk time.Duration
	var bytes int64
	for i := 0; b.Loop(); i++ {
		// Baseline: compute and count, nothing stored.
		s, err := dataset.NewSession(dataset.Options{})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		n, err := benchSource(s, *benchRows, parts).Count(ctx)
		if err != nil || n != int64(*benchRows) {
			b.Fatalf("count %d, %v", n, err)
		}
		base += time.Since(t0)
		s.Close(ctx)

		// The same stage in a pipeline that checkpoints it.
		dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
		p, err := New("bench", Options{Checkpoint: filepath.Join(dir, "ckpt"), Logger: quietLogger(), KeepIntermediates: true})
		if err != nil {
			b.Fatal(err)
		}
		Source(p, "rows", StageOptions{}, func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[benchRow], error) {
			return benchSource(s, *benchRows, parts), nil
		})
		t0 = time.Now()
		rep, err := p.Run(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ckpt += time.Since(t0)
		bytes = rep.Stage("rows").Bytes

		// The disk: as many bytes, written sequentially and synced.
		t0 = time.Now()
		if err := writeSynced(filepath.Join(dir, "raw"), bytes); err != nil {
			b.Fatal(err)
		}
		disk += time.Since(t0)
	}
	n := float64(b.N)
	b.ReportMetric(base.Seconds()/n, "off-s")
	b.ReportMetric(ckpt.Seconds()/n, "checkpointed-s")
	b.ReportMetric(float64(ckpt)/float64(base), "checkpointed/off")
	b.ReportMetric(float64(bytes)/1e6, "checkpoint-MB")
	b.ReportMetric(float64(bytes)*n/1e6/ckpt.Seconds(), "checkpoint-MB/s")
	b.ReportMetric(float64(bytes)*n/1e6/disk.Seconds(), "disk-MB/s")
}

func writeSynced(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
