package stream_test

// Nexmark-style benchmarks (BENCHMARKS.md §7). BenchmarkNexmark runs four
// queries over a deterministic stream of bids three ways in every
// iteration, so that each is measured beside its baselines under the same
// load:
//
//	off    the same per-batch dataset plan over the same offset ranges, with
//	       the stateful part done by plain Go maps: no storage, no offsets
//	       or commit log, no state store (checkpointing off)
//	mem    the cairn query with its checkpoint location in storage.NewMem:
//	       everything a checkpoint encodes, nothing durable
//	local  the cairn query with its checkpoint location on local disk
//	       (storage.OpenLocal on b.TempDir()): every batch writes its offsets
//	       entry, its state deltas and its commit entry, each fsynced
//
// BenchmarkNexmarkRecovery SIGKILLs a child process (this test binary,
// running TestNexmarkRecoveryChild) once its state holds 10k or 1M keys,
// and times a new query's Start and first batch on what it left.

import (
	"bufio"
	"context"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

// Bid is a Nexmark bid.
type Bid struct {
	Auction int64
	Bidder  int64
	Price   int64
	TS      time.Time
}

const (
	nxParts    = 4
	nxPerPart  = 50_000                    // MaxOffsetsPerPartition: 200k bids a batch
	nxGap      = 5 * time.Microsecond      // event time between bids: 200k bids/s, so a batch is 1 s of input
	nxAuctions = 10_000                    // distinct auctions
	nxDelay    = 1 * time.Second           // watermark delay of q5 and q7
	nxEvents   = 100 * nxParts * nxPerPart // 20M bids, 100 batches, per leg
)

// nxEpoch is the event time of bid 0, on a 10 s window boundary.
var nxEpoch = time.Unix(1_767_225_600, 0).UTC()

func nxMix(x uint64) uint64 { // splitmix64
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// nxBid returns the generator of bids with gap of event time between
// bids: bid i of partition p is bid g = i*4+p of the whole stream, at
// event time g*gap after nxEpoch.
func nxBid(gap time.Duration) func(p int, i int64) Bid {
	return func(p int, i int64) Bid {
		g := i*nxParts + int64(p)
		h := nxMix(uint64(g))
		return Bid{
			Auction: 1000 + int64(h%nxAuctions),
			Bidder:  int64((h >> 20) % 100_000),
			Price:   100 + int64((h>>40)%10_000),
			TS:      nxEpoch.Add(time.Duration(g) * gap),
		}
	}
}

// nxRunConfig is the size of a run: events bids in batches of perPart
// bids per partition, gap of event time apart.
type nxRunConfig struct {
	events, perPart int64
	gap             time.Duration
}

// nxBenchRun is the benchmark's run: 20M bids, 100 batches of 1 s of event time.
var nxBenchRun = nxRunConfig{events: nxEvents, perPart: nxPerPart, gap: nxGap}

func (c nxRunConfig) source() *stream.GeneratorSource[Bid] {
	return &stream.GeneratorSource[Bid]{Name: "nexmark-bids", Partitions: nxParts, Limit: c.events / nxParts, Make: nxBid(c.gap)}
}

var nxDiscard = slog.New(slog.DiscardHandler)

// A bench query: the cairn plan, the same plan with its state in plain
// maps (the "off" baseline), and a checksum of each output record, so
// that the legs are checked to compute the same thing.
type nxQuery[Out any] struct {
	name  string
	plan  stream.Plan[Bid, Out]
	off   func(in *dataset.Dataset[Bid], w *nxWindows) *dataset.Dataset[Out]
	check func(Out) int64
	// window of the windowed queries (nil for q1 and q2): the off leg
	// keeps their windows in an nxWindows of this shape.
	window *stream.Window
}

type nxPriced struct {
	Auction int64
	Price   int64
}

// q1: currency conversion, every bid's price in euros.
var nxQ1 = nxQuery[nxPriced]{
	name: "q1",
	plan: func(b *stream.Batch, in *dataset.Dataset[Bid]) (*dataset.Dataset[nxPriced], error) {
		return nxQ1Map(in), nil
	},
	off:   func(in *dataset.Dataset[Bid], _ *nxWindows) *dataset.Dataset[nxPriced] { return nxQ1Map(in) },
	check: func(r nxPriced) int64 { return r.Price },
}

func nxQ1Map(in *dataset.Dataset[Bid]) *dataset.Dataset[nxPriced] {
	return dataset.Map(in, func(b Bid) nxPriced { return nxPriced{b.Auction, b.Price * 908 / 1000} })
}

// q2: selection, the bids of some auctions.
var nxQ2 = nxQuery[nxPriced]{
	name: "q2",
	plan: func(b *stream.Batch, in *dataset.Dataset[Bid]) (*dataset.Dataset[nxPriced], error) {
		return nxQ2Filter(in), nil
	},
	off:   func(in *dataset.Dataset[Bid], _ *nxWindows) *dataset.Dataset[nxPriced] { return nxQ2Filter(in) },
	check: func(r nxPriced) int64 { return r.Auction ^ r.Price },
}

func nxQ2Filter(in *dataset.Dataset[Bid]) *dataset.Dataset[nxPriced] {
	return dataset.Map(in.Filter(func(b Bid) bool { return b.Auction%123 == 0 }),
		func(b Bid) nxPriced { return nxPriced{b.Auction, b.Price} })
}

type nxWin = stream.Windowed[int64, int64]

func nxWinCheck(w nxWin) int64 { return w.Key*31 + w.Start.UnixMilli()*7 + w.Value }

// q5-like: bids per auction in sliding windows of 10 s every 2 s.
var nxQ5 = nxWindowQuery("q5", stream.Window{Size: 10 * time.Second, Slide: 2 * time.Second},
	func(b Bid) int64 { return b.Auction }, func(Bid) int64 { return 1 }, func(a, b int64) int64 { return a + b })

// q7-like: the highest price in tumbling windows of 10 s (one key).
var nxQ7 = nxWindowQuery("q7", stream.Window{Size: 10 * time.Second},
	func(Bid) int64 { return 0 }, func(b Bid) int64 { return b.Price }, func(a, b int64) int64 { return max(a, b) })

func nxWindowQuery(name string, w stream.Window, key, value func(Bid) int64, merge func(a, b int64) int64) nxQuery[nxWin] {
	return nxQuery[nxWin]{
		name: name,
		plan: func(b *stream.Batch, in *dataset.Dataset[Bid]) (*dataset.Dataset[nxWin], error) {
			return stream.WindowAggregate(b, 1, in, w, nxDelay, func(b Bid) time.Time { return b.TS }, key, value, merge,
				state.Int64Codec{}, state.Int64Codec{})
		},
		off: func(in *dataset.Dataset[Bid], ws *nxWindows) *dataset.Dataset[nxWin] {
			return ws.aggregate(in, key, value, merge)
		},
		check:  nxWinCheck,
		window: &w,
	}
}

// nxWindows is the "off" leg's window operator: the same event-time
// windows, watermark and append-mode output as stream.WindowAggregate,
// with the windows of each partition in a Go map instead of a state store.
type nxWindows struct {
	size, slide, delay int64                              // ms
	parts              [nxParts]map[int64]map[int64]int64 // window start → key → value
	watermark          int64
	maxEvent           atomic.Int64
}

func newNxWindows(w *stream.Window) *nxWindows {
	if w == nil {
		return nil
	}
	ws := &nxWindows{size: w.Size.Milliseconds(), slide: w.Size.Milliseconds(), delay: nxDelay.Milliseconds()}
	if w.Slide > 0 {
		ws.slide = w.Slide.Milliseconds()
	}
	for p := range ws.parts {
		ws.parts[p] = map[int64]map[int64]int64{}
	}
	ws.maxEvent.Store(math.MinInt64)
	return ws
}

type nxWinKey struct{ Start, Key int64 }

func (ws *nxWindows) aggregate(in *dataset.Dataset[Bid], key, value func(Bid) int64, merge func(a, b int64) int64) *dataset.Dataset[nxWin] {
	wm, size, slide := ws.watermark, ws.size, ws.slide
	assigned := dataset.MapPartitions(in, func(ctx context.Context, part int, recs iter.Seq2[Bid, error]) iter.Seq2[dataset.Pair[nxWinKey, int64], error] {
		return func(yield func(dataset.Pair[nxWinKey, int64], error) bool) {
			seen := int64(math.MinInt64)
			defer func() { ws.observe(seen) }()
			for b, err := range recs {
				if err != nil {
					yield(dataset.Pair[nxWinKey, int64]{}, err)
					return
				}
				ms := b.TS.UnixMilli()
				seen = max(seen, ms)
				last := ms - ((ms%slide)+slide)%slide
				for s := last - ((size-1)/slide)*slide; s <= last; s += slide {
					if s+size <= ms || s+size <= wm {
						continue
					}
					if !yield(dataset.KV(nxWinKey{s, key(b)}, value(b)), nil) {
						return
					}
				}
			}
		}
	})
	reduced := dataset.ReduceByKey(assigned, merge, nxParts)
	return dataset.MapPartitions(reduced, func(ctx context.Context, part int, recs iter.Seq2[dataset.Pair[nxWinKey, int64], error]) iter.Seq2[nxWin, error] {
		return func(yield func(nxWin, error) bool) {
			windows := ws.parts[part]
			for r, err := range recs {
				if err != nil {
					yield(nxWin{}, err)
					return
				}
				m := windows[r.Key.Start]
				if m == nil {
					m = map[int64]int64{}
					windows[r.Key.Start] = m
				}
				if old, ok := m[r.Key.Key]; ok {
					m[r.Key.Key] = merge(old, r.Value)
				} else {
					m[r.Key.Key] = r.Value
				}
			}
			for start, m := range windows {
				if start+size > wm {
					continue
				}
				for k, v := range m {
					if !yield(nxWin{Key: k, Start: time.UnixMilli(start).UTC(), End: time.UnixMilli(start + size).UTC(), Value: v}, nil) {
						return
					}
				}
				delete(windows, start)
			}
		}
	})
}

func (ws *nxWindows) observe(ms int64) {
	for {
		cur := ws.maxEvent.Load()
		if ms <= cur || ws.maxEvent.CompareAndSwap(cur, ms) {
			return
		}
	}
}

// endBatch moves the watermark as a query's commit entry does: to the
// greatest event time seen minus the delay, never back.
func (ws *nxWindows) endBatch() {
	if seen := ws.maxEvent.Load(); seen != math.MinInt64 && seen-ws.delay > ws.watermark {
		ws.watermark = seen - ws.delay
	}
}

// nxConsume reads every record of data, as a sink does, and returns the
// sum of their checksums.
func nxConsume[T any](ctx context.Context, data *dataset.Dataset[T], check func(T) int64) (int64, error) {
	var total atomic.Int64
	err := data.ForEachPartition(ctx, func(ctx context.Context, part int, recs iter.Seq2[T, error]) error {
		var sum int64
		for r, err := range recs {
			if err != nil {
				return err
			}
			sum += check(r)
		}
		total.Add(sum)
		return nil
	})
	return total.Load(), err
}

// nxRunOff runs the off leg: each batch's range, as a query would read it,
// through the plan without a checkpoint.
func nxRunOff[Out any](ctx context.Context, q nxQuery[Out], c nxRunConfig) (int64, error) {
	s, err := dataset.NewSession(dataset.Options{Partitions: nxParts, Logger: nxDiscard})
	if err != nil {
		return 0, err
	}
	defer s.Close(ctx)
	src := c.source()
	ws := newNxWindows(q.window)
	var sum int64
	for from := int64(0); from < src.Limit; from += c.perPart {
		to := min(from+c.perPart, src.Limit)
		in := dataset.FromFunc(s, "bids", nxParts, func(ctx context.Context, part int, emit func(Bid) error) error {
			return src.Read(ctx, part, from, to, emit)
		})
		n, err := nxConsume(ctx, q.off(in, ws), q.check)
		if err != nil {
			return 0, err
		}
		sum += n
		if ws != nil {
			ws.endBatch()
		}
	}
	return sum, nil
}

// nxRun runs the cairn query on the checkpoint storage st, batch after
// batch until the source is exhausted, and returns the checksum of its
// output and its batches' progress.
func nxRun[Out any](ctx context.Context, q nxQuery[Out], c nxRunConfig, st storage.Storage) (int64, []stream.BatchProgress, error) {
	var sum atomic.Int64
	sink := stream.ForEachBatch("bench-checksum", func(ctx context.Context, id int64, data *dataset.Dataset[Out]) error {
		n, err := nxConsume(ctx, data, q.check)
		sum.Add(n)
		return err
	})
	opts := nxOptions(st)
	opts.MaxOffsetsPerPartition = c.perPart
	qu, err := stream.Start(ctx, c.source(), q.plan, sink, opts)
	if err != nil {
		return 0, nil, err
	}
	var progress []stream.BatchProgress
	for {
		ran, err := qu.RunBatch(ctx)
		if err != nil {
			qu.Close(ctx)
			return 0, nil, err
		}
		if !ran {
			break
		}
		p := qu.Progress()
		progress = append(progress, p[len(p)-1])
	}
	return sum.Load(), progress, qu.Close(ctx)
}

func nxOptions(st storage.Storage) stream.Options {
	return stream.Options{
		CheckpointStorage:      st,
		Partitions:             nxParts,
		StateProvider:          nxTimedName,
		MaxOffsetsPerPartition: nxPerPart,
		// Small, so that purges of old logs and state files happen within
		// the run, as they do in a long-running query.
		RetainBatches: 10,
		Logger:        nxDiscard,
	}
}

// nxTimedName is memstate with GetStore timed: in the first batch after
// a restart, GetStore loads the state from the checkpoint.
const nxTimedName = "bench-memstate-timed"

func init() {
	state.Register(nxTimedName, func() state.Provider { return nxTimedProvider{memstate.New()} })
}

type nxTimedProvider struct{ *memstate.Provider }

// nxLoads sums, per batch (the version a store is opened at), the time
// spent in GetStore over the batch's stores.
var nxLoads struct {
	mu sync.Mutex
	d  map[int64]time.Duration
}

func nxResetLoads() {
	nxLoads.mu.Lock()
	nxLoads.d = map[int64]time.Duration{}
	nxLoads.mu.Unlock()
}

func nxLoadOf(batch int64) time.Duration {
	nxLoads.mu.Lock()
	defer nxLoads.mu.Unlock()
	return nxLoads.d[batch]
}

func (p nxTimedProvider) GetStore(ctx context.Context, version int64) (state.Store, error) {
	t := time.Now()
	st, err := p.Provider.GetStore(ctx, version)
	if err != nil {
		return nil, err
	}
	nxLoads.mu.Lock()
	if nxLoads.d != nil {
		nxLoads.d[version] += time.Since(t)
	}
	nxLoads.mu.Unlock()
	return st, nil
}

// nxQuantile is the q-quantile (nearest rank) of ds, in milliseconds.
func nxQuantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return float64(s[max(i, 0)]) / float64(time.Millisecond)
}

// BenchmarkNexmark: events/s of each query with a checkpoint on local disk
// every batch, with the checkpoint in memory, and with checkpointing off,
// the overhead, and the local leg's per-phase batch latency.
func BenchmarkNexmark(b *testing.B) {
	b.Run("q=q1", func(b *testing.B) { nxBench(b, nxQ1, nxBenchRun) })
	b.Run("q=q2", func(b *testing.B) { nxBench(b, nxQ2, nxBenchRun) })
	b.Run("q=q5", func(b *testing.B) { nxBench(b, nxQ5, nxBenchRun) })
	b.Run("q=q7", func(b *testing.B) { nxBench(b, nxQ7, nxBenchRun) })
	// Batches 10 times larger (the same 20M bids in 10 batches): how the
	// fixed cost of a checkpoint is spread.
	b.Run("q=q1/batch=2M", func(b *testing.B) {
		nxBench(b, nxQ1, nxRunConfig{events: nxEvents, perPart: 10 * nxPerPart, gap: nxGap})
	})
}

func nxBench[Out any](b *testing.B, q nxQuery[Out], c nxRunConfig) {
	ctx := context.Background()
	var offD, memD, localD time.Duration
	var phases struct{ plan, wa, exec, cl, commit, ckpt, batch, rawPut []time.Duration }
	for range b.N {
		// The off leg first, then mem, then local; a GC between legs, so
		// that one leg's garbage is not collected in the next one's time.
		runtime.GC()
		t := time.Now()
		want, err := nxRunOff(ctx, q, c)
		if err != nil {
			b.Fatal(err)
		}
		offD += time.Since(t)

		runtime.GC()
		t = time.Now()
		got, _, err := nxRun(ctx, q, c, storage.NewMem())
		if err != nil {
			b.Fatal(err)
		}
		memD += time.Since(t)
		if got != want {
			b.Fatalf("%s: the mem leg's output checksum is %d, the off leg's %d: the legs do not compute the same thing", q.name, got, want)
		}

		dir := b.TempDir()
		local, err := storage.OpenLocal(dir)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		t = time.Now()
		got, progress, err := nxRun(ctx, q, c, local)
		if err != nil {
			b.Fatal(err)
		}
		localD += time.Since(t)
		local.Close()
		if got != want {
			b.Fatalf("%s: the local leg's output checksum is %d, the off leg's %d", q.name, got, want)
		}
		for range 20 {
			phases.rawPut = append(phases.rawPut, nxRawPut(b, dir))
		}
		for _, p := range progress {
			commit := p.Phases.StateCommit
			phases.plan = append(phases.plan, p.Phases.Plan)
			phases.wa = append(phases.wa, p.Phases.WriteAhead)
			phases.exec = append(phases.exec, p.Phases.Execute)
			phases.cl = append(phases.cl, p.Phases.CommitLog)
			phases.commit = append(phases.commit, commit)
			phases.ckpt = append(phases.ckpt, p.Phases.WriteAhead+p.Phases.CommitLog+commit)
			phases.batch = append(phases.batch, p.Duration)
		}
	}
	events := float64(c.events) * float64(b.N)
	rate := func(d time.Duration) float64 { return events / d.Seconds() }
	b.ReportMetric(rate(offD), "off-events/s")
	b.ReportMetric(rate(memD), "mem-events/s")
	b.ReportMetric(rate(localD), "local-events/s")
	b.ReportMetric(100*(1-rate(localD)/rate(offD)), "overhead-%")
	b.ReportMetric(100*(1-rate(memD)/rate(offD)), "mem-overhead-%")
	b.ReportMetric(nxQuantile(phases.rawPut, 0.5), "raw-put-p50-ms")
	ckpt := nxQuantile(phases.ckpt, 0.5)
	b.ReportMetric(ckpt, "ckpt-p50-ms")
	b.ReportMetric(ckpt/1000*100, "overhead@1s-%") // a 1 s trigger gives these batches at 200k bids/s
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{
		{"plan", phases.plan}, {"writeahead", phases.wa}, {"execute", phases.exec}, {"commitlog", phases.cl},
		{"statecommit", phases.commit}, {"ckpt", phases.ckpt}, {"batch", phases.batch},
	} {
		if m.name != "ckpt" {
			b.ReportMetric(nxQuantile(m.ds, 0.5), m.name+"-p50-ms")
		}
		b.ReportMetric(nxQuantile(m.ds, 0.99), m.name+"-p99-ms")
	}
}

// nxRawPut is the baseline of a durable metadata write: what
// storage.Local.Put does for a small object, without cairn (temporary
// file, write, fsync, link into place, fsync of the directory), timed.
func nxRawPut(b *testing.B, dir string) time.Duration {
	data := make([]byte, 200) // about an offsets entry
	final := filepath.Join(dir, "raw-put")
	os.Remove(final)
	t := time.Now()
	f, err := os.CreateTemp(dir, "raw-*")
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		err = os.Link(f.Name(), final)
	}
	var d *os.File
	if err == nil {
		d, err = os.Open(dir)
	}
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err == nil {
		err = os.Remove(f.Name())
	}
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(t)
}

