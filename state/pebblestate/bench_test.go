package pebblestate_test

// Benchmarks of the pebble provider, each beside its baseline in the same
// process (sub-benchmarks named impl=...), so that benchstat compares them:
//
//	go test -run '^$' -bench 'Ops' -benchtime 300000x -count 3 ./state/pebblestate/ > ops.txt
//	go test -run '^$' -bench 'Commit|Restore' -benchtime 10x ./state/pebblestate/ > io.txt
//	go test -run '^$' -bench 'PeakRSS' -benchtime 1x ./state/pebblestate/ > rss.txt
//	benchstat -col /impl ops.txt io.txt
//
// Keys are 16 bytes, values 100 pseudo-random bytes (they do not
// compress). States are built inside the parent benchmark functions,
// which run once per process; the leaves only measure. The large state
// is 10M keys; CAIRN_BENCH_LARGE sets another size (the figures say which
// they used).

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/cairn-data/cairn/internal/s3test"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/state/pebblestate"
	"github.com/cairn-data/cairn/storage"
)

const (
	benchKeyLen   = 16
	benchValueLen = 100
	benchSmall    = 1 << 20 // the "1M-key" state
	// benchBatch is the number of writes per micro-batch (per Commit).
	benchBatch = 10_000
	// benchFill is the number of keys per commit when building a state.
	benchFill = 500_000
)

var (
	benchID     = state.StoreID{Operator: 7, Partition: 1}
	benchSchema = state.Schema{Key: "bytes[16]", Value: "bytes[100]"}
)

// benchLarge is the size of the "10M-key" state.
func benchLarge(b *testing.B) int {
	if s := os.Getenv("CAIRN_BENCH_LARGE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("CAIRN_BENCH_LARGE=%q: %v", s, err)
		}
		return n
	}
	return 10 << 20
}

func benchMix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// benchKey writes key number i into buf: 8 bytes of a hash of i, so that
// consecutive numbers are far apart in key order, then i.
func benchKey(buf *[benchKeyLen]byte, i uint64) []byte {
	binary.BigEndian.PutUint64(buf[0:8], benchMix(i))
	binary.BigEndian.PutUint64(buf[8:16], i)
	return buf[:]
}

// benchValue writes a pseudo-random 100-byte value derived from seed.
func benchValue(buf *[benchValueLen]byte, seed uint64) []byte {
	for j := 0; j+8 <= benchValueLen; j += 8 {
		binary.LittleEndian.PutUint64(buf[j:], benchMix(seed*16+uint64(j)))
	}
	return buf[:]
}

// benchPebbleOptions are the options of the raw Pebble baseline: those the
// provider gives its databases (defaults of Options).
func benchPebbleOptions(cache *pebble.Cache) *pebble.Options {
	o := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                pebblestate.DefaultMemTableSize,
		MemTableStopWritesThreshold: pebblestate.DefaultMemTables,
		MaxOpenFiles:                pebblestate.DefaultMaxOpenFiles,
		DisableWAL:                  true,
		FormatMajorVersion:          pebble.FormatTableFormatV6,
		Logger:                      quietLogger{},
	}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return o
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)         {}
func (quietLogger) Errorf(string, ...any)        {}
func (quietLogger) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

func benchReportOps(b *testing.B, n int, d time.Duration) {
	b.ReportMetric(float64(n)/d.Seconds(), "ops/s")
}

// benchTB is what the state builders need of a testing.B; childTB gives
// it to the child processes of BenchmarkPeakRSS.
type benchTB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

type childTB struct{}

