package pebblestate_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/pebblestate"
	"github.com/cairn-data/cairn/state/statetest"
	"github.com/cairn-data/cairn/storage"
)

var (
	testID     = state.StoreID{Operator: 0, Partition: 3}
	testSchema = state.Schema{Key: "string", Value: "bytes"}
)

// open opens the test store with a working directory of its own.
func open(t testing.TB, s storage.Storage, opts state.Options, po pebblestate.Options) state.Provider {
	t.Helper()
	if po.Dir == "" {
		po.Dir = t.TempDir()
	}
	opts.Provider = po
	if opts.MaintenanceInterval == 0 {
		opts.MaintenanceInterval = -1
	}
	p, err := state.Open(context.Background(), pebblestate.Name, s, testID, testSchema, opts)
	if err != nil {
		t.Fatalf("state.Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// load opens a store at v, compares it with want, and returns its metrics.
func load(t testing.TB, p state.Provider, v int64, want map[string][]byte) state.Metrics {
	t.Helper()
	st, err := p.GetStore(context.Background(), v)
	if err != nil {
		t.Fatalf("GetStore(%d): %v", v, err)
	}
	defer st.Abort()
	if err := statecheck.Compare(st, want); err != nil {
		t.Fatal(err)
	}
	return st.Metrics()
}

func metrics(t testing.TB, p state.Provider) map[string]int64 {
	t.Helper()
	v, _ := p.LatestVersion(context.Background())
	rs, err := p.GetReadStore(context.Background(), v)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Abort()
	return rs.Metrics().Custom
}

// sharedObjects lists the SST objects in the store's directory.
func sharedObjects(t testing.TB, s storage.Storage) map[string]int64 {
	t.Helper()
	objs, err := s.List(context.Background(), testID.Dir()+"/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, o := range objs {
		if _, kind, ok := pebblestate.ParseFileName(path.Base(o.Name)); ok && kind == "shared" {
			out[o.Name] = o.Size
		}
	}
	return out
}

// referenced returns the shared objects the store's snapshots reference.
func referenced(t testing.TB, s storage.Storage) map[string]bool {
	t.Helper()
	ctx := context.Background()
	objs, err := s.List(ctx, testID.Dir()+"/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, o := range objs {
		if _, kind, ok := pebblestate.ParseFileName(path.Base(o.Name)); ok && kind == "checkpoint" {
			if err := pebblestate.VerifyObject(ctx, s, o.Name); err != nil {
				t.Fatal(err)
			}
			_, files, err := pebblestate.ReadCheckpoint(ctx, s, o.Name)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if f.Object != "" {
					out[f.Object] = true
				}
			}
		}
	}
	return out
}

// scaled returns n, or n/4 under -race or -short.
func scaled(n int) int {
	if raceEnabled || testing.Short() {
		return n / 4
	}
	return n
}

// bulk returns n puts of distinct keys with 100-byte values.
func bulk(prefix string, n int, round int) []statecheck.Op {
	ops := make([]statecheck.Op, n)
	for i := range ops {
		ops[i] = statecheck.Op{Key: fmt.Sprintf("%s%07d", prefix, i), Value: []byte(fmt.Sprintf("%0100d", round*n+i))}
	}
	return ops
}

// A second snapshot uploads only the SST files the first did not: a
// small change to a large state uploads a small file, and the files of
// the first snapshot are reused.
func TestSnapshotUploadsOnlyNewSSTs(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	p := open(t, s, state.Options{SnapshotInterval: 1}, pebblestate.Options{})
	want := map[string][]byte{}
	ops := bulk("k", scaled(50_000), 0)
	statecheck.Apply(want, ops)
	v := statetest.Commit(t, p, 0, ops)
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	first := metrics(t, p)
	firstObjects := sharedObjects(t, s)
	if first["lastSnapshotUploadedFiles"] == 0 || first["lastSnapshotUploadedBytes"] < int64(scaled(256<<10)) {
		t.Fatalf("the first snapshot uploaded %d files, %d bytes; want the state's SSTs", first["lastSnapshotUploadedFiles"], first["lastSnapshotUploadedBytes"])
	}
	small := []statecheck.Op{{Key: "k0000007", Value: []byte("changed")}, {Key: "new", Value: []byte("x")}}
	statecheck.Apply(want, small)
	v = statetest.Commit(t, p, v, small)
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	second := metrics(t, p)
	t.Logf("first snapshot: %d files, %d bytes; second: %d files uploaded (%d bytes), %d reused",
		first["lastSnapshotUploadedFiles"], first["lastSnapshotUploadedBytes"],
		second["lastSnapshotUploadedFiles"], second["lastSnapshotUploadedBytes"], second["lastSnapshotReusedFiles"])
	if second["lastSnapshotReusedFiles"] != first["lastSnapshotUploadedFiles"] {
		t.Errorf("the second snapshot reused %d files, want the first snapshot's %d", second["lastSnapshotReusedFiles"], first["lastSnapshotUploadedFiles"])
	}
	if got := second["lastSnapshotUploadedBytes"]; got == 0 || got > 64<<10 {
		t.Errorf("the second snapshot uploaded %d bytes for 2 changed keys; want one small SST", got)
	}
	secondObjects := sharedObjects(t, s)
	for name := range firstObjects {
		if _, ok := secondObjects[name]; !ok {
			t.Errorf("%s of the first snapshot is gone", name)
		}
	}
	if n := len(secondObjects) - len(firstObjects); int64(n) != second["lastSnapshotUploadedFiles"] {
		t.Errorf("%d new objects in storage, the metrics say %d files uploaded", n, second["lastSnapshotUploadedFiles"])
	}
	// Both versions restore on an empty machine.
	fresh := open(t, s, state.Options{}, pebblestate.Options{})
	load(t, fresh, v, want)
}

// A fresh machine restores from the newest snapshot at or below the
// version and replays the changelogs after it.
func TestRestoreOnEmptyDirFromSnapshotAndChangelogs(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	w := statecheck.Workload{Seed: 21, Keys: scaled(5000), PerBatch: scaled(2000)}
	p := open(t, s, state.Options{SnapshotInterval: 5}, pebblestate.Options{})
	for v := int64(0); v < 8; v++ {
		statetest.Commit(t, p, v, w.Changes(v+1))
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	if _, err := s.Get(ctx, pebblestate.CheckpointName(testID.Dir(), 5)); err != nil {
		t.Fatalf("no snapshot of version 5: %v", err)
	}
	fresh := open(t, s, state.Options{}, pebblestate.Options{})
	m := load(t, fresh, 8, w.Oracle(8)).Custom
	if m["downloadedBytes"] == 0 || m["changelogsReplayed"] != 3 || m["loads"] != 1 {
		t.Fatalf("restore downloaded %d bytes and replayed %d changelogs in %d loads; want the snapshot of 5 and changelogs 6, 7, 8",
			m["downloadedBytes"], m["changelogsReplayed"], m["loads"])
	}
	// Version 6 on yet another machine: the same snapshot, one changelog.
	other := open(t, s, state.Options{}, pebblestate.Options{})
	if m := load(t, other, 6, w.Oracle(6)).Custom; m["changelogsReplayed"] != 1 {
		t.Fatalf("version 6 replayed %d changelogs, want 1", m["changelogsReplayed"])
	}
}

// The local database is reused by the next run on the same machine (no
// download, no replay), catches up with changelogs another machine wrote,
// and is not reused for another store.
func TestLocalDatabaseReuse(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	dir := t.TempDir()
	w := statecheck.Workload{Seed: 5, Keys: 500, PerBatch: 100}
	p := open(t, s, state.Options{}, pebblestate.Options{Dir: dir})
	for v := int64(0); v < 4; v++ {
		statetest.Commit(t, p, v, w.Changes(v+1))
	}
	p.Close()

	p = open(t, s, state.Options{}, pebblestate.Options{Dir: dir})
	if m := load(t, p, 4, w.Oracle(4)).Custom; m["loads"] != 0 || m["downloadedBytes"] != 0 || m["changelogsReplayed"] != 0 {
		t.Fatalf("reopening on the same machine loaded %d times, downloaded %d bytes, replayed %d changelogs; want the local database as it was",
			m["loads"], m["downloadedBytes"], m["changelogsReplayed"])
	}
	p.Close()

	other := open(t, s, state.Options{}, pebblestate.Options{}) // another machine goes on
	for v := int64(4); v < 6; v++ {
		statetest.Commit(t, other, v, w.Changes(v+1))
	}
	other.Close()
	p = open(t, s, state.Options{}, pebblestate.Options{Dir: dir})
	if m := load(t, p, 6, w.Oracle(6)).Custom; m["changelogsReplayed"] != 2 || m["downloadedBytes"] != 0 {
		t.Fatalf("catching up replayed %d changelogs and downloaded %d bytes; want 2 changelogs", m["changelogsReplayed"], m["downloadedBytes"])
	}
	p.Close()

	// Another location (another store) with the same working directory.
	s2 := storage.NewMem()
	q := open(t, s2, state.Options{}, pebblestate.Options{Dir: dir})
	if v, _ := q.LatestVersion(ctx); v != 0 {
		t.Fatalf("a new store starts at version %d", v)
	}
	load(t, q, 0, map[string][]byte{})
	statetest.Commit(t, q, 0, []statecheck.Op{{Key: "only", Value: []byte("s2")}})
	q.Close()

	// And back: the directory now holds s2's database, which is not reused
	// for s.
	p = open(t, s, state.Options{}, pebblestate.Options{Dir: dir})
	if m := load(t, p, 6, w.Oracle(6)).Custom; m["changelogsReplayed"] != 6 {
		t.Fatalf("the store rebuilt from %d changelogs; want all 6 (the local database belongs to another store)", m["changelogsReplayed"])
	}
}

// A location deleted and created again at the same address is another
// store: the local database of the old one is not reused.
func TestRecreatedLocationIsAnotherStore(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := t.TempDir()
	s, _ := storage.OpenLocal(filepath.Join(root, "loc"))
	p := open(t, s, state.Options{}, pebblestate.Options{Dir: dir})
	statetest.Commit(t, p, 0, []statecheck.Op{{Key: "old", Value: []byte("1")}})
	p.Close()
	os.RemoveAll(filepath.Join(root, "loc"))
	s, _ = storage.OpenLocal(filepath.Join(root, "loc"))
	p = open(t, s, state.Options{}, pebblestate.Options{Dir: dir})
	statetest.Commit(t, p, 0, []statecheck.Op{{Key: "new", Value: []byte("2")}})
	load(t, p, 1, map[string][]byte{"new": []byte("2")})
	if _, err := p.GetStore(ctx, 2); !errors.Is(err, state.ErrVersionUnavailable) {
		t.Fatalf("GetStore(2): %v", err)
	}
}

// Maintenance deletes the SST files no retained snapshot references,
// while every retained version stays restorable on an empty machine.
func TestMaintenanceDeletesUnreferencedSSTs(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	opts := state.Options{SnapshotInterval: 2, RetainVersions: 3}
	p := open(t, s, opts, pebblestate.Options{MemTableSize: 256 << 10})
	oracle := map[int64]map[string][]byte{}
	want := map[string][]byte{}
	var v int64
	for round := range 12 { // rewrites every key: compactions leave old SSTs behind
		ops := bulk("k", scaled(4000), round)
		statecheck.Apply(want, ops)
		v = statetest.Commit(t, p, v, ops)
		oracle[v] = maps.Clone(want)
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	m := metrics(t, p)
	objects, refs := sharedObjects(t, s), referenced(t, s)
	for name := range objects {
		if !refs[name] {
			t.Errorf("%s is referenced by no snapshot but was not deleted", name)
		}
	}
	for name := range refs {
		if _, ok := objects[name]; !ok {
			t.Errorf("%s, referenced by a snapshot, is missing", name)
		}
	}
	if m["filesDeleted"] == 0 || m["snapshotUploadedFiles"] <= int64(len(objects)) {
		t.Fatalf("maintenance deleted %d objects; %d SSTs were uploaded and %d remain: nothing was collected",
			m["filesDeleted"], m["snapshotUploadedFiles"], len(objects))
	}
	oldest, err := p.OldestVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for rv := max(oldest, v-int64(opts.RetainVersions)+1); rv <= v; rv++ {
		load(t, open(t, s, state.Options{}, pebblestate.Options{}), rv, oracle[rv])
	}
}

// A damaged SST is detected when a restore downloads it: a CorruptError
// naming the object and what does not match.
func TestCorruptSSTDetectedOnDownload(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	p := open(t, s, state.Options{SnapshotInterval: 1}, pebblestate.Options{})
	statetest.Commit(t, p, 0, bulk("k", 1000, 0))
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	var victim string
	for name := range sharedObjects(t, s) {
		victim = name
	}
	if victim == "" {
		t.Fatal("the snapshot wrote no SST")
	}
	for how, mutate := range map[string]func([]byte) []byte{
		"flipped byte": func(b []byte) []byte { b[len(b)/3] ^= 1; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-1] },
		"replaced":     func(b []byte) []byte { return []byte("not an sst") },
	} {
		t.Run(how, func(t *testing.T) {
			data, _ := storage.GetBytes(ctx, s, victim)
			orig := append([]byte(nil), data...)
			storage.PutBytes(ctx, s, victim, mutate(data), storage.PutOptions{})
			defer storage.PutBytes(ctx, s, victim, orig, storage.PutOptions{})
			fresh := open(t, s, state.Options{}, pebblestate.Options{})
			_, err := fresh.GetStore(ctx, 1)
			var ce *storage.CorruptError
			if !errors.As(err, &ce) || ce.Object != victim || !strings.Contains(err.Error(), victim) {
				t.Fatalf("restore with %s %s: err = %v, want a CorruptError naming it", how, victim, err)
			}
			t.Log(err)
		})
	}
}

// The memory options reach Pebble; bad values and another provider's
// options are refused, naming the setting.
func TestMemoryOptions(t *testing.T) {
	s := storage.NewMem()
	p := open(t, s, state.Options{}, pebblestate.Options{BlockCacheSize: 3 << 20, MemTableSize: 2 << 20, MemTables: 3})
	statetest.Commit(t, p, 0, []statecheck.Op{{Key: "a", Value: []byte("1")}})
	m := metrics(t, p)
	if m["blockCacheCapacity"] != 3<<20 {
		t.Errorf("block cache of %d bytes, want 3 MiB", m["blockCacheCapacity"])
	}
	if m["memtableBytes"] > 2<<20 {
		t.Errorf("memtables of %d bytes with MemTableSize 2 MiB", m["memtableBytes"])
	}
	ctx := context.Background()
	for _, c := range []struct {
		opts any
		want string
	}{
		{pebblestate.Options{MemTables: 1}, "MemTables"},
		{pebblestate.Options{BlockCacheSize: -1}, "BlockCacheSize"},
		{pebblestate.Options{MemTableSize: 8 << 30}, "MemTableSize"},
		{struct{ CacheMB int }{8}, "pebblestate.Options"},
	} {
		_, err := state.Open(ctx, pebblestate.Name, s, testID, testSchema, state.Options{MaintenanceInterval: -1, Provider: c.opts})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open with %+v: err = %v, want one naming %s", c.opts, err, c.want)
		}
	}
}

// With EstimateKeys, writes are blind and Keys is an estimate; the data
// is the same.
func TestEstimateKeys(t *testing.T) {
	s := storage.NewMem()
	dir := t.TempDir()
	p := open(t, s, state.Options{SnapshotInterval: 1}, pebblestate.Options{Dir: dir, EstimateKeys: true})
	want := map[string][]byte{}
	n := scaled(20_000)
	ops := bulk("k", n, 0)
	statecheck.Apply(want, ops)
	statetest.Commit(t, p, 0, ops)
	if err := p.Maintain(context.Background()); err != nil { // flushes: the tables have statistics
		t.Fatal(err)
	}
	rs, err := p.GetReadStore(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for kv, err := range rs.Range(nil, nil) {
		if err != nil || string(want[string(kv.Key)]) != string(kv.Value) {
			t.Fatalf("Range: %q %v", kv.Key, err)
		}
		seen++
	}
	if seen != len(want) {
		t.Fatalf("Range yielded %d keys, want %d", seen, len(want))
	}
	if k := rs.Metrics().Keys; k < int64(n)*3/4 || k > int64(n)*5/4 {
		t.Errorf("estimated keys %d, want about %d", k, n)
	}
	rs.Abort()
	p.Close()
	// Counting again on the same local database: an exact count.
	p = open(t, s, state.Options{}, pebblestate.Options{Dir: dir})
	if k := load(t, p, 1, want).Keys; k != int64(n) {
		t.Errorf("Keys = %d after switching counting on, want %d", k, n)
	}
}

// Two providers of one store in one process with the default working
// directory: the second works in a private directory, removed at Close.
func TestDefaultDirSharedByTwoProviders(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	ctx := context.Background()
	s := storage.NewMem()
	open1 := func() state.Provider {
		p, err := state.Open(ctx, pebblestate.Name, s, testID, testSchema, state.Options{MaintenanceInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1 := open1()
	statetest.Commit(t, p1, 0, []statecheck.Op{{Key: "a", Value: []byte("1")}})
	p2 := open1()
	load(t, p2, 1, map[string][]byte{"a": []byte("1")})
	base := pebblestate.DefaultDir(s, testID)
	if !strings.HasPrefix(base, os.Getenv("TMPDIR")) {
		t.Fatalf("DefaultDir %s is not under TMPDIR", base)
	}
	entries, _ := os.ReadDir(base)
	var instances int
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "instance-") {
			instances++
		}
	}
	if instances != 1 {
		t.Fatalf("%d private directories in %s, want 1 for the second provider", instances, base)
	}
	p2.Close()
	p1.Close()
	entries, _ = os.ReadDir(base)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "instance-") {
			t.Fatalf("%s left behind after Close", e.Name())
		}
	}
}