// The recovery benchmark's query: the sum of prices per key, with bid g
// (in stream order) on key g mod keys, so that the state holds every key
// once keys bids have been read. Batches of 250k bids.
const nxRecoveryPerPart = 62_500

func nxKeyed(keys int64) stream.Plan[Bid, dataset.Pair[int64, int64]] {
	return func(b *stream.Batch, in *dataset.Dataset[Bid]) (*dataset.Dataset[dataset.Pair[int64, int64]], error) {
		pairs := dataset.Map(in, func(x Bid) dataset.Pair[int64, int64] {
			g := x.TS.Sub(nxEpoch) / nxGap
			return dataset.KV(int64(g)%keys, x.Price)
		})
		return stream.AggregateByKey(b, 1, pairs, func(a, b int64) int64 { return a + b }, state.Int64Codec{}, state.Int64Codec{})
	}
}

func nxStartKeyed(ctx context.Context, dir string, keys int64) (*stream.Query[Bid, dataset.Pair[int64, int64]], error) {
	src := &stream.GeneratorSource[Bid]{Name: fmt.Sprintf("nexmark-bids-keys-%d", keys), Partitions: nxParts, Limit: 1 << 40, Make: nxBid(nxGap)}
	sink := stream.ForEachBatch("bench-count", func(ctx context.Context, id int64, data *dataset.Dataset[dataset.Pair[int64, int64]]) error {
		_, err := data.Count(ctx)
		return err
	})
	opts := nxOptions(nil)
	opts.Checkpoint, opts.MaxOffsetsPerPartition = dir, nxRecoveryPerPart
	return stream.Start(ctx, src, nxKeyed(keys), sink, opts)
}