func (childTB) Helper()           {}
func (childTB) Fatal(args ...any) { fmt.Fprintln(os.Stderr, args...); os.Exit(2) }
func (childTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}
func (childTB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func benchOpen(b benchTB, name string, s storage.Storage, opts state.Options) state.Provider {
	b.Helper()
	if opts.MaintenanceInterval == 0 {
		opts.MaintenanceInterval = -1
	}
	p, err := state.Open(context.Background(), name, s, benchID, benchSchema, opts)
	if err != nil {
		b.Fatalf("state.Open: %v", err)
	}
	return p
}

// benchFillStore puts keys 0..n-1 in commits of benchFill keys and
// returns the version committed last.
func benchFillStore(b benchTB, p state.Provider, n int) int64 {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	v, _ := p.LatestVersion(ctx)
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	for lo := 0; lo < n; lo += benchFill {
		st, err := p.GetStore(ctx, v)
		if err != nil {
			b.Fatal(err)
		}
		for i := lo; i < min(n, lo+benchFill); i++ {
			if err := st.Put(benchKey(&kb, uint64(i)), benchValue(&vb, uint64(i))); err != nil {
				b.Fatal(err)
			}
		}
		if v, err = st.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("built a state of %d keys at version %d in %v", n, v, time.Since(start).Round(time.Millisecond))
	return v
}

// benchFillRaw puts keys 0..n-1 into a raw Pebble database in batches of
// benchFill keys.
func benchFillRaw(b benchTB, db *pebble.DB, n int) {
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	for lo := 0; lo < n; lo += benchFill {
		batch := db.NewBatch()
		for i := lo; i < min(n, lo+benchFill); i++ {
			batch.Set(benchKey(&kb, uint64(i)), benchValue(&vb, uint64(i)), nil)
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	db.Flush()
}

// BenchmarkOps measures Put and Get throughput on a 1M-key state against
// raw Pebble doing the same batch writes and reads, with the same options,
// and against memstate. Each implementation builds its state (and lets
// compactions settle) before its own measurements, with no other database
// open.
//
//   - op=put: b.N writes of random existing keys with new values, in
//     micro-batches of benchBatch, each committed; timed from the first
//     Put to the last Commit. impl=pebble counts keys exactly (a lookup
//     per Put), impl=pebble-estimate does not (blind writes, as raw
//     Pebble); impl=raw-pebble writes a plain batch and commits it
//     (NoSync, no changelog); impl=memstate is the in-memory provider.
//     The providers' commits write a changelog to local checkpoint
//     storage with fsync; raw Pebble writes nothing durable.
//     impl=pebble-estimate-memstorage keeps checkpoint storage in memory,
//     which leaves out the changelog's write and fsync.
//   - op=get: b.N reads of random existing keys through a writable store,
//     against raw Pebble's DB.Get.
//   - op=get+put: read-modify-write of random keys (Get then Put of the
//     same key), committed per micro-batch; raw Pebble reads through an
//     indexed batch, which reads its own writes as a store does.
func BenchmarkOps(b *testing.B) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	seq := make([]uint32, 1<<20)
	for i := range seq {
		seq[i] = uint32(rng.IntN(benchSmall))
	}
	root := b.TempDir()
	type impl struct {
		name    string
		p       state.Provider
		version int64
	}
	var impls []*impl
	for _, c := range []struct {
		name     string
		provider string
		po       any
		mem      bool // checkpoint storage in memory: no fsync of the changelog
	}{
		{"pebble", pebblestate.Name, pebblestate.Options{Dir: filepath.Join(root, "pebble-work")}, false},
		{"pebble-estimate", pebblestate.Name, pebblestate.Options{Dir: filepath.Join(root, "estimate-work"), EstimateKeys: true}, false},
		{"pebble-estimate-memstorage", pebblestate.Name, pebblestate.Options{Dir: filepath.Join(root, "estimate-mem-work"), EstimateKeys: true}, true},
		{"memstate", memstate.Name, nil, false},
	} {
		var s storage.Storage = storage.NewMem()
		if !c.mem {
			var err error
			if s, err = storage.OpenLocal(filepath.Join(root, c.name)); err != nil {
				b.Fatal(err)
			}
		}
		p := benchOpen(b, c.provider, s, state.Options{Provider: c.po})
		defer p.Close()
		im := &impl{name: c.name, p: p, version: benchFillStore(b, p, benchSmall)}
		if err := p.Maintain(ctx); err != nil { // flushes
			b.Fatal(err)
		}
		benchSettle(b, func() bool {
			if c.provider != pebblestate.Name {
				return true
			}
			rs, err := p.GetReadStore(ctx, im.version)
			if err != nil {
				b.Fatal(err)
			}
			defer rs.Abort()
			m := rs.Metrics().Custom
			return m["compactionsInProgress"] == 0 && m["compactionDebtBytes"] == 0
		})
		impls = append(impls, im)
	}
	cache := pebble.NewCache(pebblestate.DefaultBlockCacheSize)
	defer cache.Unref()
	db, err := pebble.Open(filepath.Join(root, "raw"), benchPebbleOptions(cache))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	benchFillRaw(b, db, benchSmall)
	benchSettle(b, func() bool {
		m := db.Metrics()
		return m.Compact.NumInProgress+m.Flush.NumInProgress == 0 && m.Compact.EstimatedDebt == 0
	})
	for _, op := range []string{"put", "get", "get+put"} {
		for _, im := range impls {
			if op == "get" && im.name != "pebble" && im.name != "memstate" ||
				op != "put" && im.name == "pebble-estimate-memstorage" {
				continue // the same reads as impl=pebble
			}
			b.Run("op="+op+"/impl="+im.name, func(b *testing.B) {
				b.StopTimer()
				st, err := im.p.GetStore(ctx, im.version)
				if err != nil {
					b.Fatal(err)
				}
				benchWarm(func(k []byte) { st.Get(k) }, seq)
				st.Abort()
				b.StartTimer()
				benchStoreOps(b, ctx, im.p, &im.version, op, seq)
			})
		}
		b.Run("op="+op+"/impl=raw-pebble", func(b *testing.B) {
			b.StopTimer()
			benchWarm(func(k []byte) {
				if _, c, err := db.Get(k); err == nil {
					c.Close()
				}
			}, seq)
			b.StartTimer()
			benchRawOps(b, db, op, seq)
		})
	}
}

// benchSettle waits until idle() (no compaction running or owed), for at
// most a minute.
func benchSettle(b *testing.B, idle func() bool) {
	start := time.Now()
	for !idle() && time.Since(start) < time.Minute {
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("compactions settled after %v", time.Since(start).Round(time.Millisecond))
}

// benchWarm reads 200k keys from the end of seq (the measurements start
// at its beginning), so that they start with index and filter blocks in
// the block cache.
func benchWarm(get func(k []byte), seq []uint32) {
	var kb [benchKeyLen]byte
	for _, n := range seq[len(seq)-200_000:] {
		get(benchKey(&kb, uint64(n)))
	}
}

func benchStoreOps(b *testing.B, ctx context.Context, p state.Provider, version *int64, op string, seq []uint32) {
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	st, err := p.GetStore(ctx, *version)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%benchBatch == 0 {
			if op == "get" {
				b.StopTimer()
				st.Abort()
				b.StartTimer()
			} else if *version, err = st.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			if st, err = p.GetStore(ctx, *version); err != nil {
				b.Fatal(err)
			}
		}
		k := benchKey(&kb, uint64(seq[i&(len(seq)-1)]))
		switch op {
		case "get":
			if _, ok, err := st.Get(k); !ok || err != nil {
				b.Fatalf("Get(%x) = %v, %v", k, ok, err)
			}
		case "put":
			if err := st.Put(k, benchValue(&vb, uint64(i))); err != nil {
				b.Fatal(err)
			}
		case "get+put":
			if _, ok, err := st.Get(k); !ok || err != nil {
				b.Fatalf("Get(%x) = %v, %v", k, ok, err)
			}
			if err := st.Put(k, benchValue(&vb, uint64(i))); err != nil {
				b.Fatal(err)
			}
		}
	}
	if op == "get" {
		st.Abort()
	} else if *version, err = st.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	benchReportOps(b, b.N, b.Elapsed())
}

func benchRawOps(b *testing.B, db *pebble.DB, op string, seq []uint32) {
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	batch := db.NewBatch()
	if op == "get+put" {
		batch = db.NewIndexedBatch() // reads its own writes, as a store does
	}
	commit := func() {
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
		if op == "get+put" {
			batch = db.NewIndexedBatch()
		} else {
			batch = db.NewBatch()
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%benchBatch == 0 && op != "get" {
			commit()
		}
		k := benchKey(&kb, uint64(seq[i&(len(seq)-1)]))
		switch op {
		case "get":
			v, closer, err := db.Get(k)
			if err != nil || len(v) == 0 {
				b.Fatalf("Get(%x): %v", k, err)
			}
			closer.Close()
		case "put":
			batch.Set(k, benchValue(&vb, uint64(i)), nil)
		case "get+put":
			v, closer, err := batch.Get(k)
			if err != nil || len(v) == 0 {
				b.Fatalf("Get(%x): %v", k, err)
			}
			closer.Close()
			batch.Set(k, benchValue(&vb, uint64(i)), nil)
		}
	}
	if op != "get" {
		commit()
	}
	b.StopTimer()
	batch.Close()
	benchReportOps(b, b.N, b.Elapsed())
}

// BenchmarkCommit measures, per version of benchBatch (10k) changed keys
// in states of 1M and 10M keys, the commit latency (Put of the 10k keys
// untimed, Commit timed) and, with a snapshot after every commit, the
// bytes a snapshot uploads (upload-bytes/version) beside the size of the
// whole state in SST files (state-sst-bytes, what a full snapshot would
// upload) and the changelog bytes per version. impl=memstate beside it
// (1M only) writes a delta per commit; its snapshot rewrites the state.
func BenchmarkCommit(b *testing.B) {
	for _, size := range []struct {
		name string
		keys int
	}{{"1M", benchSmall}, {"10M", benchLarge(b)}} {
		b.Run("keys="+size.name, func(b *testing.B) {
			if size.keys != 10<<20 && size.name == "10M" {
				b.Logf("the large state has %d keys (CAIRN_BENCH_LARGE)", size.keys)
			}
			root := b.TempDir()
			s, _ := storage.OpenLocal(filepath.Join(root, "loc"))
			p := benchOpen(b, pebblestate.Name, s, state.Options{SnapshotInterval: 1, Provider: pebblestate.Options{Dir: filepath.Join(root, "work"), EstimateKeys: true}})
			defer p.Close()
			version := benchFillStore(b, p, size.keys)
			if err := p.Maintain(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.Run("impl=pebble", func(b *testing.B) { benchCommit(b, p, &version, size.keys, true) })
			p.Close()
			// The same with the default snapshot interval (10): files that
			// compactions create and delete between two snapshots are never
			// uploaded. Run with -benchtime 10x or more.
			p = benchOpen(b, pebblestate.Name, s, state.Options{SnapshotInterval: 10, Provider: pebblestate.Options{Dir: filepath.Join(root, "work"), EstimateKeys: true}})
			defer p.Close()
			b.Run("impl=pebble-interval10", func(b *testing.B) { benchCommit(b, p, &version, size.keys, true) })
			if size.keys == benchSmall {
				ms, _ := storage.OpenLocal(filepath.Join(root, "memloc"))
				mp := benchOpen(b, memstate.Name, ms, state.Options{SnapshotInterval: 1})
				defer mp.Close()
				mv := benchFillStore(b, mp, size.keys)
				b.Run("impl=memstate", func(b *testing.B) { benchCommit(b, mp, &mv, size.keys, false) })
			}
		})
	}
}

// commitChanges writes benchBatch distinct existing keys with new values
// (Puts untimed), commits (timed: commitTime), then runs Maintain
// (maintainTime), and returns the store's figures after the commit.
func commitChanges(b benchTB, p state.Provider, version *int64, keys int, rng *rand.Rand) (commitTime, maintainTime time.Duration, m state.Metrics) {
	ctx := context.Background()
	var kb [benchKeyLen]byte
	var vb [benchValueLen]byte
	st, err := p.GetStore(ctx, *version)
	if err != nil {
		b.Fatal(err)
	}
	stride := keys / benchBatch
	for j := range benchBatch {
		n := uint64(j*stride + rng.IntN(stride))
		st.Put(benchKey(&kb, n), benchValue(&vb, uint64(*version)<<32|n))
	}
	start := time.Now()
	*version, err = st.Commit(ctx)
	commitTime = time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	m = st.Metrics()
	start = time.Now()
	if err := p.Maintain(ctx); err != nil {
		b.Fatal(err)
	}
	maintainTime = time.Since(start)
	return commitTime, maintainTime, m
}

func benchCommit(b *testing.B, p state.Provider, version *int64, keys int, isPebble bool) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, uint64(keys)))
	var commits, snapshots time.Duration
	var uploaded, changelog, sstBytes, reused, snaps int64
	b.StopTimer()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, mt, m := commitChanges(b, p, version, keys, rng)
		commits += c
		snapshots += mt
		changelog += m.BytesWritten
		if isPebble {
			rs, err := p.GetReadStore(ctx, *version)
			if err != nil {
				b.Fatal(err)
			}
			m := rs.Metrics().Custom
			rs.Abort()
			if m["snapshotsWritten"] > snaps {
				uploaded += m["lastSnapshotUploadedBytes"]
				reused += m["lastSnapshotReusedFiles"]
				snaps = m["snapshotsWritten"]
			}
			sstBytes = m["sstBytes"]
		}
	}
	n := float64(b.N)
	b.ReportMetric(commits.Seconds()*1e3/n, "commit-ms")
	b.ReportMetric(float64(changelog)/n, "changelog-bytes/version")
	b.ReportMetric(snapshots.Seconds()*1e3/n, "snapshot-ms")
	if isPebble {
		b.ReportMetric(float64(uploaded)/n, "upload-bytes/version")
		b.ReportMetric(float64(reused)/n, "reused-files/version")
		b.ReportMetric(float64(sstBytes), "state-sst-bytes")
	}
}

// BenchmarkRestore measures restoring the latest version of a state (one
// snapshot and 5 changelogs of 10k keys) from local checkpoint storage on
// an empty working directory: state.Open and GetStore, timed; MB/s
// counts the bytes of the objects the restore reads. The baseline
// impl=raw-copy reads those objects and writes them to a new directory
// (no fsync; the restore fsyncs each file), and impl=memstate reloads the
// same state from its own files, a snapshot and 5 deltas (1M only).
func BenchmarkRestore(b *testing.B) {
	for _, size := range []struct {
		name string
		keys int
	}{{"1M", benchSmall}, {"10M", benchLarge(b)}} {
		b.Run("keys="+size.name, func(b *testing.B) {
			ctx := context.Background()
			root := b.TempDir()
			s, _ := storage.OpenLocal(filepath.Join(root, "loc"))
			build := func(name string, opts state.Options) (state.Provider, int64) {
				p := benchOpen(b, name, s, opts)
				v := benchFillStore(b, p, size.keys)
				if err := p.Maintain(ctx); err != nil {
					b.Fatal(err)
				}
				return p, v
			}
			p, v := build(pebblestate.Name, state.Options{SnapshotInterval: 1, Provider: pebblestate.Options{Dir: filepath.Join(root, "w"), EstimateKeys: true}})
			p.Close()
			p = benchOpen(b, pebblestate.Name, s, state.Options{SnapshotInterval: 1000, Provider: pebblestate.Options{Dir: filepath.Join(root, "w"), EstimateKeys: true}})
			rng := rand.New(rand.NewPCG(5, 6))
			for range 5 { // changelogs only
				commitChanges(b, p, &v, size.keys, rng)
			}
			p.Close()
			// The objects a restore of v reads: the newest snapshot's
			// manifest and files, and the changelogs after it.
			snap := v - 5
			objs := []storage.ObjectInfo{{Name: pebblestate.CheckpointName(benchID.Dir(), snap)}}
			_, files, err := pebblestate.ReadCheckpoint(ctx, s, objs[0].Name)
			if err != nil {
				b.Fatal(err)
			}
			for _, f := range files {
				if f.Object != "" {
					objs = append(objs, storage.ObjectInfo{Name: f.Object})
				}
			}
			for w := snap + 1; w <= v; w++ {
				objs = append(objs, storage.ObjectInfo{Name: pebblestate.ChangelogName(benchID.Dir(), w)})
			}
			var total int64
			for i, o := range objs {
				data, err := storage.GetBytes(ctx, s, o.Name)
				if err != nil {
					b.Fatal(err)
				}
				objs[i].Size = int64(len(data))
				total += objs[i].Size
			}
			b.Logf("a restore reads %d objects, %d bytes", len(objs), total)
			b.Run("impl=pebble", func(b *testing.B) {
				b.SetBytes(total)
				for i := 0; i < b.N; i++ {
					dir := filepath.Join(root, fmt.Sprint("restore-", i))
					p := benchOpen(b, pebblestate.Name, s, state.Options{Provider: pebblestate.Options{Dir: dir, EstimateKeys: true}})
					st, err := p.GetStore(ctx, v)
					if err != nil {
						b.Fatal(err)
					}
					st.Abort()
					b.StopTimer()
					p.Close()
					os.RemoveAll(dir)
					b.StartTimer()
				}
			})
			b.Run("impl=raw-copy", func(b *testing.B) {
				b.SetBytes(total)
				for i := 0; i < b.N; i++ {
					dir := filepath.Join(root, fmt.Sprint("copy-", i))
					os.MkdirAll(dir, 0o755)
					for j, o := range objs {
						data, err := storage.GetBytes(ctx, s, o.Name)
						if err != nil {
							b.Fatal(err)
						}
						os.WriteFile(filepath.Join(dir, strconv.Itoa(j)), data, 0o644)
					}
					b.StopTimer()
					os.RemoveAll(dir)
					b.StartTimer()
				}
			})
			// The same restore from MinIO on loopback: the location's
			// objects are copied into a bucket first (not timed).
			b.Run("impl=pebble-from-minio", func(b *testing.B) {
				s3s := s3test.Storage(b, "restore")
				all, err := s.List(ctx, "")
				if err != nil {
					b.Fatal(err)
				}
				for _, o := range all {
					data, err := storage.GetBytes(ctx, s, o.Name)
					if err != nil {
						b.Fatal(err)
					}
					if err := storage.PutBytes(ctx, s3s, o.Name, data, storage.PutOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(total)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					dir := filepath.Join(root, fmt.Sprint("restore-s3-", i))
					p := benchOpen(b, pebblestate.Name, s3s, state.Options{Provider: pebblestate.Options{Dir: dir, EstimateKeys: true}})
					st, err := p.GetStore(ctx, v)
					if err != nil {
						b.Fatal(err)
					}
					st.Abort()
					b.StopTimer()
					p.Close()
					os.RemoveAll(dir)
					b.StartTimer()
				}
			})
			if size.keys == benchSmall {
				ms, _ := storage.OpenLocal(filepath.Join(root, "memloc"))
				mp := benchOpen(b, memstate.Name, ms, state.Options{SnapshotInterval: 1})
				mv := benchFillStore(b, mp, size.keys)
				mp.Maintain(ctx)
				mp.Close()
				mp = benchOpen(b, memstate.Name, ms, state.Options{SnapshotInterval: 1000})
				for range 5 {
					commitChanges(b, mp, &mv, size.keys, rng)
				}
				mp.Close()
				b.Run("impl=memstate", func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						p := benchOpen(b, memstate.Name, ms, state.Options{})
						st, err := p.GetStore(ctx, mv)
						if err != nil {
							b.Fatal(err)
						}
						st.Abort()
						b.StopTimer()
						p.Close()
						b.StartTimer()
					}
				})
			}
		})
	}
}

