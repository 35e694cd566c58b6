package memstate_test

// Benchmarks of the memstate provider. Each one runs beside its baseline in
// the same process, as sub-benchmarks named impl=..., so that benchstat
// compares them:
//
//	go test -run '^$' -bench Ops -benchtime 1s -count 5 ./state/memstate/ > ops.txt
//	go test -run '^$' -bench 'Commit|Reload' -benchtime 5x -count 3 ./state/memstate/ > io.txt
//	benchstat -col /impl ops.txt io.txt
//
// BENCHMARKS.md at the repository root records the figures, the machine
// and the commands.
//
// The large states are built inside the parent benchmark functions, which
// the testing package calls once per process however large -count is (the
// repetitions happen in the leaves); the leaves only measure. Nothing is
// built unless -bench selects it. The measured calls run under a pprof
// label (see benchLabel) so that a -cpuprofile can leave the building out.

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

const (
	benchKeyLen   = 16
	benchValueLen = 100
	// benchStateKeys is the size of the "1M-key" state: 2^20 keys, so that
	// the key sequences below index it with a mask.
	benchStateKeys = 1 << 20
	benchSeqMask   = benchStateKeys - 1
	// benchBatch is the number of writes in one micro-batch: per Commit in
	// BenchmarkCommit and BenchmarkReload, per writable store in BenchmarkOps.
	benchBatch = 100_000
	// benchFillCommit is the number of keys per commit when building a state.
	benchFillCommit = 1 << 20
	// benchPutRecord is the size of a put record of a delta: operation
	// byte, key length varint, key, value length varint, value.
	benchPutRecord = 1 + 1 + benchKeyLen + 1 + benchValueLen
)

var (
	benchID     = state.StoreID{Operator: 7, Partition: 1}
	benchSchema = state.Schema{Key: "bytes[16]", Value: "bytes[100]"}
)

// benchMix is the splitmix64 finaliser.
func benchMix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// benchKey writes key number i into buf and returns it: 8 bytes of a hash
// of i, so that consecutive numbers are far apart in key order, then i.
func benchKey(buf *[benchKeyLen]byte, i uint64) []byte {
	binary.BigEndian.PutUint64(buf[0:8], benchMix(i))
	binary.BigEndian.PutUint64(buf[8:16], i)
	return buf[:]
}

// benchValue writes a 100-byte value that starts with seed into buf.
func benchValue(buf *[benchValueLen]byte, seed uint64) []byte {
	for j := 8; j < benchValueLen; j++ {
		buf[j] = byte(j)
	}
	binary.LittleEndian.PutUint64(buf[0:8], seed)
	return buf[:]
}

// benchFramedSize is the size of a framed object (internal/frame) with a
// payload of n bytes: header, 8 bytes per chunk of at most 64 KiB, end block.
func benchFramedSize(n int64) int64 {
	const chunk = 64 << 10
	return 12 + n + 8*((n+chunk-1)/chunk) + 20
}