// TestNexmarkRecoveryChild is the child process of
// BenchmarkNexmarkRecovery: it runs the keyed query until it is killed,
// printing "batch <id> keys <n>" after each batch. Skipped otherwise.
func TestNexmarkRecoveryChild(t *testing.T) {
	dir := os.Getenv("CAIRN_STREAM_BENCH_CHILD")
	if dir == "" {
		t.Skip("the child process of BenchmarkNexmarkRecovery")
	}
	keys, err := strconv.ParseInt(os.Getenv("CAIRN_STREAM_BENCH_KEYS"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q, err := nxStartKeyed(ctx, dir, keys)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	for {
		if _, err := q.RunBatch(ctx); err != nil {
			t.Fatal(err)
		}
		p := q.Progress()
		last := p[len(p)-1]
		fmt.Fprintf(out, "batch %d keys %d ms %d\n", last.Batch, last.State[0].Keys, last.Duration.Milliseconds())
		out.Flush()
	}
}

// BenchmarkNexmarkRecovery: a child process runs the keyed query until its
// state holds keys keys and 11 more batches have committed (so that
// maintenance has had reason to write a snapshot), and is SIGKILLed. Timed:
// a new query's Start on the location and its first batch (a replay of the
// batch the child had written ahead, when it had), which loads the state.
func BenchmarkNexmarkRecovery(b *testing.B) {
	for _, keys := range []int64{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) { nxRecovery(b, keys) })
	}
}