// rssChildEnv makes the test binary a child of BenchmarkPeakRSS: it
// builds a state of the given size with the given provider, commits 10
// versions of 10k changes with a snapshot after each, and exits.
const rssChildEnv = "CAIRN_BENCH_RSS_CHILD"

func init() {
	spec := os.Getenv(rssChildEnv)
	if spec == "" {
		return
	}
	var provider, dir string
	var keys int
	if _, err := fmt.Sscanf(spec, "%s %d %s", &provider, &keys, &dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tb := childTB{}
	s, _ := storage.OpenLocal(filepath.Join(dir, "loc"))
	opts := state.Options{SnapshotInterval: 1}
	if provider == pebblestate.Name {
		opts.Provider = pebblestate.Options{Dir: filepath.Join(dir, "work"), EstimateKeys: true}
	}
	p := benchOpen(tb, provider, s, opts)
	v := benchFillStore(tb, p, keys)
	p.Maintain(context.Background())
	rng := rand.New(rand.NewPCG(7, 8))
	for range 10 {
		commitChanges(tb, p, &v, keys, rng)
	}
	p.Close()
	os.Exit(0)
}

// BenchmarkPeakRSS runs a child process per provider and state size (1M
// and 10M keys) that builds the state and commits 10 versions of 10k
// changes with a snapshot after each, and reports the child's peak
// resident memory (getrusage maxrss) and its run time.
func BenchmarkPeakRSS(b *testing.B) {
	for _, provider := range []string{pebblestate.Name, memstate.Name} {
		for _, size := range []struct {
			name string
			keys int
		}{{"1M", benchSmall}, {"10M", benchLarge(b)}} {
			b.Run(fmt.Sprintf("keys=%s/impl=%s", size.name, provider), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					dir := b.TempDir()
					cmd := exec.Command(os.Args[0], "-test.run=^$")
					cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %s", rssChildEnv, provider, size.keys, dir))
					cmd.Stderr = os.Stderr
					start := time.Now()
					if err := cmd.Run(); err != nil {
						b.Fatal(err)
					}
					ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
					b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
					b.ReportMetric(time.Since(start).Seconds(), "run-s")
				}
			})
		}
	}
}
