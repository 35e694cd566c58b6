package dataset

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cairn-data/cairn/storage"
)

// BenchmarkCheckpointWrite writes an eager reliable checkpoint of 2M
// records to local storage, against writing the same number of bytes raw
// (os.WriteFile of a file per partition, fsynced) in the same directory.
//
//	go test -run '^$' -bench CheckpointWrite -benchtime 5x ./dataset/
func BenchmarkCheckpointWrite(b *testing.B) {
	recs := points(2_000_000)
	var ckptBytes int64
	b.Run("impl=checkpoint", func(b *testing.B) {
		ctx := context.Background()
		for range b.N {
			dir := b.TempDir()
			s, _ := NewSession(Options{CheckpointLocation: dir, Partitions: 8})
			d := FromSlice(s, recs, 8)
			c, err := d.Checkpoint(ctx, true)
			if err != nil {
				b.Fatal(err)
			}
			ckptBytes = 0
			st, _ := storage.OpenLocal(dir)
			objs, _ := st.List(ctx, "")
			for _, o := range objs {
				ckptBytes += o.Size
			}
			_ = c
			s.Close(ctx)
		}
		b.SetBytes(ckptBytes)
	})
	b.Run("impl=raw-write", func(b *testing.B) {
		if ckptBytes == 0 {
			b.Skip("run with the checkpoint sub-benchmark, which sets the size")
		}
		part := make([]byte, ckptBytes/8)
		for i := range part {
			part[i] = byte(i * 7)
		}
		for range b.N {
			dir := b.TempDir()
			for p := range 8 {
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("part-%05d", p)))
				if err != nil {
					b.Fatal(err)
				}
				f.Write(part)
				f.Sync()
				f.Close()
			}
		}
		b.SetBytes(ckptBytes)
	})
}

// BenchmarkAggregate sums values per key over 10M records with
// ReduceByKey, on one core and on every core, against a hand-written
// single-threaded loop over the same slice (the limit).
//
//	go test -run '^$' -bench Aggregate -benchtime 3x ./dataset/
func BenchmarkAggregate(b *testing.B) {
	const n = 10_000_000
	recs := make([]Pair[int64, int64], n)
	for i := range recs {
		recs[i] = Pair[int64, int64]{Key: int64(mix(uint64(i)) % 100_000), Value: int64(i % 1000)}
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	}
	b.Run("impl=loop", func(b *testing.B) {
		for range b.N {
			sums := map[int64]int64{}
			for _, r := range recs {
				sums[r.Key] += r.Value
			}
			if len(sums) == 0 {
				b.Fatal("empty")
			}
		}
		report(b)
	})
	for _, cores := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("impl=ReduceByKey/cores=%d", cores), func(b *testing.B) {
			ctx := context.Background()
			for range b.N {
				s, _ := NewSession(Options{Parallelism: cores, Partitions: 2 * runtime.GOMAXPROCS(0)})
				d := FromSlice(s, recs, 0)
				c, err := ReduceByKey(d, func(a, b int64) int64 { return a + b }, 0).Count(ctx)
				if err != nil || c != 100_000 {
					b.Fatal(c, err)
				}
				s.Close(ctx)
			}
			report(b)
		})
	}
}