func nxRecovery(b *testing.B, keys int64) {
	ctx := context.Background()
	perBatch := int64(nxParts * nxRecoveryPerPart)
	killAfter := (keys+perBatch-1)/perBatch - 1 + 11 // batch IDs from 0
	var recovery, start, load, next, steady, raw time.Duration
	var replays, files, snapshots, bytes float64
	b.StopTimer()
	for range b.N {
		dir := b.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestNexmarkRecoveryChild$")
		cmd.Env = append(os.Environ(), "CAIRN_STREAM_BENCH_CHILD="+dir, fmt.Sprint("CAIRN_STREAM_BENCH_KEYS=", keys))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var durations []time.Duration
		sc := bufio.NewScanner(stdout)
		killed := false
		for sc.Scan() {
			var batch, n, ms int64
			if _, err := fmt.Sscanf(sc.Text(), "batch %d keys %d ms %d", &batch, &n, &ms); err != nil {
				continue // the test framework's own lines
			}
			durations = append(durations, time.Duration(ms)*time.Millisecond)
			if batch >= killAfter {
				cmd.Process.Kill() // SIGKILL
				killed = true
				break
			}
		}
		cmd.Wait() // reaped, so that the lease sees its holder's pid gone
		if !killed {
			b.Fatalf("the child stopped before batch %d: %s", killAfter, stderr.String())
		}
		steady += time.Duration(nxQuantile(durations[len(durations)-5:], 0.5) * float64(time.Millisecond))

		runtime.GC()
		nxResetLoads()
		b.StartTimer()
		t := time.Now()
		q, err := nxStartKeyed(ctx, dir, keys)
		if err != nil {
			b.Fatal(err)
		}
		started := time.Since(t)
		if _, err := q.RunBatch(ctx); err != nil {
			b.Fatal(err)
		}
		recovery += time.Since(t)
		b.StopTimer()
		start += started
		p := q.Progress()[0]
		if p.Replay {
			replays++
		}
		if got := p.State[0].Keys; got != keys {
			b.Fatalf("after recovery the state holds %d keys, want %d", got, keys)
		}
		load += nxLoadOf(p.Batch)
		t = time.Now()
		if _, err := q.RunBatch(ctx); err != nil {
			b.Fatal(err)
		}
		next += time.Since(t)
		if err := q.Close(ctx); err != nil {
			b.Fatal(err)
		}
		// The baseline: reading the files the load needs (each store's
		// newest snapshot and the deltas after it) with os.ReadFile, from the
		// page cache as the load did.
		need, nFiles, nSnap := nxStateFiles(b, filepath.Join(dir, "state"))
		t = time.Now()
		for _, f := range need {
			data, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			bytes += float64(len(data))
		}
		raw += time.Since(t)
		files += float64(nFiles)
		snapshots += float64(nSnap)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(ms(recovery), "recovery-ms")
	b.ReportMetric(ms(start), "start-ms")
	b.ReportMetric(ms(load), "load-ms")
	b.ReportMetric(ms(next), "next-batch-ms")
	b.ReportMetric(ms(steady), "child-batch-ms")
	b.ReportMetric(replays/float64(b.N), "replayed")
	b.ReportMetric(ms(raw), "raw-read-ms")
	b.ReportMetric(bytes/1e6/float64(b.N), "read-MB")
	b.ReportMetric(files/float64(b.N), "state-files")
	b.ReportMetric(snapshots/float64(b.N), "snapshots")
}

// nxStateFiles returns the files that loading the newest version of every
// store under dir reads (its newest snapshot and the deltas after it),
// and how many delta and snapshot files there are in all, and how many
// snapshots.
func nxStateFiles(b *testing.B, dir string) (need []string, files, snapshots int) {
	stores, err := filepath.Glob(filepath.Join(dir, "*", "*"))
	if err != nil {
		b.Fatal(err)
	}
	for _, st := range stores {
		entries, err := os.ReadDir(st)
		if err != nil {
			b.Fatal(err)
		}
		snap := int64(-1)
		type file struct {
			v    int64
			path string
		}
		var deltas []file
		for _, e := range entries {
			name, ext, _ := strings.Cut(e.Name(), ".")
			v, err := strconv.ParseInt(name, 10, 64)
			if err != nil || (ext != "delta" && ext != "snapshot") {
				continue
			}
			files++
			if ext == "snapshot" {
				snapshots++
				snap = max(snap, v)
			} else {
				deltas = append(deltas, file{v, filepath.Join(st, e.Name())})
			}
		}
		if snap >= 0 {
			need = append(need, filepath.Join(st, fmt.Sprintf("%d.snapshot", snap)))
		}
		for _, d := range deltas {
			if d.v > snap {
				need = append(need, d.path)
			}
		}
	}
	return need, files, snapshots
}

// TestNexmarkLegsAgree checks, on a few small batches, that the benchmark's
// baseline computes what the query computes: a baseline that did less work
// would make the overhead look larger than it is.
func TestNexmarkLegsAgree(t *testing.T) {
	ctx := context.Background()
	// 6 batches of 4 s of event time, so that windows close.
	c := nxRunConfig{events: 6 * nxParts * 1000, perPart: 1000, gap: time.Millisecond}
	check := func(name string, run func() (int64, int64, error)) {
		want, got, err := run()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want || want == 0 {
			t.Errorf("%s: query checksum %d, baseline %d", name, got, want)
		}
	}
	check("q1", func() (int64, int64, error) { return nxAgree(ctx, nxQ1, c) })
	check("q2", func() (int64, int64, error) { return nxAgree(ctx, nxQ2, c) })
	check("q5", func() (int64, int64, error) { return nxAgree(ctx, nxQ5, c) })
	check("q7", func() (int64, int64, error) { return nxAgree(ctx, nxQ7, c) })
}

func nxAgree[Out any](ctx context.Context, q nxQuery[Out], c nxRunConfig) (int64, int64, error) {
	want, err := nxRunOff(ctx, q, c)
	if err != nil {
		return 0, 0, err
	}
	got, _, err := nxRun(ctx, q, c, storage.NewMem())
	return want, got, err
}
