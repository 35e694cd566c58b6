package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/internal/s3test"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
	"github.com/cairn-data/cairn/stream"
)

// requestsOfBatches runs the keyed query (10k bids a batch) for warm
// batches, then returns the storage operations and bytes of the next
// measured batches, in all.
func requestsOfBatches(tb testing.TB, st storage.Storage, keys int64, warm, measured int) faulty.Stats {
	tb.Helper()
	ctx := context.Background()
	fs := faulty.New(st)
	src := &stream.GeneratorSource[Bid]{Name: "requests", Partitions: nxParts, Limit: 1 << 40, Make: nxBid(nxGap)}
	sink := stream.ForEachBatch("count", func(ctx context.Context, id int64, data *dataset.Dataset[dataset.Pair[int64, int64]]) error {
		_, err := data.Count(ctx)
		return err
	})
	opts := nxOptions(nil)
	opts.CheckpointStorage, opts.MaxOffsetsPerPartition = fs, 2500
	// The lease renews every TTL/3 (one Get and one List, whatever the
	// batches do); on a loaded machine the default 30 s TTL put a renewal
	// inside the measured batches. Keep renewals out of the count.
	opts.LeaseTTL = time.Hour
	q, err := stream.Start(ctx, src, nxKeyed(keys), sink, opts)
	if err != nil {
		tb.Fatal(err)
	}
	defer q.Close(ctx)
	for range warm {
		if _, err := q.RunBatch(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	before := fs.Stats()

	for range measured {
		if _, err := q.RunBatch(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	after := fs.Stats()
	return faulty.Stats{
		Puts: after.Puts - before.Puts, Gets: after.Gets - before.Gets,
		Lists: after.Lists - before.Lists, Deletes: after.Deletes - before.Deletes,
		PutBytes: after.PutBytes - before.PutBytes, GetBytes: after.GetBytes - before.GetBytes,
	}
}

// In steady state a micro-batch reads nothing from checkpoint storage, and
// lists nothing itself: the only List calls come from state store
// maintenance, which runs in the background when a store has written
// SnapshotInterval (10) deltas since its last snapshot, one List of the
// store's directory each time. On object storage a List costs a request
// per 1000 names and may lag writes; it must not sit on the batch's path.
func TestSteadyBatchesNeitherListNorGet(t *testing.T) {
	const batches = 20
	got := requestsOfBatches(t, storage.NewMem(), 10000, 120, batches)
	t.Logf("%d batches: %+v", batches, got)
	if maxLists := nxParts * (batches/10 + 1); got.Lists > maxLists || got.Gets != 0 {
		t.Errorf("%d steady batches made %d List and %d Get calls; want at most %d Lists (maintenance) and no Get", batches, got.Lists, got.Gets, maxLists)
	}
	// Per batch: the offsets entry, one delta per state partition, the
	// commit entry (snapshots come every 10 versions).
	if per := float64(got.Puts) / batches; per < 1+nxParts+1 || per > 1+nxParts+1+float64(nxParts)/10+0.5 {
		t.Errorf("%.1f Puts per batch; want about %d", per, 2+nxParts)
	}
}

// BenchmarkRequestsPerBatch reports what one micro-batch of the keyed
// query (10k bids, 4 state partitions, 10k keys) asks of its checkpoint
// storage, in memory and on MinIO: requests by kind, bytes written, and
// the time of a batch.
func BenchmarkRequestsPerBatch(b *testing.B) {
	for _, backend := range []string{"mem", "s3"} {
		b.Run("storage="+backend, func(b *testing.B) {
			for b.Loop() {
				st := storage.Storage(storage.NewMem())
				if backend == "s3" {
					st = s3test.Storage(b, "requests")
				}
				const batches = 50
				t0 := time.Now()
				got := requestsOfBatches(b, st, 10000, 20, batches)
				b.ReportMetric(float64(time.Since(t0).Milliseconds())/(20+batches), "ms/batch")
				b.ReportMetric(float64(got.Puts)/batches, "puts/batch")
				b.ReportMetric(float64(got.Deletes)/batches, "deletes/batch")
				b.ReportMetric(float64(got.Lists)/batches, "lists/batch")
				b.ReportMetric(float64(got.Gets)/batches, "gets/batch")
				b.ReportMetric(float64(got.PutBytes)/batches/1e3, "kB-written/batch")
			}
		})
	}
}