func benchLocal(b *testing.B, dir string) *storage.Local {
	b.Helper()
	s, err := storage.OpenLocal(dir)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchOpen(b *testing.B, s storage.Storage, opts state.Options) state.Provider {
	b.Helper()
	p, err := state.Open(context.Background(), memstate.Name, s, benchID, benchSchema, opts)
	if err != nil {
		b.Fatalf("state.Open: %v", err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// benchFill puts keys 0..n-1, with values starting with their number, in
// commits of benchFillCommit keys, and returns the version committed last.
func benchFill(b *testing.B, p state.Provider, n int) int64 {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	v, err := p.LatestVersion(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	for lo := 0; lo < n; lo += benchFillCommit {
		st, err := p.GetStore(ctx, v)
		if err != nil {
			b.Fatal(err)
		}
		for i := lo; i < min(n, lo+benchFillCommit); i++ {
			if err := st.Put(benchKey(&kb, uint64(i)), benchValue(&vb, uint64(i))); err != nil {
				b.Fatal(err)
			}
		}
		if v, err = st.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("built a state of %d keys at version %d in %v", n, v, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	benchSyncIndex(b, p, v)
	b.Logf("brought the ordered index up to date in %v", time.Since(start).Round(time.Millisecond))
	return v
}

// benchSyncIndex brings the ordered index of version v up to date with the
// commits that left it behind (Commit updates the map only), the way a
// program's first Range after a commit does: a writable store, the first
// key of a Range, Abort. It makes no copy of the index, unlike
// GetReadStore, so later commits do not pay for copy-on-write.
func benchSyncIndex(b *testing.B, p state.Provider, v int64) {
	b.Helper()
	st, err := p.GetStore(context.Background(), v)
	if err != nil {
		b.Fatal(err)
	}
	for _, err := range st.Range(nil, nil) {
		if err != nil {
			b.Fatal(err)
		}
		break
	}
	st.Abort()
}

// benchLabel runs f with the pprof label bench=name, so that a CPU profile
// of a run can be narrowed to the measured calls (go tool pprof -tagfocus
// bench=name), leaving out the building of the state. Goroutines that f
// starts inherit the label.
func benchLabel(ctx context.Context, name string, f func(ctx context.Context)) {
	pprof.Do(ctx, pprof.Labels("bench", name), f)
}

func benchReportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

type benchOp int

const (
	benchGet benchOp = iota
	benchPutExisting
	benchPutNew
	benchDelete
)

// BenchmarkOps measures Get, Put and Delete on a writable store over a
// committed state of 2^20 keys (16-byte keys, 100-byte values), against a
// plain map[string][]byte holding the same keys. The map baseline stores a
// copy of each value (bytes.Clone), as the store does.
//
// Both work in micro-batches of benchBatch operations: after each batch the
// store is aborted and a new one opened, and the map is put back to the
// 2^20 keys (both untimed), so the state keeps its size however large b.N.
//
//   - op=get: random existing keys.
//   - op=put-existing: random existing keys, new 100-byte values.
//   - op=put-new: keys absent from the state, distinct within a batch.
//   - op=delete: existing keys, distinct within a batch.
func BenchmarkOps(b *testing.B) {
	ctx := context.Background()
	s := benchLocal(b, b.TempDir())
	p := benchOpen(b, s, state.Options{MaintenanceInterval: -1})
	version := benchFill(b, p, benchStateKeys)

	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	base := benchMapState{keys: make([]string, benchStateKeys), vals: make([][]byte, benchStateKeys)}
	m := make(map[string][]byte)
	for i := range benchStateKeys {
		base.keys[i] = string(benchKey(&kb, uint64(i)))
		base.vals[i] = bytes.Clone(benchValue(&vb, uint64(i)))
		m[base.keys[i]] = base.vals[i]
	}

	// Key number sequences, one per operation, indexed by i&benchSeqMask.
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]uint32, benchStateKeys)
	fresh := make([]uint32, benchStateKeys)
	for i := range random {
		random[i] = uint32(rng.IntN(benchStateKeys))
		fresh[i] = uint32(benchStateKeys + i)
	}
	perm := make([]uint32, benchStateKeys)
	for i, n := range rng.Perm(benchStateKeys) {
		perm[i] = uint32(n)
	}

	for _, c := range []struct {
		name string
		op   benchOp
		seq  []uint32
	}{
		{"get", benchGet, random},
		{"put-existing", benchPutExisting, random},
		{"put-new", benchPutNew, fresh},
		{"delete", benchDelete, perm},
	} {
		b.Run("op="+c.name+"/impl=memstate", func(b *testing.B) {
			benchLabel(ctx, c.name+"/memstate", func(context.Context) { benchStoreOps(b, p, version, c.op, c.seq) })
		})
		b.Run("op="+c.name+"/impl=map", func(b *testing.B) {
			benchLabel(ctx, c.name+"/map", func(context.Context) { benchMapOps(b, m, base, c.op, c.seq) })
		})
	}
}

func benchStoreOps(b *testing.B, p state.Provider, version int64, op benchOp, seq []uint32) {
	ctx := context.Background()
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	val := benchValue(&vb, 1)
	st, err := p.GetStore(ctx, version)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%benchBatch == 0 {
			b.StopTimer()
			st.Abort()
			if st, err = p.GetStore(ctx, version); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		k := benchKey(&kb, uint64(seq[i&benchSeqMask]))
		switch op {
		case benchGet:
			if _, ok, err := st.Get(k); !ok || err != nil {
				b.Fatalf("Get(%x) = %v, %v", k, ok, err)
			}
		case benchPutExisting, benchPutNew:
			if err := st.Put(k, val); err != nil {
				b.Fatal(err)
			}
		case benchDelete:
			if err := st.Delete(k); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	st.Abort()
	benchReportOps(b)
}

// benchMapState keeps the keys and values the map baseline was built with.
type benchMapState struct {
	keys []string
	vals [][]byte
}

func benchMapOps(b *testing.B, m map[string][]byte, base benchMapState, op benchOp, seq []uint32) {
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	val := benchValue(&vb, 1)
	// undo puts the map back to the committed state after ops [from, to).
	// It puts back the original key strings and values, not new copies,
	// so that their place in memory stays as random as the store's.
	undo := func(from, to int) {
		for i := from; i < to; i++ {
			n := seq[i&benchSeqMask]
			switch op {
			case benchPutNew:
				delete(m, string(benchKey(&kb, uint64(n))))
			case benchDelete:
				m[base.keys[n]] = base.vals[n]
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%benchBatch == 0 {
			b.StopTimer()
			undo(i-benchBatch, i)
			b.StartTimer()
		}
		k := benchKey(&kb, uint64(seq[i&benchSeqMask]))
		switch op {
		case benchGet:
			if _, ok := m[string(k)]; !ok {
				b.Fatalf("m[%x] missing", k)
			}
		case benchPutExisting, benchPutNew:
			m[string(k)] = bytes.Clone(val)
		case benchDelete:
			delete(m, string(k))
		}
	}
	b.StopTimer()
	undo(b.N-(b.N-1)%benchBatch-1, b.N)
	benchReportOps(b)
}

// BenchmarkCommit measures Commit of benchBatch changed keys (existing
// keys, new values) in states of 2^20 and 10*2^20 keys on local storage,
// against writing a file of the same size (the delta's size) with
// os.CreateTemp, Write, fsync and Close in the same directory.
//
// Commit brings the point-lookup map up to date and queues the batch for
// the ordered index; the provider's indexer goroutine applies it after
// the commit (holding the provider's lock), or the first Range, read store
// or snapshot does, whichever comes first. So there are two memstate
// figures:
//
//   - impl=memstate: Commit only. sec/op and MB/s cover Commit; the
//     GetStore and Puts before it are untimed and reported, with Commit,
//     as puts+commit-ms and puts+commit-MB/s (GetStore waits for the
//     lock while the indexer applies the previous batch). Each run starts
//     with the index up to date (untimed).
//   - impl=memstate+range: Commit, then GetStore of the new version and
//     the first key of a Range (which brings the index up to date), both
//     timed; range-ms is the part after Commit. This is the cost per commit
//     of a program that reads in order after every commit, and about the
//     cost per commit, amortised, of one that never does.
func BenchmarkCommit(b *testing.B) {
	for _, size := range []struct {
		name string
		keys int
	}{{"1Mi", 1 << 20}, {"10Mi", 10 << 20}} {
		b.Run("keys="+size.name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			s := benchLocal(b, dir)
			p := benchOpen(b, s, state.Options{MaintenanceInterval: -1})
			version := benchFill(b, p, size.keys)
			deltaSize := benchFramedSize(benchBatch * benchPutRecord)
			rng := rand.New(rand.NewPCG(3, 4))

			memstateCommit := func(b *testing.B, thenRange bool) {
				var kb [benchKeyLen]byte
				var vb [benchValueLen]byte
				stride := size.keys / benchBatch
				var putsAndCommit, ranges time.Duration
				b.StopTimer()
				benchSyncIndex(b, p, version)
				b.SetBytes(deltaSize)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					start := time.Now()
					st, err := p.GetStore(ctx, version)
					if err != nil {
						b.Fatal(err)
					}
					// One key from each stride: distinct existing keys.
					for j := range benchBatch {
						n := uint64(j*stride + rng.IntN(stride))
						if err := st.Put(benchKey(&kb, n), benchValue(&vb, uint64(version)<<32|n)); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					var next int64
					benchLabel(ctx, "commit/"+size.name, func(ctx context.Context) { next, err = st.Commit(ctx) })
					if err == nil && thenRange {
						rangeStart := time.Now()
						benchLabel(ctx, "range/"+size.name, func(context.Context) { benchSyncIndex(b, p, next) })
						ranges += time.Since(rangeStart)
					}
					b.StopTimer()
					putsAndCommit += time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					version = next
					fi, err := os.Stat(filepath.Join(s.Root(), filepath.FromSlash(memstate.DeltaName(benchID.Dir(), next))))
					if err != nil {
						b.Fatal(err)
					}
					if fi.Size() != deltaSize {
						b.Fatalf("delta %d is %d bytes, the baseline writes %d", next, fi.Size(), deltaSize)
					}
				}
				if thenRange {
					b.ReportMetric(ranges.Seconds()*1e3/float64(b.N), "range-ms")
				} else {
					b.ReportMetric(putsAndCommit.Seconds()*1e3/float64(b.N), "puts+commit-ms")
					b.ReportMetric(float64(deltaSize)*float64(b.N)/1e6/putsAndCommit.Seconds(), "puts+commit-MB/s")
				}
			}
			b.Run("impl=memstate", func(b *testing.B) { memstateCommit(b, false) })
			b.Run("impl=memstate+range", func(b *testing.B) { memstateCommit(b, true) })

			b.Run("impl=raw-write", func(b *testing.B) {
				buf := make([]byte, deltaSize)
				for i := 0; i+8 <= len(buf); i += 8 {
					binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
				}
				b.SetBytes(deltaSize)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					f, err := os.CreateTemp(dir, "raw-write-*")
					if err != nil {
						b.Fatal(err)
					}
					if _, err := f.Write(buf); err != nil {
						b.Fatal(err)
					}
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
					if err := f.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkReload measures loading the latest version of a 2^20-key state
// from one snapshot and 10 deltas of benchBatch changes (90% updates, 5%
// deletes, 5% new keys) with a fresh provider, against os.ReadFile of the
// same files. The files are read once before the first run, so both read
// from a warm page cache. MB/s counts the bytes of the files.
//
//   - impl=memstate-getreadstore: state.Open, GetReadStore(latest) (the
//     read-only table has the B-tree only).
//   - impl=memstate-getstore: state.Open, GetStore(latest) (what a
//     restarted task does; the table has the B-tree and the hash map).
//     The deltas go to the map; their index work is queued, not done.
//   - impl=memstate-getstore+range: the same, then the first key of a
//     Range (which does the queued index work), timed; range-ms is that
//     part.
func BenchmarkReload(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	s := benchLocal(b, dir)

	p := benchOpen(b, s, state.Options{MaintenanceInterval: -1, SnapshotInterval: 1})
	snap := benchFill(b, p, benchStateKeys)
	if err := p.Maintain(ctx); err != nil {
		b.Fatal(err)
	}
	p.Close()

	p = benchOpen(b, s, state.Options{MaintenanceInterval: -1, SnapshotInterval: 1000})
	rng := rand.New(rand.NewPCG(5, 6))
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	const deltas, fresh = 10, benchBatch / 20
	stride := benchStateKeys / (benchBatch - fresh)
	v := snap
	var wantKeys int64
	for d := range deltas {
		st, err := p.GetStore(ctx, v)
		if err != nil {
			b.Fatal(err)
		}
		for j := range benchBatch - fresh {
			n := uint64(j*stride + rng.IntN(stride))
			if j%19 == 0 {
				err = st.Delete(benchKey(&kb, n))
			} else {
				err = st.Put(benchKey(&kb, n), benchValue(&vb, uint64(v)<<32|n))
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		for j := range fresh {
			n := uint64(benchStateKeys + d*fresh + j)
			if err := st.Put(benchKey(&kb, n), benchValue(&vb, n)); err != nil {
				b.Fatal(err)
			}
		}
		wantKeys = st.Metrics().Keys
		if v, err = st.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	p.Close()

	objs, err := s.List(ctx, benchID.Dir()+"/")
	if err != nil {
		b.Fatal(err)
	}
	var snapshots int
	for _, o := range objs {
		if _, kind, ok := memstate.ParseFileName(filepath.Base(o.Name)); ok && kind == "snapshot" {
			snapshots++
		}
	}
	if snapshots != 1 {
		b.Fatalf("%d snapshots in %s, want exactly 1", snapshots, dir)
	}
	// The files a load of version v reads: the snapshot, then the deltas.
	paths := []string{memstate.SnapshotName(benchID.Dir(), snap)}
	for d := snap + 1; d <= v; d++ {
		paths = append(paths, memstate.DeltaName(benchID.Dir(), d))
	}
	var total int64
	for i, name := range paths {
		paths[i] = filepath.Join(s.Root(), filepath.FromSlash(name))
		data, err := os.ReadFile(paths[i]) // warms the page cache
		if err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	b.Logf("reload reads %d files, %d bytes, for %d keys", len(paths), total, wantKeys)

	reload := func(b *testing.B, writable, thenRange bool) {
		b.SetBytes(total)
		var ranges time.Duration
		for i := 0; i < b.N; i++ {
			var p state.Provider
			var rs state.ReadStore
			var err error
			benchLabel(ctx, "reload", func(ctx context.Context) {
				p, err = state.Open(ctx, memstate.Name, s, benchID, benchSchema, state.Options{MaintenanceInterval: -1})
				if err != nil {
					return
				}
				if writable {
					rs, err = p.GetStore(ctx, v)
				} else {
					rs, err = p.GetReadStore(ctx, v)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			if thenRange {
				rangeStart := time.Now()
				benchLabel(ctx, "reload-range", func(context.Context) {
					for _, err := range rs.Range(nil, nil) {
						if err != nil {
							b.Fatal(err)
						}
						break
					}
				})
				ranges += time.Since(rangeStart)
			}
			if got := rs.Metrics().Keys; got != wantKeys {
				b.Fatalf("reloaded %d keys, want %d", got, wantKeys)
			}
			rs.Abort()
			p.Close()
		}
		if thenRange {
			b.ReportMetric(ranges.Seconds()*1e3/float64(b.N), "range-ms")
		}
	}
	b.Run("impl=memstate-getreadstore", func(b *testing.B) { reload(b, false, false) })
	b.Run("impl=memstate-getstore", func(b *testing.B) { reload(b, true, false) })
	b.Run("impl=memstate-getstore+range", func(b *testing.B) { reload(b, true, true) })
	b.Run("impl=raw-read", func(b *testing.B) {
		b.SetBytes(total)
		for i := 0; i < b.N; i++ {
			for _, path := range paths {
				if _, err := os.ReadFile(path); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
